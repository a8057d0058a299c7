/**
 * Rolling replacements: a reload replaces every id's process, a recycle one
 * id's, each the same way: a new process for the id starts beside the old
 * one, and only once it is ready does the old one stop (the pool does the
 * hand-over, `Pool.#onMessage`). At most `reloadConcurrency` replacements
 * run at a time. A replacement that cannot get ready ends its reload: the
 * old processes keep serving.
 *
 * @module
 */
import type { ChildHandle } from "./_child.ts";
import { mib, type Replacement } from "./_recycle.ts";
import type { Slot } from "./_slot.ts";
import { plural } from "./_text.ts";
import type { Clock } from "./runtime/mod.ts";
import type { Logger } from "./types.ts";

/** How long a worker whose recycle failed keeps running before another try. */
const RECYCLE_RETRY_MS = 60_000;

/** What rolling replacements need of the pool. */
export interface RollingHost {
  clock: Clock;
  log: Logger;
  /** Where hand-overs are said. */
  childLog: Logger;
  /** A process was replaced and drains (see `PortLocks.handedOver`). */
  handedOver(): void;
  /**
   * Spawns a replacement for `slot` in `generation`; returns it, or the
   * reason it could not be spawned.
   */
  spawnNext(slot: Slot, generation: number): ChildHandle | string;
  /** Stops a replacement that is no longer wanted. */
  abandon(child: ChildHandle): void;
  /** Whether `slot` is still in the pool. */
  has(slot: Slot): boolean;
  /** A reload began (systemd hears of it). */
  reloadBegan(): void;
  /** A reload ended: failed with `failure`, or not (null). */
  reloadEnded(failure: string | null): void;
}

const RELOAD: Replacement = { reason: "reload", detail: "reload" };

/** One full reload: every id of the pool when it began. */
class Reload {
  readonly generation: number;
  readonly began: number;
  remaining = 0;
  replaced = 0;
  readonly settled = Promise.withResolvers<void>();

  constructor(generation: number, began: number) {
    this.generation = generation;
    this.began = began;
    this.settled.promise.catch(() => {}); // a SIGHUP's reload has no caller
  }
}

/** The replacement of one id. */
interface Job {
  slot: Slot;
  /** Why: a reload, or why it is recycled. */
  why: Replacement;
  reload: Reload | null;
  /** The replacement, once spawned. */
  child: ChildHandle | null;
}

/** The queue of replacements of one pool. */
export class Rolling {
  #host: RollingHost;
  #concurrency: number;
  #queue: Job[] = [];
  #active = new Set<Job>();
  #reload: Reload | null = null;
  /** One more full reload, asked for during the current one. */
  #again: PromiseWithResolvers<void> | null = null;
  #generation = 0;
  #failures = 0;
  #retryAfter = new Map<Slot, number>();
  #slots: () => Iterable<Slot> = () => [];
  #stopped: string | null = null;
  #memoryWarned = false;

  constructor(host: RollingHost, concurrency: number) {
    this.#host = host;
    this.#concurrency = concurrency;
  }

  /** The generation new processes are spawned in. */
  get generation(): number {
    return this.#generation;
  }

  /** Whether a reload runs. */
  get reloading(): boolean {
    return this.#reload !== null;
  }

  /** How many reloads failed. */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Replaces the process of every id of `slots()`, `reloadConcurrency` at a
   * time. During a reload, queues one more full reload after it (repeated
   * calls share it). Rejects with the cause when a replacement cannot get
   * ready, or when the pool stops first.
   */
  reload(slots: () => Iterable<Slot>): Promise<void> {
    if (this.#stopped !== null) {
      return Promise.reject(new Error(`Cannot reload: ${this.#stopped}`));
    }
    this.#slots = slots;
    if (this.#reload === null) return this.#begin().settled.promise;
    if (this.#again === null) {
      this.#again = Promise.withResolvers<void>();
      this.#again.promise.catch(() => {}); // a SIGHUP's reload has no caller
      this.#host.log.info(`a reload is running; one more will follow it`);
    }
    return this.#again.promise;
  }

  /** Replaces the process of `slot` because of `why`, unless one is due. */
  recycle(slot: Slot, why: Replacement): void {
    if (this.#stopped !== null || slot.next !== null) return;
    if (this.#jobOf(slot) !== undefined) return;
    const retry = this.#retryAfter.get(slot);
    if (retry !== undefined && this.#host.clock.now() < retry) return;
    this.#retryAfter.delete(slot);
    this.#host.log.info(`recycling ${slot.child}: ${why.detail}`);
    this.#queue.push({ slot, why, reload: null, child: null });
    this.#pump();
  }

  /**
   * The replacement of `slot` is ready: it becomes the current process,
   * and the old one stops gracefully (SIGTERM: `serve()` drains).
   */
  handOver(slot: Slot): void {
    const child = slot.next!;
    const job = this.#activeOf(child);
    const old = slot.promote(job?.why ?? RELOAD);
    slot.policy.booted();
    slot.cancel(this.#host.clock);
    if (old === null) return;
    this.#host.childLog.info(`${old} replaced by ${child}; it drains`);
    void old.stop("SIGTERM");
    this.#host.handedOver();
  }

  /**
   * The tick's look at `slot` at `now`: its process is recycled when it is
   * due. One that is over `maxMemory` as soon as it is ready is said once.
   */
  check(slot: Slot, now: number): void {
    const child = slot.child;
    const due = child?.recycleDue(now);
    if (due) this.recycle(slot, due);
    if (child?.usage.startedOverMemory && !this.#memoryWarned) {
      this.#memoryWarned = true;
      this.#host.log.warn(
        `${child} takes ${
          mib(child.usage.rss!)
        } as soon as it is ready, more than maxMemory ${
          mib(child.usage.limits.memory)
        }: workers are not recycled for memory while they start above it`,
      );
    }
  }

  /** `child` reported ready: its replacement is done. */
  ready(child: ChildHandle): void {
    const job = this.#activeOf(child);
    if (job === undefined) return;
    this.#active.delete(job);
    if (job.reload !== null) {
      job.reload.replaced++;
      this.#settle(job.reload, null);
    }
    this.#pump();
  }

  /**
   * `child` exited; `cause` says why it failed to start, null when it was
   * ready first.
   */
  exited(child: ChildHandle, cause: string | null): void {
    const job = this.#activeOf(child);
    if (job === undefined) return;
    this.#active.delete(job);
    const why = cause === null
      ? `${child} exited`
      : `${child} failed to start: ${cause}`;
    if (job.reload !== null) this.#settle(job.reload, why);
    else {
      this.#retryAfter.set(job.slot, this.#host.clock.now() + RECYCLE_RETRY_MS);
      this.#host.log.error(
        `Cannot recycle worker ${job.slot.id}: its replacement ${why}; the current process keeps running (next try in ${
          RECYCLE_RETRY_MS / 1000
        } s)`,
      );
    }
    this.#pump();
  }

  /** `slot` left the pool: its replacements are moot. */
  removed(slot: Slot): void {
    for (const job of [...this.#active, ...this.#queue]) {
      if (job.slot !== slot) continue;
      this.#active.delete(job);
      this.#queue = this.#queue.filter((other) => other !== job);
      if (job.reload !== null) this.#settle(job.reload, null);
    }
    this.#retryAfter.delete(slot);
    this.#pump();
  }

  /** The pool stops: every reload pending rejects with `reason`. */
  stop(reason: string): void {
    this.#stopped = reason;
    this.#queue = [];
    this.#active.clear();
    const error = new Error(`Cannot reload: ${reason}`);
    this.#reload?.settled.reject(error);
    this.#again?.reject(error);
    this.#reload = this.#again = null;
  }

  #begin(): Reload {
    const started = new Reload(++this.#generation, this.#host.clock.now());
    this.#reload = started;
    this.#host.reloadBegan();
    for (const slot of this.#slots()) {
      // A recycle not begun yet is done by the reload.
      this.#queue = this.#queue.filter((job) =>
        job.slot !== slot || job.reload !== null
      );
      this.#queue.push({
        slot,
        why: { ...RELOAD, detail: `reload ${started.generation}` },
        reload: started,
        child: null,
      });
      started.remaining++;
    }
    this.#host.log.info(
      `reloading ${
        plural(started.remaining, "worker")
      } (generation ${started.generation}), ${this.#concurrency} at a time`,
    );
    if (started.remaining === 0) {
      started.remaining = 1; // settled as if one job was done
      this.#settle(started, null);
    } else this.#pump();
    return started;
  }

  /** One job of `reload` ended: failed with `failure`, or not. */
  #settle(reload: Reload, failure: string | null): void {
    if (reload !== this.#reload) return;
    const log = this.#host.log;
    if (failure !== null) {
      // The reload stops here: what it started is stopped, the rest of the
      // pool keeps its processes.
      this.#queue = this.#queue.filter((job) => job.reload !== reload);
      for (const job of this.#active) {
        if (job.reload !== reload) continue;
        this.#active.delete(job);
        if (job.child !== null) this.#host.abandon(job.child);
      }
      log.error(
        `Reload ${reload.generation} failed: ${failure}; ${
          plural(reload.replaced, "worker")
        } replaced, the others keep their processes`,
      );
      this.#reload = null;
      this.#failures++;
      this.#host.reloadEnded(failure);
      reload.settled.reject(
        new Error(`Cannot reload: ${failure}`),
      );
    } else if (--reload.remaining === 0) {
      log.info(
        `reload ${reload.generation} done: ${
          plural(reload.replaced, "worker")
        } replaced in ${Math.round(this.#host.clock.now() - reload.began)} ms`,
      );
      this.#reload = null;
      this.#host.reloadEnded(null);
      reload.settled.resolve();
    } else return;
    const again = this.#again;
    this.#again = null;
    if (again !== null) {
      this.#begin().settled.promise.then(again.resolve, again.reject);
    }
  }

  #pump(): void {
    while (this.#active.size < this.#concurrency) {
      // The first job whose id has no replacement under way.
      const index = this.#queue.findIndex((job) =>
        this.#jobOf(job.slot, this.#active) === undefined &&
        job.slot.next === null
      );
      if (index === -1) return;
      const [job] = this.#queue.splice(index, 1) as [Job];
      if (!this.#host.has(job.slot)) {
        if (job.reload !== null) this.#settle(job.reload, null);
        continue;
      }
      const generation = job.reload?.generation ?? this.#generation;
      const spawned = this.#host.spawnNext(job.slot, generation);
      if (typeof spawned === "string") {
        const why = `worker ${job.slot.id} cannot be spawned: ${spawned}`;
        if (job.reload !== null) this.#settle(job.reload, why);
        else this.#host.log.error(`Cannot recycle: ${why}`);
        continue;
      }
      job.child = spawned;
      this.#active.add(job);
    }
  }

  #jobOf(slot: Slot, among: Iterable<Job> = [...this.#active, ...this.#queue]) {
    for (const job of among) if (job.slot === slot) return job;
    return undefined;
  }

  #activeOf(child: ChildHandle): Job | undefined {
    for (const job of this.#active) if (job.child === child) return job;
    return undefined;
  }
}
