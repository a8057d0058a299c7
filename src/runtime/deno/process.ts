/**
 * Processes for the Deno adapter: the command that re-runs the script,
 * permissions, spawning, signals, liveness.
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

const PERMISSIONS = [
  "read",
  "write",
  "net",
  "env",
  "run",
  "sys",
  "ffi",
  "import",
] as const;

/** Processes, signals, the environment, time. */
export const processes: Processes = {
  scriptCommand,
  moduleCommand(script, flags = [], args = []) {
    const base = scriptCommand();
    const own = base.args.slice(0, base.args.length - Deno.args.length - 1);
    return { command: base.command, args: [...own, ...flags, script, ...args] };
  },
  mainModule: () => Deno.mainModule,
  args: () => [...Deno.args],
  setEnv: (name, value) => Deno.env.set(name, value),
  stdoutIsTerminal: () => Deno.stdout.isTerminal(),
  missingPoolPermission,
  getEnv(name) {
    // Reading without permission would prompt or throw; unknown means unset.
    if (!granted({ name: "env", variable: name })) return undefined;
    return Deno.env.get(name);
  },
  deleteEnv(name) {
    if (granted({ name: "env", variable: name })) Deno.env.delete(name);
  },
  spawn,
  kill(pid, signal) {
    try {
      Deno.kill(pid, signal);
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return false;
      // ESRCH surfaces as a plain Error in some Deno versions.
      if (/ESRCH|No such process/.test(String(error))) return false;
      throw error;
    }
  },
  isAlive,
  exists: isAlive,
  mainThread,
  async fileLimit() {
    try {
      return parseFileLimit(await Deno.readTextFile("/proc/self/limits"));
    } catch {
      return null; // not Linux: unknown
    }
  },
  usage() {
    const { rss, heapUsed } = Deno.memoryUsage();
    // Not in Deno's type declarations (2.9.6), yet there and cheap (3 µs).
    const cpu = (Deno as { cpuUsage?: () => { user: number; system: number } })
      .cpuUsage?.();
    return { rss, heapUsed, cpuTime: cpu ? cpu.user + cpu.system : null };
  },
  onSignal(signal, listener) {
    Deno.addSignalListener(signal as Deno.Signal, listener);
    return () => Deno.removeSignalListener(signal as Deno.Signal, listener);
  },
  exit: (code) => Deno.exit(code),
  unrefTimer: (timer) => Deno.unrefTimer(timer as unknown as number),
  now: () => performance.now(),
  // Deno 2.9's first setTimeout loads part of its Node compatibility layer:
  // 11 ms and ~3 MB in every process of a pool (measured); a timeout signal
  // costs under 1 ms, and a listener on it keeps the process alive.
  setTimeout(callback, ms) {
    const signal = AbortSignal.timeout(Math.max(0, ms));
    const fire = () => callback();
    signal.addEventListener("abort", fire, { once: true });
    return { cancel: () => signal.removeEventListener("abort", fire) } as
      & DenoTimer
      & Timer;
  },
  clearTimeout: (timer) =>
    (timer as unknown as DenoTimer | undefined)?.cancel(),
};

interface DenoTimer {
  cancel(): void;
}

/**
 * Whether this process holds the permission `descriptor`. A permission held
 * in full covers every narrower query, so that one is asked once: each
 * query costs a process about 0.2 ms of its start (Deno 2.9.6, measured).
 */
export function granted(descriptor: Deno.PermissionDescriptor): boolean {
  let whole = held.get(descriptor.name);
  if (whole === undefined) {
    whole = query({ name: descriptor.name } as Deno.PermissionDescriptor);
    held.set(descriptor.name, whole);
  }
  return whole || query(descriptor);
}

const held = new Map<string, boolean>();

function query(descriptor: Deno.PermissionDescriptor): boolean {
  return Deno.permissions.querySync(descriptor).state === "granted";
}

/**
 * Whether `pid` runs: /proc on Linux, where a zombie (exited, not reaped)
 * counts as gone; elsewhere `kill -0`, as Deno.kill has no signal 0.
 */
function isAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    if (Deno.build.os === "linux") return false;
    const probe = new Deno.Command("kill", {
      args: ["-0", String(pid)],
      stdout: "null",
      stderr: "null",
    });
    return probe.outputSync().success;
  }
  // The state letter follows the parenthesised command name.
  return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
}

function scriptCommand(): { command: string; args: string[] } {
  const flags = masterFlags() ?? permissionFlags();
  // A worker must never block on a permission prompt, and reusePort needs
  // the net unstable flag.
  for (const flag of ["--no-prompt", "--unstable-net"]) {
    if (!flags.includes(flag)) flags.push(flag);
  }
  return {
    command: Deno.execPath(),
    args: ["run", ...flags, Deno.mainModule, ...Deno.args],
  };
}

/** Flags for each permission the master holds in full. */
function permissionFlags(): string[] {
  const allowed = PERMISSIONS.filter((name) => granted({ name }));
  return allowed.length === PERMISSIONS.length
    ? ["--allow-all"]
    : allowed.map((name) => `--allow-${name}`);
}

/**
 * The master's own `deno run` flags (--unstable-*, --location, --config,
 * --v8-flags…), read from /proc/self/cmdline, which Deno lets only a process
 * with every permission read; null elsewhere. Watch-mode flags are left out:
 * the master restarts on changes, the workers with it.
 */
function masterFlags(): string[] | null {
  if (!PERMISSIONS.every((name) => granted({ name }))) return null;
  let argv: string[];
  try {
    argv = Deno.readTextFileSync("/proc/self/cmdline").split("\0");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null; // not Linux
    throw error;
  }
  if (argv.at(-1) === "") argv.pop();
  const scriptIndex = argv.length - Deno.args.length - 1;
  const start = argv[1] === "run" ? 2 : 1;
  const script = argv[scriptIndex] ?? "";
  const name = script.slice(script.lastIndexOf("/") + 1);
  if (scriptIndex < start || name === "" || !Deno.mainModule.endsWith(name)) {
    return null; // not the `deno run [flags] script [args]` we understand
  }
  return argv.slice(start, scriptIndex).filter((flag) =>
    !/^--(watch|watch-hmr|watch-exclude|no-clear-screen)(=|$)/.test(flag)
  );
}

function missingPoolPermission(): string | null {
  // A path like the one the control socket will have.
  const socketPath = `${tempDir()}/workerpool-check/control.sock`;
  const needed: [string, Deno.PermissionDescriptor][] = [
    ["--allow-run", { name: "run", command: Deno.execPath() }],
    ["--allow-env", { name: "env", variable: "WORKERPOOL_WORKER_ID" }],
    ["--allow-read", { name: "read", path: socketPath }],
    ["--allow-write", { name: "write", path: socketPath }],
    // Unix sockets count as network access in Deno.
    ["--allow-net", { name: "net", host: `unix:${socketPath}` }],
  ];
  const missing = needed.filter(([, d]) => !granted(d)).map(([flag]) => flag);
  return missing.length === 0 ? null : missing.join(", ");
}

function spawn(command: string, options: SpawnOptions): ChildProcess {
  let argv = [command, ...options.args];
  if (options.logFile !== undefined) {
    // Deno.Command cannot send output to a file; a shell opens it (appending)
    // and execs the command, so the pid stays the command's.
    argv = [
      "sh",
      "-c",
      'f=$1; shift; exec "$@" >>"$f" 2>&1',
      "sh",
      options.logFile,
      ...argv,
    ];
  }
  const toFile = options.logFile !== undefined;
  const [program, ...args] = argv as [string, ...string[]];
  const child = new Deno.Command(program, {
    args,
    // A session of its own (setsid): no terminal, no signals of ours.
    detached: options.detached ?? false,
    env: options.env ?? {},
    stdin: options.stdin ?? "inherit",
    stdout: toFile ? "inherit" : options.stdout ?? "inherit",
    stderr: toFile ? "inherit" : options.stderr ?? "inherit",
  }).spawn();
  const status: Promise<ExitStatus> = child.status.then((s) => ({
    code: s.code,
    signal: s.signal,
  }));
  let exited = false;
  status.then(() => exited = true);
  return {
    pid: child.pid,
    stdout: options.stdout === "piped" ? child.stdout : null,
    stderr: options.stderr === "piped" ? child.stderr : null,
    status,
    kill(signal: SignalName) {
      if (exited) return false;
      try {
        child.kill(signal);
        return true;
      } catch (error) {
        // The child exited between our check and the kill.
        if (error instanceof TypeError) return false;
        throw error;
      }
    },
    unref: () => child.unref(),
  };
}

/** `$TMPDIR`, else /tmp (where Deno puts temporary directories). */
export function tempDir(): string {
  const variable = "TMPDIR";
  const tmp = granted({ name: "env", variable })
    ? Deno.env.get(variable)
    : undefined;
  return (tmp || "/tmp").replace(/\/$/, "");
}

/** From /proc: a main thread's runqueue wait and whether it blocks writing. */
function mainThread(pid: number): MainThread | null {
  let schedstat: string;
  let wchan: string;
  try {
    schedstat = Deno.readTextFileSync(`/proc/${pid}/schedstat`);
    wchan = Deno.readTextFileSync(`/proc/${pid}/wchan`);
  } catch {
    return null; // gone, or not Linux: nothing is known
  }
  return parseMainThread(schedstat, wchan);
}
