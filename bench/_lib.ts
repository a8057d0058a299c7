// Process, HTTP and statistics helpers for the benchmarks. They use only
// node: built-ins, so the bench runs under Deno and Bun alike.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, realpathSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { fileURLToPath } from "node:url";
import process from "node:process";

export type RuntimeName = "deno" | "bun";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const BIN: Record<RuntimeName, string> = {
  deno: realpathSync(`${ROOT}node_modules/.bin/deno`),
  bun: realpathSync(`${ROOT}node_modules/.bin/bun`),
};

export function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

/** The command running `script` under `runtime`. */
export function scriptCommand(
  runtime: RuntimeName,
  script: string,
): [string, string[]] {
  return runtime === "deno"
    ? [BIN.deno, ["run", "-A", script]]
    : [BIN.bun, [script]];
}

const live = new Set<Proc>();

/**
 * Stops every process the bench started and has not stopped: on Ctrl-C,
 * SIGTERM or an error, a pool under measurement must not outlive the bench.
 * SIGTERM first, so pools clean up after themselves; SIGKILL for what is
 * left after 3 s, workers included.
 */
export async function stopAll(): Promise<void> {
  const procs = [...live];
  const workers = procs.flatMap((proc) => childrenOf(proc.pid));
  await Promise.all(procs.map((proc) => proc.stop(3000)));
  for (const pid of workers.filter(isAlive)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch (error) {
      if ((error as { code?: string }).code !== "ESRCH") throw error;
    }
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => void stopAll().finally(() => process.exit(130)));
}

/** A process started by the bench, its output collected. */
export class Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<number | string>;
  output = "";
  #listeners: (() => void)[] = [];

  constructor(command: string, args: string[], env: Record<string, string>) {
    this.child = spawn(command, args, {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.pid = this.child.pid!;
    const collect = (chunk: Uint8Array) => {
      this.output += new TextDecoder().decode(chunk);
      for (const listener of this.#listeners) listener();
    };
    this.child.stdout!.on("data", collect);
    this.child.stderr!.on("data", collect);
    live.add(this);
    this.exited = new Promise((resolve) =>
      this.child.on("exit", (code, signal) => {
        live.delete(this);
        resolve(code ?? signal ?? -1);
      })
    );
  }

  static script(
    runtime: RuntimeName,
    script: string,
    env: Record<string, string> = {},
  ): Proc {
    const [command, args] = scriptCommand(runtime, script);
    return new Proc(command, args, env);
  }

  /** Resolves with the first match of `pattern` in the output. */
  waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${pattern} in: ${this.output.slice(-500)}`)),
        timeoutMs,
      );
      const check = () => {
        const match = this.output.match(pattern);
        if (match) {
          clearTimeout(timer);
          this.#listeners = this.#listeners.filter((l) => l !== check);
          resolve(match);
        }
      };
      this.#listeners.push(check);
      check();
    });
  }

  kill(signal: "SIGTERM" | "SIGINT" | "SIGKILL" | "SIGSTOP" = "SIGTERM"): void {
    try {
      process.kill(this.pid, signal);
    } catch (error) {
      if ((error as { code?: string }).code !== "ESRCH") throw error;
    }
  }

  /** SIGTERM, then SIGKILL after `ms`; resolves once exited. */
  async stop(ms = 10_000): Promise<void> {
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), ms);
    await this.exited;
    clearTimeout(timer);
  }
}

/** `deno serve --parallel` of `app` on 127.0.0.1:`port`, `workers` isolates. */
export function denoServeParallel(
  app: string,
  port: number,
  workers: number,
): Proc {
  return new Proc(BIN.deno, [
    "serve",
    "--parallel",
    "-A",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    app,
  ], { DENO_JOBS: String(workers) });
}

/** One GET of `path` on a fresh connection; the body, or null on any failure. */
export function httpOnce(
  port: number,
  timeoutMs = 250,
  path = "/",
): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let text = "";
    const done = (value: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    socket.on("error", () => done(null));
    socket.on("data", (chunk: Uint8Array) => {
      text += new TextDecoder().decode(chunk);
      const split = text.indexOf("\r\n\r\n");
      const length = text.match(/content-length: *(\d+)/i);
      if (
        split !== -1 && length && text.length >= split + 4 + Number(length[1])
      ) {
        done(text.slice(split + 4, split + 4 + Number(length[1])));
      }
    });
    socket.on("close", () => done(null));
    socket.connect(port, "127.0.0.1", () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      );
    });
  });
}

/** Polls `check` every `pollMs` until it returns true; throws after `ms`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 60_000,
  pollMs = 1,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(pollMs);
  }
}

/** Polls `port` until answers from `count` distinct bodies were seen. */
export async function distinctAnswers(
  port: number,
  count: number,
  accept: (body: string) => boolean = () => true,
): Promise<Set<string>> {
  const seen = new Set<string>();
  await until(`${count} distinct answers on ${port}`, async () => {
    const body = await httpOnce(port, 100);
    if (body !== null && accept(body)) seen.add(body);
    return seen.size >= count;
  });
  return seen;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

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

const CLOCK_TICKS = Number(
  spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim() || 100,
);

/** CPU seconds (user + system) `pid` has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Resident memory of `pid`, in MiB. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(status.match(/VmRSS:\s+(\d+)/)![1]) / 1024;
}

/** Whether `pid` runs (zombies count as gone). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Pids whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** `min–max` of the values, for the spread column. */
export function spread(values: number[], digits = 1): string {
  const sorted = [...values].sort((a, b) => a - b);
  return `${sorted[0].toFixed(digits)}–${sorted.at(-1)!.toFixed(digits)}`;
}
