// How the master words processes and counts in its log lines.
import type { ExitStatus } from "./runtime/mod.ts";

/** Describes an exit status for a log line. */
export function describeExit(status: ExitStatus): string {
  return status.signal === null
    ? `exited with code ${status.code}`
    : `was killed by ${status.signal}`;
}

/** `1 worker`, `2 workers`: a count with its noun. */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
