/**
 * The ports a pool's workers share, the master's side: it takes the lock of
 * each port its workers serve (`_port_lock.ts` says what the lock is), takes
 * over the locks and the pidfile of a pool it replaces once it is ready,
 * and releases them when it exits. And the accept queue: see
 * `PortLocks.handedOver`.
 *
 * @module
 */
import { linkNew, linkOver, Pidfile, readPid } from "./_pidfile.ts";
import {
  isLiveMaster,
  PortHeldError,
  portLockPath,
  readLock,
} from "./_port_lock.ts";
import { describe } from "./errors.ts";
import type { Runtime } from "./runtime/mod.ts";
import type { Logger } from "./types.ts";

/** Whether Linux moves a closing listener's queued connections (0 or 1). */
const MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req";

/** The content of a lock naming `master`. */
function lockText(master: { masterPid: number; socket: string }): string {
  return `${master.masterPid} ${master.socket}\n`;
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
  #takeover: boolean;
  #ready = false;
  /** Ports whose lock names this master. */
  #claimed = new Set<number>();
  /** Port → the master it is taken over from, null once ours. */
  #ports = new Map<number, number | null>();
  /** A pidfile to take over from the master it names. */
  #pidfile: { path: string; holder: number; taken: Pidfile | null } | null =
    null;
  #readying: Promise<string | null> = Promise.resolve(null);
  #migrateChecked = false;

  /**
   * `socket`: this master's control socket, written in its locks;
   * `takeover`: whether the pool takes over from others.
   */
  constructor(
    runtime: Runtime,
    log: Logger,
    options: { socket: string; takeover: boolean },
  ) {
    this.#runtime = runtime;
    this.#log = log;
    this.#socket = options.socket;
    this.#takeover = options.takeover;
  }

  /**
   * A worker serves `port`, taking it over from `holder` (or not). The
   * first time, the lock is taken for this master, replacing a stale or
   * unreadable one. Resolves with why this pool must stop instead (another
   * pool took the port meanwhile, and this one does not take over), or
   * null.
   */
  served(port: number, holder: number | null): Promise<string | null> {
    const known = this.#ports.has(port);
    if (!known || holder !== null) this.#ports.set(port, holder);
    // Claimed once the pool is ready: writing files is no start-up work.
    if (known || holder !== null || !this.#ready) return Promise.resolve(null);
    return this.#then(() => this.#claim(port));
  }

  #claimedNow(port: number): null {
    this.#claimed.add(port);
    return null;
  }

  async #claim(port: number): Promise<string | null> {
    const runtime = this.#runtime;
    const path = portLockPath(port);
    const me = { masterPid: runtime.pid, socket: this.#socket };
    for (let attempt = 0; attempt < 3; attempt++) {
      if (linkNew(runtime, path, lockText(me))) return this.#claimedNow(port);
      const current = readLock(runtime, path);
      if (current === null) continue; // removed meanwhile
      if (current !== "garbage") {
        if (current.pid === runtime.pid) return this.#claimedNow(port);
        if (await isLiveMaster(runtime, current.pid, current.socket)) {
          if (this.#takeover) {
            this.#ports.set(port, current.pid);
            return null;
          }
          return new PortHeldError(port, current.pid).message;
        }
      }
      runtime.remove(path); // stale, or not a lock: replaced
    }
    return `Cannot take the lock of port ${port} (${path}): it keeps reappearing`;
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
    this.#ready = true;
    return this.#then(async () => {
      for (const [port, holder] of this.#ports) {
        if (holder !== null || this.#claimed.has(port)) continue;
        const conflict = await this.#claim(port);
        if (conflict !== null) return conflict;
      }
      return await this.#takeOver();
    });
  }

  /**
   * Runs `step` after the steps before it, unless one found a conflict. A
   * step that fails (a read-only /tmp) costs the lock, not the pool: it
   * serves on, and says that other pools cannot see it.
   */
  #then(step: () => Promise<string | null>): Promise<string | null> {
    this.#readying = this.#readying.then((conflict) =>
      conflict ?? step().catch((error) => {
        this.#log.error(
          `Cannot take the port lock in /tmp: ${
            describe(error)
          }; the pool serves on, but another pool started on its port would not see it`,
        );
        return null;
      })
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
        if (!linkOver(runtime, path, lockText(me))) {
          const now = readLock(runtime, path);
          return this.#lost(
            `port ${port}`,
            now === "garbage" ? 0 : now?.pid ?? 0,
          );
        }
        this.#claimed.add(port);
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
