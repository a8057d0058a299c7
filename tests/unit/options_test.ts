import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Supervisor, WorkerBase } from "../../mod.ts";

class Idle extends WorkerBase {
  main() {}
}

describe("new Supervisor()", () => {
  test("defaults to workers 0 and 1, listed before main() as stopped", () => {
    const supervisor = new Supervisor(Idle);
    assert.deepEqual(
      supervisor.pool.map((w) => [w.id, w.pid, w.state, w.restarts]),
      [[0, null, "stopped", 0], [1, null, "stopped", 0]],
    );
  });

  test("rejects more than 1024 workers before anything happens", () => {
    assert.equal(new Supervisor(Idle, { workers: 1024 }).pool.length, 1024);
    for (const workers of [1025, 1e9]) {
      assert.throws(() => new Supervisor(Idle, { workers }), {
        name: "RangeError",
        message:
          `Cannot create supervisor: workers must be at most 1024, got ${workers}`,
      });
    }
    function* endless() {
      for (let id = 0;; id++) yield id;
    }
    assert.throws(() => new Supervisor(Idle, { workers: endless() }), {
      name: "RangeError",
      message: "Cannot create supervisor: workers must name at most 1024 ids",
    });
    const full = new Supervisor(Idle, { workers: 1024 });
    assert.throws(() => full.addWorker(5000), {
      name: "RangeError",
      message:
        "Cannot add worker 5000: the pool has the most workers allowed, 1024",
    });
  });

  test("rejects bad worker counts, naming the value", () => {
    for (const workers of [0, -1, 1.5, NaN, Infinity]) {
      assert.throws(
        () => new Supervisor(Idle, { workers }),
        (e: Error) =>
          e instanceof RangeError &&
          e.message ===
            `Cannot create supervisor: workers must be a positive integer, got ${workers}`,
      );
    }
  });

  test("rejects duplicate, negative, fractional and non-number ids", () => {
    assert.throws(
      () => new Supervisor(Idle, { workers: [1, 2, 1] }),
      {
        name: "RangeError",
        message: "Cannot create supervisor: duplicate worker id 1",
      },
    );
    assert.throws(() => new Supervisor(Idle, { workers: [-3] }), {
      name: "RangeError",
      message: /got -3$/,
    });
    assert.throws(() => new Supervisor(Idle, { workers: [0.5] }), {
      name: "RangeError",
      message: /got 0.5$/,
    });
    assert.throws(
      () => new Supervisor(Idle, { workers: ["1"] as unknown as number[] }),
      { name: "TypeError", message: /worker id must be a number, got "1"/ },
    );
    assert.throws(() => new Supervisor(Idle, { workers: [] }), {
      name: "RangeError",
      message: /at least one id/,
    });
    assert.throws(
      () => new Supervisor(Idle, { workers: "12" as unknown as number[] }),
      { name: "TypeError", message: /count or an iterable of ids, got "12"/ },
    );
  });

  test("accepts any iterable of ids", () => {
    assert.ok(new Supervisor(Idle, { workers: new Set([3, 7]) }));
  });

  test("rejects negative, non-finite and non-number times", () => {
    const cases: [string, unknown, RegExp, string][] = [
      ["gracefulTimeout", -1, /gracefulTimeout .*got -1$/, "RangeError"],
      [
        "workerTimeout",
        Infinity,
        /workerTimeout .*got Infinity$/,
        "RangeError",
      ],
      ["checkInterval", 0, /checkInterval .*from 1 .*got 0$/, "RangeError"],
      ["minUptime", NaN, /minUptime .*got NaN$/, "RangeError"],
      ["readyTimeout", 0, /readyTimeout .*from 1 .*got 0$/, "RangeError"],
      ["maxRestartDelay", "5s", /maxRestartDelay .*got "5s"$/, "TypeError"],
      [
        "maxBootErrors",
        0,
        /maxBootErrors must be a positive integer, got 0$/,
        "RangeError",
      ],
    ];
    for (const [name, value, message, type] of cases) {
      assert.throws(
        () => new Supervisor(Idle, { [name]: value }),
        { name: type, message },
        name,
      );
    }
  });

  test("rejects a first argument that is neither a subclass nor a factory", () => {
    class NotAWorker {}
    const bad: [unknown, RegExp][] = [
      [42, /expected a WorkerBase subclass or a factory, got 42/],
      [null, /got null/],
      [NotAWorker, /class NotAWorker does not extend WorkerBase/],
      [WorkerBase, /WorkerBase is abstract/],
    ];
    for (const [worker, message] of bad) {
      assert.throws(
        () => new Supervisor(worker as typeof Idle),
        { name: "TypeError", message },
      );
    }
  });

  test("rejects unknown options, naming them", () => {
    assert.throws(
      () => new Supervisor(Idle, { wrokers: 4 } as never),
      {
        name: "TypeError",
        message: /unknown option "wrokers" \(known: workers, /,
      },
    );
  });

  test("rejects an output mode that is not one, rather than make it a file", () => {
    for (const value of ["pipe", "ignore", "NULL", "inherit ", "Inherit"]) {
      assert.throws(
        () => new Supervisor(Idle, { stdout: value }),
        {
          name: "RangeError",
          message: new RegExp(
            `stdout ${
              JSON.stringify(value).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
            } is not a mode`,
          ),
        },
      );
    }
    assert.ok(new Supervisor(Idle, { stdout: "./pipe", stderr: "null" }));
  });

  test("accepts a factory", () => {
    assert.ok(new Supervisor((id) => new Idle(id)));
  });

  test("rejects bad outputs, loggers and levels", () => {
    assert.throws(() => new Supervisor(Idle, { stdout: "" }), {
      name: "TypeError",
      message:
        /stdout must be "inherit", "null", a file path or a WritableStream, got ""/,
    });
    assert.throws(
      () => new Supervisor(Idle, { logger: {} as never }),
      {
        name: "TypeError",
        message: /logger must have a handle\(record\) method/,
      },
    );
    assert.throws(
      () => new Supervisor(Idle, { logLevel: "LOUD" as never }),
      { name: "RangeError", message: /logLevel must be one of .*got "LOUD"/ },
    );
  });

  test("rejects bad admin, shutdownDelay, minReady and logFormat, naming the value", () => {
    const cases: [object, string, RegExp][] = [
      [{ admin: 9100 }, "TypeError", /admin must be an object .* got 9100/],
      [
        { admin: {} },
        "TypeError",
        /admin\.port must be a number, got undefined/,
      ],
      [
        { admin: { port: "9100" } },
        "TypeError",
        /admin\.port must be a number, got "9100"/,
      ],
      [{ admin: { port: 1.5 } }, "RangeError", /admin\.port .* got 1\.5/],
      [{ admin: { port: 70000 } }, "RangeError", /admin\.port .* got 70000/],
      [{ admin: { port: 1, hostname: "" } }, "TypeError", /admin\.hostname/],
      [
        { admin: { port: 1, host: "x" } },
        "TypeError",
        /admin: unknown option "host" \(known: port, hostname\)/,
      ],
      [{ shutdownDelay: -1 }, "RangeError", /shutdownDelay .* got -1/],
      [{ minReady: 0 }, "RangeError", /minReady must be an integer .* got 0/],
      [
        { logFormat: "xml" },
        "RangeError",
        /logFormat must be "text" or "json", got "xml"/,
      ],
    ];
    for (const [options, name, message] of cases) {
      assert.throws(() => new Supervisor(Idle, options), { name, message });
    }
    const status = new Supervisor(Idle, {
      admin: { port: 0 },
      shutdownDelay: 5000,
      minReady: 3,
      logFormat: "json",
    }).status;
    assert.equal(status.state, "idle");
    assert.equal(status.minReady, 2); // minReady 3, at most the 2 workers
    assert.equal(status.size, 2);
  });

  test("addWorker and removeWorker before main() edit the ids", async () => {
    const supervisor = new Supervisor(Idle, { workers: 1 });
    supervisor.addWorker(5);
    assert.throws(() => supervisor.addWorker(5), {
      name: "RangeError",
      message: "Cannot add worker: id 5 is already in the pool",
    });
    assert.throws(() => supervisor.addWorker(-1), { name: "RangeError" });
    await supervisor.removeWorker(5);
    await assert.rejects(supervisor.removeWorker(5), {
      name: "RangeError",
      message: "Cannot remove worker: no worker has id 5",
    });
  });

  test("main() rejects bad options before doing anything", async () => {
    const supervisor = new Supervisor(Idle);
    await assert.rejects(supervisor.main({ pidfile: "" }), {
      name: "TypeError",
      message:
        'Cannot start supervisor: pidfile must be a non-empty path, got ""',
    });
    await assert.rejects(
      supervisor.main({ daemonize: "yes" as unknown as boolean }),
      { name: "TypeError", message: /daemonize must be a boolean, got "yes"/ },
    );
    await assert.rejects(supervisor.main({ pidFile: "x" } as never), {
      name: "TypeError",
      message: /unknown option "pidFile"/,
    });
  });
});
