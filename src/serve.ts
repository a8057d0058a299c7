/**
 * `serve()`: an HTTP server on `Deno.serve` / `Bun.serve` that shares its
 * port with the other workers through `reusePort`.
 *
 * @module
 */
import { describe, describeValue } from "./errors.ts";
import { createLogger, getProcessSink, stderrHandler } from "./logging.ts";
import { loadRuntime } from "./runtime/mod.ts";
import type { Handler, HttpServer, ServeOptions } from "./types.ts";

/**
 * Starts an HTTP server with `reusePort` on by default, so every worker of a
 * pool can listen on the same port.
 *
 * @example A worker answering on a shared port
 * ```ts ignore
 * import { type HttpServer, serve, WorkerBase } from "@workerpool/core";
 *
 * class Web extends WorkerBase {
 *   server?: HttpServer;
 *   constructor(id: number) {
 *     super(id);
 *     this.onStart(async () => {
 *       this.server = await serve({ port: 8080 }, () => new Response("hi"));
 *     });
 *     this.onShutdown(() => this.server?.shutdown());
 *   }
 *   async main() {
 *     while (this.isRunning()) await this.sleep(1000);
 *   }
 * }
 * ```
 */
export async function serve(
  options: ServeOptions,
  handler: Handler,
): Promise<HttpServer> {
  const {
    port = 8080,
    hostname = "127.0.0.1",
    reusePort = true,
    signal,
    onError,
  } = options ?? {};
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot serve: port must be an integer from 0 to 65535, got ${
        describeValue(port)
      }`,
    );
  }
  if (typeof handler !== "function") {
    throw new TypeError(
      `Cannot serve: handler must be a function, got ${describeValue(handler)}`,
    );
  }
  if (onError !== undefined && typeof onError !== "function") {
    throw new TypeError(
      `Cannot serve: onError must be a function, got ${describeValue(onError)}`,
    );
  }
  const runtime = await loadRuntime();
  const missing = reusePort ? runtime.reusePortError() : null;
  if (missing !== null) {
    throw new Error(`Cannot serve with reusePort on port ${port}: ${missing}`);
  }
  const report = (error: unknown, request: Request) =>
    logRequestError(error, request, runtime.pid);
  let server;
  try {
    server = await runtime.serve(
      { port, hostname, reusePort },
      guard(handler, onError ?? report, report),
    );
  } catch (error) {
    throw new Error(
      `Cannot listen on ${hostname}:${port}: ${describe(error)}`,
      { cause: error },
    );
  }
  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= server.shutdown().finally(() => open.delete(shutdown));
  open.add(shutdown);
  signal?.addEventListener("abort", shutdown, { once: true });
  return { port: server.port, hostname: server.hostname, shutdown };
}

/** The shutdown of every server of this process not yet shut down. */
const open = new Set<() => Promise<void>>();

/**
 * Shuts down, gracefully, every server this process still has, and waits
 * until their in-flight requests are answered: a pool's worker does this
 * before it exits, so a server stopped by its `signal` (which nobody
 * awaits), or never stopped at all, still answers what it took.
 */
export function shutdownServers(): Promise<void> {
  return Promise.all([...open].map((shutdown) => shutdown())).then(() => {});
}

type ErrorHandler = NonNullable<ServeOptions["onError"]>;

/**
 * The handler, answering a plain 500 that shows nothing of the error when
 * it throws (Bun's own answer is a development page with the source path),
 * after `onError`, whose response is sent instead when it returns one. A
 * sync handler stays sync: no promise per request.
 */
function guard(
  handler: Handler,
  onError: ErrorHandler,
  report: (error: unknown, request: Request) => void,
): Handler {
  const fail = async (error: unknown, request: Request) => {
    try {
      const response = await onError(error, request);
      if (response instanceof Response) return response;
    } catch (failure) {
      // Both are said: the handler's error, and onError's own.
      report(error, request);
      report(failure, request);
    }
    return new Response("Internal Server Error", {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  };
  // What is not a Response (a forgotten return) is an error too: Bun would
  // answer 200 with its welcome page, Deno 500, neither telling onError.
  const check = (response: unknown, request: Request) =>
    response instanceof Response
      ? response
      : fail(notAResponse(response), request);
  return (request) => {
    try {
      const response = handler(request);
      return response instanceof Promise
        ? response.then(
          (value) => check(value, request),
          (error) => fail(error, request),
        )
        : check(response, request);
    } catch (error) {
      return fail(error, request);
    }
  };
}

function notAResponse(value: unknown): TypeError {
  return new TypeError(
    `Cannot answer the request: the handler returned ${
      describeValue(value)
    }, not a Response`,
  );
}

const stderr = stderrHandler("DEBUG");

/** The default `onError`: the error, with its stack, in the worker's log. */
function logRequestError(
  error: unknown,
  request: Request,
  pid: number,
): void {
  const sink = getProcessSink() ??
    ((record) => stderr.handle({ ...record, workerId: null, pid }));
  createLogger("workerpool.serve", sink).error(
    `${request.method} ${new URL(request.url).pathname} failed: ${
      describe(error)
    }`,
    error,
  );
}
