// Test helpers: run fixtures under the runtime running the tests, poll for
// observable facts with a bound, and find every process a test started.
import process from "node:process";
import { after } from "node:test";
import assert from "node:assert/strict";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import https from "node:https";
import { createServer, Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { detectRuntime, loadRuntime } from "../src/runtime/mod.ts";
import type { ChildProcess, SignalName } from "../src/runtime/mod.ts";

export const runtime = await loadRuntime();

/** A private temporary directory, removed once the test file has run. */
export function testDir(): string {
  const dir = mkdtempSync(`${tmpdir()}/workerpool-test-`);
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Absolute path of a fixture script. */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

/** A script run as a master, with its output collected. */
export interface Master {
  readonly pid: number;
  readonly tag: string;
  readonly process: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code once the master has exited. */
  readonly exited: Promise<{ code: number; signal: string | null }>;
  kill(signal: SignalName): boolean;
}

/**
 * Starts `script` as `deno run -A` (or `denoFlags`) or `bun`, whichever runs
 * the tests, with `env` added and a unique WORKERPOOL_TEST_TAG so its whole
 * process tree can be found later. `detached` gives it a session and process
 * group of its own, as a shell gives a foreground job; `fileLimit` lowers
 * its open-file limit (`ulimit -n`); `wrapper` is a command that runs it
 * (`unshare …`): then `pid` is the wrapper's.
 */
export function startScript(
  script: string,
  env: Record<string, string> = {},
  options: {
    denoFlags?: string[];
    detached?: boolean;
    fileLimit?: number;
    wrapper?: string[];
    /** Arguments after the script. */
    args?: string[];
  } = {},
): Master {
  const {
    denoFlags = ["-A"],
    detached = false,
    fileLimit,
    wrapper = [],
    args = [],
  } = options;
  const tag = `t${crypto.randomUUID()}`;
  let argv = detectRuntime() === "deno"
    ? [process.execPath, "run", ...denoFlags, script, ...args]
    : [process.execPath, script, ...args];
  if (fileLimit !== undefined) {
    // The shell sets the open-file limit and execs: the pid stays the script's.
    argv = ["sh", "-c", `ulimit -n ${fileLimit} && exec "$@"`, "sh", ...argv];
  }
  argv = [...wrapper, ...argv];
  const child = runtime.spawn(argv[0], {
    args: argv.slice(1),
    env: { ...env, WORKERPOOL_TEST_TAG: tag },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached,
  });
  let text = "";
  const decoder = new TextDecoder();
  const collect = async (stream: ReadableStream<Uint8Array> | null) => {
    if (stream === null) return;
    for await (const chunk of stream) text += decoder.decode(chunk);
  };
  const streams = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const exited = Promise.all([child.status, streams]).then(([s]) => s);
  return {
    pid: child.pid,
    tag,
    process: child,
    output: () => text,
    exited,
    kill: (signal) => child.kill(signal),
  };
}

/** Polls `check` until it returns a value other than undefined/false. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Pids of live (non-zombie) processes whose environment carries `tag`. */
export function taggedPids(tag: string): number[] {
  const needle = `WORKERPOOL_TEST_TAG=${tag}`;
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, "latin1");
      if (environ.split("\0").includes(needle)) {
        const pid = Number(entry);
        if (runtime.isAlive(pid)) pids.push(pid);
      }
    } catch {
      // The process exited while we looked: it is not left behind.
    }
  }
  return pids;
}

/** Waits until no process of the tree tagged `tag` is alive. */
export function waitAllGone(tag: string, timeoutMs = 30_000): Promise<true> {
  return waitFor(
    `every process tagged ${tag} to exit`,
    () => taggedPids(tag).length === 0,
    timeoutMs,
  );
}

/** SIGKILLs, by pid, whatever the test left alive: cleanup after a failure. */
export async function cleanup(master: Master): Promise<void> {
  for (const pid of taggedPids(master.tag)) runtime.kill(pid, "SIGKILL");
  master.kill("SIGKILL");
  await master.exited;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** One HTTP/1.1 GET on a fresh connection; resolves with the body. */
export function httpGet(port: number, path = "/"): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    const chunks: Uint8Array[] = [];
    socket.once("error", reject);
    socket.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    socket.once("close", () => {
      const text = new TextDecoder().decode(concat(chunks));
      const split = text.indexOf("\r\n\r\n");
      if (!text.startsWith("HTTP/1.1 200") || split === -1) {
        reject(new Error(`Bad response: ${JSON.stringify(text.slice(0, 80))}`));
      } else resolve(text.slice(split + 4));
    });
    // No half-close: servers may drop a request whose client already sent FIN.
    socket.connect(port, "127.0.0.1", () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      );
    });
  });
}

/** Tries GETs until one answers; resolves with its body. */
export function getWhenUp(port: number, timeoutMs = 30_000): Promise<string> {
  return waitFor(`port ${port} to answer`, async () => {
    try {
      return await httpGet(port);
    } catch {
      return undefined;
    }
  }, timeoutMs);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Lines of the events file a fixture appends to. */
export function readEvents(path: string): string[] {
  try {
    // Only whole lines: a line being appended may be read half written.
    return readFileSync(path, "utf8").split("\n").slice(0, -1).filter((l) =>
      l !== ""
    );
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return [];
    throw error;
  }
}

/** A record as a fixture's logger writes it, one JSON object a line. */
export interface RecordJson {
  msg: string;
  args: unknown[];
  level: number;
  levelName: string;
  loggerName: string;
  workerId: number | null;
  pid: number;
  datetime: string;
}

/** The records of a JSON-lines log file, the whole lines written so far. */
export function readRecords(path: string): RecordJson[] {
  return readEvents(path).map((line) => JSON.parse(line));
}

/** The pid answering for worker `id` on `port` (other than `not`). */
export function pidOf(port: number, id: number, not?: number): Promise<number> {
  return waitFor(`worker ${id} to answer`, async () => {
    const [seen, pid] = (await getWhenUp(port)).split(" ").map(Number);
    return seen === id && pid !== not ? pid : undefined;
  });
}

/** Collects "id pid" answers until `ids` distinct worker ids were seen. */
export async function answering(
  port: number,
  ids: number,
): Promise<Map<number, number>> {
  const seen = new Map<number, number>();
  await waitFor(`${ids} distinct workers to answer`, async () => {
    const [id, pid] = (await getWhenUp(port)).split(" ").map(Number);
    seen.set(id, pid);
    return seen.size >= ids;
  });
  return seen;
}

/** SIGTERM to the master: it exits 0 and leaves no process behind. */
export async function stopAndCheck(master: Master): Promise<void> {
  master.kill("SIGTERM");
  assert.equal((await master.exited).code, 0, master.output());
  await waitAllGone(master.tag);
}

/**
 * The control socket a worker was started with: /proc keeps the environment
 * a process began with, even after it removed the variable.
 */
export function controlSocketOf(pid: number): string {
  const environ = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
  const name = "WORKERPOOL_CONTROL_SOCKET=";
  return environ.find((v) => v.startsWith(name))!.slice(name.length);
}

/** An HTTPS GET of / trusting only `ca`: "<status> <body>". */
export function httpsGet(
  port: number,
  ca: string | undefined,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      { host: "127.0.0.1", port, path: "/", ca, agent: false },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => body += chunk);
        response.on("end", () => resolve(`${response.statusCode} ${body}`));
      },
    );
    request.once("error", reject);
    request.end();
  });
}

/** Linux's sysctl for moving connections queued on a closing listener. */
export const MIGRATE = "/proc/sys/net/ipv4/tcp_migrate_req";

/** Why the load test cannot run here, or false. */
export function migrateSkip(): string | false {
  try {
    const value = readFileSync(MIGRATE, "utf8").trim();
    if (value === "1") return false;
    writeFileSync(MIGRATE, "1");
    writeFileSync(MIGRATE, value);
    return false;
  } catch (error) {
    return `net.ipv4.tcp_migrate_req cannot be set here (${
      (error as Error).message
    }): without it Linux resets connections queued on a closing listener`;
  }
}

/** Sets the sysctl; returns what restores it. */
export function setMigrate(value: string): () => void {
  const old = readFileSync(MIGRATE, "utf8").trim();
  writeFileSync(MIGRATE, value);
  return () => writeFileSync(MIGRATE, old);
}
