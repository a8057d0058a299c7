// A small, bounded HTTP/1.1 load client for the tests: a few keep-alive
// connections, each sending the next request as soon as the last answer
// arrived, honouring `Connection: close` by opening a new connection. Every
// request that gets no whole answer is counted as failed, with its cause.
import { Socket } from "node:net";

/** What a load run saw. */
export interface LoadResult {
  ok: number;
  failed: number;
  /** The causes of the failures, the first 20. */
  errors: string[];
  /** The bodies seen, with how often. */
  bodies: Map<string, number>;
}

/** A running load; `stop()` ends it and resolves with the counts. */
export interface Load {
  readonly result: LoadResult;
  stop(): Promise<LoadResult>;
}

/** Starts `connections` keep-alive clients on 127.0.0.1:`port`. */
export function startLoad(port: number, connections: number): Load {
  const result: LoadResult = {
    ok: 0,
    failed: 0,
    errors: [],
    bodies: new Map(),
  };
  let running = true;
  const fail = (cause: string) => {
    result.failed++;
    if (result.errors.length < 20) result.errors.push(cause);
  };
  const loops = Array.from(
    { length: connections },
    () => clientLoop(port, () => running, result, fail),
  );
  return {
    result,
    async stop() {
      running = false;
      await Promise.all(loops);
      return result;
    },
  };
}

async function clientLoop(
  port: number,
  running: () => boolean,
  result: LoadResult,
  fail: (cause: string) => void,
): Promise<void> {
  while (running()) {
    const connection = new Connection(port);
    try {
      await connection.opened;
      // Requests on this connection until the server says close.
      while (running()) {
        const response = await connection.get("/");
        result.ok++;
        result.bodies.set(
          response.body,
          (result.bodies.get(response.body) ?? 0) + 1,
        );
        if (response.close) break;
      }
    } catch (error) {
      fail(error instanceof Error ? error.message : String(error));
      // Not a busy loop while nobody listens.
      await new Promise((resolve) => setTimeout(resolve, 10));
    } finally {
      connection.close();
    }
  }
}

export interface Response {
  status: number;
  body: string;
  close: boolean;
}

/** One keep-alive connection, one request at a time. */
export class Connection {
  readonly opened: Promise<void>;
  #socket = new Socket();
  #buffer = "";
  #waiting: {
    resolve: (response: Response) => void;
    reject: (error: Error) => void;
  } | null = null;
  #ended: string | null = null;

  constructor(port: number) {
    this.opened = new Promise((resolve, reject) => {
      this.#socket.once("connect", () => resolve());
      this.#socket.once("error", (error) => reject(error));
    });
    this.opened.catch(() => {});
    this.#socket.on("data", (chunk: Uint8Array) => {
      this.#buffer += new TextDecoder().decode(chunk);
      this.#parse();
    });
    this.#socket.on("error", (error: Error & { code?: string }) => {
      this.#end(`connection error ${error.code ?? error.message}`);
    });
    this.#socket.on("close", () => this.#end("connection closed"));
    this.#socket.connect(port, "127.0.0.1");
  }

  get(path: string): Promise<Response> {
    if (this.#ended !== null) return Promise.reject(new Error(this.#ended));
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      this.#socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
      );
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  #end(why: string): void {
    this.#ended ??= why;
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.reject(
      new Error(
        `${why} with a request unanswered (${this.#buffer.length} bytes read)`,
      ),
    );
  }

  #parse(): void {
    const split = this.#buffer.indexOf("\r\n\r\n");
    if (split === -1 || this.#waiting === null) return;
    const head = this.#buffer.slice(0, split).split("\r\n");
    const headers = new Map(
      head.slice(1).map((line) => {
        const colon = line.indexOf(":");
        return [
          line.slice(0, colon).trim().toLowerCase(),
          line.slice(colon + 1).trim(),
        ];
      }),
    );
    const length = Number(headers.get("content-length"));
    if (!Number.isInteger(length)) {
      this.#end(`a response without content-length: ${head[0]}`);
      return;
    }
    if (this.#buffer.length < split + 4 + length) return;
    const body = this.#buffer.slice(split + 4, split + 4 + length);
    this.#buffer = this.#buffer.slice(split + 4 + length);
    const waiting = this.#waiting;
    this.#waiting = null;
    const status = Number(head[0]!.split(" ")[1]);
    if (status !== 200) {
      waiting.reject(new Error(`status ${status}: ${body.slice(0, 80)}`));
      return;
    }
    waiting.resolve({
      status,
      body,
      close: headers.get("connection")?.toLowerCase() === "close",
    });
  }
}
