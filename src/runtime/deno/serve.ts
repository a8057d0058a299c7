/**
 * HTTP for the Deno adapter: `Deno.serve` with `reusePort`.
 *
 * @module
 */
import type { Http, HttpServerHandle } from "../types.ts";

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
  options: { port: number; hostname: string; reusePort: boolean },
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
  return promise;
}
