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
    const server = bun().serve({ ...options, fetch: handler });
    return Promise.resolve({
      port: server.port,
      hostname: server.hostname,
      // stop(false) stops listening and waits for in-flight requests.
      shutdown: () => server.stop(false),
    });
  },
};
