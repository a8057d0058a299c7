/**
 * Pidfiles: created exclusively with their content in one step, refused
 * while their pid runs, taken over when stale, and removed only by their
 * owner.
 *
 * @module
 */
import { absolute } from "./_path.ts";
import { PidfileLockedError } from "./errors.ts";
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
   * Throws {@linkcode PidfileLockedError} when the pidfile names a live
   * process; a stale pidfile is replaced.
   */
  static acquire(
    files: FileSystem,
    path: string,
    pid: number,
    isAlive: (pid: number) => boolean,
  ): Pidfile {
    const target = absolute(files.cwd(), path);
    const temporary = `${target}.${pid}.tmp`;
    files.writeTextFile(temporary, `${pid}\n`);
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        if (files.link(temporary, target)) {
          return new Pidfile(files, target, pid);
        }
        const holder = readPid(files, target);
        if (holder !== null && holder !== pid && isAlive(holder)) {
          throw new PidfileLockedError(target, holder);
        }
        // Stale (dead pid, our own, or unreadable): take it over.
        files.remove(target);
      }
      throw new Error(
        `Cannot write pidfile: ${target} keeps reappearing; another process races for it`,
      );
    } finally {
      files.remove(temporary);
    }
  }

  /** Removes the pidfile if it still holds our pid. */
  release(): void {
    if (readPid(this.#files, this.path) === this.pid) {
      this.#files.remove(this.path);
    }
  }
}

/** The pid in a pidfile, or null when missing or not a pid. */
export function readPid(files: FileSystem, path: string): number | null {
  const text = files.readTextFile(path);
  if (text === null) return null;
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}
