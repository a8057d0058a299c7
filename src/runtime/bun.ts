/**
 * The Bun adapter: `Bun.spawn`, `process.on`, `Bun.listen`, `Bun.serve`.
 *
 * @module
 */
import type {
  AppendFile,
  ChildProcess,
  Connection,
  ExitStatus,
  HttpServerHandle,
  Runtime,
  SignalName,
  SpawnOptions,
  UnixListener,
} from "./types.ts";

// Nothing here may touch Node's world at load time: this module is loaded
// under Deno too (never run there), and a node: import, or even reading
// `globalThis.process`, costs a Deno process its Node compatibility layer
// (~10 ms, 8 MB). Under Bun, `process` is a global and node:fs is required
// lazily: its first use costs a Bun process ~4.5 MB.
let process: NodeProcess;

interface NodeProcess {
  readonly pid: number;
  readonly platform: string;
  readonly execPath: string;
  readonly execArgv: string[];
  readonly argv: string[];
  readonly env: Record<string, string | undefined>;
  cwd(): string;
  kill(pid: number, signal: string | number): void;
  on(signal: string, listener: () => void): void;
  off(signal: string, listener: () => void): void;
  exit(code: number): never;
}

type NodeFs = typeof import("node:fs");

function fs(): NodeFs {
  return (import.meta as unknown as { require(id: string): NodeFs })
    .require("node:fs");
}

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

// The few parts of Bun's surface used here, declared structurally so that
// publishing needs no Bun type package.
interface BunSubprocess {
  readonly pid: number;
  readonly stdout: ReadableStream<Uint8Array> | number | undefined;
  readonly stderr: ReadableStream<Uint8Array> | number | undefined;
  readonly exited: Promise<number>;
  readonly exitCode: number | null;
  readonly signalCode: string | null;
  kill(signal?: string): void;
  unref(): void;
}
interface BunSocket {
  data: SocketState;
  write(data: Uint8Array): number;
  end(): void;
}
interface BunSocketHandlers {
  open?(socket: BunSocket): void;
  data(socket: BunSocket, data: Uint8Array): void;
  drain(socket: BunSocket): void;
  close(socket: BunSocket): void;
  error(socket: BunSocket, error: Error): void;
}
interface BunServer {
  readonly port: number;
  readonly hostname: string;
  stop(closeActiveConnections?: boolean): Promise<void>;
}
interface BunGlobal {
  readonly version: string;
  readonly main: string;
  spawn(cmd: string[], options: Record<string, unknown>): BunSubprocess;
  spawnSync(
    cmd: string[],
    options: Record<string, unknown>,
  ): { success: boolean; stdout: Uint8Array };
  Glob: new (pattern: string) => {
    scanSync(
      options: { cwd: string; onlyFiles: boolean; dot: boolean },
    ): Iterable<string>;
  };
  listen(options: { unix: string; socket: BunSocketHandlers }): {
    stop(closeActiveConnections?: boolean): void;
  };
  connect(
    options: { unix: string; socket: BunSocketHandlers },
  ): Promise<BunSocket>;
  serve(options: {
    port: number;
    hostname: string;
    reusePort: boolean;
    fetch: (request: Request) => Response | Promise<Response>;
  }): BunServer;
}

/** Creates the Bun adapter; throws when not running under Bun. */
export function bunRuntime(): Runtime {
  const Bun = (globalThis as { Bun?: BunGlobal }).Bun;
  if (Bun === undefined) {
    throw new Error("Cannot load the workerpool Bun adapter: not on Bun");
  }
  process = (globalThis as unknown as { process: NodeProcess }).process;
  return {
    name: "bun",
    version: Bun.version,
    pid: process.pid,
    scriptCommand: () => ({
      command: process.execPath,
      args: [...process.execArgv, Bun.main, ...process.argv.slice(2)],
    }),
    missingPoolPermission: () => null,
    getEnv: (name) => process.env[name],
    deleteEnv(name) {
      delete process.env[name];
    },
    spawn: (command, options) => spawn(Bun, command, options),
    kill(pid, signal) {
      try {
        process.kill(pid, signal);
        return true;
      } catch (error) {
        if ((error as { code?: string }).code === "ESRCH") return false;
        throw error;
      }
    },
    isAlive,
    onSignal(signal, listener) {
      process.on(signal, listener);
      return () => void process.off(signal, listener);
    },
    exit: (code) => process.exit(code),
    unrefTimer: (timer) => (timer as { unref?: () => void }).unref?.(),
    now: () => performance.now(),
    setTimeout: (callback, ms) => setTimeout(callback, ms),
    clearTimeout: (timer) => clearTimeout(timer),
    writeStderr: (data) => writeAll(2, data),
    // Bun retries a failed accept itself and never reports it.
    listenUnix(path, onConnection): UnixListener {
      const listener = Bun.listen({
        unix: path,
        socket: socketHandlers((socket) => {
          socket.data = new SocketState(socket);
          onConnection(socket.data.connection);
        }),
      });
      let closed = false;
      return {
        close() {
          if (closed) return;
          closed = true;
          listener.stop(false);
        },
      };
    },
    async connectUnix(path) {
      let state: SocketState | undefined;
      const socket = await Bun.connect({
        unix: path,
        socket: socketHandlers((socket) => {
          state = socket.data = new SocketState(socket);
        }),
      });
      state ??= socket.data = new SocketState(socket);
      return state.connection;
    },
    reusePortError: () => null,
    cwd: () => process.cwd(),
    tempDir,
    makeTempDir: (prefix) => makeTempDir(Bun, prefix),
    readDir: (path) =>
      Array.from(
        new Bun.Glob("*").scanSync({ cwd: path, onlyFiles: false, dot: true }),
      ),
    remove: (path) => fs().rmSync(path, { recursive: true, force: true }),
    readTextFile(path) {
      try {
        return fs().readFileSync(path, "utf8");
      } catch (error) {
        if ((error as { code?: string }).code === "ENOENT") return null;
        throw error;
      }
    },
    readTail(path, bytes) {
      const { closeSync, fstatSync, openSync, readSync } = fs();
      let fd: number;
      try {
        fd = openSync(path, "r");
      } catch (error) {
        if ((error as { code?: string }).code === "ENOENT") return null;
        throw error;
      }
      try {
        const size = fstatSync(fd).size;
        const buffer = new Uint8Array(Math.min(size, bytes));
        const read = readSync(
          fd,
          buffer,
          0,
          buffer.length,
          size - buffer.length,
        );
        return new TextDecoder().decode(buffer.subarray(0, read));
      } finally {
        closeSync(fd);
      }
    },
    writeTextFile: (path, text) => fs().writeFileSync(path, text),
    link(existing, path) {
      try {
        fs().linkSync(existing, path);
        return true;
      } catch (error) {
        if ((error as { code?: string }).code === "EEXIST") return false;
        throw error;
      }
    },
    openAppend: (path) => Promise.resolve(appendFile(path)),
    serve(options, handler): Promise<HttpServerHandle> {
      const server = Bun.serve({ ...options, fetch: handler });
      return Promise.resolve({
        port: server.port,
        hostname: server.hostname,
        // stop(false) stops listening and waits for in-flight requests.
        shutdown: () => server.stop(false),
      });
    },
  };
}

/**
 * A private (0700) temporary directory. mktemp(1) rather than node:fs: the
 * first use of node:fs costs a Bun process about 4.5 MB for good, and the
 * master otherwise needs node:fs only when it stops (measured, Bun 1.4.5).
 */
function tempDir(): string {
  return (process.env["TMPDIR"] || "/tmp").replace(/\/$/, "");
}

function makeTempDir(Bun: BunGlobal, prefix: string): string {
  const base = tempDir();
  const made = Bun.spawnSync(["mktemp", "-d", `${base}/${prefix}XXXXXX`], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  if (made.success) return new TextDecoder().decode(made.stdout).trim();
  return fs().mkdtempSync(`${base}/${prefix}`);
}

function appendFile(path: string): AppendFile {
  const fd = fs().openSync(path, "a");
  return {
    write: (data) => writeAll(fd, data),
    close: () =>
      new Promise((resolve, reject) =>
        fs().close(fd, (error) => error ? reject(error) : resolve())
      ),
  };
}

/**
 * Writes all of `data` to `fd` off the event loop (node:fs's callback
 * `write` runs on a thread): neither a slow disk nor a full pipe on stderr
 * holds the loop.
 */
async function writeAll(fd: number, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    offset += await new Promise<number>((resolve, reject) =>
      fs().write(
        fd,
        data,
        offset,
        data.length - offset,
        null,
        (error, written) => error ? reject(error) : resolve(written),
      )
    );
  }
}

function spawn(
  Bun: BunGlobal,
  command: string,
  options: SpawnOptions,
): ChildProcess {
  const pipe = (mode: string | undefined) =>
    mode === "piped" ? "pipe" : mode === "null" ? "ignore" : "inherit";
  // An fd of our own for the log file; the child gets a copy of it.
  const logFd = options.logFile === undefined
    ? null
    : fs().openSync(options.logFile, "a");
  let child: BunSubprocess;
  try {
    child = Bun.spawn([command, ...options.args], {
      // Bun replaces the environment rather than adding to it.
      env: { ...process.env, ...options.env },
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

function socketHandlers(
  open: (socket: BunSocket) => void,
): BunSocketHandlers {
  return {
    open,
    data: (socket, data) => socket.data.receive(data),
    drain: (socket) => socket.data.flush(),
    close: (socket) => socket.data?.end(null),
    error: (socket, error) => socket.data?.end(error),
  };
}

/** Adapts Bun's callback socket to a {@linkcode Connection}. */
class SocketState {
  readonly connection: Connection;
  #socket: BunSocket;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #pending: { data: Uint8Array; done: () => void; fail: (e: Error) => void }[] =
    [];
  #ended = false;

  constructor(socket: BunSocket) {
    this.#socket = socket;
    const readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
    });
    this.connection = {
      readable,
      write: (data) => this.#write(data),
      close: () => {
        if (!this.#ended) this.#socket.end();
        this.end(null);
      },
    };
  }

  receive(data: Uint8Array): void {
    // Bun may reuse the buffer after the callback returns.
    if (!this.#ended) this.#controller.enqueue(data.slice());
  }

  /** Writes what the kernel takes now; the rest waits for `drain`. */
  flush(): void {
    for (let head = this.#pending[0]; head; head = this.#pending[0]) {
      const written = this.#socket.write(head.data);
      if (written < 0) return this.end(new Error("Socket closed"));
      if (written < head.data.length) {
        head.data = head.data.subarray(written);
        return;
      }
      this.#pending.shift();
      head.done();
    }
  }

  end(error: Error | null): void {
    if (this.#ended) return;
    this.#ended = true;
    if (error) this.#controller.error(error);
    else this.#controller.close();
    const failure = error ?? new Error("Socket closed");
    for (const write of this.#pending.splice(0)) write.fail(failure);
  }

  #write(data: Uint8Array): Promise<void> {
    if (this.#ended) return Promise.reject(new Error("Socket closed"));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#pending.push({ data, done: resolve, fail: reject });
    if (this.#pending.length === 1) this.flush();
    return promise;
  }
}

/** Whether `pid` names a live process: zombies (exited, not yet reaped) count as gone. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as { code?: string }).code === "EPERM";
  }
  let stat: string;
  try {
    stat = fs().readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch (error) {
    // Gone since the probe, or no /proc (not Linux): the probe said alive.
    return (error as { code?: string }).code !== "ENOENT" ||
      process.platform !== "linux";
  }
  // The state letter follows the parenthesised command name.
  return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
}

/** `128 + n` for a process killed by signal `name`, as shells report it. */
function signalExitCode(name: string): number {
  return 128 + (SIGNAL_NUMBERS[name] ?? 0);
}
