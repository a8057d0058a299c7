/**
 * Picks the runtime adapter, in exactly one place. The adapter of the other
 * runtime is loaded (it has no imports of its own) but never run.
 *
 * Both are imported statically on purpose: a dynamic `import()` of the
 * adapter cost a Bun process ~5 MB of resident memory for good (Bun 1.4.5),
 * a fifth of an idle Bun process, which the master would carry all its life.
 *
 * @module
 */
import { bunRuntime } from "./bun/mod.ts";
import { denoRuntime } from "./deno/mod.ts";
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

/**
 * The adapter of the runtime executing this code (created once), or the
 * one given to {@linkcode useRuntime}. Throws on a runtime that is neither.
 */
export function currentRuntime(): Runtime {
  runtime ??= createAdapter();
  return runtime;
}

/** {@linkcode currentRuntime}, as a promise that rejects instead of throwing. */
export function loadRuntime(): Promise<Runtime> {
  try {
    return Promise.resolve(currentRuntime());
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Makes the whole library use `replacement` (a fake, in tests) until it is
 * called again with `undefined`: the one place a runtime is injected.
 */
export function useRuntime(replacement: Runtime | undefined): void {
  runtime = replacement;
}

function createAdapter(): Runtime {
  switch (detectRuntime()) {
    case "deno":
      return denoRuntime();
    case "bun":
      return bunRuntime();
    default:
      throw new Error(
        "Cannot load workerpool: this runtime is neither Deno nor Bun",
      );
  }
}
