import { describe, test } from "node:test";
import assert from "node:assert/strict";
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
      "a1 a2",
      "a3",
      "a4 no newline",
      "b1",
      "b2",
    ]);
    for (const chunk of written) {
      assert.ok(
        chunk.endsWith("\n") || chunk === "a4 no newline",
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
