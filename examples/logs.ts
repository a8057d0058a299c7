/**
 * The seed's logs example: workers log through `this.logger`; the master
 * receives every record (with the worker's id and pid) and prints it in its
 * own format.
 *
 *     deno run -A examples/logs.ts
 *     bun examples/logs.ts
 */
import { type PoolLogRecord, Supervisor, WorkerBase } from "../mod.ts";

class Worker extends WorkerBase {
  constructor(id: number) {
    super(id);
    this.onStart(() => this.logger.info("starting"));
    this.onShutdown(() => this.logger.info("stopping"));
  }

  async main() {
    let ticks = 0;
    while (this.isRunning()) {
      ticks++;
      this.logger.debug("tick", { ticks });
      if (ticks % 3 === 0) this.logger.warn("third tick", { ticks });
      await this.sleep(1000);
    }
  }
}

/** One line per record: time, who, level, logger, message, arguments. */
function print(record: PoolLogRecord): void {
  const time = record.datetime.toISOString().slice(11, 23);
  const who = record.workerId === null ? "master" : `#${record.workerId}`;
  const args = record.args.map((arg) => JSON.stringify(arg)).join(" ");
  console.log(
    `${time} ${who.padEnd(6)} ${String(record.pid).padStart(7)} ${
      record.levelName.padEnd(8)
    } ${record.loggerName}: ${record.msg} ${args}`.trimEnd(),
  );
}

const supervisor = new Supervisor(Worker, {
  workers: 2,
  logger: { handle: print },
});
await supervisor.main();
