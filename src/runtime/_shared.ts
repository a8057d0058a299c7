// What both adapters share, with no Deno.* or Bun.* here: Linux /proc
// readings (text in, facts out; each adapter reads the files its own way)
// and messages.
import type { MainThread } from "./types.ts";

/**
 * Where a thread sleeps while it writes to a pipe, a terminal or a socket
 * whose reader is not reading (the kernel's names for those waits).
 */
const WRITE_WAITS =
  /pipe_write|tty_write|unix_stream_sendmsg|sock_alloc_send_pskb|sk_stream_wait_memory/;

/**
 * A main thread from `/proc/<pid>/schedstat` ("<ns on a CPU> <ns waiting
 * on a runqueue> <timeslices>") and `/proc/<pid>/wchan`.
 */
export function parseMainThread(
  schedstat: string,
  wchan: string,
): MainThread | null {
  const wait = Number(schedstat.split(" ")[1]);
  if (!Number.isFinite(wait)) return null;
  return { cpuWait: wait / 1e6, writing: WRITE_WAITS.test(wchan) };
}

/** The soft "Max open files" of `/proc/self/limits`, or null. */
export function parseFileLimit(limits: string): number | null {
  const match = /^Max open files\s+(\d+)/m.exec(limits);
  return match === null ? null : Number(match[1]);
}

/**
 * Why `FileSystem.openAppend` refuses named pipes: opening one
 * waits, without end and unstoppable, until a reader comes.
 */
export const PIPE_REFUSED =
  "it is a named pipe or a socket, which would hold the master until a reader opens it: use a regular file, or a WritableStream";
