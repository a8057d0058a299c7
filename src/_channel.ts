/**
 * The control channel between master and workers: newline-delimited JSON
 * frames over a Unix socket, with a size cap, and the worker-side client
 * that batches frames under backpressure.
 *
 * @module
 */
import type { Connection, Runtime } from "./runtime/mod.ts";

/** The largest frame accepted, newline included. */
export const MAX_FRAME_BYTES = 1 << 20;

/** A log record as it travels: `datetime` is milliseconds since the epoch. */
export interface WireRecord {
  msg: string;
  args: unknown[];
  datetime: number;
  level: number;
  levelName: string;
  loggerName: string;
}

/** What a worker sends its master. */
export type WorkerMessage =
  | { t: "hello"; id: number; pid: number; token: string }
  | { t: "hb" }
  | { t: "ready" }
  | { t: "log"; record: WireRecord }
  | { t: "boot-error"; message: string }
  | { t: "stopping"; signal: "SIGTERM" | "SIGINT" };

/** A frame that breaks the protocol; the connection is dropped. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

const encoder = new TextEncoder();
const NEWLINE = 0x0a;

/** Splits a byte stream into parsed frames, enforcing {@linkcode MAX_FRAME_BYTES}. */
export class FrameDecoder {
  #carry: Uint8Array | null = null;
  #decoder = new TextDecoder("utf-8", { fatal: true });
  #maxBytes: number;

  constructor(maxBytes: number = MAX_FRAME_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** Returns the complete frames in `chunk`; throws {@linkcode FrameError}. */
  push(chunk: Uint8Array): unknown[] {
    // 0x0a never occurs inside a multi-byte UTF-8 sequence, so the bytes up
    // to the last newline are whole frames: decoded in one call, split as
    // text (one call per chunk, not per frame, for log floods).
    const last = chunk.lastIndexOf(NEWLINE);
    if (last === -1) {
      this.#carry = this.#join(chunk);
      if (this.#carry.length >= this.#maxBytes) this.#tooLarge();
      return [];
    }
    const whole = this.#join(chunk.subarray(0, last));
    const rest = chunk.subarray(last + 1);
    this.#carry = rest.length > 0 ? rest.slice() : null;
    if (this.#carry !== null && this.#carry.length >= this.#maxBytes) {
      this.#tooLarge();
    }
    for (let start = 0;;) {
      const end = whole.indexOf(NEWLINE, start);
      if ((end === -1 ? whole.length : end) - start >= this.#maxBytes) {
        this.#tooLarge();
      }
      if (end === -1) break;
      start = end + 1;
    }
    let text: string;
    try {
      text = this.#decoder.decode(whole);
    } catch {
      throw new FrameError("Cannot parse frame: not UTF-8");
    }
    return text.split("\n").map(parse);
  }

  /** The carried partial frame followed by `bytes`. */
  #join(bytes: Uint8Array): Uint8Array {
    const carry = this.#carry;
    this.#carry = null;
    if (carry === null) return bytes;
    const joined = new Uint8Array(carry.length + bytes.length);
    joined.set(carry);
    joined.set(bytes, carry.length);
    return joined;
  }

  #tooLarge(): never {
    throw new FrameError(
      `Cannot read frame: larger than ${this.#maxBytes} bytes`,
    );
  }
}

function parse(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    throw new FrameError(
      `Cannot parse frame: not JSON (${line.length} characters)`,
    );
  }
}

/** Checks a parsed frame's shape; throws {@linkcode FrameError}. */
export function toWorkerMessage(value: unknown): WorkerMessage {
  if (!isWorkerMessage(value)) {
    throw new FrameError(
      `Cannot handle frame: unknown message ${
        JSON.stringify(value).slice(0, 80)
      }`,
    );
  }
  return value;
}

function isWorkerMessage(value: unknown): value is WorkerMessage {
  const v = value as Record<string, unknown> | null;
  if (typeof v !== "object" || v === null) return false;
  switch (v.t) {
    case "log":
      return isWireRecord(v.record);
    case "hb":
    case "ready":
      return true;
    case "hello":
      return typeof v.id === "number" && typeof v.pid === "number" &&
        typeof v.token === "string";
    case "boot-error":
      return typeof v.message === "string";
    case "stopping":
      return v.signal === "SIGTERM" || v.signal === "SIGINT";
    default:
      return false;
  }
}

function isWireRecord(value: unknown): value is WireRecord {
  const r = value as Record<string, unknown> | null;
  return typeof r === "object" && r !== null && typeof r.msg === "string" &&
    Array.isArray(r.args) && typeof r.datetime === "number" &&
    typeof r.level === "number" && typeof r.levelName === "string" &&
    typeof r.loggerName === "string";
}

/** Reads frames from `connection` until end-of-file, then resolves. */
export async function readFrames(
  connection: Connection,
  onFrame: (frame: unknown) => void,
  maxBytes?: number,
): Promise<void> {
  const decoder = new FrameDecoder(maxBytes);
  for await (const chunk of connection.readable) {
    for (const frame of decoder.push(chunk)) onFrame(frame);
  }
}

/**
 * The worker's end of the channel. {@linkcode send} never blocks: frames
 * queue while the socket is busy and go out together, so a worker logging
 * faster than the master reads is held in its own memory, not the master's.
 */
export class ChannelClient {
  #connection: Connection;
  #queue: string[] = [];
  #writing: Promise<void> | null = null;
  #broken: unknown = null;
  /** Resolves when the master end closes: the master is gone. */
  readonly closed: Promise<void>;

  private constructor(connection: Connection) {
    this.#connection = connection;
    this.closed = (async () => {
      const reader = connection.readable.getReader();
      try {
        while (!(await reader.read()).done) {
          // The master sends nothing yet; reading only detects end-of-file.
        }
      } catch (error) {
        this.#broken = error;
      }
    })();
  }

  /** Connects to the master at `path` and introduces the worker. */
  static async connect(
    runtime: Runtime,
    path: string,
    hello: Extract<WorkerMessage, { t: "hello" }>,
  ): Promise<ChannelClient> {
    const client = new ChannelClient(await runtime.connectUnix(path));
    client.send(hello);
    return client;
  }

  /** Queues a message; it is written as soon as the socket takes it. */
  send(message: WorkerMessage): void {
    if (this.#broken !== null) return;
    this.#queue.push(JSON.stringify(message) + "\n");
    this.#writing ??= this.#drain();
  }

  /** Resolves once every queued frame was written (or the socket broke). */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  /** Closes the connection. */
  close(): void {
    this.#connection.close();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        // One encode for the whole batch, not one per frame.
        const frames = this.#queue.splice(0);
        await this.#connection.write(encoder.encode(frames.join("")));
      }
    } catch (error) {
      // The master is gone; `closed` reports it, so queued frames are moot.
      this.#broken = error;
      this.#queue = [];
    } finally {
      this.#writing = null;
    }
  }
}
