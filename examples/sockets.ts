/**
 * The seed's sockets example: every worker answers on one shared port
 * (reusePort) and drains its server when it shuts down.
 *
 *     deno run -A examples/sockets.ts
 *     bun examples/sockets.ts
 *     curl http://127.0.0.1:8080/    # pong from #1 12345!
 */
import process from "node:process";
import { type HttpServer, serve, Supervisor, WorkerBase } from "../mod.ts";

const port = Number(process.env.PORT ?? 8080);

class WorkerHandler extends WorkerBase {
  server: HttpServer | null = null;

  constructor(id: number) {
    super(id);
    // Servers start in the worker, after the fork, never in the master.
    this.onStart(() => this.startServer());
    this.onShutdown(() => this.stopServer());
  }

  async startServer() {
    this.server = await serve(
      { port, hostname: "127.0.0.1" },
      () => new Response(`pong from #${this.id} ${process.pid}!\n`),
    );
    this.logger.info(`listening on http://127.0.0.1:${port}/`);
  }

  async stopServer() {
    // Stops accepting, then waits for in-flight requests to be answered.
    await this.server?.shutdown();
  }

  async main() {
    // The server answers on its own; main only waits for the stop.
    while (this.isRunning()) await this.sleep(1000);
  }
}

const supervisor = new Supervisor(WorkerHandler, { workers: 2 });
await supervisor.main();
