/**
 * `ChildHandle`: the master's view of one worker process, from spawn to
 * exit. It owns its state: every transition is a method here, and no other
 * file changes its fields.
 *
 * @module
 */
import type { WorkerMessage } from "./_protocol.ts";
import { type ChildDeadlines, Deadlines } from "./_deadlines.ts";
import { type RecycleLimits, type Replacement, Usage } from "./_recycle.ts";
import { stackFrames } from "./errors.ts";
import type {
  ChildProcess,
  Clock,
  Connection,
  ExitStatus,
  Processes,
  SignalName,
  Timer,
} from "./runtime/mod.ts";
import type { Logger } from "./types.ts";

/** Where a worker process is in its life. */
export type ChildState = "starting" | "ready" | "stopping" | "exited";

/** What a child reported when its `onStart` callbacks failed. */
export interface BootFailure {
  message: string;
  stack: string | null;
  /** Trying again cannot help: the pool halts at once. */
  fatal?: boolean;
}

/** One spawned worker process. */
export class ChildHandle {
  /** The logical worker id. */
  readonly id: number;
  /** The secret the process authenticates its control connection with. */
  readonly token: string;
  /** When it was spawned (the clock's milliseconds). */
  readonly spawnedAt: number;
  /** The reload it was spawned in (0 before the first). */
  readonly generation: number;
  /** What its heartbeats said: RSS, requests; its recycling limits. */
  readonly usage: Usage;
  #process: ChildProcess;
  #clock: Clock;
  #log: Logger;
  #gracefulTimeout: number;
  #deadlines: Deadlines;
  #state: ChildState = "starting";
  #connection: Connection | null = null;
  #killTimer: Timer | undefined;
  #sent: SignalName | null = null;
  #stoppedBy: string | null = null;
  #bootFailure: BootFailure | null = null;
  #killedFor: string | null = null;
  #wasReady = false;
  #leaving = false;

  constructor(
    id: number,
    token: string,
    process: ChildProcess,
    context: {
      clock: Clock;
      log: Logger;
      deadlines: ChildDeadlines;
      generation: number;
      limits: RecycleLimits;
    },
  ) {
    this.id = id;
    this.generation = context.generation;
    this.usage = new Usage(context.limits);
    this.token = token;
    this.#process = process;
    this.#clock = context.clock;
    this.#log = context.log;
    this.#gracefulTimeout = context.deadlines.gracefulTimeout;
    this.spawnedAt = this.#clock.now();
    this.#deadlines = new Deadlines(this.spawnedAt, context.deadlines);
  }

  get pid(): number {
    return this.#process.pid;
  }

  get state(): ChildState {
    return this.#state;
  }

  /** Resolves once the process has exited and was reaped. */
  get status(): Promise<ExitStatus> {
    return this.#process.status;
  }

  get stdout(): ReadableStream<Uint8Array> | null {
    return this.#process.stdout;
  }

  get stderr(): ReadableStream<Uint8Array> | null {
    return this.#process.stderr;
  }

  /** Whether it has an authenticated control connection. */
  get connected(): boolean {
    return this.#connection !== null;
  }

  /** A signal from elsewhere than the master stopped it, if one did. */
  get stoppedBy(): string | null {
    return this.#stoppedBy;
  }

  /** What it reported when its start failed, if it did. */
  get bootFailure(): BootFailure | null {
    return this.#bootFailure;
  }

  /** Why the master killed it, if it did. */
  get killedFor(): string | null {
    return this.#killedFor;
  }

  /** Whether it ever reported ready. */
  get wasReady(): boolean {
    return this.#wasReady;
  }

  /** It said goodbye: the end of its connection is expected. */
  get leaving(): boolean {
    return this.#leaving;
  }

  /** It said hello on `connection`; false if it already has one. */
  attach(connection: Connection): boolean {
    if (this.#connection !== null || this.#state === "exited") return false;
    this.#connection = connection;
    this.seen();
    return true;
  }

  /** When it last sent a frame (or was spawned), on the clock. */
  get lastSeen(): number {
    return this.#deadlines.lastSeen;
  }

  /** Any frame from it: its event loop runs. */
  seen(): void {
    this.#deadlines.seen(this.#clock.now());
  }

  /** A frame from it (log records aside, which the pool forwards). */
  receive(message: Exclude<WorkerMessage, { t: "log" }>): void {
    this.seen();
    switch (message.t) {
      case "hb":
        this.usage.report(message, this.#state === "ready");
        break;
      case "hello":
        this.#log.debug(`${this} connected`);
        break;
      case "ready":
        // One stopped during its start is not ready, whatever it says.
        if (this.#state !== "starting") break;
        this.#state = "ready";
        this.#wasReady = true;
        this.#log.info(`${this} is ready`);
        break;
      case "boot-error":
        this.#bootFailure = message;
        this.#log.error(
          `${this} failed to start: ${message.message}`,
          ...stackFrames(message.stack),
        );
        break;
      case "stopping":
        this.stoppedFromElsewhere(message.signal);
        break;
      case "port":
        break; // the pool's business
      case "bye":
        // Every frame before it was read: closing the channel says so.
        this.#leaving = true;
        this.disconnect();
        break;
    }
  }

  /**
   * Why it is overdue at `now` (and should be killed), or null. `stall` is
   * how long the master's own loop stood still since the last check; the
   * time it waits for a CPU, or blocks writing its output, does not count
   * against it either (see `Deadlines`).
   */
  overdue(
    now: number,
    stall: number,
    system: Pick<Processes, "mainThread">,
  ): string | null {
    if (this.#state !== "starting" && this.#state !== "ready") return null;
    if (stall > 0) this.#deadlines.discount(stall);
    if (this.#connection !== null && this.#deadlines.late(now)) {
      const thread = system.mainThread(this.pid);
      if (thread?.writing) {
        if (this.#deadlines.writing(now)) {
          this.#log.warn(
            `${this} is blocked writing its output: whatever reads its stdout or stderr is not reading; it is not killed for that`,
          );
        }
      } else if (thread !== null) this.#deadlines.starved(thread.cpuWait);
    }
    const phase = this.#state === "ready"
      ? "ready"
      : this.#connection === null
      ? "connecting"
      : "starting";
    return this.#deadlines.overdue(now, phase);
  }

  /** Why it is due to be replaced at `now` (see `_recycle.ts`), or null. */
  recycleDue(now: number): Replacement | null {
    if (this.#state !== "ready") return null;
    return this.usage.due(this.spawnedAt, now);
  }

  /**
   * Stops it with `signal`; SIGKILL follows after `gracefulTimeout`. A
   * different signal later is passed on (SIGINT after SIGTERM), the same
   * one is not sent twice. Resolves once it exited.
   */
  stop(signal: SignalName): Promise<ExitStatus> {
    this.#stopping();
    if (this.#sent !== signal && this.#state !== "exited") {
      this.#sent = signal;
      this.#process.kill(signal);
    }
    return this.status;
  }

  /**
   * It received `signal` from elsewhere (a Ctrl-C, `kill`, systemd): the
   * same bound applies as to a stop the master began.
   */
  stoppedFromElsewhere(signal: string): void {
    if (this.#state === "stopping" || this.#state === "exited") return;
    this.#stoppedBy = signal;
    this.#stopping();
  }

  /** Kills it at once with SIGKILL. */
  kill(reason: string): void {
    if (this.#state === "exited") return;
    this.#log.error(`${this} ${reason}; killing it`);
    this.#killedFor = reason;
    this.#state = "stopping";
    this.#process.kill("SIGKILL");
  }

  /** It exited: no timer or connection of it survives. */
  exited(): void {
    this.#state = "exited";
    this.#clock.clearTimeout(this.#killTimer);
    this.#connection?.close();
  }

  /** Closes its control connection (after a protocol error). */
  disconnect(): void {
    this.#connection?.close();
  }

  #stopping(): void {
    if (this.#state === "stopping" || this.#state === "exited") return;
    this.#state = "stopping";
    const gracefulTimeout = this.#gracefulTimeout;
    this.#killTimer = this.#clock.setTimeout(() => {
      if (this.#state === "exited") return;
      this.#log.warn(
        `${this} still running after gracefulTimeout ${gracefulTimeout} ms; sent SIGKILL`,
      );
      this.#process.kill("SIGKILL");
    }, gracefulTimeout);
  }

  /** `worker 3 (pid 1234)`, for log lines. */
  toString(): string {
    return `worker ${this.id} (pid ${this.pid})`;
  }
}
