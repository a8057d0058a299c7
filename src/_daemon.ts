/**
 * Daemon mode: the launching process re-starts the script detached, in a
 * new session, with its stdout and stderr appended to a log file, and waits
 * until the daemon reports that every worker is ready, or why it failed.
 *
 * The report is a file the daemon writes (synchronously, before it wakes
 * the launcher through a socket or exits), so it is there to read whichever
 * the launcher sees first: the wake-up or the daemon's exit.
 *
 * @module
 */
import { controlDirPrefix, DAEMON_ENV } from "./_protocol.ts";
import { describe } from "./errors.ts";
import type { ExitStatus, Runtime } from "./runtime/mod.ts";

/** What the daemon reports to its launcher. */
export type DaemonReport =
  | { ok: true; pid: number; error?: undefined }
  | { ok: false; error: string; pid?: undefined };

const REPORT = "report.json";
const WAKE = "wake.sock";
/** Lines of the daemon's log shown when it died without a report. */
const LOG_TAIL_LINES = 20;
const LOG_TAIL_BYTES = 16 * 1024;

/**
 * Where a daemon's stdout and stderr go: beside its pidfile (`app.pid` →
 * `app.log`), or `workerpool.log` in the working directory.
 */
export function daemonLogPath(cwd: string, pidfile: string | undefined) {
  if (pidfile === undefined) return `${cwd}/workerpool.log`;
  const path = pidfile.startsWith("/") ? pidfile : `${cwd}/${pidfile}`;
  return path.endsWith(".pid") ? `${path.slice(0, -4)}.log` : `${path}.log`;
}

/**
 * Starts the daemon and waits for its report; resolves with the exit code
 * of the launching process (0 once every worker of the daemon is ready).
 */
export async function launchDaemon(
  runtime: Runtime,
  pidfile: string | undefined,
): Promise<number> {
  const logFile = daemonLogPath(runtime.cwd(), pidfile);
  try {
    await (await runtime.openAppend(logFile)).close();
  } catch (error) {
    console.error(
      `workerpool: Cannot start the daemon: cannot open its log file ${logFile}: ${
        describe(error)
      }`,
    );
    return 1;
  }
  // Named like a control directory, so a later master removes it if this
  // launcher is killed before it can.
  const dir = await runtime.makeTempDir(controlDirPrefix(runtime.pid));
  const woken = Promise.withResolvers<void>();
  const listener = runtime.listenUnix(`${dir}/${WAKE}`, (connection) => {
    connection.close();
    woken.resolve();
  }, (error) => console.error(`workerpool: ${String(error)}`));
  try {
    const { command, args } = runtime.scriptCommand();
    let child;
    try {
      child = runtime.spawn(command, {
        args,
        env: { [DAEMON_ENV]: dir },
        stdin: "null",
        logFile,
        detached: true,
      });
    } catch (error) {
      // Deno starts it through sh(1), to append its output to the log.
      console.error(`workerpool: Cannot start the daemon: ${describe(error)}`);
      return 1;
    }
    const exit: ExitStatus | null = await Promise.race([
      woken.promise.then(() => null),
      child.status,
    ]);
    const report = readReport(runtime, `${dir}/${REPORT}`);
    if (report?.ok) {
      child.unref();
      console.error(
        `workerpool: daemon started with pid ${report.pid}; its output goes to ${logFile}`,
      );
      return 0;
    }
    const reason = report?.error ??
      `it exited with code ${exit?.code} before it was ready`;
    console.error(`workerpool: Cannot start the daemon: ${reason}`);
    const tail = logTail(runtime, logFile);
    if (tail !== "") {
      console.error(`workerpool: the end of ${logFile}:\n${tail}`);
    }
    // A daemon that reported a failure is on its way out: wait for it.
    await child.status;
    return 1;
  } finally {
    listener.close();
    runtime.remove(dir);
  }
}

/** Sends the daemon's report to its launcher (`dir` from DAEMON_ENV). */
export async function reportToLauncher(
  runtime: Runtime,
  dir: string,
  report: DaemonReport,
): Promise<void> {
  runtime.writeTextFile(`${dir}/${REPORT}`, JSON.stringify(report));
  try {
    (await runtime.connectUnix(`${dir}/${WAKE}`)).close();
  } catch {
    // The launcher is gone or sees the exit first: the file is there.
  }
}

function readReport(runtime: Runtime, path: string): DaemonReport | null {
  const text = runtime.readTextFile(path);
  if (text === null) return null;
  try {
    return JSON.parse(text) as DaemonReport;
  } catch (error) {
    return { ok: false, error: `unreadable report: ${describe(error)}` };
  }
}

function logTail(runtime: Runtime, path: string): string {
  const text = runtime.readTail(path, LOG_TAIL_BYTES) ?? "";
  return text.trimEnd().split("\n").slice(-LOG_TAIL_LINES).join("\n");
}
