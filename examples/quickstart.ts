/**
 * The seed's quickstart: every worker says it is here, once a second, until
 * it is stopped (Ctrl-C or SIGTERM to the master).
 *
 *     deno run -A examples/quickstart.ts
 *     bun examples/quickstart.ts
 */
import process from "node:process";
import { Supervisor, WorkerBase } from "../mod.ts";

class Worker extends WorkerBase {
  async main() {
    while (this.isRunning()) {
      console.log(`${process.pid}: I am here!`);
      await this.sleep(1000);
    }
  }
}

await new Supervisor(Worker, { workers: 2 }).main();
