/**
 * Recycling: a worker that served `maxRequests` requests, grew past
 * `maxMemory` or lived `maxAge` is replaced through the rolling path (its
 * replacement ready first, then it drains). Each process draws its own
 * limits, so that workers started together are not replaced together.
 *
 * @module
 */
import type { ResolvedOptions } from "./_options.ts";
import type { Heartbeat } from "./_protocol.ts";
import type { RestartReason, WorkerMetrics } from "./types.ts";

/** Why a process is replaced: the reason's label, and in words. */
export interface Replacement {
  reason: RestartReason;
  detail: string;
}

/** The share of `maxAge` a process may draw above it. */
const AGE_JITTER = 0.1;

/** One process's limits; `Infinity` where there is none. */
export interface RecycleLimits {
  requests: number;
  memory: number;
  age: number;
}

/** Draws the limits of a new process. */
export function drawLimits(
  options: Pick<
    ResolvedOptions,
    "maxRequests" | "maxRequestsJitter" | "maxMemory" | "maxAge"
  >,
  random: () => number = Math.random,
): RecycleLimits {
  const { maxRequests, maxRequestsJitter, maxMemory, maxAge } = options;
  return {
    requests: maxRequests === 0
      ? Infinity
      : maxRequests + Math.floor(random() * (maxRequestsJitter + 1)),
    memory: maxMemory === 0 ? Infinity : maxMemory,
    age: maxAge === 0 ? Infinity : maxAge * (1 + AGE_JITTER * random()),
  };
}

/** What one process's heartbeats said of it, held to its limits. */
export class Usage {
  /** Its resident memory in bytes, as its last heartbeat said. */
  rss: number | null = null;
  /** The requests its servers took, as its last heartbeat said. */
  requests: number | null = null;
  /** Its last heartbeat's other figures (see `Heartbeat`). */
  #last: Heartbeat | null = null;
  readonly limits: RecycleLimits;
  /** Its RSS at the first heartbeat once ready: what a fresh worker takes. */
  #readyRss: number | null = null;

  constructor(limits: RecycleLimits) {
    this.limits = limits;
  }

  /** A heartbeat's figures; `ready`: whether the process is ready. */
  report(figures: Heartbeat, ready: boolean): void {
    if (figures.rss !== undefined) this.rss = figures.rss;
    if (figures.req !== undefined) this.requests = figures.req;
    this.#last = figures;
    if (ready) this.#readyRss ??= this.rss;
  }

  /** CPU time its heartbeats reported so far, in microseconds. */
  get cpuTime(): number {
    return this.#last?.cpu ?? 0;
  }

  /** Requests it has not answered yet, as its last heartbeat said. */
  get inFlight(): number {
    return this.#last?.fly ?? 0;
  }

  /** Its figures for `WorkerInfo.metrics`; null before its first beat. */
  metrics(): WorkerMetrics | null {
    const last = this.#last;
    if (last === null) return null;
    return Object.freeze({
      rss: last.rss ?? null,
      heapUsed: last.heap ?? null,
      eventLoopLag: last.lag ?? null,
      cpuTime: last.cpu === undefined ? null : last.cpu / 1000,
      requests: last.req ?? null,
      requestsInFlight: last.fly ?? null,
    });
  }

  /**
   * Whether it was over `maxMemory` as soon as it was ready: so would be
   * its replacement, so it is not recycled for memory.
   */
  get startedOverMemory(): boolean {
    return this.#readyRss !== null && this.#readyRss > this.limits.memory;
  }

  /**
   * Why the process, spawned at `spawnedAt` and ready, is due for a
   * recycle at `now`, or null. Memory counts only for a process that
   * started below the limit.
   */
  due(spawnedAt: number, now: number): Replacement | null {
    const { requests, rss, limits } = this;
    if (requests !== null && requests >= limits.requests) {
      return {
        reason: "max_requests",
        detail: `it served ${requests} requests (limit ${limits.requests})`,
      };
    }
    if (
      rss !== null && this.#readyRss !== null && !this.startedOverMemory &&
      rss > limits.memory
    ) {
      return {
        reason: "max_memory",
        detail: `its memory (RSS ${mib(rss)}) exceeds maxMemory ${
          mib(limits.memory)
        }`,
      };
    }
    const age = now - spawnedAt;
    if (age >= limits.age) {
      return {
        reason: "max_age",
        detail: `it is ${Math.round(age)} ms old (limit ${
          Math.round(limits.age)
        } ms)`,
      };
    }
    return null;
  }
}

/** `bytes` in MiB, for log lines. */
export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
