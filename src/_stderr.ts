/**
 * The library's own lines on stderr (log records of the master, of a
 * worker outside a pool), written without ever blocking the event loop: a
 * terminal paused with Ctrl-S, or a pipe nobody reads, must not stall the
 * master's loop, which would take every worker for hung. Lines wait in
 * memory up to a bound; past it they are dropped and counted, and the count
 * is printed once stderr takes lines again.
 *
 * @module
 */
import { BurstWriter } from "./_burst_writer.ts";
import { loadedRuntime } from "./runtime/mod.ts";

/** Bytes that may wait for a stalled stderr before lines are dropped. */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** The same for warnings and errors, which the ordinary lines never crowd out. */
const MAX_QUEUED_IMPORTANT_BYTES = 16 * 1024 * 1024;

const encoder = new TextEncoder();
let writer: BurstWriter | null = null;
let dropped = 0;
let dropNotice = (count: number) =>
  `workerpool: ${count} lines dropped: stderr did not take them\n`;

/** How the count of dropped lines is said (a JSON record, in JSON logs). */
export function setDropNotice(notice: (count: number) => string): void {
  dropNotice = notice;
}

/**
 * Writes `text` to stderr, never blocking; see the module doc. An
 * `important` line (a warning, an error) is dropped only past a larger
 * bound: a flood of ordinary records cannot hide why a worker was killed.
 */
export function writeStderr(text: string, important = false): void {
  if (writer === null) {
    const runtime = loadedRuntime();
    // Not loaded yet: nothing of the pool runs yet either, so nothing waits.
    if (runtime === undefined) return void console.error(text.trimEnd());
    writer = new BurstWriter((data) =>
      (loadedRuntime() ?? runtime).writeStderr(data)
    );
  }
  const bound = important ? MAX_QUEUED_IMPORTANT_BYTES : MAX_QUEUED_BYTES;
  if (writer.queued > bound) {
    dropped++;
    return;
  }
  if (dropped > 0 && writer.queued === 0) {
    text = dropNotice(dropped) + text;
    dropped = 0;
  }
  // Where stderr is gone (EPIPE), there is nowhere left to say so.
  writer.write(encoder.encode(text)).catch(() => {});
}

/**
 * Resolves once every line written so far reached stderr (or failed), or
 * after `ms`: a process about to exit waits for its last lines, but not
 * forever on a stderr nobody reads.
 */
export async function flushStderr(ms = 2000): Promise<void> {
  if (writer === null || writer.queued === 0 && !writer.busy) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    writer.flush(),
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}
