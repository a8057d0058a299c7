// The master's logic against a fake runtime: what it spawns, signals and
// replaces, with every process exit under the test's control.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type PoolLogRecord, Supervisor, WorkerBase } from "../../mod.ts";
import { injectRuntime } from "../../src/supervisor.ts";
import { FakeExit, FakeRuntime } from "../_fake_runtime.ts";

class Idle extends WorkerBase {
  main() {}
}

function setup(options: ConstructorParameters<typeof Supervisor>[1] = {}) {
  const runtime = new FakeRuntime();
  const records: PoolLogRecord[] = [];
  const supervisor = new Supervisor(Idle, {
    checkInterval: 60_000,
    logger: { handle: (r) => void records.push(r) },
    ...options,
  });
  injectRuntime(supervisor, runtime);
  const exit = supervisor.main().then(
    () => assert.fail("main() returned without exiting"),
    (error) => {
      if (error instanceof FakeExit) return error.code;
      throw error;
    },
  );
  return { runtime, supervisor, records, exit };
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 1));
}

describe("Supervisor (master, fake runtime)", () => {
  test("spawns one process per id with its own id and token", async () => {
    const { runtime, exit } = setup({ workers: [3, 5, 8] });
    await until(() => runtime.children.length === 3);
    assert.deepEqual(runtime.children.map((c) => c.workerId), [3, 5, 8]);
    const tokens = runtime.children.map((c) => c.options.env?.WORKERPOOL_TOKEN);
    assert.equal(new Set(tokens).size, 3);
    assert.ok(tokens.every((t) => /^[0-9a-f]{32}$/.test(t ?? "")));
    assert.equal(runtime.children[0].options.stdin, "null");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("runs master callbacks around the pool", async () => {
    const runtime = new FakeRuntime();
    const supervisor = new Supervisor(Idle, { logger: { handle() {} } });
    injectRuntime(supervisor, runtime);
    const order: string[] = [];
    supervisor.onStart(async () => {
      await Promise.resolve();
      order.push(`start with ${runtime.children.length} children`);
      order.push(supervisor.pool.map((w) => `${w.id} ${w.state}`).join(", "));
    });
    supervisor.onShutdown(() => {
      order.push(`shutdown with ${runtime.alive().length} alive`);
      order.push(supervisor.pool.map((w) => `${w.id} ${w.state}`).join(", "));
    });
    const exit = supervisor.main().catch((e: FakeExit) => e.code);
    await until(() => runtime.children.length === 2);
    await supervisor.terminate();
    assert.equal(await exit, 0);
    assert.deepEqual(order, [
      "start with 0 children",
      "0 stopped, 1 stopped",
      "shutdown with 0 alive",
      "0 stopped, 1 stopped",
    ]);
    assert.equal(runtime.listenerCount(), 0);
  });

  test("stop() before main() runs no callbacks and spawns nothing", async () => {
    const runtime = new FakeRuntime();
    const supervisor = new Supervisor(Idle, { logger: { handle() {} } });
    injectRuntime(supervisor, runtime);
    let callbacks = 0;
    supervisor.onStart(() => void callbacks++);
    supervisor.onShutdown(() => void callbacks++);
    await supervisor.stop();
    const code = await supervisor.main().catch((e: FakeExit) => e.code);
    assert.equal(code, 0);
    assert.equal(callbacks, 0);
    assert.equal(runtime.children.length, 0);
  });

  test("replaces an exited worker at once, with the same id", async () => {
    const { runtime, supervisor, exit } = setup({ workers: 2 });
    await until(() => runtime.children.length === 2);
    runtime.children[1].exit(1);
    // Replaced from the exit event itself: checkInterval is a minute here.
    await until(() => runtime.children.length === 3);
    assert.equal(runtime.children[2].workerId, 1);
    const info = supervisor.pool.find((w) => w.id === 1)!;
    assert.equal(info.pid, runtime.children[2].pid);
    assert.equal(info.restarts, 1);
    assert.equal(info.state, "starting");
    assert.ok(Object.isFrozen(supervisor.pool));
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("SIGTERM twice signals each worker once and exits 0", async () => {
    const { runtime, exit } = setup({ workers: 3 });
    await until(() => runtime.children.length === 3);
    for (const child of runtime.children) child.diesOf.clear();
    runtime.raise("SIGTERM");
    runtime.raise("SIGTERM");
    for (const child of runtime.children) {
      assert.deepEqual(child.signals, ["SIGTERM"]);
      child.exit(0);
    }
    assert.equal(await exit, 0);
    assert.equal(runtime.children.length, 3, "nothing respawned");
  });

  test("SIGINT is passed on as SIGINT; SIGINT during SIGTERM escalates", async () => {
    const first = setup({ workers: 1 });
    await until(() => first.runtime.children.length === 1);
    first.runtime.raise("SIGINT");
    assert.deepEqual(first.runtime.children[0].signals, ["SIGINT"]);
    assert.equal(await first.exit, 0);

    const second = setup({ workers: 1 });
    await until(() => second.runtime.children.length === 1);
    const child = second.runtime.children[0];
    child.diesOf.clear();
    second.runtime.raise("SIGTERM");
    second.runtime.raise("SIGINT");
    second.runtime.raise("SIGINT");
    assert.deepEqual(child.signals, ["SIGTERM", "SIGINT"]);
    child.exit(0);
    assert.equal(await second.exit, 0);
  });

  test("SIGKILLs a worker still alive after gracefulTimeout", async () => {
    const { runtime, records, exit } = setup({
      workers: 1,
      gracefulTimeout: 5,
    });
    await until(() => runtime.children.length === 1);
    runtime.children[0].diesOf = new Set(["SIGKILL"]);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
    assert.deepEqual(runtime.children[0].signals, ["SIGTERM", "SIGKILL"]);
    assert.ok(records.some((r) => /sent SIGKILL/.test(r.msg)));
  });

  test("removeWorker resolves once that worker exited and does not replace it", async () => {
    const { runtime, supervisor, exit } = setup({ workers: 2 });
    await until(() => runtime.children.length === 2);
    const child = runtime.children[0];
    child.diesOf.clear();
    let removed = false;
    const removal = supervisor.removeWorker(0, "SIGINT").then(() =>
      removed = true
    );
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(removed, false);
    assert.deepEqual(child.signals, ["SIGINT"]);
    child.exit(0);
    await removal;
    assert.deepEqual(supervisor.pool.map((w) => w.id), [1]);
    assert.equal(runtime.children.length, 2);
    supervisor.addWorker(7);
    assert.equal(runtime.children.at(-1)?.workerId, 7);
    assert.throws(() => supervisor.addWorker(7), { name: "RangeError" });
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("repeated boot errors halt the pool with exit code 3", async () => {
    const { runtime, records, exit } = setup({
      workers: 2,
      maxBootErrors: 3,
      maxRestartDelay: 1,
    });
    await until(() => runtime.children.length === 2);
    for (let round = 0; round < 3; round++) {
      await until(() => runtime.alive().some((c) => c.workerId === 0));
      runtime.alive().find((c) => c.workerId === 0)!.exit(3);
    }
    assert.equal(await exit, 3);
    const halts = records.filter((r) => /halting the pool/.test(r.msg));
    assert.equal(halts.length, 1);
    assert.equal(halts[0].levelName, "CRITICAL");
    assert.equal(runtime.alive().length, 0);
  });

  test("a failing master onStart exits 3 without spawning", async () => {
    const runtime = new FakeRuntime();
    const records: PoolLogRecord[] = [];
    const supervisor = new Supervisor(Idle, {
      logger: { handle: (r) => void records.push(r) },
    });
    injectRuntime(supervisor, runtime);
    supervisor.onStart(() => {
      throw new Error("no config");
    });
    const code = await supervisor.main().catch((e: FakeExit) => e.code);
    assert.equal(code, 3);
    assert.equal(runtime.children.length, 0);
    assert.ok(records.some((r) => r.msg === "Cannot run the pool: no config"));
  });

  test("in a worker process, runs the worker lifecycle instead of a pool", async () => {
    const runtime = new FakeRuntime();
    runtime.env.set("WORKERPOOL_WORKER_ID", "4");
    runtime.env.set("WORKERPOOL_CONTROL_SOCKET", "/nonexistent/control.sock");
    const supervisor = new Supervisor(Idle);
    injectRuntime(supervisor, runtime);
    const code = await supervisor.main().catch((e: FakeExit) => e.code);
    // The fake has no sockets, so the worker cannot reach its master.
    assert.equal(code, 1);
    assert.equal(runtime.children.length, 0);
    assert.equal(runtime.env.size, 0, "WORKERPOOL_* variables are removed");
  });
});
