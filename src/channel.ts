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

/** Encodes one message as a frame. */
export function encodeFrame(message: WorkerMessage): Uint8Array {
  return encoder.encode(JSON.stringify(message) + "\n");
}

/** Splits a byte stream into parsed frames, enforcing {@linkcode MAX_FRAME_BYTES}. */
export class FrameDecoder {
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  #decoder = new TextDecoder("utf-8", { fatal: true });
  #maxBytes: number;

  constructor(maxBytes: number = MAX_FRAME_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** Returns the complete frames in `chunk`; throws {@linkcode FrameError}. */
  push(chunk: Uint8Array): unknown[] {
    const frames: unknown[] = [];
    let start = 0;
    for (;;) {
      // 0x0a never occurs inside a multi-byte UTF-8 sequence.
      const end = chunk.indexOf(NEWLINE, start);
      if (end === -1) break;
      frames.push(this.#parse(this.#take(chunk.subarray(start, end))));
      start = end + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.#partBytes += rest.length;
      if (this.#partBytes >= this.#maxBytes) this.#tooLarge();
      this.#parts.push(rest);
    }
    return frames;
  }

  #take(tail: Uint8Array): Uint8Array {
    if (this.#parts.length === 0) {
      if (tail.length >= this.#maxBytes) this.#tooLarge();
      return tail;
    }
    const size = this.#partBytes + tail.length;
    if (size >= this.#maxBytes) this.#tooLarge();
    const line = new Uint8Array(size);
    let offset = 0;
    for (const part of this.#parts) {
      line.set(part, offset);
      offset += part.length;
    }
    line.set(tail, offset);
    this.#parts = [];
    this.#partBytes = 0;
    return line;
  }

  #parse(line: Uint8Array): unknown {
    try {
      return JSON.parse(this.#decoder.decode(line));
    } catch {
      throw new FrameError(
        `Cannot parse frame: not JSON (${line.length} bytes)`,
      );
    }
  }

  #tooLarge(): never {
    throw new FrameError(
      `Cannot read frame: larger than ${this.#maxBytes} bytes`,
    );
  }
}

/** Checks a parsed frame's shape; throws {@linkcode FrameError}. */
export function toWorkerMessage(value: unknown): WorkerMessage {
  const v = value as Record<string, unknown> | null;
  const ok = typeof v === "object" && v !== null && (() => {
    switch (v.t) {
      case "hello":
        return typeof v.id === "number" && typeof v.pid === "number" &&
          typeof v.token === "string";
      case "hb":
      case "ready":
        return true;
      case "log":
        return isWireRecord(v.record);
      case "boot-error":
        return typeof v.message === "string";
      case "stopping":
        return v.signal === "SIGTERM" || v.signal === "SIGINT";
      default:
        return false;
    }
  })();
  if (!ok) {
    throw new FrameError(
      `Cannot handle frame: unknown message ${
        JSON.stringify(value).slice(0, 80)
      }`,
    );
  }
  return value as WorkerMessage;
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
  #queue: Uint8Array[] = [];
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
    this.#queue.push(encodeFrame(message));
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
        const frames = this.#queue.splice(0);
        await this.#connection.write(concat(frames));
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

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let size = 0;
  for (const part of parts) size += part.length;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
