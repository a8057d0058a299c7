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
import { bunRuntime } from "./bun.ts";
import { denoRuntime } from "./deno.ts";
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

/** The adapter of the runtime executing this code (created once). */
export function loadRuntime(): Promise<Runtime> {
  try {
    runtime ??= createAdapter();
  } catch (error) {
    return Promise.reject(error);
  }
  return Promise.resolve(runtime);
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
