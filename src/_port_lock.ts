/**
 * One pool per port, the worker's side: with `reusePort`, a second pool
 * started by mistake on a port would silently take half its connections;
 * so the pools agree on a lock file per port,
 * `/tmp/workerpool-port-<port>.lock`, naming the master whose workers serve
 * it and its control socket. A worker's `serve()` reads it, without
 * blocking, and refuses a port another live pool holds unless its pool
 * takes over; its master writes it (`PortLocks`, `_ports.ts`). Workers load
 * this file, not that one.
 *
 * @module
 */
import { controlDirPrefix, controlSocketPath } from "./_protocol.ts";
import type { Connection, Runtime } from "./runtime/mod.ts";

/**
 * Where the locks are: /tmp, not `$TMPDIR`, so that pools started with
 * different temporary folders still see each other.
 */
const LOCK_DIR = "/tmp";

/** The pool a worker process serves for: set by the worker's main. */
export interface PoolOfWorker {
  masterPid: number;
  /** The master's control socket: written in the locks it holds. */
  socket: string;
  takeover: boolean;
  /** Tells the master the worker serves `port`; `holder` is taken over. */
  report(port: number, holder: number | null): void;
}

let pool: PoolOfWorker | null = null;

/** Sets the pool this process is a worker of. */
export function setPoolOfWorker(value: PoolOfWorker): void {
  pool = value;
}

/** The lock file of `port`. */
export function portLockPath(port: number): string {
  return `${LOCK_DIR}/workerpool-port-${port}.lock`;
}

/** A master, as a lock names it. */
export interface Holder {
  pid: number;
  socket: string;
}

/** The master a lock names; null when missing, "garbage" when unreadable. */
export function readLock(
  runtime: Runtime,
  path: string,
): Holder | null | "garbage" {
  return parseLock(runtime.readTextFile(path));
}

function parseLock(text: string | null): Holder | null | "garbage" {
  if (text === null) return null;
  const match = /^(\d+) (\S+)\n?$/.exec(text);
  return match === null
    ? "garbage"
    : { pid: Number(match[1]), socket: match[2]! };
}

/** Whether a process answers on control socket `socket`. */
export async function answers(
  runtime: Runtime,
  socket: string,
): Promise<boolean> {
  try {
    (await runtime.connectUnix(socket)).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether master `pid` lives: its process runs and one of its control
 * sockets (in this process's temporary folder, or `socket`) answers. A pid
 * reused by another program, beside a directory left by a master killed
 * with its workers, does not count.
 */
export async function isLiveMaster(
  runtime: Runtime,
  pid: number,
  socket?: string,
): Promise<boolean> {
  // exists(): kill -0, no /proc read (node:fs on Bun); a zombie's socket
  // does not answer.
  if (!runtime.exists(pid)) return false;
  if (socket !== undefined) return await answers(runtime, socket);
  const connection = await connectMaster(runtime, pid);
  connection?.close();
  return connection !== null;
}

/**
 * A connection to a control socket of master `pid` in this process's
 * temporary folder, or null when none answers (the directories of an
 * earlier process with this pid do not).
 */
export async function connectMaster(
  runtime: Runtime,
  pid: number,
): Promise<Connection | null> {
  const base = runtime.tempDir().replace(/\/$/, "");
  for (const name of runtime.readDir(base, controlDirPrefix(pid))) {
    try {
      return await runtime.connectUnix(controlSocketPath(`${base}/${name}`));
    } catch {
      // stale: its master is gone
    }
  }
  return null;
}

/** A port another pool serves: the error names its master. */
export class PortHeldError extends Error {
  constructor(port: number, holder: number) {
    super(
      `port ${port} is served by the workerpool of master pid ${holder}; start with takeover: true (workerpool serve --takeover) to replace that pool, or use another port`,
    );
    this.name = "PortHeldError";
  }
}

/**
 * Before a worker listens on `port`: throws a {@linkcode PortHeldError}
 * when another live pool holds it and this pool does not take over.
 * Returns the holder this pool takes over, or null. Outside a pool, or for
 * port 0, nothing is checked. The worker only reads the lock, without
 * blocking; its master writes it (`PortLocks.served`).
 */
export async function checkPort(
  runtime: Runtime,
  port: number,
): Promise<number | null> {
  if (pool === null || port === 0) return null;
  const holder = parseLock(await runtime.readText(portLockPath(port)));
  if (holder === null || holder === "garbage") return null;
  if (holder.pid === pool.masterPid) return null;
  if (!(await isLiveMaster(runtime, holder.pid, holder.socket))) return null;
  if (!pool.takeover) throw new PortHeldError(port, holder.pid);
  return holder.pid;
}

/** Once a worker listens on `port`: tells its master (see `checkPort`). */
export function claimPort(port: number, holder: number | null): void {
  if (pool === null || port === 0) return;
  pool.report(port, holder);
}
