/**
 * The master's pool: spawns one process per worker id, authenticates their
 * control connections, watches heartbeats, replaces workers that exit or
 * hang, and stops them all on shutdown.
 *
 * @module
 */
import { join } from "./_path.ts";
import { ChildHandle, describeExit, plural, randomToken } from "./_child.ts";
import {
  FrameError,
  readFrames,
  toWorkerMessage,
  type WorkerMessage,
} from "./_channel.ts";
import { describe } from "./errors.ts";
import { createLogger, type Logger, type PoolLogRecord } from "./logging.ts";
import { checkId, type ResolvedOptions } from "./_options.ts";
import { Outputs } from "./_output.ts";
import { RestartPolicy } from "./_restart_policy.ts";
import type {
  Connection,
  ExitStatus,
  Runtime,
  SignalName,
  UnixListener,
} from "./runtime/mod.ts";

/** The environment variables a worker process is started with. */
export const WORKER_ENV = {
  id: "WORKERPOOL_WORKER_ID",
  socket: "WORKERPOOL_CONTROL_SOCKET",
  token: "WORKERPOOL_TOKEN",
  heartbeat: "WORKERPOOL_HEARTBEAT_INTERVAL",
  graceful: "WORKERPOOL_GRACEFUL_TIMEOUT",
} as const;

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

/** What a worker looks like from outside, in {@linkcode Supervisor.pool}. */
export interface WorkerInfo {
  /** The logical worker id. */
  readonly id: number;
  /** The current process, or null while it is being restarted. */
  readonly pid: number | null;
  /**
   * `starting` until its start callbacks finished, `ready` after,
   * `stopping` once signalled, `restarting` while it waits for a new
   * process, `stopped` when the pool is not running (before it started,
   * after it stopped).
   */
  readonly state: "starting" | "ready" | "stopping" | "restarting" | "stopped";
  /** How many times this id's process was replaced. */
  readonly restarts: number;
  /** Milliseconds since the current process was spawned (0 without one). */
  readonly uptime: number;
}

interface Slot {
  readonly id: number;
  readonly policy: RestartPolicy;
  spawns: number;
  child: ChildHandle | null;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
}

type PoolState = "idle" | "running" | "stopping" | "stopped";

/** The master side of a pool. */
export class Pool {
  #runtime: Runtime;
  #options: ResolvedOptions;
  #emit: (record: PoolLogRecord) => void;
  #log: Logger;
  #childLog: Logger;
  #slots = new Map<number, Slot>();
  #tokens = new Map<string, ChildHandle>();
  #state: PoolState = "idle";
  #stopSignal: "SIGTERM" | "SIGINT" | null = null;
  #exitCode = 0;
  #stopped = Promise.withResolvers<void>();
  #controlDir: string | null = null;
  #listener: UnixListener | null = null;
  #outputs: Outputs | null = null;
  #checkTimer: ReturnType<typeof setInterval> | undefined;
  #command: { command: string; args: string[] };

  constructor(
    runtime: Runtime,
    options: ResolvedOptions,
    emit: (record: PoolLogRecord) => void,
  ) {
    this.#runtime = runtime;
    this.#options = options;
    this.#emit = emit;
    const master = (name: string) =>
      createLogger(
        name,
        (r) => emit({ ...r, workerId: null, pid: runtime.pid }),
      );
    this.#log = master("workerpool.supervisor");
    this.#childLog = master("workerpool.child");
    this.#command = runtime.scriptCommand();
    for (const id of options.ids) this.#slots.set(id, this.#newSlot(id));
  }

  /** The exit code the master should end with. */
  get exitCode(): number {
    return this.#exitCode;
  }

  /** A snapshot of every worker id in the pool. */
  snapshot(): readonly WorkerInfo[] {
    const now = Date.now();
    return Object.freeze([...this.#slots.values()].map((slot) =>
      Object.freeze({
        id: slot.id,
        pid: slot.child?.pid ?? null,
        state: slot.child?.state ??
          (this.#state === "running" ? "restarting" : "stopped"),
        restarts: Math.max(0, slot.spawns - 1),
        uptime: slot.child ? now - slot.child.spawnedAt : 0,
      })
    ));
  }

  /** Resolves once the pool has stopped and every worker was reaped. */
  get stopped(): Promise<void> {
    return this.#stopped.promise;
  }

  /** Opens the control socket and the outputs, and spawns every worker. */
  async start(): Promise<void> {
    if (this.#state !== "idle") return;
    const missing = this.#runtime.missingPoolPermission();
    if (missing !== null) {
      throw new Error(`the master needs ${missing} (or -A)`);
    }
    this.#controlDir = this.#runtime.makeTempDir("workerpool-");
    const socket = this.#socketPath();
    // No stale socket file can be in the directory: it was created just now,
    // private to this process, so there is nothing to unlink before listening.
    this.#listener = this.#runtime.listenUnix(socket, (c) => this.#accept(c));
    this.#outputs = await Outputs.open(
      this.#runtime,
      this.#options.stdout,
      this.#options.stderr,
      (error) => this.#log.error("Cannot copy worker output", error),
    );
    if (this.#state !== "idle") return; // stopped while opening
    this.#state = "running";
    this.#log.info(
      `starting ${
        plural(this.#slots.size, "worker")
      } on ${this.#runtime.name} ${this.#runtime.version}`,
    );
    for (const slot of this.#slots.values()) this.#spawn(slot);
    this.#checkTimer = setInterval(
      () => this.#reconcile(),
      this.#options.checkInterval,
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
        for (const child of this.#children()) child.kill("SIGINT");
      }
      return this.#stopped.promise;
    }
    this.#stopSignal = signal;
    this.#exitCode = exitCode;
    if (this.#state === "idle") {
      // Nothing was started: stopped at once.
      this.#state = "stopped";
      this.#stopped.resolve();
    } else {
      this.#state = "stopping";
      this.#stopAll(signal);
    }
    return this.#stopped.promise;
  }

  /** Adds worker `id` and spawns it if the pool runs. */
  addWorker(id: number): void {
    checkId(id, "Cannot add worker");
    if (this.#slots.has(id)) {
      throw new RangeError(
        `Cannot add worker: id ${id} is already in the pool`,
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
    clearTimeout(slot.restartTimer);
    const child = slot.child;
    if (child === null) return;
    await this.#stopChild(child, signal);
  }

  /** Closes the control socket and outputs and removes the private folder. */
  async dispose(): Promise<void> {
    clearInterval(this.#checkTimer);
    this.#listener?.close();
    await this.#outputs?.close();
    if (this.#controlDir !== null) this.#runtime.remove(this.#controlDir);
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

  #socketPath(): string {
    return join(this.#controlDir!, "control.sock");
  }

  *#children(): Generator<ChildHandle> {
    for (const child of this.#tokens.values()) yield child;
  }

  #spawn(slot: Slot): void {
    slot.restartTimer = undefined;
    if (this.#state !== "running" || slot.child !== null) return;
    if (this.#slots.get(slot.id) !== slot) return;
    const token = randomToken();
    const outputs = this.#outputs!;
    let child: ChildHandle;
    try {
      child = new ChildHandle(
        slot.id,
        token,
        this.#runtime.spawn(this.#command.command, {
          args: this.#command.args,
          env: {
            [WORKER_ENV.id]: String(slot.id),
            [WORKER_ENV.socket]: this.#socketPath(),
            [WORKER_ENV.token]: token,
            [WORKER_ENV.heartbeat]: String(this.#heartbeatInterval()),
            [WORKER_ENV.graceful]: String(this.#options.gracefulTimeout),
          },
          stdin: "null",
          stdout: outputs.mode("stdout"),
          stderr: outputs.mode("stderr"),
        }),
      );
    } catch (error) {
      this.#childLog.error(`Cannot spawn worker ${slot.id}`, error);
      this.#scheduleRestart(slot, { code: 1, signal: null }, 0);
      return;
    }
    slot.spawns++;
    slot.child = child;
    this.#tokens.set(token, child);
    outputs.pump("stdout", child.stdout);
    outputs.pump("stderr", child.stderr);
    this.#watch(child);
    this.#childLog.debug(`spawned ${child}`);
    child.status.then(
      (status) => this.#exited(slot, child, status),
      (error) => this.#childLog.critical(`Cannot reap ${child}`, error),
    );
  }

  #heartbeatInterval(): number {
    // Several beats per deadline, so one late beat is not a death sentence.
    return Math.floor(this.#options.workerTimeout / 5);
  }

  #watch(child: ChildHandle): void {
    const timeout = this.#options.workerTimeout;
    const check = () => {
      if (child.state === "stopping") return;
      const silent = Date.now() - child.lastSeen;
      if (silent < timeout) {
        child.watchdog = setTimeout(check, timeout - silent);
        return;
      }
      this.#childLog.error(
        `${child} sent no heartbeat for ${silent} ms (workerTimeout ${timeout} ms); killing it`,
      );
      child.state = "stopping";
      child.kill("SIGKILL");
    };
    child.watchdog = setTimeout(check, timeout);
  }

  #exited(slot: Slot, child: ChildHandle, status: ExitStatus): void {
    clearTimeout(child.watchdog);
    this.#tokens.delete(child.token);
    child.connection?.close();
    if (slot.child === child) slot.child = null;
    const uptime = Date.now() - child.spawnedAt;
    const line = `${child} ${describeExit(status)} after ${uptime} ms`;
    if (this.#state !== "running" || this.#slots.get(slot.id) !== slot) {
      this.#childLog.info(line);
      this.#maybeStopped();
      return;
    }
    if (child.stoppedBy !== null) {
      this.#childLog.info(
        `${line}, stopped by a ${child.stoppedBy} from elsewhere`,
      );
      this.#childLog.debug(
        `replacing worker ${slot.id} in ${SIGNALLED_RESTART_DELAY} ms unless the pool stops`,
      );
      slot.restartTimer = setTimeout(
        () => this.#spawn(slot),
        SIGNALLED_RESTART_DELAY,
      );
      return;
    }
    this.#childLog.warn(line);
    this.#scheduleRestart(slot, status, uptime, child.bootError);
  }

  #scheduleRestart(
    slot: Slot,
    status: ExitStatus,
    uptime: number,
    cause: string | null = null,
  ): void {
    const decision = slot.policy.exited(status, uptime);
    if (decision.action === "halt") {
      this.#log.critical(
        `worker ${slot.id} failed to start ${
          plural(decision.bootErrors, "time")
        } in a row; halting the pool. Last cause: ${
          cause ?? `exit code ${status.code}`
        }`,
      );
      this.shutdown("SIGTERM", 3);
      return;
    }
    if (decision.delay === 0) return this.#spawn(slot);
    this.#childLog.info(
      `restarting worker ${slot.id} in ${decision.delay} ms (it keeps dying young)`,
    );
    slot.restartTimer = setTimeout(
      () => this.#spawn(slot),
      decision.delay,
    );
  }

  /** The periodic check: respawn any id left without a process. */
  #reconcile(): void {
    if (this.#state !== "running") return;
    for (const slot of this.#slots.values()) {
      if (slot.child === null && slot.restartTimer === undefined) {
        this.#childLog.warn(`worker ${slot.id} had no process; spawning one`);
        this.#spawn(slot);
      }
    }
  }

  #stopAll(signal: "SIGTERM" | "SIGINT"): void {
    clearInterval(this.#checkTimer);
    for (const slot of this.#slots.values()) clearTimeout(slot.restartTimer);
    const children = [...this.#children()];
    this.#log.info(
      `stopping ${plural(children.length, "worker")} with ${signal}`,
    );
    Promise.all(children.map((child) => this.#stopChild(child, signal)))
      .then(() => this.#maybeStopped());
  }

  async #stopChild(child: ChildHandle, signal: SignalName): Promise<void> {
    child.state = "stopping";
    clearTimeout(child.watchdog);
    child.kill(signal);
    const timer = setTimeout(() => {
      if (child.kill("SIGKILL")) {
        this.#childLog.warn(
          `${child} still running after gracefulTimeout ${this.#options.gracefulTimeout} ms; sent SIGKILL`,
        );
      }
    }, this.#options.gracefulTimeout);
    await child.status;
    clearTimeout(timer);
  }

  #maybeStopped(): void {
    if (this.#state !== "stopping" || this.#tokens.size > 0) return;
    this.#state = "stopped";
    this.#outputs!.drain(OUTPUT_DRAIN_MS).then((cut) => {
      if (cut > 0) {
        this.#log.warn(
          `${cut} worker output streams stayed open after the workers exited (a grandchild holds them); closed them`,
        );
      }
      this.#stopped.resolve();
    });
  }

  #accept(connection: Connection): void {
    let child: ChildHandle | null = null;
    const hello = setTimeout(() => {
      this.#log.warn("dropped a control connection: no hello in time");
      connection.close();
    }, this.#options.workerTimeout);
    readFrames(connection, (frame) => {
      const message = toWorkerMessage(frame);
      if (child === null) {
        child = this.#authenticate(message);
        child.connection = connection;
        clearTimeout(hello);
      }
      this.#handle(child, message);
    }).catch((error) => {
      const who = child === null ? "an unauthenticated peer" : String(child);
      this.#log.warn(
        `dropped the control connection of ${who}: ${describe(error)}`,
      );
    }).finally(() => {
      clearTimeout(hello);
      connection.close();
      if (child?.connection === connection) child.connection = null;
    });
  }

  #authenticate(message: WorkerMessage): ChildHandle {
    if (message.t !== "hello") {
      throw new FrameError("Cannot accept connection: it did not say hello");
    }
    const child = this.#tokens.get(message.token);
    if (
      child === undefined || child.id !== message.id ||
      child.connection !== null
    ) {
      throw new FrameError(
        `Cannot accept connection: wrong token for worker ${message.id}`,
      );
    }
    return child;
  }

  #handle(child: ChildHandle, message: WorkerMessage): void {
    child.lastSeen = Date.now();
    switch (message.t) {
      case "ready":
        if (child.state === "starting") child.state = "ready";
        this.#slots.get(child.id)?.policy.booted();
        this.#childLog.info(`${child} is ready`);
        break;
      case "log":
        this.#emit({
          ...message.record,
          datetime: new Date(message.record.datetime),
          workerId: child.id,
          pid: child.pid,
        });
        break;
      case "boot-error":
        child.bootError = message.message;
        this.#childLog.error(`${child} failed to start: ${message.message}`);
        break;
      case "hello":
        this.#childLog.debug(`${child} connected`);
        break;
      case "stopping":
        if (child.state !== "stopping") child.stoppedBy = message.signal;
        break;
      case "hb":
        break;
    }
  }
}
