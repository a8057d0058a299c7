// The `workerpool` command, run as a user runs it: `serve` on real ports,
// the control commands against a live pool through its pidfile, --watch,
// --check, --help and usage errors. Real processes, signals and HTTP.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { detectRuntime } from "../../src/runtime/mod.ts";
import {
  answering,
  cleanup,
  fixture,
  freePort,
  getWhenUp,
  httpGet,
  httpsGet,
  type Master,
  migrateSkip,
  runtime,
  setMigrate,
  startScript,
  stopAndCheck,
  taggedPids,
  testDir,
  waitAllGone,
  waitFor,
} from "../_helpers.ts";
import { startLoad } from "../_load.ts";
import { selfSignedCertificate } from "../_cert.ts";
import {
  openWebSocket,
  socketsOnWorkers,
  stopClosesWebSockets,
} from "../_websocket.ts";

const dir = testDir();
const cli = fileURLToPath(new URL("../../cli.ts", import.meta.url));
const app = fixture("app.ts");

/** `workerpool serve …` as a master, with its output collected. */
function serve(args: string[], env: Record<string, string> = {}): Master {
  return startScript(cli, env, { args: ["serve", ...args] });
}

/** Runs `workerpool …` to its end: exit code, stdout, stderr. */
async function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = detectRuntime() === "deno"
    ? ["run", "-A", cli, ...args]
    : [cli, ...args];
  const child = runtime.spawn(process.execPath, {
    args: argv,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const [status, stdout, stderr] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  return { code: status.code, stdout, stderr };
}

/** A pool of `workers` serving the fixture app, with a pidfile. */
async function livePool(name: string, workers = 2, extra: string[] = []) {
  const port = await freePort();
  const pidfile = join(dir, `${name}.pid`);
  const master = serve([
    "-w",
    String(workers),
    "--port",
    String(port),
    "-p",
    pidfile,
    "--timeout",
    "3s",
    ...extra,
    app,
  ]);
  await waitFor(
    "the pool to be ready",
    () =>
      /workers? ready on http:\/\/127\.0\.0\.1:\d+ in \d+ ms/.test(
        master.output(),
      ),
  );
  return { port, pidfile, master };
}

describe("workerpool serve", () => {
  test("serves the app's fetch from two worker processes, says when it is up, and stops on SIGTERM", async () => {
    const { port, master } = await livePool("two");
    try {
      const seen = await answering(port, 2);
      const pids = new Set(seen.values());
      assert.equal(pids.size, 2);
      assert.ok(!pids.has(master.pid), "the master serves nothing itself");
      assert.match(
        master.output(),
        new RegExp(
          `2 workers ready on http://127\\.0\\.0\\.1:${port} in \\d+ ms`,
        ),
      );
      const [host, clientPort] = (await httpGet(port, "/addr")).split(" ");
      assert.equal(host, "127.0.0.1");
      assert.ok(Number(clientPort) > 0);
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("--check loads the app and says what it exports, spawning nothing", async () => {
    const good = await run(["serve", "--check", "-w", "3", app]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(
      good.stdout,
      /ok, export default \{ fetch, onStart, onShutdown, onError \}; 3 workers would serve http:\/\/127\.0\.0\.1:8080/,
    );
    const noFetch = join(dir, "no_fetch.ts");
    writeFileSync(noFetch, "export default { fetch: 42 };\n");
    const bad = await run(["serve", "--check", noFetch]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /default export has no fetch\(\) method, got fetch = 42/,
    );
    const noDefault = join(dir, "no_default.ts");
    writeFileSync(noDefault, "export const fetch = () => new Response();\n");
    const none = await run(["serve", noDefault]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /has no default export/);
    const missing = await run(["serve", join(dir, "missing.ts")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /Cannot load .*missing\.ts/);
  });

  test("a wrong app module fails before any worker is spawned", async () => {
    const port = await freePort();
    const broken = join(dir, "broken.ts");
    writeFileSync(broken, "export default { fetch() {} ;\n");
    const master = serve(["-w", "2", "--port", String(port), broken]);
    try {
      const { code } = await master.exited;
      assert.equal(code, 1, master.output());
      assert.match(master.output(), /Cannot load .*broken\.ts/);
      assert.doesNotMatch(master.output(), /started \d+ workers|spawned/);
    } finally {
      await cleanup(master);
    }
  });

  test("--help on every command; a bad flag or value is one line with a hint, exit 2", async () => {
    const top = await run(["--help"]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage: workerpool <command>/);
    const serveHelp = await run(["serve", "--help"]);
    assert.equal(serveHelp.code, 0);
    for (
      const flag of [
        "--workers",
        "--bind",
        "--max-memory",
        "--watch",
        "--access-log",
      ]
    ) {
      assert.ok(serveHelp.stdout.includes(flag), flag);
    }
    assert.match(serveHelp.stdout, /\[default: 127\.0\.0\.1:8080\]/);
    for (const command of ["status", "reload", "scale", "stop"]) {
      const help = await run([command, "-h"]);
      assert.equal(help.code, 0, command);
      assert.match(help.stdout, new RegExp(`Usage: workerpool ${command}`));
    }
    const version = await run(["--version"]);
    assert.match(version.stdout, /^workerpool \d+\.\d+\.\d+/);
    const typo = await run(["serve", "--wrokers", "2", app]);
    assert.equal(typo.code, 2);
    assert.equal(
      typo.stderr.trim(),
      "workerpool serve: unknown option --wrokers (did you mean --workers?); see workerpool serve --help",
    );
    const value = await run(["serve", "--max-memory", "12Q", app]);
    assert.equal(value.code, 2);
    assert.match(
      value.stderr,
      /^workerpool serve: bad value for --max-memory: "12Q"/,
    );
    assert.equal(value.stderr.trim().split("\n").length, 1);
    const range = await run(["serve", "--timeout", "50ms", app]);
    assert.equal(range.code, 2);
    assert.match(range.stderr, /--timeout must be at least 100ms, got 50ms/);
    const twice = await run(["serve", "-b", "127.0.0.1:1", "-b", ":2", app]);
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /--bind given twice/);
    const gunicorn = await run(["serve", "--reload", app]);
    assert.match(
      gunicorn.stderr,
      /unknown option --reload \(did you mean --watch\?\)/,
    );
    const pidfile = await run(["stop", "--pidfile", "x.pid"]);
    assert.match(pidfile.stderr, /did you mean --pid\?/);
    const negative = await run(["serve", "--timeout", "-1", app]);
    assert.match(negative.stderr, /bad value for --timeout: "-1"/);
    const nowhere = await run([
      "serve",
      "--check",
      "--access-log",
      join(dir, "no", "such", "access.log"),
      app,
    ]);
    assert.equal(nowhere.code, 2);
    assert.match(
      nowhere.stderr,
      /bad value for --access-log: .* \(cannot open it: /,
    );
    const helpServe = await run(["help", "serve"]);
    assert.match(helpServe.stdout, /^Usage: workerpool serve/);
    const unknown = await run(["frobnicate"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    const concurrency = await run(["serve", "--check", app], {
      WEB_CONCURRENCY: "lots",
    });
    assert.equal(concurrency.code, 2);
    assert.match(concurrency.stderr, /\$WEB_CONCURRENCY: "lots"/);
    const fromEnv = await run(["serve", "--check", app], {
      WEB_CONCURRENCY: "5",
    });
    assert.match(fromEnv.stdout, /5 workers would serve/);
  });
});

describe("workerpool status|reload|scale|stop -p FILE", () => {
  test("act on a live pool and wait for the outcome", async () => {
    const { port, pidfile, master } = await livePool("ops");
    try {
      const before = await answering(port, 2);
      const status = await run(["status", "-p", pidfile]);
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, new RegExp(`master pid ${master.pid}`));
      assert.match(
        status.stdout,
        /ID\s+PID\s+STATE\s+UPTIME\s+RESTARTS\s+RSS\s+REQUESTS/,
      );
      for (const pid of before.values()) {
        assert.match(status.stdout, new RegExp(`\\b${pid}\\s+ready\\b`));
      }
      const json = await run(["status", "-p", pidfile, "--json"]);
      const parsed = JSON.parse(json.stdout);
      assert.equal(parsed.pid, master.pid);
      assert.equal(parsed.size, 2);
      assert.equal(parsed.ready, 2);

      const reload = await run(["reload", "-p", pidfile]);
      assert.equal(reload.code, 0, reload.stderr);
      assert.match(
        reload.stdout,
        /reloaded 2 workers of master pid \d+ in \d+ ms/,
      );
      // Done means done: every worker is a new process, at once.
      const after = JSON.parse(
        (await run(["status", "-p", pidfile, "--json"])).stdout,
      );
      assert.equal(after.reloads, 1);
      for (const worker of after.workers) {
        assert.ok(![...before.values()].includes(worker.pid), "a new process");
        assert.equal(worker.state, "ready");
      }
      assert.match(master.output(), /2 workers reloaded in \d+ ms/);

      const up = await run(["scale", "+1", "-p", pidfile]);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, /has 3 workers, ready/);
      const three = JSON.parse(
        (await run(["status", "-p", pidfile, "--json"])).stdout,
      );
      assert.equal(three.ready, 3);
      const down = await run(["scale", "-2", "-p", pidfile]);
      assert.equal(down.code, 0, down.stderr);
      assert.match(down.stdout, /has 1 worker, ready/);
      const zero = await run(["scale", "-1", "-p", pidfile]);
      assert.equal(zero.code, 1);
      assert.match(zero.stderr, /1 - 1 = 0: a pool keeps at least 1 worker/);
      const none = await run(["scale", "0", "-p", pidfile]);
      assert.equal(none.code, 2);
      assert.match(none.stderr, /bad size 0: a pool has 1 to 1024 workers/);

      const stop = await run(["stop", "-p", pidfile]);
      assert.equal(stop.code, 0, stop.stderr);
      assert.match(stop.stdout, /master pid \d+ stopped in \d+ ms/);
      // `stop` returned: the master is gone already, not about to go.
      assert.equal(runtime.isAlive(master.pid), false);
      assert.equal((await master.exited).code, 0);
      assert.equal(existsSync(pidfile), false);
      await waitAllGone(master.tag);
      const gone = await run(["status", "-p", pidfile]);
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /^workerpool status: no pidfile at /);
    } finally {
      await cleanup(master);
    }
  });

  test("a reload that cannot start the new app exits 1 with the reason and keeps the old workers", async () => {
    const copy = join(dir, "reload_app.ts");
    writeFileSync(
      copy,
      readFileSync(app, "utf8").replaceAll(
        '"../../',
        `"${fileURLToPath(new URL("../../", import.meta.url))}`,
      ),
    );
    const port = await freePort();
    const pidfile = join(dir, "failing.pid");
    const master = serve([
      "-w",
      "2",
      "--port",
      String(port),
      "-p",
      pidfile,
      copy,
    ]);
    try {
      const before = await answering(port, 2);
      writeFileSync(
        copy,
        "export default { fetch() { return new Response('x') }, onStart() { throw new Error('no database') } };\n",
      );
      const reload = await run(["reload", "-p", pidfile]);
      assert.equal(reload.code, 1);
      assert.match(reload.stderr, /^workerpool reload: .*no database/);
      const after = await answering(port, 2);
      assert.deepEqual([...after.values()].sort(), [...before.values()].sort());
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("a pidfile naming no live master is said plainly", async () => {
    const pidfile = join(dir, "stale.pid");
    writeFileSync(pidfile, "999999999\n");
    const status = await run(["status", "-p", pidfile]);
    assert.equal(status.code, 1);
    assert.match(status.stderr, /master pid 999999999 .* is not running/);
    const missing = await run(["reload"]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing -p FILE/);
    // A pid reused by another program: never signalled. This very test
    // process is live, and no workerpool master.
    writeFileSync(pidfile, `${process.pid}\n`);
    const stop = await run(["stop", "-p", pidfile]);
    assert.equal(stop.code, 1);
    assert.match(
      stop.stderr,
      new RegExp(
        `pid ${process.pid} .* is not a workerpool master.*not sending it SIGTERM`,
      ),
    );
  });
});

describe("workerpool serve --watch", () => {
  test("an edit is a rolling reload: no request fails, then the new code answers", async () => {
    const folder = join(dir, "watched");
    mkdirSync(folder);
    const watched = join(folder, "app.ts");
    const source = readFileSync(app, "utf8").replaceAll(
      '"../../',
      `"${fileURLToPath(new URL("../../", import.meta.url))}`,
    );
    writeFileSync(watched, source);
    const port = await freePort();
    // Without the sysctl, Linux resets connections queued on a closing
    // listener (README, "Deploying new code"): counted, not asserted.
    const migrate = migrateSkip() === false;
    const restore = migrate ? setMigrate("1") : () => {};
    // Written inside the watched folder: not code, so never a reload.
    const access = join(folder, "access.log");
    const master = serve([
      "-w",
      "2",
      "--port",
      String(port),
      "--access-log",
      access,
      "--watch",
      watched,
    ]);
    try {
      await answering(port, 2);
      await waitFor(
        "the watcher",
        () => /watching .* for changes/.test(master.output()),
      );
      const load = startLoad(port, 4);
      await waitFor("some load", () => load.result.ok > 50);
      // Saved as editors do: a new file renamed over the old one, twice
      // (a watch on the replaced file itself would miss the second).
      for (const version of ["v2", "v3"]) {
        writeFileSync(`${watched}.tmp`, source.replace('"v1"', `"${version}"`));
        renameSync(`${watched}.tmp`, watched);
        await waitFor(`${version} to answer on every worker`, async () => {
          const bodies = await Promise.all(
            Array.from({ length: 6 }, () => getWhenUp(port)),
          );
          return bodies.every((body) => body.endsWith(` ${version}`));
        });
      }
      const result = await load.stop();
      if (migrate) assert.equal(result.failed, 0, result.errors.join("\n"));
      assert.ok(result.ok > 50);
      assert.match(master.output(), /app\.ts changed: reloading/);
      // One save, one reload: the access log written meanwhile is no change.
      assert.equal(master.output().match(/changed: reloading/g)?.length, 2);
      assert.ok(readFileSync(access, "utf8").length > 0);
      assert.match(master.output(), /2 workers reloaded in \d+ ms/);
      await stopAndCheck(master);
    } finally {
      restore();
      await cleanup(master);
    }
  });
});

describe("workerpool serve --access-log", () => {
  test("one line per request: time, worker, method, path, status, bytes, ms", async () => {
    const log = join(dir, "access.log");
    const { port, master } = await livePool("access", 2, ["--access-log", log]);
    try {
      await httpGet(port, "/hello?x=1");
      await httpGet(port, "/slow");
      await assert.rejects(httpGet(port, "/boom"), /HTTP\/1\.1 418/);
      await stopAndCheck(master);
      const lines = readFileSync(log, "utf8").trim().split("\n");
      const hello = lines.find((line) => line.includes(" /hello?x=1 "));
      assert.match(
        hello ?? "",
        /^\d{4}-\d\d-\d\dT[\d:.]+Z [01] GET \/hello\?x=1 200 (\d+|-) [\d.]+$/,
      );
      assert.ok(
        lines.some((line) => / GET \/boom 418 /.test(line)),
        lines.join("\n"),
      );
      assert.ok(
        lines.some((line) => / GET \/slow 200 /.test(line)),
        lines.join("\n"),
      );
    } finally {
      await cleanup(master);
    }
  });
});

describe("examples/app.ts", () => {
  test("runs as it is, and under workerpool serve", async () => {
    const example = fileURLToPath(
      new URL("../../examples/app.ts", import.meta.url),
    );
    const port = await freePort();
    const direct = startScript(example, { PORT: String(port) });
    try {
      assert.match(
        await getWhenUp(port),
        /^hello from worker [01] to 127\.0\.0\.1\n$/,
      );
      await stopAndCheck(direct);
    } finally {
      await cleanup(direct);
    }
    const served = serve(["-w", "2", "--port", String(port), example]);
    try {
      assert.match(
        await getWhenUp(port),
        /^hello from worker [01] to 127\.0\.0\.1\n$/,
      );
      await stopAndCheck(served);
    } finally {
      await cleanup(served);
    }
    assert.deepEqual(taggedPids(served.tag), []);
  });
});

describe("workerpool serve: WebSockets and TLS", () => {
  test("a WebSocket echo through two workers; open sockets get 1001 when the pool stops", async () => {
    const { port, master } = await livePool("ws");
    try {
      const clients = await socketsOnWorkers(
        `ws://127.0.0.1:${port}/ws`,
        2,
        "ping",
        (answer) => {
          assert.match(answer, /^[01] \d+ ping$/);
          return answer.split(" ")[1]!;
        },
      );
      await stopClosesWebSockets(master, clients);
    } finally {
      await cleanup(master);
    }
  });

  test("an app importing upgradeWebSocket from another copy of the package", async () => {
    // The command installed at one version, the app depending on another.
    const copy = join(dir, "copy");
    const root = fileURLToPath(new URL("../../", import.meta.url));
    cpSync(join(root, "src"), join(copy, "src"), { recursive: true });
    cpSync(join(root, "mod.ts"), join(copy, "mod.ts"));
    const other = join(dir, "other_copy_app.ts");
    writeFileSync(
      other,
      `import { upgradeWebSocket } from "${join(copy, "mod.ts")}";
export default {
  fetch(request: Request) {
    const { socket, response } = upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(\`copy \${event.data}\`);
    return response;
  },
};
`,
    );
    const port = await freePort();
    const master = serve(["-w", "1", "--port", String(port), other]);
    try {
      const client = await waitFor("a WebSocket", async () => {
        try {
          return await openWebSocket(`ws://127.0.0.1:${port}/`);
        } catch {
          return undefined;
        }
      });
      assert.equal(await client.ask("hi"), "copy hi");
      client.socket.close();
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });

  test("--certfile and --keyfile serve HTTPS with that certificate", async () => {
    const { cert, key } = await selfSignedCertificate();
    const certfile = join(dir, "cert.pem");
    const keyfile = join(dir, "key.pem");
    writeFileSync(certfile, cert);
    writeFileSync(keyfile, key);
    const port = await freePort();
    const master = serve([
      "-w",
      "2",
      "--port",
      String(port),
      "--certfile",
      certfile,
      "--keyfile",
      keyfile,
      app,
    ]);
    try {
      await waitFor(
        "the pool to be ready",
        () =>
          new RegExp(`ready on https://127\\.0\\.0\\.1:${port} in`).test(
            master.output(),
          ),
      );
      assert.match(await httpsGet(port, cert), /^200 [01] \d+ v1$/);
      await assert.rejects(
        httpsGet(port, undefined),
        /self.signed|certificate/i,
      );
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
    const half = await run(["serve", "--certfile", certfile, app]);
    assert.equal(half.code, 2);
    assert.match(half.stderr, /--certfile needs --keyfile/);
    const notPem = await run([
      "serve",
      "--certfile",
      app,
      "--keyfile",
      keyfile,
      app,
    ]);
    assert.equal(notPem.code, 2);
    assert.match(
      notPem.stderr,
      /bad value for --certfile: .* \(not a PEM file\)/,
    );
  });
});

describe("workerpool serve: an app with its own import map", () => {
  test("deno.json (Deno) or tsconfig.json paths (Bun) next to the app are used", async () => {
    const folder = join(dir, "mapped");
    mkdirSync(folder);
    writeFileSync(
      join(folder, "deno.json"),
      JSON.stringify({ imports: { greet: "./greet.ts" } }),
    );
    writeFileSync(
      join(folder, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { paths: { greet: ["./greet.ts"] } } }),
    );
    writeFileSync(join(folder, "greet.ts"), 'export const greet = "mapped";\n');
    const mapped = join(folder, "app.ts");
    writeFileSync(
      mapped,
      'import { greet } from "greet";\nexport default { fetch: () => new Response(greet) };\n',
    );
    const check = await run(["serve", "--check", mapped]);
    assert.equal(check.code, 0, check.stderr);
    const port = await freePort();
    const master = serve(["-w", "2", "--port", String(port), mapped]);
    try {
      assert.equal(await getWhenUp(port), "mapped");
      await stopAndCheck(master);
    } finally {
      await cleanup(master);
    }
  });
});
