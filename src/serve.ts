/**
 * `serve()`: an HTTP server on `Deno.serve` / `Bun.serve` that shares its
 * port with the other workers through `reusePort`, and
 * `upgradeWebSocket()`, WebSockets on either runtime.
 *
 * @module
 */
import { describe, describeValue } from "./errors.ts";
import { createLogger, getProcessSink, stderrHandler } from "./logging.ts";
import { checkPort, claimPort } from "./_port_lock.ts";
import {
  noteUpgrade,
  pendingUpgrades,
  ServerSockets,
  takeUpgrade,
  upgradeBegun,
} from "./_websockets.ts";
import { loadedRuntime, loadRuntime } from "./runtime/mod.ts";
import type { HttpHandler, HttpServerHandle } from "./runtime/mod.ts";
import type {
  Handler,
  HttpServer,
  Logger,
  ServeOptions,
  UpgradeWebSocketOptions,
  WebSocketUpgrade,
} from "./types.ts";

/**
 * Starts an HTTP server with `reusePort` on by default, so every worker of a
 * pool can listen on the same port. The handler gets the request and
 * `info.remoteAddr`, the client's address; {@linkcode upgradeWebSocket}
 * answers with a WebSocket; `cert` and `key` serve HTTPS.
 *
 * @example A worker answering on a shared port
 * ```ts ignore
 * import { type HttpServer, serve, WorkerBase } from "@workerpool/core";
 *
 * class Web extends WorkerBase {
 *   server?: HttpServer;
 *   constructor(id: number) {
 *     super(id);
 *     this.onStart(async () => {
 *       this.server = await serve({ port: 8080 }, () => new Response("hi"));
 *     });
 *     this.onShutdown(() => this.server?.shutdown());
 *   }
 *   async main() {
 *     while (this.isRunning()) await this.sleep(1000);
 *   }
 * }
 * ```
 */
export async function serve(
  options: ServeOptions,
  handler: Handler,
): Promise<HttpServer> {
  const {
    port = 8080,
    hostname = "127.0.0.1",
    reusePort = true,
    signal,
    onError,
    cert,
    key,
  } = options ?? {};
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot serve: port must be an integer from 0 to 65535, got ${
        describeValue(port)
      }`,
    );
  }
  if (typeof handler !== "function") {
    throw new TypeError(
      `Cannot serve: handler must be a function, got ${describeValue(handler)}`,
    );
  }
  if (onError !== undefined && typeof onError !== "function") {
    throw new TypeError(
      `Cannot serve: onError must be a function, got ${describeValue(onError)}`,
    );
  }
  const tls = tlsOptions(cert, key);
  const runtime = await loadRuntime();
  const missing = reusePort ? runtime.reusePortError() : null;
  if (missing !== null) {
    throw new Error(`Cannot serve with reusePort on port ${port}: ${missing}`);
  }
  const refused = (error: unknown) =>
    new Error(`Cannot listen on ${hostname}:${port}: ${describe(error)}`, {
      cause: error,
    });
  let holder: number | null = null;
  try {
    // Another pool's port is refused before listening takes a connection.
    if (reusePort) holder = await checkPort(runtime, port);
  } catch (error) {
    throw refused(error);
  }
  const report = (error: unknown, request: Request) =>
    logRequestError(error, request, runtime.pid);
  const guarded = guard(handler, onError ?? report, report);
  const drain: Drain = { draining: false, last: 0, inFlight: 0 };
  const sockets = new ServerSockets();
  // What goes back to the runtime for a response that may be special: an
  // upgrade the handler began and answered, or, while draining, a
  // response that closes its connection.
  const answer = (request: Request, response: Response) => {
    if (pendingUpgrades !== 0) {
      const upgrade = takeUpgrade(request);
      if (upgrade?.response === response) {
        sockets.add(upgrade.socket);
        return server.accept(request, upgrade);
      }
      // Begun, then answered otherwise: the socket never opens.
      upgrade?.refuse();
    }
    return drain.draining ? closing(response) : response;
  };
  const counted: HttpHandler = (request, info) => {
    served++;
    drain.last = Date.now();
    const response = guarded(request, info);
    if (!(response instanceof Promise)) {
      return pendingUpgrades === 0 && !drain.draining
        ? response
        : answer(request, response);
    }
    drain.inFlight++;
    inFlight++;
    return response.then((value) => {
      drain.inFlight--;
      inFlight--;
      return pendingUpgrades === 0 && !drain.draining
        ? value
        : answer(request, value);
    });
  };
  let server: HttpServerHandle;
  try {
    server = await runtime.serve({
      port,
      hostname,
      reusePort,
      tls,
      // Out of file descriptors (a flood of idle connections, on Deno): it
      // serves no more until it listens again. With reusePort the other
      // workers serve meanwhile.
      onFailure: (error) =>
        serveLogger(runtime.pid).error(
          `The server on ${hostname}:${port} stopped: ${
            describe(error)
          }; listening again in a second`,
        ),
    }, counted);
  } catch (error) {
    throw refused(error);
  }
  if (reusePort) claimPort(port, holder);
  servers++;
  (globalThis as Record<symbol, unknown>)[UPGRADE] ??= upgradeWebSocket;
  let stopping: Promise<void> | undefined;
  const shutdown = () => {
    // WebSockets are told first (no request of theirs can say Connection:
    // close), and their closing handshakes end before the server stops:
    // Deno's shutdown would send its own close frame ahead of ours, Bun's
    // waits for them.
    if (stopping === undefined) sockets.goAway();
    return stopping ??= closeKeepAlive(drain)
      .then(() => sockets.closed())
      .then(() => server.shutdown())
      .finally(() => open.delete(shutdown));
  };
  open.add(shutdown);
  signal?.addEventListener("abort", shutdown, { once: true });
  return { port: server.port, hostname: server.hostname, shutdown };
}

/**
 * Where the first copy of this package to start a server in a process puts
 * its `upgradeWebSocket`, for the copies that started none.
 */
const UPGRADE = Symbol.for("workerpool.upgradeWebSocket");

/** Requests this process's servers took, all servers together. */
let served = 0;
/** Requests of async handlers not answered yet, all servers together. */
let inFlight = 0;
/** Servers this process started. */
let servers = 0;

/**
 * The requests this process's servers took so far, and those not answered
 * yet; null when it never started a server: what a pool's worker reports
 * in its heartbeat.
 */
export function requestCounts(): { served: number; inFlight: number } | null {
  return servers === 0 ? null : { served, inFlight };
}

/**
 * Upgrades a request a {@linkcode serve} handler received to a WebSocket,
 * on Deno (`Deno.upgradeWebSocket`) and on Bun alike. The handler returns
 * `response`; `socket`, a standard `WebSocket`, opens once it has
 * (`open`, then `message` events; `send()`, `close()`). Until then the
 * request can still be read; a handler that answers otherwise after all
 * sends that answer, and the socket fails without opening. Call it while
 * the handler runs. When its server drains (`shutdown()`, which a pool's
 * worker runs on SIGTERM), an open WebSocket is closed with code 1001
 * (going away).
 *
 * @example A WebSocket echo, and plain HTTP for other requests
 * ```ts ignore
 * import { serve, upgradeWebSocket } from "@workerpool/core";
 *
 * await serve({ port: 8080 }, (request) => {
 *   if (request.headers.get("upgrade") !== "websocket") {
 *     return new Response("ask for a WebSocket\n");
 *   }
 *   const { socket, response } = upgradeWebSocket(request);
 *   socket.onmessage = (event) => socket.send(event.data);
 *   return response;
 * });
 * ```
 *
 * @param request A request of a `serve()` handler asking for a WebSocket
 *   (`Upgrade: websocket`).
 * @param options The subprotocol to speak.
 * @returns The server's end of the WebSocket, and the response to return.
 * @throws {TypeError} When the request does not ask for a WebSocket (no
 *   `Upgrade: websocket`, `Sec-WebSocket-Key` or version 13), does not offer
 *   `options.protocol`, was upgraded already, or no server was started.
 */
export function upgradeWebSocket(
  request: Request,
  options: UpgradeWebSocketOptions = {},
): WebSocketUpgrade {
  const refuse = (why: string) =>
    new TypeError(`Cannot upgrade to a WebSocket: ${why}`);
  if (!(request instanceof Request)) {
    throw refuse(`expected a Request, got ${describeValue(request)}`);
  }
  const runtime = loadedRuntime();
  if (servers === 0 || runtime === undefined) {
    // Another copy of this package started the server (the `workerpool`
    // command installed at one version, the app importing another): the
    // copy that serves the request upgrades it.
    const other = (globalThis as Record<symbol, unknown>)[UPGRADE];
    if (typeof other === "function" && other !== upgradeWebSocket) {
      return (other as typeof upgradeWebSocket)(request, options);
    }
    throw refuse("no serve() server was started in this process");
  }
  const { protocol } = options ?? {};
  const why = notAnUpgrade(request.headers, protocol);
  if (why !== null) throw refuse(why);
  if (upgradeBegun(request)) throw refuse("the request was upgraded already");
  const begun = runtime.upgradeWebSocket(request, protocol);
  noteUpgrade(request, begun);
  return { socket: begun.socket, response: begun.response };
}

/**
 * Why a request with these headers cannot be upgraded to a WebSocket
 * speaking `protocol`, or null: the checks of `Deno.upgradeWebSocket`,
 * made on Bun too, and before anything is upgraded.
 */
function notAnUpgrade(headers: Headers, protocol: unknown): string | null {
  const upgrade = headers.get("upgrade");
  if (upgrade === null) return "the request has no Upgrade header";
  if (!listed(upgrade, "websocket")) {
    return `the request asks for Upgrade: ${upgrade}, not websocket`;
  }
  if (!listed(headers.get("connection"), "upgrade")) {
    return "the request's Connection header does not say Upgrade";
  }
  if (headers.get("sec-websocket-key") === null) {
    return "the request has no Sec-WebSocket-Key header";
  }
  const version = headers.get("sec-websocket-version");
  if (version !== "13") {
    return `the request asks for WebSocket version ${version}, not 13`;
  }
  if (protocol === undefined) return null;
  const offered = headers.get("sec-websocket-protocol");
  return typeof protocol === "string" && listed(offered, protocol, false)
    ? null
    : `protocol ${describeValue(protocol)} is not one the client offered (${
      offered ?? "none"
    })`;
}

/** Whether `token` is in the comma-separated header `value`. */
function listed(
  value: string | null,
  token: string,
  ignoreCase = true,
): boolean {
  if (value === null) return false;
  return value.split(",").some((item) =>
    (ignoreCase ? item.trim().toLowerCase() : item.trim()) === token
  );
}

/** The TLS options, checked: both PEM strings, or neither. */
function tlsOptions(
  cert: unknown,
  key: unknown,
): { cert: string; key: string } | undefined {
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new TypeError(
      `Cannot serve: TLS needs both cert and key, got only ${
        cert === undefined ? "key" : "cert"
      }`,
    );
  }
  if (!isPem(cert)) {
    throw new TypeError(
      `Cannot serve: cert must be a PEM string (-----BEGIN CERTIFICATE-----…), got ${
        typeof cert === "string" && cert.length > 40
          ? `${JSON.stringify(cert.slice(0, 40))}…`
          : describeValue(cert)
      }`,
    );
  }
  if (!isPem(key)) {
    // A private key is never printed, not even a part of it.
    throw new TypeError(
      `Cannot serve: key must be a PEM string (-----BEGIN PRIVATE KEY-----…), got ${
        typeof key === "string"
          ? `a string of ${key.length} characters with no -----BEGIN line`
          : describeValue(key)
      }`,
    );
  }
  return { cert, key };
}

function isPem(value: unknown): value is string {
  return typeof value === "string" && value.includes("-----BEGIN ");
}

/** How long a stopping server may go on answering with `Connection: close`. */
const DRAIN_MS = 500;
/** A stopping server that took no request for this long stops at once. */
const QUIET_MS = 50;

/** A server's drain: since when it drains, its last request, the open ones. */
interface Drain {
  draining: boolean;
  /** When the last request came (ms since the epoch). */
  last: number;
  /** Requests of async handlers not answered yet. */
  inFlight: number;
}

/**
 * Before a server stops listening, and closes its idle keep-alive
 * connections (where a client may be sending a request at that very
 * moment, which then fails), it answers for a while with `Connection:
 * close`: a client that sends requests on a connection learns from the
 * answer to open a new one, which another worker takes. It goes on while
 * requests are in flight or came in the last `QUIET_MS`, at most
 * `DRAIN_MS`.
 */
async function closeKeepAlive(drain: Drain): Promise<void> {
  drain.draining = true;
  const end = Date.now() + DRAIN_MS;
  for (;;) {
    const now = Date.now();
    const quietIn = drain.inFlight > 0
      ? QUIET_MS
      : QUIET_MS - (now - drain.last);
    const wait = Math.min(quietIn, end - now);
    if (wait <= 0) return;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** `response`, telling the client to close the connection after it. */
function closing(response: Response): Response {
  try {
    response.headers.set("connection", "close");
    return response;
  } catch {
    // Immutable headers (a Response.redirect, a fetched response): a copy.
    const headers = new Headers(response.headers);
    headers.set("connection", "close");
    return new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  }
}

/** The shutdown of every server of this process not yet shut down. */
const open = new Set<() => Promise<void>>();

/**
 * Shuts down, gracefully, every server this process still has, and waits
 * until their in-flight requests are answered: a pool's worker does this
 * before it exits, so a server stopped by its `signal` (which nobody
 * awaits), or never stopped at all, still answers what it took.
 */
export function shutdownServers(): Promise<void> {
  return Promise.all([...open].map((shutdown) => shutdown())).then(() => {});
}

type ErrorHandler = NonNullable<ServeOptions["onError"]>;

/**
 * The handler, answering a plain 500 that shows nothing of the error when
 * it throws (Bun's own answer is a development page with the source path),
 * after `onError`, whose response is sent instead when it returns one. A
 * sync handler stays sync: no promise per request.
 */
function guard(
  handler: Handler,
  onError: ErrorHandler,
  report: (error: unknown, request: Request) => void,
): Handler {
  const fail = async (error: unknown, request: Request) => {
    try {
      const response = await onError(error, request);
      if (response instanceof Response) return response;
    } catch (failure) {
      // Both are said: the handler's error, and onError's own.
      report(error, request);
      report(failure, request);
    }
    return new Response("Internal Server Error", {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  };
  // What is not a Response (a forgotten return) is an error too: Bun would
  // answer 200 with its welcome page, Deno 500, neither telling onError.
  const check = (response: unknown, request: Request) =>
    response instanceof Response
      ? response
      : fail(notAResponse(response), request);
  return (request, info) => {
    try {
      const response = handler(request, info);
      return response instanceof Promise
        ? response.then(
          (value) => check(value, request),
          (error) => fail(error, request),
        )
        : check(response, request);
    } catch (error) {
      return fail(error, request);
    }
  };
}

function notAResponse(value: unknown): TypeError {
  return new TypeError(
    `Cannot answer the request: the handler returned ${
      describeValue(value)
    }, not a Response`,
  );
}

const stderr = stderrHandler("DEBUG");

/** Where serve() logs: the worker's log in a pool, else stderr. */
function serveLogger(pid: number): Logger {
  const sink = getProcessSink() ??
    ((record) => stderr.handle({ ...record, workerId: null, pid }));
  return createLogger("workerpool.serve", sink);
}

/**
 * The default `onError`: the error, with its stack, in the worker's log
 * (also what the `workerpool` command's access log calls when the app has
 * no `onError`).
 */
export function logRequestError(
  error: unknown,
  request: Request,
  pid: number,
): void {
  // Relative on Bun for an HTTP/1.0 request without a Host header.
  const path = new URL(request.url, "http://localhost").pathname;
  serveLogger(pid).error(
    `${request.method} ${path} failed: ${describe(error)}`,
    error,
  );
}
