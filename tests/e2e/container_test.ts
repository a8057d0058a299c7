// A master as PID 1 of a PID namespace of its own, as in a container started
// without an init (`docker run` without `--init`): `unshare --fork --pid
// --mount-proc` runs it there. What the kernel does differently for PID 1
// (a signal without a handler is dropped, orphans are reparented to it, its
// exit kills the whole namespace) must not change how the pool stops, and
// what the pool cannot do as PID 1 (reap orphans) is pinned down here.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { SignalName } from "../../src/runtime/mod.ts";
import {
  answering,
  cleanup,
  fixture,
  freePort,
  type Master,
  readEvents,
  runtime,
  startScript,
  testDir,
  waitAllGone,
  waitFor,
} from "../_helpers.ts";

const dir = testDir();
const poolScript = fixture("pool.ts");
const orphanScript = fixture("orphan.ts");
const UNSHARE = ["unshare", "--fork", "--pid", "--mount-proc"];
const skip = unshareSkip();
// Neither test runner prints a skip's reason: say it once.
if (skip) console.warn(`container_test.ts: skipped: ${skip}`);

/** Why a PID namespace cannot be made here, or false. */
function unshareSkip(): string | false {
  const probe = spawnSync(UNSHARE[0], [...UNSHARE.slice(1), "true"], {
    encoding: "utf8",
  });
  if (probe.error !== undefined) {
    return `unshare (util-linux) cannot run here: ${probe.error.message}`;
  }
  if (probe.status === 0) return false;
  return `unshare --pid is not permitted here (${probe.stderr.trim()}): it needs root or CAP_SYS_ADMIN`;
}

/** A pool started as PID 1 of a new PID namespace, by `unshare`. */
interface Contained {
  /** `unshare`, whose exit code is the master's. */
  readonly unshare: Master;
  /** The master's pid outside the namespace (it is 1 inside). */
  readonly master: number;
  /** The namespace, as /proc/<pid>/ns/pid names it. */
  readonly namespace: string;
}

/** Starts `script` as `startScript` does, behind `unshare`: PID 1. */
async function startContained(
  script: string,
  env: Record<string, string>,
): Promise<Contained> {
  const unshare = startScript(script, env, { wrapper: UNSHARE });
  const child = unshare.process;
  try {
    const master = await waitFor(
      "unshare's child",
      () => childrenOf(child.pid)[0],
    );
    return { unshare, master, namespace: namespaceOf(master)! };
  } catch (error) {
    await cleanup(unshare);
    throw error;
  }
}

/** The children of `pid`, of all its threads. */
function childrenOf(pid: number): number[] {
  const pids: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8");
      pids.push(...text.split(" ").filter((p) => p !== "").map(Number));
    }
  } catch {
    // It exited while we looked: no children.
  }
  return pids;
}

/** The PID namespace of `pid`, or null once it is gone. */
function namespaceOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return null;
  }
}

/** Every process of `namespace`, zombies included, by its pid outside. */
function members(namespace: string): number[] {
  return readdirSync("/proc").filter((e) => /^\d+$/.test(e)).map(Number)
    .filter((pid) => namespaceOf(pid) === namespace);
}

/** Fields of /proc/<pid>/status (State, PPid, NSpid…), or null once gone. */
function status(pid: number): Map<string, string> | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  return new Map(
    text.split("\n").filter((line) => line.includes(":")).map((line) => {
      const at = line.indexOf(":");
      return [line.slice(0, at), line.slice(at + 1).trim()];
    }),
  );
}

/** The pid outside `pool`'s namespace of the process it numbers `inside`. */
function outside(pool: Contained, inside: number): number {
  const pid = members(pool.namespace).find((pid) =>
    status(pid)?.get("NSpid")?.split(/\s+/).at(-1) === String(inside)
  );
  assert.ok(pid !== undefined, `no pid ${inside} in ${pool.namespace}`);
  return pid;
}

/** Pids (as the namespace numbers them) of `who`'s events named `what`. */
function pidsOf(events: string, what: string, who = /^worker\d+$/): number[] {
  return readEvents(events).map((line) => line.split(" "))
    .filter(([w, e]) => who.test(w) && e === what).map(([, , pid]) =>
      Number(pid)
    );
}

/** Waits until `count` workers ran their `onStart` callbacks. */
function started(events: string, count: number): Promise<true> {
  return waitFor(
    `${count} workers started`,
    () => pidsOf(events, "start2").length >= count,
  );
}

/** Waits until `unshare` exited and nothing of the namespace is left. */
async function gone(pool: Contained): Promise<number> {
  const { code } = await pool.unshare.exited;
  await waitFor(
    `${pool.namespace} to be empty`,
    () => members(pool.namespace).length === 0,
  );
  await waitAllGone(pool.unshare.tag);
  return code;
}

describe("a master as PID 1 of a PID namespace", () => {
  // The README: SIGINT stops the master as SIGTERM does, with SIGINT passed
  // on to the workers (their onShutdown callbacks run at once), and exit 0.
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const name =
      `${signal} stops the pool: every worker shuts down, exit 0, nothing left`;
    it(name, { skip }, async () => {
      const events = join(dir, `${signal}.events`);
      const pool = await startContained(poolScript, {
        FIXTURE_WORKERS: "2",
        FIXTURE_EVENTS: events,
      });
      try {
        await started(events, 2);
        assert.deepEqual(pidsOf(events, "start", /^master$/), [1]);
        signalMaster(pool, signal);
        assert.equal(await gone(pool), 0, pool.unshare.output());
        const workers = pidsOf(events, "start2").sort();
        assert.deepEqual(pidsOf(events, "shutdown2").sort(), workers);
        assert.deepEqual(pidsOf(events, "shutdown", /^master$/), [1]);
        assert.match(
          pool.unshare.output(),
          new RegExp(`stopping 2 workers with ${signal}`),
        );
      } finally {
        await cleanup(pool.unshare);
      }
    });
  }

  it("a worker killed with SIGKILL is replaced", { skip }, async () => {
    const events = join(dir, "kill.events");
    const pool = await startContained(poolScript, {
      FIXTURE_WORKERS: "2",
      FIXTURE_EVENTS: events,
    });
    try {
      await started(events, 2);
      const [victim] = pidsOf(events, "start2", /^worker0$/);
      runtime.kill(outside(pool, victim), "SIGKILL");
      await waitFor(
        "worker 0 replaced",
        () => pidsOf(events, "start2", /^worker0$/).length === 2,
      );
      assert.match(
        pool.unshare.output(),
        new RegExp(`worker 0 \\(pid ${victim}\\) was killed by SIGKILL`),
      );
      signalMaster(pool, "SIGTERM");
      assert.equal(await gone(pool), 0, pool.unshare.output());
    } finally {
      await cleanup(pool.unshare);
    }
  });

  it("boot errors halt the pool: exit code 3 comes out of the namespace", {
    skip,
  }, async () => {
    const pool = await startContained(poolScript, {
      FIXTURE_WORKERS: "1",
      FIXTURE_BEHAVIOUR: "boot-fail",
      FIXTURE_MAXBOOTERRORS: "2",
    });
    try {
      assert.equal(await gone(pool), 3, pool.unshare.output());
      assert.match(pool.unshare.output(), /failed to start 2 times in a row/);
    } finally {
      await cleanup(pool.unshare);
    }
  });

  // Deno and Bun wait for the processes they spawned, never for any child
  // (waitpid(-1)): an orphan reparented to the master stays a zombie. Once
  // the master reaped a worker that died after the orphan, a reaper of any
  // child would have reaped the orphan too; so this is not a race.
  it("an orphan a worker left behind stays a zombie until the master exits", {
    skip,
  }, async () => {
    const events = join(dir, "orphan.events");
    const pool = await startContained(orphanScript, {
      FIXTURE_WORKERS: "1",
      FIXTURE_EVENTS: events,
    });
    try {
      await started(events, 1);
      const orphan = outside(pool, orphanOf(events));
      assert.equal(status(orphan)?.get("PPid"), String(pool.master));
      runtime.kill(orphan, "SIGKILL");
      await waitFor(
        "the orphan to be a zombie",
        () => status(orphan)?.get("State")?.startsWith("Z"),
      );
      const [worker] = pidsOf(events, "start2");
      const reaped = outside(pool, worker);
      runtime.kill(reaped, "SIGKILL");
      await waitFor("the worker reaped", () => status(reaped) === null);
      await started(events, 2);
      assert.match(status(orphan)?.get("State") ?? "gone", /^Z/);
      assert.equal(status(orphan)?.get("PPid"), String(pool.master));
      // A zombie still counts as a member: gone() waits for it too.
      assert.ok(members(pool.namespace).includes(orphan));
      // The kernel empties the namespace when its PID 1 exits.
      signalMaster(pool, "SIGTERM");
      assert.equal(await gone(pool), 0, pool.unshare.output());
      assert.equal(status(orphan), null);
    } finally {
      await cleanup(pool.unshare);
    }
  });
});

/** The pid, in the namespace, of the orphan the first worker left. */
function orphanOf(events: string): number {
  const what = readEvents(events).map((line) => line.split(" ")[1])
    .find((what) => what.startsWith("orphan:"));
  assert.ok(what !== undefined, "the worker recorded no orphan");
  return Number(what.slice("orphan:".length));
}

/** Sends `signal` from outside to the namespace's PID 1, the master. */
function signalMaster(pool: Contained, signal: SignalName): void {
  assert.ok(runtime.kill(pool.master, signal), `${signal} not delivered`);
}

describe("a container's read-only root", () => {
  it(
    "a read-only /tmp costs the port lock, not the pool",
    { skip },
    async () => {
      // Containers with a read-only root: the port locks live in /tmp
      // whatever TMPDIR says. A mount namespace gets /tmp read-only, its
      // files still there (a checkout and its runtimes may be in /tmp).
      const writable = mkdtempSync("/var/tmp/workerpool-test-");
      after(() => rmSync(writable, { recursive: true, force: true }));
      const port = await freePort();
      const master = startScript(poolScript, {
        FIXTURE_PORT: String(port),
        FIXTURE_WORKERS: "2",
        TMPDIR: writable,
      }, {
        wrapper: [
          "unshare",
          "--mount",
          "sh",
          "-c",
          'mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp && exec "$@"',
          "sh",
        ],
      });
      try {
        await waitFor(
          "the lock's failure said",
          () =>
            /Cannot take the port lock in \/tmp: .*(Read-only|EROFS)/i.test(
              master.output(),
            ),
        );
        await answering(port, 2);
        master.kill("SIGTERM");
        assert.equal((await master.exited).code, 0, master.output());
        assert.doesNotMatch(master.output(), /Uncaught|CRITICAL/);
      } finally {
        await cleanup(master);
      }
    },
  );
});
