/**
 * workerpool: a prefork-style process supervisor for Deno and Bun.
 *
 * A master process keeps a pool of worker processes of the same script
 * alive, replaces the ones that die or hang, forwards their output and logs,
 * and shuts them down gracefully. Workers share one port through
 * `reusePort`, and every worker runs the same {@linkcode WorkerBase}
 * lifecycle under either runtime.
 *
 * @example A pool of HTTP workers on one port
 * ```ts ignore
 * import { serve, Supervisor, WorkerBase } from "@workerpool/core";
 *
 * class Web extends WorkerBase {
 *   constructor(id: number) {
 *     super(id);
 *     this.onStart(async () => {
 *       const server = await serve({ port: 8080 }, () =>
 *         new Response(`pong from #${this.id}\n`));
 *       this.onShutdown(() => server.shutdown());
 *     });
 *   }
 *   async main() {
 *     while (this.isRunning()) await this.sleep(1000);
 *   }
 * }
 *
 * await new Supervisor(Web, { workers: 4 }).main();
 * ```
 *
 * @module
 */
export { Supervisor } from "./src/supervisor.ts";
export { WorkerBase } from "./src/worker.ts";
export type { WorkerClass, WorkerFactory } from "./src/worker.ts";
export { serve, upgradeWebSocket } from "./src/serve.ts";
export { BootError, EXIT_BOOT_ERROR } from "./src/errors.ts";
export {
  formatJsonRecord,
  formatRecord,
  LogLevels,
  stderrHandler,
} from "./src/logging.ts";
export type {
  AdminOptions,
  Handler,
  HttpServer,
  LevelName,
  LifecycleCallback,
  Logger,
  LogHandler,
  LogRecord,
  MainOptions,
  NetAddr,
  OutputTarget,
  PoolLogRecord,
  PoolStatus,
  RestartInfo,
  RestartReason,
  ServeHandlerInfo,
  ServeOptions,
  SignalName,
  SupervisorOptions,
  UpgradeWebSocketOptions,
  WebSocketUpgrade,
  WorkerInfo,
  WorkerMetrics,
  WorkerProcessInfo,
} from "./src/types.ts";
