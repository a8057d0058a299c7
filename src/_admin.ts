/**
 * The master's admin endpoint (`admin: { port, hostname }`): `/metrics`
 * (Prometheus text), `/healthz` (the master supervises), `/readyz` (enough
 * workers are ready and no stop is under way) and `/status` (JSON). Loaded
 * only in a master that has one.
 *
 * @module
 */
import { renderMetrics } from "./_metrics.ts";
import type { Pool } from "./_pool.ts";
import { describe } from "./errors.ts";
import type { Runtime } from "./runtime/mod.ts";
import type { Logger } from "./types.ts";

/** A running admin endpoint. */
export interface AdminServer {
  /** `http://host:port`, the port bound (for port 0, the one picked). */
  readonly url: string;
  /** Stops it; in-flight requests are answered first. */
  close(): Promise<void>;
}

const TEXT = "text/plain; charset=utf-8";
const PATHS = ["/metrics", "/healthz", "/readyz", "/status"];

/**
 * Serves the endpoint of `pool` on `address`; throws, before any worker is
 * spawned, when it cannot listen there.
 */
export async function serveAdmin(
  runtime: Runtime,
  address: { port: number; hostname: string },
  pool: Pool,
  log: Logger,
): Promise<AdminServer> {
  // When the master process started: what process_start_time_seconds says.
  const startTime = Math.round(Date.now() - runtime.now()) / 1000;
  const answer = (request: Request): Response => {
    const path = new URL(request.url).pathname;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return reply(405, `${request.method} not allowed: use GET\n`, {
        allow: "GET, HEAD",
      });
    }
    switch (path) {
      case "/metrics":
        return reply(
          200,
          renderMetrics(pool.status(), runtime.usage(), startTime),
          { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        );
      case "/healthz": {
        const unwell = pool.unwell();
        return unwell === null
          ? reply(200, "ok\n")
          : reply(503, `unhealthy: ${unwell}\n`);
      }
      case "/readyz": {
        const why = pool.notReady();
        const status = pool.status();
        return why === null
          ? reply(200, `ready: ${status.ready} of ${status.size} workers\n`)
          : reply(503, `not ready: ${why}\n`);
      }
      case "/status":
        return reply(200, JSON.stringify(pool.status()) + "\n", {
          "content-type": "application/json",
        });
      default:
        return reply(
          404,
          `not found: ${path}; this endpoint serves ${PATHS.join(", ")}\n`,
        );
    }
  };
  const guarded = (request: Request): Response => {
    try {
      return answer(request);
    } catch (error) {
      // A bug here must not take the master down, nor go unsaid.
      log.error(`admin endpoint: ${request.url} failed: ${describe(error)}`);
      return reply(500, "internal error\n");
    }
  };
  let server;
  try {
    server = await runtime.serve({ ...address, reusePort: false }, guarded);
  } catch (error) {
    throw new Error(
      `Cannot serve the admin endpoint on ${address.hostname}:${address.port}: ${
        describe(error)
      }`,
      { cause: error },
    );
  }
  const host = server.hostname.includes(":")
    ? `[${server.hostname}]`
    : server.hostname;
  const url = `http://${host}:${server.port}`;
  log.info(`admin endpoint on ${url} (${PATHS.join(" ")})`);
  return { url, close: () => server.shutdown() };
}

function reply(
  status: number,
  body: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: { "content-type": TEXT, "cache-control": "no-store", ...headers },
  });
}
