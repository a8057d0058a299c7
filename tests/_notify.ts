// systemd's end of sd_notify for the tests of both runtimes: starts
// tests/_notify_listener.ts (always under Deno, which is installed next to
// Bun here), collects the datagrams it reports and stops it.
import process from "node:process";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { detectRuntime } from "../src/runtime/mod.ts";
import { waitFor } from "./_helpers.ts";

/** One datagram, with the sender's credentials as the kernel gave them. */
export interface NotifyMessage {
  pid: number;
  uid: number;
  message: string;
}

/** A running listener. */
export interface NotifyListener {
  /** What to put in $NOTIFY_SOCKET: a path, or "@" and an abstract name. */
  readonly path: string;
  /** The listener's pid (to SIGSTOP it: a receiver that does not read). */
  readonly pid: number;
  /** The datagrams received so far, in order. */
  messages(): NotifyMessage[];
  /** Polls (bounded) until `predicate` holds for the messages; resolves with them. */
  waitFor(
    predicate: (messages: NotifyMessage[]) => boolean,
    what: string,
  ): Promise<NotifyMessage[]>;
  /** SIGTERMs the listener; resolves with its exit code once it has exited. */
  stop(): Promise<number | null>;
}

/**
 * Starts a listener on a fresh socket file in `dir`, or on a fresh abstract
 * name with `abstract`, and resolves once it is bound.
 */
export async function startNotifyListener(
  dir: string,
  options: { abstract?: boolean } = {},
): Promise<NotifyListener> {
  const path = options.abstract
    ? `@workerpool-test-${crypto.randomUUID()}`
    : `${dir}/notify-${crypto.randomUUID().slice(0, 8)}.sock`;
  const script = fileURLToPath(
    new URL("./_notify_listener.ts", import.meta.url),
  );
  // Its stdin stays open while we live: if the test process dies, the
  // listener sees end-of-file and goes too.
  const child = spawn(denoPath(), ["run", "-A", script, path], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code))
  );
  let exitCode: number | null | undefined;
  exited.then((code) => exitCode = code);
  const lines: string[] = [];
  let stderr = "";
  collectLines(child, lines);
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => stderr += text);

  const parsed = () => lines.map((line) => JSON.parse(line));
  try {
    await waitFor(`the notify listener to bind ${path}`, () => {
      if (exitCode !== undefined) {
        throw new Error(`The listener exited (${exitCode}): ${stderr}`);
      }
      return parsed()[0]?.listening === path;
    });
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  const messages = () => parsed().slice(1).map((line) => line as NotifyMessage);
  return {
    path,
    pid: child.pid!,
    messages,
    waitFor: (predicate, what) =>
      waitFor(what, () => {
        if (predicate(messages())) return messages();
        if (exitCode !== undefined) {
          throw new Error(`The listener exited (${exitCode}): ${stderr}`);
        }
        return false;
      }),
    async stop() {
      // By pid, not child.kill(): after that, Deno 2.9.6 reports any exit
      // as (null, "SIGTERM"), even one the child chose on catching it.
      if (exitCode === undefined) process.kill(child.pid!, "SIGTERM");
      const code = await exited;
      child.stdin!.destroy();
      return code;
    },
  };
}

/** Each whole line of the child's stdout, appended to `lines` as it comes. */
function collectLines(child: ChildProcess, lines: string[]): void {
  let pending = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (text: string) => {
    pending += text;
    const parts = pending.split("\n");
    pending = parts.pop()!;
    lines.push(...parts.filter((line) => line !== ""));
  });
}

/** Deno: this one when it runs the tests, else the one installed next to Bun. */
function denoPath(): string {
  if (detectRuntime() === "deno") return process.execPath;
  const local = fileURLToPath(
    new URL("../node_modules/.bin/deno", import.meta.url),
  );
  return existsSync(local) ? local : "deno";
}
