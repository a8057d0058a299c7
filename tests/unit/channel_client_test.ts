// The worker's end of the control channel, against an in-memory connection
// whose connect completes when the test says so.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ChannelClient, MAX_QUEUED } from "../../src/_channel_client.ts";
import type { Connection, Runtime } from "../../src/runtime/mod.ts";
import { FakeConnection, settle } from "../_fake_runtime.ts";

function pending() {
  const connect = Promise.withResolvers<Connection>();
  const runtime = { connectUnix: () => connect.promise } as unknown as Runtime;
  const [master, worker] = FakeConnection.pair();
  const received: string[] = [];
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of master.readable) {
      received.push(...decoder.decode(chunk).split("\n").filter(Boolean));
    }
  })();
  return { runtime, connect, master, worker, received, reading };
}

const hello = { t: "hello", id: 1, pid: 2, token: "x" } as const;

describe("ChannelClient", () => {
  test("hello goes first, heartbeats next, then the rest in order", async () => {
    const { runtime, connect, worker, received } = pending();
    const client = new ChannelClient(runtime, "/control.sock", hello);
    // Sent before the connection exists, as a worker starts.
    client.send({ t: "ready" });
    client.send({ t: "hb" });
    client.send({ t: "bye", code: 0 });
    connect.resolve(worker);
    await client.flush();
    await settle();
    assert.deepEqual(received.map((f) => JSON.parse(f).t), [
      "hello",
      "hb",
      "ready",
      "bye",
    ]);
  });

  test("holds at most MAX_QUEUED characters of records, then drops and counts them", async () => {
    const { runtime, connect, worker, received } = pending();
    const client = new ChannelClient(runtime, "/control.sock", hello);
    const total = Math.ceil(MAX_QUEUED / 100_000) * 2;
    const record = (i: number) => ({
      msg: `r${i}`,
      args: ["x".repeat(100_000)],
      datetime: 0,
      level: 20,
      levelName: "INFO",
      loggerName: "default",
    });
    for (let i = 0; i < total; i++) {
      client.send({ t: "log", record: record(i) });
    }
    client.send({ t: "hb" });
    connect.resolve(worker);
    await client.flush();
    await settle();
    const frames = received.map((f) => JSON.parse(f));
    assert.equal(frames[0].t, "hello");
    assert.equal(frames[1].t, "hb", "the heartbeat did not wait for records");
    const logs = frames.filter((f) => f.t === "log");
    const kept = logs.filter((f) => f.record.msg.startsWith("r"));
    // Each frame is a little over 100 000 characters.
    const most = Math.ceil(MAX_QUEUED / 100_000) + 1;
    assert.ok(
      kept.length >= most - 20 && kept.length <= most,
      `${kept.length} kept`,
    );
    assert.equal(
      logs.at(-1).record.msg,
      `${
        total - kept.length
      } log records dropped: the master did not take them fast enough`,
    );
  });
});

describe("ChannelClient's goodbye", () => {
  test("is the last frame: the drop count goes before it, nothing after", async () => {
    const { runtime, connect, worker, received } = pending();
    const client = new ChannelClient(runtime, "/control.sock", hello);
    const record = {
      msg: "r",
      args: ["x".repeat(100_000)],
      datetime: 0,
      level: 20,
      levelName: "INFO",
      loggerName: "default",
    };
    const total = Math.ceil(MAX_QUEUED / 100_000) * 2;
    for (let i = 0; i < total; i++) client.send({ t: "log", record });
    client.send({ t: "bye", code: 0 });
    client.send({ t: "log", record }); // a record logged on the way out
    client.send({ t: "hb" });
    connect.resolve(worker);
    await client.flush();
    await settle();
    const frames = received.map((f) => JSON.parse(f));
    assert.equal(frames.at(-1).t, "bye");
    assert.match(frames.at(-2).record.msg, /^\d+ log records dropped/);
  });
});
