import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  FrameDecoder,
  FrameError,
  toWorkerMessage,
} from "../../src/_frames.ts";
import { MAX_FRAME_BYTES } from "../../src/_protocol.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const encodeFrame = (message: unknown) => bytes(JSON.stringify(message) + "\n");

describe("FrameDecoder", () => {
  test("splits frames, however the bytes are chunked", () => {
    const stream = [
      encodeFrame({ t: "hb" }),
      encodeFrame({ t: "boot-error", message: "naïve ☃ failure" }),
      encodeFrame({ t: "ready" }),
    ];
    const all = new Uint8Array(stream.reduce((n, f) => n + f.length, 0));
    let offset = 0;
    for (const frame of stream) {
      all.set(frame, offset);
      offset += frame.length;
    }
    for (const size of [1, 2, 3, 7, all.length]) {
      const decoder = new FrameDecoder();
      const frames: unknown[] = [];
      for (let i = 0; i < all.length; i += size) {
        frames.push(...decoder.push(all.subarray(i, i + size)));
      }
      assert.deepEqual(frames, [
        { t: "hb" },
        { t: "boot-error", message: "naïve ☃ failure" },
        { t: "ready" },
      ], `chunks of ${size}`);
    }
  });

  test("rejects a frame that is not JSON", () => {
    assert.throws(() => new FrameDecoder().push(bytes("hello\n")), FrameError);
  });

  test("rejects invalid UTF-8", () => {
    const bad = new Uint8Array([0x22, 0xff, 0x22, 0x0a]);
    assert.throws(() => new FrameDecoder().push(bad), FrameError);
  });

  test("rejects a frame over the cap, even before its newline arrives", () => {
    const decoder = new FrameDecoder(16);
    decoder.push(bytes("0123456789"));
    assert.throws(() => decoder.push(bytes("0123456789")), {
      name: "FrameError",
      message: "Cannot read frame: larger than 16 bytes",
    });
    assert.throws(
      () => new FrameDecoder(16).push(bytes("x".repeat(20) + "\n")),
      {
        message: /larger than 16 bytes/,
      },
    );
    assert.equal(MAX_FRAME_BYTES, 1048576);
  });
});

describe("toWorkerMessage", () => {
  test("accepts the protocol's messages", () => {
    const record = {
      msg: "m",
      args: [],
      datetime: 1,
      level: 20,
      levelName: "INFO",
      loggerName: "default",
    };
    for (
      const message of [
        { t: "hello", id: 1, pid: 2, token: "abc" },
        { t: "hb" },
        { t: "ready" },
        { t: "log", record },
        { t: "boot-error", message: "x", stack: null },
        { t: "boot-error", message: "x", stack: "Error: x\n    at y" },
        { t: "stopping", signal: "SIGTERM" },
        { t: "bye", code: 3 },
      ]
    ) {
      assert.deepEqual(toWorkerMessage(message), message);
    }
  });

  test("rejects unknown or malformed messages", () => {
    for (
      const value of [
        null,
        42,
        { t: "nope" },
        { t: "hello", id: "1", pid: 2, token: "a" },
        { t: "log", record: { msg: 1 } },
        { t: "boot-error", message: "x" },
        { t: "stopping", signal: "SIGKILL" },
        { t: "bye" },
      ]
    ) {
      assert.throws(() => toWorkerMessage(value), FrameError);
    }
  });
});
