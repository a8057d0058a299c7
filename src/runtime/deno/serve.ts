/**
 * HTTP for the Deno adapter: `Deno.serve` with `reusePort`.
 *
 * @module
 */
import type { Http, HttpServeOptions, HttpServerHandle } from "../types.ts";

/** Serving HTTP. */
export const http: Http = {
  reusePortError() {
    // Without --unstable-net, Deno.serve({ reusePort }) exits the process
    // with code 70 and nothing can catch it; listenDatagram is unstable-net
    // only, so its presence tells beforehand.
    return typeof (Deno as { listenDatagram?: unknown }).listenDatagram ===
        "function"
      ? null
      : 'Deno needs --unstable-net (or "unstable": ["net"] in deno.json)';
  },
  serve,
};

/** How long a server Deno stopped waits before it listens again. */
const RELISTEN_MS = 1000;

function serve(
  options: HttpServeOptions,
  handler: (request: Request) => Response | Promise<Response>,
): Promise<HttpServerHandle> {
  let port = options.port;
  let current: Deno.HttpServer | null = null;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const listen = () => {
    const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
    const server = Deno.serve({
      port,
      hostname: options.hostname,
      reusePort: options.reusePort,
      onListen: resolve,
    }, handler);
    current = server;
    // An accept that fails (EMFILE) rejects `finished`, and the server
    // serves no more: uncaught, that rejection would end the process
    // (Deno 2.9.6). It is said, and the port listened on again.
    server.finished.catch((error) => {
      if (stopped) return;
      current = null;
      options.onFailure?.(error);
      again();
    });
    return promise;
  };
  const again = () => {
    timer = setTimeout(() => {
      if (stopped) return;
      try {
        listen();
      } catch {
        again(); // still out of file descriptors
      }
    }, RELISTEN_MS);
  };
  return listen().then((addr) => {
    port = addr.port;
    return {
      port: addr.port,
      hostname: addr.hostname,
      shutdown() {
        stopped = true;
        clearTimeout(timer);
        return current?.shutdown() ?? Promise.resolve();
      },
    };
  });
}
