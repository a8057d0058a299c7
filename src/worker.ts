/**
 * `WorkerBase`: the lifecycle every worker process runs: `onStart`
 * callbacks, `main()`, `onShutdown` callbacks.
 *
 * @module
 */
import { BootError, describeValue } from "./errors.ts";
import { createLogger, getProcessSink, stderrHandler } from "./logging.ts";
import { loadedRuntime, loadRuntime } from "./runtime/mod.ts";
import type { LifecycleCallback, Logger } from "./types.ts";

/** A function creating the worker for an id. */
export type WorkerFactory = (id: number) => WorkerBase;

/** A `WorkerBase` subclass constructible from an id. */
export type WorkerClass = new (id: number) => WorkerBase;

type State = "idle" | "starting" | "running" | "stopping" | "stopped";

const defaultHandler = stderrHandler("DEBUG");

/**
 * The base class of a worker. Subclass it, implement {@linkcode main}, and
 * register initialisation and cleanup with {@linkcode onStart} and
 * {@linkcode onShutdown}.
 *
 * `SIGTERM` calls {@linkcode terminate}: the worker is marked as stopping,
 * `main()` is awaited, then the shutdown callbacks run. `SIGINT` calls
 * {@linkcode interrupt}: `main()` is abandoned (its {@linkcode signal} is
 * aborted) and the shutdown callbacks run at once.
 *
 * @example A worker that ticks until it is stopped
 * ```ts
 * import { WorkerBase } from "@workerpool/core";
 *
 * class Ticker extends WorkerBase {
 *   ticks = 0;
 *   constructor(id: number) {
 *     super(id);
 *     this.onShutdown(() => console.log(`#${this.id} ticked ${this.ticks}`));
 *   }
 *   async main() {
 *     while (this.isRunning()) {
 *       this.ticks++;
 *       await this.sleep(10);
 *     }
 *   }
 * }
 *
 * const worker = new Ticker(0);
 * const done = worker.start();
 * setTimeout(() => worker.terminate(), 30);
 * await done;
 * ```
 */
export abstract class WorkerBase {
  #id: number;
  #state: State = "idle";
  #controller = new AbortController();
  #startCallbacks: LifecycleCallback[] = [];
  #shutdownCallbacks: LifecycleCallback[] = [];
  #interrupted = Promise.withResolvers<"interrupted">();
  #lifecycle: Promise<void> | undefined;
  #logger: Logger;
  #pid = 0;

  /** Creates worker `id`; ids are non-negative integers. */
  constructor(id: number) {
    if (!Number.isSafeInteger(id) || id < 0) {
      throw new RangeError(
        `Cannot create worker: id must be a non-negative integer, got ${
          String(id)
        }`,
      );
    }
    this.#id = id;
    this.#logger = createLogger("default", (record) => {
      // In a pool's worker process, records travel to the master.
      const sink = getProcessSink();
      if (sink) sink(record);
      else defaultHandler.handle({ ...record, workerId: id, pid: this.#pid });
    });
  }

  /** The logical worker id, kept across restarts. */
  get id(): number {
    return this.#id;
  }

  /** Aborted when the worker stops or is interrupted. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * Its logger. In a pool, records travel to the master, which adds this
   * worker's id and pid; outside a pool they are printed on stderr.
   */
  get logger(): Logger {
    return this.#logger;
  }

  /** True from {@linkcode start} until the worker is stopped. */
  isRunning(): boolean {
    return this.#state === "starting" || this.#state === "running";
  }

  /** Appends a callback run, in order, before {@linkcode main}. */
  onStart(callback: LifecycleCallback): void {
    this.#startCallbacks.push(checkCallback("onStart", callback));
  }

  /** Appends a callback run, in order, after {@linkcode main}. */
  onShutdown(callback: LifecycleCallback): void {
    this.#shutdownCallbacks.push(checkCallback("onShutdown", callback));
  }

  /** Marks the worker as stopping: `isRunning()` turns false, `signal` aborts. */
  stop(): void {
    if (this.#state === "stopping" || this.#state === "stopped") return;
    this.#state = this.#state === "idle" ? "stopped" : "stopping";
    this.#controller.abort(
      new DOMException("The worker is stopping", "AbortError"),
    );
  }

  /**
   * The `SIGTERM` path: stops the worker, waits for `main()` to return, then
   * runs the shutdown callbacks. Resolves when the lifecycle has ended.
   */
  terminate(): Promise<void> {
    this.stop();
    return this.#settled();
  }

  /**
   * The `SIGINT` path: stops the worker and runs the shutdown callbacks
   * without waiting for `main()`. Resolves when the lifecycle has ended.
   */
  interrupt(): Promise<void> {
    this.stop();
    this.#interrupted.resolve("interrupted");
    return this.#settled();
  }

  /** Resolves after `ms`, or as soon as the worker stops. */
  sleep(ms: number): Promise<void> {
    const signal = this.#controller.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        cancel();
        signal.removeEventListener("abort", done);
        resolve();
      };
      const cancel = after(ms, done);
      signal.addEventListener("abort", done);
    });
  }

  /** The worker's job: loop while {@linkcode isRunning}. May be sync or async. */
  abstract main(): void | Promise<void>;

  /**
   * Runs the lifecycle: start callbacks, `main()`, shutdown callbacks.
   * Rejects with a {@linkcode BootError} when a start callback fails, or with
   * the error `main()` or a shutdown callback threw (after all shutdown
   * callbacks ran). Calling it again returns the same promise.
   */
  start(): Promise<void> {
    this.#lifecycle ??= this.#run();
    return this.#lifecycle;
  }

  async #run(): Promise<void> {
    if (this.#state === "stopped") return;
    this.#state = "starting";
    this.#pid = (await loadRuntime()).pid;
    try {
      for (const callback of this.#startCallbacks) await callback();
    } catch (error) {
      this.#state = "stopped";
      this.#controller.abort(error);
      throw new BootError(this.#id, error);
    }
    let failure: { error: unknown } | undefined;
    if (this.#state === "starting") {
      this.#state = "running";
      const main = (async () => await this.main())();
      const outcome = await Promise.race([
        main.then(() => undefined, (error) => ({ error })),
        this.#interrupted.promise,
      ]);
      if (outcome !== "interrupted") failure = outcome;
    }
    this.stop();
    for (const callback of this.#shutdownCallbacks) {
      try {
        await callback();
      } catch (error) {
        // Later callbacks still run: each releases its own resources.
        failure ??= { error };
        this.#logger.error("onShutdown callback failed", error);
      }
    }
    this.#state = "stopped";
    if (failure) throw failure.error;
  }

  #settled(): Promise<void> {
    // Errors belong to whoever awaits start(); this only waits.
    return (this.#lifecycle ?? Promise.resolve()).then(noop, noop);
  }
}

function noop(): void {}

/**
 * Calls `callback` after `ms` on the runtime's clock once it is loaded
 * (Deno's first setTimeout costs a worker 11 ms of its start), else on the
 * global one; returns the cancel function.
 */
function after(ms: number, callback: () => void): () => void {
  const runtime = loadedRuntime();
  if (runtime !== undefined) {
    const timer = runtime.setTimeout(callback, ms);
    return () => runtime.clearTimeout(timer);
  }
  const timer = setTimeout(callback, ms);
  return () => clearTimeout(timer);
}

/** Returns `callback`, or throws a TypeError naming what it is instead. */
export function checkCallback(
  name: string,
  callback: LifecycleCallback,
): LifecycleCallback {
  if (typeof callback !== "function") {
    throw new TypeError(
      `Cannot add ${name} callback: expected a function, got ${
        describeValue(callback)
      }`,
    );
  }
  return callback;
}
