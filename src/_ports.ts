/**
 * The ports a pool's workers share. One pool per port: with `reusePort`, a second pool started by mistake on
 * a port would silently take half its connections; so the pools agree on a
 * lock file per port, `$TMPDIR/workerpool-port-<port>.lock`, holding the
 * pid of the master whose workers serve it. A worker's `serve()` refuses a
 * port another live pool holds, unless its pool takes over: then its master
 * takes the lock, and tells the other master to drain and exit, once all of
 * its own workers are ready.
 *
 * @module
 */
import { Pidfile, PidfileError, readPid } from "./_pidfile.ts";
import { controlDirPrefix } from "./_protocol.ts";
import { describe } from "./errors.ts";
import type { Runtime } from "./runtime/mod.ts";
import type { Logger } from "./types.ts";

/** Whether Linux moves a closing listener's queued connections (0 or 1). */
const MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req";

/** The pool a worker process serves for: set by the worker's main. */
export interface PoolOfWorker {
  masterPid: number;
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
export function portLockPath(runtime: Runtime, port: number): string {
  return `${runtime.tempDir().replace(/\/$/, "")}/workerpool-port-${port}.lock`;
}

/**
 * Whether `pid` is a live workerpool master: alive, with its control
 * directory (a pid reused by another program has none).
 */
export function isLiveMaster(runtime: Runtime, pid: number): boolean {
  if (!runtime.isAlive(pid)) return false;
  try {
    return runtime.readDir(runtime.tempDir(), controlDirPrefix(pid)).length > 0;
  } catch {
    return true; // cannot tell: not stale
  }
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
export function checkPort(runtime: Runtime, port: number): number | null {
  if (pool === null || port === 0) return null;
  const holder = readPid(runtime, portLockPath(runtime, port));
  if (holder === null || holder === pool.masterPid) return null;
  if (!isLiveMaster(runtime, holder)) return null;
  if (!pool.takeover) throw new PortHeldError(port, holder);
  return holder;
}

/**
 * Once a worker listens on `port`: takes the lock for its master (unless
 * it takes over `holder`, which its master does once the pool is ready),
 * and tells the master. Throws a {@linkcode PortHeldError} when another
 * pool took the lock meanwhile.
 */
export function claimPort(
  runtime: Runtime,
  port: number,
  holder: number | null,
): void {
  if (pool === null || port === 0) return;
  if (holder === null) {
    try {
      Pidfile.acquire(
        runtime,
        portLockPath(runtime, port),
        pool.masterPid,
        (pid) => isLiveMaster(runtime, pid),
      );
    } catch (error) {
      if (error instanceof PidfileError && error.holder !== null) {
        if (!pool.takeover) throw new PortHeldError(port, error.holder);
        holder = error.holder;
      } else throw error;
    }
  }
  pool.report(port, holder);
}

/**
 * The master's side: the ports its workers serve, the pools it takes over
 * (their ports' holders, and the holder of its pidfile), told to drain and
 * exit once this pool is ready, and the locks it releases when it exits.
 */
export class PortLocks {
  #runtime: Runtime;
  #log: Logger;
  /** Port → the master it is taken over from, null once ours. */
  #ports = new Map<number, number | null>();
  #toRetire = new Set<number>();
  #retired = new Set<number>();
  #ready = false;
  #migrateChecked = false;

  constructor(runtime: Runtime, log: Logger) {
    this.#runtime = runtime;
    this.#log = log;
  }

  /** A worker serves `port`, taking it over from `holder` (or not). */
  served(port: number, holder: number | null): void {
    if (!this.#ports.has(port) || holder !== null) {
      this.#ports.set(port, holder);
    }
    if (holder !== null) this.retire(holder);
  }

  /** Master `pid` is to drain and exit once this pool is ready. */
  retire(pid: number): void {
    this.#toRetire.add(pid);
    if (this.#ready) this.ready();
  }

  /** Every worker is ready: take the ports, retire the other masters. */
  ready(): void {
    this.#ready = true;
    const runtime = this.#runtime;
    for (const [port, holder] of this.#ports) {
      if (holder === null) continue;
      this.#ports.set(port, null);
      try {
        Pidfile.replace(runtime, portLockPath(runtime, port), runtime.pid);
      } catch (error) {
        this.#log.error(
          `Cannot take the lock of port ${port}: ${describe(error)}`,
        );
      }
    }
    for (const pid of this.#toRetire) {
      if (this.#retired.has(pid)) continue;
      this.#retired.add(pid);
      if (runtime.kill(pid, "SIGTERM")) {
        this.#log.info(
          `took over from the pool of master pid ${pid}: it drains and exits`,
        );
      } else {
        this.#log.warn(`Cannot tell master pid ${pid} to exit: it is gone`);
      }
    }
  }

  /**
   * A worker was replaced and drains. Said once per pool, at the first
   * hand-over while its workers serve a port: without
   * `net.ipv4.tcp_migrate_req`, Linux resets the connections still waiting
   * in the accept queue of a listener that closes.
   */
  handedOver(): void {
    if (this.#migrateChecked || this.#ports.size === 0) return;
    this.#migrateChecked = true;
    const value = this.#runtime.readTextFile(MIGRATE_SYSCTL)?.trim();
    if (value === "0") {
      this.#log.warn(
        `net.ipv4.tcp_migrate_req is 0: connections waiting to be accepted by a worker that stops are reset. To move them to the other workers: sysctl -w net.ipv4.tcp_migrate_req=1`,
      );
    }
  }

  /** Removes the lock files that still name this master. */
  release(): void {
    for (const port of this.#ports.keys()) {
      const path = portLockPath(this.#runtime, port);
      if (readPid(this.#runtime, path) === this.#runtime.pid) {
        this.#runtime.remove(path);
      }
    }
  }
}
