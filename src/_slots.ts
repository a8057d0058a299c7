/**
 * The worker ids of a pool, each with its restart history, its process and
 * its pending restart: the one owner of the ids, before, during and after
 * the pool runs.
 *
 * @module
 */
import type { ChildHandle } from "./_child.ts";
import { describeExit, plural } from "./_text.ts";
import { checkId, MAX_WORKERS, type ResolvedOptions } from "./_options.ts";
import { ExitCode } from "./_protocol.ts";
import { RestartPolicy } from "./_restart_policy.ts";
import type { Clock, ExitStatus, Timer } from "./runtime/mod.ts";
import type { WorkerInfo } from "./types.ts";

/** The first backoff delay after repeated early deaths. */
const INITIAL_RESTART_DELAY = 100;
/**
 * The wait before replacing a worker stopped by a signal from elsewhere: a
 * Ctrl-C or a systemd stop signals the master too, and its own handler must
 * get the chance to stop the pool before a new worker starts.
 */
const SIGNALLED_RESTART_DELAY = 250;

/** What follows a worker's exit: a log line, then a spawn, a halt, or nothing. */
export type AfterExit =
  & { line: string; level: "info" | "warn" }
  & (
    | { action: "spawn"; delay: number }
    | { action: "halt"; cause: string }
    | { action: "none" }
  );

/** One worker id. */
export class Slot {
  readonly id: number;
  readonly policy: RestartPolicy;
  /** Its live process, if it has one. */
  child: ChildHandle | null = null;
  #spawns = 0;
  #timer: Timer | undefined;

  constructor(id: number, policy: RestartPolicy) {
    this.id = id;
    this.policy = policy;
  }

  /** Whether a (re)spawn is scheduled. */
  get waiting(): boolean {
    return this.#timer !== undefined;
  }

  /** `child` is its new process. */
  spawned(child: ChildHandle): void {
    this.#spawns++;
    this.child = child;
  }

  /**
   * Its process `child` exited with `status` at `now`: what follows. While
   * the pool runs it is spawned again, at once or after a backoff, and a
   * process that exits before it was ready failed to start: so many in a
   * row halt the pool.
   */
  exited(
    child: ChildHandle,
    status: ExitStatus,
    now: number,
    running: boolean,
  ): AfterExit {
    if (this.child === child) this.child = null;
    const uptime = Math.round(now - child.spawnedAt);
    const line = `${child} ${describeExit(status)} after ${uptime} ms`;
    if (!running) return { line, level: "info", action: "none" };
    if (child.stoppedBy !== null) {
      return {
        line:
          `${line}, stopped by a ${child.stoppedBy} from elsewhere; replacing it in ${SIGNALLED_RESTART_DELAY} ms unless the pool stops`,
        level: "info",
        action: "spawn",
        delay: SIGNALLED_RESTART_DELAY,
      };
    }
    // Exiting before ready is a failure to start, unless it was the channel
    // that failed it (a flood of connections, say): that is not its code.
    const lostChannel = status.signal === null &&
      status.code === ExitCode.channelLost;
    const bootError = child.wasReady || lostChannel
      ? null
      : child.bootFailure?.message ?? child.killedFor ??
        `it ${describeExit(status)} before it was ready`;
    const decision = this.policy.exited(uptime, bootError !== null);
    if (decision.action === "halt") {
      return {
        line,
        level: "warn",
        action: "halt",
        cause: `worker ${this.id} failed to start ${
          plural(decision.bootErrors, "time")
        } in a row; halting the pool. Last cause: ${bootError}`,
      };
    }
    const delay = decision.delay;
    return {
      line: delay === 0
        ? line
        : `${line}; restarting it in ${delay} ms (it keeps dying young)`,
      level: "warn",
      action: "spawn",
      delay,
    };
  }

  /** The spawn itself failed (out of processes): the backoff before the next. */
  spawnFailed(): number {
    const decision = this.policy.exited(0, false);
    return decision.action === "restart" ? decision.delay : 0;
  }

  /** Runs `spawn` after `ms`, replacing any spawn already scheduled. */
  schedule(clock: Clock, ms: number, spawn: () => void): void {
    this.cancel(clock);
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined;
      spawn();
    }, ms);
  }

  /** Cancels a scheduled spawn. */
  cancel(clock: Clock): void {
    clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** What `Supervisor.pool` shows of it at `now`. */
  info(now: number, running: boolean): WorkerInfo {
    const child = this.child;
    return Object.freeze({
      id: this.id,
      pid: child?.pid ?? null,
      state: child === null
        ? (running ? "restarting" : "stopped")
        : child.state === "exited"
        ? "stopped"
        : child.state,
      restarts: Math.max(0, this.#spawns - 1),
      uptime: child ? Math.round(now - child.spawnedAt) : 0,
    });
  }
}

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
