/**
 * `LineSplitter`: worker output as whole lines, so that the lines of
 * different workers never mix in a shared file or stream.
 *
 * @module
 */
import { concat } from "./_bytes.ts";

/** The longest line written whole; longer ones are cut with a marker. */
export const MAX_LINE_BYTES = 64 * 1024;

const NEWLINE = 0x0a;
const encoder = new TextEncoder();

/**
 * Turns chunks into runs of whole lines. At most {@linkcode MAX_LINE_BYTES}
 * of a line are kept; the rest is counted and dropped.
 */
export class LineSplitter {
  #parts: Uint8Array[] = [];
  #kept = 0;
  #cut = 0;

  /** The whole lines that `chunk` completes, or null. */
  push(chunk: Uint8Array): Uint8Array | null {
    const out: Uint8Array[] = [];
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(NEWLINE, start);
      if (newline === -1) break;
      this.#append(chunk.subarray(start, newline));
      out.push(...this.#takeLine());
      start = newline + 1;
    }
    // Kept beyond this call: a copy, not a view of a buffer that may be reused.
    if (start < chunk.length) this.#append(chunk.slice(start));
    return out.length === 0 ? null : concat(out);
  }

  /** The unterminated last line, ended with a newline, or null. */
  end(): Uint8Array | null {
    if (this.#kept === 0 && this.#cut === 0) return null;
    return concat(this.#takeLine());
  }

  #append(bytes: Uint8Array): void {
    const room = MAX_LINE_BYTES - this.#kept;
    if (bytes.length <= room) {
      if (bytes.length > 0) this.#parts.push(bytes);
      this.#kept += bytes.length;
      return;
    }
    // Never cut inside a UTF-8 sequence: back up to its first byte.
    let keep = room;
    while (keep > 0 && (bytes[keep]! & 0xc0) === 0x80) keep--;
    if (keep > 0) this.#parts.push(bytes.subarray(0, keep));
    this.#kept = MAX_LINE_BYTES;
    this.#cut += bytes.length - keep;
  }

  #takeLine(): Uint8Array[] {
    const parts = this.#parts;
    const tail = this.#cut > 0 ? ` [… ${this.#cut} bytes cut]\n` : "\n";
    parts.push(encoder.encode(tail));
    this.#parts = [];
    this.#kept = 0;
    this.#cut = 0;
    return parts;
  }
}
