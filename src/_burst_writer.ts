/**
 * `BurstWriter`: one write per burst. Bytes go to the destination at once
 * when it is idle; bytes that arrive while a write is in flight are joined
 * and go out together as soon as it ends. Nothing waits for a buffer to
 * fill, so a line is on disk (or on the terminal) as soon as the
 * destination takes it, and a flood costs one write per round trip, not
 * one per line.
 *
 * @module
 */
import { concat } from "./_bytes.ts";

/** Writes bytes in bursts through an async `write`. */
export class BurstWriter {
  #write: (data: Uint8Array) => Promise<void>;
  #pending: Uint8Array[] = [];
  #queued = 0;
  #flight: Promise<void> | null = null;
  #next = Promise.withResolvers<void>();

  /** `write` must write all of `data` (or throw). */
  constructor(write: (data: Uint8Array) => Promise<void>) {
    this.#write = write;
    // A burst nobody awaits must not become an unhandled rejection; the
    // callers that await their write() get the error.
    this.#next.promise.catch(() => {});
  }

  /** Bytes waiting for the write in flight to end. */
  get queued(): number {
    return this.#queued;
  }

  /** Whether a write is in flight. */
  get busy(): boolean {
    return this.#flight !== null;
  }

  /** Queues `data`; resolves once it was written, rejects if that failed. */
  write(data: Uint8Array): Promise<void> {
    this.#pending.push(data);
    this.#queued += data.length;
    const done = this.#next.promise;
    this.#flight ??= this.#run();
    return done;
  }

  /** Resolves once everything queued so far was written (or failed). */
  async flush(): Promise<void> {
    while (this.#flight !== null) await this.#flight;
  }

  async #run(): Promise<void> {
    while (this.#pending.length > 0) {
      const chunks = this.#pending.splice(0);
      this.#queued = 0;
      const burst = this.#next;
      this.#next = Promise.withResolvers<void>();
      this.#next.promise.catch(() => {});
      try {
        await this.#write(concat(chunks));
        burst.resolve();
      } catch (error) {
        burst.reject(error);
      }
    }
    this.#flight = null;
  }
}
