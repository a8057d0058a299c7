import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatRecord, LogLevels } from "../../mod.ts";
import { createLogger, toJsonSafe } from "../../src/logging.ts";
import type { LogRecord } from "../../src/types.ts";
import { MAX_RECORD_BYTES } from "../../src/_protocol.ts";
import { toWire } from "../../src/_worker_main.ts";

describe("logging", () => {
  test("records have @std/log's LogRecord fields", () => {
    const records: LogRecord[] = [];
    const logger = createLogger("app", (r) => void records.push(r));
    logger.warn("disk low", { free: 3 });
    logger.critical("gone");
    assert.equal(records.length, 2);
    const [warn, critical] = records;
    assert.equal(warn.msg, "disk low");
    assert.deepEqual(warn.args, [{ free: 3 }]);
    assert.ok(warn.datetime instanceof Date);
    assert.equal(warn.level, LogLevels.WARN);
    assert.equal(warn.levelName, "WARN");
    assert.equal(warn.loggerName, "app");
    assert.equal(critical.level, 50);
  });

  test("formatRecord prints an ISO time, the level, who and the arguments", () => {
    const datetime = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6));
    const line = formatRecord({
      msg: "hello",
      args: ["x", { n: 1 }],
      datetime,
      level: 20,
      levelName: "INFO",
      loggerName: "default",
      workerId: 3,
      pid: 42,
    });
    assert.equal(
      line,
      `${datetime.toISOString()} INFO [worker 3 pid 42] default: hello x {"n":1}`,
    );
    assert.match(
      formatRecord({
        msg: "up",
        args: [],
        datetime,
        level: 20,
        levelName: "INFO",
        loggerName: "workerpool.supervisor",
        workerId: null,
        pid: 7,
      }),
      /\[master pid 7\] workerpool\.supervisor: up$/,
    );
  });

  test("arguments survive JSON for forwarding", () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const [error, big, loop, plain] = toJsonSafe([
      new Error("boom"),
      10n,
      circular,
      { a: [1] },
    ]);
    assert.equal((error as { message: string }).message, "boom");
    assert.equal(big, "10");
    assert.equal(loop, "[object Object]");
    assert.deepEqual(plain, { a: [1] });
    JSON.stringify([error, big, loop, plain]);
  });
});

describe("records on the wire", () => {
  const record = (msg: string, ...args: unknown[]) => ({
    msg,
    args,
    datetime: new Date(5),
    level: 20,
    levelName: "INFO",
    loggerName: "default",
  });

  test("an ordinary record travels as it is", () => {
    assert.deepEqual(toWire(record("hi", { a: 1 }, "x")), {
      msg: "hi",
      args: [{ a: 1 }, "x"],
      datetime: 5,
      level: 20,
      levelName: "INFO",
      loggerName: "default",
    });
  });

  test("a record of any size fits one frame, cut with a visible marker", () => {
    for (const payload of ["y", "é", "\u0001", "☃"]) {
      const huge = record("huge", payload.repeat(1_100_000));
      const wire = toWire(huge);
      const frame = new TextEncoder().encode(JSON.stringify(wire));
      assert.ok(frame.length <= MAX_RECORD_BYTES, `${frame.length} bytes`);
      assert.ok(frame.length > MAX_RECORD_BYTES / 2, "not cut too short");
      assert.deepEqual(wire.args, []);
      assert.ok(wire.msg.startsWith(`huge ${payload}`));
      const cut = Number(/ \[… (\d+) bytes cut\]$/.exec(wire.msg)?.[1]);
      const whole = new TextEncoder().encode(
        `huge ${payload.repeat(1_100_000)}`,
      ).length;
      const kept = new TextEncoder().encode(
        wire.msg.slice(0, wire.msg.lastIndexOf(" [… ")),
      ).length;
      assert.equal(kept + cut, whole, "the marker counts every byte cut");
    }
  });
});
