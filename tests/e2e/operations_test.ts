// Operating a live pool: rolling reload on SIGHUP, scaling on TTIN/TTOU,
// recycling; real processes, real signals, real HTTP.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import {
  answering,
  cleanup,
  fixture,
  freePort,
  getWhenUp,
  httpGet,
  type Master,
  MIGRATE,
  migrateSkip,
  readEvents,
  runtime,
  setMigrate,
  startScript,
  stopAndCheck,
  taggedPids,
  testDir,
  waitFor,
} from "../_helpers.ts";
import { startLoad } from "../_load.ts";

const dir = testDir();
const pool = fixture("pool.ts");

/**
 * A pool of 2 on a fresh port whose workers answer with the version they
 * read at start from a file; `deploy(v)` writes the next version.
 */
async function versionedPool(name: string, env: Record<string, string> = {}) {
  const port = await freePort();
  const version = join(dir, `${name}.version`);
  writeFileSync(version, "1");
  const master = startScript(pool, {
    FIXTURE_PORT: String(port),
    FIXTURE_WORKERS: "2",
    FIXTURE_VERSION_FILE: version,
    ...env,
  });
  return {
    port,
    master,
    deploy: (next: string) => writeFileSync(version, next),
  };
}

/** How many times `pattern` occurs in the master's output. */
function count(master: Master, pattern: RegExp): number {
  return master.output().match(new RegExp(pattern, "g"))?.length ?? 0;
}

/** Waits until the master said `pattern` `times` times in all. */
function said(master: Master, pattern: RegExp, times = 1): Promise<true> {
  return waitFor(
    `the master to say ${pattern} (${times}×)`,
    () => count(master, pattern) >= times,
  );
}

/** The versions answering on `port`, over `requests` fresh connections. */
async function versions(port: number, requests = 12): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < requests; i++) {
    seen.add((await httpGet(port)).split(" ")[2]!);
  }
  return seen;
}

describe("rolling reload", () => {
  test("SIGHUP picks up new code, one worker at a time, with no gap", async () => {
    const { port, master, deploy } = await versionedPool("reload");
    try {
      const before = await answering(port, 2);
      assert.deepEqual(await versions(port), new Set(["v1"]));
      deploy("2");
      master.kill("SIGHUP");
      await said(master, /reload 1 done: 2 workers replaced/);
      // The old processes answer until they drained and exited.
      await waitFor(
        "the old workers to exit",
        () => [...before.values()].every((pid) => !runtime.isAlive(pid)),
      );
      assert.deepEqual(await versions(port), new Set(["v2"]));
      const after = await answering(port, 2);
      for (const id of [0, 1]) assert.notEqual(after.get(id), before.get(id));
      assert.equal(taggedPids(master.tag).length, 3);
      // The accept-queue notice, once, where the sysctl is off.
      const off = readFileSync(MIGRATE, "utf8").trim() === "0" ? 1 : 0;
      assert.equal(count(master, /tcp_migrate_req is 0/), off);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("output files are reopened, for logrotate", async () => {
    const stdout = join(dir, "rotate.log");
    const master = startScript(pool, {
      FIXTURE_WORKERS: "1",
      FIXTURE_BEHAVIOUR: "print-flood",
      FIXTURE_STDOUT: stdout,
    });
    try {
      await waitFor(
        "lines in the file",
        () =>
          existsSync(stdout) &&
          readFileSync(stdout, "utf8").includes("print 0"),
      );
      renameSync(stdout, `${stdout}.1`);
      master.kill("SIGHUP");
      await said(master, /reload 1 done/);
      await waitFor(
        "lines in a new file",
        () =>
          existsSync(stdout) &&
          readFileSync(stdout, "utf8").includes("print 0"),
      );
      assert.match(readFileSync(`${stdout}.1`, "utf8"), /^print 0 0 /);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("a broken deploy keeps the old workers serving; a fixed one reloads", async () => {
    const { port, master, deploy } = await versionedPool("broken");
    try {
      const before = await answering(port, 2);
      deploy("broken");
      master.kill("SIGHUP");
      await said(master, /Reload 1 failed: .*fixture broken deploy/);
      assert.match(master.output(), /ERROR .*Reload 1 failed/);
      assert.deepEqual(await answering(port, 2), before);
      assert.deepEqual(await versions(port), new Set(["v1"]));
      deploy("3");
      master.kill("SIGHUP");
      await said(master, /reload 2 done: 2 workers replaced/);
      await waitFor(
        "the old workers to exit",
        () => [...before.values()].every((pid) => !runtime.isAlive(pid)),
      );
      assert.deepEqual(await versions(port), new Set(["v3"]));
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("SIGTERM during a reload stops both generations", async () => {
    const { port, master, deploy } = await versionedPool("slow");
    try {
      await answering(port, 2);
      // The replacement takes 3 s to get ready: the stop lands meanwhile.
      deploy("slow");
      master.kill("SIGHUP");
      await said(master, /reloading 2 workers/);
      await waitFor(
        "the replacement",
        () => taggedPids(master.tag).length === 4,
      );
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("a reload under load", () => {
  test("drops no request, and a slow request in flight completes", {
    skip: migrateSkip(),
  }, async () => {
    const events = join(dir, "load.events");
    const restore = setMigrate("1");
    const { port, master, deploy } = await versionedPool("load", {
      FIXTURE_SLOW_MS: "2000",
      FIXTURE_EVENTS: events,
    });
    try {
      await answering(port, 2);
      const load = startLoad(port, 8);
      for (let reload = 1; reload <= 3; reload++) {
        deploy(String(reload + 1));
        const slow = reload === 2 ? httpGet(port, "/slow") : null;
        if (slow) {
          await waitFor(
            "the slow request in its handler",
            () => readEvents(events).some((e) => e.includes("slow-begin")),
          );
        }
        master.kill("SIGHUP");
        await said(master, new RegExp(`reload ${reload} done`));
        if (slow) assert.equal(await slow, "slow but whole");
      }
      const result = await load.stop();
      assert.equal(result.failed, 0, result.errors.join("\n"));
      assert.ok(result.ok > 100, `${result.ok} requests answered`);
      // The old processes answer until they drained and exited.
      await waitFor(
        "the old workers to exit",
        () => taggedPids(master.tag).length === 3,
      );
      assert.deepEqual(await versions(port), new Set(["v4"]));
      await stopAndCheck(master);
    } finally {
      restore();
      await cleanup(master);
    }
  });
});

describe("scaling", () => {
  test("TTIN adds a worker, TTOU removes the highest id, never the last", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
    });
    try {
      const [[, first]] = [...(await answering(port, 1))];
      master.kill("SIGTTIN");
      const two = await answering(port, 2);
      // Handled: TTIN and TTOU would stop a process by default.
      const stat = readFileSync(`/proc/${master.pid}/stat`, "utf8");
      assert.notEqual(stat.slice(stat.lastIndexOf(")") + 2)[0], "T");
      assert.equal(two.get(0), first);
      master.kill("SIGTTOU");
      await waitFor("worker 1 to exit", () => !runtime.isAlive(two.get(1)!));
      master.kill("SIGTTOU");
      await said(master, /SIGTTOU ignored: the pool keeps at least one worker/);
      assert.equal((await getWhenUp(port)).split(" ")[1], String(first));
      assert.equal(taggedPids(master.tag).length, 2);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("recycling", () => {
  test("by request count: a worker past maxRequests is replaced", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_MAXREQUESTS: "5",
      // Heartbeats (which carry the count) every 200 ms.
      FIXTURE_WORKERTIMEOUT: "1000",
    });
    try {
      const first = (await answering(port, 1)).get(0)!;
      for (let i = 0; i < 6; i++) await httpGet(port);
      await said(
        master,
        /recycling worker 0 .*: it served \d+ requests \(limit 5\)/,
      );
      await said(master, new RegExp(`worker 0 \\(pid ${first}\\) replaced by`));
      await waitFor("the old worker to exit", () => !runtime.isAlive(first));
      assert.notEqual((await answering(port, 1)).get(0), first);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("by age: a worker older than maxAge is replaced", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_MAXAGE: "1500",
    });
    try {
      const first = (await answering(port, 1)).get(0)!;
      await said(master, /recycling worker 0 .*: it is \d+ ms old/);
      await said(master, new RegExp(`worker 0 \\(pid ${first}\\) replaced by`));
      assert.notEqual((await answering(port, 1)).get(0), first);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("one pool per port", () => {
  test("a lock naming a live process that is no master is stale: taken, the process spared", async () => {
    const port = await freePort();
    // A pid that lives (this test process), and a control directory for it
    // as a master killed with its workers leaves behind: nothing answers.
    const fake = join(tmpdir(), `workerpool-${process.pid}-deadbeef`);
    mkdirSync(fake, { recursive: true });
    writeFileSync(lockOf(port), `${process.pid} ${fake}/control.sock\n`);
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_TAKEOVER: "1",
    });
    try {
      await answering(port, 2);
      await waitFor("the lock", () => lockHolder(port) === master.pid);
      assert.doesNotMatch(master.output(), /took over from/);
      await stopAndCheck(master);
      assert.equal(existsSync(lockOf(port)), false);
    } finally {
      rmSync(fake, { recursive: true, force: true });
      await cleanup(master);
    }
  });

  test("two takeovers at once: the first pool ready wins, the other stops and says why", async () => {
    const port = await freePort();
    const common = { FIXTURE_PORT: String(port), FIXTURE_WORKERS: "2" };
    const first = startScript(pool, common);
    let slow: Master | null = null;
    let fast: Master | null = null;
    try {
      const old = new Set((await answering(port, 2)).values());
      // Listens at once, gets ready only once the gate opens.
      const gate = join(dir, `gate-${port}`);
      slow = startScript(pool, {
        ...common,
        FIXTURE_TAKEOVER: "1",
        FIXTURE_READY_GATE: gate,
      });
      await waitFor("the slow pool's workers to listen", async () => {
        const pid = Number((await getWhenUp(port)).split(" ")[1]);
        return !old.has(pid);
      });
      fast = startScript(pool, { ...common, FIXTURE_TAKEOVER: "1" });
      assert.equal((await first.exited).code, 0, first.output());
      writeFileSync(gate, "open");
      assert.equal((await slow.exited).code, 1, slow.output());
      assert.match(
        slow.output(),
        new RegExp(
          `another pool \\(master pid ${fast.pid}\\) took over port ${port} while this one started; this pool stops`,
        ),
      );
      assert.equal(lockHolder(port), fast.pid);
      await stopAndCheck(fast);
      assert.equal(existsSync(lockOf(port)), false);
    } finally {
      await cleanup(first);
      if (slow !== null) await cleanup(slow);
      if (fast !== null) await cleanup(fast);
    }
  });

  test("a second pool on a port is refused at once, naming the first one's master", async () => {
    const port = await freePort();
    const first = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
    });
    let second: Master | null = null;
    try {
      const before = await answering(port, 2);
      second = startScript(pool, {
        FIXTURE_PORT: String(port),
        FIXTURE_WORKERS: "2",
      });
      assert.equal((await second.exited).code, 3, second.output());
      assert.match(
        second.output(),
        new RegExp(
          `port ${port} is served by the workerpool of master pid ${first.pid}; start with takeover: true`,
        ),
      );
      assert.match(second.output(), /trying again cannot help; halting/);
      assert.equal(count(second, /spawned worker|is ready/), 0);
      assert.deepEqual(await answering(port, 2), before);
      await stopAndCheck(first);
      assert.equal(existsSync(lockOf(port)), false, "the lock is released");
    } finally {
      await cleanup(first);
      if (second !== null) await cleanup(second);
    }
  });

  test("takeover: the new pool serves first, then the old master drains and exits", async () => {
    const port = await freePort();
    const pidfile = join(dir, "takeover.pid");
    const version = join(dir, "takeover-old.version");
    const newVersion = join(dir, "takeover-new.version");
    writeFileSync(version, "old");
    writeFileSync(newVersion, "new");
    const common = {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_PIDFILE: pidfile,
    };
    // Without the sysctl, connections queued on the old pool's listeners
    // when they close are reset: counted, not asserted.
    const migrate = migrateSkip() === false;
    const restore = migrate ? setMigrate("1") : () => {};
    const old = startScript(pool, { ...common, FIXTURE_VERSION_FILE: version });
    let next: Master | null = null;
    try {
      await answering(port, 2);
      assert.equal(lockHolder(port), old.pid);
      const load = startLoad(port, 4);
      next = startScript(pool, {
        ...common,
        FIXTURE_VERSION_FILE: newVersion,
        FIXTURE_TAKEOVER: "1",
      });
      assert.equal((await old.exited).code, 0, old.output());
      const result = await load.stop();
      assert.ok(result.ok > 0);
      if (migrate) {
        assert.equal(result.failed, 0, result.errors.join("\n"));
      }
      assert.match(
        next.output(),
        new RegExp(`took over from the pool of master pid ${old.pid}`),
      );
      assert.deepEqual(await versions(port), new Set(["vnew"]));
      assert.equal(readFileSync(pidfile, "utf8").trim(), String(next.pid));
      assert.equal(lockHolder(port), next.pid);
      await stopAndCheck(next);
      assert.equal(existsSync(pidfile), false);
      assert.equal(existsSync(lockOf(port)), false);
    } finally {
      restore();
      await cleanup(old);
      if (next !== null) await cleanup(next);
    }
  });
});

/** The master pid the lock of `port` names. */
function lockHolder(port: number): number {
  return Number(readFileSync(lockOf(port), "utf8").split(" ")[0]);
}

/** The lock file of a port. */
function lockOf(port: number): string {
  return `/tmp/workerpool-port-${port}.lock`;
}
