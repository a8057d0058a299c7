/**
 * Recycling: a worker that served `maxRequests` requests, grew past
 * `maxMemory` or lived `maxAge` is replaced through the rolling path (its
 * replacement ready first, then it drains). Each process draws its own
 * limits, so that workers started together are not replaced together.
 *
 * @module
 */
import type { ResolvedOptions } from "./_options.ts";

/** The share of `maxAge` a process may draw above it. */
const AGE_JITTER = 0.1;

/** One process's limits; `Infinity` where there is none. */
export interface RecycleLimits {
  requests: number;
  memory: number;
  age: number;
}

/** What a process reported, and when it was spawned. */
export interface Usage {
  requests: number | null;
  rss: number | null;
  spawnedAt: number;
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

/** Why a process with `usage` is due for a recycle at `now`, or null. */
export function recycleReason(
  usage: Usage,
  limits: RecycleLimits,
  now: number,
): string | null {
  if (usage.requests !== null && usage.requests >= limits.requests) {
    return `it served ${usage.requests} requests (limit ${limits.requests})`;
  }
  if (usage.rss !== null && usage.rss > limits.memory) {
    return `its memory (RSS ${mib(usage.rss)}) exceeds maxMemory ${
      mib(limits.memory)
    }`;
  }
  const age = now - usage.spawnedAt;
  if (age >= limits.age) {
    return `it is ${Math.round(age)} ms old (limit ${
      Math.round(limits.age)
    } ms)`;
  }
  return null;
}

/** `bytes` in MiB, for log lines. */
export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
