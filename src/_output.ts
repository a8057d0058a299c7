/**
 * Routing of workers' stdout and stderr: inherited, discarded, appended to a
 * file, or written to a `WritableStream`. Piped output is written a whole
 * line at a time, so the lines of different workers never mix: a line
 * longer than {@linkcode MAX_LINE_BYTES} is cut there and ends with
 * `[… N bytes cut]`, and a last line without a newline gets one.
 *
 * @module
 */
import { absolute } from "./_path.ts";
import { BurstWriter } from "./_burst_writer.ts";
import { LineSplitter } from "./_line_splitter.ts";
import { describe } from "./errors.ts";
import type { AppendFile, FileSystem, StdioMode } from "./runtime/mod.ts";
import type { OutputTarget } from "./types.ts";

/** A destination shared by several workers' streams; writes stay in order. */
interface Sink {
  readonly name: string;
  readonly writer: BurstWriter;
  close(): Promise<void>;
  /** Bytes lost since a write last failed; null while writes succeed. */
  lost: number | null;
  /** Opens its file again (after logrotate moved it); files only. */
  reopen?(): Promise<void>;
}

type Stream = "stdout" | "stderr";

/** The master's stdout/stderr routing for every worker of a pool. */
export class Outputs {
  #sinks: Record<Stream, Sink | null>;
  #modes: Record<Stream, StdioMode>;
  #pumps = new Set<Promise<void>>();
  #readers = new Set<ReadableStreamDefaultReader<Uint8Array>>();
  #onError: (error: unknown) => void;
  #reopening: Promise<void> | null = null;
  #reopenAgain: Promise<void> | null = null;

  private constructor(
    sinks: Record<Stream, Sink | null>,
    modes: Record<Stream, StdioMode>,
    onError: (error: unknown) => void,
  ) {
    this.#sinks = sinks;
    this.#modes = modes;
    this.#onError = onError;
  }

  /**
   * Opens the files or streams named by the two targets; a file that
   * cannot be opened is an error naming the option and the path.
   */
  static async open(
    files: FileSystem,
    stdout: OutputTarget,
    stderr: OutputTarget,
    onError: (error: unknown) => void,
  ): Promise<Outputs> {
    const opened = new Map<string | WritableStream, Promise<Sink>>();
    const sinkFor = (name: Stream, target: OutputTarget) => {
      if (target === "inherit" || target === "null") return null;
      if (target instanceof WritableStream) {
        // One stream for both: one writer (a stream takes only one).
        if (!opened.has(target)) {
          opened.set(target, Promise.resolve(streamSink(target)));
        }
        return opened.get(target)!;
      }
      // stdout and stderr sent to one file share one handle.
      const path = absolute(files.cwd(), target);
      if (!opened.has(path)) opened.set(path, fileSink(files, name, path));
      return opened.get(path)!;
    };
    const [out, err] = await Promise.allSettled([
      sinkFor("stdout", stdout),
      sinkFor("stderr", stderr),
    ]);
    const sinks = { stdout: value(out), stderr: value(err) };
    const failed = [out, err].find((r) => r.status === "rejected");
    if (failed !== undefined) {
      for (const sink of new Set([sinks.stdout, sinks.stderr])) {
        await sink?.close();
      }
      throw (failed as PromiseRejectedResult).reason;
    }
    const mode = (target: OutputTarget, sink: Sink | null): StdioMode =>
      sink !== null ? "piped" : target === "null" ? "null" : "inherit";
    return new Outputs(
      sinks,
      {
        stdout: mode(stdout, sinks.stdout),
        stderr: mode(stderr, sinks.stderr),
      },
      onError,
    );
  }

  /** How a new worker's stream is to be spawned. */
  mode(stream: Stream): StdioMode {
    return this.#modes[stream];
  }

  /** Copies a worker's piped stream to its sink until end-of-file. */
  pump(stream: Stream, readable: ReadableStream<Uint8Array> | null): void {
    const sink = this.#sinks[stream];
    if (readable === null || sink === null) return;
    const reader = readable.getReader();
    this.#readers.add(reader);
    const pump = this.#copy(reader, sink).catch(this.#onError).finally(
      () => {
        this.#readers.delete(reader);
        this.#pumps.delete(pump);
      },
    );
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

  /**
   * Copies whole lines from `reader` to `sink` until end-of-file. A sink
   * that fails (disk full, its reader gone) never stops the copy: a worker
   * whose pipe nobody drained would block, and be killed, forever. The
   * lines are dropped, the failure said once, and the loss counted when the
   * sink works again.
   */
  async #copy(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    sink: Sink,
  ): Promise<void> {
    const lines = new LineSplitter();
    const write = async (bytes: Uint8Array) => {
      try {
        // Awaited before reading on: the backpressure that slows a worker
        // flooding its output instead of filling our memory.
        await sink.writer.write(bytes);
        if (sink.lost !== null) {
          this.#onError(
            new Error(`${sink.name} works again; ${sink.lost} bytes were lost`),
          );
          sink.lost = null;
        }
      } catch (error) {
        if (sink.lost === null) {
          this.#onError(
            new Error(`Cannot write to ${sink.name}: ${describe(error)}`),
          );
        }
        sink.lost = (sink.lost ?? 0) + bytes.length;
      }
    };
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const whole = lines.push(value);
      if (whole !== null) await write(whole);
    }
    const last = lines.end();
    if (last !== null) await write(last);
  }

  /**
   * Opens the output files again, by their paths: after logrotate moved
   * them, the next lines go to new files. A file that cannot be opened
   * keeps its old handle, and the error is reported.
   */
  reopen(): Promise<void> {
    // One at a time: two reopens at once would both close the same handle
    // and keep a new one each. Asked for during one, one more follows it.
    if (this.#reopening !== null) {
      this.#reopenAgain ??= this.#reopening.then(() => {
        this.#reopenAgain = null;
        return this.reopen();
      });
      return this.#reopenAgain;
    }
    this.#reopening = this.#reopenAll().finally(() => this.#reopening = null);
    return this.#reopening;
  }

  async #reopenAll(): Promise<void> {
    const sinks = new Set([this.#sinks.stdout, this.#sinks.stderr]);
    for (const sink of sinks) {
      await sink?.reopen?.().catch((error) =>
        this.#onError(
          new Error(`Cannot reopen ${sink.name}: ${describe(error)}`),
        )
      );
    }
  }

  /** Closes the files this object opened. */
  async close(): Promise<void> {
    const sinks = new Set([this.#sinks.stdout, this.#sinks.stderr]);
    for (const sink of sinks) await sink?.close();
  }
}

function value<T>(result: PromiseSettledResult<T>): T | null {
  return result.status === "fulfilled" ? result.value : null;
}

async function fileSink(
  files: FileSystem,
  name: Stream,
  path: string,
): Promise<Sink> {
  let file: AppendFile;
  try {
    file = await files.openAppend(path);
  } catch (error) {
    throw new Error(
      `Cannot open the ${name} file ${path}: ${describe(error)}`,
      {
        cause: error,
      },
    );
  }
  const writer = new BurstWriter((bytes) => file.write(bytes));
  return {
    name: path,
    writer,
    lost: null,
    async close() {
      await writer.flush();
      await file.close();
    },
    async reopen() {
      const old = file;
      // The next burst goes to the new file; the one in flight ends first.
      file = await files.openAppend(path);
      await writer.flush();
      await old.close();
    },
  };
}

function streamSink(stream: WritableStream<Uint8Array>): Sink {
  const target = stream.getWriter();
  const writer = new BurstWriter((bytes) => target.write(bytes));
  return {
    name: "the output stream",
    writer,
    lost: null,
    // The stream is the caller's: release it, never close it.
    async close() {
      await writer.flush();
      await target.ready;
      target.releaseLock();
    },
  };
}
