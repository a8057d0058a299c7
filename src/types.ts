/**
 * The public types of workerpool, in one place.
 *
 * @module
 */
export type { SignalName } from "./runtime/types.ts";

/** A start or shutdown callback; may be sync or async. */
export type LifecycleCallback = () => void | Promise<void>;

/**
 * Where a worker's stdout or stderr goes: the master's own stream
 * (`"inherit"`), nowhere (`"null"`), a file path (appended to), or a
 * `WritableStream` shared by all workers, written a whole line at a time.
 */
export type OutputTarget =
  | "inherit"
  | "null"
  | string
  | WritableStream<Uint8Array>;

/** Options of `Supervisor`; times are in milliseconds. */
export interface SupervisorOptions {
  /**
   * How many workers (ids `0..N-1`), or the ids themselves; at most 1024.
   * @default {2}
   */
  workers?: number | Iterable<number>;
  /**
   * How often the pool is reconciled with the ids it should have.
   * @default {1000}
   */
  checkInterval?: number;
  /**
   * A worker silent (no heartbeat) this long, once it connected, is killed
   * and replaced.
   * @default {15000}
   */
  workerTimeout?: number;
  /**
   * How long a new worker may take from its spawn until its `onStart`
   * callbacks finished; one that takes longer is killed, and counts as a
   * boot error.
   * @default {60000}
   */
  readyTimeout?: number;
  /**
   * How long a stopping worker may take before it is killed with SIGKILL.
   * @default {30000}
   */
  gracefulTimeout?: number;
  /**
   * A worker that dies younger than this restarts with exponential backoff.
   * @default {1000}
   */
  minUptime?: number;
  /**
   * The cap of the restart backoff.
   * @default {10000}
   */
  maxRestartDelay?: number;
  /**
   * Boot errors in a row (one worker id) that halt the pool with exit code 3.
   * @default {5}
   */
  maxBootErrors?: number;
  /**
   * Where workers' stdout goes.
   * @default {"inherit"}
   */
  stdout?: OutputTarget;
  /**
   * Where workers' stderr goes.
   * @default {"inherit"}
   */
  stderr?: OutputTarget;
  /**
   * Receives every log record, the master's and the workers'. By default
   * records from `logLevel` up are printed on stderr.
   */
  logger?: LogHandler;
  /**
   * The threshold of the default stderr handler (ignored with `logger`).
   * @default {"INFO"}
   */
  logLevel?: LevelName;
  /**
   * How many worker ids a rolling reload replaces at a time.
   * @default {1}
   */
  reloadConcurrency?: number;
  /**
   * A worker that served this many requests through `serve()` is replaced
   * (the replacement first, then the old one drains); 0 never.
   * @default {0}
   */
  maxRequests?: number;
  /**
   * Up to this many requests are added to `maxRequests`, at random for each
   * process, so that workers started together are not replaced together.
   * @default {0}
   */
  maxRequestsJitter?: number;
  /**
   * A worker whose resident memory (RSS, in bytes, as its heartbeat
   * reports it) exceeds this is replaced; 0 never.
   * @default {0}
   */
  maxMemory?: number;
  /**
   * A worker older than this is replaced; each process draws its own limit
   * up to 10 % above it, so that workers started together are not replaced
   * together. 0 never.
   * @default {0}
   */
  maxAge?: number;
  /**
   * Start on a port another pool holds (its workers serve through `serve()`
   * with `reusePort`): once every worker of this pool is ready, the other
   * pool is told to drain and exit. Without it, such a start fails and
   * names the other pool's master.
   * @default {false}
   */
  takeover?: boolean;
  /**
   * Serves `/metrics` (Prometheus text), `/healthz`, `/readyz` and
   * `/status` (JSON) from the master, on this address. Off by default.
   */
  admin?: AdminOptions;
  /**
   * On SIGTERM (or `terminate()`), how long `/readyz` answers 503 while
   * the workers go on serving, before they drain: the time a load
   * balancer (Kubernetes' endpoints) takes to stop sending requests. A
   * second SIGTERM, or SIGINT, stops at once.
   * @default {0}
   */
  shutdownDelay?: number;
  /**
   * How many workers must be ready for `/readyz` to answer 200 (all of
   * them, when the pool has fewer).
   * @default {1}
   */
  minReady?: number;
  /**
   * The default stderr handler's format: `"text"` lines for people, or
   * `"json"`, one object per line for log collectors (`time`, `level`,
   * `logger`, `worker`, `pid`, `message`, `args`). Ignored with `logger`.
   * @default {"text"}
   */
  logFormat?: "text" | "json";
}

/** Options of `Supervisor.main`. */
export interface MainOptions {
  /** A pidfile to hold while the master runs. */
  pidfile?: string;
  /**
   * Re-start detached, in a new session; the launching process exits 0
   * once every worker is ready, or 1 with the reason the daemon failed.
   * The daemon's stdout and stderr go to a log file beside the pidfile
   * (`app.pid` → `app.log`), or `workerpool.log` without a pidfile.
   * @default {false}
   */
  daemonize?: boolean;
}

/** What a worker looks like from outside, in `Supervisor.pool`. */
export interface WorkerInfo {
  /** The logical worker id. */
  readonly id: number;
  /** The current process, or null while it is being restarted. */
  readonly pid: number | null;
  /**
   * `starting` until its start callbacks finished, `ready` after,
   * `stopping` once signalled, `restarting` while it waits for a new
   * process, `stopped` when the pool is not running (before it started,
   * after it stopped).
   */
  readonly state: "starting" | "ready" | "stopping" | "restarting" | "stopped";
  /** How many times this id's process was replaced, for any reason. */
  readonly restarts: number;
  /** The same, by reason: `{ exit: 2, reload: 3 }` (reasons with none left out). */
  readonly restartsBy: Readonly<Partial<Record<RestartReason, number>>>;
  /** The last replacement of this id's process, if there was one. */
  readonly lastRestart: RestartInfo | null;
  /**
   * What the current process's last heartbeat said of it; null before its
   * first heartbeat (or without a process).
   */
  readonly metrics: WorkerMetrics | null;
  /**
   * All processes of this id together, those that exited included (up to
   * their last heartbeat): counters that only grow.
   */
  readonly totals: {
    /** CPU time, user and system, in milliseconds. */
    readonly cpuTime: number;
    /** Requests taken by their `serve()` servers. */
    readonly requests: number;
    /** Requests not answered yet (retiring processes' included). */
    readonly requestsInFlight: number;
  };
  /** Milliseconds since the current process was spawned (0 without one). */
  readonly uptime: number;
  /**
   * Milliseconds since the current process last showed a sign of life (a
   * heartbeat, any frame; its spawn before the first); null without one.
   * It is killed past `workerTimeout`.
   */
  readonly heartbeatAge: number | null;
  /**
   * The reload its current process was spawned in: 0 before the first
   * reload, then 1, 2… (one more for each `reload()` or SIGHUP begun).
   */
  readonly generation: number;
  /**
   * During a rolling replacement of this id (a reload, a recycle): the new
   * process, `starting` until it is ready; then it becomes the current one.
   */
  readonly next: WorkerProcessInfo | null;
  /** Earlier processes of this id, replaced and still draining. */
  readonly retiring: readonly WorkerProcessInfo[];
}

/**
 * Why a worker id got a new process: it exited by itself (`exit`), was
 * killed by a signal or stopped by one from elsewhere (`signal`), missed
 * its heartbeat or ready deadline (`timeout`), failed to start
 * (`boot_error`), or was replaced while it ran: by a rolling reload
 * (`reload`) or recycled for `maxRequests`, `maxMemory` or `maxAge`.
 */
export type RestartReason =
  | "exit"
  | "signal"
  | "timeout"
  | "boot_error"
  | "reload"
  | "max_requests"
  | "max_memory"
  | "max_age";

/** One replacement of a worker id's process, in `WorkerInfo.lastRestart`. */
export interface RestartInfo {
  /** Why, as a label. */
  readonly reason: RestartReason;
  /**
   * Why, in words: `exited with code 1`, `was killed by SIGKILL`, `sent no
   * heartbeat for 15000 ms`, `it served 1000 requests (limit 1000)`.
   */
  readonly detail: string;
  /** The process that was replaced. */
  readonly pid: number;
  /** When, in milliseconds since the epoch. */
  readonly at: number;
}

/**
 * What a worker process's last heartbeat said of it. A field is null when
 * the worker did not say (an older worker, a runtime without the figure);
 * the request counts are null when it serves no `serve()` server.
 */
export interface WorkerMetrics {
  /** Resident memory, in bytes. */
  readonly rss: number | null;
  /** JavaScript heap in use, in bytes. */
  readonly heapUsed: number | null;
  /**
   * Event-loop lag in milliseconds: how late its heartbeat timer fired,
   * that is how long something held its event loop before the beat.
   */
  readonly eventLoopLag: number | null;
  /** CPU time, user and system, in milliseconds since it started. */
  readonly cpuTime: number | null;
  /** Requests its `serve()` servers took. */
  readonly requests: number | null;
  /** Requests its `serve()` servers have not answered yet. */
  readonly requestsInFlight: number | null;
}

/**
 * The whole pool as the master sees it: `Supervisor.status`, and the
 * admin endpoint's `/status` as JSON.
 */
export interface PoolStatus {
  /** The master's pid. */
  readonly pid: number;
  /** The runtime and its version: `deno 2.9.6`, `bun 1.4.5`. */
  readonly runtime: string;
  /**
   * `starting` until every worker was ready once, then `running`
   * (`reloading` during a rolling reload); `draining` during
   * `shutdownDelay` after a stop was asked for, `stopping` while the
   * workers stop, `stopped` after.
   */
  readonly state:
    | "idle"
    | "starting"
    | "running"
    | "reloading"
    | "draining"
    | "stopping"
    | "stopped";
  /** Milliseconds since the pool started its workers (0 before). */
  readonly uptime: number;
  /** How many worker ids the pool has. */
  readonly size: number;
  /**
   * How many of them have a ready process that showed a sign of life
   * within three heartbeats (one whose loop is held serves nobody).
   */
  readonly ready: number;
  /**
   * How many must be ready for `/readyz` to answer 200: `minReady`, or the
   * pool's size when it is smaller.
   */
  readonly minReady: number;
  /** The generation new processes are spawned in (reloads begun). */
  readonly generation: number;
  /** Rolling reloads begun. */
  readonly reloads: number;
  /** Rolling reloads that failed. */
  readonly reloadFailures: number;
  /**
   * All the pool's processes together since it started, those of ids
   * removed by scaling down included: counters that only grow.
   */
  readonly totals: {
    /** CPU time of the workers, user and system, in milliseconds. */
    readonly cpuTime: number;
    /** Requests taken by the workers' `serve()` servers. */
    readonly requests: number;
    /** Worker processes replaced, for any reason. */
    readonly restarts: number;
    /** The same by reason. */
    readonly restartsBy: Readonly<Partial<Record<RestartReason, number>>>;
  };
  /** One entry per worker id, as in `Supervisor.pool`. */
  readonly workers: readonly WorkerInfo[];
}

/** Where the master serves its admin endpoint. */
export interface AdminOptions {
  /** The TCP port; 0 picks a free one (its log line says which). */
  port: number;
  /**
   * The address to bind: keep it on the machine, or behind a firewall;
   * the endpoint has no authentication.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
}

/**
 * A process of a worker id other than its current one: in
 * `WorkerInfo.next` and `WorkerInfo.retiring`.
 */
export interface WorkerProcessInfo {
  /** Its process id. */
  readonly pid: number;
  /** `starting`, `ready`, or `stopping` (draining). */
  readonly state: "starting" | "ready" | "stopping";
  /** The reload it was spawned in. */
  readonly generation: number;
  /** Milliseconds since it was spawned. */
  readonly uptime: number;
}

/** The name of a log level (see `LogLevels` for their numbers). */
export type LevelName =
  | "NOTSET"
  | "DEBUG"
  | "INFO"
  | "WARN"
  | "ERROR"
  | "CRITICAL";

/** A log record with the fields of `@std/log`'s `LogRecord`. */
export interface LogRecord {
  /** The message. */
  readonly msg: string;
  /** The extra arguments passed after the message. */
  readonly args: unknown[];
  /** When the record was made (in the process that logged it). */
  readonly datetime: Date;
  /** The numeric level, see `LogLevels`. */
  readonly level: number;
  /** The level's name: `"INFO"`, `"WARN"`… */
  readonly levelName: string;
  /** The logger's name: `"default"` for workers' own records. */
  readonly loggerName: string;
}

/** A record as the supervisor emits it: who logged it. */
export interface PoolLogRecord extends LogRecord {
  /** The worker id, or null for the master's own records. */
  readonly workerId: number | null;
  /** The pid of the process that logged it. */
  readonly pid: number;
}

/** What a worker logs through (`WorkerBase.logger`). */
export interface Logger {
  /** Logs at DEBUG. */
  debug(msg: string, ...args: unknown[]): void;
  /** Logs at INFO. */
  info(msg: string, ...args: unknown[]): void;
  /** Logs at WARN. */
  warn(msg: string, ...args: unknown[]): void;
  /** Logs at ERROR. */
  error(msg: string, ...args: unknown[]): void;
  /** Logs at CRITICAL. */
  critical(msg: string, ...args: unknown[]): void;
}

/**
 * Where the supervisor sends records, its own and its workers'. To use an
 * `@std/log` handler, wrap it: `{ handle: (r) => handler.handle(new
 * LogRecord({ msg: r.msg, args: r.args, level: r.level, loggerName:
 * r.loggerName })) }` (the README shows it whole).
 */
export interface LogHandler {
  /** Takes one record; it must not throw. */
  handle(record: PoolLogRecord): void;
}

/** Options of `serve`. */
export interface ServeOptions {
  /**
   * The TCP port.
   * @default {8080}
   */
  port?: number;
  /**
   * The address to bind; use `"0.0.0.0"` to accept other hosts.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * Share the port with other processes; the kernel balances connections
   * (on Linux).
   * @default {true}
   */
  reusePort?: boolean;
  /** Aborting it shuts the server down gracefully. */
  signal?: AbortSignal;
  /**
   * Called when the handler throws (or rejects); its response, if it
   * returns one, is sent instead of the default: a plain `500 Internal
   * Server Error` that shows nothing of the error. By default the error is
   * logged through the worker's logger.
   */
  onError?: (
    error: unknown,
    request: Request,
  ) => Response | void | Promise<Response | void>;
  /**
   * Serve HTTPS: the certificate (chain), PEM (`-----BEGIN
   * CERTIFICATE-----`), the contents, not a file name. Give `key` too.
   */
  cert?: string;
  /**
   * The private key of `cert`, PEM (`-----BEGIN PRIVATE KEY-----`), the
   * contents, not a file name.
   */
  key?: string;
}

/** An address of a TCP connection, as `Deno.NetAddr`. */
export interface NetAddr {
  /** Always `"tcp"`. */
  readonly transport: "tcp";
  /** The IP address: `"127.0.0.1"`, `"::1"`. */
  readonly hostname: string;
  /** The port. */
  readonly port: number;
}

/** What a {@linkcode Handler} learns of its request besides the request. */
export interface ServeHandlerInfo {
  /**
   * The client's address (the proxy's, behind a proxy). Read it before the
   * handler returns (or the response of an async handler is ready): once
   * the request is answered, or upgraded to a WebSocket, reading it throws
   * a TypeError, on Deno as on Bun (where it is looked up when read).
   */
  readonly remoteAddr: NetAddr;
}

/** Options of `upgradeWebSocket`. */
export interface UpgradeWebSocketOptions {
  /**
   * The subprotocol to speak, one of those the client offered (its
   * `Sec-WebSocket-Protocol` header). By default none.
   */
  protocol?: string;
}

/** A request being upgraded to a WebSocket, from `upgradeWebSocket`. */
export interface WebSocketUpgrade {
  /**
   * The server's end: a standard `WebSocket`, CONNECTING until the handler
   * has returned `response`, then open.
   */
  readonly socket: WebSocket;
  /** The answer to the request (status 101): the handler returns it as is. */
  readonly response: Response;
}

/** A running server. */
export interface HttpServer {
  /** The bound port. */
  readonly port: number;
  /** The bound address. */
  readonly hostname: string;
  /**
   * Stops accepting connections and resolves once in-flight requests are
   * answered. Idempotent.
   */
  shutdown(): Promise<void>;
}

/**
 * A request handler: the request, and what else is known of it (the
 * client's address).
 */
export type Handler = (
  request: Request,
  info: ServeHandlerInfo,
) => Response | Promise<Response>;
