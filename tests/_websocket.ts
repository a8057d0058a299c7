// A WebSocket client for the tests, on the runtime's own WebSocket: what
// it receives is queued, so no message is missed between two awaits.

import assert from "node:assert/strict";
import { type Master, waitAllGone, waitFor } from "./_helpers.ts";

/** How a WebSocket closed, as its client saw it. */
export interface Closed {
  code: number;
  reason: string;
}

/** An open WebSocket client. */
export interface WebSocketClient {
  readonly socket: WebSocket;
  /** Resolves with the next message (text, or an ArrayBuffer). */
  next(): Promise<string | ArrayBuffer>;
  /** Sends `data` and resolves with the next message. */
  ask(data: string | Uint8Array): Promise<string | ArrayBuffer>;
  /** Resolves once closed, with the code and reason; never rejects. */
  readonly closed: Promise<Closed>;
}

/** Opens a WebSocket to `url`; rejects if it closes before it opened. */
export function openWebSocket(
  url: string,
  protocols: string[] = [],
): Promise<WebSocketClient> {
  const socket = new WebSocket(url, protocols);
  socket.binaryType = "arraybuffer";
  const messages: (string | ArrayBuffer)[] = [];
  const waiting: ((message: string | ArrayBuffer) => void)[] = [];
  socket.onmessage = (event) => {
    const take = waiting.shift();
    if (take) take(event.data);
    else messages.push(event.data);
  };
  const closed = new Promise<Closed>((resolve) => {
    socket.addEventListener("close", (event) => {
      resolve({ code: event.code, reason: event.reason });
      for (const take of waiting.splice(0)) {
        take(`closed before an answer: ${event.code}`);
      }
    });
  });
  const next = () =>
    messages.length > 0
      ? Promise.resolve(messages.shift()!)
      : new Promise<string | ArrayBuffer>((resolve) => waiting.push(resolve));
  return new Promise((resolve, reject) => {
    socket.onopen = () =>
      resolve({
        socket,
        next,
        ask(data) {
          socket.send(data);
          return next();
        },
        closed,
      });
    closed.then(({ code }) =>
      reject(new Error(`${url} closed before it opened (code ${code})`))
    );
  });
}

/**
 * Opens WebSockets to `url`, sending `message` on each, until `count`
 * distinct pids answered (`pidOf` reads the pid in an answer, and checks
 * the answer); resolves with every client opened. Connections refused
 * (no worker listens yet) are tried again.
 */
export async function socketsOnWorkers(
  url: string,
  count: number,
  message: string,
  pidOf: (answer: string) => string,
): Promise<WebSocketClient[]> {
  const clients: WebSocketClient[] = [];
  const pids = new Set<string>();
  await waitFor(`${count} workers to answer WebSockets`, async () => {
    const client = await openWebSocket(url).catch(() => null);
    if (client === null) return false;
    clients.push(client);
    pids.add(pidOf(String(await client.ask(message))));
    return pids.size === count;
  });
  return clients;
}

/**
 * SIGTERM to `master`: every client is closed with 1001 "going away", the
 * master exits 0 and leaves no process behind.
 */
export async function stopClosesWebSockets(
  master: Master,
  clients: WebSocketClient[],
): Promise<void> {
  master.kill("SIGTERM");
  for (const client of clients) {
    assert.deepEqual(await client.closed, { code: 1001, reason: "going away" });
  }
  assert.equal((await master.exited).code, 0, master.output());
  await waitAllGone(master.tag);
}
