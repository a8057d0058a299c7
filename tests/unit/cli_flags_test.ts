// The command line's units and addresses, and the control frames.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  parseAddress,
  parseDuration,
  parseFlags,
  parseSize,
  SERVE_FLAGS,
  UsageError,
} from "../../src/cli/_flags.ts";
import { isControlRequest } from "../../src/_protocol.ts";
import { VERSION } from "../../cli.ts";

describe("the command line", () => {
  test("durations: ms, s, m, h; a plain number is seconds", () => {
    assert.equal(parseDuration("500ms"), 500);
    assert.equal(parseDuration("30"), 30_000);
    assert.equal(parseDuration("1.5s"), 1500);
    assert.equal(parseDuration("5m"), 300_000);
    assert.equal(parseDuration("1h"), 3_600_000);
    for (const bad of ["", "s", "-1s", "5 min", "1e3", "2d"]) {
      assert.equal(parseDuration(bad), null, bad);
    }
  });

  test("sizes: K, M, G (1024-based), or bytes", () => {
    assert.equal(parseSize("512M"), 512 * 1024 * 1024);
    assert.equal(parseSize("1G"), 1024 ** 3);
    assert.equal(parseSize("1.5g"), 1.5 * 1024 ** 3);
    assert.equal(parseSize("300KB"), 300 * 1024);
    assert.equal(parseSize("64MiB"), 64 * 1024 * 1024);
    assert.equal(parseSize("4096"), 4096);
    for (const bad of ["", "M", "12Q", "-1M", "1T"]) {
      assert.equal(parseSize(bad), null, bad);
    }
  });

  test("addresses: HOST:PORT, [v6]:PORT, :PORT, PORT", () => {
    const parse = (text: string) =>
      parseAddress("serve", "bind", text, "127.0.0.1");
    assert.deepEqual(parse("127.0.0.1:3000"), {
      hostname: "127.0.0.1",
      port: 3000,
    });
    assert.deepEqual(parse("[::1]:8080"), { hostname: "::1", port: 8080 });
    assert.deepEqual(parse(":8080"), { hostname: "0.0.0.0", port: 8080 });
    assert.deepEqual(parse("9000"), { hostname: "127.0.0.1", port: 9000 });
    assert.deepEqual(parse("localhost:1"), { hostname: "localhost", port: 1 });
    for (const bad of ["", "host", "host:", "host:0", "host:70000", "::1:80"]) {
      assert.throws(() => parse(bad), UsageError, bad);
    }
  });

  test("flags: values read by kind, mistakes named", () => {
    const { values, positionals } = parseFlags("serve", SERVE_FLAGS, [
      "-w",
      "3",
      "--max-memory=1G",
      "--timeout",
      "2s",
      "--watch",
      "app.ts",
    ]);
    assert.deepEqual(positionals, ["app.ts"]);
    assert.equal(values.workers, 3);
    assert.equal(values["max-memory"], 1024 ** 3);
    assert.equal(values.timeout, 2000);
    assert.equal(values.watch, "");
    const message = (args: string[]) => {
      try {
        parseFlags("serve", SERVE_FLAGS, args);
      } catch (error) {
        assert.ok(error instanceof UsageError);
        return error.message;
      }
      assert.fail(`no error for ${args.join(" ")}`);
    };
    assert.equal(
      message(["--max-mem", "1G"]),
      "unknown option --max-mem (did you mean --max-memory?)",
    );
    assert.equal(message(["--port"]), "option --port needs a value (PORT)");
    assert.equal(message(["--daemon=yes"]), "option --daemon takes no value");
    assert.equal(
      message(["--max-age", "soon"]),
      'bad value for --max-age: "soon" (a duration: 500ms, 30s, 5m, 1h; a plain number is seconds)',
    );
  });

  test("the version is the package's", () => {
    const config = JSON.parse(
      readFileSync(new URL("../../deno.json", import.meta.url), "utf8"),
    );
    assert.equal(VERSION, config.version);
  });

  test("control requests: only the known shapes", () => {
    assert.ok(isControlRequest({ t: "ctl", cmd: "status" }));
    assert.ok(
      isControlRequest({ t: "ctl", cmd: "scale", size: -2, relative: true }),
    );
    assert.ok(!isControlRequest({ t: "ctl", cmd: "scale", size: 1.5 }));
    assert.ok(!isControlRequest({ t: "ctl", cmd: "rm -rf" }));
    assert.ok(!isControlRequest({ t: "hello", cmd: "status" }));
    assert.ok(!isControlRequest(null));
  });
});
