// What a worker's heartbeats cost it, against another checkout of workerpool
// (the code before the heartbeats carried usage: 32359ec): the CPU share of
// the workers of idle pools beating every 100 ms, measured over the same
// window, with the baseline run twice so that its two pools show the noise.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  childrenOf,
  cpuSeconds,
  distinctAnswers,
  freePort,
  Proc,
  ROOT,
  type RuntimeName,
  sleep,
} from "./_lib.ts";
import { type BenchOptions, type Figure, ratioFigure } from "./figures.ts";

const WORKERS = 4;
/** A heartbeat every workerTimeout / 5: every 100 ms, to make its cost show. */
const WORKER_TIMEOUT = 500;
/** From the last pool ready to the window. */
const SETTLE_MS = 10_000;
/** The fixture, relative to a checkout: each pool loads its own mod.ts. */
const POOL = "bench/fixtures/pool.ts";

/** What `--before` is, and how to get it: said when it is missing. */
export const HEARTBEAT_BASELINE =
  "heartbeat: skipped; it needs a checkout of the code before, given as --before DIR: " +
  "git clone -q . /tmp/wp-before && git -C /tmp/wp-before checkout -q 32359ec && " +
  'ln -s "$PWD/node_modules" /tmp/wp-before/, then --only heartbeat --before /tmp/wp-before';

/**
 * The CPU share of a worker of an idle pool of 4 beating every 100 ms, this
 * checkout against the one in `before`. Each run idles three pools at once,
 * this one and two of `before` (an A/A pair), over the same window, so that
 * the shared machine's load falls on all three alike; they start in turn
 * in a rotating order. Met when this checkout's ratio to the baseline
 * (the median of per-run ratios) is no further above 1× than the two
 * baseline pools' ratio ever was from 1×.
 */
export async function heartbeat(
  runtime: RuntimeName,
  before: string,
  o: BenchOptions,
): Promise<Figure> {
  if (!existsSync(join(before, POOL))) {
    throw new RangeError(
      `Cannot bench heartbeat: ${before} is no checkout of workerpool (no ${POOL})`,
    );
  }
  const current: number[] = [];
  const baseline: number[] = [];
  const control: number[] = [];
  const pools = [
    { dir: ROOT, shares: current },
    { dir: before, shares: baseline },
    { dir: before, shares: control },
  ];
  for (let run = 0; run < o.runs; run++) {
    const order = [...pools.slice(run % 3), ...pools.slice(0, run % 3)];
    const shares = await workerShares(runtime, order.map((p) => p.dir), o);
    order.forEach((p, i) => p.shares.push(shares[i]));
  }
  const ratios = current.map((v, i) => v / baseline[i]);
  const noise = control.map((v, i) => v / baseline[i]);
  const spread = Math.max(...noise.map((r) => Math.abs(r - 1)));
  const figure = ratioFigure(
    `worker CPU over ${o.idleSeconds} s idle, heartbeat every ${
      WORKER_TIMEOUT / 5
    } ms, pool of ${WORKERS}`,
    runtime,
    "% of a core",
    current,
    { label: `the code before (${checkout(before)})`, values: baseline },
    {
      target: "within noise: ≤ 1× + the baseline's A/A spread",
      better: "lower",
      goal: 1 + spread,
    },
  );
  figure.note = `${checkout(ROOT)} against ${
    checkout(before)
  }: per-run ratios ${list(ratios)}; baseline against itself ${
    list(noise)
  } (noise ±${(spread * 100).toFixed(1)} %)`;
  return figure;
}

function list(ratios: number[]): string {
  return ratios.map((r) => r.toFixed(3)).join(", ");
}

/**
 * The CPU share of one worker (the sum over a pool's workers, divided by
 * their number) of an idle pool of each checkout in `dirs`, all measured
 * over the same `o.idleSeconds`.
 */
async function workerShares(
  runtime: RuntimeName,
  dirs: string[],
  o: BenchOptions,
): Promise<number[]> {
  const pools: Proc[] = [];
  try {
    const workers: number[][] = [];
    for (const dir of dirs) {
      const port = await freePort();
      const pool = Proc.script(runtime, join(dir, POOL), {
        PORT: String(port),
        WORKERS: String(WORKERS),
        WORKER_TIMEOUT: String(WORKER_TIMEOUT),
      });
      pools.push(pool);
      await distinctAnswers(port, WORKERS);
      workers.push(childrenOf(pool.pid));
      if (workers.at(-1)!.length !== WORKERS) {
        throw new Error(
          `Cannot bench heartbeat: a master has ${
            workers.at(-1)!.length
          } children, not ${WORKERS}`,
        );
      }
    }
    // Past start-up: a worker's first seconds cost it more (1.1 % of a core
    // in the first 3 s against 0.7 % after, Deno 2.9.6 and Bun 1.4.5), and
    // the pool started last must not be measured on that slope.
    await sleep(SETTLE_MS);
    const cpu = (pids: number[]) =>
      pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const start = workers.map(cpu);
    await sleep(o.idleSeconds * 1000);
    return workers.map((pids, i) =>
      (cpu(pids) - start[i]) / WORKERS / o.idleSeconds * 100
    );
  } finally {
    await Promise.all(pools.map((pool) => pool.stop()));
  }
}

/**
 * The short commit `dir` has checked out, with a `+` where its library
 * (mod.ts, src/) differs from that commit; its path if it is no git checkout.
 */
function checkout(dir: string): string {
  const git = (...args: string[]) => spawnSync("git", ["-C", dir, ...args]);
  const head = git("rev-parse", "--short", "HEAD");
  if (head.status !== 0) return dir;
  const changed = git("status", "--porcelain", "--", "mod.ts", "src");
  return head.stdout.toString().trim() +
    (changed.stdout.toString().trim() === "" ? "" : "+");
}
