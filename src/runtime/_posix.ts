// Process facts both runtimes answer the same way through their node:
// built-ins; shared by the two adapters.
import process from "node:process";
import { readFileSync } from "node:fs";

/** Whether `pid` names a live process: zombies (exited, not yet reaped) count as gone. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as { code?: string }).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The state letter follows the parenthesised command name.
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    // No /proc (not Linux): kill(0) succeeding is all we can know.
    return true;
  }
}

/** `128 + n` for a process killed by signal `name`, as shells report it. */
export function signalExitCode(name: string): number {
  const number = (SIGNAL_NUMBERS as Record<string, number>)[name];
  return 128 + (number ?? 0);
}

const SIGNAL_NUMBERS = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};
