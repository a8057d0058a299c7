/**
 * The worker side of `workerpool serve`: the main module of each worker
 * process. It imports the app module, runs its `onStart`, serves its
 * `fetch` on the shared port, and on a graceful stop drains and runs its
 * `onShutdown`. Its settings come from the master in one variable, so it
 * parses no command line (and loads no node: module, which would cost
 * each worker start-up time).
 *
 * @module
 */
import { describe } from "../errors.ts";
import { type AppendFile, loadRuntime, type Runtime } from "../runtime/mod.ts";
import { logRequestError, serve } from "../serve.ts";
import { Supervisor } from "../supervisor.ts";
import type { HttpServer } from "../types.ts";
import { WorkerBase } from "../worker.ts";
import {
  type App,
  APP_ENV,
  CHECK_ENV,
  loadApp,
  type WorkerConfig,
} from "./_app.ts";

/** One worker: the app, served. */
class AppWorker extends WorkerBase {
  #config: WorkerConfig;
  #runtime: Runtime;
  #app: App | null = null;
  #server: HttpServer | null = null;
  #access: AccessLog | null = null;

  constructor(id: number, config: WorkerConfig, runtime: Runtime) {
    super(id);
    this.#config = config;
    this.#runtime = runtime;
    this.onStart(() => this.#start());
    this.onShutdown(() => this.#stop());
  }

  async #start(): Promise<void> {
    const config = this.#config;
    const app = await loadApp(config.module, config.shown);
    this.#app = app;
    await app.onStart?.({ id: this.id });
    const tls = await this.#tls();
    if (config.accessLog !== null) {
      this.#access = await AccessLog.open(this.#runtime, config, this.id);
    }
    const fetch = app.fetch.bind(app);
    const onError = this.#access === null
      ? app.onError?.bind(app)
      : this.#access.onError(app.onError?.bind(app), this.#runtime.pid);
    this.#server = await serve({
      hostname: config.hostname,
      port: config.port,
      ...tls,
      ...(onError === undefined ? {} : { onError }),
    }, this.#access === null ? fetch : this.#access.wrap(fetch));
  }

  async #tls(): Promise<{ cert?: string; key?: string }> {
    const { certfile, keyfile } = this.#config;
    if (certfile === null || keyfile === null) return {};
    const read = async (path: string) => {
      const text = await this.#runtime.readText(path);
      if (text === null) throw new Error(`Cannot read ${path}: no such file`);
      return text;
    };
    return { cert: await read(certfile), key: await read(keyfile) };
  }

  async #stop(): Promise<void> {
    try {
      await this.#server?.shutdown();
    } finally {
      try {
        await this.#app?.onShutdown?.();
      } finally {
        await this.#access?.close();
      }
    }
  }

  main(): Promise<void> {
    const signal = this.signal;
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  }
}

type Fetch = App["fetch"];

/** Access log lines held while a write waits, at most. */
const MAX_PENDING = 10_000;
/** How long a stopping worker gives its access log to be written. */
const CLOSE_MS = 1000;

/**
 * The access log of one worker: a line per request, written in batches
 * (one write per turn of the event loop, not one per request).
 */
class AccessLog {
  #target: AppendFile;
  #json: boolean;
  #id: number;
  #lines: string[] = [];
  #writing: Promise<void> = Promise.resolve();
  /** A write is under way. */
  #busy = false;
  /** Lines dropped since the last write, the pending ones being too many. */
  #dropped = 0;
  #scheduled = false;
  #encoder = new TextEncoder();
  /** When each request came, for those that fail (see `onError`). */
  #started = new WeakMap<Request, number>();
  #later: (callback: () => void) => void;

  private constructor(
    runtime: Runtime,
    target: AppendFile,
    json: boolean,
    id: number,
  ) {
    // The runtime's timer: Deno's own setTimeout costs a worker 11 ms the
    // first time (see the adapter).
    this.#later = (callback) => void runtime.setTimeout(callback, 0);
    this.#target = target;
    this.#json = json;
    this.#id = id;
  }

  static async open(
    runtime: Runtime,
    config: WorkerConfig,
    id: number,
  ): Promise<AccessLog> {
    const json = config.logFormat === "json";
    if (config.accessLog === "-") {
      return new AccessLog(
        runtime,
        {
          write: (data) => runtime.writeStdout(data),
          close: () => Promise.resolve(),
        },
        json,
        id,
      );
    }
    try {
      return new AccessLog(
        runtime,
        await runtime.openAppend(config.accessLog!),
        json,
        id,
      );
    } catch (error) {
      throw new Error(
        `Cannot open the access log ${config.accessLog}: ${describe(error)}`,
        { cause: error },
      );
    }
  }

  /**
   * `fetch`, logging each request once it is answered. A request that
   * fails is logged by {@linkcode onError}, with the status actually sent.
   */
  wrap(fetch: Fetch): Fetch {
    return (request, info) => {
      const start = performance.now();
      this.#started.set(request, start);
      const response = fetch(request, info);
      if (response instanceof Response) {
        this.#log(request, response.status, response, start);
        return response;
      }
      if (!(response instanceof Promise)) return response; // onError's
      return response.then((value) => {
        if (value instanceof Response) {
          this.#log(request, value.status, value, start);
        }
        return value;
      });
    };
  }

  /**
   * The app's `onError` (or serve()'s default, which logs the error),
   * logging the request with the status sent: onError's response, or 500.
   */
  onError(
    onError: App["onError"],
    pid: number,
  ): NonNullable<App["onError"]> {
    return async (error, request) => {
      const start = this.#started.get(request) ?? performance.now();
      if (onError === undefined) {
        logRequestError(error, request, pid);
        this.#log(request, 500, null, start);
        return;
      }
      let response;
      try {
        response = await onError(error, request);
      } catch (failure) {
        this.#log(request, 500, null, start);
        throw failure;
      }
      const sent = response instanceof Response ? response : null;
      this.#log(request, sent?.status ?? 500, sent, start);
      return response;
    };
  }

  #log(
    request: Request,
    status: number,
    response: Response | null,
    start: number,
  ): void {
    const ms = Math.round((performance.now() - start) * 10) / 10;
    const length = response?.headers.get("content-length");
    const bytes = length == null ? null : Number(length);
    const url = request.url;
    const from = url.indexOf("/", url.indexOf("//") + 2);
    const path = from === -1 ? "/" : url.slice(from);
    const time = new Date().toISOString();
    if (this.#lines.length >= MAX_PENDING) {
      this.#dropped++;
      return;
    }
    this.#lines.push(
      this.#json
        ? JSON.stringify({
          time,
          worker: this.#id,
          method: request.method,
          path,
          status,
          bytes,
          ms,
        })
        : `${time} ${this.#id} ${request.method} ${path} ${status} ${
          bytes ?? "-"
        } ${ms}`,
    );
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.#later(() => void this.#flush());
    }
  }

  /**
   * Writes the lines gathered, one write at a time. While a write waits
   * (a stdout nobody reads), lines gather up to {@linkcode MAX_PENDING};
   * beyond, they are dropped and counted, and the count is said once
   * writing goes again: memory stays bounded and requests are served.
   */
  #flush(): Promise<void> {
    this.#scheduled = false;
    if (this.#busy || this.#lines.length === 0) return this.#writing;
    if (this.#dropped > 0) {
      this.#lines.push(`[${this.#dropped} access log lines dropped]`);
      this.#dropped = 0;
    }
    const data = this.#encoder.encode(this.#lines.join("\n") + "\n");
    this.#lines = [];
    this.#busy = true;
    this.#writing = this.#target.write(data).catch(
      () => {}, // a closed stdout: the requests are served all the same
    ).finally(() => {
      this.#busy = false;
      if (this.#lines.length > 0) void this.#flush();
    });
    return this.#writing;
  }

  /** Writes what is left (for a second at most: a stalled stdout), closes. */
  async close(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      (async () => {
        while (this.#busy || this.#lines.length > 0) {
          await this.#flush();
          await this.#writing;
        }
      })(),
      new Promise((resolve) => timer = setTimeout(resolve, CLOSE_MS)),
    ]);
    clearTimeout(timer);
    await this.#target.close();
  }
}

const runtime = await loadRuntime();
const settings = runtime.getEnv(APP_ENV);
runtime.deleteEnv(APP_ENV);
if (settings === undefined) {
  console.error(
    "This is the worker module of `workerpool serve`; run: workerpool serve app.ts",
  );
  runtime.exit(2);
}
const config = JSON.parse(settings!) as WorkerConfig;
if (runtime.getEnv(CHECK_ENV) === "1") {
  // The master's check of an app that needs the flags of its workers.
  try {
    await loadApp(config.module, config.shown);
    runtime.exit(0);
  } catch (error) {
    console.error(describe(error));
    runtime.exit(1);
  }
}
await new Supervisor((id) => new AppWorker(id, config, runtime)).main();
