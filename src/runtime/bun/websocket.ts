/**
 * WebSockets for the Bun adapter: `Bun.serve`'s one set of `websocket`
 * handlers feeds each socket's {@linkcode ServerWebSocket} (its `data`);
 * the upgrade happens when the handler has returned the response.
 *
 * @module
 */
import { ServerWebSocket } from "../_websocket.ts";
import type { HttpUpgrade } from "../types.ts";
import type {
  BunServer,
  BunServerWebSocket,
  BunWebSocketHandlers,
} from "./globals.ts";

export { beginUpgrade } from "../_websocket.ts";

/** `Bun.serve`'s `websocket` option. */
export const websocketHandlers: BunWebSocketHandlers<ServerWebSocket> = {
  open(ws) {
    // Binary messages arrive as ArrayBuffers, no copy (not Buffers).
    ws.binaryType = "arraybuffer";
    ServerWebSocket.opened(ws.data, transport(ws));
  },
  message(ws, message) {
    ServerWebSocket.received(
      ws.data,
      typeof message === "string" || message instanceof ArrayBuffer
        ? message
        : message.slice().buffer as ArrayBuffer,
    );
  },
  close(ws, code, reason) {
    // 1006: the connection was lost, with no close frame.
    if (code === 1006) ServerWebSocket.failed(ws.data, "Unexpected EOF");
    ServerWebSocket.closed(ws.data, code, reason, code !== 1006);
  },
};

/**
 * Upgrades `request`, whose handler answered with `upgrade.response`: the
 * socket opens before this returns. False when Bun refused (the socket
 * then fails).
 */
export function acceptWebSocket(
  server: BunServer,
  request: Request,
  upgrade: HttpUpgrade,
): boolean {
  const socket = upgrade.socket as ServerWebSocket;
  const headers = socket.protocol === ""
    ? undefined
    : { "Sec-WebSocket-Protocol": socket.protocol };
  if (server.upgrade(request, { data: socket, headers })) return true;
  upgrade.refuse();
  return false;
}

function transport(ws: BunServerWebSocket<ServerWebSocket>) {
  return {
    send: (data: string | ArrayBufferLike | ArrayBufferView) => {
      ws.send(data);
    },
    close: (code?: number, reason?: string) => ws.close(code, reason),
    bufferedAmount: () => ws.getBufferedAmount(),
  };
}
