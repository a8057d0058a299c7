/**
 * Daemon mode: the launching process re-starts the script detached in a new
 * session with stdio on /dev/null, and waits until the daemon reports that
 * it is up (pidfile written) or why it failed.
 *
 * @module
 */
import { join } from "./_path.ts";
import { readFrames } from "./_channel.ts";
import { describe } from "./errors.ts";
import type { Runtime } from "./runtime/mod.ts";

/** Set in the daemon's environment: where to report to its launcher. */
export const DAEMON_ENV = "WORKERPOOL_DAEMON_NOTIFY";

/** What the daemon reports to its launcher. */
export type DaemonReport = { ok: true; pid: number } | {
  ok: false;
  error: string;
};

/**
 * Starts the daemon and waits for its report; resolves with the exit code
 * of the launching process (0 once the daemon is up).
 */
export async function launchDaemon(runtime: Runtime): Promise<number> {
  const dir = runtime.makeTempDir("workerpool-daemon-");
  const path = join(dir, "notify.sock");
  const report = Promise.withResolvers<DaemonReport>();
  const listener = runtime.listenUnix(path, (connection) => {
    readFrames(connection, (frame) => report.resolve(frame as DaemonReport))
      .catch((error) =>
        report.resolve({ ok: false, error: `bad report: ${describe(error)}` })
      )
      .finally(() => connection.close());
  });
  try {
    const { command, args } = runtime.scriptCommand();
    const child = runtime.spawn(command, {
      args,
      env: { [DAEMON_ENV]: path },
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached: true,
    });
    const outcome = await Promise.race([
      report.promise,
      child.status.then((status): DaemonReport => ({
        ok: false,
        error: `it exited with code ${status.code} before it was ready`,
      })),
    ]);
    if (!outcome.ok) {
      console.error(`workerpool: Cannot start the daemon: ${outcome.error}`);
      return 1;
    }
    child.unref();
    console.error(`workerpool: daemon started with pid ${outcome.pid}`);
    return 0;
  } finally {
    listener.close();
    runtime.remove(dir);
  }
}

/** Sends the daemon's report to its launcher. */
export async function reportToLauncher(
  runtime: Runtime,
  path: string,
  report: DaemonReport,
): Promise<void> {
  const connection = await runtime.connectUnix(path);
  try {
    await connection.write(
      new TextEncoder().encode(JSON.stringify(report) + "\n"),
    );
  } finally {
    connection.close();
  }
}
