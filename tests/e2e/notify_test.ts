// End to end: systemd's notify socket through the libc FFI of the runtime
// running the tests. A fixture (tests/fixtures/notify_send.ts) sends what a
// ready service sends; a listener (tests/_notify.ts) receives it with the
// sender's credentials, as systemd does, and tells who sent what.
import process from "node:process";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { detectRuntime } from "../../src/runtime/mod.ts";
import { fixture, startScript, testDir } from "../_helpers.ts";
import { startNotifyListener } from "../_notify.ts";

const dir = testDir();

/** What the fixture printed, and its pid. */
interface SenderReport {
  pid: number;
  /** The results of send(): null when sent, else the reason. */
  sent?: (string | null)[];
  /** The distinct results of the burst of $NOTIFY_BURST datagrams. */
  burst?: (string | null)[];
  afterClose?: string | null;
  firstSendMs?: number;
  error?: string;
  name?: string;
}

/** Runs the fixture with $NOTIFY_SOCKET set to `path`, to its end. */
async function sendTo(
  path: string,
  denoFlags = ["-A"],
  env: Record<string, string> = {},
): Promise<SenderReport> {
  const sender = startScript(fixture("notify_send.ts"), {
    ...env,
    NOTIFY_SOCKET: path,
  }, { denoFlags });
  const status = await sender.exited;
  assert.equal(status.code, 0, sender.output());
  const lines = sender.output().trim().split("\n");
  const report = JSON.parse(lines.at(-1)!) as SenderReport;
  assert.equal(report.pid, sender.pid, "the fixture reports its own pid");
  return report;
}

/** CLOCK_MONOTONIC, roughly, in seconds: Linux counts uptime with it. */
function uptimeSeconds(): number {
  return Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
}

describe("the notify socket (sd_notify through libc)", () => {
  it("delivers READY, STATUS and MONOTONIC_USEC in order, from the sender's pid", async () => {
    const listener = await startNotifyListener(dir);
    try {
      const report = await sendTo(listener.path);
      assert.deepEqual(report.sent, [null, null], JSON.stringify(report));
      const messages = await listener.waitFor(
        (m) => m.length >= 2,
        "two datagrams",
      );
      const uptime = uptimeSeconds();
      assert.equal(messages.length, 2);
      assert.equal(messages[0]!.message, "READY=1\nSTATUS=hello");
      const usec = /^MONOTONIC_USEC=(\d+)$/.exec(messages[1]!.message);
      assert.ok(usec, messages[1]!.message);
      for (const { pid, uid } of messages) {
        assert.equal(pid, report.pid, "the kernel names the sender");
        assert.equal(uid, userInfo().uid);
      }
      // Not a speed check: the same clock, read by two processes.
      const apart = Math.abs(Number(usec[1]) / 1e6 - uptime);
      assert.ok(apart < 60, `MONOTONIC_USEC is ${apart} s from the uptime`);
      assert.equal(report.afterClose, "the socket is closed");
    } finally {
      assert.equal(await listener.stop(), 0, "the listener exits cleanly");
    }
    assert.equal(existsSync(listener.path), false, "the socket is unlinked");
  });

  it("reaches an abstract name (@…)", async () => {
    const listener = await startNotifyListener(dir, { abstract: true });
    try {
      assert.match(listener.path, /^@workerpool-test-/);
      const report = await sendTo(listener.path);
      assert.deepEqual(report.sent, [null, null], JSON.stringify(report));
      const messages = await listener.waitFor(
        (m) => m.length >= 2,
        "two datagrams",
      );
      assert.deepEqual(
        messages.map((m) => [m.pid, m.message.split("=")[0]]),
        [[report.pid, "READY"], [report.pid, "MONOTONIC_USEC"]],
      );
    } finally {
      assert.equal(await listener.stop(), 0, "the listener exits cleanly");
    }
  });

  it("reports why a datagram was not sent: nobody listens", async () => {
    const missing = await sendTo(`${dir}/nobody.sock`);
    assert.match(missing.sent?.[0] ?? "", /^ENOENT \(/);
    const unbound = await sendTo(`@workerpool-test-${crypto.randomUUID()}`);
    assert.match(unbound.sent?.[0] ?? "", /^ECONNREFUSED \(/);
  });

  it("never blocks: a full receiver's queue is a reason, EAGAIN", async () => {
    const listener = await startNotifyListener(dir);
    // A receiver that does not read, as a systemd busy elsewhere.
    process.kill(listener.pid, "SIGSTOP");
    try {
      const report = await sendTo(listener.path, ["-A"], {
        NOTIFY_BURST: "1000",
      });
      assert.deepEqual(report.sent, [null, null], JSON.stringify(report));
      assert.ok(
        report.burst?.some((reason) => /^EAGAIN \(/.test(reason ?? "")),
        JSON.stringify(report),
      );
    } finally {
      process.kill(listener.pid, "SIGCONT");
      assert.equal(await listener.stop(), 0, "the listener exits cleanly");
    }
  });

  it("refuses a path longer than a Unix socket address holds", async () => {
    const long = `${dir}/${"x".repeat(200 - dir.length - 1)}`;
    assert.equal(new TextEncoder().encode(long).length, 200);
    const report = await sendTo(long);
    assert.equal(report.name, "RangeError");
    assert.match(report.error ?? "", /200 bytes long, longer than the 107/);
  });

  // Bun has no permissions: nothing to test there.
  if (detectRuntime() === "deno") {
    it("names --allow-ffi when Deno runs without it", async () => {
      const report = await sendTo(`${dir}/unused.sock`, [
        "--allow-read",
        "--allow-env",
      ]);
      assert.match(report.error ?? "", /--allow-ffi/);
    });
  }
});
