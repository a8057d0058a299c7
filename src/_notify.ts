/**
 * systemd's `Type=notify` (and `notify-reload`), when `NOTIFY_SOCKET` is
 * set: `READY=1` once every worker is ready (not when the master starts),
 * `STATUS=` with the ready count, `RELOADING=1` with `MONOTONIC_USEC=`
 * during a rolling reload and `READY=1` after it, `STOPPING=1` when a stop
 * begins, and `WATCHDOG=1` every half `WATCHDOG_USEC` while the master
 * supervises (see `Pool.unwell`). Sent from the master's own process, as
 * systemd's default `NotifyAccess=main` requires. Loaded only in a master
 * that has `NOTIFY_SOCKET`.
 *
 * @module
 */
import type { Pool, PoolEvents } from "./_pool.ts";
import { plural } from "./_text.ts";
import { describe } from "./errors.ts";
import type { NotifySocket, Runtime, Timer } from "./runtime/mod.ts";
import type { Logger } from "./types.ts";

/** The variables systemd sets; taken out of the environment workers get. */
const ENV = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] as const;

/** The master's messages to systemd. */
export class SystemdNotifier implements PoolEvents {
  #socket: NotifySocket;
  #runtime: Runtime;
  #log: Logger;
  #pool: Pool;
  #status = "";
  #ready = false;
  #stopping = false;
  #failed = false;
  #watchdog: Timer | undefined;
  #unwell: string | null = null;
  /** Messages systemd's full queue refused, in order, to send again. */
  #backlog: string[] = [];
  #retry: Timer | undefined;

  private constructor(
    socket: NotifySocket,
    runtime: Runtime,
    pool: Pool,
    log: Logger,
  ) {
    this.#socket = socket;
    this.#runtime = runtime;
    this.#pool = pool;
    this.#log = log;
  }

  /**
   * The notifier of a master started by systemd with `NOTIFY_SOCKET`, or
   * null without it. Throws when the socket cannot be opened (on Deno
   * without `--allow-ffi`): systemd would wait for a `READY=1` that never
   * comes, so the master says why at once instead.
   */
  static async open(
    runtime: Runtime,
    pool: Pool,
    log: Logger,
  ): Promise<SystemdNotifier | null> {
    const [path, usec, pid] = ENV.map((name) => runtime.getEnv(name));
    // Workers must not talk to systemd in the master's name.
    for (const name of ENV) runtime.deleteEnv(name);
    if (path === undefined || path === "") return null;
    let socket: NotifySocket;
    try {
      socket = await runtime.openNotifySocket(path);
    } catch (error) {
      throw new Error(
        `NOTIFY_SOCKET is set (${path}), but systemd cannot be notified: ${
          describe(error)
        }`,
        { cause: error },
      );
    }
    const notifier = new SystemdNotifier(socket, runtime, pool, log);
    pool.observe(notifier);
    pool.allReady.then(() => notifier.#readyFirst(), () => {});
    const watchdog = Number(usec);
    const forUs = pid === undefined || Number(pid) === runtime.pid;
    if (!forUs) {
      log.debug(`WATCHDOG_PID ${pid} is not this master's pid: no watchdog`);
    }
    if (usec !== undefined && watchdog > 0 && forUs) {
      notifier.#feed(Math.max(1, Math.floor(watchdog / 2000)));
      log.debug(`feeding systemd's watchdog every ${watchdog / 2000} ms`);
    }
    return notifier;
  }

  changed(): void {
    if (this.#stopping) return; // STATUS=stopping says it all
    // The last worker's ready: READY=1 first, with the status.
    const state = this.#pool.state;
    if (!this.#ready && state !== "idle" && state !== "starting") {
      return this.#readyFirst();
    }
    this.#send(`STATUS=${this.#statusText()}`);
  }

  reloadBegan(): void {
    if (this.#stopping) return;
    // Before the first READY=1, systemd waits for that one: no RELOADING.
    if (!this.#ready) return this.changed();
    const usec = this.#socket.monotonicUsec();
    this.#send(
      `RELOADING=1\nMONOTONIC_USEC=${usec}\nSTATUS=${this.#statusText()}`,
      true,
    );
  }

  reloadEnded(failure: string | null): void {
    if (this.#stopping) return;
    const failed = `reload failed, the old workers serve: ${
      oneLine(failure ?? "")
    }`;
    if (!this.#ready) {
      // READY=1 comes once every worker is ready, not before.
      if (failure !== null) this.#send(`STATUS=starting: ${failed}`, true);
      return;
    }
    const status = failure === null ? this.#statusText() : failed;
    this.#send(`READY=1\nSTATUS=${status}`, true);
  }

  stopping(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#send("STOPPING=1\nSTATUS=stopping", true);
  }

  /** Stops the watchdog and closes the socket. */
  close(): void {
    this.#runtime.clearTimeout(this.#watchdog);
    this.#runtime.clearTimeout(this.#retry);
    this.#watchdog = this.#retry = undefined;
    this.#socket.close();
  }

  #readyFirst(): void {
    if (this.#stopping || this.#ready) return;
    this.#ready = true;
    this.#send(`READY=1\nSTATUS=${this.#statusText()}`, true);
  }

  #feed(interval: number): void {
    const due = this.#runtime.now() + interval;
    this.#watchdog = this.#runtime.setTimeout(() => {
      // Late itself: the master stood still (a pause), and its periodic
      // check, due meanwhile, has not run yet: not held against it.
      const stalled = this.#runtime.now() - due > interval / 2;
      const unwell = this.#pool.unwell(stalled);
      if (unwell === null) this.#send("WATCHDOG=1", true);
      else if (this.#unwell === null) {
        this.#log.error(`not feeding systemd's watchdog: ${unwell}`);
      }
      this.#unwell = unwell;
      if (this.#watchdog !== undefined) this.#feed(interval);
    }, interval);
  }

  #statusText(): string {
    // Not status(): no snapshot of every worker for a line of text.
    const pool = this.#pool;
    const text = `${pool.readyCount()} of ${plural(pool.size, "worker")} ready`;
    if (pool.state === "reloading") return `reloading: ${text}`;
    return this.#ready || this.#stopping ? text : `starting: ${text}`;
  }

  /**
   * Sends `message`; a `STATUS=` alone only when it changed (`always`).
   * When systemd's queue is full (it holds 10 datagrams by default:
   * `net.unix.max_dgram_qlen`), the message waits and goes again, in
   * order: a lost `READY=1` would leave systemd waiting until its timeout.
   * A status or watchdog ping waiting is replaced by a newer one.
   */
  #send(message: string, always = false): void {
    if (!always) {
      if (message === this.#status) return;
      this.#status = message;
    }
    if (this.#backlog.length > 0) return this.#queue(message);
    this.#deliver(message);
  }

  /** Sends `message`; false when it must wait for room in the queue. */
  #deliver(message: string): boolean {
    const failure = this.#socket.send(message);
    if (failure === null) {
      this.#failed = false;
      return true;
    }
    if (failure.startsWith("EAGAIN")) {
      this.#queue(message);
      return false;
    }
    // Said once per spell of failures: systemd may be gone for good.
    if (!this.#failed) {
      this.#log.warn(
        `Cannot notify systemd (${firstLine(message)}): ${failure}`,
      );
    }
    this.#failed = true;
    return true;
  }

  #queue(message: string): void {
    const backlog = this.#backlog;
    const last = backlog.at(-1);
    if (
      last !== undefined && kind(last) !== null && kind(last) === kind(message)
    ) {
      backlog[backlog.length - 1] = message;
    } else backlog.push(message);
    if (backlog.length > BACKLOG_MAX) {
      this.#log.warn(
        `systemd takes no messages (its queue stays full); dropped: ${
          firstLine(backlog.shift()!)
        }`,
      );
    }
    this.#retry ??= this.#runtime.setTimeout(() => {
      this.#retry = undefined;
      const pending = this.#backlog;
      this.#backlog = [];
      while (pending.length > 0) {
        if (!this.#deliver(pending.shift()!)) {
          // It waits again, first: the rest stays behind it.
          this.#backlog.push(...pending);
          return;
        }
      }
    }, RETRY_MS);
  }
}

/** How long a message refused by a full queue waits before it goes again. */
const RETRY_MS = 50;
/** The most messages kept waiting: a stuck systemd must not grow the master. */
const BACKLOG_MAX = 64;

/** What a newer message of the same kind makes moot, or null. */
function kind(message: string): "status" | "watchdog" | null {
  if (message === "WATCHDOG=1") return "watchdog";
  return message.startsWith("STATUS=") ? "status" : null;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").slice(0, 400);
}

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!;
}
