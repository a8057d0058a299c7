// The rolling reload under load: requests that fail while a pool of 4 has
// every worker's process replaced, 10 times in a row, next to PM2 reloading a
// node:cluster app of 4 under the same load, with Linux's tcp_migrate_req off
// and on; and how long one full reload takes.
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import {
  childrenOf,
  distinctAnswers,
  fixture,
  freePort,
  isAlive,
  median,
  Proc,
  ROOT,
  type RuntimeName,
  sleep,
  until,
} from "./_lib.ts";
import {
  type BenchOptions,
  type Figure,
  ratioFigure,
  startPool,
} from "./figures.ts";

/** Reloads in one series, each waited for before the next. */
const RELOADS = 10;
const PM2 = `${ROOT}node_modules/.bin/pm2`;
const PM2_APP = fixture("pm2_app.cjs");
/**
 * Whether Linux hands the connections queued on a closing SO_REUSEPORT
 * listener to another listener of the port (1) or resets them (0).
 */
const MIGRATE = "/proc/sys/net/ipv4/tcp_migrate_req";

/** What wrk saw over one series of reloads, and how long they took. */
interface Series {
  failed: number;
  requests: number;
  /** The median time of one full reload in the series, in ms. */
  reloadMs: number;
}

type Migrate = 0 | 1;

/**
 * Failed requests over 10 reloads of a pool of 4 under load, next to 10
 * `pm2 reload` of 4 node:cluster instances under the same load, with
 * tcp_migrate_req off and on (where it can be set); and the time of one
 * full reload. Series alternate between the pool and PM2 (ABBA), and each
 * one is paired with PM2's under the same setting.
 */
export async function reload(
  runtime: RuntimeName,
  o: BenchOptions,
): Promise<Figure[]> {
  const runs = Math.min(o.runs, 3);
  const pool: Record<Migrate, Series[]> = { 0: [], 1: [] };
  const pm2: Record<Migrate, Series[]> = { 0: [], 1: [] };
  for (let run = 0; run < runs; run++) {
    for (const migrate of [0, 1] as const) {
      const order = [
        async () => void pool[migrate].push(await poolSeries(runtime)),
        async () => void pm2[migrate].push(await pm2Series()),
      ];
      await withMigrate(migrate, async () => {
        for (
          const measure of (run + migrate) % 2 ? [...order].reverse() : order
        ) {
          await measure();
        }
      });
    }
  }
  const figures: Figure[] = [];
  for (const migrate of [0, 1] as const) {
    if (pool[migrate].length === 0) continue;
    figures.push(failures(runtime, migrate, pool[migrate], pm2[migrate]));
  }
  const times = (series: Record<Migrate, Series[]>) =>
    [...series[0], ...series[1]].map((s) => s.reloadMs);
  const time = ratioFigure(
    "full reload of a pool of 4 under load",
    runtime,
    "ms",
    times(pool),
    {
      label: "`pm2 reload` of 4 node:cluster instances, until the CLI returns",
      values: times(pm2),
    },
    { target: "report", better: "lower", goal: null },
  );
  time.note =
    `median of ${RELOADS} per series; workerpool 1 worker at a time (the master's "replaced in"), PM2 2 at a time`;
  figures.push(time);
  return figures;
}

/**
 * The pool's failed requests against PM2's under the same tcp_migrate_req.
 * With it on the goal is none at all (a ratio of 0); with it off, fewer
 * than PM2 (a ratio below 1).
 */
function failures(
  runtime: RuntimeName,
  migrate: Migrate,
  pool: Series[],
  pm2: Series[],
): Figure {
  const values = pool.map((s) => s.failed);
  const base = pm2.map((s) => s.failed);
  const [mine, theirs] = [median(values), median(base)];
  const ratio = theirs > 0 ? mine / theirs : mine === 0 ? 0 : Infinity;
  const total = (series: Series[], key: "failed" | "requests") =>
    series.reduce((sum, s) => sum + s[key], 0);
  return {
    name:
      `failed requests over ${RELOADS} reloads of a pool of 4 under load, tcp_migrate_req=${migrate}`,
    runtime,
    unit: "failed requests",
    values,
    baseline: {
      label: `PM2 reloading 4 node:cluster instances ${RELOADS} times`,
      values: base,
    },
    score: `${mine} vs ${theirs} (${
      Number.isFinite(ratio) ? ratio.toFixed(3) : "∞"
    }×)`,
    target: migrate === 1 ? "0 failed" : "fewer than PM2",
    met: migrate === 1
      ? values.every((v) => v === 0)
      : mine === 0 || mine < theirs,
    better: "lower",
    ratio,
    goal: migrate === 1 ? 0 : 1,
    limit: null,
    note: `${total(pool, "failed")} of ${
      total(pool, "requests")
    } requests; PM2 ${total(pm2, "failed")} of ${total(pm2, "requests")}`,
  };
}

/** One series: a pool of 4 reloaded by SIGHUP under load. */
async function poolSeries(runtime: RuntimeName): Promise<Series> {
  const { pool, port } = await startPool(
    runtime,
    { WORKERS: "4", LOG_LEVEL: "INFO" },
    4,
  );
  try {
    return await underLoad(port, async () => {
      const times: number[] = [];
      for (let n = 1; n <= RELOADS; n++) {
        process.kill(pool.pid, "SIGHUP");
        const [line, replaced, ms] = await pool.waitFor(
          new RegExp(
            `reload ${n} done: (\\d+) workers? replaced in (\\d+) ms|Reload ${n} failed: .*`,
          ),
        );
        if (replaced !== "4") throw new Error(`Cannot bench: ${line}`);
        times.push(Number(ms));
      }
      return times;
    });
  } finally {
    await pool.stop();
  }
}

/** One series: `pm2 reload` of a node:cluster app of 4 under load. */
async function pm2Series(): Promise<Series> {
  if (!existsSync(PM2)) {
    throw new Error(`Cannot bench: ${PM2} is missing; run npm install`);
  }
  const port = await freePort();
  const home = mkdtempSync(join(tmpdir(), "workerpool-bench-pm2-"));
  pm2Homes.add(home);
  const env = {
    // A daemon of its own, in a directory removed after it.
    PM2_HOME: home,
    PORT: String(port),
    // No banner, no version check calling PM2's servers.
    PM2_DISCRETE_MODE: "true",
    PM2_DISABLE_VERSION_CHECK: "true",
  };
  try {
    await pm2(env, ["start", PM2_APP, "-i", "4", "--name", "bench"]);
    await distinctAnswers(port, 4);
    return await underLoad(port, async () => {
      const times: number[] = [];
      for (let n = 0; n < RELOADS; n++) {
        const start = performance.now();
        await pm2(env, ["reload", "bench"]);
        times.push(performance.now() - start);
      }
      return times;
    });
  } finally {
    await pm2Kill(env);
  }
}

/** Runs the pm2 CLI with `env`; rejects if it fails. */
async function pm2(env: Record<string, string>, args: string[]) {
  const cli = new Proc(PM2, args, env);
  const code = await cli.exited;
  if (code !== 0) {
    throw new Error(
      `pm2 ${args.join(" ")} exited with ${code}: ${cli.output.slice(-500)}`,
    );
  }
}

/** The PM2 homes in use, whose daemons must not outlive the bench. */
const pm2Homes = new Set<string>();

/**
 * `pm2 kill`, then makes sure that its daemon (PM2_HOME/pm2.pid) and the
 * daemon's children, the app's instances, are gone, and removes PM2_HOME.
 */
async function pm2Kill(env: { PM2_HOME: string }): Promise<void> {
  const daemon = daemonPid(env.PM2_HOME);
  if (daemon !== null && isAlive(daemon)) {
    const procs = [daemon, ...childrenOf(daemon)];
    try {
      await pm2(env, ["kill"]);
      // The daemon exits shortly after `pm2 kill` returned.
      await until("PM2 to exit", () => !procs.some(isAlive), 5000, 10);
    } catch (error) {
      console.error(`PM2 did not stop by itself: ${error}`);
    }
  }
  pm2KillNow(env.PM2_HOME);
}

/** SIGKILL to what is left of PM2's daemon and its children; no PM2_HOME. */
function pm2KillNow(home: string): void {
  const daemon = daemonPid(home);
  if (daemon !== null && isAlive(daemon)) {
    for (const pid of [daemon, ...childrenOf(daemon)]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch (error) {
        if ((error as { code?: string }).code !== "ESRCH") throw error;
      }
    }
  }
  rmSync(home, { recursive: true, force: true });
  pm2Homes.delete(home);
}

function daemonPid(home: string): number | null {
  try {
    return Number(readFileSync(join(home, "pm2.pid"), "utf8").trim()) || null;
  } catch {
    return null;
  }
}

/**
 * Runs `reloads` under wrk's load on `port` (1 thread, 32 keep-alive
 * connections, as for throughput), from a second after the load began until
 * 2 s after the last reload ended, so that the old processes finish under
 * load too. Failed requests: wrk's socket errors of every kind (connect,
 * read, write, timeout) plus answers other than 2xx or 3xx.
 */
async function underLoad(
  port: number,
  reloads: () => Promise<number[]>,
): Promise<Series> {
  const wrk = new Proc("wrk", [
    "-t1",
    "-c32",
    "-d3600s",
    `http://127.0.0.1:${port}/`,
  ], {});
  try {
    await sleep(1000);
    const times = await reloads();
    await sleep(2000);
    // On SIGINT wrk stops and prints its report.
    wrk.kill("SIGINT");
    await wrk.exited;
    return { ...wrkFailures(wrk.output), reloadMs: median(times) };
  } catch (error) {
    await wrk.stop();
    throw error;
  }
}

/** Failed and total requests in wrk's report. */
function wrkFailures(
  text: string,
): { failed: number; requests: number } {
  const requests = text.match(/(\d+) requests in /);
  if (!requests) throw new Error(`wrk failed: ${text}`);
  const sockets = text.match(
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/,
  );
  const other = text.match(/Non-2xx or 3xx responses: (\d+)/);
  const counts = [...sockets?.slice(1) ?? [], other?.[1] ?? "0"];
  return {
    failed: counts.reduce((sum, n) => sum + Number(n), 0),
    requests: Number(requests[1]),
  };
}

/** tcp_migrate_req as it was before the bench changed it, while changed. */
let migrateBefore: string | null = null;

/**
 * Runs `measure` with tcp_migrate_req set to `value`, then puts the old
 * value back, also when `measure` fails. Where the setting cannot be read
 * or changed (Linux before 5.14, not root) it says so and measures nothing.
 */
async function withMigrate(
  value: Migrate,
  measure: () => Promise<void>,
): Promise<void> {
  let before: string;
  try {
    before = readFileSync(MIGRATE, "utf8").trim();
    if (before !== String(value)) writeFileSync(MIGRATE, String(value));
  } catch (error) {
    console.error(`skipped: cannot set ${MIGRATE} to ${value}: ${error}`);
    return;
  }
  if (before !== String(value)) migrateBefore = before;
  try {
    await measure();
  } finally {
    restoreMigrate();
  }
}

function restoreMigrate(): void {
  if (migrateBefore === null) return;
  writeFileSync(MIGRATE, migrateBefore);
  migrateBefore = null;
}

// However the bench ends (Ctrl-C and SIGTERM exit through _lib.ts), the
// setting is as it was and no PM2 daemon is left.
process.on("exit", () => {
  restoreMigrate();
  for (const home of [...pm2Homes]) pm2KillNow(home);
});
