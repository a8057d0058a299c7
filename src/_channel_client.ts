/**
 * The worker's end of the control channel.
 *
 * @module
 */
import type { WorkerMessage } from "./_protocol.ts";
import type { Connection, Runtime } from "./runtime/mod.ts";

const encoder = new TextEncoder();

/**
 * The worker's end of the channel. {@linkcode send} never blocks: frames
 * queue while the socket connects or is busy and go out together, so a
 * worker logging faster than the master reads is held in its own memory,
 * not the master's, and the worker's start does not wait for the connect.
 */
export class ChannelClient {
  #connection: Promise<Connection>;
  #queue: string[] = [];
  #writing: Promise<void> | null = null;
  #broken = false;
  #connected = false;
  /**
   * Settles when the channel ends: resolves on the master's end-of-file,
   * rejects when the connection could not be made or broke.
   */
  readonly closed: Promise<void>;

  /**
   * Connects to the master at `path`; `hello` is the first frame sent.
   * Returns at once: frames sent meanwhile wait for the connection.
   */
  constructor(
    runtime: Runtime,
    path: string,
    hello: Extract<WorkerMessage, { t: "hello" }>,
  ) {
    this.#connection = runtime.connectUnix(path);
    this.#connection.then(() => this.#connected = true, () => {});
    this.closed = this.#connection.then(readToEnd);
    this.closed.catch(() => this.#broken = true);
    this.send(hello);
  }

  /** Whether frames reach the master: connected, and not broken since. */
  get connected(): boolean {
    return this.#connected && !this.#broken;
  }

  /** Queues a message; it is written as soon as the socket takes it. */
  send(message: WorkerMessage): void {
    if (this.#broken) return;
    this.#queue.push(JSON.stringify(message) + "\n");
    this.#writing ??= this.#drain();
  }

  /** Resolves once every queued frame was written (or the socket broke). */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  /** Closes the connection (once it exists). */
  close(): void {
    this.#connection.then((c) => c.close(), () => {});
  }

  async #drain(): Promise<void> {
    try {
      const connection = await this.#connection;
      while (this.#queue.length > 0) {
        // One encode for the whole batch, not one per frame.
        const frames = this.#queue.splice(0);
        await connection.write(encoder.encode(frames.join("")));
      }
    } catch {
      // The channel is gone: `closed` reports why, queued frames are moot.
      this.#broken = true;
      this.#queue = [];
    } finally {
      this.#writing = null;
    }
  }
}

async function readToEnd(connection: Connection): Promise<void> {
  const reader = connection.readable.getReader();
  while (!(await reader.read()).done) {
    // The master sends nothing yet; reading only detects end-of-file.
  }
}
