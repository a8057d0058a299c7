// The `workerpool serve` command against what users run instead on the same
// app module (fixtures/cli_app.ts): `deno serve --parallel` on Deno, Bun's
// cluster recipe (fixtures/bun_recipe.ts) on Bun. For 2 and 4 workers: req/s
// under wrk, and the time from launch until every worker has answered.
import process from "node:process";
import {
  BIN,
  childrenOf,
  denoServeParallel,
  fixture,
  freePort,
  httpOnce,
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
  load,
  ratioFigure,
} from "./figures.ts";

const APP = fixture("cli_app.ts");
const CLI = `${ROOT}cli.ts`;
const WORKERS = [2, 4];
/** The line `workerpool serve` logs once every worker is ready. */
const READY = /(\d+) workers? ready on \S+ in (\d+) ms/;

/** A way to serve APP on `workers` instances sharing `port`. */
interface Contender {
  label(workers: number): string;
  start(port: number, workers: number): Proc;
  /** The line it logs once ready, with the time it took as group 2. */
  announces?: RegExp;
}

function workerpool(runtime: RuntimeName): Contender {
  const args = (port: number, workers: number) => [
    CLI,
    "serve",
    "-w",
    String(workers),
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    APP,
  ];
  return {
    label: (workers) => `workerpool serve -w ${workers}`,
    announces: READY,
    start: (port, workers) =>
      runtime === "deno"
        ? new Proc(BIN.deno, ["run", "-A", ...args(port, workers)], {})
        : new Proc(BIN.bun, args(port, workers), {}),
  };
}

/** What a user of `runtime` runs instead of workerpool serve. */
function peer(runtime: RuntimeName): Contender {
  if (runtime === "deno") {
    return {
      label: (workers) =>
        `deno serve --parallel, DENO_JOBS=${workers} (threads of 1 process)`,
      start: (port, workers) => denoServeParallel(APP, port, workers),
    };
  }
  return {
    label: (workers) =>
      `Bun's cluster recipe: a script spawning ${workers} reusePort servers`,
    start: (port, workers) =>
      new Proc(BIN.bun, [fixture("bun_recipe.ts")], {
        PORT: String(port),
        SERVERS: String(workers),
      }),
  };
}

/** One launch of a contender, measured. */
interface Launch {
  /** Launch → answers from every instance, in ms. */
  readyMs: number;
  reqPerSec: number;
  /** SIGTERM to the launched process → every process of its tree gone, in ms. */
  stopMs: number;
  /** The processes it ran: itself and its descendants. */
  processes: number;
  /** workerpool's own "ready in" (from its master's start), in ms; else null. */
  reportedMs: number | null;
}

/**
 * Launches `contender` with `workers` instances on a free port, times it
 * until each instance answered /pid, loads it with wrk, and stops it: SIGTERM
 * to the launched process, then every process of its tree must be gone.
 */
async function launch(
  contender: Contender,
  workers: number,
  o: BenchOptions,
): Promise<Launch> {
  const port = await freePort();
  const began = performance.now();
  const proc = contender.start(port, workers);
  // Stopped once, on every path: a second SIGTERM could reach a reused pid.
  let stopping = false;
  try {
    await instances(port, workers).catch((error) => {
      throw new Error(
        `Cannot time ${contender.label(workers)}: ${
          (error as Error).message
        }; its output ends: ${proc.output.slice(-1000)}`,
        { cause: error },
      );
    });
    const readyMs = performance.now() - began;
    const ready = contender.announces
      ? await proc.waitFor(contender.announces, 10_000)
      : null;
    const reqPerSec = load(port, o.seconds);
    stopping = true;
    const stop = await stopTree(proc);
    return {
      readyMs,
      reqPerSec,
      stopMs: stop.ms,
      processes: stop.processes,
      reportedMs: ready === null ? null : Number(ready[2]),
    };
  } finally {
    if (!stopping) await stopTree(proc);
  }
}

/** Polls /pid on fresh connections until `count` distinct instances answered. */
async function instances(port: number, count: number): Promise<void> {
  const seen = new Set<string>();
  try {
    await until(`${count} instances answering on ${port}`, async () => {
      const body = await httpOnce(port, 100, "/pid");
      if (body !== null) seen.add(body);
      return seen.size >= count;
    });
  } catch (error) {
    throw new Error(
      `${count} instances did not answer on ${port}; seen: ${
        [...seen].join(", ") || "none"
      }`,
      { cause: error },
    );
  }
}

/**
 * SIGTERMs `proc` and waits until it and every descendant it had are gone;
 * a process still there 5 s after `proc` exited is killed, and the bench
 * fails: a contender that leaves processes behind is not stopped fairly.
 */
async function stopTree(
  proc: Proc,
): Promise<{ ms: number; processes: number }> {
  const tree = [proc.pid, ...descendants(proc.pid)];
  const start = performance.now();
  await proc.stop();
  try {
    await until("every process to exit", () => !tree.some(isAlive), 5000);
  } catch (error) {
    const left = tree.filter(isAlive);
    for (const pid of left) kill(pid);
    throw new Error(
      `Cannot stop ${proc.child.spawnargs.join(" ")}: pids ${
        left.join(", ")
      } left behind`,
      { cause: error },
    );
  }
  return { ms: performance.now() - start, processes: tree.length };
}

function kill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch (error) {
    if ((error as { code?: string }).code !== "ESRCH") throw error;
  }
}

function descendants(pid: number): number[] {
  return childrenOf(pid).flatMap((child) => [child, ...descendants(child)]);
}

/**
 * For 2 and 4 workers: `workerpool serve` and its peer on `runtime`, each
 * launched `o.runs` times, in turn (ABBA), each launch timed to all
 * instances answering, then loaded with wrk, then stopped.
 */
export async function cliServe(
  runtime: RuntimeName,
  o: BenchOptions,
): Promise<Figure[]> {
  const contenders = [workerpool(runtime), peer(runtime)];
  const launches = new Map<string, Launch[]>();
  for (let run = 0; run < o.runs; run++) {
    for (const workers of WORKERS) {
      // ABBA: every other run in reverse order, so a drift of the shared
      // machine during a run does not favour whichever goes first.
      const order = run % 2 ? [...contenders].reverse() : contenders;
      for (const contender of order) {
        // The previous launch's processes are gone; let their exit settle.
        await sleep(200);
        const key = contender.label(workers);
        launches.set(key, [
          ...launches.get(key) ?? [],
          await launch(contender, workers, o),
        ]);
      }
    }
  }
  return WORKERS.flatMap((workers) => {
    const [ours, theirs] = contenders.map((c) =>
      launches.get(c.label(workers))!
    );
    const against = contenders[1].label(workers);
    const note = stopNote(ours, theirs);
    const rate = ratioFigure(
      `req/s, workerpool serve -w ${workers}`,
      runtime,
      "req/s",
      ours.map((l) => l.reqPerSec),
      { label: against, values: theirs.map((l) => l.reqPerSec) },
      { target: "report", better: "higher", goal: null },
    );
    rate.note = note;
    const ready = ratioFigure(
      `workerpool serve -w ${workers}, launch → answering from all ${workers}`,
      runtime,
      "ms",
      ours.map((l) => l.readyMs),
      { label: against, values: theirs.map((l) => l.readyMs) },
      { target: "report", better: "lower", goal: null },
    );
    const reported = ours.flatMap((l) => l.reportedMs ?? []);
    ready.note = `its own "ready in" ${
      median(reported).toFixed(0)
    } ms (from the master's start); ${note}`;
    return [rate, ready];
  });
}

/** The processes each ran and how long SIGTERM took to end them all. */
function stopNote(ours: Launch[], theirs: Launch[]): string {
  const describe = (launches: Launch[]) =>
    `${launches[0].processes} process${
      launches[0].processes > 1 ? "es" : ""
    }, SIGTERM → all gone ${
      median(launches.map((l) => l.stopMs)).toFixed(0)
    } ms`;
  return `workerpool ${describe(ours)}; peer ${describe(theirs)}`;
}
