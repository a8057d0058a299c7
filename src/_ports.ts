/**
 * The ports a pool's workers share. One pool per port: with `reusePort`, a
 * second pool started by mistake on a port would silently take half its
 * connections; so the pools agree on a lock file per port,
 * `/tmp/workerpool-port-<port>.lock`, naming the master whose workers serve
 * it and its control socket. A worker's `serve()` refuses a port another
 * live pool holds, unless its pool takes over: then its master takes the
 * lock (and the pidfile), and tells the other master to drain and exit,
 * once all of its own workers are ready. And the accept queue: see
 * `PortLocks.handedOver`.
 *
 * @module
 */
import { Pidfile, readPid } from "./_pidfile.ts";
import { CONTROL_DIR_PREFIX, controlSocketPath } from "./_protocol.ts";
import { describe } from "./errors.ts";
import type { Runtime } from "./runtime/mod.ts";
import type { Logger } from "./types.ts";

/** Whether Linux moves a closing listener's queued connections (0 or 1). */
const MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req";

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
interface Holder {
  pid: number;
  socket: string;
}

/** The master a lock names; null when missing, "garbage" when unreadable. */
function readLock(runtime: Runtime, path: string): Holder | null | "garbage" {
  const text = runtime.readTextFile(path);
  if (text === null) return null;
  const match = /^(\d+) (\S+)\n?$/.exec(text);
  return match === null
    ? "garbage"
    : { pid: Number(match[1]), socket: match[2]! };
}

/** Whether a process answers on control socket `socket`. */
async function answers(runtime: Runtime, socket: string): Promise<boolean> {
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
  if (!runtime.isAlive(pid)) return false;
  if (socket !== undefined) return await answers(runtime, socket);
  const base = runtime.tempDir().replace(/\/$/, "");
  for (const name of runtime.readDir(base, `${CONTROL_DIR_PREFIX}${pid}-`)) {
    if (await answers(runtime, controlSocketPath(`${base}/${name}`))) {
      return true;
    }
  }
  return false;
}

/** A port another pool serves: the error names its master. */
export class PortHeldError extends Error {
  constructor(port: number, holder: number) {
    super(
      `port ${port} is served by the workerpool of master pid ${holder}; start with takeover: true to replace that pool, or use another port`,
    );
    this.name = "PortHeldError";
  }
}

/**
 * Before a worker listens on `port`: throws a {@linkcode PortHeldError}
 * when another live pool holds it and this pool does not take over.
 * Returns the holder this pool takes over, or null. Outside a pool, or for
 * port 0, nothing is checked.
 */
export async function checkPort(
  runtime: Runtime,
  port: number,
): Promise<number | null> {
  if (pool === null || port === 0) return null;
  const holder = readLock(runtime, portLockPath(port));
  if (holder === null || holder === "garbage") return null;
  if (holder.pid === pool.masterPid) return null;
  if (!(await isLiveMaster(runtime, holder.pid, holder.socket))) return null;
  if (!pool.takeover) throw new PortHeldError(port, holder.pid);
  return holder.pid;
}

/**
 * Once a worker listens on `port` (0: nothing to do): takes the lock for
 * its master, unless it takes over `holder` (its master takes the lock once
 * the pool is ready), and tells the master. A stale or unreadable lock is
 * replaced. Throws a {@linkcode PortHeldError} when another pool took the
 * lock meanwhile.
 */
export async function claimPort(
  runtime: Runtime,
  port: number,
  holder: number | null,
): Promise<void> {
  if (pool === null || port === 0) return;
  const path = portLockPath(port);
  for (let attempt = 0; holder === null; attempt++) {
    if (attempt === 3) {
      throw new Error(
        `Cannot take the lock of port ${port} (${path}): it keeps reappearing`,
      );
    }
    if (writeExclusive(runtime, path, pool)) break;
    const current = readLock(runtime, path);
    if (current === null) continue; // removed meanwhile
    if (current !== "garbage") {
      if (current.pid === pool.masterPid) break;
      if (await isLiveMaster(runtime, current.pid, current.socket)) {
        if (!pool.takeover) throw new PortHeldError(port, current.pid);
        holder = current.pid;
        break;
      }
    }
    runtime.remove(path); // stale, or not a lock: replaced
  }
  pool.report(port, holder);
}

/** Creates the lock naming `master`; false when one exists. */
function writeExclusive(
  runtime: Runtime,
  path: string,
  master: { masterPid: number; socket: string },
): boolean {
  const temporary = `${path}.${runtime.pid}.tmp`;
  runtime.writeTextFile(temporary, `${master.masterPid} ${master.socket}\n`);
  try {
    return runtime.link(temporary, path);
  } finally {
    runtime.remove(temporary);
  }
}

/**
 * The master's side: the ports its workers serve, the files it takes over
 * (port locks, its pidfile) with the masters they name, who are told to
 * drain and exit once this pool is ready, and the locks it releases when
 * it exits.
 */
export class PortLocks {
  #runtime: Runtime;
  #log: Logger;
  #socket: string;
  /** Port → the master it is taken over from, null once ours. */
  #ports = new Map<number, number | null>();
  /** A pidfile to take over from the master it names. */
  #pidfile: { path: string; holder: number; taken: Pidfile | null } | null =
    null;
  #readying: Promise<string | null> = Promise.resolve(null);
  #migrateChecked = false;

  /** `socket`: this master's control socket, written in its locks. */
  constructor(runtime: Runtime, log: Logger, socket: string) {
    this.#runtime = runtime;
    this.#log = log;
    this.#socket = socket;
  }

  /** A worker serves `port`, taking it over from `holder` (or not). */
  served(port: number, holder: number | null): void {
    if (!this.#ports.has(port) || holder !== null) {
      this.#ports.set(port, holder);
    }
  }

  /** The pidfile at `path`, which names master `holder`, is taken over. */
  takeOverPidfile(path: string, holder: number): void {
    this.#pidfile = { path, holder, taken: null };
  }

  /**
   * Every worker is ready: takes the locks and the pidfile from the masters
   * they name, and tells those to drain and exit. Resolves with why this
   * pool must stop instead (another pool took over meanwhile), or null.
   */
  ready(): Promise<string | null> {
    this.#readying = this.#readying.then((conflict) =>
      conflict ?? this.#takeOver()
    );
    return this.#readying;
  }

  /** Whether it holds a port, or takes one over. */
  get serving(): boolean {
    return this.#ports.size > 0;
  }

  async #takeOver(): Promise<string | null> {
    const runtime = this.#runtime;
    const me = { masterPid: runtime.pid, socket: this.#socket };
    const retire = new Set<number>();
    for (const [port, holder] of this.#ports) {
      if (holder === null) continue;
      const path = portLockPath(port);
      const current = readLock(runtime, path);
      // Someone else took it over since this pool's workers listened.
      if (
        current !== null && current !== "garbage" &&
        current.pid !== holder && current.pid !== runtime.pid &&
        await isLiveMaster(runtime, current.pid, current.socket)
      ) return this.#lost(`port ${port}`, current.pid);
      this.#ports.set(port, null);
      try {
        runtime.remove(path);
        if (!writeExclusive(runtime, path, me)) {
          return this.#lost(`port ${port}`, readPid(runtime, path) ?? 0);
        }
      } catch (error) {
        this.#log.error(
          `Cannot take the lock of port ${port}: ${describe(error)}`,
        );
      }
      retire.add(holder);
    }
    const pidfile = this.#pidfile;
    if (pidfile !== null && pidfile.taken === null) {
      const current = readPid(runtime, pidfile.path);
      if (
        current !== null && current !== pidfile.holder &&
        current !== runtime.pid && await isLiveMaster(runtime, current)
      ) return this.#lost(`pidfile ${pidfile.path}`, current);
      pidfile.taken = Pidfile.replace(runtime, pidfile.path, runtime.pid);
      retire.add(pidfile.holder);
    }
    for (const pid of retire) await this.#retire(pid);
    if (retire.size > 0) this.handedOver();
    return null;
  }

  #lost(what: string, master: number): string {
    return `another pool (master pid ${master}) took over ${what} while this one started; this pool stops, that one serves`;
  }

  /** Tells master `pid`, if it is still one, to drain and exit. */
  async #retire(pid: number): Promise<void> {
    if (!(await isLiveMaster(this.#runtime, pid))) {
      this.#log.warn(`master pid ${pid} is gone: nothing to take over from`);
      return;
    }
    this.#runtime.kill(pid, "SIGTERM");
    this.#log.info(
      `took over from the pool of master pid ${pid}: it drains and exits`,
    );
  }

  /**
   * A worker was replaced and drains. Said once per pool, at the first
   * hand-over (or takeover) while its workers serve a port: without
   * `net.ipv4.tcp_migrate_req`, Linux resets the connections still waiting
   * in the accept queue of a listener that closes.
   */
  handedOver(): void {
    if (this.#migrateChecked || !this.serving) return;
    this.#migrateChecked = true;
    const value = this.#runtime.readTextFile(MIGRATE_SYSCTL)?.trim();
    if (value === "0") {
      this.#log.warn(
        `net.ipv4.tcp_migrate_req is 0: connections waiting to be accepted by a worker that stops are reset. To move them to the other workers: sysctl -w net.ipv4.tcp_migrate_req=1`,
      );
    }
  }

  /** Removes the lock files, and a pidfile taken over, still naming it. */
  release(): void {
    const runtime = this.#runtime;
    for (const port of this.#ports.keys()) {
      const path = portLockPath(port);
      const current = readLock(runtime, path);
      if (
        current !== null && current !== "garbage" && current.pid === runtime.pid
      ) {
        runtime.remove(path);
      }
    }
    this.#pidfile?.taken?.release();
  }
}
