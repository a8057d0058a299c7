/**
 * `ChildHandle`: the master's view of one worker process, from spawn to exit.
 *
 * @module
 */
import type {
  ChildProcess,
  Connection,
  ExitStatus,
  SignalName,
} from "./runtime/mod.ts";

/** Where a worker process is in its life. */
export type ChildState = "starting" | "ready" | "stopping";

/** One spawned worker process. */
export class ChildHandle {
  /** The logical worker id. */
  readonly id: number;
  /** The secret the process authenticates its control connection with. */
  readonly token: string;
  /** When it was spawned (ms since the epoch). */
  readonly spawnedAt: number = Date.now();
  state: ChildState = "starting";
  /** When it last sent anything on the control channel. */
  lastSeen: number = this.spawnedAt;
  /** Its authenticated control connection, once it said hello. */
  connection: Connection | null = null;
  /** The cause it reported when its start callbacks failed. */
  bootError: string | null = null;
  /** A signal it received from elsewhere than the master, if any. */
  stoppedBy: string | null = null;
  /** The pending heartbeat check. */
  watchdog: ReturnType<typeof setTimeout> | undefined;
  #process: ChildProcess;

  constructor(id: number, token: string, process: ChildProcess) {
    this.id = id;
    this.token = token;
    this.#process = process;
  }

  get pid(): number {
    return this.#process.pid;
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

  /** Sends `signal`; false when the process has already exited. */
  kill(signal: SignalName): boolean {
    return this.#process.kill(signal);
  }

  /** `worker 3 (pid 1234)`, for log lines. */
  toString(): string {
    return `worker ${this.id} (pid ${this.pid})`;
  }
}

/** Describes an exit status for a log line. */
export function describeExit(status: ExitStatus): string {
  return status.signal === null
    ? `exited with code ${status.code}`
    : `was killed by ${status.signal}`;
}

/** `1 worker`, `2 workers`: a count with its noun. */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** A random secret, 32 hex digits. */
export function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
