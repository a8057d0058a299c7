/**
 * The master's end of the control channel: a Unix socket in a private
 * directory, which accepts connections, authenticates them by the token of
 * a spawned child, decodes their frames and hands them on. Whatever a peer
 * does (garbage, a flood of idle connections, a frame too large), it costs
 * that peer its connection, never the master.
 *
 * @module
 */
import type { ChildHandle } from "./_child.ts";
import {
  encodeFrame,
  FrameError,
  readFrames,
  toWorkerMessage,
} from "./_frames.ts";
import { answers } from "./_port_lock.ts";
import {
  CONTROL_DIR_PREFIX,
  controlDirOwner,
  controlDirPrefix,
  type ControlReply,
  type ControlRequest,
  controlSocketPath,
  isControlRequest,
  type WorkerMessage,
} from "./_protocol.ts";
import { describe } from "./errors.ts";
import type { Logger } from "./types.ts";
import type { Connection, Runtime, UnixListener } from "./runtime/mod.ts";

/**
 * Connections held open before their hello, at most; fewer under a low
 * open-file limit (a quarter of what is left of it beyond a reserve).
 */
const MAX_UNAUTHENTICATED = 32;
/** File descriptors a master keeps for itself: pipes, files, spawns. */
const RESERVED_FILES = 32;
/**
 * A connection this young is not closed to make room: a worker says hello
 * at once, and under a flood its hello may wait behind many accepts.
 */
const YOUNG_MS = 250;
/**
 * How long a new connection may take to say hello (it does so at once),
 * plus {@linkcode HELLO_TIMEOUT_PER_PENDING} for each worker spawned and
 * not connected yet: hundreds of processes starting at once on a few cores
 * starve the master as much as the workers.
 */
const HELLO_TIMEOUT = 2000;
const HELLO_TIMEOUT_PER_PENDING = 50;

/** What the server reports to the pool. */
export interface ControlEvents {
  /** A frame from an authenticated child. */
  message(child: ChildHandle, message: WorkerMessage): void;
  /** A child's connection ended without its goodbye, or broke the protocol. */
  lost(child: ChildHandle, cause: string): void;
  /** An operator's command; the connection gets the answer, then closes. */
  command(request: ControlRequest): Promise<ControlReply>;
}

/** The control socket of one pool. */
export class ControlServer {
  /** The private directory holding the socket. */
  readonly dir: string;
  /** The socket's path, given to every worker. */
  readonly socketPath: string;
  #runtime: Runtime;
  #log: Logger;
  #events: ControlEvents;
  #listener: UnixListener;
  #tokens = new Map<string, ChildHandle>();
  /** Connections without a hello yet, oldest first, with their arrival. */
  #unauthenticated = new Map<Connection, number>();
  #cap: number;
  #evicted = 0;

  /** Makes the private directory and listens in it. */
  static async open(
    runtime: Runtime,
    log: Logger,
    events: ControlEvents,
  ): Promise<ControlServer> {
    const limit = await runtime.fileLimit();
    const cap = limit === null ? MAX_UNAUTHENTICATED : Math.max(
      2,
      Math.min(MAX_UNAUTHENTICATED, Math.floor((limit - RESERVED_FILES) / 4)),
    );
    const dir = await runtime.makeTempDir(controlDirPrefix(runtime.pid));
    try {
      return new ControlServer(runtime, log, events, dir, cap);
    } catch (error) {
      runtime.remove(dir);
      throw new Error(
        `Cannot listen on the control socket ${controlSocketPath(dir)}: ${
          describe(error)
        } (a shorter TMPDIR helps when the path is too long)`,
        { cause: error },
      );
    }
  }

  private constructor(
    runtime: Runtime,
    log: Logger,
    events: ControlEvents,
    dir: string,
    cap: number,
  ) {
    this.#cap = cap;
    this.#runtime = runtime;
    this.#log = log;
    this.#events = events;
    this.dir = dir;
    this.socketPath = controlSocketPath(dir);
    // The directory was created just now, private to this process: no
    // stale socket file can be in it, nothing to unlink before listening.
    this.#listener = runtime.listenUnix(
      this.socketPath,
      (connection) => this.#accept(connection),
      // The message only: formatting a stack needs file descriptors (Deno
      // panics when it has none left).
      (error) =>
        log.warn(`Cannot accept a control connection: ${String(error)}`),
    );
  }

  /** Lets `child` connect with its token. */
  admit(child: ChildHandle): void {
    this.#tokens.set(child.token, child);
  }

  /** Its token no longer opens a connection. */
  forget(child: ChildHandle): void {
    this.#tokens.delete(child.token);
  }

  /** Stops listening and removes the directory. */
  close(): void {
    this.#listener.close();
    this.#runtime.remove(this.dir);
  }

  /** Workers spawned that have not said hello yet. */
  #pending(): number {
    let pending = 0;
    for (const child of this.#tokens.values()) {
      if (!child.connected && child.state === "starting") pending++;
    }
    return pending;
  }

  #accept(connection: Connection): void {
    // Over the cap, the oldest silent connection goes: a flood evicts
    // itself, while a worker, which says hello at once, still gets in. If
    // all of them are young, the new one goes instead. Workers spawned and
    // not connected yet have room of their own: each holds a connection
    // once it is in anyway.
    const now = this.#runtime.now();
    const pending = this.#pending();
    if (this.#unauthenticated.size >= this.#cap + pending) {
      if (this.#evicted++ === 0) {
        this.#log.warn(
          `too many control connections without a hello (${this.#cap}); closing the oldest`,
        );
      }
      const [oldest, since] = this.#unauthenticated.entries().next().value!;
      if (now - since < YOUNG_MS) return connection.close();
      this.#unauthenticated.delete(oldest);
      oldest.close();
    }
    this.#unauthenticated.set(connection, now);
    let child: ChildHandle | null = null;
    const settled = () => {
      this.#unauthenticated.delete(connection);
      if (this.#unauthenticated.size === 0 && this.#evicted > 0) {
        this.#log.warn(
          `closed ${this.#evicted} control connections that said no hello`,
        );
        this.#evicted = 0;
      }
    };
    const hello = this.#runtime.setTimeout(() => {
      if (!this.#unauthenticated.has(connection)) return;
      this.#log.warn("dropped a control connection: no hello in time");
      connection.close();
    }, HELLO_TIMEOUT + HELLO_TIMEOUT_PER_PENDING * pending);
    let command = false;
    readFrames(connection, (frame) => {
      if (command) return; // one command per connection
      if (child === null && isControlRequest(frame)) {
        command = true;
        this.#runtime.clearTimeout(hello);
        settled();
        void this.#answer(frame, connection);
        return;
      }
      const message = toWorkerMessage(frame);
      if (child === null) {
        child = this.#authenticate(message, connection);
        this.#runtime.clearTimeout(hello);
        settled();
      }
      this.#events.message(child, message);
    }).then(
      () => {
        if (child !== null && !child.leaving) {
          this.#events.lost(child, "closed its control connection");
        }
      },
      (error) => {
        if (child === null) {
          this.#log.warn(
            `dropped the control connection of an unauthenticated peer: ${
              describe(error)
            }`,
          );
        } else {
          this.#events.lost(
            child,
            `broke the control protocol: ${describe(error)}`,
          );
        }
      },
    ).finally(() => {
      settled();
      this.#runtime.clearTimeout(hello);
      connection.close();
    });
  }

  /** Runs an operator's command and writes the answer. */
  async #answer(request: ControlRequest, connection: Connection) {
    let reply: ControlReply;
    try {
      reply = await this.#events.command(request);
    } catch (error) {
      reply = { ok: false, error: describe(error) };
    }
    try {
      await connection.write(encodeFrame(reply));
    } catch {
      // The operator gave up waiting: nothing to tell.
    }
    connection.close();
  }

  #authenticate(message: WorkerMessage, connection: Connection): ChildHandle {
    if (message.t !== "hello") {
      throw new FrameError("Cannot accept connection: it did not say hello");
    }
    const child = this.#tokens.get(message.token);
    if (
      child === undefined || child.id !== message.id ||
      !child.attach(connection)
    ) {
      throw new FrameError(
        `Cannot accept connection: wrong token for worker ${message.id}`,
      );
    }
    return child;
  }
}

/**
 * Removes the control directories of masters that are gone (killed with
 * their workers, by a cgroup OOM kill say, nobody was left to clean up). A
 * directory is stale when its owner's pid is not alive and nothing answers
 * on its socket (a master in another pid namespace still answers).
 */
export async function removeStaleControlDirs(
  runtime: Runtime,
  log: Logger,
  own: string,
): Promise<void> {
  const base = runtime.tempDir();
  for (const name of runtime.readDir(base, CONTROL_DIR_PREFIX)) {
    const owner = controlDirOwner(name);
    const dir = `${base}/${name}`;
    if (owner === null || dir === own) continue;
    // A live owner is taken at its word, unless its pid is this master's or
    // 1: in a container that restarted with the same /tmp, a dead master
    // had the very pid this one has (often 1, as PID 1).
    const reused = owner === runtime.pid || owner === 1;
    if (!reused && runtime.exists(owner)) continue;
    if (await answers(runtime, controlSocketPath(dir))) continue; // not stale
    try {
      runtime.remove(dir);
      log.info(`removed ${dir}, left behind by master pid ${owner}`);
    } catch (error) {
      log.debug(`Cannot remove stale ${dir}: ${describe(error)}`);
    }
  }
}
