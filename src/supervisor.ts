/**
 * `Supervisor`: in the master, keeps a pool of worker processes of this same
 * script alive; in a worker process, runs that worker's lifecycle.
 *
 * @module
 */
import {
  checkKeys,
  MAX_WORKERS,
  type ResolvedOptions,
  resolveOptions,
  toFactory,
} from "./_options.ts";
import type { Pool } from "./_pool.ts";
import { DAEMON_ENV, takeWorkerEnv } from "./_protocol.ts";
import { Slots } from "./_slots.ts";
import { describeValue } from "./errors.ts";
import { loadRuntime, type Runtime } from "./runtime/mod.ts";
import type {
  LifecycleCallback,
  MainOptions,
  PoolStatus,
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
 * Sets up `supervisor` for the `workerpool` command (not public API): its
 * workers run module `script.module` (with the runtime flags and arguments
 * given) instead of this script, and `onPool` is given the master's pool
 * once it exists.
 */
export let forCommand: (
  supervisor: Supervisor,
  setup: {
    script: { module: string; flags: string[]; args: string[] };
    onPool(pool: Pool): void;
  },
) => void;

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
  /** The worker ids; the pool takes them over in the master's main(). */
  #slots: Slots;
  #pool: Pool | null = null;
  /** A stop asked for before main() ran. */
  #stopBeforeMain: "SIGTERM" | "SIGINT" | null = null;
  /** Told of the pool once the master made it (the `workerpool` command). */
  #onPool: ((pool: Pool) => void) | null = null;
  #startCallbacks: LifecycleCallback[] = [];

  #shutdownCallbacks: LifecycleCallback[] = [];

  static {
    forCommand = (supervisor, setup) => {
      supervisor.#options.script = setup.script;
      supervisor.#onPool = setup.onPool;
    };
  }

  /**
   * Creates a supervisor of `worker`. Throws `TypeError` / `RangeError` on
   * bad options, before anything runs.
   *
   * @param worker A `WorkerBase` subclass, or a factory `(id) => WorkerBase`.
   * @param options See {@linkcode SupervisorOptions}; each left out takes
   * its default.
   */
  constructor(
    worker: WorkerClass | WorkerFactory,
    options: SupervisorOptions = {},
  ) {
    this.#create = toFactory(worker);
    this.#options = resolveOptions(options);
    this.#slots = new Slots(this.#options);
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
    return this.#pool?.snapshot() ?? this.#slots.snapshot(0, false);
  }

  /**
   * The whole pool: its state, ready count, reloads and workers (the admin
   * endpoint's `/status`).
   */
  get status(): PoolStatus {
    if (this.#pool !== null) return this.#pool.status();
    const workers = this.#slots.snapshot(0, false);
    return Object.freeze({
      pid: 0,
      runtime: "",
      state: "idle",
      uptime: 0,
      size: workers.length,
      ready: 0,
      minReady: Math.min(this.#options.minReady, workers.length),
      generation: 0,
      reloads: 0,
      reloadFailures: 0,
      totals: { cpuTime: 0, requests: 0, restarts: 0, restartsBy: {} },
      workers,
    });
  }

  /** Adds worker `id` (spawned at once when the pool runs). */
  addWorker(id: number): void {
    if (this.#pool?.stopping) {
      throw new Error(`Cannot add worker ${id}: the pool is stopping`);
    }
    const slot = this.#slots.add(id);
    this.#pool?.added(slot);
  }

  /**
   * Removes worker `id`: it is sent `signal` (SIGKILL after
   * `gracefulTimeout`) and not replaced. Resolves once it has exited.
   *
   * @param id The worker id to remove.
   * @param signal The signal that stops it; `"SIGTERM"` when left out.
   */
  async removeWorker(
    id: number,
    signal: SignalName = "SIGTERM",
  ): Promise<void> {
    const slot = this.#slots.remove(id);
    await this.#pool?.removed(slot, signal);
  }

  /**
   * A rolling reload: for each worker id in turn (`reloadConcurrency` at a
   * time), a new process of the script, read again from disk, starts
   * beside the old one; once it is ready, the old one stops gracefully
   * (`SIGTERM`, so `serve()` drains). Output files given as paths are
   * opened again. The same as `SIGHUP` to the master.
   *
   * Called during a reload, it queues one more full reload after it (the
   * calls share it).
   *
   * @returns Resolves once every id runs a new, ready process. Rejects,
   * keeping the old processes of the ids not yet replaced, when a new
   * process fails to start or is not ready within `readyTimeout`, with
   * the cause; also when the pool stops first, or is not running.
   */
  reload(): Promise<void> {
    if (this.#pool === null) {
      return Promise.reject(
        new Error("Cannot reload: the pool is not running"),
      );
    }
    return this.#pool.reload();
  }

  /**
   * Sets the number of workers: adds the lowest free ids, or removes the
   * highest ids (gracefully, as `removeWorker`). `SIGTTIN` to the master
   * adds one, `SIGTTOU` removes one (never the last).
   *
   * @param size The number of workers, 1 to 1024.
   * @returns Resolves once the pool has `size` workers, all ready; rejects
   * when the pool stops first, or when a later `scale()` changed the
   * size. Before `main()`, sets the ids and resolves.
   */
  scale(size: number): Promise<void> {
    try {
      checkSize(size);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#pool?.stopping) {
      return Promise.reject(new Error("Cannot scale: the pool is stopping"));
    }
    const { add, remove } = this.#slots.resizePlan(size);
    for (const id of add) this.addWorker(id);
    for (const id of remove) void this.removeWorker(id);
    return this.#pool?.whenSize(size) ?? Promise.resolve();
  }

  /** Stops the pool gracefully: the same as {@linkcode terminate}. */
  stop(): Promise<void> {
    return this.terminate();
  }

  /**
   * The `SIGTERM` path (after `shutdownDelay`); resolves once every worker
   * has exited.
   */
  terminate(): Promise<void> {
    return this.#stop("SIGTERM");
  }

  /** The `SIGINT` path; resolves once every worker has exited. */
  interrupt(): Promise<void> {
    return this.#stop("SIGINT");
  }

  #stop(signal: "SIGTERM" | "SIGINT"): Promise<void> {
    if (this.#pool !== null) return this.#pool.stop(signal);
    // Nothing runs yet: main() will run nothing.
    this.#stopBeforeMain ??= signal;
    return Promise.resolve();
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
    // Each side loads only its own modules: every module costs each
    // process of the pool start-up time.
    const workerEnv = takeWorkerEnv(env);
    if (workerEnv !== null) {
      const { runWorker } = await import("./_worker_main.ts");
      return await runWorker(runtime, this.#create, workerEnv);
    }
    const launcher = env.get(DAEMON_ENV);
    env.delete(DAEMON_ENV);
    if (options.daemonize && launcher === undefined) {
      const { launchDaemon } = await import("./_daemon.ts");
      return await launchDaemon(runtime, options.pidfile);
    }
    const [{ Pool }, { runMaster }] = await Promise.all([
      import("./_pool.ts"),
      import("./_master_main.ts"),
    ]);
    this.#pool = new Pool(this.#options, this.#slots);
    this.#onPool?.(this.#pool);
    if (this.#stopBeforeMain !== null) {
      this.#pool.shutdown(this.#stopBeforeMain);
    }
    return await runMaster(runtime, {
      pool: this.#pool,
      options: this.#options,
      startCallbacks: this.#startCallbacks,
      shutdownCallbacks: this.#shutdownCallbacks,
      pidfile: options.pidfile,
      launcher,
      scale: (size) => this.scale(size),
    });
  }
}

function checkSize(size: unknown): void {
  if (typeof size !== "number") {
    throw new TypeError(
      `Cannot scale: size must be a number, got ${describeValue(size)}`,
    );
  }
  if (!Number.isSafeInteger(size) || size < 1 || size > MAX_WORKERS) {
    throw new RangeError(
      `Cannot scale: size must be an integer from 1 to ${MAX_WORKERS}, got ${size}`,
    );
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
