/**
 * Picks the runtime adapter, in exactly one place. The adapter of the other
 * runtime is never loaded.
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

let loading: Promise<Runtime> | undefined;

/** Loads (once) the adapter of the runtime executing this code. */
export function loadRuntime(): Promise<Runtime> {
  loading ??= importAdapter();
  return loading;
}

async function importAdapter(): Promise<Runtime> {
  switch (detectRuntime()) {
    case "deno":
      return (await import("./deno.ts")).denoRuntime();
    case "bun":
      return (await import("./bun.ts")).bunRuntime();
    default:
      throw new Error(
        "Cannot load workerpool: this runtime is neither Deno nor Bun",
      );
  }
}
