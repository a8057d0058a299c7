import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { serve } from "../../mod.ts";
import {
  fixture,
  freePort,
  httpGet,
  runtime,
  startScript,
} from "../_helpers.ts";

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
  });
});
