import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatRecord, LogLevels } from "../../mod.ts";
import { createLogger, toJsonSafe } from "../../src/logging.ts";
import type { LogRecord } from "../../src/types.ts";

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
