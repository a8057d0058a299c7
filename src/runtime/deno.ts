/**
 * The Deno adapter: `Deno.Command`, `Deno.addSignalListener`, `Deno.listen`,
 * `Deno.serve`.
 *
 * @module
 */
import type {
  ChildProcess,
  Connection,
  ExitStatus,
  HttpServerHandle,
  Runtime,
  SignalName,
  SpawnOptions,
  UnixListener,
} from "./types.ts";

/** The pause before accepting again after an accept failed (EMFILE). */
const ACCEPT_RETRY_MS = 100;

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

/** Creates the Deno adapter; throws when not running under Deno. */
export function denoRuntime(): Runtime {
  if (typeof Deno === "undefined" || typeof Deno.Command !== "function") {
    throw new Error("Cannot load the workerpool Deno adapter: not on Deno");
  }
  return {
    name: "deno",
    version: Deno.version.deno,
    pid: Deno.pid,
    scriptCommand,
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
    onSignal(signal, listener) {
      Deno.addSignalListener(signal as Deno.Signal, listener);
      return () => Deno.removeSignalListener(signal as Deno.Signal, listener);
    },
    exit: (code) => Deno.exit(code),
    unrefTimer: (timer) => Deno.unrefTimer(timer as unknown as number),
    now: () => performance.now(),
    setTimeout: (callback, ms) => setTimeout(callback, ms),
    clearTimeout: (timer) => clearTimeout(timer),
    writeStderr: (data) => writeAll(Deno.stderr, data),
    listenUnix,
    async connectUnix(path) {
      return wrapConn(await Deno.connect({ transport: "unix", path }));
    },
    reusePortError() {
      // Without --unstable-net, Deno.serve({ reusePort }) exits the process
      // with code 70 and nothing can catch it; listenDatagram is unstable-net
      // only, so its presence tells beforehand.
      return typeof (Deno as { listenDatagram?: unknown }).listenDatagram ===
          "function"
        ? null
        : 'Deno needs --unstable-net (or "unstable": ["net"] in deno.json)';
    },
    serve,
    cwd: () => Deno.cwd(),
    tempDir,
    makeTempDir: (prefix) => Deno.makeTempDirSync({ prefix }),
    readDir: (path) =>
      Array.from(Deno.readDirSync(path), (entry) => entry.name),
    remove(path) {
      ignoreNotFound(() => Deno.removeSync(path, { recursive: true }));
    },
    readTextFile(path) {
      try {
        return Deno.readTextFileSync(path);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return null;
        throw error;
      }
    },
    readTail(path, bytes) {
      let file: Deno.FsFile;
      try {
        file = Deno.openSync(path);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return null;
        throw error;
      }
      try {
        const size = file.statSync().size;
        file.seekSync(Math.max(0, size - bytes), Deno.SeekMode.Start);
        const buffer = new Uint8Array(Math.min(size, bytes));
        let read = 0;
        while (read < buffer.length) {
          const n = file.readSync(buffer.subarray(read));
          if (n === null) break;
          read += n;
        }
        return new TextDecoder().decode(buffer.subarray(0, read));
      } finally {
        file.close();
      }
    },
    writeTextFile: (path, text) => Deno.writeTextFileSync(path, text),
    link(existing, path) {
      try {
        Deno.linkSync(existing, path);
        return true;
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) return false;
        throw error;
      }
    },
    async openAppend(path) {
      // file.write, not file.writable: the stream's writer holds bytes back
      // until 64 KiB have gathered (Deno 2.9), so a crashing worker's last
      // lines were not on disk when somebody looked.
      const file = await Deno.open(path, { append: true, create: true });
      return {
        write: (data) => writeAll(file, data),
        close: () => Promise.resolve(file.close()),
      };
    },
  };
}

async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  data: Uint8Array,
): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    offset += await writer.write(data.subarray(offset));
  }
}

function tempDir(): string {
  const variable = "TMPDIR";
  const tmp = granted({ name: "env", variable })
    ? Deno.env.get(variable)
    : undefined;
  return (tmp || "/tmp").replace(/\/$/, "");
}

function ignoreNotFound(action: () => void): void {
  try {
    action();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
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

function granted(descriptor: Deno.PermissionDescriptor): boolean {
  return Deno.permissions.querySync(descriptor).state === "granted";
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

function listenUnix(
  path: string,
  onConnection: (connection: Connection) => void,
  onError: (error: unknown) => void,
): UnixListener {
  const listener = Deno.listen({ transport: "unix", path });
  let closed = false;
  (async () => {
    while (!closed) {
      try {
        for await (const conn of listener) onConnection(wrapConn(conn));
        return;
      } catch (error) {
        if (closed) return;
        // Out of file descriptors, say: the listener stays usable; try
        // again shortly rather than spin, and never end the process.
        onError(error);
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
      }
    }
  })();
  return {
    close() {
      if (closed) return;
      closed = true;
      listener.close();
    },
  };
}

/**
 * `conn.readable` allocates a 64 KiB buffer for every read: for a master
 * reading a few small frames a second from each worker that is megabytes of
 * garbage a minute, and an RSS that swings by 15 MB (measured, Deno 2.9).
 * One buffer, reused, and a copy of just the bytes read.
 */
function wrapConn(conn: Deno.Conn): Connection {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  };
  const buffer = new Uint8Array(16 * 1024);
  const readable = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let count: number | null;
      try {
        count = await conn.read(buffer);
      } catch (error) {
        // Closing our end while a read waits ends that read: end-of-file.
        if (!closed) return controller.error(error);
        count = null;
      }
      if (count === null) controller.close();
      else controller.enqueue(buffer.slice(0, count));
    },
    cancel: close,
  }, { highWaterMark: 0 });
  return {
    readable,
    async write(data) {
      for (let offset = 0; offset < data.length;) {
        offset += await conn.write(data.subarray(offset));
      }
    },
    close,
  };
}

function serve(
  options: { port: number; hostname: string; reusePort: boolean },
  handler: (request: Request) => Response | Promise<Response>,
): Promise<HttpServerHandle> {
  const { promise, resolve } = Promise.withResolvers<HttpServerHandle>();
  const server = Deno.serve({
    port: options.port,
    hostname: options.hostname,
    reusePort: options.reusePort,
    onListen(addr) {
      resolve({
        port: addr.port,
        hostname: addr.hostname,
        shutdown: () => server.shutdown(),
      });
    },
  }, handler);
  return promise;
}
