// A runtime whose processes, sockets and clock are objects: the master's
// logic runs against it with no process spawned and no real time passing;
// every exit, frame and millisecond is under the test's control.
import { loadRuntime } from "../src/runtime/mod.ts";
import type {
  ChildProcess,
  Connection,
  ExitStatus,
  MainThread,
  NotifySocket,
  ProcessUsage,
  Runtime,
  SignalName,
  SpawnOptions,
  Timer,
  Watcher,
} from "../src/runtime/mod.ts";

/** Thrown by the fake `exit()`, carrying the code. */
export class FakeExit extends Error {
  constructor(readonly code: number) {
    super(`exit(${code})`);
  }
}

/** One end of an in-memory connection pair. */
export class FakeConnection implements Connection {
  readonly readable: ReadableStream<Uint8Array>;
  peer!: FakeConnection;
  closed = false;
  #controller!: ReadableStreamDefaultController<Uint8Array>;

  constructor() {
    this.readable = new ReadableStream({
      start: (controller) => void (this.#controller = controller),
    });
  }

  static pair(): [FakeConnection, FakeConnection] {
    const a = new FakeConnection();
    const b = new FakeConnection();
    a.peer = b;
    b.peer = a;
    return [a, b];
  }

  write(data: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new Error("Socket closed"));
    this.peer.#receive(data.slice());
    return Promise.resolve();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#end();
    this.peer.#end();
  }

  #receive(data: Uint8Array): void {
    if (!this.closed) this.#controller.enqueue(data);
  }

  #end(): void {
    try {
      this.#controller.close();
    } catch {
      // Already closed: a second end changes nothing.
    }
    this.closed = true;
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

  constructor(
    readonly runtime: FakeRuntime,
    readonly pid: number,
    readonly options: SpawnOptions,
  ) {
    this.status = new Promise((resolve) => this.#resolve = resolve);
  }

  get workerId(): number {
    return Number(this.options.env?.WORKERPOOL_WORKER_ID);
  }

  get token(): string {
    return this.options.env?.WORKERPOOL_TOKEN ?? "";
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

  /** Connects to the master's control socket as this child would. */
  async connect(): Promise<FakeWorkerEnd> {
    const socket = this.options.env?.WORKERPOOL_CONTROL_SOCKET ?? "";
    return new FakeWorkerEnd(await this.runtime.connectUnix(socket));
  }

  /** Connects and says hello. */
  async hello(): Promise<FakeWorkerEnd> {
    const end = await this.connect();
    end.send({
      t: "hello",
      id: this.workerId,
      pid: this.pid,
      token: this.token,
    });
    return end;
  }
}

/** The worker's end of a control connection, driven by the test. */
export class FakeWorkerEnd {
  constructor(readonly connection: Connection) {}

  get closed(): boolean {
    return (this.connection as FakeConnection).closed;
  }

  send(message: unknown): void {
    this.raw(JSON.stringify(message) + "\n");
  }

  raw(text: string): void {
    this.connection.write(new TextEncoder().encode(text)).catch(() => {});
  }
}

interface PendingTimer {
  at: number;
  seq: number;
  callback: () => void;
}

const real = await loadRuntime();

/** The fake runtime: fake processes, sockets, clock; the real file system. */
export class FakeRuntime implements Runtime {
  cwd = () => real.cwd();
  // No stale control directory to find: the real temporary folder holds
  // other pools' directories, which a fake isAlive() would take for dead.
  tempDir = () => "/fake-tmp";
  readDir = () => [];
  makeTempDir = (prefix: string) => real.makeTempDir(prefix);
  remove = (path: string) => real.remove(path);
  readTextFile = (path: string) => real.readTextFile(path);
  readText = (path: string) => real.readText(path);
  readTail = (path: string, bytes: number) => real.readTail(path, bytes);
  writeTextFile = (path: string, text: string) =>
    real.writeTextFile(path, text);
  link = (existing: string, path: string) => real.link(existing, path);
  openAppend = (path: string) => real.openAppend(path);
  readonly name = "deno";
  readonly version = "fake";
  readonly pid = 1000;
  readonly children: FakeChild[] = [];
  readonly env = new Map<string, string>();
  readonly stderr: string[] = [];
  #listeners = new Map<SignalName, Set<() => void>>();
  #sockets = new Map<string, (connection: Connection) => void>();
  #now = 0;
  #seq = 0;
  #timers = new Map<number, PendingTimer>();

  scriptCommand() {
    return { command: "runtime", args: ["script.ts"] };
  }
  moduleCommand(script: string, flags: string[] = [], args: string[] = []) {
    return { command: "runtime", args: [...flags, script, ...args] };
  }
  mainModule() {
    return "file:///script.ts";
  }
  args() {
    return [];
  }
  setEnv(name: string, value: string) {
    this.env.set(name, value);
  }
  stdoutIsTerminal() {
    return false;
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
    const child = new FakeChild(this, 2000 + this.children.length, options);
    this.children.push(child);
    return child;
  }
  kill(): boolean {
    return false;
  }
  isAlive(): boolean {
    return false;
  }
  exists(): boolean {
    return false;
  }
  /** Main threads per pid, set by tests; null when unset. */
  readonly threads = new Map<number, MainThread>();
  mainThread(pid: number): MainThread | null {
    return this.threads.get(pid) ?? null;
  }
  /** The open-file limit the master sees; null: unknown. */
  limit: number | null = null;
  fileLimit(): Promise<number | null> {
    return Promise.resolve(this.limit);
  }
  usage(): ProcessUsage {
    return { rss: 30 * 1024 * 1024, heapUsed: 5 * 1024 * 1024, cpuTime: 1000 };
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
  writeStdout(_data: Uint8Array): Promise<void> {
    return Promise.resolve();
  }
  watch(): Watcher {
    return { close() {} };
  }
  writeStderr(data: Uint8Array): Promise<void> {
    this.stderr.push(new TextDecoder().decode(data));
    return Promise.resolve();
  }
  unrefTimer(): void {}

  // The clock: time passes only in advance() and pause().
  now(): number {
    return this.#now;
  }
  setTimeout(callback: () => void, ms: number): Timer {
    const seq = ++this.#seq;
    this.#timers.set(seq, { at: this.#now + Math.max(0, ms), seq, callback });
    return { seq } as unknown as Timer;
  }
  clearTimeout(timer: Timer | undefined): void {
    if (timer !== undefined) {
      this.#timers.delete((timer as unknown as { seq: number }).seq);
    }
  }
  /** Lets `ms` pass, running each timer when due, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      const next = [...this.#timers.values()]
        .filter((t) => t.at <= end)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (next === undefined) break;
      this.#timers.delete(next.seq);
      this.#now = Math.max(this.#now, next.at);
      next.callback();
    }
    this.#now = end;
    await settle();
  }
  /**
   * The process stood still for `ms` (SIGSTOP, a VM pause): the clock jumps
   * and the timers that came due meanwhile run late, all at once.
   */
  async pause(ms: number): Promise<void> {
    this.#now += ms;
    await this.advance(0);
  }

  listenUnix(path: string, onConnection: (connection: Connection) => void) {
    this.#sockets.set(path, onConnection);
    return { close: () => void this.#sockets.delete(path) };
  }
  connectUnix(path: string): Promise<Connection> {
    const accept = this.#sockets.get(path);
    if (accept === undefined) {
      return Promise.reject(new Error(`Connection refused: ${path}`));
    }
    const [master, worker] = FakeConnection.pair();
    accept(master);
    return Promise.resolve(worker);
  }
  reusePortError() {
    return null;
  }
  serve(): never {
    throw new Error("The fake runtime has no HTTP");
  }
  upgradeWebSocket(): never {
    throw new Error("The fake runtime has no HTTP");
  }
  /** The datagrams sent to notify sockets, in order. */
  readonly notifications: { path: string; message: string }[] = [];
  /** When set, openNotifySocket() rejects with it. */
  notifyRefusal: Error | null = null;
  /** While set, sends fail as on a receiver whose queue is full. */
  notifyQueueFull = false;
  openNotifySocket(path: string): Promise<NotifySocket> {
    if (this.notifyRefusal !== null) return Promise.reject(this.notifyRefusal);
    let open = true;
    return Promise.resolve({
      send: (message: string) => {
        if (!open) return "the socket is closed";
        if (this.notifyQueueFull) {
          return "EAGAIN (the receiver's queue is full)";
        }
        this.notifications.push({ path, message });
        return null;
      },
      // The fake clock, as CLOCK_MONOTONIC would read it.
      monotonicUsec: () => BigInt(Math.round(this.#now * 1000)),
      close: () => void (open = false),
    });
  }
  /** The children alive now. */
  alive(): FakeChild[] {
    return this.children.filter((c) => !c.exited);
  }
  /** The live child of worker `id`. */
  child(id: number): FakeChild {
    const child = this.alive().find((c) => c.workerId === id);
    if (child === undefined) throw new Error(`No live child for worker ${id}`);
    return child;
  }
}

/** Lets promise callbacks and stream reads run to quiescence. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise((resolve) => setTimeout(resolve, 0));
  for (let i = 0; i < 20; i++) await Promise.resolve();
}
