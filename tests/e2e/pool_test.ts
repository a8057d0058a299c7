// Integration: real pools of real processes under the runtime running the
// tests, real signals, real HTTP on one shared port.
import process from "node:process";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import {
  answering,
  cleanup,
  fixture,
  freePort,
  getWhenUp,
  readEvents,
  runtime,
  startScript,
  stopAndCheck,
  testDir,
  waitAllGone,
  waitFor,
} from "../_helpers.ts";

const dir = testDir();
const pool = fixture("pool.ts");

describe("a pool on one port", () => {
  test("answers HTTP from two distinct worker pids", async () => {
    const port = await freePort();
    const master = startScript(pool, { FIXTURE_PORT: String(port) });
    try {
      const seen = await answering(port, 2);
      assert.deepEqual([...seen.keys()].sort(), [0, 1]);
      assert.equal(new Set(seen.values()).size, 2);
      assert.ok(![...seen.values()].includes(master.pid));
      assert.ok(master.kill("SIGTERM"));
      assert.equal((await master.exited).code, 0);
      await waitAllGone(master.tag);
    } finally {
      await cleanup(master);
    }
  });

  test("replaces a worker killed with SIGKILL under the same id", async () => {
    const port = await freePort();
    const master = startScript(pool, { FIXTURE_PORT: String(port) });
    try {
      const before = await answering(port, 2);
      const victim = before.get(0)!;
      runtime.kill(victim, "SIGKILL");
      const replacement = await waitFor("a new pid for worker 0", async () => {
        const [id, pid] = (await getWhenUp(port)).split(" ").map(Number);
        return id === 0 && pid !== victim ? pid : undefined;
      });
      assert.notEqual(replacement, victim);
      assert.equal(runtime.isAlive(victim), false);
      assert.match(
        master.output(),
        new RegExp(`pid ${victim}\\) was killed by SIGKILL`),
      );
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("SIGTERM runs the callbacks in order on both sides and exits 0", async () => {
    const port = await freePort();
    const events = join(dir, "sigterm.events");
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_EVENTS: events,
    });
    try {
      await answering(port, 2);
      await waitFor(
        "both workers in main",
        () =>
          readEvents(events).filter((e) => e.includes("main-begin")).length ===
            2,
      );
      master.kill("SIGTERM");
      master.kill("SIGTERM"); // repeated: must change nothing
      assert.equal((await master.exited).code, 0);
      await waitAllGone(master.tag);
      const lines = readEvents(events);
      const names = lines.map((l) => l.split(" ").slice(0, 2).join(" "));
      assert.equal(names[0], "master start");
      assert.equal(names.at(-1), "master shutdown");
      for (const id of [0, 1]) {
        assert.deepEqual(
          names.filter((n) => n.startsWith(`worker${id} `)),
          [
            "start1",
            "start2",
            "main-begin",
            "main-end",
            "shutdown1",
            "shutdown2",
          ]
            .map((step) => `worker${id} ${step}`),
        );
      }
    } finally {
      await cleanup(master);
    }
  });

  test("SIGINT aborts main(), runs the shutdown callbacks, leaves nothing", async () => {
    const events = join(dir, "sigint.events");
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "interrupt",
      FIXTURE_EVENTS: events,
    });
    try {
      await waitFor(
        "both workers in main",
        () =>
          readEvents(events).filter((e) => e.includes("main-begin")).length ===
            2,
      );
      master.kill("SIGINT");
      master.kill("SIGINT");
      assert.equal((await master.exited).code, 0);
      await waitAllGone(master.tag);
      const names = readEvents(events).map((l) =>
        l.split(" ").slice(0, 2).join(" ")
      );
      for (const id of [0, 1]) {
        const own = names.filter((n) => n.startsWith(`worker${id} `));
        assert.deepEqual(own.slice(-3), [
          `worker${id} main-aborted`,
          `worker${id} shutdown1`,
          `worker${id} shutdown2`,
        ]);
        assert.ok(!own.includes(`worker${id} main-end`));
      }
      assert.equal(names.at(-1), "master shutdown");
    } finally {
      await cleanup(master);
    }
  });

  test("a worker ignoring SIGTERM is killed after gracefulTimeout", async () => {
    const events = join(dir, "stuck.events");
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "stuck",
      FIXTURE_EVENTS: events,
      FIXTURE_WORKERS: "1",
      FIXTURE_GRACEFULTIMEOUT: "300",
    });
    try {
      await waitFor(
        "the worker in main",
        () => readEvents(events).some((e) => e.includes("main-begin")),
      );
      await stopAndCheck(master);
      assert.match(
        master.output(),
        /still running after gracefulTimeout 300 ms; sent SIGKILL/,
      );
      assert.ok(!readEvents(events).some((e) => e.includes("shutdown1")));
    } finally {
      await cleanup(master);
    }
  });

  test("a port held without reusePort is a boot error naming the port", async () => {
    const port = await freePort();
    const holder = createServer();
    await new Promise<void>((resolve) =>
      holder.listen(port, "127.0.0.1", resolve)
    );
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_MAXBOOTERRORS: "2",
    });
    try {
      const { code } = await master.exited;
      assert.equal(code, 3);
      // The cause, said once (it was said twice, once as the cause's cause).
      assert.match(
        master.output(),
        new RegExp(
          `failed to start: Cannot listen on 127\\.0\\.0\\.1:${port}: [^\\n(]*(\\(os error 98\\))?\\n`,
        ),
      );
      assert.doesNotMatch(master.output(), /in use[^\n]*in use/);
      assert.match(
        master.output(),
        /failed to start 2 times in a row; halting the pool/,
      );
      await waitAllGone(master.tag);
    } finally {
      holder.close();
      await cleanup(master);
    }
  });
});

describe("worker processes", () => {
  test("run with the master's runtime flags, never more permissions", async () => {
    const events = join(dir, "flags.events");
    const isDeno = runtime.name === "deno";
    // Deno: a master without --allow-sys, --allow-ffi, --allow-import must not
    // hand them on.
    const master = startScript(
      pool,
      {
        FIXTURE_EVENTS: events,
        FIXTURE_WORKERS: "1",
      },
      {
        denoFlags: [
          "--allow-read",
          "--allow-write",
          "--allow-env",
          "--allow-run",
          "--allow-net",
        ],
      },
    );
    try {
      const line = await waitFor(
        "the worker in main",
        () => readEvents(events).find((e) => e.includes("main-begin")),
      );
      const pid = Number(line.split(" ")[2]);
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (isDeno) {
        assert.ok(argv.includes("--unstable-net"), argv.join(" "));
        const allows = argv.filter((a) => a.startsWith("--allow"));
        assert.deepEqual(allows.sort(), [
          "--allow-env",
          "--allow-net",
          "--allow-read",
          "--allow-run",
          "--allow-write",
        ]);
        assert.ok(argv.includes("--no-prompt"));
      } else {
        assert.equal(argv[0], process.execPath);
        assert.ok(argv.includes(pool), argv.join(" "));
      }
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("with -A on Deno, get the master's other runtime flags too", async () => {
    const events = join(dir, "flags-all.events");
    const flags = runtime.name === "deno"
      ? ["-A", "--location", "http://127.0.0.1/app/"]
      : [];
    const master = startScript(pool, {
      FIXTURE_EVENTS: events,
      FIXTURE_WORKERS: "1",
    }, { denoFlags: flags });
    try {
      const line = await waitFor(
        "the worker in main",
        () => readEvents(events).find((e) => e.includes("main-begin")),
      );
      const pid = Number(line.split(" ")[2]);
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      for (const flag of flags) assert.ok(argv.includes(flag), argv.join(" "));
      assert.equal(
        argv.at(-2),
        runtime.name === "deno" ? `file://${pool}` : pool,
      );
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("permissions", () => {
  test("a Deno master short of one says which before its pidfile and onStart", async () => {
    const events = join(dir, "perm.events");
    const pidfile = join(dir, "perm.pid");
    // No --allow-net: Deno counts Unix sockets as network. Bun has no
    // permissions: the same master runs its pool.
    const master = startScript(pool, {
      FIXTURE_EVENTS: events,
      FIXTURE_PIDFILE: pidfile,
      FIXTURE_WORKERS: "1",
    }, {
      denoFlags: [
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-run",
      ],
    });
    try {
      if (runtime.name === "deno") {
        assert.equal((await master.exited).code, 1);
        assert.match(
          master.output(),
          /Cannot run the pool: the master needs --allow-net \(or -A\)/,
        );
        assert.deepEqual(readEvents(events), []);
        assert.equal(existsSync(pidfile), false);
      } else {
        await waitFor(
          "the worker in main",
          () => readEvents(events).some((e) => e.includes("main-begin")),
        );
        master.kill("SIGTERM");
        assert.equal((await master.exited).code, 0);
      }
      await waitAllGone(master.tag);
    } finally {
      await cleanup(master);
    }
  });
});

describe("signals from outside the pool", () => {
  test("Ctrl-C to the whole process group stops it cleanly", async () => {
    const events = join(dir, "ctrl-c.events");
    // Three rounds: the race between the workers' own SIGINT and the
    // master's is different every time.
    for (let round = 0; round < 3; round++) {
      const master = startScript(pool, {
        FIXTURE_EVENTS: events,
        FIXTURE_WORKERS: "3",
      }, { detached: true });
      try {
        await waitFor(
          "three workers in main",
          () =>
            readEvents(events).filter((e) => e.includes("main-begin"))
              .length ===
              3,
        );
        process.kill(-master.pid, "SIGINT"); // what a terminal does
        assert.equal((await master.exited).code, 0);
        await waitAllGone(master.tag);
        const output = master.output();
        assert.doesNotMatch(output, /killed by SIGINT/);
        assert.doesNotMatch(output, / WARN | ERROR /);
        // No replacement was started while the pool went down.
        const pids = new Set(
          [...output.matchAll(/worker \d \(pid (\d+)\)/g)].map((m) => m[1]),
        );
        assert.equal(pids.size, 3, output);
        const shutdowns = readEvents(events).filter((e) =>
          e.includes("shutdown2")
        );
        assert.equal(shutdowns.length, 3, "every worker shut down once");
      } finally {
        await cleanup(master);
        rmSync(events, { force: true });
      }
    }
  });

  test("a signal during a hung master onStart waits; a second one exits", async () => {
    const events = join(dir, "hang.events");
    const master = startScript(pool, {
      FIXTURE_EVENTS: events,
      FIXTURE_MASTER_HANG: "1",
    });
    try {
      await waitFor(
        "the master's onStart",
        () => readEvents(events).some((e) => e.startsWith("master start")),
      );
      master.kill("SIGTERM");
      await waitFor(
        "the warning",
        () =>
          /stopping once the onStart callbacks finish/.test(master.output()),
      );
      master.kill("SIGINT");
      assert.equal((await master.exited).code, 1);
      assert.match(
        master.output(),
        /SIGINT again during the onStart callbacks/,
      );
      await waitAllGone(master.tag);
      assert.ok(!readEvents(events).some((e) => e.startsWith("worker")));
    } finally {
      await cleanup(master);
    }
  });

  test("a worker with a sync stretch in main() reports ready first", async () => {
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "sync-block",
      FIXTURE_WORKERS: "1",
    });
    try {
      const pid = await waitFor(
        "the first worker to exit",
        () => master.output().match(/worker 0 \(pid (\d+)\) exited/)?.[1],
      );
      assert.match(
        master.output(),
        new RegExp(`worker 0 \\(pid ${pid}\\) is ready`),
      );
      assert.ok(
        master.output().indexOf(`pid ${pid}) is ready`) <
          master.output().indexOf(`pid ${pid}) exited`),
      );
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});
