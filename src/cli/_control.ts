/**
 * `workerpool status|reload|scale|stop -p FILE`: acting on a running pool,
 * found through its pidfile. The master's pid names its control directory;
 * a command is one frame on its control socket, answered once the work is
 * done (a reload finished, the new size ready) or failed. `stop` is a
 * SIGTERM, and waits until the master has exited.
 *
 * @module
 */
import { encodeFrame, readFrames } from "../_frames.ts";
import { readPid } from "../_pidfile.ts";
import { connectMaster, isLiveMaster } from "../_port_lock.ts";
import type { ControlReply, ControlRequest } from "../_protocol.ts";
import { plural } from "../_text.ts";
import { describe } from "../errors.ts";
import type { Runtime } from "../runtime/mod.ts";
import type { PoolStatus, WorkerInfo } from "../types.ts";
import {
  CONTROL_FLAGS,
  helpText,
  parseFlags,
  STATUS_FLAGS,
  UsageError,
} from "./_flags.ts";

/** A command that could not do its work: exit code 1, with the reason. */
export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CommandError";
  }
}

/** The `--help` of each control command. */
export const CONTROL_HELP: Record<string, string> = {
  status: helpText(
    "workerpool status -p FILE [--json]",
    "Shows the pool whose master's pid is in FILE: one line per worker.",
    STATUS_FLAGS,
    [
      "workerpool status -p app.pid",
      "workerpool status -p app.pid --json | jq .ready",
    ],
  ),
  reload: helpText(
    "workerpool reload -p FILE",
    [
      "A rolling reload: each worker is replaced by a new process of the app, read",
      "again from disk, once that one is ready. Waits until it is done; exits 1",
      "(keeping the old workers) when a new one cannot start.",
    ].join("\n"),
    CONTROL_FLAGS,
    ["workerpool reload -p app.pid"],
  ),
  scale: helpText(
    "workerpool scale N|+N|-N -p FILE",
    "Sets the number of workers (or adds, or removes, some); waits until the pool has them, ready.",
    CONTROL_FLAGS,
    [
      "workerpool scale 8 -p app.pid",
      "workerpool scale +1 -p app.pid",
      "workerpool scale -2 -p app.pid",
    ],
  ),
  stop: helpText(
    "workerpool stop -p FILE",
    "Stops the pool gracefully (SIGTERM: the workers drain) and waits until the master has exited.",
    CONTROL_FLAGS,
    ["workerpool stop -p app.pid"],
  ),
};

/** Runs a control command; resolves with the exit code. */
export async function controlCommand(
  runtime: Runtime,
  command: "status" | "reload" | "scale" | "stop",
  args: string[],
): Promise<number> {
  // `scale -2`: a negative number is the size, not a flag.
  let size: string | null = null;
  if (command === "scale") {
    const index = args.findIndex((arg) => /^[+-]?\d+$/.test(arg));
    if (index !== -1) size = args.splice(index, 1)[0] ?? null;
  }
  const flags = command === "status" ? STATUS_FLAGS : CONTROL_FLAGS;
  const { values, positionals } = parseFlags(command, flags, args);
  if (values["help"]) {
    console.log(CONTROL_HELP[command]);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(
      command,
      `unexpected argument ${JSON.stringify(positionals[0])}`,
    );
  }
  if (command === "scale" && size === null) {
    throw new UsageError(command, "missing the size: N, +N or -N");
  }
  if (
    size !== null && /^\d/.test(size) &&
    (Number(size) < 1 || Number(size) > 1024)
  ) {
    throw new UsageError(
      command,
      `bad size ${size}: a pool has 1 to 1024 workers`,
    );
  }
  const pidfile = values["pid"] as string | undefined;
  if (pidfile === undefined) {
    throw new UsageError(command, "missing -p FILE, the pool's pidfile");
  }
  const pid = masterPid(runtime, pidfile);
  const deadline = values["timeout"] === undefined
    ? Infinity
    : performance.now() + (values["timeout"] as number);
  const started = performance.now();
  const took = () => `${Math.round(performance.now() - started)} ms`;
  switch (command) {
    case "status": {
      const status = await ask(
        runtime,
        pid,
        { t: "ctl", cmd: "status" },
        deadline,
      );
      console.log(
        values["json"]
          ? JSON.stringify(status, null, 2)
          : statusTable(status, pidfile),
      );
      return 0;
    }
    case "reload": {
      const status = await ask(
        runtime,
        pid,
        { t: "ctl", cmd: "reload" },
        deadline,
      );
      console.log(
        `reloaded ${
          plural(status.size, "worker")
        } of master pid ${pid} in ${took()}`,
      );
      return 0;
    }
    case "scale": {
      const relative = /^[+-]/.test(size!);
      const status = await ask(runtime, pid, {
        t: "ctl",
        cmd: "scale",
        size: Number(size),
        relative,
      }, deadline);
      console.log(
        `master pid ${pid} has ${
          plural(status.size, "worker")
        }, ready, after ${took()}`,
      );
      return 0;
    }
    case "stop":
      // A pid reused by another program since the master died must never
      // get the signal: only a master that answers on its socket does.
      if (!(await isLiveMaster(runtime, pid))) {
        throw new CommandError(
          `pid ${pid} (from ${pidfile}) is not a workerpool master, or not one of this TMPDIR (${runtime.tempDir()}): no control socket of it answers; not sending it SIGTERM`,
        );
      }
      runtime.kill(pid, "SIGTERM");
      await exited(runtime, pid, deadline);
      console.log(`master pid ${pid} stopped in ${took()}`);
      return 0;
  }
}

/** The live master named by `pidfile`; throws a {@linkcode CommandError}. */
function masterPid(runtime: Runtime, pidfile: string): number {
  let pid;
  try {
    pid = readPid(runtime, pidfile);
  } catch (error) {
    throw new CommandError(`cannot read ${pidfile}: ${describe(error)}`);
  }
  if (pid === null) {
    throw new CommandError(
      runtime.readTextFile(pidfile) === null
        ? `no pidfile at ${pidfile} (is the pool running, started with -p ${pidfile}?)`
        : `${pidfile} holds no pid`,
    );
  }
  if (!runtime.isAlive(pid)) {
    throw new CommandError(
      `master pid ${pid} (from ${pidfile}) is not running`,
    );
  }
  return pid;
}

/**
 * Sends `request` to master `pid` and waits for its answer: the pool's
 * status after the work, or a {@linkcode CommandError} with the reason.
 */
async function ask(
  runtime: Runtime,
  pid: number,
  request: ControlRequest,
  deadline: number,
): Promise<PoolStatus> {
  const connection = await connectMaster(runtime, pid);
  if (connection === null) {
    throw new CommandError(
      `cannot reach master pid ${pid}: no control socket of it in ${runtime.tempDir()} (run this with the master's TMPDIR)`,
    );
  }
  try {
    let reply: ControlReply | null = null;
    const read = readFrames(connection, (frame) => {
      reply ??= frame as ControlReply;
      connection.close();
    }).catch(() => {});
    await connection.write(encodeFrame(request));
    await withDeadline(
      read,
      deadline - performance.now(),
      () =>
        new CommandError(
          `master pid ${pid} did not answer in time (--timeout); ${
            request.cmd === "status"
              ? "it may be paused"
              : `the ${request.cmd} goes on in the master (see workerpool status)`
          }`,
        ),
    );
    if (reply === null) {
      throw new CommandError(
        `master pid ${pid} closed the connection without an answer (is it stopping?)`,
      );
    }
    const answer = reply as ControlReply;
    if (!answer.ok) throw new CommandError((answer as { error: string }).error);
    return answer.status as PoolStatus;
  } catch (error) {
    if (error instanceof CommandError) throw error;
    throw new CommandError(
      `cannot talk to master pid ${pid}: ${describe(error)}`,
    );
  } finally {
    connection.close();
  }
}

/**
 * `promise`, or a rejection with `late()` once `ms` have passed (never
 * with `ms` Infinity).
 */
export function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  late: () => Error,
): Promise<T> {
  if (ms === Infinity) return promise;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), Math.max(0, ms));
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Waits until process `pid` has exited. */
async function exited(
  runtime: Runtime,
  pid: number,
  deadline: number,
): Promise<void> {
  while (runtime.isAlive(pid)) {
    if (performance.now() > deadline) {
      throw new CommandError(
        `master pid ${pid} still runs (--timeout); it was sent SIGTERM`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The status as a person reads it: a line for the pool, one per worker. */
export function statusTable(status: PoolStatus, pidfile: string): string {
  const rows = [[
    "ID",
    "PID",
    "STATE",
    "UPTIME",
    "RESTARTS",
    "RSS",
    "REQUESTS",
  ]];
  for (const worker of status.workers) rows.push(row(worker));
  const widths = rows[0]!.map((_, column) =>
    Math.max(...rows.map((r) => r[column]!.length))
  );
  const lines = rows.map((r) =>
    r.map((cell, i) =>
      i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)
    ).join("  ")
  );
  return [
    `master pid ${status.pid} (${pidfile}), ${status.runtime}: ${status.state}, ${status.ready} of ${
      plural(status.size, "worker")
    } ready, up ${duration(status.uptime)}, ${
      plural(status.reloads, "reload")
    } (${status.reloadFailures} failed), ${
      plural(status.totals.requests, "request")
    }`,
    ...lines,
  ].join("\n");
}

function row(worker: WorkerInfo): string[] {
  const rss = worker.metrics?.rss;
  const requests = worker.metrics?.requests;
  return [
    String(worker.id),
    worker.pid === null ? "-" : String(worker.pid),
    worker.state,
    worker.pid === null ? "-" : duration(worker.uptime),
    String(worker.restarts),
    rss == null ? "-" : `${(rss / 1024 / 1024).toFixed(1)}M`,
    requests == null ? "-" : String(requests),
  ];
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) {
    return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  }
  const h = Math.floor(s / 3600);
  return h < 48
    ? `${h}h${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`
    : `${Math.floor(h / 24)}d`;
}
