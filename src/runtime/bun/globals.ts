/**
 * What the Bun adapter uses of Bun's and Node's surface, declared
 * structurally so that publishing needs no type package, and reached only
 * when called: this folder is loaded under Deno too (never run there), and
 * reading `globalThis.process` would cost a Deno process its Node
 * compatibility layer (~10 ms, 8 MB). node:fs is required lazily: its first
 * use costs a Bun process ~4.5 MB.
 *
 * @module
 */
import type { Connection } from "../types.ts";

/** The `Bun` global. */
export function bun(): BunGlobal {
  return (globalThis as unknown as { Bun: BunGlobal }).Bun;
}

/** Node's `process`, a global under Bun. */
export function node(): NodeProcess {
  return (globalThis as unknown as { process: NodeProcess }).process;
}

type NodeFs = typeof import("node:fs");

/** node:fs, required on first use. */
export function fs(): NodeFs {
  return (import.meta as unknown as { require(id: string): NodeFs })
    .require("node:fs");
}

/** The error code of a Node-style error (`ENOENT`…). */
export function code(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

export interface NodeProcess {
  readonly pid: number;
  readonly platform: string;
  readonly execPath: string;
  readonly execArgv: string[];
  readonly argv: string[];
  readonly env: Record<string, string | undefined>;
  readonly stdout: { readonly isTTY?: boolean };
  cwd(): string;
  umask(mask: number): number;
  kill(pid: number, signal: string | number): void;
  on(signal: string, listener: () => void): void;
  off(signal: string, listener: () => void): void;
  exit(code: number): never;
  memoryUsage(): { rss: number; heapUsed: number };
  cpuUsage(): { user: number; system: number };
}

// The few parts of Bun's surface used here, declared structurally so that
// publishing needs no Bun type package.
export interface BunSubprocess {
  readonly pid: number;
  readonly stdout: ReadableStream<Uint8Array> | number | undefined;
  readonly stderr: ReadableStream<Uint8Array> | number | undefined;
  readonly exited: Promise<number>;
  readonly exitCode: number | null;
  readonly signalCode: string | null;
  kill(signal?: string): void;
  unref(): void;
}
export interface BunSocket {
  /** Our state for the socket (a `SocketState` of socket.ts). */
  data: {
    connection: Connection;
    receive(data: Uint8Array): void;
    flush(): void;
    end(error: Error | null): void;
  };
  write(data: Uint8Array): number;
  end(): void;
}
export interface BunSocketHandlers {
  open?(socket: BunSocket): void;
  data(socket: BunSocket, data: Uint8Array): void;
  drain(socket: BunSocket): void;
  close(socket: BunSocket): void;
  error(socket: BunSocket, error: Error): void;
}
export interface BunServer {
  readonly port: number;
  readonly hostname: string;
  stop(closeActiveConnections?: boolean): Promise<void>;
  /** The client's address; null once the request was answered. */
  requestIP(
    request: Request,
  ): { address: string; family: string; port: number } | null;
  /** Upgrades now (the `open` handler runs before it returns); false if not. */
  upgrade(
    request: Request,
    options: { data: unknown; headers?: Record<string, string> | undefined },
  ): boolean;
}
/** A WebSocket of `Bun.serve`; `data` is what `upgrade` was given. */
export interface BunServerWebSocket<Data> {
  readonly data: Data;
  binaryType: "nodebuffer" | "arraybuffer" | "uint8array";
  /** Bytes sent, -1 when queued (backpressure), 0 when dropped. */
  send(data: string | ArrayBufferLike | ArrayBufferView): number;
  close(code?: number, reason?: string): void;
  getBufferedAmount(): number;
}
/** The `websocket` option of `Bun.serve`. */
export interface BunWebSocketHandlers<Data> {
  open(ws: BunServerWebSocket<Data>): void;
  message(
    ws: BunServerWebSocket<Data>,
    message: string | ArrayBuffer | Uint8Array,
  ): void;
  close(ws: BunServerWebSocket<Data>, code: number, reason: string): void;
}
export interface BunGlobal {
  readonly version: string;
  readonly main: string;
  spawn(cmd: string[], options: Record<string, unknown>): BunSubprocess;
  write(path: string, data: string): Promise<number>;
  file(path: string): { text(): Promise<string>; exists(): Promise<boolean> };
  Glob: new (pattern: string) => {
    scanSync(
      options: { cwd: string; onlyFiles: boolean; dot: boolean },
    ): Iterable<string>;
  };
  listen(options: { unix: string; socket: BunSocketHandlers }): {
    stop(closeActiveConnections?: boolean): void;
  };
  connect(
    options: { unix: string; socket: BunSocketHandlers },
  ): Promise<BunSocket>;
  serve<Data>(options: {
    port: number;
    hostname: string;
    reusePort: boolean;
    tls?: { cert: string; key: string } | undefined;
    fetch: (
      request: Request,
      server: BunServer,
    ) => Response | undefined | Promise<Response | undefined>;
    websocket: BunWebSocketHandlers<Data>;
  }): BunServer;
}
