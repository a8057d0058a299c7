import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "node:net";
import { serve, type ServeHandlerInfo, upgradeWebSocket } from "../../mod.ts";
import { selfSignedCertificate } from "../_cert.ts";
import {
  cleanup,
  fixture,
  freePort,
  httpGet,
  httpsGet,
  runtime,
  startScript,
  stopAndCheck,
  waitFor,
} from "../_helpers.ts";
import { Connection } from "../_load.ts";
import {
  openWebSocket,
  socketsOnWorkers,
  stopClosesWebSockets,
  type WebSocketClient,
} from "../_websocket.ts";

describe("serve()", () => {
  test("two servers share one port with reusePort", async () => {
    const port = await freePort();
    const a = await serve({ port }, () => new Response("a"));
    const b = await serve({ port }, () => new Response("b"));
    try {
      assert.equal(a.port, port);
      assert.equal(b.port, port);
      assert.equal(a.hostname, "127.0.0.1");
      assert.match(await httpGet(port), /^[ab]$/);
    } finally {
      await Promise.all([a.shutdown(), b.shutdown()]);
    }
  });

  test("shutdown() answers the request in flight, then refuses new ones", async () => {
    const port = await freePort();
    const entered = Promise.withResolvers<void>();
    const gate = Promise.withResolvers<void>();
    const server = await serve({ port }, async () => {
      entered.resolve();
      await gate.promise;
      return new Response("late but whole");
    });
    const inFlight = httpGet(port);
    await entered.promise;
    let finished = false;
    const stopping = server.shutdown().then(() => finished = true);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(finished, false, "shutdown waits for the request");
    gate.resolve();
    assert.equal(await inFlight, "late but whole");
    await stopping;
    await assert.rejects(httpGet(port));
    assert.equal(server.shutdown(), server.shutdown(), "idempotent");
  });

  test("while draining, a request on a keep-alive connection is answered with Connection: close", async () => {
    const port = await freePort();
    const entered = Promise.withResolvers<void>();
    const gate = Promise.withResolvers<void>();
    const server = await serve({ port }, async (request) => {
      if (new URL(request.url).pathname === "/held") {
        entered.resolve();
        await gate.promise;
      }
      return new Response("ok");
    });
    const connection = new Connection(port);
    const other = new Connection(port);
    try {
      await connection.opened;
      const first = await connection.get("/");
      assert.deepEqual([first.body, first.close], ["ok", false]);
      // A request in flight keeps the drain going (for at most 500 ms).
      await other.opened;
      const held = other.get("/held");
      await entered.promise;
      const stopping = server.shutdown();
      // The client goes on using its connection, as wrk or a browser does.
      const during = await connection.get("/");
      assert.deepEqual([during.status, during.body, during.close], [
        200,
        "ok",
        true,
      ]);
      gate.resolve();
      assert.equal((await held).close, true);
      await stopping;
      await assert.rejects(httpGet(port));
    } finally {
      connection.close();
      other.close();
    }
  });

  test("aborting the signal shuts the server down", async () => {
    const port = await freePort();
    const controller = new AbortController();
    const server = await serve(
      { port, signal: controller.signal },
      () => new Response("ok"),
    );
    assert.equal(await httpGet(port), "ok");
    controller.abort();
    await server.shutdown();
    await assert.rejects(httpGet(port));
  });

  test("a port held without reusePort fails with the address", async () => {
    const port = await freePort();
    const holder = await serve(
      { port, reusePort: false },
      () => new Response(),
    );
    try {
      await assert.rejects(
        serve({ port }, () => new Response()),
        { message: new RegExp(`^Cannot listen on 127\\.0\\.0\\.1:${port}: `) },
      );
    } finally {
      await holder.shutdown();
    }
  });

  test("says what reusePort needs instead of letting Deno exit with 70", async () => {
    const port = await freePort();
    // Deno: no deno.json, no --unstable-net. Bun needs no flag at all.
    const script = startScript(fixture("serve_once.ts"), {
      PORT: String(port),
    }, { denoFlags: ["--no-config", "-A"] });
    const { code } = await script.exited;
    if (runtime.name === "deno") {
      assert.equal(code, 2, script.output());
      assert.match(
        script.output(),
        new RegExp(
          `failed: Cannot serve with reusePort on port ${port}: Deno needs --unstable-net`,
        ),
      );
    } else {
      assert.equal(code, 0, script.output());
      assert.match(script.output(), new RegExp(`listening on ${port}`));
    }
  });

  test("rejects bad ports and handlers before listening", async () => {
    for (const port of [-1, 65536, 1.5]) {
      await assert.rejects(serve({ port }, () => new Response()), {
        name: "RangeError",
        message:
          `Cannot serve: port must be an integer from 0 to 65535, got ${port}`,
      });
    }
    await assert.rejects(serve({ port: 1 }, "nope" as never), {
      name: "TypeError",
      message: 'Cannot serve: handler must be a function, got "nope"',
    });
    await assert.rejects(
      serve({ port: 1, onError: 5 as never }, () => new Response()),
      {
        name: "TypeError",
        message: "Cannot serve: onError must be a function, got 5",
      },
    );
  });

  test("a throwing handler answers a bare 500 and passes the error to onError", async () => {
    const port = await freePort();
    const seen: [string, string][] = [];
    const server = await serve({
      port,
      onError(error, request) {
        seen.push([(error as Error).message, new URL(request.url).pathname]);
        if (new URL(request.url).pathname === "/custom") {
          return new Response("sorry", { status: 503 });
        }
      },
    }, (request) => {
      const path = new URL(request.url).pathname;
      if (path === "/async") return Promise.reject(new Error("async boom"));
      if (path === "/ok") return new Response("fine");
      // A forgotten return, sync and async: not a Response.
      if (path === "/nothing") return undefined as unknown as Response;
      if (path === "/text") {
        return Promise.resolve("hello") as unknown as Promise<Response>;
      }
      throw new Error(`sync boom at ${path}`);
    });
    try {
      for (const path of ["/sync", "/async", "/nothing", "/text"]) {
        const response = await rawGet(port, path);
        assert.match(response, /^HTTP\/1\.1 500 /);
        assert.match(response, /\r\n\r\nInternal Server Error$/);
        assert.doesNotMatch(response, /boom|serve_test|at /);
      }
      assert.match(await rawGet(port, "/custom"), /^HTTP\/1\.1 503 [^]*sorry$/);
      assert.equal(await httpGet(port, "/ok"), "fine");
      assert.deepEqual(seen, [
        ["sync boom at /sync", "/sync"],
        ["async boom", "/async"],
        [
          "Cannot answer the request: the handler returned undefined, not a Response",
          "/nothing",
        ],
        [
          'Cannot answer the request: the handler returned "hello", not a Response',
          "/text",
        ],
        ["sync boom at /custom", "/custom"],
      ]);
    } finally {
      await server.shutdown();
    }
  });

  test("without onError, the error and its stack go to the log; a failing onError too", async () => {
    const port = await freePort();
    const script = startScript(fixture("serve_error.ts"), {
      PORT: String(port),
    });
    try {
      await waitFor("the server", () => script.output().includes("listening"));
      const response = await rawGet(port, "/");
      assert.match(response, /^HTTP\/1\.1 500 [^]*Internal Server Error$/);
      assert.doesNotMatch(response, /handler failed|serve_error/);
      await waitFor(
        "the logged error",
        () => /ERROR .*GET \/ failed: handler failed/.test(script.output()),
      );
      assert.match(script.output(), /at .*serve_error\.ts/);
      script.kill("SIGTERM");
      await script.exited;
    } finally {
      script.kill("SIGKILL");
      await script.exited;
    }
  });
});

describe("serve(): the client's address, WebSockets, TLS", () => {
  test("info.remoteAddr is the client's address, in sync and async handlers", async () => {
    const port = await freePort();
    const infos: ServeHandlerInfo[] = [];
    const server = await serve({ port }, async (request, info) => {
      infos.push(info);
      if (new URL(request.url).pathname === "/sync") {
        return new Response(JSON.stringify(info.remoteAddr));
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
      return new Response(JSON.stringify(info.remoteAddr));
    });
    try {
      for (const path of ["/sync", "/async"]) {
        const { body, localPort } = await getFrom(port, path);
        assert.deepEqual(JSON.parse(body), {
          transport: "tcp",
          hostname: "127.0.0.1",
          port: localPort,
        });
      }
      // Once answered, the address is gone, on Deno as on Bun.
      for (const info of infos) {
        assert.throws(() => info.remoteAddr, { name: "TypeError" });
      }
    } finally {
      await server.shutdown();
    }
  });

  test("upgradeWebSocket(): text and binary echo, subprotocol, close codes both ways", async () => {
    const port = await freePort();
    const serverSaw: string[] = [];
    const serverClosed = Promise.withResolvers<string>();
    const server = await serve({ port }, (request) => {
      const path = new URL(request.url).pathname;
      const { socket, response } = upgradeWebSocket(
        request,
        path === "/chat" ? { protocol: "chat.v2" } : {},
      );
      socket.onopen = () => serverSaw.push(`open ${socket.protocol}`);
      socket.onmessage = (event) => {
        const data = event.data;
        if (data === "close please") socket.close(4001, "as asked");
        else if (typeof data === "string") socket.send(`echo ${data}`);
        else {
          serverSaw.push(`binary ${data instanceof ArrayBuffer}`);
          socket.send(new Uint8Array(data).reverse());
        }
      };
      socket.addEventListener("close", (event) => {
        serverClosed.resolve(`${event.code} ${event.reason}`);
      });
      return response;
    });
    try {
      const chat = await openWebSocket(`ws://127.0.0.1:${port}/chat`, [
        "chat.v1",
        "chat.v2",
      ]);
      assert.equal(chat.socket.protocol, "chat.v2");
      assert.equal(await chat.ask("hi"), "echo hi");
      const bytes = await chat.ask(new Uint8Array([1, 2, 3]));
      assert.deepEqual([...new Uint8Array(bytes as ArrayBuffer)], [3, 2, 1]);
      chat.socket.close(4000, "client done");
      assert.deepEqual(await chat.closed, {
        code: 4000,
        reason: "client done",
      });
      assert.equal(await serverClosed.promise, "4000 client done");
      assert.deepEqual(serverSaw, ["open chat.v2", "binary true"]);

      const plain = await openWebSocket(`ws://127.0.0.1:${port}/`);
      assert.equal(plain.socket.protocol, "");
      plain.socket.send("close please");
      assert.deepEqual(await plain.closed, { code: 4001, reason: "as asked" });
    } finally {
      await server.shutdown();
    }
  });

  test("an async handler upgrades after awaits; an upgrade answered otherwise is dropped", async () => {
    const port = await freePort();
    const tick = () => new Promise((resolve) => setTimeout(resolve, 1));
    const refused: string[] = [];
    const refusedClosed = Promise.withResolvers<void>();
    const server = await serve({ port }, async (request, info) => {
      await tick();
      const { socket, response } = upgradeWebSocket(request);
      if (new URL(request.url).pathname === "/refuse") {
        socket.onopen = () => refused.push("open");
        socket.onerror = () => refused.push("error");
        socket.onclose = (event) => {
          refused.push(`close ${event.code} ${event.wasClean}`);
          refusedClosed.resolve();
        };
        // On Deno's own upgradeWebSocket, this would close the server.
        return new Response("no", { status: 403 });
      }
      // Listeners set after another await miss nothing: the socket opens
      // once the response is returned, on Bun as on Deno; until then the
      // request can still be read.
      await tick();
      const who = `${info.remoteAddr.hostname} ${
        request.headers.get("upgrade")
      }`;
      socket.onopen = () => socket.send(`welcome ${who}`);
      socket.onmessage = (event) => socket.send(`echo ${event.data}`);
      return response;
    });
    try {
      await assert.rejects(openWebSocket(`ws://127.0.0.1:${port}/refuse`));
      await refusedClosed.promise;
      assert.deepEqual(refused, ["error", "close 1006 false"]);
      const client = await openWebSocket(`ws://127.0.0.1:${port}/`);
      assert.equal(await client.next(), "welcome 127.0.0.1 websocket");
      assert.equal(await client.ask("again"), "echo again");
      client.socket.close(1000);
      await client.closed;
    } finally {
      await server.shutdown();
    }
  });

  test("upgradeWebSocket() on a request that asks for no WebSocket throws a TypeError", async () => {
    const port = await freePort();
    const server = await serve({ port }, (request) => {
      const path = new URL(request.url).pathname;
      try {
        upgradeWebSocket(request, path === "/ws" ? { protocol: "x" } : {});
        return new Response("upgraded?!");
      } catch (error) {
        return new Response(
          `${(error as Error).name}: ${(error as Error).message}`,
        );
      }
    });
    try {
      assert.equal(
        await httpGet(port),
        "TypeError: Cannot upgrade to a WebSocket: the request has no Upgrade header",
      );
      // A WebSocket that offers no protocol "x".
      await assert.rejects(openWebSocket(`ws://127.0.0.1:${port}/ws`, ["y"]));
      assert.throws(() => upgradeWebSocket("nope" as never), {
        name: "TypeError",
        message:
          'Cannot upgrade to a WebSocket: expected a Request, got "nope"',
      });
    } finally {
      await server.shutdown();
    }
  });

  test("shutdown() closes an open WebSocket with 1001 (going away)", async () => {
    const port = await freePort();
    const server = await serve({ port }, (request) => {
      const { socket, response } = upgradeWebSocket(request);
      socket.onmessage = (event) => socket.send(event.data);
      return response;
    });
    const client = await openWebSocket(`ws://127.0.0.1:${port}/`);
    assert.equal(await client.ask("still here"), "still here");
    await server.shutdown();
    assert.deepEqual(await client.closed, { code: 1001, reason: "going away" });
  });

  test("a WebSocket echo through a pool of two workers", async () => {
    const port = await freePort();
    const master = startScript(fixture("websocket_pool.ts"), {
      FIXTURE_PORT: String(port),
    });
    const clients: WebSocketClient[] = [];
    try {
      const pids = new Set<string>();
      await waitFor("two workers to answer WebSockets", async () => {
        const client = await openWebSocket(`ws://127.0.0.1:${port}/`).catch(
          () => null, // no worker listens yet
        );
        if (client === null) return false;
        clients.push(client);
        const [id, pid, text] = String(await client.ask("hello")).split(" ");
        assert.match(id, /^[01]$/);
        assert.equal(text, "hello");
        pids.add(pid);
        return pids.size === 2;
      });
      for (const client of clients) client.socket.close(1000);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("SIGTERM to a pool closes its open WebSockets with 1001", async () => {
    const port = await freePort();
    const master = startScript(fixture("websocket_pool.ts"), {
      FIXTURE_PORT: String(port),
    });
    try {
      const clients = await socketsOnWorkers(
        `ws://127.0.0.1:${port}/`,
        2,
        "hello",
        (answer) => answer.split(" ")[1]!,
      );
      await stopClosesWebSockets(master, clients);
    } finally {
      await cleanup(master);
    }
  });

  test("cert and key serve HTTPS, trusted by a client given that certificate", async () => {
    const { cert, key } = await selfSignedCertificate();
    const port = await freePort();
    const server = await serve(
      { port, cert, key },
      (request, info) =>
        new Response(
          `${new URL(request.url).protocol} ${info.remoteAddr.hostname}`,
        ),
    );
    try {
      assert.equal(await httpsGet(port, cert), "200 https: 127.0.0.1");
      // A client that does not trust it refuses it.
      await assert.rejects(httpsGet(port, undefined), {
        code: "DEPTH_ZERO_SELF_SIGNED_CERT",
      });
    } finally {
      await server.shutdown();
    }
  });

  test("rejects a lone or malformed cert or key before listening", async () => {
    const { cert, key } = await selfSignedCertificate();
    const bad: [Record<string, unknown>, string][] = [
      [{ cert }, "TLS needs both cert and key, got only cert"],
      [{ key }, "TLS needs both cert and key, got only key"],
      [
        { cert: "cert.pem", key },
        'cert must be a PEM string (-----BEGIN CERTIFICATE-----…), got "cert.pem"',
      ],
      [
        { cert: new Uint8Array(4), key },
        "cert must be a PEM string (-----BEGIN CERTIFICATE-----…), got object Uint8Array",
      ],
      [
        { cert, key: "key.pem" },
        "key must be a PEM string (-----BEGIN PRIVATE KEY-----…), got a string of 7 characters with no -----BEGIN line",
      ],
      [
        { cert, key: 42 },
        "key must be a PEM string (-----BEGIN PRIVATE KEY-----…), got 42",
      ],
    ];
    for (const [options, message] of bad) {
      // Port 1: listening would fail with another message.
      await assert.rejects(
        serve({ port: 1, ...options }, () => new Response()),
        { name: "TypeError", message: `Cannot serve: ${message}` },
      );
    }
  });
});

/** A GET on a fresh connection: the body, and the client's own port. */
function getFrom(
  port: number,
  path: string,
): Promise<{ body: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let text = "";
    let localPort = 0;
    socket.once("error", reject);
    socket.on(
      "data",
      (chunk: Uint8Array) => text += new TextDecoder().decode(chunk),
    );
    socket.once("close", () => {
      const split = text.indexOf("\r\n\r\n");
      if (!text.startsWith("HTTP/1.1 200") || split === -1) {
        reject(new Error(`Bad response: ${JSON.stringify(text.slice(0, 80))}`));
      } else resolve({ body: text.slice(split + 4), localPort });
    });
    socket.connect(port, "127.0.0.1", () => {
      localPort = socket.localPort!;
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      );
    });
  });
}

/** One GET on a fresh connection; resolves with the whole raw response. */
function rawGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let text = "";
    socket.once("error", reject);
    socket.on(
      "data",
      (chunk: Uint8Array) => text += new TextDecoder().decode(chunk),
    );
    socket.once("close", () => resolve(text));
    socket.connect(port, "127.0.0.1", () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      );
    });
  });
}
