/**
 * Frames on the control channel: newline-delimited JSON, decoded with a
 * size cap and checked against the shapes of {@linkcode WorkerMessage}.
 *
 * @module
 */
import {
  MAX_FRAME_BYTES,
  type WireRecord,
  type WorkerMessage,
} from "./_protocol.ts";
import type { Connection } from "./runtime/mod.ts";

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

/** A parsed frame before its shape is known. */
interface Unchecked {
  t?: unknown;
  id?: unknown;
  pid?: unknown;
  token?: unknown;
  record?: unknown;
  message?: unknown;
  stack?: unknown;
  signal?: unknown;
  code?: unknown;
  msg?: unknown;
  args?: unknown;
  datetime?: unknown;
  level?: unknown;
  levelName?: unknown;
  loggerName?: unknown;
  rss?: unknown;
  req?: unknown;
  fatal?: unknown;
  port?: unknown;
  holder?: unknown;
}

function optionalCount(value: unknown): boolean {
  return value === undefined ||
    typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isWorkerMessage(value: unknown): value is WorkerMessage {
  const v = value as Unchecked | null;
  if (typeof v !== "object" || v === null) return false;
  switch (v.t) {
    case "log":
      return isWireRecord(v.record);
    case "hb":
      return optionalCount(v.rss) && optionalCount(v.req);
    case "ready":
      return true;
    case "hello":
      return typeof v.id === "number" && typeof v.pid === "number" &&
        typeof v.token === "string";
    case "boot-error":
      return typeof v.message === "string" &&
        (typeof v.stack === "string" || v.stack === null) &&
        (v.fatal === undefined || typeof v.fatal === "boolean");
    case "port":
      return typeof v.port === "number" && optionalCount(v.port) &&
        (v.holder === null ||
          typeof v.holder === "number" && optionalCount(v.holder));
    case "bye":
      return typeof v.code === "number";
    case "stopping":
      return v.signal === "SIGTERM" || v.signal === "SIGINT";
    default:
      return false;
  }
}

function isWireRecord(value: unknown): value is WireRecord {
  const r = value as Unchecked | null;
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

/** One message as the bytes of a frame. */
export function encodeFrame(message: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(message) + "\n");
}
