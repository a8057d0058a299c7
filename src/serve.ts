/**
 * `serve()`: an HTTP server on `Deno.serve` / `Bun.serve` that shares its
 * port with the other workers through `reusePort`.
 *
 * @module
 */
import { loadRuntime } from "./runtime/mod.ts";
import { describe, describeValue } from "./errors.ts";

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /**
   * The TCP port.
   * @default {8080}
   */
  port?: number;
  /**
   * The address to bind; use `"0.0.0.0"` to accept other hosts.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * Share the port with other processes; the kernel balances connections
   * (on Linux).
   * @default {true}
   */
  reusePort?: boolean;
  /** Aborting it shuts the server down gracefully. */
  signal?: AbortSignal;
}

/** A running server. */
export interface HttpServer {
  /** The bound port. */
  readonly port: number;
  /** The bound address. */
  readonly hostname: string;
  /**
   * Stops accepting connections and resolves once in-flight requests are
   * answered. Idempotent.
   */
  shutdown(): Promise<void>;
}

/** A request handler. */
export type Handler = (request: Request) => Response | Promise<Response>;

/**
 * Starts an HTTP server with `reusePort` on by default, so every worker of a
 * pool can listen on the same port.
 *
 * @example A worker answering on a shared port
 * ```ts ignore
 * import { serve, WorkerBase } from "@workerpool/core";
 *
 * class Web extends WorkerBase {
 *   server?: Awaited<ReturnType<typeof serve>>;
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
  const { port = 8080, hostname = "127.0.0.1", reusePort = true, signal } =
    options ?? {};
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
  const runtime = await loadRuntime();
  const missing = reusePort ? runtime.reusePortError() : null;
  if (missing !== null) {
    throw new Error(`Cannot serve with reusePort on port ${port}: ${missing}`);
  }
  let server;
  try {
    server = await runtime.serve({ port, hostname, reusePort }, handler);
  } catch (error) {
    throw new Error(
      `Cannot listen on ${hostname}:${port}: ${describe(error)}`,
      { cause: error },
    );
  }
  let stopping: Promise<void> | undefined;
  const shutdown = () => stopping ??= server.shutdown();
  signal?.addEventListener("abort", shutdown, { once: true });
  return { port: server.port, hostname: server.hostname, shutdown };
}
