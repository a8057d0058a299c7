// Rolling replacements (reload, recycle) and scaling, on the fake runtime:
// who is spawned when, who is stopped when, what the pool shows.
import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { useRuntime } from "../../src/runtime/mod.ts";
import { type FakeChild, type FakeRuntime, settle } from "../_fake_runtime.ts";
import { bootAll, setup, until } from "../_fake_master.ts";

afterEach(() => useRuntime(undefined));

/** The newest process of worker `id`. */
function newest(runtime: FakeRuntime, id: number): FakeChild {
  return runtime.children.findLast((c) => c.workerId === id)!;
}

/** Says hello and ready for `child`. */
async function boot(child: FakeChild): Promise<void> {
  const end = await child.hello();
  end.send({ t: "ready" });
  await settle();
}

describe("reload (fake runtime)", () => {
  test("replaces one id at a time: the new process ready first, then the old one stops", async () => {
    const { runtime, supervisor, exit } = await setup({ workers: 2 });
    await bootAll(runtime);
    const [old0, old1] = runtime.children;
    const reloaded = supervisor.reload();
    await settle();
    // One new process, for id 0; nobody stopped yet.
    assert.equal(runtime.children.length, 3);
    const new0 = newest(runtime, 0);
    assert.notEqual(new0, old0);
    assert.deepEqual([old0!.signals, old1!.signals], [[], []]);
    const during = supervisor.pool.find((w) => w.id === 0)!;
    assert.equal(during.pid, old0!.pid);
    assert.equal(during.state, "ready");
    assert.deepEqual(
      { ...during.next, uptime: 0 },
      { pid: new0.pid, state: "starting", generation: 1, uptime: 0 },
    );
    await boot(new0);
    // Handed over: the old process drains, id 1's replacement starts.
    assert.deepEqual(old0!.signals, ["SIGTERM"]);
    const after = supervisor.pool.find((w) => w.id === 0)!;
    assert.equal(after.pid, new0.pid);
    assert.equal(after.generation, 1);
    assert.equal(after.next, null);
    assert.equal(runtime.children.length, 4);
    assert.deepEqual(old1!.signals, []);
    await boot(newest(runtime, 1));
    await reloaded;
    assert.deepEqual(old1!.signals, ["SIGTERM"]);
    assert.deepEqual(
      supervisor.pool.map((w) => [w.id, w.generation, w.state]),
      [[0, 1, "ready"], [1, 1, "ready"]],
    );
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("reloadConcurrency replaces that many ids at once", async () => {
    const { runtime, supervisor, exit } = await setup({
      workers: 3,
      reloadConcurrency: 2,
    });
    await bootAll(runtime);
    const reloaded = supervisor.reload();
    await settle();
    assert.deepEqual(runtime.children.slice(3).map((c) => c.workerId), [0, 1]);
    await boot(newest(runtime, 1));
    assert.deepEqual(runtime.children.slice(3).map((c) => c.workerId), [
      0,
      1,
      2,
    ]);
    await boot(newest(runtime, 0));
    await boot(newest(runtime, 2));
    await reloaded;
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a replacement that fails to start ends the reload; the old processes serve on", async () => {
    const { runtime, supervisor, exit, logged } = await setup({ workers: 2 });
    await bootAll(runtime);
    const [old0, old1] = runtime.children;
    const reloaded = supervisor.reload();
    await settle();
    const broken = newest(runtime, 0);
    const end = await broken.hello();
    end.send({ t: "boot-error", message: "SyntaxError: oops", stack: null });
    end.send({ t: "bye", code: 3 });
    await settle();
    broken.exit(3);
    await assert.rejects(reloaded, /Cannot reload: .*SyntaxError: oops/);
    assert.equal(logged(/^Reload 1 failed: .*SyntaxError: oops/).length, 1);
    assert.deepEqual([old0!.signals, old1!.signals], [[], []]);
    // No second try of its own, no halt, nothing for id 1.
    await runtime.advance(10_000);
    assert.equal(runtime.children.length, 3);
    assert.deepEqual(supervisor.pool.map((w) => w.pid), [old0!.pid, old1!.pid]);
    // Fixed: the next reload goes through.
    const again = supervisor.reload();
    await settle();
    await boot(newest(runtime, 0));
    await boot(newest(runtime, 1));
    await again;
    assert.deepEqual(supervisor.pool.map((w) => w.generation), [2, 2]);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a replacement not ready within readyTimeout is killed and ends the reload", async () => {
    const { runtime, supervisor, exit } = await setup({
      workers: 1,
      readyTimeout: 3000,
    });
    await bootAll(runtime);
    const reloaded = supervisor.reload();
    reloaded.catch(() => {});
    await settle();
    const slow = newest(runtime, 0);
    await slow.hello();
    await runtime.advance(4000);
    assert.deepEqual(slow.signals, ["SIGKILL"]);
    await assert.rejects(reloaded, /not ready within readyTimeout/);
    assert.deepEqual(runtime.children[0]!.signals, []);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("SIGHUP during a reload queues one more; SIGHUPs after that share it", async () => {
    const { runtime, exit, logged } = await setup({ workers: 1 });
    await bootAll(runtime);
    runtime.raise("SIGHUP");
    await settle();
    runtime.raise("SIGHUP");
    runtime.raise("SIGHUP");
    await settle();
    assert.equal(logged(/one more will follow it/).length, 1);
    await boot(newest(runtime, 0));
    await boot(newest(runtime, 0));
    await settle();
    assert.equal(runtime.children.length, 3);
    assert.equal(logged(/^reload \d done/).length, 2);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("SIGTERM during a reload stops both processes of an id and rejects it", async () => {
    const { runtime, supervisor, exit } = await setup({ workers: 2 });
    await bootAll(runtime);
    const reloaded = supervisor.reload();
    await settle();
    runtime.raise("SIGTERM");
    await assert.rejects(reloaded, /the pool is stopping/);
    assert.equal(await exit, 0);
    assert.ok(runtime.children.every((c) => c.signals[0] === "SIGTERM"));
    assert.equal(runtime.alive().length, 0);
  });

  test("the current process dying during its replacement hands over at once", async () => {
    const { runtime, supervisor, exit } = await setup({ workers: 1 });
    await bootAll(runtime);
    const reloaded = supervisor.reload();
    await settle();
    runtime.children[0]!.exit(1);
    await settle();
    const next = newest(runtime, 0);
    assert.equal(supervisor.pool[0]!.pid, next.pid);
    assert.equal(runtime.children.length, 2, "no third process");
    await boot(next);
    await reloaded;
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });
});

describe("reload, after an operator's attack (fake runtime)", () => {
  test("a replacement abandoned by a failed reload never takes over, even if it says ready", async () => {
    const { runtime, supervisor, exit } = await setup({
      workers: 2,
      reloadConcurrency: 2,
    });
    await bootAll(runtime);
    const [old0, old1] = runtime.children;
    const reloaded = supervisor.reload();
    reloaded.catch(() => {});
    await settle();
    const [new0, new1] = [newest(runtime, 0), newest(runtime, 1)];
    new1.diesOf.clear(); // slow to stop: it finishes its start first
    const end1 = await new1.hello();
    const end0 = await new0.hello();
    end0.send({ t: "boot-error", message: "broken", stack: null });
    await settle();
    new0.exit(3);
    await assert.rejects(reloaded, /broken/);
    assert.deepEqual(new1.signals, ["SIGTERM"]);
    end1.send({ t: "ready" });
    await settle();
    assert.deepEqual([old0!.signals, old1!.signals], [[], []]);
    assert.deepEqual(supervisor.pool.map((w) => w.pid), [old0!.pid, old1!.pid]);
    assert.deepEqual(
      supervisor.pool[1]!.retiring.map((p) => p.pid),
      [new1.pid],
      "it drains as a retiring process",
    );
    assert.deepEqual(supervisor.pool.map((w) => w.restarts), [0, 0]);
    new1.exit(0);
    await settle();
    assert.equal(runtime.alive().length, 2, "nothing replaced it");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a replacement stopped from elsewhere during its start fails the reload", async () => {
    const { runtime, supervisor, exit } = await setup({ workers: 1 });
    await bootAll(runtime);
    const reloaded = supervisor.reload();
    reloaded.catch(() => {});
    await settle();
    const next = newest(runtime, 0);
    const end = await next.hello();
    end.send({ t: "stopping", signal: "SIGTERM" });
    end.send({ t: "ready" });
    await settle();
    assert.deepEqual(runtime.children[0]!.signals, [], "the old one serves on");
    next.exit(0);
    await assert.rejects(
      reloaded,
      /Cannot reload: worker 0 .*before it was ready/,
    );
    assert.equal(supervisor.pool[0]!.pid, runtime.children[0]!.pid);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("once the pool was up, an id failing to start retries while the others serve", async () => {
    const { runtime, supervisor, exit, logged } = await setup({
      workers: 2,
      maxBootErrors: 2,
      maxRestartDelay: 5000,
    });
    const [end0] = await bootAll(runtime);
    // The code on disk is broken now; worker 1 crashes.
    for (let round = 0; round < 4; round++) {
      end0!.send({ t: "hb" });
      const child = runtime.child(1);
      if (round > 0) {
        const end = await child.hello();
        end.send({ t: "boot-error", message: "broken deploy", stack: null });
      }
      child.exit(round === 0 ? 1 : 3);
      await runtime.advance(5000);
    }
    assert.equal(logged(/halting/).length, 0);
    assert.ok(
      logged(/the other workers serve, so it tries again in 5000 ms/).length >=
        2,
    );
    assert.equal(supervisor.pool[0]!.state, "ready");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a port refused by another pool's lock halts a pool only before it was up", async () => {
    const { runtime, supervisor, exit, logged } = await setup({ workers: 2 });
    const [end0] = await bootAll(runtime);
    runtime.child(1).exit(1);
    await settle();
    const refused = runtime.child(1);
    const end = await refused.hello();
    end.send({
      t: "boot-error",
      message: "port 8080 is served by the workerpool of master pid 77",
      stack: null,
      fatal: true,
    });
    await settle();
    refused.exit(3);
    end0!.send({ t: "hb" });
    await runtime.advance(1000);
    assert.equal(logged(/halting/).length, 0);
    assert.equal(supervisor.pool[0]!.state, "ready");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a replacement that takes over resets its id's boot errors", async () => {
    const { runtime, supervisor, exit, logged } = await setup({
      workers: 1,
      maxBootErrors: 3,
    });
    await bootAll(runtime);
    const fail = async () => {
      await runtime.advance(10_000); // past any backoff
      const child = runtime.child(0);
      const end = await child.hello();
      end.send({ t: "boot-error", message: "broken", stack: null });
      child.exit(3);
      await settle();
    };
    runtime.children[0]!.exit(1);
    await settle();
    await fail();
    await fail(); // two boot errors in a row
    // A slow replacement: the reload's takes over first.
    runtime.child(0).diesOf.clear();
    const reloaded = supervisor.reload();
    await settle();
    await boot(newest(runtime, 0));
    await reloaded;
    runtime.child(0).exit(1);
    await settle();
    await fail();
    await fail();
    assert.equal(logged(/halting/).length, 0, "two in a row, not four");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });
});

describe("scaling (fake runtime)", () => {
  test("TTIN adds the lowest free id, TTOU removes the highest, never the last", async () => {
    const { runtime, supervisor, exit, logged } = await setup({
      workers: [0, 2],
    });
    await bootAll(runtime);
    runtime.raise("SIGTTIN");
    await settle();
    assert.deepEqual(supervisor.pool.map((w) => w.id), [0, 2, 1]);
    runtime.raise("SIGTTOU");
    await settle();
    assert.deepEqual(supervisor.pool.map((w) => w.id), [0, 1]);
    assert.deepEqual(runtime.children[1]!.signals, ["SIGTERM"]);
    runtime.raise("SIGTTOU");
    await settle();
    runtime.raise("SIGTTOU");
    await settle();
    assert.deepEqual(supervisor.pool.map((w) => w.id), [0]);
    assert.equal(
      logged(/^SIGTTOU ignored: the pool keeps at least one/).length,
      1,
    );
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("scale(n) resolves once n workers are ready; a later scale() rejects it", async () => {
    const { runtime, supervisor, exit } = await setup({ workers: 1 });
    await bootAll(runtime);
    let done = false;
    const grown = supervisor.scale(3).then(() => done = true);
    await settle();
    assert.equal(runtime.alive().length, 3);
    await boot(newest(runtime, 1));
    assert.equal(done, false);
    await boot(newest(runtime, 2));
    await grown;
    const superseded = supervisor.scale(5);
    const shrunk = supervisor.scale(2);
    await assert.rejects(
      superseded,
      /Cannot scale to 5: the pool was scaled to 2/,
    );
    await shrunk;
    assert.deepEqual(supervisor.pool.map((w) => w.id), [0, 1]);
    await assert.rejects(supervisor.scale(0), RangeError);
    await assert.rejects(
      supervisor.scale(1.5),
      /integer from 1 to 1024, got 1.5/,
    );
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });
});

describe("recycling (fake runtime)", () => {
  test("a worker past maxRequests is replaced, its replacement ready first", async () => {
    const { runtime, supervisor, exit, logged } = await setup({
      workers: 2,
      maxRequests: 100,
    });
    const [end0, end1] = await bootAll(runtime);
    end0!.send({ t: "hb", rss: 1000, req: 99 });
    end1!.send({ t: "hb", rss: 1000, req: 100 });
    await runtime.advance(2000);
    assert.equal(logged(/^recycling worker 1 .*served 100 requests/).length, 1);
    assert.deepEqual(runtime.children.map((c) => c.workerId), [0, 1, 1]);
    assert.deepEqual(runtime.children[1]!.signals, []);
    await boot(newest(runtime, 1));
    assert.deepEqual(runtime.children[1]!.signals, ["SIGTERM"]);
    assert.equal(supervisor.pool[1]!.pid, newest(runtime, 1).pid);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("maxMemory and maxAge recycle too; a failed recycle keeps the process", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 1,
      maxMemory: 50_000_000,
      maxAge: 100_000,
    });
    const [end] = await bootAll(runtime);
    end!.send({ t: "hb", rss: 20_000_000 }); // what it takes when fresh
    await settle();
    end!.send({ t: "hb", rss: 60_000_000 });
    await runtime.advance(2000);
    assert.equal(
      logged(/^recycling .*RSS 57\.2 MiB.*maxMemory 47\.7 MiB/).length,
      1,
    );
    const broken = newest(runtime, 0);
    broken.exit(1);
    await settle();
    assert.equal(logged(/^Cannot recycle worker 0: its replacement/).length, 1);
    assert.deepEqual(runtime.children[0]!.signals, []);
    // Not tried again at once.
    await runtime.advance(2000);
    assert.equal(runtime.children.length, 2);
    // Age: past 110 000 ms at most, with the heartbeats going on.
    for (let t = 0; t < 120_000; t += 2000) {
      end!.send({ t: "hb", rss: 1000 });
      await runtime.advance(2000);
    }
    assert.equal(logged(/^recycling .*ms old \(limit 1\d{5} ms\)/).length, 1);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });
});

describe("recycling for memory", () => {
  test("not when a fresh worker is already above maxMemory: said once instead", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 2,
      maxMemory: 1_000_000,
    });
    const ends = await bootAll(runtime);
    for (let beat = 0; beat < 5; beat++) {
      for (const end of ends) end.send({ t: "hb", rss: 30_000_000 });
      await runtime.advance(2000);
    }
    assert.equal(runtime.children.length, 2, "no replacement");
    assert.equal(logged(/^recycling/).length, 0);
    assert.equal(
      logged(/takes 28\.6 MiB as soon as it is ready, more than maxMemory/)
        .length,
      1,
    );
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });
});

describe("options of rolling operations", () => {
  test("are checked before anything runs", async () => {
    const { Supervisor } = await import("../../mod.ts");
    const { Idle } = await import("../_fake_master.ts");
    assert.throws(
      () => new Supervisor(Idle, { reloadConcurrency: 0 }),
      /reloadConcurrency must be an integer from 1 to 1024, got 0/,
    );
    assert.throws(
      () => new Supervisor(Idle, { maxRequests: -1 }),
      /maxRequests must be a non-negative integer \(0: no limit\), got -1/,
    );
    assert.throws(
      () => new Supervisor(Idle, { maxMemory: 1.5 }),
      /maxMemory must be a non-negative integer/,
    );
    assert.throws(
      () => new Supervisor(Idle, { takeover: "yes" as unknown as boolean }),
      /takeover must be a boolean, got "yes"/,
    );
    await until(() => true);
  });
});
