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

function serve(
  options: HttpServeOptions,
  handler: (request: Request) => Response | Promise<Response>,
): Promise<HttpServerHandle> {
  const { promise, resolve } = Promise.withResolvers<HttpServerHandle>();
  const server = Deno.serve({
    port: options.port,
    hostname: options.hostname,
    reusePort: options.reusePort,
    onListen(addr) {
      resolve({
        port: addr.port,
        hostname: addr.hostname,
        shutdown: () => server.shutdown(),
      });
    },
  }, handler);
  // An accept that fails (EMFILE) rejects `finished`, and the server serves
  // no more: uncaught, that rejection would end the process (Deno 2.9.6).
  server.finished.catch((error) => options.onFailure?.(error));
  return promise;
}
