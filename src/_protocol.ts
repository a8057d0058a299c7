/**
 * The contract between a master and its worker processes, in one place:
 * the environment a worker starts with, the control directory and socket,
 * the frames a worker sends, the sizes they are held to, and the exit codes.
 * Both sides import it; nothing here is written twice.
 *
 * @module
 */

/** Exit codes of worker and master processes. */
export const ExitCode = {
  /** A graceful stop. */
  ok: 0,
  /** Anything else that failed. */
  failure: 1,
  /** A worker's `onStart` callbacks failed (or the pool halted on them). */
  bootError: 3,
  /**
   * A worker lost its channel to a master that still runs, or could not
   * reach it: nothing to hold against its code, so never a boot error.
   */
  channelLost: 4,
} as const;

/** The environment variables of a worker process. */
export const WORKER_ENV = {
  id: "WORKERPOOL_WORKER_ID",
  socket: "WORKERPOOL_CONTROL_SOCKET",
  token: "WORKERPOOL_TOKEN",
  heartbeat: "WORKERPOOL_HEARTBEAT_INTERVAL",
  graceful: "WORKERPOOL_GRACEFUL_TIMEOUT",
  master: "WORKERPOOL_MASTER_PID",
  takeover: "WORKERPOOL_TAKEOVER",
} as const;

/**
 * Signals an operator or a system sends by habit (gunicorn's, systemd's, a
 * hung-up terminal's) that have no meaning here: master and workers listen
 * to them, so that their default action (ending the process without its
 * cleanup, or stopping it) never happens.
 */
export const IGNORED_SIGNALS = [
  "SIGHUP",
  "SIGUSR1",
  "SIGUSR2",
  "SIGTTIN",
  "SIGTTOU",
  "SIGWINCH",
  "SIGALRM",
  "SIGVTALRM",
  "SIGPROF",
  "SIGXFSZ",
  "SIGPWR",
  "SIGIO",
] as const;

/** Set in a daemon's environment: where to report to its launcher. */
export const DAEMON_ENV = "WORKERPOOL_DAEMON_NOTIFY";

/** What a worker process learns from its environment. */
export interface WorkerEnv {
  id: number;
  /** The master's control socket. */
  socket: string;
  /** The secret this process says hello with. */
  token: string;
  /** Milliseconds between heartbeats. */
  heartbeatInterval: number;
  /** How long an orphaned worker may take to shut down. */
  gracefulTimeout: number;
  /** The master's pid: its liveness, not the connection's, says it is gone. */
  masterPid: number;
  /** Whether the pool takes over the ports of another pool. */
  takeover: boolean;
}

/** Heartbeats per `workerTimeout`: one late beat is not a death sentence. */
const BEATS_PER_TIMEOUT = 5;

/** The heartbeat interval for a `workerTimeout`. */
export function heartbeatInterval(workerTimeout: number): number {
  return Math.floor(workerTimeout / BEATS_PER_TIMEOUT);
}

/** The variables a worker is spawned with. */
export function encodeWorkerEnv(env: WorkerEnv): Record<string, string> {
  return {
    [WORKER_ENV.id]: String(env.id),
    [WORKER_ENV.socket]: env.socket,
    [WORKER_ENV.token]: env.token,
    [WORKER_ENV.heartbeat]: String(env.heartbeatInterval),
    [WORKER_ENV.graceful]: String(env.gracefulTimeout),
    [WORKER_ENV.master]: String(env.masterPid),
    [WORKER_ENV.takeover]: env.takeover ? "1" : "0",
  };
}

/**
 * Reads and removes (so the worker's own children do not inherit them) the
 * variables of a worker process; null in a master. Throws a `TypeError`
 * naming the variable when one is missing or malformed.
 */
export function takeWorkerEnv(
  env: { get(name: string): string | undefined; delete(name: string): void },
): WorkerEnv | null {
  if (env.get(WORKER_ENV.id) === undefined) return null;
  const values = Object.fromEntries(
    Object.entries(WORKER_ENV).map(([key, name]) => {
      const value = env.get(name);
      env.delete(name);
      return [key, value];
    }),
  ) as Record<keyof typeof WORKER_ENV, string | undefined>;
  const text = (key: keyof typeof WORKER_ENV) => {
    const value = values[key];
    if (value === undefined || value === "") {
      throw new TypeError(
        `Cannot start worker: ${WORKER_ENV[key]} is not set`,
      );
    }
    return value;
  };
  const integer = (key: keyof typeof WORKER_ENV) => {
    const value = Number(text(key));
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new TypeError(
        `Cannot start worker: ${
          WORKER_ENV[key]
        } must be a non-negative integer, got ${JSON.stringify(values[key])}`,
      );
    }
    return value;
  };
  return {
    id: integer("id"),
    socket: text("socket"),
    token: text("token"),
    heartbeatInterval: integer("heartbeat"),
    gracefulTimeout: integer("graceful"),
    masterPid: integer("master"),
    takeover: values.takeover === "1",
  };
}

/**
 * What an operator's command (`workerpool status|reload|scale -p FILE`)
 * asks a master, as the first and only frame of its connection to the
 * control socket. The socket's directory is private to the master's user:
 * whoever can connect could signal the master anyway.
 */
export type ControlRequest =
  | { t: "ctl"; cmd: "status" }
  | { t: "ctl"; cmd: "reload" }
  /** `size` workers; with `relative`, that many more (or fewer). */
  | { t: "ctl"; cmd: "scale"; size: number; relative?: boolean };

/** The master's one answer to a {@linkcode ControlRequest}. */
export type ControlReply =
  | { ok: true; status: unknown }
  | { ok: false; error: string };

/** Whether a parsed frame is a {@linkcode ControlRequest}. */
export function isControlRequest(value: unknown): value is ControlRequest {
  const v = value as { t?: unknown; cmd?: unknown; size?: unknown } | null;
  if (typeof v !== "object" || v === null || v.t !== "ctl") return false;
  if (v.cmd === "status" || v.cmd === "reload") return true;
  return v.cmd === "scale" && Number.isSafeInteger(v.size);
}

/** Control directories are named `workerpool-<master pid>-<random>`. */
export const CONTROL_DIR_PREFIX = "workerpool-";
/** The control socket's name inside its directory. */
const CONTROL_SOCKET = "control.sock";

/** The prefix of the control directory of the master with `pid`. */
export function controlDirPrefix(pid: number): string {
  return `${CONTROL_DIR_PREFIX}${pid}-`;
}

/** The control socket in control directory `dir`. */
export function controlSocketPath(dir: string): string {
  return `${dir.replace(/\/$/, "")}/${CONTROL_SOCKET}`;
}

/**
 * The control directory holding control socket `socket`, or null when the
 * path is not one a master made (never touch what is not ours).
 */
export function controlDirOf(socket: string): string | null {
  const slash = socket.lastIndexOf("/");
  const dir = socket.slice(0, slash);
  if (socket.slice(slash + 1) !== CONTROL_SOCKET) return null;
  return controlDirOwner(dir.slice(dir.lastIndexOf("/") + 1)) === null
    ? null
    : dir;
}

/** The master pid in a control directory's name, or null if not one. */
export function controlDirOwner(name: string): number | null {
  const match = /^workerpool-(\d+)-[^/]+$/.exec(name);
  return match === null ? null : Number(match[1]);
}

/** The largest frame accepted, newline included. */
export const MAX_FRAME_BYTES = 1 << 20;

/**
 * The largest log record a worker forwards whole, as JSON. Larger records
 * are cut to this size and end with `[… N bytes cut]`.
 */
export const MAX_RECORD_BYTES = 256 * 1024;

/** A log record as it travels: `datetime` is milliseconds since the epoch. */
export interface WireRecord {
  msg: string;
  args: unknown[];
  datetime: number;
  level: number;
  levelName: string;
  loggerName: string;
}

/**
 * What a heartbeat says of its process; every field optional, so that a
 * master reads the beats of any worker version.
 */
export interface Heartbeat {
  /** Resident memory, bytes. */
  rss?: number;
  /** JavaScript heap in use, bytes. */
  heap?: number;
  /** CPU time, user and system, microseconds since the process started. */
  cpu?: number;
  /**
   * Event-loop lag: how late this heartbeat's timer fired, milliseconds
   * (what held the loop since the last beat).
   */
  lag?: number;
  /** Requests its `serve()` servers took so far (absent without one). */
  req?: number;
  /** Requests its `serve()` servers have not answered yet. */
  fly?: number;
}

/** What a worker sends its master, one JSON object per line. */
export type WorkerMessage =
  /** The first frame: who the connection is. */
  | { t: "hello"; id: number; pid: number; token: string }
  /** The worker's event loop runs: with what it uses (see `Heartbeat`). */
  | ({ t: "hb" } & Heartbeat)
  /** The `onStart` callbacks finished. */
  | { t: "ready" }
  | { t: "log"; record: WireRecord }
  /**
   * An `onStart` callback failed; the process exits with `bootError`.
   * `fatal`: trying again cannot help (the port is another pool's).
   */
  | { t: "boot-error"; message: string; stack: string | null; fatal?: boolean }
  /**
   * The worker serves `port`; `holder` is the master of another pool it
   * takes over the port from, or null.
   */
  | { t: "port"; port: number; holder: number | null }
  /** The worker received a signal that did not come from its master. */
  | { t: "stopping"; signal: "SIGTERM" | "SIGINT" }
  /** The worker is about to exit: the connection's end is expected. */
  | { t: "bye"; code: number };
