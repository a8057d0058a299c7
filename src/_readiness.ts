/**
 * Waiting for a pool to be ready: the first time every id has a ready
 * process (a daemon's launcher, a takeover, housekeeping wait for it), and
 * the sizes `scale(n)` waits for.
 *
 * @module
 */
import type { Slots } from "./_slots.ts";

/** Who waits for the pool to have every id ready. */
export class Readiness {
  #first = Promise.withResolvers<void>();
  #sizes: { size: number; settled: PromiseWithResolvers<void> }[] = [];
  #reached = false;

  constructor() {
    this.#first.promise.catch(() => {}); // awaited only by some
  }

  /**
   * Resolves the first time every id has a ready process; rejects with the
   * reason when the pool stops (or halts) before that.
   */
  get first(): Promise<void> {
    return this.#first.promise;
  }

  /** Whether every id was ready at some point. */
  get reached(): boolean {
    return this.#reached;
  }

  /**
   * Resolves once the pool has `size` ids, all ready. An earlier wait for
   * another size is rejected: the pool no longer aims at it.
   */
  waitForSize(size: number): Promise<void> {
    this.#reject(`the pool was scaled to ${size} since`);
    const settled = Promise.withResolvers<void>();
    this.#sizes.push({ size, settled });
    return settled.promise;
  }

  /** The ids are now `slots`: whoever waits for what they are is told. */
  check(slots: Slots): boolean {
    for (const slot of slots) {
      if (slot.child?.state !== "ready") return false;
    }
    this.#first.resolve();
    this.#reached = true;
    this.#sizes = this.#sizes.filter(({ size, settled }) => {
      if (size !== slots.size) return true;
      settled.resolve();
      return false;
    });
    return true;
  }

  /** The pool stops: every wait ends with `reason`. */
  stop(reason: string): void {
    this.#first.reject(new Error(reason));
    this.#reject("the pool is stopping");
  }

  #reject(why: string): void {
    for (const { size, settled } of this.#sizes.splice(0)) {
      settled.reject(new Error(`Cannot scale to ${size}: ${why}`));
    }
  }
}
