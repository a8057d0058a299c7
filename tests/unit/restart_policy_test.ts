import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { RestartPolicy } from "../../src/_restart_policy.ts";

const options = {
  minUptime: 1000,
  initialDelay: 100,
  maxDelay: 1000,
  maxBootErrors: 3,
};
const crashed = { code: 1, signal: null };

describe("RestartPolicy", () => {
  test("restarts a worker that lived long enough at once", () => {
    const policy = new RestartPolicy(options);
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(policy.exited(crashed, 5000), {
        action: "restart",
        delay: 0,
      });
    }
  });

  test("backs off exponentially, capped, while a worker dies young", () => {
    const policy = new RestartPolicy(options);
    const delays = Array.from({ length: 7 }, () => {
      const decision = policy.exited(crashed, 10);
      assert.equal(decision.action, "restart");
      return decision.action === "restart" ? decision.delay : -1;
    });
    assert.deepEqual(delays, [0, 100, 200, 400, 800, 1000, 1000]);
    // One long life resets the backoff.
    assert.deepEqual(policy.exited(crashed, 1000), {
      action: "restart",
      delay: 0,
    });
    assert.deepEqual(policy.exited(crashed, 10), {
      action: "restart",
      delay: 0,
    });
  });

  test("halts after maxBootErrors boot errors in a row", () => {
    const policy = new RestartPolicy(options);
    const boot = { code: 3, signal: null };
    assert.equal(policy.exited(boot, 10).action, "restart");
    assert.equal(policy.exited(boot, 10).action, "restart");
    assert.deepEqual(policy.exited(boot, 10), {
      action: "halt",
      bootErrors: 3,
    });
  });

  test("a successful boot resets the boot error count", () => {
    const policy = new RestartPolicy(options);
    const boot = { code: 3, signal: null };
    policy.exited(boot, 10);
    policy.exited(boot, 10);
    policy.booted();
    assert.equal(policy.bootErrors, 0);
    assert.equal(policy.exited(boot, 10).action, "restart");
    assert.equal(policy.exited(boot, 10).action, "restart");
  });

  test("a kill by signal is never a boot error", () => {
    const policy = new RestartPolicy(options);
    for (let i = 0; i < 5; i++) {
      assert.equal(
        policy.exited({ code: 3, signal: "SIGQUIT" }, 10).action,
        "restart",
      );
    }
  });
});
