// End to end: what an operator or a misbehaving worker does to a running
// pool (a huge log record, signals sent by habit, a paused master, a worker
// stopped from outside, long lines, a crowd of idle connections) and the
// pool staying whole through it.
import process from "node:process";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { createServer, Socket } from "node:net";
import { join } from "node:path";
import {
  answering,
  cleanup,
  controlSocketOf,
  fixture,
  freePort,
  httpGet,
  pidOf,
  readEvents,
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

describe("a log record of any size", () => {
  test("reaches the master cut with a marker, and the pool stays whole", async () => {
    const port = await freePort();
    const logFile = join(dir, "huge.jsonl");
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "huge-log",
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_LOG_FILE: logFile,
    });
    try {
      const records = () => readRecords(logFile);
      await waitFor(
        "both workers' record after the huge one",
        () => records().filter((r) => r.msg === "after huge").length === 2,
      );
      const huge = records().filter((r) => r.msg.startsWith("huge y"));
      assert.equal(huge.length, 2);
      assert.match(huge[0].msg, / \[… \d+ bytes cut\]$/);
      assert.doesNotMatch(master.output(), /larger than|lost its control/);
      // Later replacements of any id still reach the master.
      const before = await answering(port, 2);
      const socket = controlSocketOf(before.get(0)!);
      for (const id of [0, 1]) {
        runtime.kill(before.get(id)!, "SIGKILL");
        await pidOf(port, id, before.get(id));
      }
      assert.ok(existsSync(socket));
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("a boot error of any size", () => {
  test("reaches the master, cut, and is the halt's cause", async () => {
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "boot-fail-huge",
      FIXTURE_WORKERS: "1",
      FIXTURE_MAXBOOTERRORS: "1",
    });
    try {
      assert.equal((await master.exited).code, 3);
      const output = master.output();
      assert.match(
        output,
        /Last cause: huge boot failure h+ \[… \d+ bytes cut\]\n/,
      );
      assert.doesNotMatch(output, /broke the control protocol/);
      assert.ok(output.length < 500_000, `${output.length} characters`);
      await waitAllGone(master.tag);
    } finally {
      await cleanup(master);
    }
  });
});

describe("signals an operator sends by habit", () => {
  test("USR1, USR2, WINCH are ignored; QUIT stops gracefully", async () => {
    const port = await freePort();
    const pidfile = join(dir, "habit.pid");
    const events = join(dir, "habit.events");
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_PIDFILE: pidfile,
      FIXTURE_EVENTS: events,
    });
    try {
      const before = await answering(port, 2);
      const signals = ["SIGUSR1", "SIGUSR2", "SIGWINCH"] as const;
      for (const signal of signals) {
        assert.ok(master.kill(signal));
        if (signal !== "SIGWINCH") {
          await waitFor(
            `${signal} in the log`,
            () => master.output().includes(`${signal} ignored`),
          );
        }
      }
      // Still running, with the same workers.
      const stat = readFileSync(`/proc/${master.pid}/stat`, "utf8");
      assert.notEqual(stat.slice(stat.lastIndexOf(")") + 2)[0], "T");
      assert.deepEqual(await answering(port, 2), before);
      master.kill("SIGQUIT");
      assert.equal((await master.exited).code, 0, master.output());
      await waitAllGone(master.tag);
      assert.equal(existsSync(pidfile), false, "the pidfile is gone");
      assert.equal(readEvents(events).at(-1)?.split(" ")[1], "shutdown");
    } finally {
      await cleanup(master);
    }
  });
});

describe("signals sent to the whole process group", () => {
  test("HUP reloads the pool gracefully; USR2 and ALRM leave it as it was", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
    }, { detached: true }); // its own group, as a shell gives a job
    try {
      const before = await answering(port, 2);
      for (const signal of ["SIGUSR2", "SIGALRM"] as const) {
        process.kill(-master.pid, signal);
        await waitFor(
          `${signal} in the log`,
          () => master.output().includes(`${signal} ignored`),
        );
      }
      assert.deepEqual(await answering(port, 2), before);
      // A hangup reaches the whole group: the workers ignore it, and the
      // master replaces them one by one, as for a HUP of its own.
      process.kill(-master.pid, "SIGHUP");
      await waitFor(
        "the reload",
        () => master.output().includes("reload 1 done: 2 workers replaced"),
      );
      const after = await answering(port, 2);
      for (const id of [0, 1]) assert.notEqual(after.get(id), before.get(id));
      assert.doesNotMatch(master.output(), /was killed|killing it/);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("a paused master", () => {
  test("judges no worker for the time it stood still", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_WORKERTIMEOUT: "1000",
    });
    try {
      const before = await answering(port, 2);
      master.kill("SIGSTOP");
      // Three workerTimeouts of the workers beating into a paused master.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      master.kill("SIGCONT");
      // Let it run past another workerTimeout; then nothing was killed.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.deepEqual(await answering(port, 2), before);
      assert.doesNotMatch(master.output(), /killing it|killed by|exited/);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("a master whose stderr nobody reads", () => {
  for (const format of ["text", "json"]) {
    test(`keeps its loop: no worker judged, lines dropped and counted (${format} logs)`, async () => {
      const port = await freePort();
      // Not startScript: its stderr must go unread for a while.
      const tag = `t${crypto.randomUUID()}`;
      const args = runtime.name === "deno" ? ["run", "-A", pool] : [pool];
      const master = runtime.spawn(process.execPath, {
        args,
        env: {
          FIXTURE_PORT: String(port),
          FIXTURE_WORKERS: "2",
          FIXTURE_BEHAVIOUR: "log-flood",
          FIXTURE_WORKERTIMEOUT: "1000",
          FIXTURE_LOG_FORMAT: format,
          WORKERPOOL_TEST_TAG: tag,
        },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      });
      try {
        const before = await answering(port, 2);
        // Three workerTimeouts of records (10 KB each) into a full pipe.
        await new Promise((resolve) => setTimeout(resolve, 3000));
        const rss = Number(
          /VmRSS:\s+(\d+)/.exec(
            readFileSync(`/proc/${master.pid}/status`, "utf8"),
          )![1],
        );
        assert.ok(rss < 256 * 1024, `the master holds ${rss} kB`);
        assert.deepEqual(await answering(port, 2), before, "nobody replaced");
        master.kill("SIGTERM");
        let text = "";
        for await (const chunk of master.stderr!) {
          text += new TextDecoder().decode(chunk);
        }
        assert.equal((await master.status).code, 0);
        const events = text.split("\n").filter((l) =>
          !l.includes(" flood ") || /rror|ncaught|failed/.test(l)
        ).map((l) => l.slice(0, 300));
        assert.doesNotMatch(
          events.join("\n"),
          /killing it|was killed|exited with code [^0]/,
          events.slice(0, 40).join("\n"),
        );
        if (format === "text") {
          assert.match(
            text,
            /workerpool: \d+ lines dropped: stderr did not take them/,
          );
          assert.match(text, /flood 0 \d+ z+/);
        } else {
          // Every line a record, the count of dropped lines included.
          const records = text.split("\n").filter((l) => l !== "").map((l) =>
            JSON.parse(l)
          );
          assert.ok(
            records.some((r) =>
              r.logger === "workerpool.stderr" && r.level === "WARN" &&
              /^\d+ lines dropped: stderr did not take them$/.test(r.message)
            ),
          );
          assert.ok(records.some((r) => /^flood 0 \d+$/.test(r.message)));
        }
        await waitAllGone(tag);
      } finally {
        for (const pid of taggedPids(tag)) runtime.kill(pid, "SIGKILL");
        master.kill("SIGKILL");
        await master.status;
      }
    });
  }
});

describe("workers whose stdout nobody reads", () => {
  test("are not taken for hung while they block writing", async () => {
    const port = await freePort();
    // The master's stdout, which its workers inherit, is a pipe whose
    // reader sleeps 4 s before it reads (journald or a log driver stalling).
    const tag = `t${crypto.randomUUID()}`;
    const run = runtime.name === "deno" ? ["run", "-A", pool] : [pool];
    const master = runtime.spawn("bash", {
      args: [
        "-c",
        'exec "$@" > >(sleep 4; cat > /dev/null)',
        "bash",
        process.execPath,
        ...run,
      ],
      env: {
        FIXTURE_PORT: String(port),
        FIXTURE_WORKERS: "2",
        FIXTURE_BEHAVIOUR: "print-flood",
        FIXTURE_WORKERTIMEOUT: "1000",
        WORKERPOOL_TEST_TAG: tag,
      },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    });
    let text = "";
    const stderr = (async () => {
      for await (const chunk of master.stderr!) {
        text += new TextDecoder().decode(chunk);
      }
    })();
    try {
      const before = await answering(port, 2);
      await waitFor(
        "both workers blocked",
        () => text.match(/is blocked writing its output/g)?.length === 2,
      );
      // Once the reader reads again, the same workers answer.
      assert.deepEqual(await answering(port, 2), before, "nobody replaced");
      master.kill("SIGTERM");
      await stderr;
      assert.equal((await master.status).code, 0);
      assert.doesNotMatch(text, /killing it|was killed|exited with code [^0]/);
      await waitAllGone(tag);
    } finally {
      for (const pid of taggedPids(tag)) runtime.kill(pid, "SIGKILL");
      master.kill("SIGKILL");
      await master.status;
    }
  });
});

describe("a worker stopped from outside", () => {
  test("whose onShutdown hangs is killed after gracefulTimeout and replaced", async () => {
    const port = await freePort();
    const events = join(dir, "outside.events");
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_BEHAVIOUR: "shutdown-hang",
      FIXTURE_GRACEFULTIMEOUT: "500",
      FIXTURE_EVENTS: events,
    });
    try {
      const stuck = await pidOf(port, 0);
      runtime.kill(stuck, "SIGTERM"); // a shell's kill, not the master's
      await waitFor(
        "its onShutdown to hang",
        () => readEvents(events).some((e) => e.includes("shutdown-hang")),
      );
      const replacement = await pidOf(port, 0, stuck);
      assert.notEqual(replacement, stuck);
      assert.equal(runtime.isAlive(stuck), false);
      assert.match(
        master.output(),
        new RegExp(
          `pid ${stuck}\\) still running after gracefulTimeout 500 ms; sent SIGKILL`,
        ),
      );
      // The replacement's own shutdown hangs too: the master's stop is
      // bounded the same way.
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("servers a worker leaves open", () => {
  test("answer their in-flight requests before the worker exits", async () => {
    const port = await freePort();
    const events = join(dir, "drain.events");
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_BEHAVIOUR: "signal-serve",
      FIXTURE_EVENTS: events,
    });
    try {
      await pidOf(port, 0);
      const slow = httpGet(port, "/slow");
      await waitFor(
        "the request in the handler",
        () => readEvents(events).some((e) => e.includes("slow-begin")),
      );
      master.kill("SIGTERM");
      assert.equal(await slow, "slow but whole");
      assert.equal((await master.exited).code, 0);
      await waitAllGone(master.tag);
    } finally {
      await cleanup(master);
    }
  });
});

describe("worker output to files", () => {
  test("is on disk at once, not when a buffer fills", async () => {
    const stdout = join(dir, "prompt.log");
    const events = join(dir, "prompt.events");
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "print-once",
      FIXTURE_WORKERS: "1",
      FIXTURE_STDOUT: stdout,
      FIXTURE_EVENTS: events,
    });
    try {
      await waitFor(
        "the worker to print",
        () => readEvents(events).some((e) => e.includes("printed")),
      );
      // The worker keeps running; its one short line must not wait.
      await waitFor(
        "the line on disk",
        () =>
          existsSync(stdout) &&
          readFileSync(stdout, "utf8") === "printed by 0\n",
        10_000,
      );
      master.kill("SIGKILL");
      await master.exited;
      assert.equal(readFileSync(stdout, "utf8"), "printed by 0\n");
      await waitAllGone(master.tag);
    } finally {
      await cleanup(master);
    }
  });

  test("that fails (disk full) costs lines, never workers", async () => {
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "print-flood",
      FIXTURE_WORKERS: "2",
      FIXTURE_WORKERTIMEOUT: "1000",
      FIXTURE_STDOUT: "/dev/full",
    });
    try {
      await waitFor(
        "the failure in the log",
        () => /Cannot write to \/dev\/full: /.test(master.output()),
      );
      // Three workerTimeouts of printing into a full disk.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      assert.equal(master.output().match(/Cannot write to/g)?.length, 1);
      assert.doesNotMatch(master.output(), /killing it|was killed|blocked/);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("a named pipe is refused before the master's onStart, not waited on", async () => {
    const fifo = join(dir, "out.fifo");
    execFileSync("mkfifo", [fifo]);
    const events = join(dir, "fifo.events");
    const master = startScript(pool, {
      FIXTURE_WORKERS: "1",
      FIXTURE_STDOUT: fifo,
      FIXTURE_EVENTS: events,
    });
    try {
      assert.equal((await master.exited).code, 1);
      assert.match(
        master.output(),
        new RegExp(`Cannot open the stdout file ${fifo}: it is a named pipe`),
      );
      assert.deepEqual(readEvents(events), [], "onStart never ran");
      await waitAllGone(master.tag);
    } finally {
      await cleanup(master);
    }
  });

  test("keeps long lines whole or cut with a marker, never mixed; ends the last line", async () => {
    const stdout = join(dir, "long.log");
    const events = join(dir, "long.events");
    const master = startScript(pool, {
      FIXTURE_BEHAVIOUR: "long-lines",
      FIXTURE_WORKERS: "2",
      FIXTURE_STDOUT: stdout,
      FIXTURE_EVENTS: events,
    });
    try {
      await waitFor(
        "both workers in main",
        () =>
          readEvents(events).filter((e) => e.includes("main-begin")).length ===
            2,
      );
      await stopAndCheck(master);
      const lines = readFileSync(stdout, "utf8").split("\n");
      assert.equal(lines.pop(), "", "the file ends with a newline");
      for (const id of ["0", "1"]) {
        const own = lines.filter((l) => l.startsWith(id));
        assert.equal(own.length, 5, `worker ${id}: 5 long lines`);
        for (const line of own) {
          assert.match(
            line,
            new RegExp(`^${id}{65536} \\[… 34\\d{3} bytes cut\\]$`),
          );
        }
        assert.ok(lines.includes(`short ${id}`));
        assert.ok(lines.includes(`unterminated ${id}`));
      }
      assert.equal(lines.length, 2 * 7);
    } finally {
      await cleanup(master);
    }
  });
});

describe("start-up under load", () => {
  test("32 workers at the smallest workerTimeout start without a kill", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "32",
      FIXTURE_WORKERTIMEOUT: "100",
    });
    try {
      await waitFor(
        "32 workers ready",
        () => (master.output().match(/ is ready/g)?.length ?? 0) >= 32,
        60_000,
      );
      assert.doesNotMatch(master.output(), /killing it|was killed|exited/);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});

describe("the control directory", () => {
  test("a later master removes those whose owner is gone, and only those", async () => {
    const tmp = join(dir, "tmp");
    mkdirSync(tmp);
    // A master killed with its workers (pid beyond the kernel's range) left
    // its directory; a live one listens on its socket.
    const stale = join(tmp, "workerpool-4194305-abc");
    mkdirSync(stale);
    writeFileSync(join(stale, "control.sock"), "");
    const live = join(tmp, `workerpool-${process.pid}-def`);
    mkdirSync(live);
    const server = createServer().listen(join(live, "control.sock"));
    // A container's PID 1 master, dead (its /tmp kept over a restart): pid 1
    // lives on as another process, so only its silent socket tells.
    const pid1 = join(tmp, "workerpool-1-ghi");
    mkdirSync(pid1);
    writeFileSync(join(pid1, "control.sock"), "");
    // And a PID 1 master that lives (another container sharing /tmp).
    const pid1Live = join(tmp, "workerpool-1-jkl");
    mkdirSync(pid1Live);
    const server1 = createServer().listen(join(pid1Live, "control.sock"));
    const master = startScript(pool, { FIXTURE_WORKERS: "1", TMPDIR: tmp });
    try {
      await waitFor(
        "the stale directories' removal in the log",
        () =>
          /left behind by master pid 4194305/.test(master.output()) &&
          /workerpool-1-ghi, left behind by master pid 1\b/.test(
            master.output(),
          ),
      );
      assert.equal(existsSync(stale), false);
      assert.equal(existsSync(pid1), false);
      assert.ok(existsSync(live));
      assert.ok(existsSync(pid1Live));
      await stopAndCheck(master);
    } finally {
      server.close();
      server1.close();
      await cleanup(master);
    }
  });

  test("a flood of connections never halts the pool, however workers die meanwhile", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_MAXBOOTERRORS: "2",
    });
    let flooding = true;
    const sockets = new Set<Socket>();
    try {
      const before = await answering(port, 2);
      const path = controlSocketOf(before.get(0)!);
      // 150 idle connections, each replaced as soon as the master closes it.
      const connect = () => {
        if (!flooding) return;
        const socket = new Socket();
        sockets.add(socket);
        socket.on("error", () => {});
        socket.on("close", () => {
          sockets.delete(socket);
          setTimeout(connect, 1);
        });
        socket.connect(path);
      };
      for (let i = 0; i < 150; i++) connect();
      await waitFor(
        "the flood noticed",
        () => /too many control connections/.test(master.output()),
      );
      // Both workers die during the flood: their replacements, crowded out
      // of the control socket, fail again and again (more often than
      // maxBootErrors), which is not a failure of their code.
      for (const pid of before.values()) runtime.kill(pid, "SIGKILL");
      await new Promise((resolve) => setTimeout(resolve, 3000));
      flooding = false;
      for (const socket of sockets) socket.destroy();
      // The pool is whole again once the flood stops.
      await answering(port, 2);
      assert.doesNotMatch(master.output(), /halting the pool/);
      await stopAndCheck(master);
    } finally {
      flooding = false;
      for (const socket of sockets) socket.destroy();
      await cleanup(master);
    }
  });

  test("survives a crowd of idle connections past the open-file limit", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
    }, { fileLimit: 256 });
    const sockets: Socket[] = [];
    try {
      const before = await answering(port, 2);
      const path = controlSocketOf(before.get(0)!);
      const opened = await Promise.all(
        Array.from(
          { length: 400 },
          () =>
            new Promise<Socket | null>((resolve) => {
              const socket = new Socket();
              socket.on("error", () => resolve(null));
              socket.on("close", () => resolve(null));
              socket.connect(path, () => resolve(socket));
              sockets.push(socket);
            }),
        ),
      );
      assert.ok(opened.filter(Boolean).length > 0);
      // Still serving, still replacing.
      runtime.kill(before.get(1)!, "SIGKILL");
      await pidOf(port, 1, before.get(1));
      for (const socket of sockets) socket.destroy();
      assert.match(master.output(), /too many control connections/);
      await stopAndCheck(master);
    } finally {
      for (const socket of sockets) socket.destroy();
      await cleanup(master);
    }
  });
});
