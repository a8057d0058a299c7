/**
 * The runtime seam: everything workerpool needs from Deno or Bun, behind one
 * interface. Only the adapters in this folder touch `Deno.*` or `Bun.*`.
 *
 * @module
 */

/** The signals workerpool sends or listens to. */
export type SignalName =
  | "SIGTERM"
  | "SIGINT"
  | "SIGKILL"
  | "SIGSTOP"
  | "SIGCONT"
  | "SIGHUP"
  | "SIGQUIT"
  | "SIGUSR1"
  | "SIGUSR2"
  | "SIGTTIN"
  | "SIGTTOU"
  | "SIGWINCH"
  | "SIGALRM"
  | "SIGVTALRM"
  | "SIGPROF"
  | "SIGXFSZ"
  | "SIGPWR"
  | "SIGIO";

declare const timer: unique symbol;

/** A pending timer of a {@linkcode Clock}: opaque, each adapter its own. */
export type Timer = { readonly [timer]: true };

/** Time, as the master measures deadlines with it. */
export interface Clock {
  /** Milliseconds on a monotonic clock (never jumps with the wall clock). */
  now(): number;
  /** Calls `callback` once, `ms` from now. */
  setTimeout(callback: () => void, ms: number): Timer;
  /** Cancels a timer; nothing when it is undefined or already ran. */
  clearTimeout(timer: Timer | undefined): void;
}

/** How a child's standard stream is connected. */
export type StdioMode = "inherit" | "null" | "piped";

/** Options of {@linkcode Runtime.spawn}. */
export interface SpawnOptions {
  /** Arguments after the command. */
  args: string[];
  /** Variables added to the parent's environment. */
  env?: Record<string, string>;
  stdin?: "inherit" | "null";
  stdout?: StdioMode;
  stderr?: StdioMode;
  /** Start the child in a session of its own (no controlling terminal). */
  detached?: boolean;
  /** Append the child's stdout and stderr to this file (over `stdout`/`stderr`). */
  logFile?: string;
}

/** How a child process ended. */
export interface ExitStatus {
  /** Exit code; 128 + n when killed by signal n. */
  code: number;
  /** The signal that killed it, if any. */
  signal: string | null;
}

/** A spawned process. */
export interface ChildProcess {
  readonly pid: number;
  /** The child's stdout when spawned with `"piped"`. */
  readonly stdout: ReadableStream<Uint8Array> | null;
  /** The child's stderr when spawned with `"piped"`. */
  readonly stderr: ReadableStream<Uint8Array> | null;
  /** Resolves once the child has exited and been reaped. */
  readonly status: Promise<ExitStatus>;
  /** Sends a signal; false when the child has already exited. */
  kill(signal: SignalName): boolean;
  /** Lets the parent exit while the child runs on. */
  unref(): void;
}

/** A byte stream over a Unix socket. */
export interface Connection {
  /** Chunks as they arrive; ends on end-of-file. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Resolves once the bytes are handed to the kernel (backpressure). */
  write(data: Uint8Array): Promise<void>;
  /** Closes both directions; idempotent. */
  close(): void;
}

/** A listening Unix socket. */
export interface UnixListener {
  /** Stops accepting; open connections stay open. Idempotent. */
  close(): void;
}

/** Options of {@linkcode Runtime.serve}. */
export interface HttpServeOptions {
  port: number;
  hostname: string;
  reusePort: boolean;
  /** TLS: the certificate chain and its private key, PEM; both or neither. */
  tls?: { cert: string; key: string } | undefined;
  /**
   * The server stopped serving by itself: accepting failed (out of file
   * descriptors, on Deno); it listens again a second later. Never an
   * uncaught error that ends the process.
   */
  onFailure?: (error: unknown) => void;
}

/** What a handler learns of its request's connection. */
export interface HttpRequestInfo {
  /**
   * The client's address (Bun looks it up when read); throws once the
   * request was answered.
   */
  readonly remoteAddr: {
    readonly transport: "tcp";
    readonly hostname: string;
    readonly port: number;
  };
}

/**
 * A request handler as the adapters call it. `undefined` is Bun's answer
 * for a request upgraded to a WebSocket (see
 * {@linkcode HttpServerHandle.accept}).
 */
export type HttpHandler = (
  request: Request,
  info: HttpRequestInfo,
) => Response | undefined | Promise<Response | undefined>;

/**
 * A WebSocket upgrade begun by {@linkcode Http.upgradeWebSocket}: the
 * socket stays CONNECTING until the handler answers its request with
 * `response`, which the server then accepts; nothing is upgraded before.
 */
export interface HttpUpgrade {
  readonly socket: WebSocket;
  readonly response: Response;
  /** The handler answered otherwise: the socket fails without opening. */
  refuse(): void;
}

/** A running HTTP server. */
export interface HttpServerHandle {
  readonly port: number;
  readonly hostname: string;
  /**
   * The handler answered `request` with `upgrade.response`: upgrades it,
   * and says what to hand the runtime instead (Deno: its own 101 response,
   * the socket opens once it is sent; Bun: `undefined`, the socket is open
   * already). When the runtime refuses, the socket fails and the answer
   * is a 400.
   */
  accept(request: Request, upgrade: HttpUpgrade): Response | undefined;
  /**
   * Stops accepting and resolves once in-flight requests are answered.
   * (WebSockets are the caller's to close first: on Bun it waits for them.)
   */
  shutdown(): Promise<void>;
}

/** A file opened for appending. */
export interface AppendFile {
  /** Resolves once every byte was written. */
  write(data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** The file operations workerpool needs (the adapters' files.ts). */
export interface FileSystem {
  /**
   * Writes to this process's stderr without blocking the event loop, even
   * when stderr is a pipe nobody reads; resolves once all was written.
   */
  writeStderr(data: Uint8Array): Promise<void>;
  /** The current working directory. */
  cwd(): string;
  /** The system's temporary folder (`$TMPDIR`, else /tmp). */
  tempDir(): string;
  /** Creates a private (0700) directory in the system's temporary folder. */
  makeTempDir(prefix: string): Promise<string>;
  /** The names in a directory that start with `prefix`. */
  readDir(path: string, prefix: string): string[];
  /** Removes a file or a whole directory; nothing when it is missing. */
  remove(path: string): void;
  /** The file's text, or null when it does not exist. */
  readTextFile(path: string): string | null;
  /**
   * The same, without blocking and with the runtime's own API (on Bun,
   * node:fs costs a process 4.5 MB and time on first use): for workers.
   */
  readText(path: string): Promise<string | null>;
  /** The last `bytes` bytes of a file, as text; null when it does not exist. */
  readTail(path: string, bytes: number): string | null;
  /** Writes (creates or truncates) a file. */
  writeTextFile(path: string, text: string): void;
  /** Hard-links `existing` as `path`; false when `path` already exists. */
  link(existing: string, path: string): boolean;
  /**
   * Opens (creating it if needed) a file to append to; refuses a named pipe
   * or a socket (opening one waits for a reader, without end).
   */
  openAppend(path: string): Promise<AppendFile>;
  /** Writes to stdout, all of `data`. */
  writeStdout(data: Uint8Array): Promise<void>;
  /**
   * Watches files and folders (folders recursively); `onChange` gets the
   * path of each file created, changed or removed.
   */
  watch(paths: string[], onChange: (path: string) => void): Watcher;
}

/** A watch on files, from {@linkcode FileSystem.watch}. */
export interface Watcher {
  /** Stops watching. Idempotent. */
  close(): void;
}

/** Processes, signals, the environment and time (the adapters' process.ts). */
export interface Processes extends Clock {
  /**
   * The command that re-runs the current script as a worker, with the same
   * runtime flags (Deno: never more permissions than this process has).
   */
  scriptCommand(): { command: string; args: string[] };
  /**
   * The command that runs module `script` (a path or URL) with this
   * process's runtime flags and `flags`, then `args`: what the
   * `workerpool` command's workers run, however its master was started.
   */
  moduleCommand(
    script: string,
    flags?: string[],
    args?: string[],
  ): { command: string; args: string[] };
  /** The URL of the module this process runs (its main module). */
  mainModule(): string;
  /** This process's arguments, after the script. */
  args(): string[];
  /** Sets an environment variable of this process (its children inherit it). */
  setEnv(name: string, value: string): void;
  /** Whether this process's stdout is a terminal. */
  stdoutIsTerminal(): boolean;
  /**
   * The permissions the current process lacks to run a pool (Deno flags),
   * or null.
   */
  missingPoolPermission(): string | null;
  getEnv(name: string): string | undefined;
  deleteEnv(name: string): void;
  spawn(command: string, options: SpawnOptions): ChildProcess;
  /** Signals any process; false when there is no such process. */
  kill(pid: number, signal: SignalName): boolean;
  /** Whether a process with this pid exists (zombies count as gone). */
  isAlive(pid: number): boolean;
  /**
   * Whether a process with this pid exists, zombies included: cheaper than
   * {@linkcode isAlive} (on Bun, which reads /proc through node:fs, 4.5 MB
   * on first use).
   */
  exists(pid: number): boolean;
  /**
   * What the main thread of process `pid` is doing, where the system says
   * (Linux /proc); null where it does not. See {@linkcode MainThread}.
   */
  mainThread(pid: number): MainThread | null;
  /** This process's open-file limit (soft), or null where it is unknown. */
  fileLimit(): Promise<number | null>;
  /** What this process uses of the machine: memory, CPU time. */
  usage(): ProcessUsage;
  /** Adds a signal listener; returns the function that removes it. */
  onSignal(signal: SignalName, listener: () => void): () => void;
  exit(code: number): never;
  /** Keeps a timer from holding the process open. */
  unrefTimer(timer: ReturnType<typeof setTimeout>): void;
}

/** What a process uses of the machine, from {@linkcode Processes.usage}. */
export interface ProcessUsage {
  /** Resident memory, in bytes. */
  rss: number;
  /** The JavaScript heap in use, in bytes. */
  heapUsed: number;
  /**
   * CPU time, user and system, in microseconds since it started; null
   * where the runtime does not say.
   */
  cpuTime: number | null;
}

/** What a process's main thread is doing (Linux /proc). */
export interface MainThread {
  /** How long (ms, all its life) it waited for a CPU while runnable. */
  cpuWait: number;
  /** Whether it sleeps in a write to a pipe, a terminal or a socket. */
  writing: boolean;
}

/** Unix sockets (the adapters' socket.ts). */
export interface Sockets {
  /**
   * Listens on a Unix socket. A failed accept (out of file descriptors) is
   * passed to `onError` and accepting goes on: it never ends the process.
   */
  listenUnix(
    path: string,
    onConnection: (connection: Connection) => void,
    onError: (error: unknown) => void,
  ): UnixListener;
  connectUnix(path: string): Promise<Connection>;
}

/** HTTP (the adapters' serve.ts). */
export interface Http {
  /** Why `serve` cannot use `reusePort` here, or null. */
  reusePortError(): string | null;
  serve(
    options: HttpServeOptions,
    handler: HttpHandler,
  ): Promise<HttpServerHandle>;
  /**
   * Begins upgrading `request` (a request of a server of {@linkcode serve}
   * that asks for a WebSocket: the caller checked its headers) to a
   * WebSocket speaking `protocol` (one of those the client offered).
   */
  upgradeWebSocket(request: Request, protocol?: string): HttpUpgrade;
}

/** A datagram socket connected to systemd's notify socket (see sd_notify(3)). */
export interface NotifySocket {
  /** Sends one datagram, never blocking (MSG_DONTWAIT); null when sent, else the reason (errno name/text). */
  send(message: string): string | null;
  /** CLOCK_MONOTONIC now, in microseconds (for `MONOTONIC_USEC=`). */
  monotonicUsec(): bigint;
  /** Closes the socket; idempotent. */
  close(): void;
}

/**
 * Talking to the service manager (the adapters' notify.ts, through libc by
 * FFI: neither runtime has a Unix datagram API usable without an unstable
 * flag). Loaded on first use only: most processes never notify.
 */
export interface ServiceManager {
  /**
   * Opens a datagram socket to `path` ($NOTIFY_SOCKET: a filesystem path, or an abstract name starting with "@").
   * Rejects with an Error saying why (no FFI permission: name the Deno flag --allow-ffi; no libc found; socket() failed).
   */
  openNotifySocket(path: string): Promise<NotifySocket>;
}

/** Everything workerpool needs from the JavaScript runtime. */
export interface Runtime
  extends Processes, FileSystem, Sockets, Http, ServiceManager {
  readonly name: "deno" | "bun";
  readonly version: string;
  readonly pid: number;
}
