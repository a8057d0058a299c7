/**
 * HTTP for the Bun adapter: `Bun.serve` with `reusePort`.
 *
 * @module
 */
import type { Http, HttpServerHandle } from "../types.ts";
import { bun } from "./globals.ts";

/** Serving HTTP. */
export const http: Http = {
  reusePortError: () => null,
  serve(options, handler): Promise<HttpServerHandle> {
    // Bun goes on accepting when out of file descriptors: no failure to say.
    const { port, hostname, reusePort } = options;
    const server = bun().serve({ port, hostname, reusePort, fetch: handler });
    return Promise.resolve({
      port: server.port,
      hostname: server.hostname,
      // stop(false) stops listening and waits for in-flight requests.
      shutdown: () => server.stop(false),
    });
  },
};
