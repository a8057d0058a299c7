/**
 * The master's loop: keeps a live, ready process for every worker id.
 * Every event, and its handler:
 *
 * - `open()`, `start()`: the processes' wiring (`Launcher`: control socket,
 *   outputs), then a process for every id.
 * - a process exits: `#onExit` replaces it at once, after a backoff, or
 *   halts the pool after `maxBootErrors` failed starts in a row.
 * - a frame arrives: `#onMessage` forwards log records, notes the ports the
 *   workers serve (`PortLocks`); the child takes hello, hb, ready,
 *   boot-error, stopping, bye (`ChildHandle.receive`); a ready replacement
 *   takes over its id (`#onReady`).
 * - every id ready (`Readiness`): the daemon's launcher, `scale(n)` and a
 *   takeover (`PortLocks.ready`) hear of it.
 * - a connection ends without goodbye or breaks the protocol: `#onLost`
 *   stops that worker; it is replaced when it exits.
 * - the tick (every `checkInterval`, finer for short `workerTimeout`s):
 *   `#tick` discounts the master's own stall, kills the overdue (no hello
 *   or ready within `readyTimeout`, no heartbeat within `workerTimeout`),
 *   and spawns ids left without a process.
 * - an id added or removed (`Supervisor.addWorker`, `removeWorker`,
 *   `scale` change `Slots`): `added` spawns it, `removed` stops its
 *   processes.
 * - `reload()`, and a tick finding a process due for recycling: a rolling
 *   replacement (`Rolling`): the new process first, the old one drains once
 *   the new one is ready.
 * - `stop(signal)`: a SIGTERM waits `shutdownDelay` first (`draining`:
 *   the pool serves, `/readyz` says 503), then `shutdown(signal)`: stop
 *   every process (SIGKILL after `gracefulTimeout`), drain their output,
 *   resolve `stopped`.
 * - What the admin endpoint and systemd hear (`PoolEvents`): a worker ready
 *   or gone (`changed`), a reload begun or ended, the stop begun.
 *
 * @module
 */
import type { ChildHandle } from "./_child.ts";
import { Launcher } from "./_launcher.ts";
import { PortLocks } from "./_ports.ts";
import { Readiness } from "./_readiness.ts";
import { Rolling } from "./_rolling.ts";
import { plural } from "./_text.ts";
import { Ticker } from "./_ticker.ts";
import type { ResolvedOptions } from "./_options.ts";
import {
  type ControlReply,
  type ControlRequest,
  ExitCode,
  heartbeatInterval,
  type WorkerMessage,
} from "./_protocol.ts";
import { type Slot, startFailure } from "./_slot.ts";
import type { Slots } from "./_slots.ts";
import { createLogger } from "./logging.ts";
import type { ExitStatus, Runtime, SignalName, Timer } from "./runtime/mod.ts";
import type { Logger, PoolLogRecord, PoolStatus, WorkerInfo } from "./types.ts";

/** How long a lost connection waits for its process's exit status. */
const LOST_GRACE_MS = 100;

/** How long worker output may stay open after all workers exited. */
const OUTPUT_DRAIN_MS = 2000;

type PoolState = "idle" | "running" | "stopping" | "stopped";

/** What the pool tells those who report on it (`_fleet.ts`). */
export interface PoolEvents {
  /** A worker got ready or lost its process; ids were added or removed. */
  changed(): void;
  /** A rolling reload began. */
  reloadBegan(): void;
  /** A rolling reload ended: failed with `failure`, or not (null). */
  reloadEnded(failure: string | null): void;
  /** A stop began (the `shutdownDelay` included). */
  stopping(): void;
}

/** Every observer of a pool told of one event. */
class Observers implements PoolEvents {
  list: Partial<PoolEvents>[] = [];
  changed() {
    for (const observer of this.list) observer.changed?.();
  }
  reloadBegan() {
    for (const observer of this.list) observer.reloadBegan?.();
  }
  reloadEnded(failure: string | null) {
    for (const observer of this.list) observer.reloadEnded?.(failure);
  }
  stopping() {
    for (const observer of this.list) observer.stopping?.();
  }
}

/** Answers an operator's command (see `ControlRequest`). */
export type CommandHandler = (request: ControlRequest) => Promise<ControlReply>;

/** Where the pool runs: set by `start()`. */
interface Running {
  runtime: Runtime;
  emit: (record: PoolLogRecord) => void;
  log: Logger;
  childLog: Logger;
  launcher: Launcher;
  ticker: Ticker;
  rolling: Rolling;
  ports: PortLocks;
}

/** The master side of a pool. */
export class Pool {
  #options: ResolvedOptions;
  #slots: Slots;
  #state: PoolState = "idle";
  #run: Running | null = null;
  #stopSignal: "SIGTERM" | "SIGINT" | null = null;
  #exitCode: number = ExitCode.ok;
  #haltCause: string | null = null;
  #stopped = Promise.withResolvers<void>();
  #readiness = new Readiness();
  #events = new Observers();
  #commands: CommandHandler = () =>
    Promise.resolve({ ok: false, error: "this master takes no commands" });
  /** Set while a stop waits out `shutdownDelay`. */
  #drain: Timer | undefined;
  #startedAt: number | null = null;
  /** What the ids removed by scaling down did, once their processes exited. */
  #gone = emptyTotals();

  /** A pool of `slots`, the ids the `Supervisor` has held so far. */
  constructor(options: ResolvedOptions, slots: Slots) {
    this.#options = options;
    this.#slots = slots;
  }

  /** The exit code the master should end with. */
  get exitCode(): number {
    return this.#exitCode;
  }

  /** Whether a stop was asked for (the pool may still be stopping). */
  get stopping(): boolean {
    return this.#drain !== undefined || this.#state === "stopping" ||
      this.#state === "stopped";
  }

  /** Whether the workers were spawned and no stop was asked for. */
  get running(): boolean {
    return this.#state === "running" && this.#drain === undefined;
  }

  /** The master's control directory (once open). */
  get controlDir(): string {
    const socket = this.#run?.launcher.socketPath ?? "";
    return socket.slice(0, socket.lastIndexOf("/"));
  }

  /** Tells `events` of the pool's events, beside the other observers. */
  observe(events: Partial<PoolEvents>): void {
    this.#events.list.push(events);
  }

  /** Answers operators' commands on the control socket with `handler`. */
  answerCommands(handler: CommandHandler): void {
    this.#commands = handler;
  }

  /** Where the pool is, as `PoolStatus.state` says it. */
  get state(): PoolStatus["state"] {
    if (this.#drain !== undefined) return "draining";
    if (this.#state !== "running") return this.#state;
    if (!this.#readiness.reached) return "starting";
    return this.#run?.rolling.reloading ? "reloading" : "running";
  }

  /** The whole pool, for `Supervisor.status` and the admin endpoint. */
  status(): PoolStatus {
    const run = this.#run;
    const workers = this.snapshot();
    return Object.freeze({
      pid: run?.runtime.pid ?? 0,
      runtime: run === null ? "" : `${run.runtime.name} ${run.runtime.version}`,
      state: this.state,
      uptime: this.#startedAt === null || run === null
        ? 0
        : Math.round(run.runtime.now() - this.#startedAt),
      size: workers.length,
      ready: this.readyCount(),
      minReady: Math.min(this.#options.minReady, workers.length),
      generation: run?.rolling.generation ?? 0,
      reloads: run?.rolling.generation ?? 0,
      reloadFailures: run?.rolling.failures ?? 0,
      totals: addTotals(this.#gone, workers),
      workers,
    });
  }

  /**
   * How many ids have a ready process (the current one, or its
   * replacement) that showed a sign of life within three heartbeats: one
   * whose loop is held (blocked writing to a stalled stdout, a long sync
   * handler) serves nobody, though it is not overdue yet.
   */
  readyCount(): number {
    const now = this.#run?.runtime.now() ?? 0;
    const silence = 3 * heartbeatInterval(this.#options.workerTimeout);
    const serving = (child: ChildHandle | null) =>
      child?.state === "ready" && now - child.lastSeen <= silence;
    let ready = 0;
    for (const slot of this.#slots) {
      if (serving(slot.child) || serving(slot.next)) ready++;
    }
    return ready;
  }

  /**
   * Why the pool should take no traffic now (`/readyz`), or null: fewer
   * than `minReady` workers ready (all of them, in a smaller pool), or a
   * stop under way.
   */
  notReady(): string | null {
    if (this.#drain !== undefined) {
      return "the pool is stopping (shutdownDelay: the workers still serve)";
    }
    if (this.#state !== "running") return `the pool is ${this.#state}`;
    const needed = Math.min(this.#options.minReady, this.#slots.size);
    const ready = this.readyCount();
    return ready >= needed
      ? null
      : `${ready} of ${this.#slots.size} workers ready, ${needed} needed`;
  }

  /**
   * Why the master's supervision is not well (systemd's watchdog is not
   * fed then), or null: its tick stopped coming, or a worker that missed
   * its deadline is still alive after it was killed. `stalled`: the
   * caller knows the master's own loop just stood still.
   */
  unwell(stalled = false): string | null {
    const run = this.#run;
    if (run === null || this.#state !== "running") return null;
    // `stalled`: the master itself stood still; its check has yet to run.
    const late = stalled ? null : run.ticker.late(run.runtime.now());
    if (late !== null) return late;
    for (const child of run.launcher.children) {
      if (child.killedFor !== null && child.state !== "exited") {
        return `${child} ${child.killedFor}, and is still alive`;
      }
    }
    return null;
  }

  /** How many worker ids the pool has. */
  get size(): number {
    return this.#slots.size;
  }

  /** Resolves once the pool has stopped and every worker was reaped. */
  get stopped(): Promise<void> {
    return this.#stopped.promise;
  }

  /**
   * Resolves the first time every id has a ready process; rejects with the
   * reason when the pool stops (or halts) before that.
   */
  get allReady(): Promise<void> {
    return this.#readiness.first;
  }

  /** A snapshot of every worker id in the pool. */
  snapshot(): readonly WorkerInfo[] {
    const now = this.#run?.runtime.now() ?? 0;
    return this.#slots.snapshot(now, this.#state === "running");
  }

  /**
   * Opens the outputs and the control socket: throws, before anything runs
   * (the master's onStart callbacks included), when that cannot be done.
   */
  async open(
    runtime: Runtime,
    emit: (record: PoolLogRecord) => void,
    log: Logger,
  ): Promise<void> {
    const childLog = createLogger(
      "workerpool.child",
      (r) => emit({ ...r, workerId: null, pid: runtime.pid }),
    );
    const launcher = await Launcher.open(runtime, this.#options, {
      log,
      childLog,
    }, {
      message: (child, message) => this.#onMessage(child, message),
      lost: (child, cause) => this.#onLost(child, cause),
      exited: (slot, child, status) => this.#onExit(slot, child, status),
      command: (request) => this.#commands(request),
    });
    const { checkInterval, workerTimeout, readyTimeout } = this.#options;
    const ports = new PortLocks(runtime, log, {
      socket: launcher.socketPath,
      takeover: this.#options.takeover,
    });
    this.#run = {
      runtime,
      emit,
      log,
      childLog,
      launcher,
      ports,
      rolling: new Rolling({
        clock: runtime,
        log,
        childLog,
        handedOver: () => ports.handedOver(),
        spawnNext: (slot, generation) => this.#spawnNext(slot, generation),
        abandon: (child) => {
          this.#slots.get(child.id)?.abandonNext(child);
          void child.stop("SIGTERM");
        },
        has: (slot) => this.#slots.has(slot),
        reloadBegan: () => this.#events.reloadBegan(),
        reloadEnded: (failure) => this.#events.reloadEnded(failure),
      }, this.#options.reloadConcurrency),
      ticker: new Ticker(
        runtime,
        // Deadlines are checked at a tenth of the shortest of them.
        Math.max(
          10,
          Math.min(checkInterval, workerTimeout / 10, readyTimeout / 10),
        ),
        (now, stall) => this.#tick(now, stall),
      ),
    };
  }

  /** Spawns every worker (once {@linkcode open} resolved). */
  start(): void {
    const run = this.#run;
    if (this.#state !== "idle" || run === null) return;
    this.#state = "running";
    this.#startedAt = run.runtime.now();
    for (const slot of this.#slots) this.#spawn(slot);
    // Said and done after the spawns: nothing delays the workers' start.
    run.log.info(
      `started ${
        plural(this.#slots.size, "worker")
      } on ${run.runtime.name} ${run.runtime.version}`,
    );
    run.ticker.start();
    this.#events.changed();
  }

  /**
   * A stop asked for from outside (a signal, `terminate()`): a SIGTERM
   * first waits `shutdownDelay`, while the workers serve and `/readyz`
   * answers 503, so that load balancers stop sending requests before the
   * workers drain. A second call during the wait stops at once.
   */
  stop(signal: "SIGTERM" | "SIGINT"): Promise<void> {
    const run = this.#run;
    const delay = this.#options.shutdownDelay;
    if (
      signal !== "SIGTERM" || delay === 0 || run === null ||
      this.#state !== "running" || this.#drain !== undefined
    ) return this.shutdown(signal);
    run.log.info(
      `${signal}: not ready any more; the workers serve for shutdownDelay ${delay} ms, then stop (signal again to stop now)`,
    );
    this.#drain = run.runtime.setTimeout(() => this.shutdown(signal), delay);
    this.#events.stopping();
    return this.#stopped.promise;
  }

  /**
   * Stops every worker with `signal`, SIGKILLs those alive after
   * `gracefulTimeout`, and resolves once all were reaped. Repeating it is
   * harmless; SIGINT during a SIGTERM shutdown is passed on to the workers.
   */
  shutdown(signal: "SIGTERM" | "SIGINT", exitCode = 0): Promise<void> {
    if (this.#drain !== undefined) {
      this.#run?.runtime.clearTimeout(this.#drain);
      this.#drain = undefined;
    }
    if (this.#state === "stopping" || this.#state === "stopped") {
      if (signal === "SIGINT" && this.#stopSignal === "SIGTERM") {
        this.#stopSignal = "SIGINT";
        this.#run?.launcher.stopAll("SIGINT");
      }
      return this.#stopped.promise;
    }
    this.#stopSignal = signal;
    this.#exitCode = exitCode;
    this.#readiness.stop(
      this.#haltCause ?? "the pool stopped before it was ready",
    );
    if (this.#run === null) {
      this.#state = "stopped"; // nothing was started
      this.#stopped.resolve();
      return this.#stopped.promise;
    }
    this.#state = "stopping";
    this.#events.stopping();
    this.#run.ticker.stop();
    this.#run.rolling.stop("the pool is stopping");
    for (const slot of this.#slots) slot.cancel(this.#run.runtime);
    const { launcher } = this.#run;
    this.#run.log.info(
      `stopping ${plural(launcher.children.size, "worker")} with ${signal}`,
    );
    launcher.stopAll(signal);
    this.#maybeStopped();
    return this.#stopped.promise;
  }

  /** `slot` joined the pool (`Slots.add`): it is spawned if the pool runs. */
  added(slot: Slot): void {
    if (this.#state === "running") this.#spawn(slot);
    this.#events.changed();
  }

  /**
   * `slot` left the pool (`Slots.remove`): its processes are stopped with
   * `signal`; resolves once they exited.
   */
  async removed(slot: Slot, signal: SignalName): Promise<void> {
    if (this.#run !== null) {
      slot.cancel(this.#run.runtime);
      this.#run.rolling.removed(slot);
    }
    this.#checkAllReady(); // the others may be all there is left
    this.#events.changed();
    const processes = [slot.child, slot.next, ...slot.retiring];
    await Promise.all(processes.map((child) => child?.stop(signal)));
    // Its counters live on in the pool's totals.
    this.#gone = addTotals(this.#gone, [slot.info(0, false)]);
  }

  /**
   * Replaces every worker's process, one id at a time (see `Rolling`);
   * reopens the output files first.
   */
  reload(): Promise<void> {
    const run = this.#run;
    if (this.#state !== "running" || run === null) {
      return Promise.reject(
        new Error(`Cannot reload: the pool is ${this.#state}`),
      );
    }
    void run.launcher.reopenOutputs();
    return run.rolling.reload(() => this.#slots);
  }

  /** Resolves once the pool has `size` ids, all ready (see `Readiness`). */
  whenSize(size: number): Promise<void> {
    const ready = this.#readiness.waitForSize(size);
    this.#checkAllReady();
    return ready;
  }

  /**
   * The pidfile at `path` names master `holder`, which this pool takes over
   * from: once every worker is ready, it is rewritten and that master told
   * to drain and exit.
   */
  takeOverPidfile(path: string, holder: number): void {
    this.#run?.ports.takeOverPidfile(path, holder);
  }

  /** Closes the control socket and the outputs, releases the port locks. */
  async dispose(): Promise<void> {
    if (this.#run === null) return;
    this.#run.ports.release();
    this.#run.ticker.stop();
    await this.#run.launcher.close();
  }

  #spawn(slot: Slot): void {
    const run = this.#run!;
    if (this.#state !== "running" || !slot.empty) return;
    if (!this.#slots.has(slot)) return;
    const child = run.launcher.launch(slot, run.rolling.generation);
    if (typeof child === "string") {
      // Out of processes or file descriptors, for now: back off and retry.
      run.childLog.error(`Cannot spawn worker ${slot.id}: ${child}`);
      slot.schedule(run.runtime, slot.spawnFailed(), () => this.#spawn(slot));
      return;
    }
    slot.spawned(child);
  }

  /** Spawns a replacement for `slot`, beside its current process. */
  #spawnNext(slot: Slot, generation: number): ChildHandle | string {
    if (this.#state !== "running") return `the pool is ${this.#state}`;
    const child = this.#run!.launcher.launch(slot, generation);
    if (typeof child !== "string") slot.spawnedNext(child);
    return child;
  }

  #onExit(slot: Slot, child: ChildHandle, status: ExitStatus): void {
    const run = this.#run!;
    const running = this.#state === "running" && this.#slots.has(slot);
    const failure = startFailure(child, status);
    // Once the pool was up, a broken deploy on disk must not halt it.
    const othersServing = this.#readiness.reached &&
      this.#slots.servingBesides(slot);
    const next = slot.exited(child, status, run.runtime.now(), {
      running,
      othersServing,
    });
    run.rolling.exited(child, failure);
    run.childLog[next.level](next.line);
    this.#events.changed();
    if (next.action === "halt") {
      this.#haltCause = next.cause;
      run.log.critical(next.cause);
      this.shutdown("SIGTERM", ExitCode.bootError);
    } else if (next.action === "spawn") {
      if (next.delay === 0) return this.#spawn(slot);
      slot.schedule(run.runtime, next.delay, () => this.#spawn(slot));
    } else this.#maybeStopped();
  }

  #onMessage(child: ChildHandle, message: WorkerMessage): void {
    if (message.t === "port") {
      this.#halting(
        this.#run!.ports.served(message.port, message.holder),
        ExitCode.bootError,
      );
    }
    if (message.t !== "log") {
      child.receive(message);
      if (message.t === "ready") this.#onReady(child);
      return;
    }
    child.seen();
    this.#run!.emit({
      ...message.record,
      datetime: new Date(message.record.datetime),
      workerId: child.id,
      pid: child.pid,
    });
  }

  #onReady(child: ChildHandle): void {
    const run = this.#run!;
    if (child.state !== "ready") return; // stopped while it started
    const slot = this.#slots.get(child.id);
    if (slot?.next === child) run.rolling.handOver(slot);
    else if (slot?.child === child) slot.policy.booted();
    run.rolling.ready(child);
    this.#checkAllReady();
    this.#events.changed();
  }

  #onLost(child: ChildHandle, cause: string): void {
    if (child.state === "stopping" || child.state === "exited") return;
    const run = this.#run!;
    child.disconnect();
    // A killed process's connection ends a moment before its exit status
    // arrives: its exit then says what happened, better than this would.
    run.runtime.setTimeout(() => {
      if (child.state === "stopping" || child.state === "exited") return;
      run.childLog.error(`${child} ${cause}; stopping it`);
      void child.stop("SIGTERM");
    }, LOST_GRACE_MS);
  }

  #checkAllReady(): void {
    const run = this.#run;
    if (!this.#readiness.check(this.#slots) || run === null) return;
    this.#halting(run.ports.ready(), ExitCode.failure);
  }

  /**
   * Halts the pool with `code` if `conflict` resolves with a reason: another
   * pool holds its port (see `PortLocks`).
   */
  #halting(conflict: Promise<string | null>, code: number): void {
    void conflict.then((cause) => {
      if (cause === null || this.stopping) return;
      this.#haltCause = cause;
      this.#run!.log.critical(cause);
      this.shutdown("SIGTERM", code);
    });
  }

  /**
   * The periodic check: what is overdue dies, what is missing is spawned.
   * `stall`: how long the master's own loop stood still (see `Ticker`).
   */
  #tick(now: number, stall: number): void {
    const run = this.#run!;
    if (this.#state !== "running") return;
    for (const child of run.launcher.children) {
      const overdue = child.overdue(now, stall, run.runtime);
      if (overdue !== null) child.kill(overdue);
    }
    for (const slot of this.#slots) {
      if (slot.empty && !slot.waiting) {
        run.childLog.warn(`worker ${slot.id} had no process; spawning one`);
        this.#spawn(slot);
      }
      run.rolling.check(slot, now);
    }
  }

  #maybeStopped(): void {
    const run = this.#run!;
    if (this.#state !== "stopping" || run.launcher.children.size > 0) return;
    this.#state = "stopped";
    run.launcher.drainOutputs(OUTPUT_DRAIN_MS).then((cut) => {
      if (cut > 0) {
        run.log.warn(
          `${cut} worker output streams stayed open after the workers exited (a grandchild holds them); closed them`,
        );
      }
      this.#stopped.resolve();
    });
  }
}

type Totals = PoolStatus["totals"];

/** Totals of nothing yet. */
function emptyTotals(): Totals {
  return Object.freeze({
    cpuTime: 0,
    requests: 0,
    restarts: 0,
    restartsBy: {},
  });
}

/** `base` plus what `workers` did. */
function addTotals(base: Totals, workers: readonly WorkerInfo[]): Totals {
  let { cpuTime, requests, restarts } = base;
  const restartsBy: Record<string, number> = { ...base.restartsBy };
  for (const worker of workers) {
    cpuTime += worker.totals.cpuTime;
    requests += worker.totals.requests;
    restarts += worker.restarts;
    for (const [reason, count] of Object.entries(worker.restartsBy)) {
      restartsBy[reason] = (restartsBy[reason] ?? 0) + count!;
    }
  }
  return Object.freeze({
    cpuTime,
    requests,
    restarts,
    restartsBy: Object.freeze(restartsBy),
  });
}
