/**
 * The error callers may want to catch, the exit code that goes with it, and
 * how the library describes errors and values in its messages.
 *
 * @module
 */
import { ExitCode } from "./_protocol.ts";

/**
 * Exit code of a worker whose `onStart` callbacks failed, and of a master
 * whose pool halted on repeated boot errors.
 */
export const EXIT_BOOT_ERROR: 3 = ExitCode.bootError;

/**
 * Thrown by {@linkcode WorkerBase.start} when an `onStart` callback fails; a
 * worker process exits with {@linkcode EXIT_BOOT_ERROR} and prints the cause.
 *
 * @example Telling a boot error apart
 * ```ts
 * import assert from "node:assert/strict";
 * import { BootError } from "@workerpool/core";
 *
 * const error = new BootError(1, new Error("port taken"));
 * assert.equal(error.message, "Cannot start worker 1: port taken");
 * assert.equal(error.workerId, 1);
 * ```
 */
export class BootError extends Error {
  /** The worker id that failed to start. */
  readonly workerId: number;

  /** Creates a boot error for `workerId` caused by `cause`. */
  constructor(workerId: number, cause: unknown) {
    super(`Cannot start worker ${workerId}: ${describe(cause)}`, { cause });
    this.name = "BootError";
    this.workerId = workerId;
  }
}

/** A one-line description of any thrown value. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const message = error.message || error.name;
    if (error.cause === undefined) return message;
    // A message that already says its cause does not repeat it.
    const cause = describe(error.cause);
    return message.includes(cause) ? message : `${message} (${cause})`;
  }
  return String(error);
}

/** A short, readable rendering of any value, for error messages. */
export function describeValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") {
    return `function ${value.name || "(anonymous)"}`;
  }
  if (Array.isArray(value)) return `array [${value.map(describeValue)}]`;
  if (typeof value === "object" && value !== null) {
    return `object ${value.constructor?.name ?? "Object"}`;
  }
  return String(value);
}

/**
 * The frames of a stack (its first lines repeat the message already said),
 * as one log argument starting on a line of its own; none without frames.
 */
export function stackFrames(stack: string | null): string[] {
  const frames = stack?.split("\n").filter((line) => /^\s+at /.test(line));
  return frames?.length ? [`\n${frames.join("\n")}`] : [];
}
