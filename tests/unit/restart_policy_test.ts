import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { RestartPolicy } from "../../src/_restart_policy.ts";

const options = {
  minUptime: 1000,
  initialDelay: 100,
  maxDelay: 1000,
  maxBootErrors: 3,
};

describe("RestartPolicy", () => {
  test("restarts a worker that lived long enough at once", () => {
    const policy = new RestartPolicy(options);
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(policy.exited(5000, false), {
        action: "restart",
        delay: 0,
      });
    }
  });

  test("backs off exponentially, capped, while a worker dies young", () => {
    const policy = new RestartPolicy(options);
    const delays = Array.from({ length: 7 }, () => {
      const decision = policy.exited(10, false);
      assert.equal(decision.action, "restart");
      return decision.action === "restart" ? decision.delay : -1;
    });
    assert.deepEqual(delays, [0, 100, 200, 400, 800, 1000, 1000]);
    // One long life resets the backoff.
    assert.deepEqual(policy.exited(1000, false), {
      action: "restart",
      delay: 0,
    });
    assert.deepEqual(policy.exited(10, false), {
      action: "restart",
      delay: 0,
    });
  });

  test("halts after maxBootErrors boot errors in a row", () => {
    const policy = new RestartPolicy(options);
    assert.equal(policy.exited(10, true).action, "restart");
    assert.equal(policy.exited(10, true).action, "restart");
    assert.deepEqual(policy.exited(10, true), {
      action: "halt",
      bootErrors: 3,
    });
  });

  test("a successful boot resets the boot error count", () => {
    const policy = new RestartPolicy(options);
    policy.exited(10, true);
    policy.exited(10, true);
    policy.booted();
    assert.equal(policy.bootErrors, 0);
    assert.equal(policy.exited(10, true).action, "restart");
    assert.equal(policy.exited(10, true).action, "restart");
  });
});
