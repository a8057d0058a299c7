/**
 * WebSockets on a shared port: every worker answers WebSockets on one port
 * (reusePort) with serve() + upgradeWebSocket(), and echoes each message
 * saying which worker answered. When the pool stops (Ctrl-C, SIGTERM), each
 * worker drains its server: open WebSockets are closed with code 1001
 * (going away), so clients know to reconnect.
 *
 *     deno run -A examples/websocket.ts
 *     bun examples/websocket.ts
 *     deno eval 'const ws = new WebSocket("ws://127.0.0.1:8080/");
 *       ws.onopen = () => ws.send("hello");
 *       ws.onmessage = (event) => { console.log(event.data); ws.close(); };'
 *     # #1 12345: hello
 */
import process from "node:process";
import {
  type HttpServer,
  serve,
  Supervisor,
  upgradeWebSocket,
  WorkerBase,
} from "../mod.ts";

const port = Number(process.env.PORT ?? 8080);

class WorkerHandler extends WorkerBase {
  server: HttpServer | null = null;

  constructor(id: number) {
    super(id);
    // Servers start in the worker, after the fork, never in the master.
    this.onStart(() => this.startServer());
    // Drains: open WebSockets get 1001, in-flight requests are answered.
    this.onShutdown(() => this.server?.shutdown());
  }

  async startServer() {
    this.server = await serve(
      { port, hostname: "127.0.0.1" },
      (request, info) => {
        if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
          return new Response(
            `#${this.id} ${process.pid} speaks WebSocket: ws://127.0.0.1:${port}/\n`,
            { status: 426, headers: { upgrade: "websocket" } },
          );
        }
        const { socket, response } = upgradeWebSocket(request);
        // Read while the handler runs: once answered, it is gone.
        const { hostname, port: clientPort } = info.remoteAddr;
        const client = `${hostname}:${clientPort}`;
        socket.onopen = () => this.logger.info(`${client} connected`);
        socket.onmessage = (event) =>
          socket.send(`#${this.id} ${process.pid}: ${event.data}`);
        socket.onclose = (event) =>
          this.logger.info(`${client} left (code ${event.code})`);
        return response;
      },
    );
    this.logger.info(`listening on ws://127.0.0.1:${port}/`);
  }

  async main() {
    // The server answers on its own; main only waits for the stop.
    while (this.isRunning()) await this.sleep(1000);
  }
}

const supervisor = new Supervisor(WorkerHandler, { workers: 2 });
await supervisor.main();
