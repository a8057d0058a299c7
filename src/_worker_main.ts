/**
 * The worker side of a pool: what `Supervisor.main()` does in a process the
 * master spawned. Connects the control channel, forwards logs, beats, maps
 * signals to the lifecycle, and leaves when the master is gone.
 *
 * @module
 */
import { ChannelClient } from "./_channel_client.ts";
import {
  controlDirOf,
  ExitCode,
  IGNORED_SIGNALS,
  MAX_RECORD_BYTES,
  type WireRecord,
  type WorkerEnv,
} from "./_protocol.ts";
import { BootError, describe } from "./errors.ts";
import { PortHeldError, setPoolOfWorker } from "./_port_lock.ts";
import { requestCounts, shutdownServers } from "./serve.ts";
import {
  createLogger,
  formatArg,
  setProcessSink,
  toJsonSafe,
} from "./logging.ts";
import type { Runtime, Timer } from "./runtime/mod.ts";
import type { LogRecord } from "./types.ts";
import type { WorkerBase, WorkerFactory } from "./worker.ts";

/** Runs one worker's lifecycle under a master; resolves with the exit code. */
export async function runWorker(
  runtime: Runtime,
  create: WorkerFactory,
  env: WorkerEnv,
): Promise<number> {
  const who = `worker ${env.id} (pid ${runtime.pid})`;
  // Not awaited: the worker starts while the connection is made.
  const client = new ChannelClient(runtime, env.socket, {
    t: "hello",
    id: env.id,
    pid: runtime.pid,
    token: env.token,
  });
  const forward = (record: LogRecord) =>
    client.send({ t: "log", record: toWire(record) });
  setProcessSink(forward);
  setPoolOfWorker({
    masterPid: env.masterPid,
    socket: env.socket,
    takeover: env.takeover,
    report: (port, holder) => client.send({ t: "port", port, holder }),
  });
  const log = createLogger("workerpool.worker", forward);
  let beat: Timer | undefined;
  /** When the next beat's timer is due: how late it fires is the lag. */
  let due = 0;
  const heartbeat = (last = false) => {
    const lag = last ? 0 : Math.max(0, runtime.now() - due);
    const { rss, heapUsed, cpuTime } = runtime.usage();
    const requests = requestCounts();
    client.send({
      t: "hb",
      rss,
      heap: heapUsed,
      ...(cpuTime !== null && { cpu: Math.round(cpuTime) }),
      lag: Math.round(lag * 100) / 100,
      ...(requests && { req: requests.served, fly: requests.inFlight }),
    });
    if (!last) schedule();
  };
  const schedule = () => {
    due = runtime.now() + env.heartbeatInterval;
    beat = runtime.setTimeout(() => heartbeat(), env.heartbeatInterval);
  };
  schedule();
  let worker: WorkerBase | null = null;
  let code: number = ExitCode.ok;
  /** Said on stderr if the master cannot hear it. */
  let lastWords: string | null = null;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let saidBye = false;
  client.closed.then(
    async () => {
      if (saidBye) return;
      const gone = await masterGone(runtime, env);
      if (!gone) code = ExitCode.channelLost;
      leave(
        gone
          ? `${who}: the master is gone; shutting down`
          : `${who} lost its control connection; shutting down`,
      );
    },
    (error) => {
      // After the goodbye the master closes, maybe with frames unread.
      if (saidBye) return;
      code = ExitCode.channelLost;
      leave(`${who} cannot reach its master: ${describe(error)}`);
    },
  );
  // Stops the worker once the channel is gone; bounded, as an orphan must
  // go even if its main() ignores the stop.
  const leave = (why: string) => {
    if (saidBye || worker !== null && !worker.isRunning()) return;
    console.error(`workerpool: ${why}`);
    void worker?.terminate();
    deadline = setTimeout(() => runtime.exit(code), env.gracefulTimeout);
    runtime.unrefTimer(deadline);
  };
  try {
    // A factory that throws is a boot error as much as a failing onStart.
    worker = bootErrorOnThrow(env.id, () => create(env.id));
    const started = worker;
    started.onStart(async () => {
      // Stopped during its start: it never serves, so it is not ready.
      if (!started.isRunning()) return;
      client.send({ t: "ready" });
      // Out before main() runs: a sync main() holds the event loop.
      await client.flush();
    });
    // Never removed: a signal that arrives while the last frames go out
    // must not kill the process by its default action.
    const onSignal = (signal: "SIGTERM" | "SIGINT") => {
      // The master learns the stop was not its own (a Ctrl-C reaching the
      // whole process group, systemd signalling the whole cgroup), so it
      // does not rush to replace a worker it is about to stop anyway.
      if (started.isRunning()) client.send({ t: "stopping", signal });
      if (signal === "SIGTERM") started.terminate();
      else started.interrupt();
    };
    runtime.onSignal("SIGTERM", () => onSignal("SIGTERM"));
    runtime.onSignal("SIGINT", () => onSignal("SIGINT"));
    // A hangup or a USR2 sent to the whole process group must not take
    // every worker down at once.
    for (const signal of IGNORED_SIGNALS) runtime.onSignal(signal, () => {});
    await started.start();
  } catch (error) {
    if (error instanceof BootError) {
      code = ExitCode.bootError;
      const cause = error.cause;
      const stack = cause instanceof Error ? cause.stack ?? null : null;
      // Each cut to a quarter of a record: the frame always fits.
      const fit = (text: string) => cutText(text, MAX_RECORD_BYTES / 4);
      client.send({
        t: "boot-error",
        message: fit(describe(cause)),
        stack: stack === null ? null : fit(stack),
        fatal: causedBy(cause, PortHeldError),
      });
      lastWords = `workerpool: ${who}: ${error.message}\n${stack ?? ""}`;
    } else {
      code ||= ExitCode.failure;
      console.error(`workerpool: ${who} failed:`, error);
      log.error(`${who} failed: ${describe(error)}`);
    }
  } finally {
    // Servers still open (one stopped by its signal, one never stopped)
    // answer what they took before the process goes; heartbeats go on.
    await shutdownServers().catch((error) =>
      log.error(`Cannot shut a server down: ${describe(error)}`)
    );
    runtime.clearTimeout(beat);
    clearTimeout(deadline);
  }
  // The master answers the goodbye by closing the channel: then it has read
  // every frame before it (a boot error's cause), and this process may go.
  // A process that exits first leaves its last frames unread behind its
  // exit, which the master may see first.
  saidBye = true;
  // The last figures: requests served since the last beat count too.
  heartbeat(true);
  client.send({ t: "bye", code });
  // As long as the master would wait for this process anyway: a slow
  // logger in the master must not cost the last records.
  await withTimeout(client.closed.catch(() => {}), env.gracefulTimeout);
  if (client.unsent > 0) {
    console.error(
      `workerpool: ${who}: the master did not take the last ${client.unsent} frames in time; they are lost`,
    );
  }
  if (!client.connected && lastWords !== null) console.error(lastWords);
  client.close();
  return code;
}

/** How long a dying master may still look alive once its sockets closed. */
const MASTER_EXIT_MS = 200;

/**
 * Whether the channel ended because the master is gone (then its private
 * directory is removed, which it could not do). A connection can end while
 * the master lives (it dropped a worker that broke the protocol, or a flood
 * of connections crowded this one out). A killed process closes its files
 * before it turns into a zombie, so a master that still looks alive is
 * asked again, briefly.
 */
async function masterGone(
  runtime: Runtime,
  env: WorkerEnv,
): Promise<boolean> {
  for (let waited = 0; runtime.isAlive(env.masterPid); waited += 10) {
    if (waited >= MASTER_EXIT_MS) return false;
    await new Promise<void>((resolve) => runtime.setTimeout(resolve, 10));
  }
  const dir = controlDirOf(env.socket);
  if (dir !== null) {
    try {
      runtime.remove(dir);
    } catch (error) {
      console.error(
        `workerpool: cannot remove the master's directory ${dir}: ${
          describe(error)
        }`,
      );
    }
  }
  return true;
}

/** Whether `error`, or an error it was caused by, is a `type`. */
function causedBy(
  error: unknown,
  type: new (...args: never[]) => Error,
): boolean {
  let current = error;
  for (let depth = 0; current instanceof Error && depth < 8; depth++) {
    if (current instanceof type) return true;
    current = (current as Error).cause;
  }
  return false;
}

function bootErrorOnThrow<T>(id: number, create: () => T): T {
  try {
    return create();
  } catch (error) {
    throw new BootError(id, error);
  }
}

const encoder = new TextEncoder();

/**
 * A record as it travels, at most {@linkcode MAX_RECORD_BYTES} of JSON: a
 * larger one becomes its text (message and arguments), cut, ending with
 * `[… N bytes cut]`.
 */
export function toWire(record: LogRecord): WireRecord {
  const wire: WireRecord = {
    msg: record.msg,
    args: toJsonSafe(record.args),
    datetime: record.datetime.getTime(),
    level: record.level,
    levelName: record.levelName,
    loggerName: record.loggerName,
  };
  const json = JSON.stringify(wire);
  // UTF-8 takes at most 3 bytes per UTF-16 unit: most records need no count.
  if (json.length * 3 <= MAX_RECORD_BYTES) return wire;
  if (encoder.encode(json).length <= MAX_RECORD_BYTES) return wire;
  const text = [record.msg, ...record.args.map(formatArg)].join(" ");
  // Room for the other fields and the marker.
  return { ...wire, msg: cutText(text, MAX_RECORD_BYTES - 1024), args: [] };
}

/**
 * `text`, cut so that it takes at most `bytes` as a JSON string, ending
 * with `[… N bytes cut]` when it was cut.
 */
function cutText(text: string, bytes: number): string {
  // JSON takes at most 6 bytes per UTF-16 unit (\u0000).
  if (text.length * 6 <= bytes) return text;
  let keep = text.length;
  for (;;) {
    const size = encoder.encode(JSON.stringify(text.slice(0, keep))).length;
    if (size <= bytes) break;
    keep = Math.floor(keep * (bytes / size) * 0.99);
  }
  if (keep === text.length) return text;
  // Never end on half of a surrogate pair.
  const code = text.charCodeAt(keep - 1);
  if (code >= 0xd800 && code <= 0xdbff) keep--;
  const cut = encoder.encode(text.slice(keep)).length;
  return `${text.slice(0, keep)} [… ${cut} bytes cut]`;
}

async function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise,
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}
