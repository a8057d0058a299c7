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
import type { HttpServerHandle, Runtime, Timer } from "./runtime/mod.ts";
import type { Logger } from "./types.ts";

/** A running admin endpoint. */
export interface AdminServer {
  /** Stops it; in-flight requests are answered first. */
  close(): Promise<void>;
}

/** How often a taking-over master tries the admin port again. */
const RETRY_MS = 250;

const TEXT = "text/plain; charset=utf-8";
const PATHS = ["/metrics", "/healthz", "/readyz", "/status"];

/**
 * Serves the endpoint of `pool` on `address`; throws, before any worker is
 * spawned, when it cannot listen there. With `takeover`, a busy port is
 * the pool taken over's, probably: it is tried again until that pool's
 * master exits.
 */
export async function serveAdmin(
  runtime: Runtime,
  address: { port: number; hostname: string },
  pool: Pool,
  log: Logger,
  takeover: boolean,
): Promise<AdminServer> {
  // When the master process started: what process_start_time_seconds says.
  const startTime = Math.round(Date.now() - runtime.now()) / 1000;
  const answer = (request: Request): Response => {
    // Relative on Bun for an HTTP/1.0 request without a Host header.
    const path = new URL(request.url, "http://admin").pathname;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return reply(405, `${request.method} not allowed: use GET\n`, {
        allow: "GET, HEAD",
      });
    }
    switch (path) {
      case "/metrics":
        return reply(
          200,
          renderMetrics(
            pool.status(),
            runtime.usage(),
            startTime,
            pool.notReady() === null,
          ),
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
        return why === null
          ? reply(200, `ready: ${pool.readyCount()} of ${pool.size} workers\n`)
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
  const where = `${address.hostname}:${address.port}`;
  let closed = false;
  let timer: Timer | undefined;
  let server: HttpServerHandle | null = null;
  const listen = async () => {
    const bound = await runtime.serve({
      ...address,
      reusePort: false,
      // Out of file descriptors (a flood of idle connections, on Deno).
      onFailure: (error) =>
        log.error(
          `the admin endpoint stopped: ${
            describe(error)
          }; serving it again in a second`,
        ),
    }, guarded);
    if (closed) return void await bound.shutdown();
    server = bound;
    const host = bound.hostname.includes(":")
      ? `[${bound.hostname}]`
      : bound.hostname;
    log.info(
      `admin endpoint on http://${host}:${bound.port} (${PATHS.join(" ")})`,
    );
  };
  try {
    await listen();
  } catch (error) {
    if (!takeover) {
      throw new Error(
        `Cannot serve the admin endpoint on ${where}: ${describe(error)}`,
        { cause: error },
      );
    }
    // Taking over: again and again, until the old master let go of it.
    log.info(
      `the admin endpoint's ${where} is busy (${
        describe(error)
      }): the pool taken over holds it, probably; trying again every ${RETRY_MS} ms`,
    );
    const retry = () => {
      timer = runtime.setTimeout(() => {
        if (!closed) listen().catch(retry);
      }, RETRY_MS);
    };
    retry();
  }
  return {
    close: async () => {
      closed = true;
      runtime.clearTimeout(timer);
      await server?.shutdown();
    },
  };
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
