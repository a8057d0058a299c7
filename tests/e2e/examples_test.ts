import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  cleanup,
  freePort,
  httpGet,
  startScript,
  stopAndCheck,
  waitAllGone,
  waitFor,
} from "../_helpers.ts";
import { openWebSocket, type WebSocketClient } from "../_websocket.ts";

/** Absolute path of an example script. */
function example(name: string): string {
  return fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));
}

describe("examples, run as documented", () => {
  test("sockets.ts: two workers answer on one port; SIGTERM stops the pool", async () => {
    const port = await freePort();
    const master = startScript(example("sockets.ts"), { PORT: String(port) });
    try {
      const pids = new Set<string>();
      await waitFor("both workers to answer", async () => {
        const body = await httpGet(port).catch(() => null); // none listens yet
        if (body === null) return false;
        const match = /^pong from #([01]) (\d+)!\n$/.exec(body);
        assert.ok(match, body);
        pids.add(match[2]);
        return pids.size === 2;
      });
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("websocket.ts: two workers echo WebSockets on one port; SIGTERM closes them with 1001", async () => {
    const port = await freePort();
    const master = startScript(example("websocket.ts"), {
      PORT: String(port),
    });
    try {
      const clients: WebSocketClient[] = [];
      const pids = new Set<string>();
      await waitFor("both workers to answer", async () => {
        const client = await openWebSocket(`ws://127.0.0.1:${port}/`).catch(
          () => null, // no worker listens yet
        );
        if (client === null) return false;
        clients.push(client);
        const answer = String(await client.ask("hello"));
        const match = /^#([01]) (\d+): hello$/.exec(answer);
        assert.ok(match, answer);
        pids.add(match[2]);
        return pids.size === 2;
      });
      master.kill("SIGTERM");
      for (const client of clients) {
        assert.deepEqual(await client.closed, {
          code: 1001,
          reason: "going away",
        });
      }
      assert.equal((await master.exited).code, 0, master.output());
      await waitAllGone(master.tag);
    } finally {
      await cleanup(master);
    }
  });
});
