// A master on the fake runtime, for the unit tests of its state machine.
import assert from "node:assert/strict";
import { type PoolLogRecord, Supervisor, WorkerBase } from "../mod.ts";
import { useRuntime } from "../src/runtime/mod.ts";
import type { SupervisorOptions } from "../src/types.ts";
import { FakeExit, FakeRuntime, settle } from "./_fake_runtime.ts";

export class Idle extends WorkerBase {
  main() {}
}

/** Lets the master run until `check` holds (a bounded number of turns). */
export async function until(check: () => boolean): Promise<void> {
  for (let turn = 0; !check(); turn++) {
    if (turn === 200) throw new Error("The master never got there");
    await settle();
  }
}

/** A master on a fake runtime; `env`: the master's environment. */
export async function setup(
  options: SupervisorOptions = {},
  env: Record<string, string> = {},
) {
  const runtime = new FakeRuntime();
  for (const [name, value] of Object.entries(env)) runtime.env.set(name, value);
  useRuntime(runtime);
  const records: PoolLogRecord[] = [];
  const supervisor = new Supervisor(Idle, {
    checkInterval: 60_000,
    logger: { handle: (r) => void records.push(r) },
    ...options,
  });
  const exit = supervisor.main().then(
    () => assert.fail("main() returned without exiting"),
    (error) => {
      if (error instanceof FakeExit) return error.code;
      throw error;
    },
  );
  // main() loads the master's modules first: wait for the spawns.
  await until(() => runtime.children.length > 0);
  const logged = (pattern: RegExp) =>
    records.filter((r) => pattern.test(r.msg));
  const stateOf = (id: number) =>
    supervisor.pool.find((w) => w.id === id)?.state;
  return { runtime, supervisor, records, exit, logged, stateOf };
}

/** Starts every live child: hello, then ready. Returns their connections. */
export async function bootAll(runtime: FakeRuntime) {
  const ends = [];
  for (const child of runtime.alive()) {
    const end = await child.hello();
    end.send({ t: "ready" });
    ends.push(end);
  }
  await settle();
  return ends;
}
