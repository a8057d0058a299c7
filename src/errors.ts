/**
 * Errors callers may want to catch, and the exit codes of worker processes.
 *
 * @module
 */

/** Exit code of a worker whose `onStart` callbacks failed. */
export const EXIT_BOOT_ERROR = 3;

/**
 * Thrown by {@linkcode WorkerBase.start} when an `onStart` callback fails; a
 * worker process exits with {@linkcode EXIT_BOOT_ERROR} and prints the cause.
 *
 * @example Telling a boot error apart
 * ```ts
 * import { BootError } from "@workerpool/core";
 * const error = new BootError(1, new Error("port taken"));
 * console.assert(error.message === "Cannot start worker 1: port taken");
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

/**
 * The pidfile belongs to a live process: another pool is already running.
 * The master reports it and exits 1.
 */
export class PidfileLockedError extends Error {
  /** The pid found in the pidfile. */
  readonly pid: number;
  /** The pidfile's path. */
  readonly path: string;

  /** Creates the error for `path`, held by live process `pid`. */
  constructor(path: string, pid: number) {
    super(`Cannot write pidfile: ${path} holds pid ${pid}, which is running`);
    this.name = "PidfileLockedError";
    this.path = path;
    this.pid = pid;
  }
}

/** A one-line description of any thrown value. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause === undefined
      ? ""
      : ` (${describe(error.cause)})`;
    return `${error.message || error.name}${cause}`;
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
