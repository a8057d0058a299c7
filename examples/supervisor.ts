/**
 * The seed's supervisor example: worker stdout and stderr go to files, a
 * short workerTimeout catches a hung worker within two seconds, both sides
 * have async shutdown callbacks, and the master holds a pidfile.
 *
 *     deno run -A examples/supervisor.ts [--daemon] [--dir DIR]
 *     bun examples/supervisor.ts [--daemon] [--dir DIR]
 *
 * Stop it with Ctrl-C, or `kill $(cat DIR/supervisor.pid)` as a daemon.
 */
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { Supervisor, WorkerBase } from "../mod.ts";

const { values } = parseArgs({
  options: {
    daemon: { type: "boolean", default: false },
    dir: { type: "string", default: join(tmpdir(), "workerpool-supervisor") },
  },
});
const dir = values.dir;
mkdirSync(dir, { recursive: true });

class Worker extends WorkerBase {
  constructor(id: number) {
    super(id);
    this.onStart(() => console.log(`#${this.id} ${process.pid} started`));
    this.onShutdown(async () => {
      // Pretend to flush something: shutdown callbacks may be async.
      await new Promise((resolve) => setTimeout(resolve, 100));
      console.log(`#${this.id} ${process.pid} flushed and stopped`);
    });
  }

  async main() {
    while (this.isRunning()) {
      console.log(`#${this.id} ${process.pid} working`);
      if (Math.random() < 0.05) console.error(`#${this.id} a rare warning`);
      await this.sleep(1000);
    }
  }
}

const supervisor = new Supervisor(Worker, {
  workers: 3,
  workerTimeout: 2000,
  gracefulTimeout: 5000,
  stdout: join(dir, "workers.out.log"),
  stderr: join(dir, "workers.err.log"),
});
supervisor.onStart(async () => {
  await Promise.resolve();
  console.log(`master ${process.pid}: worker output goes to ${dir}`);
});
supervisor.onShutdown(async () => {
  await new Promise((resolve) => setTimeout(resolve, 50));
  console.log(`master ${process.pid}: all workers stopped`);
});
await supervisor.main({
  pidfile: join(dir, "supervisor.pid"),
  daemonize: values.daemon,
});
