/**
 * `Supervisor`: in the master, keeps a pool of worker processes of this same
 * script alive; in a worker process, runs that worker's lifecycle.
 *
 * @module
 */
import { DAEMON_ENV, launchDaemon, reportToLauncher } from "./_daemon.ts";
import { describe, describeValue, EXIT_BOOT_ERROR } from "./errors.ts";
import {
  createLogger,
  type LogHandler,
  type PoolLogRecord,
  stderrHandler,
} from "./logging.ts";
import {
  checkId,
  checkKeys,
  type ResolvedOptions,
  resolveOptions,
  type SupervisorOptions,
  toFactory,
  type WorkerClass,
  type WorkerFactory,
} from "./_options.ts";
import { Pidfile } from "./_pidfile.ts";
import { Pool, type WorkerInfo } from "./_pool.ts";
import { loadRuntime, type Runtime, type SignalName } from "./runtime/mod.ts";
import { checkCallback, type LifecycleCallback } from "./worker.ts";
import { runWorker, takeWorkerEnv } from "./_worker_main.ts";

/** Options of {@linkcode Supervisor.main}. */
export interface MainOptions {
  /** A pidfile to hold while the master runs. */
  pidfile?: string;
  /**
   * Re-start detached, in a new session with stdio on /dev/null; the
   * launching process exits 0 once the daemon is up.
   * @default {false}
   */
  daemonize?: boolean;
}

const injectedRuntimes = new WeakMap<Supervisor, Runtime>();

/** Makes `supervisor` use `runtime` instead of the real one (tests). */
export function injectRuntime(supervisor: Supervisor, runtime: Runtime): void {
  injectedRuntimes.set(supervisor, runtime);
}

/**
 * Keeps a pool of worker processes alive. The same script runs in the master
 * and in every worker: `main()` runs the pool in the master, and the worker
 * lifecycle in a process the master spawned. Top-level code runs in every
 * process; master-only work belongs in {@linkcode onStart}.
 *
 * In the master, `SIGTERM` (or {@linkcode terminate}) sends `SIGTERM` to
 * every worker, waits up to `gracefulTimeout`, kills the rest, runs the
 * shutdown callbacks and exits 0. `SIGINT` does the same with `SIGINT`.
 *
 * @example A pool of four workers
 * ```ts ignore
 * import { Supervisor, WorkerBase } from "@workerpool/core";
 *
 * class Worker extends WorkerBase {
 *   async main() {
 *     while (this.isRunning()) {
 *       this.logger.info("tick");
 *       await this.sleep(1000);
 *     }
 *   }
 * }
 *
 * const supervisor = new Supervisor(Worker, { workers: 4 });
 * supervisor.onStart(() => console.log("master up"));
 * await supervisor.main({ pidfile: "app.pid" });
 * ```
 */
export class Supervisor {
  #create: WorkerFactory;
  #options: ResolvedOptions;
  #startCallbacks: LifecycleCallback[] = [];
  #shutdownCallbacks: LifecycleCallback[] = [];
  #pool: Pool | null = null;
  #stopRequest: "SIGTERM" | "SIGINT" | null = null;

  /**
   * Creates a supervisor of `worker` (a `WorkerBase` subclass or a factory
   * `(id) => WorkerBase`). Throws `TypeError` / `RangeError` on bad options.
   */
  constructor(
    worker: WorkerClass | WorkerFactory,
    options: SupervisorOptions = {},
  ) {
    this.#create = toFactory(worker);
    this.#options = resolveOptions(options);
  }

  /** Appends a callback run in the master before the workers are spawned. */
  onStart(callback: LifecycleCallback): void {
    this.#startCallbacks.push(checkCallback("onStart", callback));
  }

  /** Appends a callback run in the master after every worker has exited. */
  onShutdown(callback: LifecycleCallback): void {
    this.#shutdownCallbacks.push(checkCallback("onShutdown", callback));
  }

  /** A snapshot of the pool; empty until {@linkcode main} runs. */
  get pool(): readonly WorkerInfo[] {
    return this.#pool?.snapshot() ?? Object.freeze([]);
  }

  /** Adds worker `id` (spawned at once when the pool runs). */
  addWorker(id: number): void {
    if (this.#pool !== null) return this.#pool.addWorker(id);
    checkId(id, "Cannot add worker");
    if (this.#options.ids.includes(id)) {
      throw new RangeError(
        `Cannot add worker: id ${id} is already in the pool`,
      );
    }
    this.#options.ids.push(id);
  }

  /**
   * Removes worker `id`: it is sent `signal` (SIGKILL after
   * `gracefulTimeout`) and not replaced. Resolves once it has exited.
   */
  removeWorker(id: number, signal: SignalName = "SIGTERM"): Promise<void> {
    if (this.#pool !== null) return this.#pool.removeWorker(id, signal);
    const index = this.#options.ids.indexOf(id);
    if (index === -1) {
      return Promise.reject(
        new RangeError(`Cannot remove worker: no worker has id ${id}`),
      );
    }
    this.#options.ids.splice(index, 1);
    return Promise.resolve();
  }

  /** Stops the pool gracefully: the same as {@linkcode terminate}. */
  stop(): Promise<void> {
    return this.terminate();
  }

  /** The `SIGTERM` path; resolves once every worker has exited. */
  terminate(): Promise<void> {
    return this.#requestStop("SIGTERM");
  }

  /** The `SIGINT` path; resolves once every worker has exited. */
  interrupt(): Promise<void> {
    return this.#requestStop("SIGINT");
  }

  /**
   * Runs the pool in the master, or the worker lifecycle in a worker
   * process, and then exits the process: 0 after a graceful shutdown, 3
   * when repeated boot errors halted the pool, 1 when it could not start.
   */
  async main(options: MainOptions = {}): Promise<void> {
    checkMainOptions(options);
    const runtime = injectedRuntimes.get(this) ?? await loadRuntime();
    const workerEnv = takeWorkerEnv(runtime);
    if (workerEnv !== null) {
      runtime.exit(await runWorker(runtime, this.#create, workerEnv));
    }
    const notify = runtime.getEnv(DAEMON_ENV);
    if (notify !== undefined) runtime.deleteEnv(DAEMON_ENV);
    if (options.daemonize && notify === undefined) {
      runtime.exit(await launchDaemon(runtime));
    }
    runtime.exit(await this.#runMaster(runtime, options.pidfile, notify));
  }

  async #runMaster(
    runtime: Runtime,
    pidfilePath: string | undefined,
    notify: string | undefined,
  ): Promise<number> {
    const emit = guardHandler(
      this.#options.logger ??
        stderrHandler(this.#options.logLevel),
    );
    const log = createLogger(
      "workerpool.supervisor",
      (r) => emit({ ...r, workerId: null, pid: runtime.pid }),
    );
    const pool = new Pool(runtime, this.#options, emit);
    this.#pool = pool;
    let pidfile: Pidfile | null = null;
    let inStartCallbacks = false;
    const onSignal = (signal: "SIGTERM" | "SIGINT") => {
      if (inStartCallbacks) {
        // The callbacks cannot be aborted; a second signal gives up on them.
        if (this.#stopRequest !== null) {
          log.critical(`${signal} again during the onStart callbacks; exiting`);
          pidfile?.release();
          runtime.exit(1);
        }
        log.warn(
          `${signal}: stopping once the onStart callbacks finish (signal again to exit now)`,
        );
      }
      void this.#requestStop(signal);
    };
    // Kept until the process exits: a signal during the shutdown callbacks
    // must not kill the master by its default action.
    const removers = [
      runtime.onSignal("SIGTERM", () => onSignal("SIGTERM")),
      runtime.onSignal("SIGINT", () => onSignal("SIGINT")),
    ];
    if (this.#stopRequest !== null) pool.shutdown(this.#stopRequest);
    let started = false;
    let code: number;
    try {
      if (pidfilePath !== undefined) {
        pidfile = Pidfile.acquire(
          runtime,
          pidfilePath,
          runtime.pid,
          (pid) => runtime.isAlive(pid),
        );
      }
      // Stopped before it started (stop() before main()): nothing to run.
      if (this.#stopRequest === null) {
        started = true;
        inStartCallbacks = true;
        for (const callback of this.#startCallbacks) {
          await bootStep(callback);
        }
        inStartCallbacks = false;
      }
      await pool.start();
      if (notify !== undefined) {
        await reportToLauncher(runtime, notify, { ok: true, pid: runtime.pid });
      }
      await pool.stopped;
      code = pool.exitCode;
    } catch (error) {
      inStartCallbacks = false;
      code = error instanceof MasterBootError ? EXIT_BOOT_ERROR : 1;
      const cause = error instanceof MasterBootError ? error.cause : error;
      log.critical(`Cannot run the pool: ${describe(cause)}`);
      if (notify !== undefined) {
        await reportToLauncher(runtime, notify, {
          ok: false,
          error: describe(cause),
        }).catch((e) => log.error(`Cannot report to the launcher: ${e}`));
      }
      await pool.shutdown("SIGTERM", code);
    }
    if (started) {
      for (const callback of this.#shutdownCallbacks) {
        try {
          await callback();
        } catch (error) {
          log.error(`onShutdown callback failed: ${describe(error)}`);
          code ||= 1;
        }
      }
    }
    await pool.dispose();
    pidfile?.release();
    for (const remove of removers) remove();
    return code;
  }

  #requestStop(signal: "SIGTERM" | "SIGINT"): Promise<void> {
    this.#stopRequest ??= signal;
    return this.#pool?.shutdown(signal) ?? Promise.resolve();
  }
}

/** A master `onStart` callback failed. */
class MasterBootError extends Error {}

async function bootStep(callback: LifecycleCallback): Promise<void> {
  try {
    await callback();
  } catch (error) {
    throw new MasterBootError("onStart callback failed", { cause: error });
  }
}

function guardHandler(handler: LogHandler): (record: PoolLogRecord) => void {
  return (record) => {
    try {
      handler.handle(record);
    } catch (error) {
      // A broken handler must not take the master down: report it on stderr,
      // and if stderr itself is gone (EPIPE), there is nowhere left to say it.
      try {
        console.error(
          `workerpool: the logger failed on "${record.msg}": ${
            describe(error)
          }`,
        );
      } catch {
        // Dropped on purpose: see above.
      }
    }
  };
}

function checkMainOptions(options: MainOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot start supervisor: options must be an object, got ${
        describeValue(options)
      }`,
    );
  }
  checkKeys("Cannot start supervisor", options, ["pidfile", "daemonize"]);
  const { pidfile, daemonize } = options;
  if (
    pidfile !== undefined && (typeof pidfile !== "string" || pidfile === "")
  ) {
    throw new TypeError(
      `Cannot start supervisor: pidfile must be a non-empty path, got ${
        describeValue(pidfile)
      }`,
    );
  }
  if (daemonize !== undefined && typeof daemonize !== "boolean") {
    throw new TypeError(
      `Cannot start supervisor: daemonize must be a boolean, got ${
        describeValue(daemonize)
      }`,
    );
  }
}
