/**
 * Picks the runtime adapter, in exactly one place, and loads only that one:
 * every module loaded costs each process of a pool about half a
 * millisecond of start-up (Deno 2.9.6, Bun 1.4.5).
 *
 * @module
 */
import type { Runtime } from "./types.ts";

export type * from "./types.ts";

/** The runtime executing this code, or null when it is neither Deno nor Bun. */
export function detectRuntime(): "deno" | "bun" | null {
  const global = globalThis as { Bun?: unknown; Deno?: unknown };
  // Bun is checked first: a Deno shim may exist under Bun, never the reverse.
  if (global.Bun !== undefined) return "bun";
  if (global.Deno !== undefined) return "deno";
  return null;
}

let runtime: Runtime | undefined;
let loading: Promise<Runtime> | undefined;

/**
 * The adapter of the runtime executing this code (created once), or the
 * one given to {@linkcode useRuntime}. Rejects on a runtime that is neither.
 */
export function loadRuntime(): Promise<Runtime> {
  if (runtime !== undefined) return Promise.resolve(runtime);
  loading ??= createAdapter().then((adapter) => runtime ??= adapter);
  return loading;
}

/**
 * The adapter, once {@linkcode loadRuntime} has resolved; undefined before
 * (the library loads it before it needs it synchronously).
 */
export function loadedRuntime(): Runtime | undefined {
  return runtime;
}

/**
 * Makes the whole library use `replacement` (a fake, in tests) until it is
 * called again with `undefined`: the one place a runtime is injected.
 */
export function useRuntime(replacement: Runtime | undefined): void {
  runtime = replacement;
  loading = undefined;
}

async function createAdapter(): Promise<Runtime> {
  switch (detectRuntime()) {
    case "deno":
      return (await import("./deno/mod.ts")).denoRuntime();
    case "bun":
      return (await import("./bun/mod.ts")).bunRuntime();
    default:
      throw new Error(
        "Cannot load workerpool: this runtime is neither Deno nor Bun",
      );
  }
}
