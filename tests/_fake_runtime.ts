// A runtime whose processes are objects: the master's logic runs against it
// with no process spawned, and every signal and exit is under test control.
import { loadRuntime } from "../src/runtime/mod.ts";
import type {
  ChildProcess,
  ExitStatus,
  Runtime,
  SignalName,
  SpawnOptions,
} from "../src/runtime/mod.ts";

/** Thrown by the fake `exit()`, carrying the code. */
export class FakeExit extends Error {
  constructor(readonly code: number) {
    super(`exit(${code})`);
  }
}

/** A fake worker process. */
export class FakeChild implements ChildProcess {
  readonly stdout = null;
  readonly stderr = null;
  readonly signals: SignalName[] = [];
  readonly status: Promise<ExitStatus>;
  /** Signals this child dies of; others are recorded and ignored. */
  diesOf = new Set<SignalName>(["SIGTERM", "SIGINT", "SIGKILL"]);
  exited = false;
  #resolve!: (status: ExitStatus) => void;

  constructor(readonly pid: number, readonly options: SpawnOptions) {
    this.status = new Promise((resolve) => this.#resolve = resolve);
  }

  get workerId(): number {
    return Number(this.options.env?.WORKERPOOL_WORKER_ID);
  }

  kill(signal: SignalName): boolean {
    if (this.exited) return false;
    this.signals.push(signal);
    if (this.diesOf.has(signal)) {
      this.exit(
        signal === "SIGKILL" ? 137 : 0,
        signal === "SIGKILL" ? signal : null,
      );
    }
    return true;
  }

  exit(code: number, signal: string | null = null): void {
    if (this.exited) return;
    this.exited = true;
    this.#resolve({ code, signal });
  }

  unref(): void {}
}

const real = await loadRuntime();

/** The fake runtime: fake processes and signals, the real file system. */
export class FakeRuntime implements Runtime {
  cwd = () => real.cwd();
  makeTempDir = (prefix: string) => real.makeTempDir(prefix);
  remove = (path: string) => real.remove(path);
  readTextFile = (path: string) => real.readTextFile(path);
  writeTextFile = (path: string, text: string) =>
    real.writeTextFile(path, text);
  link = (existing: string, path: string) => real.link(existing, path);
  openAppend = (path: string) => real.openAppend(path);
  readonly name = "deno";
  readonly version = "fake";
  readonly pid = 1000;
  readonly children: FakeChild[] = [];
  readonly env = new Map<string, string>();
  #listeners = new Map<SignalName, Set<() => void>>();

  scriptCommand() {
    return { command: "runtime", args: ["script.ts"] };
  }
  missingPoolPermission() {
    return null;
  }
  getEnv(name: string) {
    return this.env.get(name);
  }
  deleteEnv(name: string) {
    this.env.delete(name);
  }
  spawn(_command: string, options: SpawnOptions): FakeChild {
    const child = new FakeChild(2000 + this.children.length, options);
    this.children.push(child);
    return child;
  }
  kill(): boolean {
    return false;
  }
  isAlive(): boolean {
    return false;
  }
  onSignal(signal: SignalName, listener: () => void) {
    const set = this.#listeners.get(signal) ?? new Set();
    set.add(listener);
    this.#listeners.set(signal, set);
    return () => void set.delete(listener);
  }
  /** Delivers `signal` to the master. */
  raise(signal: SignalName): void {
    for (const listener of this.#listeners.get(signal) ?? []) listener();
  }
  listenerCount(): number {
    let n = 0;
    for (const set of this.#listeners.values()) n += set.size;
    return n;
  }
  exit(code: number): never {
    throw new FakeExit(code);
  }
  unrefTimer(): void {}
  listenUnix() {
    return { close() {} };
  }
  connectUnix(): never {
    throw new Error("The fake runtime has no sockets");
  }
  reusePortError() {
    return null;
  }
  serve(): never {
    throw new Error("The fake runtime has no HTTP");
  }
  /** The children alive now. */
  alive(): FakeChild[] {
    return this.children.filter((c) => !c.exited);
  }
}
