// A pool among others: what heartbeats report, the admin endpoint
// (/metrics checked by Prometheus' promtool, /healthz, /readyz, /status),
// shutdownDelay, restart reasons and JSON logs; real processes, signals and
// HTTP.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { join } from "node:path";
import {
  answering,
  cleanup,
  fixture,
  freePort,
  getWhenUp,
  httpGet,
  type Master,
  readEvents,
  runtime,
  startScript,
  stopAndCheck,
  testDir,
  waitFor,
} from "../_helpers.ts";
import type { PoolStatus } from "../../mod.ts";

const dir = testDir();
const pool = fixture("pool.ts");

/** The admin endpoint's address, from the master's log line. */
function adminUrl(master: Master): Promise<string> {
  return waitFor(
    "the admin endpoint's log line",
    () => /admin endpoint on (http:\/\/[^ ]+)/.exec(master.output())?.[1],
  );
}

interface Answer {
  status: number;
  type: string | null;
  body: string;
}

async function get(url: string, method = "GET"): Promise<Answer> {
  const response = await fetch(url, {
    method,
    headers: { connection: "close" },
  });
  return {
    status: response.status,
    type: response.headers.get("content-type"),
    body: await response.text(),
  };
}

async function status(url: string): Promise<PoolStatus> {
  return JSON.parse((await get(`${url}/status`)).body);
}

/** The value of the sample `series` (name and labels) in metrics `text`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length));
}

/** What promtool says of a metrics text: its exit code and output. */
function promtool(text: string): { code: number | null; output: string } {
  const run = spawnSync("promtool", ["check", "metrics"], { input: text });
  if (run.error) {
    throw new Error(
      `promtool cannot run (${run.error.message}): npm test fetches it (.ci/promtool)`,
    );
  }
  return {
    code: run.status,
    output: `${run.stdout}${run.stderr}`,
  };
}

describe("fleet: heartbeats, /metrics and /status", () => {
  // Started by the first test that asks, in a hook: a filtered run that
  // skips these tests starts nothing.
  let shared: { port: number; master: Master; url: string } | undefined;
  before(async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_ADMIN_PORT: "0",
      // A heartbeat every 100 ms: figures arrive soon.
      FIXTURE_WORKERTIMEOUT: "500",
      FIXTURE_SLOW_MS: "2000",
    });
    shared = { port, master, url: "" };
    shared.url = await adminUrl(master);
    await answering(port, 2);
  });
  after(() => shared && cleanup(shared.master));
  const started = () => Promise.resolve(shared!);

  test("every worker reports memory, heap, event-loop lag, CPU time and requests", async () => {
    const { port, url } = await started();
    for (let i = 0; i < 10; i++) await httpGet(port);
    const pool = await waitFor("10 requests in the heartbeats", async () => {
      const now = await status(url);
      const served = now.workers.reduce((n, w) => n + w.totals.requests, 0);
      return served >= 10 && now.workers.every((w) => w.metrics) && now;
    });
    assert.equal(pool.state, "running");
    assert.equal(pool.ready, 2);
    for (const worker of pool.workers) {
      const m = worker.metrics!;
      assert.ok(m.rss! > 1024 * 1024, `rss ${m.rss}`);
      assert.ok(m.heapUsed! > 0 && m.heapUsed! < m.rss!, `heap ${m.heapUsed}`);
      assert.ok(m.cpuTime! > 0, `cpu ${m.cpuTime}`);
      assert.ok(m.eventLoopLag! >= 0, `lag ${m.eventLoopLag}`);
      assert.equal(typeof m.requests, "number");
      assert.equal(m.requestsInFlight, 0);
      assert.ok(worker.totals.cpuTime >= m.cpuTime!);
    }
  });

  test("/metrics passes promtool and counts requests in flight", async () => {
    const { port, url } = await started();
    const slow = httpGet(port, "/slow");
    const text = await waitFor("a request in flight in /metrics", async () => {
      const { body } = await get(`${url}/metrics`);
      const inFlight = [0, 1].map((id) =>
        sample(body, `workerpool_worker_requests_in_flight{id="${id}"}`)
      );
      return inFlight.includes(1) && body;
    });
    assert.equal(await slow, "slow but whole");
    const answer = await get(`${url}/metrics`);
    assert.equal(answer.status, 200);
    assert.match(answer.type!, /^text\/plain; version=0\.0\.4/);
    for (const body of [text, answer.body]) {
      assert.deepEqual(promtool(body), { code: 0, output: "" });
    }
    const metrics = answer.body;
    for (const id of [0, 1]) {
      assert.equal(sample(metrics, `workerpool_worker_up{id="${id}"}`), 1);
      for (
        const name of [
          "rss_bytes",
          "heap_used_bytes",
          "event_loop_lag_seconds",
          "cpu_seconds_total",
          "requests_total",
          "requests_in_flight",
          "uptime_seconds",
        ]
      ) {
        const value = sample(metrics, `workerpool_worker_${name}{id="${id}"}`);
        assert.ok(value !== undefined && value >= 0, `${name}: ${value}`);
      }
      assert.equal(
        sample(
          metrics,
          `workerpool_worker_restarts_total{id="${id}",reason="exit"}`,
        ),
        0,
      );
    }
    assert.equal(sample(metrics, `workerpool_workers{state="ready"}`), 2);
    assert.equal(sample(metrics, "workerpool_reloads_total"), 0);
    assert.ok(sample(metrics, "process_resident_memory_bytes")! > 0);
  });

  test("a restart carries its reason; counters of an id never go back", async () => {
    const { port, master, url } = await started();
    const before = await status(url);
    const victim = before.workers[0]!;
    process.kill(victim.pid!, "SIGKILL");
    const killed = await waitFor(
      "worker 0 restarted for its signal",
      async () => {
        const now = await status(url);
        const w = now.workers[0]!;
        return w.restartsBy.signal === 1 && w.state === "ready" && now;
      },
    );
    const w0 = killed.workers[0]!;
    assert.equal(w0.restarts, 1);
    assert.equal(w0.lastRestart?.reason, "signal");
    assert.equal(w0.lastRestart?.pid, victim.pid);
    assert.match(w0.lastRestart!.detail, /SIGKILL/);
    assert.ok(w0.totals.requests >= victim.totals.requests);
    assert.ok(w0.totals.cpuTime >= victim.totals.cpuTime);

    master.kill("SIGHUP");
    const reloaded = await waitFor("a reload of both workers", async () => {
      const now = await status(url);
      return now.state === "running" &&
        now.workers.every((w) => w.restartsBy.reload === 1) && now;
    });
    assert.equal(reloaded.reloads, 1);
    assert.equal(reloaded.generation, 1);
    assert.deepEqual(reloaded.workers.map((w) => w.lastRestart?.reason), [
      "reload",
      "reload",
    ]);
    const { body } = await get(`${url}/metrics`);
    assert.equal(sample(body, "workerpool_reloads_total"), 1);
    assert.equal(
      sample(body, `workerpool_worker_restarts_total{id="0",reason="signal"}`),
      1,
    );
    assert.equal(
      sample(body, `workerpool_worker_restarts_total{id="1",reason="reload"}`),
      1,
    );
    assert.deepEqual(promtool(body), { code: 0, output: "" });
    await getWhenUp(port);
  });

  test("unknown paths answer 404 naming the endpoints, other methods 405", async () => {
    const { master, url } = await started();
    const missing = await get(`${url}/nope`);
    assert.equal(missing.status, 404);
    assert.match(missing.body, /\/metrics, \/healthz, \/readyz, \/status/);
    assert.equal((await get(`${url}/status`, "POST")).status, 405);
    await stopAndCheck(master);
  });
});

describe("fleet: counters that do not go back", () => {
  test("every request counts, across a reload and a scale-down; the pool's totals keep what removed ids did", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_ADMIN_PORT: "0",
      // No heartbeat comes during the test: only the last one counts.
      FIXTURE_WORKERTIMEOUT: "600000",
    });
    after(() => cleanup(master));
    const url = await adminUrl(master);
    await waitFor(
      "2 ready workers",
      async () => (await status(url)).ready === 2,
    );
    for (let i = 0; i < 20; i++) await httpGet(port);
    master.kill("SIGHUP");
    const reloaded = await waitFor("the reload's end", async () => {
      const now = await status(url);
      return now.reloads === 1 && now.state === "running" &&
        now.workers.every((w) => w.retiring.length === 0) && now;
    });
    // The replaced processes said their last figures on their way out.
    assert.equal(reloaded.totals.requests, 20);
    assert.equal(
      reloaded.workers.reduce((n, w) => n + w.totals.requests, 0),
      20,
    );
    assert.deepEqual(reloaded.totals.restartsBy, { reload: 2 });
    assert.equal(reloaded.minReady, 1);

    master.kill("SIGTTOU");
    // Once worker 1's process exited, what it did is in the pool's totals.
    const shrunk = await waitFor(
      "a pool of 1 keeping worker 1's counts",
      async () => {
        const now = await status(url);
        return now.size === 1 && now.totals.restartsBy.reload === 2 && now;
      },
    );
    assert.equal(shrunk.totals.requests, 20);
    assert.equal(shrunk.workers.length, 1);
    const { body } = await get(`${url}/metrics`);
    assert.equal(sample(body, "workerpool_requests_total"), 20);
    assert.equal(
      sample(body, `workerpool_restarts_total{reason="reload"}`),
      2,
    );
    assert.equal(sample(body, "workerpool_ready"), 1);
    assert.match(
      body,
      /^workerpool_info\{runtime="(deno|bun)",version="[\d.]+"\} 1$/m,
    );
    assert.ok(
      sample(body, `workerpool_worker_heartbeat_age_seconds{id="0"}`)! >= 0,
    );
    assert.deepEqual(promtool(body), { code: 0, output: "" });
    await stopAndCheck(master);
  });

  test("with takeover, the new master takes the admin port once the old one let go of it", async () => {
    const port = await freePort();
    const adminPort = await freePort();
    const env = {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_ADMIN_PORT: String(adminPort),
    };
    const old = startScript(pool, env);
    after(() => cleanup(old));
    const url = `http://127.0.0.1:${adminPort}`;
    await waitFor("the old pool ready", async () => {
      try {
        return (await status(url)).ready === 1;
      } catch {
        return false;
      }
    });
    const next = startScript(pool, { ...env, FIXTURE_TAKEOVER: "1" });
    after(() => cleanup(next));
    assert.equal((await old.exited).code, 0, old.output());
    const taken = await waitFor("the new master's admin endpoint", async () => {
      try {
        const now = await status(url);
        return now.pid === next.pid && now;
      } catch {
        return false;
      }
    });
    assert.equal(taken.ready, 1);
    assert.match(next.output(), /admin endpoint's 127\.0\.0\.1:\d+ is busy/);
    await getWhenUp(port);
    await stopAndCheck(next);
  });
});

describe("fleet: /healthz, /readyz and shutdownDelay", () => {
  test("/readyz is 503 until minReady workers are ready, and at once on SIGTERM while the workers still serve", async () => {
    const port = await freePort();
    const gate = join(dir, "ready.gate");
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_MINREADY: "2",
      FIXTURE_ADMIN_PORT: "0",
      FIXTURE_READY_GATE: gate,
      // Longer than the test: only a second SIGTERM ends the wait.
      FIXTURE_SHUTDOWNDELAY: "600000",
    });
    after(() => cleanup(master));
    const url = await adminUrl(master);
    assert.deepEqual(await get(`${url}/healthz`), {
      status: 200,
      type: "text/plain; charset=utf-8",
      body: "ok\n",
    });
    // Listening but not ready: the gate holds their onStart.
    await getWhenUp(port);
    const waiting = await get(`${url}/readyz`);
    assert.equal(waiting.status, 503);
    assert.match(waiting.body, /not ready: 0 of 2 workers ready, 2 needed/);
    assert.equal((await status(url)).state, "starting");

    writeFileSync(gate, "");
    const ready = await waitFor("/readyz to answer 200", async () => {
      const answer = await get(`${url}/readyz`);
      return answer.status === 200 && answer;
    });
    assert.equal(ready.body, "ready: 2 of 2 workers\n");

    master.kill("SIGTERM");
    const draining = await waitFor("/readyz to answer 503", async () => {
      const answer = await get(`${url}/readyz`);
      return answer.status === 503 && answer;
    });
    assert.match(draining.body, /stopping \(shutdownDelay/);
    assert.equal((await status(url)).state, "draining");
    // The workers serve on, the master lives.
    for (let i = 0; i < 5; i++) await httpGet(port);
    assert.equal((await get(`${url}/healthz`)).status, 200);
    assert.match(master.output(), /the workers serve for shutdownDelay 600000/);

    // A second SIGTERM stops at once.
    await stopAndCheck(master);
  });

  test("a short shutdownDelay runs out by itself, then the pool drains and exits 0", async () => {
    const port = await freePort();
    const events = join(dir, "short-delay.events");
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_EVENTS: events,
      FIXTURE_SHUTDOWNDELAY: "200",
    });
    after(() => cleanup(master));
    await getWhenUp(port);
    master.kill("SIGTERM");
    assert.equal((await master.exited).code, 0, master.output());
    const order = readEvents(events).map((line) =>
      line.split(" ").slice(0, 2).join(" ")
    );
    assert.ok(order.includes("worker0 shutdown2"), order.join("\n"));
    assert.equal(order.at(-1), "master shutdown");
  });

  test("SIGINT skips shutdownDelay", async () => {
    const port = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_SHUTDOWNDELAY: "600000",
    });
    after(() => cleanup(master));
    await getWhenUp(port);
    master.kill("SIGINT");
    const { code } = await master.exited;
    assert.equal(code, 0, master.output());
    assert.doesNotMatch(master.output(), /shutdownDelay/);
  });

  test("an admin port in use fails the start before any worker is spawned", async () => {
    const busy = createServer();
    await new Promise<void>((resolve) =>
      busy.listen(0, "127.0.0.1", () => resolve())
    );
    after(() => busy.close());
    const port = (busy.address() as { port: number }).port;
    const events = join(dir, "busy.events");
    const master = startScript(pool, {
      FIXTURE_WORKERS: "1",
      FIXTURE_ADMIN_PORT: String(port),
      FIXTURE_EVENTS: events,
    });
    after(() => cleanup(master));
    const { code } = await master.exited;
    assert.equal(code, 1, master.output());
    assert.match(
      master.output(),
      new RegExp(`Cannot serve the admin endpoint on 127\\.0\\.0\\.1:${port}`),
    );
    // Neither the master's onStart callbacks nor any worker ran.
    assert.deepEqual(readEvents(events), []);
  });
});

describe("fleet: logFormat json", () => {
  test("every record the master prints is one JSON object on a line", async () => {
    const master = startScript(pool, {
      FIXTURE_WORKERS: "1",
      FIXTURE_BEHAVIOUR: "log",
      FIXTURE_LOG_FORMAT: "json",
    });
    after(() => cleanup(master));
    await waitFor(
      "the worker's last record",
      () => master.output().includes('"last record"'),
    );
    master.kill("SIGTERM");
    assert.equal((await master.exited).code, 0, master.output());
    const lines = master.output().split("\n").filter((line) => line !== "");
    const records = lines.map((line) => JSON.parse(line));
    for (const record of records) {
      assert.deepEqual(Object.keys(record), [
        "time",
        "level",
        "logger",
        "worker",
        "pid",
        "message",
        "args",
      ]);
      assert.match(record.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    const first = records.find((r) => r.message === "record 0 from 0");
    assert.equal(first.worker, 0);
    assert.equal(first.level, "INFO");
    assert.equal(first.logger, "default");
    assert.deepEqual(first.args, [{ i: 0 }, "extra"]);
    const master0 = records.find((r) => /^started 1 worker/.test(r.message));
    assert.equal(master0.worker, null);
    assert.equal(master0.pid, master.pid);
  });
});

describe("fleet: workers whose loop is held", () => {
  test("/readyz says 503 while every worker is blocked writing to a stdout nobody reads", async () => {
    const port = await freePort();
    const adminPort = await freePort();
    // The master's stdout (the workers') is a pipe whose reader never reads.
    const shell = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_BEHAVIOUR: "print-flood",
      FIXTURE_ADMIN_PORT: String(adminPort),
      FIXTURE_WORKERTIMEOUT: "1000",
      // Blocked in a write, they cannot act on SIGTERM: killed after this.
      FIXTURE_GRACEFULTIMEOUT: "500",
    }, { wrapper: ["sh", "-c", '"$@" | sleep 600', "sh"] });
    after(() => cleanup(shell));
    const url = `http://127.0.0.1:${adminPort}`;
    // Up (every worker was ready), then blocked: ready, yet not serving.
    const { blocked, now } = await waitFor(
      "/readyz to answer 503",
      async () => {
        try {
          const now = await status(url);
          if (now.state !== "running" || now.ready > 0) return false;
          const blocked = await get(`${url}/readyz`);
          return blocked.status === 503 && { blocked, now };
        } catch {
          return false; // not listening yet
        }
      },
    );
    assert.match(blocked.body, /not ready: 0 of 2 workers ready, 1 needed/);
    // Not killed for it: they are blocked, not hung.
    assert.deepEqual(now.workers.map((w) => w.state), ["ready", "ready"]);
    assert.ok(now.workers.every((w) => w.heartbeatAge! > 600));
    assert.match(shell.output(), /is blocked writing its output/);
    runtime.kill(now.pid, "SIGTERM");
    await waitFor("the master to exit", () => !runtime.isAlive(now.pid));
    assert.match(shell.output(), /still running after gracefulTimeout 500 ms/);
  });
});

describe("fleet: the admin endpoint under a flood", () => {
  test("idle connections past the open-file limit cost neither the master nor the workers", async () => {
    const port = await freePort();
    const adminPort = await freePort();
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_ADMIN_PORT: String(adminPort),
    }, { fileLimit: 64 });
    after(() => cleanup(master));
    const url = `http://127.0.0.1:${adminPort}`;
    await waitFor("the pool ready", async () => {
      try {
        return (await status(url)).ready === 2;
      } catch {
        return false;
      }
    });
    // Twice what the master may open, held idle: accepting fails (EMFILE).
    const held = await flood(adminPort, 150);
    await waitFor(
      "the master to run out of file descriptors",
      () =>
        /too many open files|EMFILE/i.test(master.output()) ||
        held.closed() > 0,
    );
    held.release();
    // The endpoint serves again, the pool never stopped.
    await waitFor("/readyz to answer 200 again", async () => {
      try {
        return (await get(`${url}/readyz`)).status === 200;
      } catch {
        return false;
      }
    });
    await answering(port, 2);
    assert.doesNotMatch(master.output(), /Uncaught|CRITICAL/);
    await stopAndCheck(master);
  });
});

/** Opens `count` idle connections to `port`; those refused are not kept. */
async function flood(port: number, count: number) {
  const sockets: Socket[] = [];
  let closed = 0;
  for (let i = 0; i < count; i++) {
    const socket = new Socket();
    socket.on("error", () => {});
    socket.on("close", () => closed++);
    await new Promise<void>((resolve) => {
      socket.connect(port, "127.0.0.1", resolve);
      socket.once("error", () => resolve());
    });
    sockets.push(socket);
  }
  return {
    closed: () => closed,
    release: () => sockets.forEach((socket) => socket.destroy()),
  };
}
