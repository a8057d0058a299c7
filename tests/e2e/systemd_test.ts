// systemd's Type=notify: the master's sd_notify messages, their order and
// their sender, heard on a datagram socket of the test's own in
// NOTIFY_SOCKET, as systemd listens; real processes and signals.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  answering,
  cleanup,
  fixture,
  freePort,
  startScript,
  testDir,
  waitAllGone,
  waitFor,
} from "../_helpers.ts";
import { type NotifyMessage, startNotifyListener } from "../_notify.ts";
import { detectRuntime } from "../../src/runtime/mod.ts";

const dir = testDir();
const pool = fixture("pool.ts");

/** The index of the first message matching `pattern` after `from`. */
function indexOf(
  messages: NotifyMessage[],
  pattern: RegExp,
  from = 0,
): number {
  return messages.findIndex((m, i) => i >= from && pattern.test(m.message));
}

function uptimeUsec(): number {
  return Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * 1e6;
}

describe("systemd notify", () => {
  test("READY=1 once every worker is ready, STATUS=, RELOADING=1 and READY=1 around a reload, WATCHDOG=1, STOPPING=1: all from the master", async () => {
    const listener = await startNotifyListener(dir);
    after(() => listener.stop());
    const port = await freePort();
    const gate = join(dir, "notify.gate");
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "2",
      FIXTURE_READY_GATE: gate,
      NOTIFY_SOCKET: listener.path,
      // A watchdog ping every 150 ms.
      WATCHDOG_USEC: "300000",
    });
    after(() => cleanup(master));

    // Workers listen but are not ready: no READY=1 yet, the status says so.
    await listener.waitFor(
      (all) => indexOf(all, /^STATUS=starting: 0 of 2 workers ready$/) >= 0,
      "a starting STATUS=",
    );
    await listener.waitFor(
      (all) => all.filter((m) => m.message === "WATCHDOG=1").length >= 2,
      "watchdog pings while the workers start",
    );
    assert.equal(indexOf(listener.messages(), /READY=1/), -1);

    writeFileSync(gate, "");
    await listener.waitFor(
      (all) => indexOf(all, /^READY=1\nSTATUS=2 of 2 workers ready$/) >= 0,
      "READY=1",
    );
    const pids = await answering(port, 2);

    // The workers did not inherit the socket: they cannot speak for the
    // master.
    for (const pid of pids.values()) {
      const environ = readFileSync(`/proc/${pid}/environ`, "latin1");
      assert.doesNotMatch(environ, /NOTIFY_SOCKET|WATCHDOG_USEC/);
    }

    master.kill("SIGHUP");
    const reloaded = await listener.waitFor((all) => {
      const reloading = indexOf(all, /^RELOADING=1\n/);
      return reloading >= 0 &&
        indexOf(all, /^READY=1\nSTATUS=2 of 2 workers ready$/, reloading) >= 0;
    }, "RELOADING=1, then READY=1");
    const reloading = reloaded[indexOf(reloaded, /^RELOADING=1\n/)]!;
    const usec = Number(/MONOTONIC_USEC=(\d+)/.exec(reloading.message)?.[1]);
    // CLOCK_MONOTONIC counts from boot, as /proc/uptime does (a margin for
    // suspend and the reading's delay; this is not a speed check).
    assert.ok(
      Math.abs(usec - uptimeUsec()) < 60e6,
      `MONOTONIC_USEC=${usec}, uptime ${uptimeUsec()}`,
    );

    master.kill("SIGTERM");
    assert.equal((await master.exited).code, 0, master.output());
    await waitAllGone(master.tag);
    const all = listener.messages();
    const stopping = indexOf(all, /^STOPPING=1/);
    assert.ok(stopping > indexOf(all, /^RELOADING=1/), JSON.stringify(all));
    assert.equal(indexOf(all, /^(READY|RELOADING)=1/, stopping), -1);
    // systemd's NotifyAccess=main takes messages from the main pid only.
    assert.deepEqual(new Set(all.map((m) => m.pid)), new Set([master.pid]));
  });

  test("a failed reload says so, and READY=1 again: the old workers serve", async () => {
    const listener = await startNotifyListener(dir, { abstract: true });
    after(() => listener.stop());
    const port = await freePort();
    const version = join(dir, "notify.version");
    writeFileSync(version, "1");
    const master = startScript(pool, {
      FIXTURE_PORT: String(port),
      FIXTURE_WORKERS: "1",
      FIXTURE_VERSION_FILE: version,
      NOTIFY_SOCKET: listener.path,
    });
    after(() => cleanup(master));
    await listener.waitFor(
      (all) => indexOf(all, /^READY=1/) >= 0,
      "READY=1",
    );
    writeFileSync(version, "broken");
    master.kill("SIGHUP");
    const all = await listener.waitFor(
      (all) => indexOf(all, /^READY=1\nSTATUS=reload failed/) >= 0,
      "READY=1 after the failed reload",
    );
    const failed = all[indexOf(all, /^READY=1\nSTATUS=reload failed/)]!;
    assert.match(failed.message, /fixture broken deploy/);
    assert.doesNotMatch(failed.message.slice("READY=1\n".length), /\n/);
    assert.ok(indexOf(all, /^RELOADING=1/) < all.indexOf(failed));
    master.kill("SIGTERM");
    assert.equal((await master.exited).code, 0, master.output());
  });

  if (detectRuntime() === "deno") {
    test("Deno without --allow-ffi: the master says so at once, and nothing runs", async () => {
      const listener = await startNotifyListener(dir);
      after(() => listener.stop());
      const events = join(dir, "noffi.events");
      const master = startScript(pool, {
        FIXTURE_WORKERS: "1",
        FIXTURE_EVENTS: events,
        NOTIFY_SOCKET: listener.path,
      }, {
        denoFlags: [
          "--allow-read",
          "--allow-write",
          "--allow-net",
          "--allow-env",
          "--allow-run",
          "--allow-sys",
        ],
      });
      after(() => cleanup(master));
      const { code } = await master.exited;
      assert.equal(code, 1, master.output());
      assert.match(
        master.output(),
        /Cannot run the pool: NOTIFY_SOCKET is set \(.*\), but systemd cannot be notified: .*--allow-ffi/,
      );
      assert.equal(readEvents(events), "");
      await waitFor("nothing left", () => listener.messages().length === 0);
    });
  }
});

function readEvents(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
