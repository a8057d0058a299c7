/**
 * The master side of `Supervisor.main()`: the pidfile, the master's
 * callbacks, its signals, the pool, the daemon's report, and the exit code.
 * It mirrors `_worker_main.ts`, the worker side.
 *
 * @module
 */
import type { AdminServer } from "./_admin.ts";
import { removeStaleControlDirs } from "./_control_server.ts";
import { type DaemonReport, reportToLauncher } from "./_daemon.ts";
import type { ResolvedOptions } from "./_options.ts";
import { Pidfile, PidfileError } from "./_pidfile.ts";
import { isLiveMaster } from "./_port_lock.ts";
import type { Pool } from "./_pool.ts";
import { ExitCode, IGNORED_SIGNALS } from "./_protocol.ts";
import { flushStderr, writeStderr } from "./_stderr.ts";
import { describe } from "./errors.ts";
import { createLogger, stderrHandler } from "./logging.ts";
import type { Runtime, SignalName } from "./runtime/mod.ts";
import type {
  LifecycleCallback,
  Logger,
  LogHandler,
  PoolLogRecord,
} from "./types.ts";

/** The signals the master gives a meaning the workers ignore. */
const OPERATIONS: readonly SignalName[] = ["SIGHUP", "SIGTTIN", "SIGTTOU"];

/** What the `Supervisor` hands its master. */
export interface MasterParts {
  pool: Pool;
  options: ResolvedOptions;
  startCallbacks: readonly LifecycleCallback[];
  shutdownCallbacks: readonly LifecycleCallback[];
  pidfile: string | undefined;
  /** Where to report to a daemon's launcher, in a daemon. */
  launcher: string | undefined;
  /** `Supervisor.scale`: TTIN and TTOU go through it. */
  scale(size: number): Promise<void>;
}

/** Runs the master; resolves with the process's exit code. */
export async function runMaster(
  runtime: Runtime,
  parts: MasterParts,
): Promise<number> {
  const { pool, options } = parts;
  const emit = guardHandler(
    options.logger ?? stderrHandler(options.logLevel, options.logFormat),
  );
  const log = createLogger(
    "workerpool.supervisor",
    (r) => emit({ ...r, workerId: null, pid: runtime.pid }),
  );
  let pidfile: Pidfile | null = null;
  let inStartCallbacks = false;
  const stop = (signal: SignalName, as: "SIGTERM" | "SIGINT") => {
    if (inStartCallbacks) {
      // The callbacks cannot be aborted; a second signal gives up on them.
      if (pool.stopping) {
        log.critical(`${signal} again during the onStart callbacks; exiting`);
        pidfile?.release();
        void flushStderr().then(() => runtime.exit(ExitCode.failure));
        return;
      }
      log.warn(
        `${signal}: stopping once the onStart callbacks finish (signal again to exit now)`,
      );
    }
    void pool.stop(as);
  };
  // A reload or a scaling asked for by a signal: its failure is logged
  // where it happens; one that cannot begin says why here.
  const operate = (signal: SignalName, run: () => Promise<void>) => {
    if (pool.stopping || !pool.running) {
      log.warn(`${signal} ignored: the pool is not running`);
      return;
    }
    log.info(`${signal} received`);
    run().catch((error) => log.debug(`${signal}: ${describe(error)}`));
  };
  // The same operations, asked for on the control socket by `workerpool
  // reload|scale|status -p FILE`: the answer says when it is done, or why not.
  pool.answerCommands(async (request) => {
    if (request.cmd === "status") return { ok: true, status: pool.status() };
    if (pool.stopping || !pool.running) {
      return { ok: false, error: `the pool is ${pool.state}` };
    }
    const what = request.cmd === "reload"
      ? "reload"
      : `scale ${
        request.relative && request.size >= 0 ? "+" : ""
      }${request.size}`;
    log.info(`${what} asked for on the control socket`);
    try {
      if (request.cmd === "reload") {
        await pool.reload();
      } else {
        const size = request.relative ? pool.size + request.size : request.size;
        if (request.relative && size < 1) {
          throw new Error(
            `${pool.size} ${request.size < 0 ? "-" : "+"} ${
              Math.abs(request.size)
            } = ${size}: a pool keeps at least 1 worker`,
          );
        }
        await parts.scale(size);
      }
    } catch (error) {
      return { ok: false, error: describe(error) };
    }
    return { ok: true, status: pool.status() };
  });
  // Kept until the process exits: a signal during the shutdown callbacks
  // must not kill the master by its default action.
  const removers = [
    runtime.onSignal("SIGTERM", () => stop("SIGTERM", "SIGTERM")),
    runtime.onSignal("SIGINT", () => stop("SIGINT", "SIGINT")),
    // QUIT is a graceful stop, as in gunicorn.
    runtime.onSignal("SIGQUIT", () => stop("SIGQUIT", "SIGTERM")),
    runtime.onSignal("SIGHUP", () => operate("SIGHUP", () => pool.reload())),
    runtime.onSignal(
      "SIGTTIN",
      () => operate("SIGTTIN", () => parts.scale(pool.size + 1)),
    ),
    runtime.onSignal("SIGTTOU", () =>
      operate("SIGTTOU", () => {
        if (pool.size > 1) return parts.scale(pool.size - 1);
        log.warn("SIGTTOU ignored: the pool keeps at least one worker");
        return Promise.resolve();
      })),
    ...IGNORED_SIGNALS.filter((signal) => !OPERATIONS.includes(signal)).map(
      (signal) =>
        runtime.onSignal(signal, () => {
          const say = signal === "SIGWINCH" ? log.debug : log.info;
          say(`${signal} ignored: it has no meaning to the master`);
        }),
    ),
  ];
  let started = false;
  let code: number;
  let admin: AdminServer | null = null;
  let notifier: { close(): void } | null = null;
  try {
    // Before the pidfile and the callbacks: a master that cannot run a
    // pool says so before it changes anything.
    const missing = runtime.missingPoolPermission();
    if (missing !== null) {
      throw new Error(`the master needs ${missing} (or -A)`);
    }
    // Output files and the control socket too: a bad path is said before
    // the master's onStart callbacks run.
    await pool.open(runtime, emit, log);
    // Loaded only when asked for: each module costs start-up time.
    if (runtime.getEnv("NOTIFY_SOCKET") !== undefined) {
      const { SystemdNotifier } = await import("./_notify.ts");
      notifier = await SystemdNotifier.open(runtime, pool, log);
    }
    if (options.admin !== null) {
      const { serveAdmin } = await import("./_admin.ts");
      admin = await serveAdmin(
        runtime,
        options.admin,
        pool,
        log,
        options.takeover,
      );
    }
    if (parts.pidfile !== undefined) {
      pidfile = await acquirePidfile(runtime, parts, log);
    }
    // Stopped before it started (stop() before main()): nothing to run.
    if (!pool.stopping) {
      started = true;
      inStartCallbacks = true;
      for (const callback of parts.startCallbacks) await bootStep(callback);
      inStartCallbacks = false;
    }
    pool.start();
    // Housekeeping once the pool is up, not while its workers start.
    pool.allReady.then(
      () => removeStaleControlDirs(runtime, log, pool.controlDir),
      () => {}, // stopped first: nothing to clean up for
    ).catch((error) =>
      log.debug(`Cannot look for stale control directories: ${describe(error)}`)
    );
    if (parts.launcher !== undefined) {
      await report(runtime, parts.launcher, pool);
    }
    await pool.stopped;
    code = pool.exitCode;
  } catch (error) {
    inStartCallbacks = false;
    const boot = error instanceof MasterBootError;
    code = boot ? ExitCode.bootError : ExitCode.failure;
    const cause = boot ? error.cause : error;
    log.critical(`Cannot run the pool: ${describe(cause)}`);
    if (parts.launcher !== undefined) {
      await reportToLauncher(runtime, parts.launcher, {
        ok: false,
        error: describe(cause),
      });
    }
    await pool.shutdown("SIGTERM", code);
  }
  if (started) code = await runShutdownCallbacks(parts, log, code);
  await pool.dispose();
  // Up to the end: /healthz says the master lives while it stops.
  await admin?.close();
  notifier?.close();
  pidfile?.release();
  await flushStderr();
  for (const remove of removers) remove();
  return code;
}

/**
 * Takes the pidfile. With `takeover`, a pidfile held by a live workerpool
 * master is taken over: that master is told to drain and exit once this
 * pool is ready, and the pidfile rewritten then (`PortLocks`); null until
 * then.
 */
async function acquirePidfile(
  runtime: Runtime,
  parts: MasterParts,
  log: Logger,
): Promise<Pidfile | null> {
  const path = parts.pidfile!;
  try {
    return Pidfile.acquire(
      runtime,
      path,
      runtime.pid,
      (pid) => runtime.isAlive(pid),
    );
  } catch (error) {
    const holder = error instanceof PidfileError ? error.holder : null;
    if (
      !parts.options.takeover || holder === null ||
      !(await isLiveMaster(runtime, holder))
    ) throw error;
    log.info(
      `pidfile ${path} names master pid ${holder}: taking over from it once every worker is ready`,
    );
    parts.pool.takeOverPidfile(path, holder);
    return null;
  }
}

/** Tells the launcher once every worker is ready, or why they are not. */
async function report(
  runtime: Runtime,
  launcher: string,
  pool: Pool,
): Promise<void> {
  const outcome: DaemonReport = await pool.allReady.then(
    () => ({ ok: true, pid: runtime.pid }),
    (error) => ({ ok: false, error: describe(error) }),
  );
  await reportToLauncher(runtime, launcher, outcome);
}

async function runShutdownCallbacks(
  parts: MasterParts,
  log: Logger,
  code: number,
): Promise<number> {
  for (const callback of parts.shutdownCallbacks) {
    try {
      await callback();
    } catch (error) {
      log.error(`onShutdown callback failed: ${describe(error)}`);
      code ||= ExitCode.failure;
    }
  }
  return code;
}

/** A master `onStart` callback failed. */
class MasterBootError extends Error {
  constructor(cause: unknown) {
    super("onStart callback failed", { cause });
    this.name = "MasterBootError";
  }
}

async function bootStep(callback: LifecycleCallback): Promise<void> {
  try {
    await callback();
  } catch (error) {
    throw new MasterBootError(error);
  }
}

function guardHandler(handler: LogHandler): (record: PoolLogRecord) => void {
  return (record) => {
    try {
      handler.handle(record);
    } catch (error) {
      // A broken handler must not take the master down: report it on stderr.
      writeStderr(
        `workerpool: the logger failed on "${record.msg}": ${
          describe(error)
        }\n`,
      );
    }
  };
}
