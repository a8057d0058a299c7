// The master's state machine against a fake runtime: fake processes, an
// in-memory control socket and a fake clock, so every path (hello, beats,
// ready, boot errors, deadlines, backoff, lost connections, signals) runs
// in milliseconds, with no process spawned and no real time waited for.
import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type PoolLogRecord, Supervisor } from "../../mod.ts";
import { useRuntime } from "../../src/runtime/mod.ts";
import {
  type FakeConnection,
  type FakeExit,
  FakeRuntime,
  settle,
} from "../_fake_runtime.ts";
import { bootAll, Idle, setup, until } from "../_fake_master.ts";

afterEach(() => useRuntime(undefined));

describe("the master (fake runtime)", () => {
  test("spawns one process per id with the worker's environment", async () => {
    const { runtime, exit } = await setup({
      workers: [3, 5, 8],
      workerTimeout: 5000,
      gracefulTimeout: 700,
    });
    assert.deepEqual(runtime.children.map((c) => c.workerId), [3, 5, 8]);
    const env = runtime.children[0].options.env!;
    assert.equal(env.WORKERPOOL_MASTER_PID, "1000");
    assert.equal(env.WORKERPOOL_HEARTBEAT_INTERVAL, "1000");
    assert.equal(env.WORKERPOOL_GRACEFUL_TIMEOUT, "700");
    assert.match(
      env.WORKERPOOL_CONTROL_SOCKET,
      /\/workerpool-1000-[^/]+\/control\.sock$/,
    );
    const tokens = runtime.children.map((c) => c.token);
    assert.equal(new Set(tokens).size, 3);
    assert.ok(tokens.every((t) => /^[0-9a-f]{32}$/.test(t)));
    assert.equal(runtime.children[0].options.stdin, "null");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("hello, then ready: the pool shows it; a replaced id counts restarts", async () => {
    const { runtime, supervisor, exit, stateOf } = await setup({ workers: 2 });
    assert.equal(stateOf(0), "starting");
    const [end] = await bootAll(runtime);
    assert.equal(stateOf(0), "ready");
    assert.equal(stateOf(1), "ready");
    end.send({ t: "bye", code: 1 });
    runtime.child(0).exit(1);
    await settle();
    // Replaced from the exit event itself: checkInterval is a minute here.
    const info = supervisor.pool.find((w) => w.id === 0)!;
    assert.equal(info.pid, runtime.children[2].pid);
    assert.equal(info.restarts, 1);
    assert.equal(info.state, "starting");
    assert.ok(Object.isFrozen(supervisor.pool));
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("runs master callbacks around the pool", async () => {
    const runtime = new FakeRuntime();
    useRuntime(runtime);
    const supervisor = new Supervisor(Idle, { logger: { handle() {} } });
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
    useRuntime(runtime);
    const supervisor = new Supervisor(Idle, { logger: { handle() {} } });
    let callbacks = 0;
    supervisor.onStart(() => void callbacks++);
    supervisor.onShutdown(() => void callbacks++);
    await supervisor.stop();
    const code = await supervisor.main().catch((e: FakeExit) => e.code);
    assert.equal(code, 0);
    assert.equal(callbacks, 0);
    assert.equal(runtime.children.length, 0);
  });

  test("SIGTERM twice signals each worker once and exits 0", async () => {
    const { runtime, exit } = await setup({ workers: 3 });
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
    const first = await setup({ workers: 1 });
    first.runtime.raise("SIGINT");
    assert.deepEqual(first.runtime.children[0].signals, ["SIGINT"]);
    assert.equal(await first.exit, 0);

    const second = await setup({ workers: 1 });
    const child = second.runtime.children[0];
    child.diesOf.clear();
    second.runtime.raise("SIGTERM");
    second.runtime.raise("SIGINT");
    second.runtime.raise("SIGINT");
    assert.deepEqual(child.signals, ["SIGTERM", "SIGINT"]);
    child.exit(0);
    assert.equal(await second.exit, 0);
  });

  test("SIGQUIT stops gracefully; USR1, USR2, WINCH are logged and ignored", async () => {
    const { runtime, exit, logged } = await setup({ workers: 2 });
    await bootAll(runtime);
    for (const signal of ["SIGUSR1", "SIGUSR2", "SIGWINCH"] as const) {
      runtime.raise(signal);
      assert.equal(logged(new RegExp(`^${signal} ignored`)).length, 1, signal);
    }
    await runtime.advance(5000);
    assert.equal(runtime.alive().length, 2);
    assert.ok(runtime.children.every((c) => c.signals.length === 0));
    runtime.raise("SIGQUIT");
    assert.equal(await exit, 0);
    assert.ok(runtime.children.every((c) => c.signals[0] === "SIGTERM"));
  });

  test("SIGKILLs a worker still alive gracefulTimeout after its stop", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 1,
      gracefulTimeout: 5000,
    });
    runtime.children[0].diesOf = new Set(["SIGKILL"]);
    runtime.raise("SIGTERM");
    await runtime.advance(4999);
    assert.deepEqual(runtime.children[0].signals, ["SIGTERM"]);
    await runtime.advance(1);
    assert.equal(await exit, 0);
    assert.deepEqual(runtime.children[0].signals, ["SIGTERM", "SIGKILL"]);
    assert.equal(
      logged(/still running after gracefulTimeout 5000 ms/).length,
      1,
    );
  });

  test("removeWorker resolves once that worker exited and does not replace it", async () => {
    const { runtime, supervisor, exit } = await setup({ workers: 2 });
    const child = runtime.children[0];
    child.diesOf.clear();
    let removed = false;
    const removal = supervisor.removeWorker(0, "SIGINT").then(() =>
      removed = true
    );
    await settle();
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

  test("boot errors back off, then halt the pool with exit 3 and the reported cause", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 2,
      maxBootErrors: 4,
    });
    const spawnedAt: number[] = [];
    for (let round = 0; round < 4; round++) {
      await runtime.advance(0);
      const child = runtime.child(0);
      spawnedAt.push(runtime.now());
      const end = await child.hello();
      end.send({
        t: "boot-error",
        message: `no database (${round})`,
        stack: `Error: no database (${round})\n    at onStart (app.ts:3:9)`,
      });
      end.send({ t: "bye", code: 3 });
      await settle();
      child.exit(3);
      await settle();
      if (round < 3) {
        // The next spawn waits for its backoff, and not a moment longer.
        const before = runtime.children.length;
        const delay = [0, 100, 200][round];
        if (delay > 0) {
          await runtime.advance(delay - 1);
          assert.equal(runtime.children.length, before, `round ${round}`);
        }
        await runtime.advance(1);
        assert.equal(runtime.child(0).workerId, 0);
      }
    }
    assert.equal(await exit, 3);
    const errors = logged(/failed to start: no database/);
    assert.equal(errors.length, 4);
    assert.match(String(errors[0].args[0]), /at onStart \(app\.ts:3:9\)/);
    const halts = logged(/halting the pool/);
    assert.equal(halts.length, 1);
    assert.equal(halts[0].levelName, "CRITICAL");
    assert.match(
      halts[0].msg,
      /worker 0 failed to start 4 times in a row; halting the pool\. Last cause: no database \(3\)/,
    );
    assert.equal(runtime.alive().length, 0);
  });

  test("a worker silent for workerTimeout after its hello is killed and replaced", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 2,
      workerTimeout: 1000,
    });
    const [quiet, chatty] = await bootAll(runtime);
    const victim = runtime.child(0);
    for (let t = 0; t < 1200; t += 100) {
      chatty.send({ t: "hb" });
      await runtime.advance(100);
    }
    assert.equal(quiet.closed, true, "its connection is closed");
    assert.deepEqual(victim.signals, ["SIGKILL"]);
    assert.equal(runtime.child(1), runtime.children[1], "the other lives on");
    assert.notEqual(runtime.child(0), victim, "replaced");
    assert.match(
      logged(/sent no heartbeat/)[0].msg,
      new RegExp(
        `pid ${victim.pid}\\) sent no heartbeat for 1\\d{3} ms \\(workerTimeout 1000 ms\\); killing it`,
      ),
    );
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("start-up has its own deadline: readyTimeout, not workerTimeout", async () => {
    const { runtime, exit, logged, stateOf } = await setup({
      workers: 3,
      workerTimeout: 100,
      readyTimeout: 5000,
    });
    // Slow starts (32 workers on 2 cores): no hello for 40 × workerTimeout.
    await runtime.advance(4000);
    assert.equal(runtime.alive().length, 3);
    assert.ok(runtime.children.every((c) => c.signals.length === 0));
    // Worker 0 boots; worker 1 connects and beats but never gets ready;
    // worker 2 never says anything.
    const zero = await runtime.child(0).hello();
    zero.send({ t: "ready" });
    const one = await runtime.child(1).hello();
    for (let t = 4000; t <= 5100; t += 50) {
      zero.send({ t: "hb" });
      one.send({ t: "hb" });
      await runtime.advance(50);
    }
    assert.equal(stateOf(0), "ready");
    assert.deepEqual(runtime.children[0].signals, []);
    assert.deepEqual(runtime.children[1].signals, ["SIGKILL"]);
    assert.deepEqual(runtime.children[2].signals, ["SIGKILL"]);
    assert.equal(logged(/was not ready within readyTimeout 5000 ms/).length, 1);
    assert.equal(
      logged(/did not connect within readyTimeout 5000 ms/).length,
      1,
    );
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a master that stood still judges no worker for its own stall", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 2,
      workerTimeout: 1000,
    });
    const ends = await bootAll(runtime);
    for (let t = 0; t < 500; t += 100) {
      for (const end of ends) end.send({ t: "hb" });
      await runtime.advance(100);
    }
    // SIGSTOP for 3 s: the workers beat on, their frames wait unread.
    await runtime.pause(3000);
    for (const end of ends) end.send({ t: "hb" });
    await runtime.advance(500);
    assert.equal(logged(/killing it/).length, 0);
    assert.ok(runtime.children.every((c) => c.signals.length === 0));
    // A worker that really is silent is still caught, by the master's time.
    for (let t = 0; t < 1200; t += 100) {
      ends[1].send({ t: "hb" });
      await runtime.advance(100);
    }
    assert.deepEqual(runtime.children[0].signals, ["SIGKILL"]);
    assert.deepEqual(runtime.children[1].signals, []);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("time a worker spent waiting for a CPU is not held against it", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 2,
      workerTimeout: 1000,
    });
    await bootAll(runtime);
    const [starved, hung] = runtime.alive();
    // Both go silent for 3 s: one waits for a CPU nearly all the time (a
    // machine busy starting many processes), the other runs (a hung loop).
    let waited = 0;
    runtime.threads.set(hung.pid, { cpuWait: 0, writing: false });
    for (let t = 0; t < 3000; t += 100) {
      runtime.threads.set(starved.pid, {
        cpuWait: waited += 95,
        writing: false,
      });
      await runtime.advance(100);
    }
    assert.deepEqual(starved.signals, []);
    assert.deepEqual(hung.signals, ["SIGKILL"]);
    assert.equal(logged(/sent no heartbeat/).length, 1);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a worker blocked writing its output is not taken for hung", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 1,
      workerTimeout: 1000,
    });
    const [end] = await bootAll(runtime);
    const blocked = runtime.alive()[0];
    // Its stdout's reader stalls for 5 s: console.log blocks the worker.
    runtime.threads.set(blocked.pid, { cpuWait: 0, writing: true });
    await runtime.advance(5000);
    assert.deepEqual(blocked.signals, []);
    assert.equal(logged(/is blocked writing its output/).length, 1);
    // The reader resumes: it beats again, then it is judged as before.
    runtime.threads.set(blocked.pid, { cpuWait: 0, writing: false });
    end.send({ t: "hb" });
    await runtime.advance(1200);
    assert.deepEqual(blocked.signals, ["SIGKILL"]);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a connection that breaks the protocol costs that worker only", async () => {
    const { runtime, exit, logged } = await setup({ workers: 3 });
    const ends = await bootAll(runtime);
    const [zero, one, two] = runtime.alive();
    ends[0].raw("x".repeat(1 << 20) + "\n");
    ends[1].raw("not json\n");
    ends[2].send({ t: "hb" });
    await runtime.advance(100); // the grace for an exit status to arrive
    assert.deepEqual(zero.signals, ["SIGTERM"]);
    assert.deepEqual(one.signals, ["SIGTERM"]);
    assert.deepEqual(two.signals, []);
    assert.match(
      logged(/broke the control protocol/)[0].msg,
      /larger than 1048576 bytes; stopping it/,
    );
    zero.exit(0);
    one.exit(0);
    await settle();
    assert.equal(runtime.alive().length, 3, "both replaced");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a connection closed without goodbye stops the worker; after goodbye it does not", async () => {
    const { runtime, exit, logged } = await setup({ workers: 3 });
    const ends = await bootAll(runtime);
    ends[0].connection.close();
    ends[1].send({ t: "bye", code: 0 });
    // A killed process: its connection ends just before its exit arrives.
    ends[2].connection.close();
    await settle();
    runtime.children[2].exit(137, "SIGKILL");
    await runtime.advance(100);
    // The goodbye is answered by closing: every frame before it was read.
    assert.equal(ends[1].closed, true);
    assert.deepEqual(runtime.children[0].signals, ["SIGTERM"]);
    assert.deepEqual(runtime.children[1].signals, []);
    assert.deepEqual(runtime.children[2].signals, []);
    assert.deepEqual(
      logged(/closed its control connection; stopping it/).map((r) =>
        r.msg.split(" ").slice(0, 2).join(" ")
      ),
      ["worker 0"],
    );
    assert.equal(logged(/^worker 2 .* was killed by SIGKILL/).length, 1);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("unauthenticated connections are capped and timed out", async () => {
    const { runtime, exit, logged } = await setup({ workers: 1 });
    const socket = runtime.children[0].options.env!.WORKERPOOL_CONTROL_SOCKET;
    const idle: FakeConnection[] = [];
    const connect = async (count: number) => {
      for (let i = 0; i < count; i++) {
        idle.push(await runtime.connectUnix(socket) as FakeConnection);
      }
      await settle();
    };
    const open = () => idle.filter((c) => !c.closed).length;
    // 32, and one more for the worker spawned and not connected yet.
    await connect(33);
    // All 33 are young: a 34th is refused, none of them goes.
    await connect(1);
    assert.equal(open(), 33);
    assert.equal(idle.at(-1)!.closed, true);
    // Older than 250 ms: the oldest go to make room.
    await runtime.advance(300);
    await connect(8);
    assert.equal(open(), 33);
    assert.ok(idle.slice(0, 8).every((c) => c.closed), "the oldest went");
    assert.equal(logged(/^too many control connections/).length, 1);
    // The worker itself still gets in (the oldest goes), and stays.
    const end = await runtime.child(0).hello();
    end.send({ t: "ready" });
    await settle();
    assert.equal(logged(/is ready/).length, 1);
    await runtime.advance(2050);
    assert.equal(open(), 0);
    assert.equal(logged(/no hello in time/).length, 32);
    assert.equal(logged(/^closed 10 control connections/).length, 1);
    assert.equal(end.closed, false);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("the cap follows a low open-file limit", async () => {
    const runtime = new FakeRuntime();
    runtime.limit = 64; // (64 - 32) / 4 = 8 held at most
    useRuntime(runtime);
    const supervisor = new Supervisor(Idle, { logger: { handle() {} } });
    const exit = supervisor.main().catch((e: FakeExit) => e.code);
    await until(() => runtime.children.length > 0);
    const socket = runtime.children[0].options.env!.WORKERPOOL_CONTROL_SOCKET;
    const idle: FakeConnection[] = [];
    for (let i = 0; i < 12; i++) {
      idle.push(await runtime.connectUnix(socket) as FakeConnection);
    }
    await settle();
    // 8, and the 2 workers spawned and not connected yet.
    assert.equal(idle.filter((c) => !c.closed).length, 10);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a worker that lost its channel before ready is no boot error", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 1,
      maxBootErrors: 2,
      minUptime: 0,
    });
    for (let i = 0; i < 5; i++) {
      await runtime.advance(0);
      runtime.child(0).exit(4); // crowded out by a flood of connections
      await settle();
    }
    assert.equal(logged(/halting the pool/).length, 0);
    assert.equal(runtime.alive().length, 1, "still served");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a worker stopped from elsewhere is bounded by gracefulTimeout, then replaced", async () => {
    const { runtime, exit, logged } = await setup({
      workers: 1,
      gracefulTimeout: 3000,
    });
    const [end] = await bootAll(runtime);
    const stuck = runtime.child(0);
    stuck.diesOf = new Set(["SIGKILL"]);
    // `kill -TERM` from a shell: its onShutdown never resolves.
    end.send({ t: "stopping", signal: "SIGTERM" });
    await runtime.advance(2999);
    assert.deepEqual(stuck.signals, []);
    await runtime.advance(1);
    assert.deepEqual(stuck.signals, ["SIGKILL"]);
    assert.equal(
      logged(/still running after gracefulTimeout 3000 ms/).length,
      1,
    );
    await runtime.advance(249);
    assert.equal(runtime.alive().length, 0);
    await runtime.advance(1);
    assert.equal(runtime.child(0).workerId, 0, "served again");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a failing master onStart exits 3 without spawning", async () => {
    const runtime = new FakeRuntime();
    useRuntime(runtime);
    const records: PoolLogRecord[] = [];
    const supervisor = new Supervisor(Idle, {
      logger: { handle: (r) => void records.push(r) },
    });
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
    useRuntime(runtime);
    const env = {
      WORKERPOOL_WORKER_ID: "4",
      WORKERPOOL_CONTROL_SOCKET: "/nonexistent/control.sock",
      WORKERPOOL_TOKEN: "t",
      WORKERPOOL_HEARTBEAT_INTERVAL: "1000",
      WORKERPOOL_GRACEFUL_TIMEOUT: "1000",
      WORKERPOOL_MASTER_PID: "1",
    };
    for (const [name, value] of Object.entries(env)) {
      runtime.env.set(name, value);
    }
    const supervisor = new Supervisor(Idle);
    const code = await supervisor.main().catch((e: FakeExit) => e.code);
    // Nothing listens on that socket: the worker cannot reach its master.
    assert.equal(code, 4, "the channel, not its code, failed");
    assert.equal(runtime.children.length, 0);
    assert.equal(runtime.env.size, 0, "WORKERPOOL_* variables are removed");
  });
});

describe("systemd's watchdog (fake runtime)", () => {
  test("is fed while the master supervises, not while a killed worker lingers", async () => {
    const { runtime, exit, logged } = await setup(
      { workers: 2, workerTimeout: 1000 },
      { NOTIFY_SOCKET: "/run/systemd/notify", WATCHDOG_USEC: "1000000" },
    );
    const ends = await bootAll(runtime);
    const pings = () =>
      runtime.notifications.filter((n) => n.message === "WATCHDOG=1").length;
    /** Lets `ms` pass while the workers in `ends` beat. */
    const beating = async (ms: number) => {
      for (let t = 0; t < ms; t += 100) {
        for (const end of ends) end.send({ t: "hb" });
        await runtime.advance(100);
      }
    };
    await beating(1100);
    assert.equal(pings(), 2); // every 500 ms
    assert.equal(runtime.getEnv("NOTIFY_SOCKET"), undefined);
    assert.deepEqual(
      runtime.notifications.slice(0, 3).map((n) => n.message),
      [
        "STATUS=starting: 0 of 2 workers ready",
        "STATUS=starting: 1 of 2 workers ready",
        "READY=1\nSTATUS=2 of 2 workers ready",
      ],
    );
    // Worker 0 goes silent and survives its SIGKILL (stuck in the kernel).
    const stuck = runtime.child(0);
    stuck.diesOf = new Set();
    ends.shift();
    await beating(1500);
    assert.deepEqual(stuck.signals, ["SIGKILL"]);
    const fed = pings();
    await beating(2000);
    assert.equal(pings(), fed, "fed while a killed worker lingers");
    assert.equal(logged(/^not feeding systemd's watchdog/).length, 1);
    assert.match(
      logged(/^not feeding/)[0]!.msg,
      /worker 0 \(pid \d+\) sent no heartbeat .* and is still alive/,
    );
    stuck.exit(137, "SIGKILL");
    await beating(600);
    assert.ok(pings() > fed, "fed again once it is gone");
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
    assert.equal(
      runtime.notifications.at(-1)?.message,
      "STOPPING=1\nSTATUS=stopping",
    );
  });

  test("a notify socket that cannot be opened fails the start, naming why", async () => {
    const runtime = new FakeRuntime();
    runtime.env.set("NOTIFY_SOCKET", "/run/systemd/notify");
    runtime.notifyRefusal = new Error("the master needs --allow-ffi");
    useRuntime(runtime);
    const records: PoolLogRecord[] = [];
    const code = await new Supervisor(Idle, {
      logger: { handle: (r) => void records.push(r) },
    }).main().catch((error: FakeExit) => error.code);
    assert.equal(code, 1);
    assert.equal(runtime.children.length, 0);
    assert.match(
      records.map((r) => r.msg).join("\n"),
      /Cannot run the pool: NOTIFY_SOCKET is set \(\/run\/systemd\/notify\), but systemd cannot be notified: the master needs --allow-ffi/,
    );
  });

  test("a message refused by systemd's full queue goes again, in order; a newer status replaces a waiting one", async () => {
    const { runtime, exit, logged } = await setup(
      { workers: 3 },
      { NOTIFY_SOCKET: "/run/systemd/notify" },
    );
    const sent = () => runtime.notifications.map((n) => n.message);
    const boot = async (id: number) =>
      (await runtime.child(id).hello()).send({ t: "ready" });
    runtime.notifyQueueFull = true;
    await boot(0);
    await boot(1);
    await runtime.advance(200);
    assert.deepEqual(sent(), ["STATUS=starting: 0 of 3 workers ready"]);
    await boot(2); // READY=1 waits behind the status
    runtime.notifyQueueFull = false;
    await runtime.advance(50);
    assert.deepEqual(sent(), [
      "STATUS=starting: 0 of 3 workers ready",
      "STATUS=starting: 2 of 3 workers ready", // replaced "1 of 3"
      "READY=1\nSTATUS=3 of 3 workers ready",
    ]);
    assert.deepEqual(logged(/Cannot notify systemd/), []);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a pause of the master (SIGSTOP) is not held against it: the first ping after it goes out", async () => {
    const { runtime, exit, logged } = await setup(
      { workers: 1, workerTimeout: 15_000 },
      // A ping every 100 ms: the first timer due after the pause.
      { NOTIFY_SOCKET: "/run/systemd/notify", WATCHDOG_USEC: "200000" },
    );
    await bootAll(runtime);
    await runtime.advance(1000);
    const pings = () =>
      runtime.notifications.filter((n) => n.message === "WATCHDOG=1").length;
    const before = pings();
    // Its periodic check (every 1.5 s here) falls 10 s behind meanwhile.
    await runtime.pause(10_000);
    assert.equal(pings(), before + 1, "pinged at once after the pause");
    assert.deepEqual(logged(/not feeding systemd's watchdog/), []);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });

  test("a reload before the pool was ever ready sends no RELOADING=1 nor READY=1", async () => {
    const { runtime, supervisor, exit } = await setup(
      { workers: 1 },
      { NOTIFY_SOCKET: "/run/systemd/notify" },
    );
    const reload = supervisor.reload().catch((error: Error) => error.message);
    const child = runtime.child(0);
    await runtime.advance(10);
    // The replacement fails to start: the reload fails.
    const next = runtime.children.at(-1)!;
    assert.notEqual(next, child);
    next.exit(1);
    assert.match(String(await reload), /Cannot reload/);
    const sent = runtime.notifications.map((n) => n.message);
    assert.ok(
      sent.every((m) => !/^(READY|RELOADING)=1/.test(m)),
      sent.join("|"),
    );
    assert.match(sent.at(-1)!, /^STATUS=starting: reload failed/);
    runtime.raise("SIGTERM");
    assert.equal(await exit, 0);
  });
});
