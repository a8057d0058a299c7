/**
 * Pidfiles: created exclusively with their content in one step, refused
 * while their pid runs, taken over when stale, and removed only by their
 * owner.
 *
 * @module
 */
import { absolute } from "./_path.ts";
import { describe } from "./errors.ts";
import type { FileSystem } from "./runtime/mod.ts";

/** A pidfile this process holds. */
export class Pidfile {
  /** The absolute path. */
  readonly path: string;
  /** The pid written in it. */
  readonly pid: number;
  #files: FileSystem;

  private constructor(files: FileSystem, path: string, pid: number) {
    this.#files = files;
    this.path = path;
    this.pid = pid;
  }

  /**
   * Writes `pid` to `path`. The content is written to a private temporary
   * file first and hard-linked into place, so the pidfile appears complete
   * or not at all, and only if no file is there (link never overwrites).
   * Throws a {@linkcode PidfileError} when the pidfile names a live process
   * or cannot be written; a stale pidfile is replaced.
   */
  static acquire(
    files: FileSystem,
    path: string,
    pid: number,
    isAlive: (pid: number) => boolean,
  ): Pidfile {
    const target = absolute(files.cwd(), path);
    try {
      return Pidfile.#link(files, target, pid, isAlive);
    } catch (error) {
      if (error instanceof PidfileError) throw error;
      throw new PidfileError(
        `Cannot write pidfile ${target}: ${describe(error)}`,
        {
          cause: error,
        },
      );
    }
  }

  static #link(
    files: FileSystem,
    target: string,
    pid: number,
    isAlive: (pid: number) => boolean,
  ): Pidfile {
    return withTemporary(files, target, `${pid}\n`, (temporary) => {
      for (let attempt = 0; attempt < 3; attempt++) {
        if (files.link(temporary, target)) {
          return new Pidfile(files, target, pid);
        }
        const text = files.readTextFile(target);
        if (text === null) continue; // removed meanwhile: try again
        const holder = parsePid(text);
        if (holder === null) {
          // Not ours to delete: it may be any file the path points at.
          throw new PidfileError(
            `Cannot write pidfile: ${target} exists and does not hold a pid`,
          );
        }
        if (holder === pid) return new Pidfile(files, target, pid);
        if (isAlive(holder)) {
          throw new PidfileError(
            `Cannot write pidfile: ${target} holds pid ${holder}, which is running`,
            { holder },
          );
        }
        // Stale: its process is gone. Take it over.
        files.remove(target);
      }
      throw new PidfileError(
        `Cannot write pidfile: ${target} keeps reappearing; another process races for it`,
      );
    });
  }

  /**
   * Writes `pid` to `path` whoever holds it: a takeover, once the holder
   * was told to go. The holder, which removes only a file with its own
   * pid, leaves it.
   */
  static replace(files: FileSystem, path: string, pid: number): Pidfile {
    const target = absolute(files.cwd(), path);
    try {
      if (!linkOver(files, target, `${pid}\n`)) {
        throw new PidfileError(
          `Cannot write pidfile: ${target} reappeared; another process races for it`,
        );
      }
      return new Pidfile(files, target, pid);
    } catch (error) {
      if (error instanceof PidfileError) throw error;
      throw new PidfileError(
        `Cannot write pidfile ${target}: ${describe(error)}`,
        { cause: error },
      );
    }
  }

  /** Removes the pidfile if it still holds our pid. */
  release(): void {
    if (readPid(this.#files, this.path) === this.pid) {
      this.#files.remove(this.path);
    }
  }
}

/**
 * Creates `path` holding `content`, complete or not at all, and only if no
 * file is there: the content goes to a temporary file first, hard-linked
 * into place (a link never overwrites). False when a file is there.
 */
export function linkNew(
  files: FileSystem,
  path: string,
  content: string,
): boolean {
  return withTemporary(
    files,
    path,
    content,
    (temporary) => files.link(temporary, path),
  );
}

/**
 * Puts `path`, holding `content`, in place of whatever file is there (the
 * content is complete before the old file goes); false when another
 * process created one in between.
 */
export function linkOver(
  files: FileSystem,
  path: string,
  content: string,
): boolean {
  return withTemporary(files, path, content, (temporary) => {
    files.remove(path);
    return files.link(temporary, path);
  });
}

/**
 * Runs `use` with a temporary file beside `target` holding `content`, of
 * this process alone (the workers of one pool may write the same content
 * at once), and removes it after.
 */
function withTemporary<T>(
  files: FileSystem,
  target: string,
  content: string,
  use: (temporary: string) => T,
): T {
  const temporary = `${target}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  files.writeTextFile(temporary, content);
  try {
    return use(temporary);
  } finally {
    files.remove(temporary);
  }
}

/** The pid in a pidfile, or null when missing or not a pid. */
export function readPid(files: FileSystem, path: string): number | null {
  const text = files.readTextFile(path);
  return text === null ? null : parsePid(text);
}

function parsePid(text: string): number | null {
  const pid = Number(text.trim());
  return /^\s*\d+\s*$/.test(text) && Number.isSafeInteger(pid) && pid > 0
    ? pid
    : null;
}

/** The pidfile cannot be written; the message says why. */
export class PidfileError extends Error {
  /** The live process that holds the file, when that is the reason. */
  readonly holder: number | null;

  constructor(message: string, options?: ErrorOptions & { holder?: number }) {
    super(message, options);
    this.name = "PidfileError";
    this.holder = options?.holder ?? null;
  }
}
