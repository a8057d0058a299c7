/**
 * HTTP for the Bun adapter: `Bun.serve` with `reusePort`, and WebSockets
 * (websocket.ts).
 *
 * @module
 */
import type { Http, HttpRequestInfo, HttpServerHandle } from "../types.ts";
import { bun, type BunServer } from "./globals.ts";

/** websocket.ts, loaded with the first server (see serve). */
let websockets: typeof import("./websocket.ts") | undefined;

/** Serving HTTP. */
export const http: Http = {
  reusePortError: () => null,
  async serve(options, handler): Promise<HttpServerHandle> {
    // The WebSocket code loads with the first server, not with the
    // adapter, as on Deno: a master never needs it.
    const { acceptWebSocket, websocketHandlers } = websockets ??= await import(
      "./websocket.ts"
    );
    // Bun goes on accepting when out of file descriptors: no failure to say.
    const { port, hostname, reusePort, tls } = options;
    const server = bun().serve({
      port,
      hostname,
      reusePort,
      tls,
      fetch: (request, server) =>
        handler(request, new RequestInfo(request, server)),
      websocket: websocketHandlers,
    });
    return {
      port: server.port,
      hostname: server.hostname,
      accept: (request, upgrade) =>
        acceptWebSocket(server, request, upgrade)
          ? undefined // Bun sent the 101 itself
          : new Response("Bad Request", { status: 400 }),
      // stop(false) stops listening and waits for in-flight requests (and
      // open WebSockets).
      shutdown: () => server.stop(false),
    };
  },
  upgradeWebSocket(_request, protocol) {
    if (websockets === undefined) {
      throw new TypeError("Cannot upgrade to a WebSocket: no server runs");
    }
    return websockets.beginUpgrade(protocol);
  },
};

/**
 * A handler's `info` on Bun: the client's address is looked up when read
 * (a request on Bun has none of its own), so a handler that never reads it
 * pays one small object. Bun forgets it once the request is answered;
 * reading it then throws, as on Deno (hence no cache).
 */
class RequestInfo implements HttpRequestInfo {
  #request: Request;
  #server: BunServer;

  constructor(request: Request, server: BunServer) {
    this.#request = request;
    this.#server = server;
  }

  get remoteAddr(): HttpRequestInfo["remoteAddr"] {
    const ip = this.#server.requestIP(this.#request);
    if (ip === null) {
      throw new TypeError(
        "Cannot read info.remoteAddr: the request was answered already",
      );
    }
    return { transport: "tcp", hostname: ip.address, port: ip.port };
  }
}
