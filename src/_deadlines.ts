/**
 * When a worker process must next show a sign of life: ready within
 * `readyTimeout` of its spawn, a frame within `workerTimeout` of the last
 * once it said hello. Time that was not the worker's to use does not count:
 * the master's own stall, and the worker's waits for a CPU.
 *
 * @module
 */

/** The deadlines a child is held to (milliseconds). */
export interface ChildDeadlines {
  /** From spawn to ready (its `onStart` callbacks finished). */
  readyTimeout: number;
  /** Between two signs of life, once it said hello. */
  workerTimeout: number;
  /** From the stop signal to SIGKILL. */
  gracefulTimeout: number;
}

/** Where a child is, as its deadlines see it. */
export type Phase = "connecting" | "starting" | "ready";

/** The deadlines of one child, on the master's clock. */
export class Deadlines {
  #limits: ChildDeadlines;
  #lastSeen: number;
  #readyBy: number;
  #heartbeatBy = Infinity;
  #cpuWait: number | null = null;
  #writing = false;

  /** Deadlines of a child spawned at `spawnedAt`. */
  constructor(spawnedAt: number, limits: ChildDeadlines) {
    this.#limits = limits;
    this.#lastSeen = spawnedAt;
    this.#readyBy = spawnedAt + limits.readyTimeout;
  }

  /** When it last showed a sign of life (or was spawned). */
  get lastSeen(): number {
    return this.#lastSeen;
  }

  /** A frame arrived at `now`: the heartbeat deadline starts again. */
  seen(now: number): void {
    this.#lastSeen = now;
    this.#heartbeatBy = now + this.#limits.workerTimeout;
    this.#cpuWait = null;
    this.#writing = false;
  }

  /**
   * The master's own loop stood still for `ms` (a pause, a slow sink): that
   * time is not the worker's, so its deadlines move by as much.
   */
  discount(ms: number): void {
    this.#readyBy += ms;
    this.#heartbeatBy += ms;
  }

  /**
   * Whether it has been silent long enough (two heartbeats) that the time
   * it spends waiting for a CPU should be watched: see {@linkcode starved}.
   */
  late(now: number): boolean {
    return now - this.#lastSeen > 2 * this.#limits.workerTimeout / 5;
  }

  /**
   * `wait` is how long (ms, all its life) its main thread has waited for a
   * CPU while runnable. What it waited since the last sample was not its
   * own silence: on a machine busy starting 32 workers on 2 cores, say, a
   * healthy worker can go without a CPU for longer than `workerTimeout`.
   * A hung loop runs and a stopped process does not wait: neither gains.
   */
  starved(wait: number): void {
    if (this.#cpuWait !== null && wait > this.#cpuWait) {
      this.#heartbeatBy += wait - this.#cpuWait;
    }
    this.#cpuWait = wait;
  }

  /**
   * Its main thread sleeps in a write at `now`: whatever reads its stdout
   * or stderr (a pipe, a terminal, journald) is not reading. That worker
   * is not hung, and a new one would block the same way: its deadline
   * holds while it waits. Returns true when this wait just began.
   */
  writing(now: number): boolean {
    this.#heartbeatBy = Math.max(
      this.#heartbeatBy,
      now + this.#limits.workerTimeout,
    );
    const began = !this.#writing;
    this.#writing = true;
    return began;
  }

  /** Why a child in `phase` is overdue at `now`, or null. */
  overdue(now: number, phase: Phase): string | null {
    const { readyTimeout, workerTimeout } = this.#limits;
    if (phase !== "ready" && now > this.#readyBy) {
      return phase === "connecting"
        ? `did not connect within readyTimeout ${readyTimeout} ms`
        : `was not ready within readyTimeout ${readyTimeout} ms`;
    }
    if (now > this.#heartbeatBy) {
      return `sent no heartbeat for ${
        Math.round(now - this.#lastSeen)
      } ms (workerTimeout ${workerTimeout} ms)`;
    }
    return null;
  }
}
