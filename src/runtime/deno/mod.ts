/**
 * The Deno adapter: `Deno.Command`, `Deno.addSignalListener`, `Deno.listen`,
 * `Deno.serve`, `Deno.dlopen` (libc, for systemd's notify socket). The same
 * file names as the Bun adapter's, so the two can be read side by side.
 *
 * @module
 */
import type { Runtime } from "../types.ts";
import { files } from "./files.ts";
import { processes } from "./process.ts";
import { http } from "./serve.ts";
import { sockets } from "./socket.ts";

/** Creates the Deno adapter; throws when not running under Deno. */
export function denoRuntime(): Runtime {
  // `in`, not `typeof Deno.Command`: reading Deno.Command loads Deno's
  // process module, 6 ms in every worker, which never spawns (measured).
  if (typeof Deno === "undefined" || !("Command" in Deno)) {
    throw new Error("Cannot load the workerpool Deno adapter: not on Deno");
  }
  return {
    name: "deno",
    version: Deno.version.deno,
    pid: Deno.pid,
    ...processes,
    ...files,
    ...sockets,
    ...http,
    // The FFI binding loads on first use: most processes never notify.
    openNotifySocket: async (path) =>
      (await import("./notify.ts")).openNotifySocket(path),
  };
}
