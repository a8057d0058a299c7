/**
 * The master's pool: the one owner of the worker ids, and the loop that
 * keeps a live, ready process for each. Every event and its handler:
 *
 * | event                                  | handler          |
 * | -------------------------------------- | ---------------- |
 * | `start()`                              | spawn every id   |
 * | a process exits                        | `#onExit`: replace it now, after a backoff, or halt the pool |
 * | a frame arrives (hello, hb, ready, log, boot-error, stopping, bye) | `#onMessage` |
 * | a connection ends without goodbye, or breaks the protocol | `#onLost`: stop that worker (replaced on exit) |
 * | the tick (`checkInterval`, finer for short `workerTimeout`s) | `#tick`: discount the master's own stall, kill the overdue, spawn ids left without a process |
 * | `addWorker` / `removeWorker`           | the slots        |
 * | `shutdown(signal)`                     | stop every process, SIGKILL after `gracefulTimeout`, drain output |
 *
 * @module
 */
import {
  type ChildDeadlines,
  ChildHandle,
  describeExit,
  plural,
  randomToken,
} from "./_child.ts";
import { ControlServer, removeStaleControlDirs } from "./_control_server.ts";
import { checkId, MAX_WORKERS, type ResolvedOptions } from "./_options.ts";
import { Outputs } from "./_output.ts";
import {
  encodeWorkerEnv,
  ExitCode,
  heartbeatInterval,
  type WorkerMessage,
} from "./_protocol.ts";
import { RestartPolicy } from "./_restart_policy.ts";
import { describe } from "./errors.ts";
import { createLogger } from "./logging.ts";
import type { ExitStatus, Runtime, SignalName, Timer } from "./runtime/mod.ts";
import type { Logger, PoolLogRecord, WorkerInfo } from "./types.ts";

/**
 * The frames of a stack (its first lines repeat the message already in the
 * record), as one argument starting on a line of its own.
 */
function stackFrames(stack: string | null): string[] {
  const frames = stack?.split("\n").filter((line) => /^\s+at /.test(line));
  return frames?.length ? [`\n${frames.join("\n")}`] : [];
}

/** The first backoff delay after repeated early deaths. */
const INITIAL_RESTART_DELAY = 100;
/** How long worker output may stay open after all workers exited. */
const OUTPUT_DRAIN_MS = 2000;
/**
 * The wait before replacing a worker stopped by a signal from elsewhere: a
 * Ctrl-C or a systemd stop signals the master too, and its own handler must
 * get the chance to stop the pool before a new worker starts.
 */
const SIGNALLED_RESTART_DELAY = 250;

interface Slot {
  readonly id: number;
  readonly policy: RestartPolicy;
  spawns: number;
  child: ChildHandle | null;
  restartTimer: Timer | undefined;
}

type PoolState = "idle" | "running" | "stopping" | "stopped";

/** Where the pool runs: set by `start()`. */
interface Running {
  runtime: Runtime;
  emit: (record: PoolLogRecord) => void;
  log: Logger;
  childLog: Logger;
  control: ControlServer;
  outputs: Outputs;
  command: { command: string; args: string[] };
  tick: Timer | undefined;
  nextTickAt: number;
}

/** The master side of a pool. */
export class Pool {
  #options: ResolvedOptions;
  #slots = new Map<number, Slot>();
  #children = new Set<ChildHandle>();
  #state: PoolState = "idle";
  #run: Running | null = null;
  #stopSignal: "SIGTERM" | "SIGINT" | null = null;
  #exitCode: number = ExitCode.ok;
  #haltCause: string | null = null;
  #stopped = Promise.withResolvers<void>();
  #allReady = Promise.withResolvers<void>();

  constructor(options: ResolvedOptions) {
    this.#options = options;
    for (const id of options.ids) this.#slots.set(id, this.#newSlot(id));
    this.#allReady.promise.catch(() => {}); // awaited only by a daemon
  }

  /** The exit code the master should end with. */
  get exitCode(): number {
    return this.#exitCode;
  }

  /** Whether a stop was asked for (the pool may still be stopping). */
  get stopping(): boolean {
    return this.#state === "stopping" || this.#state === "stopped";
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
    return this.#allReady.promise;
  }

  /** A snapshot of every worker id in the pool. */
  snapshot(): readonly WorkerInfo[] {
    const now = this.#run?.runtime.now() ?? 0;
    return Object.freeze([...this.#slots.values()].map((slot) => {
      const child = slot.child;
      return Object.freeze(
        {
          id: slot.id,
          pid: child?.pid ?? null,
          state: child === null
            ? (this.#state === "running" ? "restarting" : "stopped")
            : child.state === "exited"
            ? "stopped"
            : child.state,
          restarts: Math.max(0, slot.spawns - 1),
          uptime: child ? Math.round(now - child.spawnedAt) : 0,
        } satisfies WorkerInfo,
      );
    }));
  }

  /**
   * Opens the outputs and the control socket and spawns every worker.
   * Throws, before anything is spawned, when that cannot be done.
   */
  async start(
    runtime: Runtime,
    emit: (record: PoolLogRecord) => void,
  ): Promise<void> {
    if (this.#state !== "idle") return;
    const master = (name: string) =>
      createLogger(
        name,
        (r) => emit({ ...r, workerId: null, pid: runtime.pid }),
      );
    const log = master("workerpool.supervisor");
    const missing = runtime.missingPoolPermission();
    if (missing !== null) {
      throw new Error(`the master needs ${missing} (or -A)`);
    }
    const outputs = await Outputs.open(
      runtime,
      this.#options.stdout,
      this.#options.stderr,
      (error) => log.error("Cannot copy worker output", error),
    );
    if (this.#state !== "idle") return void await outputs.close();
    const childLog = master("workerpool.child");
    const control = new ControlServer(runtime, log, {
      message: (child, message) => this.#onMessage(child, message),
      lost: (child, cause) => this.#onLost(child, cause),
    });
    this.#run = {
      runtime,
      emit,
      log,
      childLog,
      control,
      outputs,
      command: runtime.scriptCommand(),
      tick: undefined,
      nextTickAt: 0,
    };
    this.#state = "running";
    log.info(
      `starting ${
        plural(this.#slots.size, "worker")
      } on ${runtime.name} ${runtime.version}`,
    );
    for (const slot of this.#slots.values()) this.#spawn(slot);
    this.#scheduleTick();
    removeStaleControlDirs(runtime, log).catch((error) =>
      log.debug(`Cannot look for stale control directories: ${describe(error)}`)
    );
  }

  /**
   * Stops every worker with `signal`, SIGKILLs those alive after
   * `gracefulTimeout`, and resolves once all were reaped. Repeating it is
   * harmless; SIGINT during a SIGTERM shutdown is passed on to the workers.
   */
  shutdown(signal: "SIGTERM" | "SIGINT", exitCode = 0): Promise<void> {
    if (this.#state === "stopping" || this.#state === "stopped") {
      if (signal === "SIGINT" && this.#stopSignal === "SIGTERM") {
        this.#stopSignal = "SIGINT";
        for (const child of this.#children) void child.stop("SIGINT");
      }
      return this.#stopped.promise;
    }
    this.#stopSignal = signal;
    this.#exitCode = exitCode;
    this.#allReady.reject(
      new Error(this.#haltCause ?? "the pool stopped before it was ready"),
    );
    if (this.#run === null) {
      this.#state = "stopped"; // nothing was started
      this.#stopped.resolve();
      return this.#stopped.promise;
    }
    this.#state = "stopping";
    this.#run.runtime.clearTimeout(this.#run.tick);
    for (const slot of this.#slots.values()) {
      this.#run.runtime.clearTimeout(slot.restartTimer);
    }
    this.#run.log.info(
      `stopping ${plural(this.#children.size, "worker")} with ${signal}`,
    );
    for (const child of this.#children) void child.stop(signal);
    this.#maybeStopped();
    return this.#stopped.promise;
  }

  /** Adds worker `id`, spawned at once if the pool runs. */
  addWorker(id: number): void {
    checkId(id, "Cannot add worker");
    if (this.#slots.has(id)) {
      throw new RangeError(
        `Cannot add worker: id ${id} is already in the pool`,
      );
    }
    if (this.#slots.size >= MAX_WORKERS) {
      throw new RangeError(
        `Cannot add worker ${id}: the pool has the most workers allowed, ${MAX_WORKERS}`,
      );
    }
    if (this.#state === "stopping" || this.#state === "stopped") {
      throw new Error(`Cannot add worker ${id}: the pool is stopping`);
    }
    const slot = this.#newSlot(id);
    this.#slots.set(id, slot);
    if (this.#state === "running") this.#spawn(slot);
  }

  /** Removes worker `id`: stops it with `signal`, resolves once it exited. */
  async removeWorker(id: number, signal: SignalName): Promise<void> {
    const slot = this.#slots.get(id);
    if (slot === undefined) {
      throw new RangeError(`Cannot remove worker: no worker has id ${id}`);
    }
    this.#slots.delete(id);
    this.#run?.runtime.clearTimeout(slot.restartTimer);
    if (slot.child !== null) await slot.child.stop(signal);
  }

  /** Closes the control socket and the outputs. */
  async dispose(): Promise<void> {
    if (this.#run === null) return;
    this.#run.runtime.clearTimeout(this.#run.tick);
    this.#run.control.close();
    await this.#run.outputs.close();
  }

  #newSlot(id: number): Slot {
    return {
      id,
      policy: new RestartPolicy({
        minUptime: this.#options.minUptime,
        initialDelay: INITIAL_RESTART_DELAY,
        maxDelay: this.#options.maxRestartDelay,
        maxBootErrors: this.#options.maxBootErrors,
      }),
      spawns: 0,
      child: null,
      restartTimer: undefined,
    };
  }

  #spawn(slot: Slot): void {
    slot.restartTimer = undefined;
    const run = this.#run!;
    if (this.#state !== "running" || slot.child !== null) return;
    if (this.#slots.get(slot.id) !== slot) return;
    const token = randomToken();
    let child: ChildHandle;
    try {
      child = new ChildHandle(
        slot.id,
        token,
        run.runtime.spawn(run.command.command, {
          args: run.command.args,
          env: encodeWorkerEnv({
            id: slot.id,
            socket: run.control.socketPath,
            token,
            heartbeatInterval: heartbeatInterval(this.#options.workerTimeout),
            gracefulTimeout: this.#options.gracefulTimeout,
            masterPid: run.runtime.pid,
          }),
          stdin: "null",
          stdout: run.outputs.mode("stdout"),
          stderr: run.outputs.mode("stderr"),
        }),
        { clock: run.runtime, log: run.childLog, deadlines: this.#deadlines() },
      );
    } catch (error) {
      // Out of processes or file descriptors, for now: back off and retry.
      // The message only: formatting a stack needs file descriptors.
      run.childLog.error(`Cannot spawn worker ${slot.id}: ${describe(error)}`);
      this.#restart(slot, 0, null);
      return;
    }
    slot.spawns++;
    slot.child = child;
    this.#children.add(child);
    run.control.admit(child);
    run.outputs.pump("stdout", child.stdout);
    run.outputs.pump("stderr", child.stderr);
    run.childLog.debug(`spawned ${child}`);
    child.status.then(
      (status) => this.#onExit(slot, child, status),
      (error) => run.childLog.critical(`Cannot reap ${child}`, error),
    );
  }

  #deadlines(): ChildDeadlines {
    const { readyTimeout, workerTimeout, gracefulTimeout } = this.#options;
    return { readyTimeout, workerTimeout, gracefulTimeout };
  }

  #onExit(slot: Slot, child: ChildHandle, status: ExitStatus): void {
    const run = this.#run!;
    run.control.forget(child);
    child.exited();
    this.#children.delete(child);
    if (slot.child === child) slot.child = null;
    const uptime = Math.round(run.runtime.now() - child.spawnedAt);
    const line = `${child} ${describeExit(status)} after ${uptime} ms`;
    if (this.#state !== "running" || this.#slots.get(slot.id) !== slot) {
      run.childLog.info(line);
      return this.#maybeStopped();
    }
    if (child.stoppedBy !== null) {
      run.childLog.info(
        `${line}, stopped by a ${child.stoppedBy} from elsewhere`,
      );
      run.childLog.debug(
        `replacing worker ${slot.id} in ${SIGNALLED_RESTART_DELAY} ms unless the pool stops`,
      );
      slot.restartTimer = run.runtime.setTimeout(
        () => this.#spawn(slot),
        SIGNALLED_RESTART_DELAY,
      );
      return;
    }
    run.childLog.warn(line);
    // Exiting before ready, however, is a failure to start.
    const cause = child.wasReady ? null : child.bootFailure?.message ??
      child.killedFor ?? `it ${describeExit(status)} before it was ready`;
    this.#restart(slot, uptime, cause);
  }

  /** Spawns `slot` again, now or after a backoff, or halts the pool. */
  #restart(slot: Slot, uptime: number, bootError: string | null): void {
    const run = this.#run!;
    const decision = slot.policy.exited(uptime, bootError !== null);
    if (decision.action === "halt") {
      this.#haltCause = `worker ${slot.id} failed to start ${
        plural(decision.bootErrors, "time")
      } in a row; halting the pool. Last cause: ${bootError}`;
      run.log.critical(this.#haltCause);
      this.shutdown("SIGTERM", ExitCode.bootError);
      return;
    }
    if (decision.delay === 0) return this.#spawn(slot);
    run.childLog.info(
      `restarting worker ${slot.id} in ${decision.delay} ms (it keeps dying young)`,
    );
    slot.restartTimer = run.runtime.setTimeout(
      () => this.#spawn(slot),
      decision.delay,
    );
  }

  #onMessage(child: ChildHandle, message: WorkerMessage): void {
    const run = this.#run!;
    child.seen();
    switch (message.t) {
      case "hello":
        run.childLog.debug(`${child} connected`);
        break;
      case "hb":
        break;
      case "ready":
        child.ready();
        this.#slots.get(child.id)?.policy.booted();
        run.childLog.info(`${child} is ready`);
        this.#checkAllReady();
        break;
      case "log":
        run.emit({
          ...message.record,
          datetime: new Date(message.record.datetime),
          workerId: child.id,
          pid: child.pid,
        });
        break;
      case "boot-error":
        child.bootFailed(message);
        run.childLog.error(
          `${child} failed to start: ${message.message}`,
          ...stackFrames(message.stack),
        );
        break;
      case "stopping":
        child.stoppedFromElsewhere(message.signal);
        break;
      case "bye":
        // Every frame before it was read: closing tells the worker so.
        child.bye();
        child.disconnect();
        break;
    }
  }

  #onLost(child: ChildHandle, cause: string): void {
    if (child.state === "stopping" || child.state === "exited") return;
    const run = this.#run!;
    run.childLog.error(`${child} ${cause}; stopping it`);
    child.disconnect();
    void child.stop("SIGTERM");
  }

  #checkAllReady(): void {
    for (const slot of this.#slots.values()) {
      if (slot.child?.state !== "ready") return;
    }
    this.#allReady.resolve();
  }

  #scheduleTick(): void {
    const run = this.#run!;
    const interval = Math.max(
      10,
      Math.min(this.#options.checkInterval, this.#options.workerTimeout / 10),
    );
    run.nextTickAt = run.runtime.now() + interval;
    run.tick = run.runtime.setTimeout(() => this.#tick(), interval);
  }

  /** The periodic check: what is overdue dies, what is missing is spawned. */
  #tick(): void {
    const run = this.#run!;
    if (this.#state !== "running") return;
    const now = run.runtime.now();
    // A tick that runs late measures how long the master's own loop stood
    // still (SIGSTOP, a VM pause, a slow log sink): frames that arrived
    // meanwhile are not read yet, so that time counts against no worker.
    const stall = Math.max(0, now - run.nextTickAt);
    for (const child of this.#children) {
      if (stall > 0) child.discount(stall);
      const overdue = child.overdue(now);
      if (overdue !== null) child.kill(overdue);
    }
    for (const slot of this.#slots.values()) {
      if (slot.child === null && slot.restartTimer === undefined) {
        run.childLog.warn(`worker ${slot.id} had no process; spawning one`);
        this.#spawn(slot);
      }
    }
    this.#scheduleTick();
  }

  #maybeStopped(): void {
    if (this.#state !== "stopping" || this.#children.size > 0) return;
    this.#state = "stopped";
    const run = this.#run!;
    run.outputs.drain(OUTPUT_DRAIN_MS).then((cut) => {
      if (cut > 0) {
        run.log.warn(
          `${cut} worker output streams stayed open after the workers exited (a grandchild holds them); closed them`,
        );
      }
      this.#stopped.resolve();
    });
  }
}
