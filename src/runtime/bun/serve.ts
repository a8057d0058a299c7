/**
 * HTTP for the Bun adapter: `Bun.serve` with `reusePort`.
 *
 * @module
 */
import type { HttpServerHandle, Runtime } from "../types.ts";
import { bun } from "./globals.ts";

/** Serving HTTP. */
export const http: Pick<Runtime, "serve" | "reusePortError"> = {
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
