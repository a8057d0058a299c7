/**
 * Processes for the Bun adapter: the command that re-runs the script,
 * spawning, signals, liveness.
 *
 * @module
 */
import { parseFileLimit, parseMainThread } from "../_shared.ts";
import type {
  ChildProcess,
  ExitStatus,
  MainThread,
  Processes,
  SignalName,
  SpawnOptions,
  Timer,
} from "../types.ts";
import { bun, type BunSubprocess, code, fs, node } from "./globals.ts";

/** Processes, signals, the environment, time. */
export const processes: Processes = {
  scriptCommand: () =>
    // A `bun build --compile` binary runs its embedded script by itself:
    // naming the script again would shift every argument by one.
    bun().main.startsWith("/$bunfs/")
      ? { command: node().execPath, args: node().argv.slice(2) }
      : {
        command: node().execPath,
        args: [...node().execArgv, bun().main, ...node().argv.slice(2)],
      },
  moduleCommand: (script, flags = [], args = []) => ({
    command: node().execPath,
    args: [...node().execArgv, ...flags, script, ...args],
  }),
  mainModule: () => `file://${encodeURI(bun().main)}`,
  args: () => node().argv.slice(2),
  setEnv(name, value) {
    node().env[name] = value;
  },
  stdoutIsTerminal: () => node().stdout.isTTY === true,
  missingPoolPermission: () => null,
  getEnv: (name) => node().env[name],
  deleteEnv(name) {
    delete node().env[name];
  },
  spawn,
  kill(pid, signal) {
    try {
      node().kill(pid, signal);
      return true;
    } catch (error) {
      if (code(error) === "ESRCH") return false;
      throw error;
    }
  },
  isAlive,
  exists(pid) {
    try {
      node().kill(pid, 0);
      return true;
    } catch (error) {
      // EPERM: the process exists but belongs to someone else.
      return code(error) === "EPERM";
    }
  },
  mainThread,
  async fileLimit() {
    try {
      // Bun.file, not node:fs (4.5 MB on first use).
      return parseFileLimit(await bun().file("/proc/self/limits").text());
    } catch {
      return null; // not Linux: unknown
    }
  },
  usage() {
    const { rss, heapUsed } = node().memoryUsage();
    const { user, system } = node().cpuUsage();
    return { rss, heapUsed, cpuTime: user + system };
  },
  onSignal(signal, listener) {
    node().on(signal, listener);
    return () => void node().off(signal, listener);
  },
  exit: (code) => node().exit(code),
  unrefTimer: (timer) => (timer as { unref?: () => void }).unref?.(),
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms) as unknown as Timer,
  clearTimeout: (timer) =>
    clearTimeout(timer as unknown as ReturnType<typeof setTimeout>),
};

const SIGNAL_NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

function spawn(command: string, options: SpawnOptions): ChildProcess {
  const pipe = (mode: string | undefined) =>
    mode === "piped" ? "pipe" : mode === "null" ? "ignore" : "inherit";
  // An fd of our own for the log file; the child gets a copy of it.
  const logFd = options.logFile === undefined
    ? null
    : fs().openSync(options.logFile, "a");
  let child: BunSubprocess;
  try {
    child = bun().spawn([command, ...options.args], {
      // Bun replaces the environment rather than adding to it.
      env: { ...node().env, ...options.env },
      stdin: options.stdin === "null" ? "ignore" : "inherit",
      stdout: logFd ?? pipe(options.stdout),
      stderr: logFd ?? pipe(options.stderr),
      detached: options.detached ?? false,
    });
  } finally {
    if (logFd !== null) fs().closeSync(logFd);
  }
  const status: Promise<ExitStatus> = child.exited.then((code) => {
    const signal = child.signalCode;
    return signal === null
      ? { code, signal: null }
      : { code: signalExitCode(signal), signal };
  });
  const stream = (s: BunSubprocess["stdout"]) =>
    s instanceof ReadableStream ? s : null;
  return {
    pid: child.pid,
    stdout: stream(child.stdout),
    stderr: stream(child.stderr),
    status,
    kill(signal: SignalName) {
      if (child.exitCode !== null || child.signalCode !== null) return false;
      child.kill(signal);
      return true;
    },
    unref: () => child.unref(),
  };
}

/** Whether `pid` names a live process: zombies (exited, not yet reaped) count as gone. */
function isAlive(pid: number): boolean {
  try {
    node().kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return code(error) === "EPERM";
  }
  let stat: string;
  try {
    stat = fs().readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch (error) {
    // Gone since the probe, or no /proc (not Linux): the probe said alive.
    return code(error) !== "ENOENT" || node().platform !== "linux";
  }
  // The state letter follows the parenthesised command name.
  return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
}

/** `128 + n` for a process killed by signal `name`, as shells report it. */
function signalExitCode(name: string): number {
  return 128 + (SIGNAL_NUMBERS[name] ?? 0);
}

/** From /proc: a main thread's runqueue wait and whether it blocks writing. */
function mainThread(pid: number): MainThread | null {
  let schedstat: string;
  let wchan: string;
  try {
    schedstat = fs().readFileSync(`/proc/${pid}/schedstat`, "utf8");
    wchan = fs().readFileSync(`/proc/${pid}/wchan`, "utf8");
  } catch {
    return null; // gone, or not Linux: nothing is known
  }
  return parseMainThread(schedstat, wchan);
}
