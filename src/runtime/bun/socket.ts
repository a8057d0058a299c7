/**
 * Unix sockets for the Bun adapter: Bun's callback sockets as streams.
 *
 * @module
 */
import type { Connection, Sockets, UnixListener } from "../types.ts";
import { bun, type BunSocket, type BunSocketHandlers } from "./globals.ts";

/** Listening and connecting. */
export const sockets: Sockets = {
  // Bun retries a failed accept itself and never reports it.
  listenUnix(path, onConnection): UnixListener {
    const listener = bun().listen({
      unix: path,
      socket: socketHandlers((socket) => {
        socket.data = new SocketState(socket);
        onConnection(socket.data.connection);
      }),
    });
    let closed = false;
    return {
      close() {
        if (closed) return;
        closed = true;
        listener.stop(false);
      },
    };
  },
  async connectUnix(path) {
    let state: SocketState | undefined;
    const socket = await bun().connect({
      unix: path,
      socket: socketHandlers((socket) => {
        state = socket.data = new SocketState(socket);
      }),
    });
    state ??= socket.data = new SocketState(socket);
    return state.connection;
  },
};

function socketHandlers(
  open: (socket: BunSocket) => void,
): BunSocketHandlers {
  return {
    open,
    data: (socket, data) => socket.data.receive(data),
    drain: (socket) => socket.data.flush(),
    close: (socket) => socket.data?.end(null),
    error: (socket, error) => socket.data?.end(error),
  };
}

/** Adapts Bun's callback socket to a {@linkcode Connection}. */
class SocketState {
  readonly connection: Connection;
  #socket: BunSocket;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #pending: { data: Uint8Array; done: () => void; fail: (e: Error) => void }[] =
    [];
  #ended = false;

  constructor(socket: BunSocket) {
    this.#socket = socket;
    const readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
    });
    this.connection = {
      readable,
      write: (data) => this.#write(data),
      close: () => {
        if (!this.#ended) this.#socket.end();
        this.end(null);
      },
    };
  }

  receive(data: Uint8Array): void {
    // Bun may reuse the buffer after the callback returns.
    if (!this.#ended) this.#controller.enqueue(data.slice());
  }

  /** Writes what the kernel takes now; the rest waits for `drain`. */
  flush(): void {
    for (let head = this.#pending[0]; head; head = this.#pending[0]) {
      const written = this.#socket.write(head.data);
      if (written < 0) return this.end(new Error("Socket closed"));
      if (written < head.data.length) {
        head.data = head.data.subarray(written);
        return;
      }
      this.#pending.shift();
      head.done();
    }
  }

  end(error: Error | null): void {
    if (this.#ended) return;
    this.#ended = true;
    if (error) this.#controller.error(error);
    else this.#controller.close();
    const failure = error ?? new Error("Socket closed");
    for (const write of this.#pending.splice(0)) write.fail(failure);
  }

  #write(data: Uint8Array): Promise<void> {
    if (this.#ended) return Promise.reject(new Error("Socket closed"));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#pending.push({ data, done: resolve, fail: reject });
    if (this.#pending.length === 1) this.flush();
    return promise;
  }
}
