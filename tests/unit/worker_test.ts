import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { BootError, WorkerBase } from "../../mod.ts";

/** A worker whose steps are recorded; its main() is given per test. */
class Recorder extends WorkerBase {
  events: string[] = [];
  body: (w: Recorder) => void | Promise<void>;

  constructor(id: number, body: (w: Recorder) => void | Promise<void>) {
    super(id);
    this.body = body;
    this.onStart(() => void this.events.push("start1"));
    this.onStart(async () => {
      await Promise.resolve();
      this.events.push("start2");
    });
    this.onShutdown(async () => {
      await Promise.resolve();
      this.events.push("shutdown1");
    });
    this.onShutdown(() => void this.events.push("shutdown2"));
  }

  main() {
    this.events.push("main");
    return this.body(this);
  }
}

describe("WorkerBase", () => {
  test("runs start callbacks, an async main, then shutdown callbacks, in order", async () => {
    const worker = new Recorder(4, async (w) => {
      assert.equal(w.isRunning(), true);
      await Promise.resolve();
      w.events.push("main-end");
    });
    assert.equal(worker.id, 4);
    assert.equal(worker.isRunning(), false);
    await worker.start();
    assert.deepEqual(worker.events, [
      "start1",
      "start2",
      "main",
      "main-end",
      "shutdown1",
      "shutdown2",
    ]);
    assert.equal(worker.isRunning(), false);
  });

  test("runs a sync main", async () => {
    const worker = new Recorder(0, (w) => void w.events.push("sync-main"));
    await worker.start();
    assert.deepEqual(worker.events.slice(2, 4), ["main", "sync-main"]);
    assert.equal(worker.events.at(-1), "shutdown2");
  });

  test("terminate() waits for main() to return before shutting down", async () => {
    const worker = new Recorder(0, async (w) => {
      while (w.isRunning()) await w.sleep(60_000);
      await Promise.resolve();
      w.events.push("main-returned");
    });
    const done = worker.start();
    await waitUntil(() => worker.events.includes("main"));
    await worker.terminate();
    await done;
    assert.deepEqual(worker.events.slice(-3), [
      "main-returned",
      "shutdown1",
      "shutdown2",
    ]);
  });

  test("interrupt() aborts main() and shuts down without waiting for it", async () => {
    let abortReason: unknown;
    const worker = new Recorder(0, async (w) => {
      w.signal.addEventListener("abort", () => abortReason = w.signal.reason);
      await new Promise(() => {}); // ignores the stop entirely
    });
    const done = worker.start();
    await waitUntil(() => worker.events.includes("main"));
    await worker.interrupt();
    await done;
    assert.equal(worker.signal.aborted, true);
    assert.equal((abortReason as DOMException).name, "AbortError");
    assert.deepEqual(worker.events.slice(-2), ["shutdown1", "shutdown2"]);
  });

  test("repeated stops are harmless and shut down once", async () => {
    const worker = new Recorder(0, async (w) => {
      while (w.isRunning()) await w.sleep(60_000);
    });
    const done = worker.start();
    await waitUntil(() => worker.events.includes("main"));
    await Promise.all([
      worker.terminate(),
      worker.terminate(),
      worker.interrupt(),
    ]);
    await done;
    assert.equal(worker.events.filter((e) => e === "shutdown1").length, 1);
  });

  test("sleep() resolves early once the worker stops", async () => {
    const worker = new Recorder(0, async (w) => {
      await w.sleep(60_000);
      w.events.push("woke");
    });
    const done = worker.start();
    await waitUntil(() => worker.events.includes("main"));
    worker.stop();
    await done;
    assert.ok(worker.events.includes("woke"));
  });

  test("a failing start callback is a BootError with the cause, main never runs", async () => {
    const worker = new Recorder(2, () => {});
    worker.onStart(() => {
      throw new Error("no database");
    });
    await assert.rejects(worker.start(), (error: unknown) => {
      assert.ok(error instanceof BootError);
      assert.equal(error.workerId, 2);
      assert.equal(error.message, "Cannot start worker 2: no database");
      assert.equal((error.cause as Error).message, "no database");
      return true;
    });
    assert.ok(!worker.events.includes("main"));
    assert.ok(!worker.events.includes("shutdown1"));
  });

  test("an error thrown by main() still runs the shutdown callbacks, then rejects", async () => {
    const worker = new Recorder(0, () => {
      throw new Error("main broke");
    });
    await assert.rejects(worker.start(), { message: "main broke" });
    assert.deepEqual(worker.events.slice(-2), ["shutdown1", "shutdown2"]);
  });

  test("a failing shutdown callback does not skip the next one", async () => {
    const worker = new Recorder(0, () => {});
    worker.onShutdown(() => {
      throw new Error("close failed");
    });
    worker.onShutdown(() => void worker.events.push("last"));
    await assert.rejects(worker.start(), { message: "close failed" });
    assert.equal(worker.events.at(-1), "last");
  });

  test("start() twice returns the same lifecycle", async () => {
    const worker = new Recorder(0, () => {});
    const a = worker.start();
    assert.equal(worker.start(), a);
    await a;
    assert.equal(worker.events.filter((e) => e === "main").length, 1);
  });

  test("rejects bad ids and callbacks", () => {
    assert.throws(() => new Recorder(-1, () => {}), {
      name: "RangeError",
      message:
        "Cannot create worker: id must be a non-negative integer, got -1",
    });
    const worker = new Recorder(0, () => {});
    assert.throws(() => worker.onStart("nope" as never), {
      name: "TypeError",
      message: 'Cannot add onStart callback: expected a function, got "nope"',
    });
  });
});

async function waitUntil(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 1));
}
