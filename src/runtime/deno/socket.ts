/**
 * Unix sockets for the Deno adapter.
 *
 * @module
 */
import type { Connection, Sockets, UnixListener } from "../types.ts";

/** The pause before accepting again after an accept failed (EMFILE). */
const ACCEPT_RETRY_MS = 100;

/** Listening and connecting. */
export const sockets: Sockets = {
  listenUnix,
  async connectUnix(path) {
    return wrapConn(await Deno.connect({ transport: "unix", path }));
  },
};

function listenUnix(
  path: string,
  onConnection: (connection: Connection) => void,
  onError: (error: unknown) => void,
): UnixListener {
  const listener = Deno.listen({ transport: "unix", path });
  let closed = false;
  (async () => {
    while (!closed) {
      try {
        for await (const conn of listener) onConnection(wrapConn(conn));
        return;
      } catch (error) {
        if (closed) return;
        // Out of file descriptors, say: the listener stays usable; try
        // again shortly rather than spin, and never end the process.
        onError(error);
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
      }
    }
  })();
  return {
    close() {
      if (closed) return;
      closed = true;
      listener.close();
    },
  };
}

/**
 * `conn.readable` allocates a 64 KiB buffer for every read: for a master
 * reading a few small frames a second from each worker that is megabytes of
 * garbage a minute, and an RSS that swings by 15 MB (measured, Deno 2.9).
 * One buffer, reused, and a copy of just the bytes read.
 */
function wrapConn(conn: Deno.Conn): Connection {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  };
  const buffer = new Uint8Array(16 * 1024);
  const readable = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let count: number | null;
      try {
        count = await conn.read(buffer);
      } catch (error) {
        // Closing our end while a read waits ends that read: end-of-file.
        if (!closed) return controller.error(error);
        count = null;
      }
      if (count === null) controller.close();
      else controller.enqueue(buffer.slice(0, count));
    },
    cancel: close,
  }, { highWaterMark: 0 });
  return {
    readable,
    async write(data) {
      for (let offset = 0; offset < data.length;) {
        offset += await conn.write(data.subarray(offset));
      }
    },
    close,
  };
}
