import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  cleanup,
  freePort,
  httpGet,
  startScript,
  stopAndCheck,
  waitFor,
} from "../_helpers.ts";
import { socketsOnWorkers, stopClosesWebSockets } from "../_websocket.ts";

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
      const clients = await socketsOnWorkers(
        `ws://127.0.0.1:${port}/`,
        2,
        "hello",
        (answer) => {
          const match = /^#([01]) (\d+): hello$/.exec(answer);
          assert.ok(match, answer);
          return match[2]!;
        },
      );
      await stopClosesWebSockets(master, clients);
    } finally {
      await cleanup(master);
    }
  });
});
