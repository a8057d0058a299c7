/**
 * HTTP for the Deno adapter: `Deno.serve` with `reusePort`, and WebSockets
 * (websocket.ts).
 *
 * @module
 */
import type {
  Http,
  HttpHandler,
  HttpServeOptions,
  HttpServerHandle,
} from "../types.ts";

/** websocket.ts, loaded with the first server (see serve). */
let websockets: typeof import("./websocket.ts") | undefined;

/** Serving HTTP. */
export const http: Http = {
  reusePortError() {
    // Without --unstable-net, Deno.serve({ reusePort }) exits the process
    // with code 70 and nothing can catch it; listenDatagram is unstable-net
    // only, so its presence tells beforehand.
    return typeof (Deno as { listenDatagram?: unknown }).listenDatagram ===
        "function"
      ? null
      : 'Deno needs --unstable-net (or "unstable": ["net"] in deno.json)';
  },
  serve,
  upgradeWebSocket(_request, protocol) {
    if (websockets === undefined) {
      throw new TypeError("Cannot upgrade to a WebSocket: no server runs");
    }
    return websockets.beginUpgrade(protocol);
  },
};

/** How long a server Deno stopped waits before it listens again. */
const RELISTEN_MS = 1000;

async function serve(
  options: HttpServeOptions,
  handler: HttpHandler,
): Promise<HttpServerHandle> {
  // The WebSocket code loads with the first server, not with the adapter:
  // it costs a process about 7 ms (its classes extend Response, which Deno
  // loads then; Deno 2.9.6), too much for a master or a worker that
  // serves no HTTP.
  const { acceptWebSocket } = websockets ??= await import("./websocket.ts");
  // Deno's info is ours as it is (a TCP server's address is "tcp"), and
  // only Bun's accept() answers undefined.
  const answer = handler as Deno.ServeHandler<Deno.NetAddr>;
  let port = options.port;
  let current: Deno.HttpServer | null = null;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const listen = () => {
    const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
    const server = Deno.serve({
      port,
      hostname: options.hostname,
      reusePort: options.reusePort,
      onListen: resolve,
      ...options.tls,
    }, answer);
    current = server;
    // An accept that fails (EMFILE) rejects `finished`, and the server
    // serves no more: uncaught, that rejection would end the process
    // (Deno 2.9.6). It is said, and the port listened on again.
    server.finished.catch((error) => {
      if (stopped) return;
      current = null;
      options.onFailure?.(error);
      again();
    });
    return promise;
  };
  const again = () => {
    timer = setTimeout(() => {
      if (stopped) return;
      try {
        listen();
      } catch {
        again(); // still out of file descriptors
      }
    }, RELISTEN_MS);
  };
  const addr = await listen();
  port = addr.port;
  return {
    port: addr.port,
    hostname: addr.hostname,
    accept: (request, upgrade) =>
      acceptWebSocket(request, upgrade) ??
        new Response("Bad Request", { status: 400 }),
    shutdown() {
      stopped = true;
      clearTimeout(timer);
      return current?.shutdown() ?? Promise.resolve();
    },
  };
}
