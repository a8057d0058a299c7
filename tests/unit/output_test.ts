import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { BurstWriter } from "../../src/_burst_writer.ts";
import { LineSplitter, MAX_LINE_BYTES } from "../../src/_line_splitter.ts";
import { Outputs } from "../../src/_output.ts";
import { runtime } from "../_helpers.ts";

const encoder = new TextEncoder();

/** A readable that yields `chunks`, one per pull. */
function source(chunks: string[]) {
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      const next = chunks.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(encoder.encode(next));
    },
  }, { highWaterMark: 0 });
  return { stream, pulls: () => pulls };
}

describe("Outputs with a WritableStream", () => {
  test("writes whole lines only, however workers' chunks interleave", async () => {
    const written: string[] = [];
    const sink = new WritableStream<Uint8Array>({
      write: (chunk) => void written.push(new TextDecoder().decode(chunk)),
    });
    const outputs = await Outputs.open(runtime, sink, "inherit", (e) => {
      throw e;
    });
    assert.equal(outputs.mode("stdout"), "piped");
    assert.equal(outputs.mode("stderr"), "inherit");
    outputs.pump("stdout", source(["a1 a", "2\na3", "\na4 no newline"]).stream);
    outputs.pump("stdout", source(["b1\nb", "2\n"]).stream);
    assert.equal(await outputs.drain(60_000), 0);
    await outputs.close();
    const lines = written.join("").split("\n");
    assert.deepEqual(lines.sort(), [
      "",
      "a1 a2",
      "a3",
      "a4 no newline",
      "b1",
      "b2",
    ]);
    for (const chunk of written) {
      assert.ok(
        chunk.endsWith("\n"),
        `no chunk ends inside a line: ${JSON.stringify(chunk)}`,
      );
    }
    // The stream is the caller's: released, not closed.
    const writer = sink.getWriter();
    await writer.write(encoder.encode("still open"));
  });

  test("reads no further while the sink is busy (backpressure)", async () => {
    const gate = Promise.withResolvers<void>();
    let writes = 0;
    const sink = new WritableStream<Uint8Array>({
      async write() {
        writes++;
        await gate.promise;
      },
    }, { highWaterMark: 1 });
    const outputs = await Outputs.open(runtime, sink, "null", (e) => {
      throw e;
    });
    assert.equal(outputs.mode("stderr"), "null");
    const input = source(Array.from({ length: 100 }, (_, i) => `line ${i}\n`));
    outputs.pump("stdout", input.stream);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(
      input.pulls() <= 4,
      `pulled ${input.pulls()} chunks while blocked`,
    );
    gate.resolve();
    await outputs.drain(60_000);
    assert.equal(writes, 100);
  });
});

describe("LineSplitter", () => {
  const text = (bytes: Uint8Array | null) =>
    bytes === null ? null : new TextDecoder().decode(bytes);

  test("keeps lines whole across chunks and ends an unterminated last line", () => {
    const lines = new LineSplitter();
    assert.equal(text(lines.push(encoder.encode("a1 a"))), null);
    assert.equal(text(lines.push(encoder.encode("2\nb1\nb"))), "a1 a2\nb1\n");
    assert.equal(text(lines.push(encoder.encode("2"))), null);
    assert.equal(text(lines.end()), "b2\n");
    assert.equal(lines.end(), null);
  });

  test("cuts a line longer than 64 KiB there, with the count of bytes cut", () => {
    const lines = new LineSplitter();
    const long = "y".repeat(MAX_LINE_BYTES + 1000);
    const out: string[] = [];
    for (let i = 0; i < long.length; i += 7000) {
      const piece = text(lines.push(encoder.encode(long.slice(i, i + 7000))));
      if (piece !== null) out.push(piece);
    }
    assert.equal(out.length, 0, "nothing before the line ends");
    out.push(text(lines.push(encoder.encode("\nnext\n")))!);
    assert.equal(
      out.join(""),
      `${"y".repeat(MAX_LINE_BYTES)} [… 1000 bytes cut]\nnext\n`,
    );
  });

  test("never cuts inside a UTF-8 character", () => {
    const lines = new LineSplitter();
    const line = "a" + "é".repeat(MAX_LINE_BYTES); // 2 bytes each
    const out = text(lines.push(encoder.encode(line + "\n")))!;
    assert.ok(!out.includes("\ufffd"), "no broken character");
    const kept = out.slice(0, out.indexOf(" [… "));
    assert.equal(encoder.encode(kept).length, MAX_LINE_BYTES - 1);
    assert.match(out, / \[… 65538 bytes cut\]\n$/);
  });
});

describe("BurstWriter", () => {
  test("writes at once when idle, and joins what arrives while it writes", async () => {
    const writes: string[] = [];
    let release = Promise.withResolvers<void>();
    const writer = new BurstWriter(async (data) => {
      writes.push(new TextDecoder().decode(data));
      await release.promise;
    });
    const first = writer.write(encoder.encode("a\n"));
    assert.deepEqual(writes, ["a\n"], "no waiting for a buffer to fill");
    const second = writer.write(encoder.encode("b\n"));
    const third = writer.write(encoder.encode("c\n"));
    assert.equal(writer.queued, 4);
    const gate = release;
    release = Promise.withResolvers<void>();
    release.resolve();
    gate.resolve();
    await Promise.all([first, second, third]);
    assert.deepEqual(writes, ["a\n", "b\nc\n"]);
  });

  test("rejects the writes of a failed burst, and writes on after it", async () => {
    let fail = true;
    const writer = new BurstWriter((data) => {
      if (fail) return Promise.reject(new Error("disk full"));
      return Promise.resolve(void data);
    });
    await assert.rejects(writer.write(encoder.encode("x")), /disk full/);
    fail = false;
    await writer.write(encoder.encode("y"));
    await writer.flush();
  });
});

describe("Outputs with one stream for stdout and stderr", () => {
  test("share one writer, lines whole", async () => {
    const written: string[] = [];
    const sink = new WritableStream<Uint8Array>({
      write: (chunk) => void written.push(new TextDecoder().decode(chunk)),
    });
    const outputs = await Outputs.open(runtime, sink, sink, (e) => {
      throw e;
    });
    outputs.pump("stdout", source(["out 1\nout", " 2\n"]).stream);
    outputs.pump("stderr", source(["err 1\n"]).stream);
    assert.equal(await outputs.drain(60_000), 0);
    await outputs.close();
    assert.deepEqual(written.join("").split("\n").sort(), [
      "",
      "err 1",
      "out 1",
      "out 2",
    ]);
  });
});
