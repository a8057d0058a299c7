/**
 * `Ticker`: a periodic call that knows how late it runs. A tick that comes
 * late measures how long the process's own loop stood still (SIGSTOP, a VM
 * pause, a slow synchronous log sink): frames that arrived meanwhile are
 * not read yet, so that time must count against no worker.
 *
 * @module
 */
import type { Clock, Timer } from "./runtime/mod.ts";

/** Calls `onTick(now, stall)` every `interval` ms until stopped. */
export class Ticker {
  #clock: Clock;
  #interval: number;
  #onTick: (now: number, stall: number) => void;
  #timer: Timer | undefined;
  #due = 0;

  /** `stall`: how much later than due this tick runs, in ms. */
  constructor(
    clock: Clock,
    interval: number,
    onTick: (now: number, stall: number) => void,
  ) {
    this.#clock = clock;
    this.#interval = interval;
    this.#onTick = onTick;
  }

  start(): void {
    this.#due = this.#clock.now() + this.#interval;
    this.#timer = this.#clock.setTimeout(() => this.#tick(), this.#interval);
  }

  stop(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Why the ticks stopped coming at `now` (a tick threw, breaking the
   * chain), or null while they come: one overdue by three intervals (and
   * a second) counts.
   */
  late(now: number): string | null {
    if (this.#timer === undefined) return null;
    const overdue = now - this.#due;
    return overdue > 3 * this.#interval + 1000
      ? `the master's periodic check is ${Math.round(overdue)} ms overdue`
      : null;
  }

  #tick(): void {
    const now = this.#clock.now();
    this.#onTick(now, Math.max(0, now - this.#due));
    if (this.#timer !== undefined) this.start();
  }
}
