/**
 * What the two adapters' websocket.ts share: the socket `upgradeWebSocket()`
 * returns, a standard `WebSocket` over the runtime's own (Deno's
 * `WebSocket`, Bun's ServerWebSocket), which it opens only once the handler
 * has returned the response. Deno upgrades a request the moment
 * `Deno.upgradeWebSocket` is called: after that its headers and
 * `info.remoteAddr` throw `Request closed`, and a handler that then
 * answers anything else closes the whole server (Deno 2.9.6); Bun cannot
 * upgrade before it has its server. Deferred, the upgrade behaves the same
 * on both, and a handler that refuses after all sends its answer.
 *
 * @module
 */
import type { HttpUpgrade } from "./types.ts";

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** An open socket of the runtime under a {@linkcode ServerWebSocket}. */
export interface WebSocketTransport {
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  bufferedAmount(): number;
}

type Handler<E extends Event> = ((this: WebSocket, event: E) => unknown) | null;

/**
 * The server's end of a WebSocket, on either runtime. Its adapter feeds it
 * through the static `opened`, `received`, `failed` and `closed`.
 */
export class ServerWebSocket extends EventTarget implements WebSocket {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSING = CLOSING;
  static readonly CLOSED = CLOSED;
  readonly CONNECTING = CONNECTING;
  readonly OPEN = OPEN;
  readonly CLOSING = CLOSING;
  readonly CLOSED = CLOSED;
  /** Empty, as on Deno's server sockets. */
  readonly url = "";
  readonly extensions = "";
  readonly protocol: string;
  #transport: WebSocketTransport | null = null;
  #state: number = CONNECTING;
  #binaryType: BinaryType = "arraybuffer";
  /** close() called while CONNECTING: the code and reason, for the open. */
  #closeWhenOpen: [number | undefined, string | undefined] | null = null;
  /** The `on…` attributes, each called by a listener added on first set. */
  #handlers = new Map<string, Handler<Event>>();
  /** Sends waiting for a Blob before them to be read, in order. */
  #sending: Promise<void> | null = null;

  constructor(protocol: string) {
    super();
    this.protocol = protocol;
  }

  /** The runtime's socket opened: `open`, unless closed meanwhile. */
  static opened(socket: ServerWebSocket, transport: WebSocketTransport): void {
    socket.#transport = transport;
    if (socket.#closeWhenOpen !== null) {
      transport.close(...socket.#closeWhenOpen);
      return;
    }
    socket.#state = OPEN;
    socket.dispatchEvent(new Event("open"));
  }

  /** A message arrived: text, or binary as an ArrayBuffer. */
  static received(socket: ServerWebSocket, data: string | ArrayBuffer): void {
    // As the standard says: nothing is delivered once closing.
    if (socket.#state !== OPEN) return;
    socket.dispatchEvent(
      new MessageEvent("message", {
        data: typeof data !== "string" && socket.#binaryType === "blob"
          ? new Blob([data])
          : data,
      }),
    );
  }

  /** The connection failed: an `error` event (a `close` follows). */
  static failed(socket: ServerWebSocket, message: string, error?: unknown) {
    // Events of a close come after the call that caused it, as the
    // standard has it (Bun calls its close handler inside ws.close()).
    queueMicrotask(() =>
      socket.dispatchEvent(new ErrorEvent("error", { message, error }))
    );
  }

  /** The socket closed: a `close` event. */
  static closed(
    socket: ServerWebSocket,
    code: number,
    reason: string,
    wasClean: boolean,
  ): void {
    socket.#state = CLOSED;
    socket.#transport = null;
    queueMicrotask(() =>
      socket.dispatchEvent(new CloseEvent("close", { code, reason, wasClean }))
    );
  }

  /**
   * The handler answered otherwise: the socket never opens; it fails
   * (`error`, then `close` with 1006), as a refused connection does.
   */
  static refused(socket: ServerWebSocket): void {
    ServerWebSocket.failed(socket, "The handler did not return the upgrade");
    ServerWebSocket.closed(socket, 1006, "", false);
  }

  get readyState(): number {
    return this.#state;
  }

  get bufferedAmount(): number {
    return this.#transport?.bufferedAmount() ?? 0;
  }

  get binaryType(): BinaryType {
    return this.#binaryType;
  }

  set binaryType(type: BinaryType) {
    // As the standard says: any other value is ignored.
    if (type === "arraybuffer" || type === "blob") this.#binaryType = type;
  }

  get onopen(): Handler<Event> {
    return this.#handlers.get("open") ?? null;
  }
  set onopen(handler: Handler<Event>) {
    this.#setHandler("open", handler);
  }
  get onmessage(): Handler<MessageEvent> {
    return this.#handlers.get("message") ?? null;
  }
  set onmessage(handler: Handler<MessageEvent>) {
    this.#setHandler("message", handler as Handler<Event>);
  }
  get onclose(): Handler<CloseEvent> {
    return this.#handlers.get("close") ?? null;
  }
  set onclose(handler: Handler<CloseEvent>) {
    this.#setHandler("close", handler as Handler<Event>);
  }
  get onerror(): Handler<Event> {
    return this.#handlers.get("error") ?? null;
  }
  set onerror(handler: Handler<Event>) {
    this.#setHandler("error", handler);
  }

  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (this.#state === CONNECTING) {
      throw new DOMException(
        "Cannot send on the WebSocket: it is not open yet",
        "InvalidStateError",
      );
    }
    // The standard discards data sent once closing.
    if (this.#state !== OPEN) return;
    if (!(data instanceof Blob) && this.#sending === null) {
      this.#transport!.send(data);
      return;
    }
    // A Blob is read first; what is sent after it waits its turn.
    const sending = (this.#sending ?? Promise.resolve()).then(async () => {
      const bytes = data instanceof Blob ? await data.arrayBuffer() : data;
      if (this.#state === OPEN) this.#transport!.send(bytes);
    }).catch((error) => {
      this.dispatchEvent(
        new ErrorEvent("error", { message: String(error), error }),
      );
    }).finally(() => {
      if (this.#sending === sending) this.#sending = null;
    });
    this.#sending = sending;
  }

  close(code?: number, reason?: string): void {
    if (code !== undefined && !closeCode(code)) {
      throw new DOMException(
        `Cannot close the WebSocket: the code must be an integer from 1000 to 4999 other than 1004, 1005, 1006 and 1015, got ${code}`,
        "InvalidAccessError",
      );
    }
    const bytes = new TextEncoder().encode(reason ?? "").length;
    if (bytes > 123) {
      throw new DOMException(
        `Cannot close the WebSocket: the reason must be at most 123 bytes, got ${bytes}`,
        "SyntaxError",
      );
    }
    if (this.#state === CLOSING || this.#state === CLOSED) return;
    this.#state = CLOSING;
    if (this.#transport === null) this.#closeWhenOpen = [code, reason];
    else this.#transport.close(code, reason);
  }

  #setHandler(type: string, handler: Handler<Event>): void {
    if (!this.#handlers.has(type)) {
      this.addEventListener(
        type,
        (event) => this.#handlers.get(type)?.call(this, event),
      );
    }
    this.#handlers.set(type, typeof handler === "function" ? handler : null);
  }
}

/**
 * What `upgradeWebSocket()` gives the handler to return: a token its
 * server recognises, never sent as such. Its status reads 101, as the
 * response of `Deno.upgradeWebSocket` (a Response cannot be made with 101
 * on Deno).
 */
class UpgradeResponse extends Response {
  constructor() {
    super(null, { status: 200 });
  }
  override get status(): number {
    return 101;
  }
  override get ok(): boolean {
    return false;
  }
}

/** Begins an upgrade: a CONNECTING socket and the response to return. */
export function beginUpgrade(protocol: string | undefined): HttpUpgrade {
  const socket = new ServerWebSocket(protocol ?? "");
  return {
    socket,
    response: new UpgradeResponse(),
    refuse: () => ServerWebSocket.refused(socket),
  };
}

/** A code a server may send in a close frame. */
function closeCode(code: number): boolean {
  return Number.isInteger(code) && code >= 1000 && code <= 4999 &&
    code !== 1004 && code !== 1005 && code !== 1006 && code !== 1015;
}
