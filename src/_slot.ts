/**
 * `Slot`: one worker id of a pool, with its current process, its
 * replacement while one starts, its retiring processes, its restart
 * history and its pending restart; and what follows when one of its
 * processes exits.
 *
 * @module
 */
import type { ChildHandle } from "./_child.ts";
import { describeExit, plural } from "./_text.ts";
import { ExitCode } from "./_protocol.ts";
import type { Replacement } from "./_recycle.ts";
import type { RestartPolicy } from "./_restart_policy.ts";
import type { Clock, ExitStatus, Timer } from "./runtime/mod.ts";
import type {
  RestartInfo,
  RestartReason,
  WorkerInfo,
  WorkerProcessInfo,
} from "./types.ts";

/**
 * The wait before replacing a worker stopped by a signal from elsewhere: a
 * Ctrl-C or a systemd stop signals the master too, and its own handler must
 * get the chance to stop the pool before a new worker starts.
 */
const SIGNALLED_RESTART_DELAY = 250;

/** What follows a worker's exit: a log line, then a spawn, a halt, or nothing. */
export type AfterExit =
  & { line: string; level: "info" | "warn" | "error" }
  & (
    | { action: "spawn"; delay: number }
    | { action: "halt"; cause: string }
    | { action: "none" }
  );

/** One worker id. */
export class Slot {
  readonly id: number;
  readonly policy: RestartPolicy;
  /** Its current process, if it has one. */
  child: ChildHandle | null = null;
  /** Its replacement while it starts (a reload, a recycle). */
  next: ChildHandle | null = null;
  /** Its earlier processes, replaced and still draining. */
  readonly retiring = new Set<ChildHandle>();
  #restarts = new Map<RestartReason, number>();
  #lastRestart: RestartInfo | null = null;
  /** CPU time (µs) and requests of its processes that exited. */
  #finished = { cpuTime: 0, requests: 0 };
  #timer: Timer | undefined;

  constructor(id: number, policy: RestartPolicy) {
    this.id = id;
    this.policy = policy;
  }

  /** Whether a (re)spawn is scheduled. */
  get waiting(): boolean {
    return this.#timer !== undefined;
  }

  /** Whether it has neither a process nor a replacement starting. */
  get empty(): boolean {
    return this.child === null && this.next === null;
  }

  /** `child` is its new current process. */
  spawned(child: ChildHandle): void {
    this.child = child;
  }

  /** `child` is its replacement, starting beside the current process. */
  spawnedNext(child: ChildHandle): void {
    this.next = child;
  }

  /** Its replacement `child` is not wanted after all: it retires unused. */
  abandonNext(child: ChildHandle): void {
    if (this.next !== child) return;
    this.next = null;
    this.retiring.add(child);
  }

  /**
   * Its replacement is ready: it becomes the current process, replacing
   * the old one because of `why`. Returns the process it replaces (now
   * retiring, for the caller to stop), if any.
   */
  promote(why: Replacement): ChildHandle | null {
    const old = this.child;
    if (old !== null) this.#restarted(old, why);
    this.child = this.next;
    this.next = null;
    if (old !== null) this.retiring.add(old);
    return old;
  }

  /** The process `child` is replaced, because of `why`. */
  #restarted(child: ChildHandle, why: Replacement): void {
    this.#restarts.set(why.reason, (this.#restarts.get(why.reason) ?? 0) + 1);
    this.#lastRestart = Object.freeze({
      ...why,
      pid: child.pid,
      at: Date.now(),
    });
  }

  /**
   * CPU time (milliseconds) and requests of all its processes, those that
   * exited included, and the requests they have not answered yet.
   */
  totals(): WorkerInfo["totals"] {
    let { cpuTime, requests } = this.#finished;
    let requestsInFlight = 0;
    for (const child of [this.child, this.next, ...this.retiring]) {
      if (child === null) continue;
      cpuTime += child.usage.cpuTime;
      requests += child.usage.requests ?? 0;
      requestsInFlight += child.usage.inFlight;
    }
    return Object.freeze({
      cpuTime: cpuTime / 1000,
      requests,
      requestsInFlight,
    });
  }

  /**
   * Its process `child` exited with `status` at `now`: what follows. While
   * the pool runs it is spawned again, at once or after a backoff, and a
   * process that exits before it was ready failed to start: so many in a
   * row halt the pool, unless the pool was up and other workers serve
   * (`othersServing`): a broken deploy on disk must not take down the
   * workers that run the code before it, so the id tries again every
   * `maxRestartDelay`. A retiring process or a replacement is not replaced;
   * a current process with a replacement starting hands over to it.
   */
  exited(
    child: ChildHandle,
    status: ExitStatus,
    now: number,
    state: { running: boolean; othersServing: boolean },
  ): AfterExit {
    const { running, othersServing } = state;
    const uptime = Math.round(now - child.spawnedAt);
    const line = `${child} ${describeExit(status)} after ${uptime} ms`;
    this.#finished.cpuTime += child.usage.cpuTime;
    this.#finished.requests += child.usage.requests ?? 0;
    const bootError = startFailure(child, status);
    const why = exitReason(child, status, bootError);
    if (this.retiring.delete(child)) {
      return { line: `${line} (replaced)`, level: "info", action: "none" };
    }
    if (this.next === child) {
      this.next = null;
      return { line, level: running ? "warn" : "info", action: "none" };
    }
    if (this.child === child) this.child = null;
    if (!running) return { line, level: "info", action: "none" };
    if (this.next !== null) {
      this.#restarted(child, why);
      this.promote(why); // nothing else to retire: it exited
      return {
        line: `${line}; its replacement ${this.child} takes over`,
        level: "warn",
        action: "none",
      };
    }
    if (child.stoppedBy !== null) {
      this.#restarted(child, why);
      return {
        line:
          `${line}, stopped by a ${child.stoppedBy} from elsewhere; replacing it in ${SIGNALLED_RESTART_DELAY} ms unless the pool stops`,
        level: "info",
        action: "spawn",
        delay: SIGNALLED_RESTART_DELAY,
      };
    }
    if (child.bootFailure?.fatal && !othersServing) {
      return {
        line,
        level: "warn",
        action: "halt",
        cause:
          `worker ${this.id} cannot start, and trying again cannot help; halting the pool. Cause: ${bootError}`,
      };
    }
    const decision = this.policy.exited(uptime, bootError !== null);
    if (decision.action === "halt" && othersServing) {
      this.#restarted(child, why);
      const delay = this.policy.maxDelay;
      return {
        line: `${line}; it failed to start ${
          plural(decision.bootErrors, "time")
        } in a row (last cause: ${bootError}); the other workers serve, so it tries again in ${delay} ms`,
        level: "error",
        action: "spawn",
        delay,
      };
    }
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
    this.#restarted(child, why);
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
      restarts: [...this.#restarts.values()].reduce((a, b) => a + b, 0),
      restartsBy: Object.freeze(Object.fromEntries(this.#restarts)),
      lastRestart: this.#lastRestart,
      uptime: child ? Math.round(now - child.spawnedAt) : 0,
      heartbeatAge: child ? Math.round(now - child.lastSeen) : null,
      generation: child?.generation ?? 0,
      metrics: child?.usage.metrics() ?? null,
      totals: this.totals(),
      next: this.next === null ? null : processInfo(this.next, now),
      retiring: Object.freeze(
        Array.from(this.retiring, (old) => processInfo(old, now)),
      ),
    });
  }
}

/**
 * Why `child`, which exited with `status`, failed to start; null when it
 * was ready first. A channel lost before ready (a flood of connections,
 * say) is not its code's failure either.
 */
export function startFailure(
  child: ChildHandle,
  status: ExitStatus,
): string | null {
  const lostChannel = status.signal === null &&
    status.code === ExitCode.channelLost;
  if (child.wasReady || lostChannel) return null;
  return child.bootFailure?.message ?? child.killedFor ??
    (child.connected
      ? `it ${describeExit(status)} before it was ready`
      : `it ${
        describeExit(status)
      } before it connected (its stderr says why: a syntax or import error, say)`);
}

/** Why `child`, the current process, is replaced after its exit. */
function exitReason(
  child: ChildHandle,
  status: ExitStatus,
  bootError: string | null,
): Replacement {
  const detail = child.killedFor ?? describeExit(status);
  if (child.killedFor !== null) return { reason: "timeout", detail };
  if (bootError !== null) return { reason: "boot_error", detail: bootError };
  if (status.signal !== null || child.stoppedBy !== null) {
    return {
      reason: "signal",
      detail: child.stoppedBy === null
        ? detail
        : `${detail} (${child.stoppedBy} from elsewhere)`,
    };
  }
  return { reason: "exit", detail };
}

function processInfo(child: ChildHandle, now: number): WorkerProcessInfo {
  return Object.freeze({
    pid: child.pid,
    // Exited processes leave the slot: what is left is alive.
    state: child.state === "exited" ? "stopping" : child.state,
    generation: child.generation,
    uptime: Math.round(now - child.spawnedAt),
  });
}
