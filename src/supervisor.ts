/**
 * `Supervisor`: in the master, keeps a pool of worker processes of this same
 * script alive; in a worker process, runs that worker's lifecycle.
 *
 * @module
 */
import { launchDaemon } from "./_daemon.ts";
import { runMaster } from "./_master_main.ts";
import {
  checkKeys,
  type ResolvedOptions,
  resolveOptions,
  toFactory,
} from "./_options.ts";
import { Pool } from "./_pool.ts";
import { DAEMON_ENV, takeWorkerEnv } from "./_protocol.ts";
import { runWorker } from "./_worker_main.ts";
import { describeValue } from "./errors.ts";
import { loadRuntime, type Runtime } from "./runtime/mod.ts";
import type {
  LifecycleCallback,
  MainOptions,
  SignalName,
  SupervisorOptions,
  WorkerInfo,
} from "./types.ts";
import {
  checkCallback,
  type WorkerClass,
  type WorkerFactory,
} from "./worker.ts";

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
  #pool: Pool;
  #startCallbacks: LifecycleCallback[] = [];
  #shutdownCallbacks: LifecycleCallback[] = [];

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
    this.#pool = new Pool(this.#options);
  }

  /** Appends a callback run in the master before the workers are spawned. */
  onStart(callback: LifecycleCallback): void {
    this.#startCallbacks.push(checkCallback("onStart", callback));
  }

  /** Appends a callback run in the master after every worker has exited. */
  onShutdown(callback: LifecycleCallback): void {
    this.#shutdownCallbacks.push(checkCallback("onShutdown", callback));
  }

  /** A snapshot of the pool: one entry per worker id. */
  get pool(): readonly WorkerInfo[] {
    return this.#pool.snapshot();
  }

  /** Adds worker `id` (spawned at once when the pool runs). */
  addWorker(id: number): void {
    this.#pool.addWorker(id);
  }

  /**
   * Removes worker `id`: it is sent `signal` (SIGKILL after
   * `gracefulTimeout`) and not replaced. Resolves once it has exited.
   *
   * @param id The worker id to remove.
   * @param signal The signal that stops it; `"SIGTERM"` when left out.
   */
  removeWorker(id: number, signal: SignalName = "SIGTERM"): Promise<void> {
    return this.#pool.removeWorker(id, signal);
  }

  /** Stops the pool gracefully: the same as {@linkcode terminate}. */
  stop(): Promise<void> {
    return this.terminate();
  }

  /** The `SIGTERM` path; resolves once every worker has exited. */
  terminate(): Promise<void> {
    return this.#pool.shutdown("SIGTERM");
  }

  /** The `SIGINT` path; resolves once every worker has exited. */
  interrupt(): Promise<void> {
    return this.#pool.shutdown("SIGINT");
  }

  /**
   * Runs the pool in the master, or the worker lifecycle in a worker
   * process, and then exits the process: 0 after a graceful shutdown, 3
   * when repeated boot errors halted the pool, 1 when it could not start.
   *
   * @param options `pidfile` and `daemonize`; none of them when left out.
   */
  async main(options: MainOptions = {}): Promise<void> {
    checkMainOptions(options);
    const runtime = await loadRuntime();
    runtime.exit(await this.#run(runtime, options));
  }

  async #run(runtime: Runtime, options: MainOptions): Promise<number> {
    const env = {
      get: (name: string) => runtime.getEnv(name),
      delete: (name: string) => runtime.deleteEnv(name),
    };
    const workerEnv = takeWorkerEnv(env);
    if (workerEnv !== null) {
      return await runWorker(runtime, this.#create, workerEnv);
    }
    const launcher = env.get(DAEMON_ENV);
    env.delete(DAEMON_ENV);
    if (options.daemonize && launcher === undefined) {
      return await launchDaemon(runtime, options.pidfile);
    }
    return await runMaster(runtime, {
      pool: this.#pool,
      options: this.#options,
      startCallbacks: this.#startCallbacks,
      shutdownCallbacks: this.#shutdownCallbacks,
      pidfile: options.pidfile,
      launcher,
    });
  }
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
