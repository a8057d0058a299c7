/**
 * WebSockets for the Deno adapter: `Deno.upgradeWebSocket`, called when the
 * handler has returned the response, feeds the socket the handler got, a
 * {@linkcode ServerWebSocket}. Each message is one more event to dispatch
 * than on Deno's own socket (about 0.3 µs, Deno 2.9.6).
 *
 * @module
 */
import { ServerWebSocket } from "../_websocket.ts";
import type { HttpUpgrade } from "../types.ts";

export { beginUpgrade } from "../_websocket.ts";

/**
 * Upgrades `request`, whose handler answered with `upgrade.response`: the
 * response to send instead, Deno's own; the socket opens once it is sent.
 * Null when Deno refused (the socket then fails).
 */
export function acceptWebSocket(
  request: Request,
  upgrade: HttpUpgrade,
): Response | null {
  const socket = upgrade.socket as ServerWebSocket;
  let deno: { socket: WebSocket; response: Response };
  try {
    deno = Deno.upgradeWebSocket(
      request,
      socket.protocol === "" ? {} : { protocol: socket.protocol },
    );
  } catch (error) {
    // serve() checked the headers Deno checks: not expected, yet said.
    ServerWebSocket.failed(socket, String(error), error);
    ServerWebSocket.closed(socket, 1006, "", false);
    return null;
  }
  const inner = deno.socket;
  inner.binaryType = "arraybuffer";
  inner.onopen = () =>
    ServerWebSocket.opened(socket, {
      send: (data) => inner.send(data),
      close: (code, reason) => inner.close(code, reason),
      bufferedAmount: () => inner.bufferedAmount,
    });
  inner.onmessage = (event) => ServerWebSocket.received(socket, event.data);
  inner.onerror = (event) =>
    ServerWebSocket.failed(socket, (event as ErrorEvent).message);
  // A lost connection closes with code 0 on Deno 2.9.6; the standard,
  // and Bun, say 1006.
  inner.onclose = (event) =>
    ServerWebSocket.closed(
      socket,
      event.code === 0 ? 1006 : event.code,
      event.reason,
      event.wasClean,
    );
  return deno.response;
}
