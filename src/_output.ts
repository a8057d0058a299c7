/**
 * Routing of workers' stdout and stderr: inherited, discarded, appended to a
 * file, or written to a `WritableStream`, a whole line at a time so the
 * output of different workers never interleaves inside a line.
 *
 * @module
 */
import { absolute } from "./_path.ts";
import type { OutputTarget } from "./types.ts";
import type { FileSystem, StdioMode } from "./runtime/mod.ts";

/** A line longer than this is written in pieces. */
const MAX_LINE_BYTES = 64 * 1024;

/** A destination shared by several workers' streams; writes stay in order. */
interface Sink {
  write(bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** The master's stdout/stderr routing for every worker of a pool. */
export class Outputs {
  #sinks: { stdout: Sink | null; stderr: Sink | null };
  #modes: { stdout: StdioMode; stderr: StdioMode };
  #pumps = new Set<Promise<void>>();
  #readers = new Set<ReadableStreamDefaultReader<Uint8Array>>();
  #onError: (error: unknown) => void;

  private constructor(
    sinks: { stdout: Sink | null; stderr: Sink | null },
    modes: { stdout: StdioMode; stderr: StdioMode },
    onError: (error: unknown) => void,
  ) {
    this.#sinks = sinks;
    this.#modes = modes;
    this.#onError = onError;
  }

  /** Opens the files or streams named by the two targets. */
  static async open(
    files: FileSystem,
    stdout: OutputTarget,
    stderr: OutputTarget,
    onError: (error: unknown) => void,
  ): Promise<Outputs> {
    const opened = new Map<string, Promise<Sink>>();
    const sinkFor = (target: OutputTarget): Promise<Sink> | null => {
      if (target === "inherit" || target === "null") return null;
      if (target instanceof WritableStream) {
        return Promise.resolve(streamSink(target));
      }
      // stdout and stderr sent to one file share one handle.
      const path = absolute(files.cwd(), target);
      if (!opened.has(path)) opened.set(path, fileSink(files, path));
      return opened.get(path)!;
    };
    const [out, err] = await Promise.all([sinkFor(stdout), sinkFor(stderr)]);
    const mode = (target: OutputTarget, sink: Sink | null): StdioMode =>
      sink !== null ? "piped" : target === "null" ? "null" : "inherit";
    return new Outputs(
      { stdout: out, stderr: err },
      { stdout: mode(stdout, out), stderr: mode(stderr, err) },
      onError,
    );
  }

  /** How a new worker's stream is to be spawned. */
  mode(stream: "stdout" | "stderr"): StdioMode {
    return this.#modes[stream];
  }

  /** Copies a worker's piped stream to its sink until end-of-file. */
  pump(
    stream: "stdout" | "stderr",
    readable: ReadableStream<Uint8Array> | null,
  ): void {
    const sink = this.#sinks[stream];
    if (readable === null || sink === null) return;
    const reader = readable.getReader();
    this.#readers.add(reader);
    const pump = copyLines(reader, sink).catch(this.#onError).finally(() => {
      this.#readers.delete(reader);
      this.#pumps.delete(pump);
    });
    this.#pumps.add(pump);
  }

  /**
   * Waits for every pump to reach end-of-file, at most `ms`: a grandchild
   * that inherited a worker's stdout can hold the pipe open forever.
   * Returns how many pumps had to be cut.
   */
  async drain(ms: number): Promise<number> {
    if (this.#pumps.size === 0) return 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), ms);
    });
    const all = Promise.all(this.#pumps).then(() => "done" as const);
    const outcome = await Promise.race([all, timeout]);
    clearTimeout(timer);
    if (outcome === "done") return 0;
    const cut = this.#readers.size;
    await Promise.all([...this.#readers].map((r) => r.cancel()));
    await Promise.all(this.#pumps);
    return cut;
  }

  /** Closes the files this object opened. */
  async close(): Promise<void> {
    const sinks = new Set([this.#sinks.stdout, this.#sinks.stderr]);
    for (const sink of sinks) await sink?.close();
  }
}

async function copyLines(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  sink: Sink,
): Promise<void> {
  let carry: Uint8Array | null = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const data: Uint8Array = carry === null ? value : join(carry, value);
    const cut = data.lastIndexOf(0x0a) + 1;
    if (cut === 0 && data.length < MAX_LINE_BYTES) {
      carry = data;
      continue;
    }
    const end = cut === 0 ? data.length : cut;
    // Awaiting the write before reading on is the backpressure: a worker
    // flooding its output blocks on a full pipe instead of filling our memory.
    await sink.write(data.subarray(0, end));
    carry = end < data.length ? data.slice(end) : null;
  }
  if (carry !== null) await sink.write(carry);
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Serialises writes from several pumps onto one destination. */
function orderedSink(
  write: (bytes: Uint8Array) => Promise<unknown>,
  close: () => Promise<void>,
): Sink {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    write(bytes) {
      const next = tail.then(() => write(bytes));
      // The caller of write() gets the error; the chain only keeps order.
      tail = next.catch(() => {});
      return next.then(() => {});
    },
    async close() {
      await tail;
      await close();
    },
  };
}

async function fileSink(files: FileSystem, path: string): Promise<Sink> {
  const file = await files.openAppend(path);
  return orderedSink((bytes) => file.write(bytes), () => file.close());
}

function streamSink(stream: WritableStream<Uint8Array>): Sink {
  const writer = stream.getWriter();
  // The stream is the caller's: release it, never close it.
  return orderedSink((bytes) => writer.write(bytes), async () => {
    await writer.ready;
    writer.releaseLock();
  });
}
