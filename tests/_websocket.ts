// A WebSocket client for the tests, on the runtime's own WebSocket: what
// it receives is queued, so no message is missed between two awaits.

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
