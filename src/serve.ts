/**
 * `serve()`: an HTTP server on `Deno.serve` / `Bun.serve` that shares its
 * port with the other workers through `reusePort`.
 *
 * @module
 */
import { describe, describeValue } from "./errors.ts";
import { createLogger, getProcessSink, stderrHandler } from "./logging.ts";
import { checkPort, claimPort } from "./_port_lock.ts";
import { loadRuntime } from "./runtime/mod.ts";
import type { HttpServerHandle } from "./runtime/mod.ts";
import type { Handler, HttpServer, Logger, ServeOptions } from "./types.ts";

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
  const refused = (error: unknown) =>
    new Error(`Cannot listen on ${hostname}:${port}: ${describe(error)}`, {
      cause: error,
    });
  let holder: number | null = null;
  try {
    // Another pool's port is refused before listening takes a connection.
    if (reusePort) holder = await checkPort(runtime, port);
  } catch (error) {
    throw refused(error);
  }
  const report = (error: unknown, request: Request) =>
    logRequestError(error, request, runtime.pid);
  const guarded = guard(handler, onError ?? report, report);
  const drain: Drain = { draining: false, last: 0, inFlight: 0 };
  const counted: Handler = (request) => {
    served++;
    drain.last = Date.now();
    const response = guarded(request);
    if (!(response instanceof Promise)) {
      return drain.draining ? closing(response) : response;
    }
    drain.inFlight++;
    inFlight++;
    return response.then((value) => {
      drain.inFlight--;
      inFlight--;
      return drain.draining ? closing(value) : value;
    });
  };
  let server: HttpServerHandle;
  try {
    server = await runtime.serve({
      port,
      hostname,
      reusePort,
      // Out of file descriptors (a flood of idle connections, on Deno): it
      // serves no more until it listens again. With reusePort the other
      // workers serve meanwhile.
      onFailure: (error) =>
        serveLogger(runtime.pid).error(
          `The server on ${hostname}:${port} stopped: ${
            describe(error)
          }; listening again in a second`,
        ),
    }, counted);
  } catch (error) {
    throw refused(error);
  }
  if (reusePort) claimPort(port, holder);
  servers++;
  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= closeKeepAlive(drain).then(() => server.shutdown()).finally(
      () => open.delete(shutdown),
    );
  open.add(shutdown);
  signal?.addEventListener("abort", shutdown, { once: true });
  return { port: server.port, hostname: server.hostname, shutdown };
}

/** Requests this process's servers took, all servers together. */
let served = 0;
/** Requests of async handlers not answered yet, all servers together. */
let inFlight = 0;
/** Servers this process started. */
let servers = 0;

/**
 * The requests this process's servers took so far, and those not answered
 * yet; null when it never started a server: what a pool's worker reports
 * in its heartbeat.
 */
export function requestCounts(): { served: number; inFlight: number } | null {
  return servers === 0 ? null : { served, inFlight };
}

/** How long a stopping server may go on answering with `Connection: close`. */
const DRAIN_MS = 500;
/** A stopping server that took no request for this long stops at once. */
const QUIET_MS = 50;

/** A server's drain: since when it drains, its last request, the open ones. */
interface Drain {
  draining: boolean;
  /** When the last request came (ms since the epoch). */
  last: number;
  /** Requests of async handlers not answered yet. */
  inFlight: number;
}

/**
 * Before a server stops listening, and closes its idle keep-alive
 * connections (where a client may be sending a request at that very
 * moment, which then fails), it answers for a while with `Connection:
 * close`: a client that sends requests on a connection learns from the
 * answer to open a new one, which another worker takes. It goes on while
 * requests are in flight or came in the last `QUIET_MS`, at most
 * `DRAIN_MS`.
 */
async function closeKeepAlive(drain: Drain): Promise<void> {
  drain.draining = true;
  const end = Date.now() + DRAIN_MS;
  for (;;) {
    const now = Date.now();
    const quietIn = drain.inFlight > 0
      ? QUIET_MS
      : QUIET_MS - (now - drain.last);
    const wait = Math.min(quietIn, end - now);
    if (wait <= 0) return;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** `response`, telling the client to close the connection after it. */
function closing(response: Response): Response {
  try {
    response.headers.set("connection", "close");
    return response;
  } catch {
    // Immutable headers (a Response.redirect, a fetched response): a copy.
    const headers = new Headers(response.headers);
    headers.set("connection", "close");
    return new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  }
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

/** Where serve() logs: the worker's log in a pool, else stderr. */
function serveLogger(pid: number): Logger {
  const sink = getProcessSink() ??
    ((record) => stderr.handle({ ...record, workerId: null, pid }));
  return createLogger("workerpool.serve", sink);
}

/** The default `onError`: the error, with its stack, in the worker's log. */
function logRequestError(
  error: unknown,
  request: Request,
  pid: number,
): void {
  // Relative on Bun for an HTTP/1.0 request without a Host header.
  const path = new URL(request.url, "http://localhost").pathname;
  serveLogger(pid).error(
    `${request.method} ${path} failed: ${describe(error)}`,
    error,
  );
}
