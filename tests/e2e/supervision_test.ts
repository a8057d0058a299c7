// Integration: hang detection, orphans, crash loops, the control socket's
// defences, output and log forwarding, pidfiles and daemons.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { Socket } from "node:net";
import { join } from "node:path";
import {
  cleanup,
  controlSocketOf,
  fixture,
  freePort,
  getWhenUp,
  type Master,
  pidOf,
  readRecords,
  runtime,
  startScript,
  stopAndCheck,
  taggedPids,
  testDir,
  waitAllGone,
  waitFor,
} from "../_helpers.ts";

const dir = testDir();
const pool = fixture("pool.ts");

describe("hung workers", () => {
  test("a SIGSTOPped worker is killed and replaced", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_WORKERTIMEOUT: "500",
    });
    try {
      const stopped = await pidOf(port, 0);
      runtime.kill(stopped, "SIGSTOP");
      const replacement = await pidOf(port, 0, stopped);
      assert.notEqual(replacement, stopped);
      assert.equal(runtime.isAlive(stopped), false);
      assert.match(
        master.output(),
        new RegExp(`pid ${stopped}\\) sent no heartbeat for \\d+ ms`),
      );
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("a worker whose event loop is blocked is killed and replaced", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_WORKERTIMEOUT: "500",
    });
    try {
      const blocked = await pidOf(port, 0);
      // The request never gets an answer: the handler spins forever.
      const socket = new Socket();
      socket.on("error", () => {});
      socket.connect(
        port,
        "127.0.0.1",
        () => socket.write("GET /block HTTP/1.1\r\nHost: x\r\n\r\n"),
      );
      const replacement = await pidOf(port, 0, blocked);
      socket.destroy();
      assert.notEqual(replacement, blocked);
      assert.match(master.output(), /sent no heartbeat/);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("master death", () => {
  test("SIGKILL of the master leaves no worker behind", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "3",
    });
    try {
      const worker = await pidOf(port, 0);
      await waitFor("three workers", () => taggedPids(master.tag).length === 4);
      const socket = controlSocketOf(worker);
      assert.ok(existsSync(socket));
      master.kill("SIGKILL");
      await master.exited;
      await waitAllGone(master.tag, 10_000);
      assert.match(master.output(), /the master is gone; shutting down/);
      // The workers removed the directory the killed master could not.
      assert.equal(existsSync(socket.slice(0, socket.lastIndexOf("/"))), false);
    } finally {
      await cleanup(master);
    }
  });
});

describe("crash loops", () => {
  test("boot errors back off, then halt the pool with exit 3 and the cause", async () => {
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "boot-fail",
      FIXTURE_WORKERS: "2",
      FIXTURE_MAXBOOTERRORS: "4",
    });
    try {
      const { code } = await master.exited;
      assert.equal(code, 3);
      const output = master.output();
      assert.match(
        output,
        /worker \d \(pid \d+\) exited with code 3 after \d+ ms; restarting it in 100 ms \(it keeps dying young\)/,
      );
      assert.match(output, /restarting it in 200 ms/);
      assert.match(
        output,
        /failed to start 4 times in a row; halting the pool\. Last cause: fixture boot failure/,
      );
      assert.equal(output.match(/halting the pool/g)?.length, 1);
      // The cause's stack, once, on lines of its own.
      assert.match(
        output,
        /failed to start: fixture boot failure\n\s+at .*pool\.ts:\d+/,
      );
      await waitAllGone(master.tag);
    } finally {
      await cleanup(master);
    }
  });
});

describe("the control socket", () => {
  test("drops garbage, oversized frames and wrong tokens; the pool serves on", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
    });
    try {
      const worker = await pidOf(port, 0);
      const path = controlSocketOf(worker);
      const token = "0".repeat(32);
      const attempts = [
        "this is not json\n",
        JSON.stringify({ t: "hello", id: 0, pid: 1, token }) + "\n",
        "x".repeat(1 << 20) + "\n",
        JSON.stringify({ t: "hb" }) + "\n",
      ];
      for (const payload of attempts) {
        assert.equal(await sendAndAwaitClose(path, payload), "closed");
      }
      await waitFor(
        "four drops in the log",
        () =>
          master.output().match(/dropped the control connection/g)?.length ===
            4,
      );
      assert.match(master.output(), /not JSON/);
      assert.match(master.output(), /wrong token for worker 0/);
      assert.match(master.output(), /larger than 1048576 bytes/);
      assert.match(master.output(), /did not say hello/);
      // No worker was lost or replaced.
      assert.equal(await pidOf(port, 0), worker);
      assert.doesNotMatch(master.output(), /exited with code|killed by/);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

/** Writes `payload` to the Unix socket and waits for the peer to close. */
function sendAndAwaitClose(path: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    socket.on("error", (error: { code?: string }) => {
      // The master may close while we are still writing a large frame.
      if (error.code === "EPIPE" || error.code === "ECONNRESET") {
        resolve("closed");
      } else reject(error);
    });
    socket.on("data", () => {});
    socket.on("close", () => resolve("closed"));
    socket.connect(path, () => socket.write(payload));
  });
}

describe("worker output", () => {
  test("every stdout and stderr line reaches its file, whole", async () => {
    const stdout = join(dir, "out.log");
    const stderr = join(dir, "err.log");
    const events = join(dir, "chatty.events");
    const lines = 2000;
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "chatty",
      FIXTURE_WORKERS: "2",
      FIXTURE_LINES: String(lines),
      FIXTURE_STDOUT: stdout,
      FIXTURE_STDERR: stderr,
      FIXTURE_EVENTS: events,
    });
    try {
      await waitFor("both workers in main", () =>
        existsSync(events) &&
        readFileSync(events, "utf8").match(/main-begin/g)?.length === 2);
      await stopAndCheck(master);
      const out = readFileSync(stdout, "utf8").split("\n").filter(Boolean);
      const err = readFileSync(stderr, "utf8").split("\n").filter(Boolean);
      assert.equal(out.length, 2 * lines);
      assert.equal(err.length, 2 * lines);
      for (const id of [0, 1]) {
        const own = out.filter((l) => l.startsWith(`out ${id} `));
        assert.equal(own.length, lines);
        own.forEach((line, i) =>
          assert.equal(line, `out ${id} ${i} ${"x".repeat(i % 200)}`)
        );
        const errs = err.filter((l) => l.startsWith(`err ${id} `));
        errs.forEach((line, i) => assert.equal(line, `err ${id} ${i}`));
      }
    } finally {
      await cleanup(master);
    }
  });
});

describe("log forwarding", () => {
  test("worker records reach the master's logger with every field", async () => {
    const logFile = join(dir, "records.jsonl");
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "log",
      FIXTURE_WORKERS: "2",
      FIXTURE_LINES: "50",
      FIXTURE_LOG_FILE: logFile,
    });
    try {
      const records = () => readRecords(logFile);
      await waitFor(
        "both workers' last records",
        () => records().filter((r) => r.msg === "last record").length === 2,
      );
      await stopAndCheck(master);
      const all = records();
      const fromWorkers = all.filter((r) => r.loggerName === "default");
      assert.equal(fromWorkers.length, 2 * 51);
      const first = fromWorkers.find((r) => r.msg === "record 7 from 1");
      assert.ok(first, "record 7 from worker 1");
      assert.deepEqual(first.args, [{ i: 7 }, "extra"]);
      assert.equal(first.level, 20);
      assert.equal(first.levelName, "INFO");
      assert.equal(first.workerId, 1);
      assert.ok(Number.isInteger(first.pid) && first.pid !== master.pid);
      assert.ok(!Number.isNaN(Date.parse(first.datetime)));
      const warn = fromWorkers.find((r) => r.msg === "last record")!;
      assert.equal(warn.levelName, "WARN");
      assert.equal(warn.level, 30);
      // The library's own events go through the same logger.
      const names = new Set(all.map((r) => r.loggerName));
      assert.ok(names.has("workerpool.supervisor"));
      assert.ok(names.has("workerpool.child"));
      assert.ok(all.some((r) => r.workerId === null && r.pid === master.pid));
    } finally {
      await cleanup(master);
    }
  });
});

describe("pidfile and daemon", () => {
  test("a pidfile held by a live master is refused", async () => {
    const pidfile = join(dir, "live.pid");
    const first = startScript(pool, { FIXTURE_PIDFILE: pidfile });
    let second: Master | undefined;
    try {
      await waitFor("the pidfile", () =>
        existsSync(pidfile) &&
        readFileSync(pidfile, "utf8") === `${first.pid}\n`);
      second = startScript(pool, { FIXTURE_PIDFILE: pidfile });
      assert.equal((await second.exited).code, 1);
      assert.match(
        second.output(),
        new RegExp(`holds pid ${first.pid}, which is running`),
      );
      assert.equal(readFileSync(pidfile, "utf8"), `${first.pid}\n`);
      await stopAndCheck(first);
      assert.equal(existsSync(pidfile), false);
    } finally {
      await cleanup(first);
      if (second) await cleanup(second);
    }
  });

  test("a stale pidfile is taken over and removed on exit", async () => {
    const pidfile = join(dir, "stale.pid");
    // A pid that surely is not running: beyond the kernel's pid range.
    writeFileSync(pidfile, "4194305\n");
    const master = startScript(pool, { FIXTURE_PIDFILE: pidfile });
    try {
      await waitFor(
        "the pidfile to name the master",
        () => readFileSync(pidfile, "utf8") === `${master.pid}\n`,
      );
      await stopAndCheck(master);
      assert.equal(existsSync(pidfile), false);
    } finally {
      await cleanup(master);
    }
  });

  test("daemonize returns once every worker is ready; the daemon logs beside its pidfile", async () => {
    const pidfile = join(dir, "daemon.pid");
    const logFile = join(dir, "daemon.log");
    const port = await freePort();
    const launcher = startScript(pool, {
      FIXTURE_PIDFILE: pidfile,
      FIXTURE_DAEMONIZE: "1",
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "3",
    });
    try {
      assert.equal((await launcher.exited).code, 0, launcher.output());
      const pid = Number(readFileSync(pidfile, "utf8"));
      assert.match(
        launcher.output(),
        new RegExp(
          `daemon started with pid ${pid}; its output goes to ${logFile}`,
        ),
      );
      // Ready means ready: all three answer without waiting.
      const log = readFileSync(logFile, "utf8");
      assert.equal(log.match(/ is ready/g)?.length, 3, log);
      assert.notEqual(pid, launcher.pid);
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      assert.equal(Number(fields[3]), pid, "the daemon leads its own session");
      await getWhenUp(port);
      runtime.kill(pid, "SIGTERM");
      await waitAllGone(launcher.tag);
      assert.equal(existsSync(pidfile), false);
      assert.match(
        readFileSync(logFile, "utf8"),
        /stopping 3 workers with SIGTERM/,
      );
    } finally {
      await cleanup(launcher);
    }
  });

  test("a daemon whose workers cannot start fails its launcher with their cause", async () => {
    const pidfile = join(dir, "broken.pid");
    const launcher = startScript(pool, {
      FIXTURE_PIDFILE: pidfile,
      FIXTURE_DAEMONIZE: "1",
      FIXTURE_BEHAVIOUR: "boot-fail",
      FIXTURE_MAXBOOTERRORS: "2",
    });
    try {
      assert.equal((await launcher.exited).code, 1, launcher.output());
      assert.match(
        launcher.output(),
        /Cannot start the daemon: worker \d failed to start 2 times in a row; halting the pool\. Last cause: fixture boot failure/,
      );
      await waitAllGone(launcher.tag);
      const log = readFileSync(join(dir, "broken.log"), "utf8");
      assert.match(log, /failed to start: fixture boot failure/);
      assert.match(log, /CRITICAL .*halting the pool/);
      assert.equal(existsSync(pidfile), false);
    } finally {
      await cleanup(launcher);
    }
  });

  test("a daemon that dies before it reports shows its exit and the end of its log", async () => {
    const pidfile = join(dir, "crash.pid");
    const launcher = startScript(pool, {
      FIXTURE_PIDFILE: pidfile,
      FIXTURE_DAEMONIZE: "1",
      FIXTURE_DAEMON_CRASH: "1",
    });
    try {
      assert.equal((await launcher.exited).code, 1);
      assert.match(
        launcher.output(),
        /Cannot start the daemon: it exited with code 7 before it was ready\n.*the end of .*crash\.log:\nfixture: the daemon crashes before main\(\)/,
      );
      await waitAllGone(launcher.tag);
    } finally {
      await cleanup(launcher);
    }
  });

  test("a daemon that cannot start makes the launcher fail with the reason", async () => {
    const pidfile = join(dir, "taken.pid");
    const holder = startScript(pool, { FIXTURE_PIDFILE: pidfile });
    try {
      await waitFor("the pidfile", () => existsSync(pidfile));
      const launcher = startScript(pool, {
        FIXTURE_PIDFILE: pidfile,
        FIXTURE_DAEMONIZE: "1",
      });
      assert.equal((await launcher.exited).code, 1);
      assert.match(
        launcher.output(),
        new RegExp(`Cannot start the daemon: .*holds pid ${holder.pid}`),
      );
      await waitAllGone(launcher.tag);
      await stopAndCheck(holder);
    } finally {
      await cleanup(holder);
    }
  });
});
