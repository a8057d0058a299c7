/**
 * The Bun adapter: `Bun.spawn`, `process.on`, `Bun.listen`, `Bun.serve`,
 * `bun:ffi` (libc, for systemd's notify socket). The same file names as the
 * Deno adapter's, so the two can be read side by side.
 *
 * @module
 */
import type { Runtime } from "../types.ts";
import { files } from "./files.ts";
import { bun, node } from "./globals.ts";
import { processes } from "./process.ts";
import { http } from "./serve.ts";
import { sockets } from "./socket.ts";

/** Creates the Bun adapter; throws when not running under Bun. */
export function bunRuntime(): Runtime {
  if ((globalThis as { Bun?: unknown }).Bun === undefined) {
    throw new Error("Cannot load the workerpool Bun adapter: not on Bun");
  }
  return {
    name: "bun",
    version: bun().version,
    pid: node().pid,
    ...processes,
    ...files,
    ...sockets,
    ...http,
    // The FFI binding loads on first use: most processes never notify.
    openNotifySocket: async (path) =>
      (await import("./notify.ts")).openNotifySocket(path),
  };
}
