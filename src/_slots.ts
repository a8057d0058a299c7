/**
 * The worker ids of a pool: the one owner of the ids, before, during and
 * after the pool runs.
 *
 * @module
 */
import { checkId, MAX_WORKERS, type ResolvedOptions } from "./_options.ts";
import { RestartPolicy } from "./_restart_policy.ts";
import { Slot } from "./_slot.ts";
import type { WorkerInfo } from "./types.ts";

/** The first backoff delay after repeated early deaths. */
const INITIAL_RESTART_DELAY = 100;

/** The worker ids of a pool, in the order they were added. */
export class Slots {
  #options: ResolvedOptions;
  #slots = new Map<number, Slot>();

  constructor(options: ResolvedOptions) {
    this.#options = options;
    for (const id of options.ids) this.add(id);
  }

  get size(): number {
    return this.#slots.size;
  }

  [Symbol.iterator](): IterableIterator<Slot> {
    return this.#slots.values();
  }

  /** Whether `slot` is still in the pool (not removed). */
  has(slot: Slot): boolean {
    return this.#slots.get(slot.id) === slot;
  }

  /** Adds worker `id`; throws a `RangeError` naming a bad or taken id. */
  add(id: number): Slot {
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
    const { minUptime, maxRestartDelay, maxBootErrors } = this.#options;
    const slot = new Slot(
      id,
      new RestartPolicy({
        minUptime,
        initialDelay: INITIAL_RESTART_DELAY,
        maxDelay: maxRestartDelay,
        maxBootErrors,
      }),
    );
    this.#slots.set(id, slot);
    return slot;
  }

  /** Removes worker `id`; throws a `RangeError` when there is none. */
  remove(id: number): Slot {
    const slot = this.#slots.get(id);
    if (slot === undefined) {
      throw new RangeError(`Cannot remove worker: no worker has id ${id}`);
    }
    this.#slots.delete(id);
    return slot;
  }

  /**
   * How to reach `size` workers: the lowest free ids to add, or the
   * highest ids to remove.
   */
  resizePlan(size: number): { add: number[]; remove: number[] } {
    const ids = [...this.#slots.keys()];
    const add: number[] = [];
    for (let id = 0; ids.length + add.length < size; id++) {
      if (!this.#slots.has(id)) add.push(id);
    }
    const remove = ids.sort((a, b) => b - a).slice(
      0,
      Math.max(0, ids.length - size),
    );
    return { add, remove };
  }

  /** Whether an id other than `slot`'s has a ready process. */
  servingBesides(slot: Slot): boolean {
    for (const other of this.#slots.values()) {
      if (other !== slot && other.child?.state === "ready") return true;
    }
    return false;
  }

  /** The slot of worker `id`. */
  get(id: number): Slot | undefined {
    return this.#slots.get(id);
  }

  /** A frozen snapshot of every id at `now`. */
  snapshot(now: number, running: boolean): readonly WorkerInfo[] {
    return Object.freeze(
      Array.from(this.#slots.values(), (slot) => slot.info(now, running)),
    );
  }
}
