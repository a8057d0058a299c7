import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "node:net";
import { serve } from "../../mod.ts";
import {
  fixture,
  freePort,
  httpGet,
  runtime,
  startScript,
  waitFor,
} from "../_helpers.ts";
import { Connection } from "../_load.ts";

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
