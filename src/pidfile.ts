/**
 * Pidfiles: created exclusively with their content in one step, refused
 * while their pid runs, taken over when stale, and removed only by their
 * owner.
 *
 * @module
 */
import { linkSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { PidfileLockedError } from "./errors.ts";

/** A pidfile this process holds. */
export class Pidfile {
  /** The absolute path. */
  readonly path: string;
  /** The pid written in it. */
  readonly pid: number;

  private constructor(path: string, pid: number) {
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
    path: string,
    pid: number,
    isAlive: (pid: number) => boolean,
  ): Pidfile {
    const target = resolve(path);
    const temporary = `${target}.${pid}.tmp`;
    writeFileSync(temporary, `${pid}\n`, { flag: "w", mode: 0o644 });
    try {
      for (let attempt = 0;; attempt++) {
        try {
          linkSync(temporary, target);
          return new Pidfile(target, pid);
        } catch (error) {
          if ((error as { code?: string }).code !== "EEXIST" || attempt > 2) {
            throw error;
          }
        }
        const holder = readPid(target);
        if (holder !== null && holder !== pid && isAlive(holder)) {
          throw new PidfileLockedError(target, holder);
        }
        // Stale (dead pid, our own, or unreadable): take it over.
        removeIfPresent(target);
      }
    } finally {
      removeIfPresent(temporary);
    }
  }

  /** Removes the pidfile if it still holds our pid. */
  release(): void {
    if (readPid(this.path) === this.pid) removeIfPresent(this.path);
  }
}

/** The pid in a pidfile, or null when missing or not a pid. */
export function readPid(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return null;
    throw error;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOENT") throw error;
  }
}
