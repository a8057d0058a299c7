/**
 * The worker side of a pool: what `Supervisor.main()` does in a process the
 * master spawned. Connects the control channel, forwards logs, beats, maps
 * signals to the lifecycle, and leaves when the master is gone.
 *
 * @module
 */
import { ChannelClient, type WireRecord } from "./_channel.ts";
import { BootError, describe, EXIT_BOOT_ERROR } from "./errors.ts";
import { createLogger, type LogRecord, toJsonSafe } from "./logging.ts";
import { WORKER_ENV } from "./_pool.ts";
import type { Runtime } from "./runtime/mod.ts";
import { setLogSink, type WorkerBase } from "./worker.ts";

/** What the master tells a worker process through its environment. */
export interface WorkerEnv {
  id: number;
  socket: string;
  token: string;
  heartbeatInterval: number;
  gracefulTimeout: number;
}

/** How long a leaving worker waits for its last frames to go out. */
const FLUSH_MS = 2000;

/**
 * Reads (and removes, so the worker's own children do not inherit them) the
 * variables of a worker process; null in the master.
 */
export function takeWorkerEnv(runtime: Runtime): WorkerEnv | null {
  const id = runtime.getEnv(WORKER_ENV.id);
  if (id === undefined) return null;
  const value = (name: string) => {
    const text = runtime.getEnv(name) ?? "";
    runtime.deleteEnv(name);
    return text;
  };
  return {
    id: Number(value(WORKER_ENV.id)),
    socket: value(WORKER_ENV.socket),
    token: value(WORKER_ENV.token),
    heartbeatInterval: Number(value(WORKER_ENV.heartbeat)) || 1000,
    gracefulTimeout: Number(value(WORKER_ENV.graceful)) || 30000,
  };
}

/** Runs one worker's lifecycle under a master; resolves with the exit code. */
export async function runWorker(
  runtime: Runtime,
  create: (id: number) => WorkerBase,
  env: WorkerEnv,
): Promise<number> {
  const who = `worker ${env.id} (pid ${runtime.pid})`;
  let client: ChannelClient;
  try {
    client = await ChannelClient.connect(runtime, env.socket, {
      t: "hello",
      id: env.id,
      pid: runtime.pid,
      token: env.token,
    });
  } catch (error) {
    console.error(
      `workerpool: ${who} cannot reach its master: ${describe(error)}`,
    );
    return 1;
  }
  const forward = (record: LogRecord) =>
    client.send({ t: "log", record: toWire(record) });
  const log = createLogger("workerpool.worker", forward);
  const beat = setInterval(
    () => client.send({ t: "hb" }),
    env.heartbeatInterval,
  );
  let code = 0;
  try {
    // A factory that throws is a boot error as much as a failing onStart.
    const worker = bootErrorOnThrow(env.id, () => create(env.id));
    setLogSink(worker, forward);
    worker.onStart(async () => {
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
      if (worker.isRunning()) client.send({ t: "stopping", signal });
      if (signal === "SIGTERM") worker.terminate();
      else worker.interrupt();
    };
    runtime.onSignal("SIGTERM", () => onSignal("SIGTERM"));
    runtime.onSignal("SIGINT", () => onSignal("SIGINT"));
    client.closed.then(() => {
      if (!worker.isRunning()) return;
      console.error(`workerpool: ${who}: the master is gone; shutting down`);
      removeControlDir(runtime, env.socket);
      worker.terminate();
      // An orphan must go even if its main() ignores the stop.
      const timer = setTimeout(() => runtime.exit(1), env.gracefulTimeout);
      runtime.unrefTimer(timer);
    });
    await worker.start();
  } catch (error) {
    if (error instanceof BootError) {
      code = EXIT_BOOT_ERROR;
      console.error(`workerpool: ${who}: ${error.message}`);
      client.send({ t: "boot-error", message: describe(error.cause) });
    } else {
      code = 1;
      console.error(`workerpool: ${who} failed:`, error);
      log.error(`${who} failed: ${describe(error)}`);
    }
  } finally {
    clearInterval(beat);
  }
  await withTimeout(client.flush(), FLUSH_MS);
  client.close();
  return code;
}

/**
 * A master killed with SIGKILL cannot remove its private directory; its
 * workers can, once they know it is gone. Only a directory named as the
 * master names it is touched.
 */
function removeControlDir(runtime: Runtime, socket: string): void {
  const dir = socket.slice(0, socket.lastIndexOf("/"));
  if (!/\/workerpool-[^/]+$/.test(dir)) return;
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

function bootErrorOnThrow<T>(id: number, create: () => T): T {
  try {
    return create();
  } catch (error) {
    throw new BootError(id, error);
  }
}

function toWire(record: LogRecord): WireRecord {
  return {
    msg: record.msg,
    args: toJsonSafe(record.args),
    datetime: record.datetime.getTime(),
    level: record.level,
    levelName: record.levelName,
    loggerName: record.loggerName,
  };
}

async function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise,
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}
