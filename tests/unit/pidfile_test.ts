import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Pidfile, readPid } from "../../src/_pidfile.ts";
import { runtime, testDir } from "../_helpers.ts";

const dir = testDir();
const alive = (live: number[]) => (pid: number) => live.includes(pid);

describe("Pidfile", () => {
  test("writes the pid and leaves no temporary file", () => {
    const path = join(dir, "a.pid");
    const pidfile = Pidfile.acquire(runtime, path, 123, alive([]));
    assert.equal(readFileSync(path, "utf8"), "123\n");
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith("a.")), [
      "a.pid",
    ]);
    pidfile.release();
    assert.equal(existsSync(path), false);
  });

  test("refuses a pidfile whose pid is alive, naming it", () => {
    const path = join(dir, "b.pid");
    writeFileSync(path, "77\n");
    assert.throws(() => Pidfile.acquire(runtime, path, 123, alive([77])), {
      name: "PidfileError",
      message: `Cannot write pidfile: ${path} holds pid 77, which is running`,
    });
    assert.equal(readFileSync(path, "utf8"), "77\n");
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith("b.")), [
      "b.pid",
    ]);
  });

  test("takes over a stale pidfile", () => {
    const path = join(dir, "c.pid");
    writeFileSync(path, "77\n");
    const pidfile = Pidfile.acquire(runtime, path, 123, alive([]));
    assert.equal(readPid(runtime, path), 123);
    pidfile.release();
    assert.equal(existsSync(path), false);
  });

  test("refuses, and keeps, a file that does not hold a pid", () => {
    for (const content of ["my notes\n", "", "12abc"]) {
      const path = join(dir, "notes.txt");
      writeFileSync(path, content);
      assert.throws(() => Pidfile.acquire(runtime, path, 123, alive([])), {
        message: `Cannot write pidfile: ${path} exists and does not hold a pid`,
      });
      assert.equal(readFileSync(path, "utf8"), content);
    }
  });

  test("names the path when it cannot be written", () => {
    const path = join(dir, "missing", "x.pid");
    assert.throws(() => Pidfile.acquire(runtime, path, 123, alive([])), {
      message: new RegExp(`^Cannot write pidfile ${path}: `),
    });
  });

  test("release() leaves a pidfile that another process took over", () => {
    const path = join(dir, "d.pid");
    const pidfile = Pidfile.acquire(runtime, path, 123, alive([]));
    writeFileSync(path, "456\n");
    pidfile.release();
    assert.equal(readFileSync(path, "utf8"), "456\n");
  });
});
