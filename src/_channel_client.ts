/**
 * The worker's end of the control channel.
 *
 * @module
 */
import type { WireRecord, WorkerMessage } from "./_protocol.ts";
import { LogLevels } from "./logging.ts";
import type { Connection, Runtime } from "./runtime/mod.ts";

const encoder = new TextEncoder();

/**
 * Characters of log frames that may wait for the master; past this, log
 * records are dropped (and counted) rather than held without bound. Large
 * enough for a worker logging 100 000 records in one synchronous loop (about
 * 13 MiB, nothing drains until the loop yields); a bound for a master that
 * stopped reading.
 */
export const MAX_QUEUED = 64 * 1024 * 1024;
/** Characters written per write: a flood is encoded a piece at a time. */
const MAX_BATCH = 1024 * 1024;

/**
 * The worker's end of the channel. {@linkcode send} never blocks: frames
 * queue while the socket connects or is busy and go out together, and the
 * worker's start does not wait for the connect. A worker logging faster
 * than the master reads holds up to 64 MiB of records in its own memory,
 * then drops records and says how many once the master caught up.
 * Heartbeats and stop notices go ahead of queued records: a flood of logs
 * never makes a healthy worker look hung.
 */
export class ChannelClient {
  #connection: Promise<Connection>;
  #urgent: string[] = [];
  #queue: string[] = [];
  #queued = 0;
  #dropped = 0;
  #saidBye = false;
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

  /** Frames queued and not written yet. */
  get unsent(): number {
    return this.#urgent.length + this.#queue.length;
  }

  /** Whether frames reach the master: connected, and not broken since. */
  get connected(): boolean {
    return this.#connected && !this.#broken;
  }

  /** Queues a message; it is written as soon as the socket takes it. */
  send(message: WorkerMessage): void {
    // Nothing after the goodbye: the master closes the channel on it.
    if (this.#broken || this.#saidBye) return;
    if (message.t === "bye") {
      this.#saidBye = true;
      // The count of dropped records goes before it, or never.
      if (this.#dropped > 0) this.#queue.push(droppedFrame(this.#dropped));
      this.#dropped = 0;
    }
    // hello leads the urgent frames, so nothing ever goes before it.
    if (
      message.t === "hello" || message.t === "hb" || message.t === "stopping"
    ) {
      this.#urgent.push(JSON.stringify(message) + "\n");
    } else if (message.t === "log" && this.#queued > MAX_QUEUED) {
      this.#dropped++;
      return;
    } else {
      const frame = JSON.stringify(message) + "\n";
      this.#queue.push(frame);
      this.#queued += frame.length;
    }
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
      for (;;) {
        let count = 0;
        let size = 0;
        while (count < this.#queue.length && size < MAX_BATCH) {
          size += this.#queue[count++]!.length;
        }
        const frames = [
          ...this.#urgent.splice(0),
          ...this.#queue.splice(0, count),
        ];
        this.#queued -= size;
        if (frames.length === 0 && this.#dropped > 0 && !this.#saidBye) {
          frames.push(droppedFrame(this.#dropped));
          this.#dropped = 0;
        }
        if (frames.length === 0) break;
        // One encode for the whole batch, not one per frame.
        await connection.write(encoder.encode(frames.join("")));
      }
    } catch {
      // The channel is gone: `closed` reports why, queued frames are moot.
      this.#broken = true;
      this.#urgent = [];
      this.#queue = [];
    } finally {
      this.#writing = null;
    }
  }
}

/** A record saying that `count` records were dropped. */
function droppedFrame(count: number): string {
  const record: WireRecord = {
    msg:
      `${count} log records dropped: the master did not take them fast enough`,
    args: [],
    datetime: Date.now(),
    level: LogLevels.WARN,
    levelName: "WARN",
    loggerName: "workerpool.worker",
  };
  return JSON.stringify({ t: "log", record }) + "\n";
}

async function readToEnd(connection: Connection): Promise<void> {
  const reader = connection.readable.getReader();
  while (!(await reader.read()).done) {
    // The master sends nothing yet; reading only detects end-of-file.
  }
}
