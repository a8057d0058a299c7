/**
 * The `workerpool` command: serve any `export default { fetch }` module on
 * N supervised worker processes sharing one port, and act on a running
 * pool from the shell.
 *
 * ```sh
 * deno install -g -A -n workerpool jsr:@workerpool/core/cli
 * workerpool serve -w 4 app.ts          # or: bun cli.ts serve -w 4 app.ts
 * workerpool status -p app.pid
 * workerpool reload -p app.pid
 * workerpool scale +1 -p app.pid
 * workerpool stop -p app.pid
 * ```
 *
 * @example app.ts
 * ```ts ignore
 * import type { App } from "@workerpool/core/cli";
 *
 * export default {
 *   fetch: (request) => new Response(`hello from ${new URL(request.url).pathname}\n`),
 * } satisfies App;
 * ```
 *
 * Only the master and the commands load this module (and node:util, for
 * the flags); the workers run `src/cli/_worker.ts`.
 *
 * @module
 */
import { CommandError, controlCommand } from "./src/cli/_control.ts";
import { UsageError } from "./src/cli/_flags.ts";
import { serveCommand } from "./src/cli/_serve.ts";
import { flushStderr } from "./src/_stderr.ts";
import { loadRuntime } from "./src/runtime/mod.ts";

export type { App } from "./src/cli/_app.ts";

/** The version of workerpool this command is. */
export const VERSION = "0.1.0";

const USAGE = `Usage: workerpool <command> [options]

Commands:
  serve [options] app.ts      serve app.ts's default export { fetch } on N workers
  status -p FILE [--json]     show a running pool (FILE: its pidfile)
  reload -p FILE              rolling reload: every worker replaced, no request lost
  scale N|+N|-N -p FILE       set the number of workers
  stop -p FILE                stop the pool gracefully and wait until it exited

Options:
  -h, --help                  this help; workerpool <command> --help for a command's
  -V, --version               the version

Example:
  workerpool serve -w 4 -b 127.0.0.1:8080 -p app.pid app.ts
`;

/**
 * Runs the `workerpool` command with `args` (the words after the command's
 * name); resolves with its exit code: 0, 1 when it failed (with the reason
 * on stderr), 2 on a bad command line. `serve` ends the process itself once
 * the pool has stopped.
 */
export async function main(args: string[]): Promise<number> {
  const runtime = await loadRuntime();
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "serve":
        return await serveCommand(runtime, rest);
      case "status":
      case "reload":
      case "scale":
      case "stop":
        return await controlCommand(runtime, command, rest);
      case "-V":
      case "--version":
      case "version":
        console.log(`workerpool ${VERSION}`);
        return 0;
      case "-h":
      case "--help":
      case "help":
        // `workerpool help serve` is `workerpool serve --help`.
        if (command === "help" && rest.length > 0) {
          return await main([rest[0]!, "--help"]);
        }
        console.log(USAGE);
        return 0;
      case undefined:
        console.error(USAGE);
        return 2;
      default:
        throw new UsageError(
          "",
          `unknown command ${
            JSON.stringify(command)
          } (serve, status, reload, scale, stop)`,
        );
    }
  } catch (error) {
    if (error instanceof UsageError) {
      const where = error.command === "" ? "" : ` ${error.command}`;
      console.error(
        `workerpool${where}: ${error.message}; see workerpool${where} --help`,
      );
      return 2;
    }
    if (error instanceof CommandError) {
      console.error(`workerpool ${command}: ${error.message}`);
      return 1;
    }
    throw error;
  }
}

if (import.meta.main) {
  const runtime = await loadRuntime();
  const code = await main(runtime.args());
  await flushStderr(); // log lines (a warning of --check) still on their way
  runtime.exit(code);
}
