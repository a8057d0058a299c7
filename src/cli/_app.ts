/**
 * The module `workerpool serve` runs: what its default export must be, and
 * the check that it is, done before any worker is spawned (in the master,
 * and by `--check`) and again in each worker.
 *
 * @module
 */
import { absolute } from "../_path.ts";
import { describe, describeValue } from "../errors.ts";
import type { ServeHandlerInfo } from "../types.ts";

/**
 * The default export of a module that `workerpool serve app.ts` runs: the
 * object `deno serve` and Bun understand, `{ fetch }`, with optional hooks.
 * Each worker process imports the module, runs `onStart`, then serves
 * `fetch` on the shared port; on a graceful stop it drains, then runs
 * `onShutdown`.
 *
 * @example app.ts
 * ```ts ignore
 * import type { App } from "@workerpool/core/cli";
 *
 * export default {
 *   fetch(request, info) {
 *     return new Response(`hello ${info.remoteAddr.hostname}\n`);
 *   },
 * } satisfies App;
 * ```
 */
export interface App {
  /** Answers a request; `info.remoteAddr` is the client's address. */
  fetch(request: Request, info: ServeHandlerInfo): Response | Promise<Response>;
  /**
   * Runs in each worker before it listens (open a database pool here, say);
   * a failure is the worker's boot error.
   */
  onStart?(worker: { id: number }): void | Promise<void>;
  /** Runs in each worker after its server drained, before it exits. */
  onShutdown?(): void | Promise<void>;
  /**
   * Called when `fetch` throws or rejects; its response, if it returns
   * one, is sent instead of a plain 500.
   */
  onError?(
    error: unknown,
    request: Request,
  ): Response | void | Promise<Response | void>;
}

/** The URL of the module at `path` (a path, relative to `cwd`, or a URL). */
export function moduleUrl(path: string, cwd: string): string {
  if (/^(file|https?|jsr|npm):/.test(path)) return new URL(path).href;
  const full = absolute(cwd, path);
  return new URL(`file://${encodeURI(full).replace(/[?#]/g, escape)}`).href;
}

/**
 * Imports module `url` and checks its default export: resolves with it,
 * or rejects with an error that says what is wrong (`shown` names the
 * module as the user gave it).
 */
export async function loadApp(url: string, shown: string): Promise<App> {
  let namespace: { default?: unknown };
  try {
    namespace = await import(url);
  } catch (error) {
    // The reason in full, not the error as a cause: said once.
    throw new Error(`Cannot load ${shown}: ${loadFailure(error, url)}`);
  }
  return checkApp(namespace, shown);
}

/**
 * Why a module did not load, said plainly: "no such file" for a missing
 * one, each of Bun's build errors with its place, no terminal colours.
 */
function loadFailure(error: unknown, url: string): string {
  const text = describe(error);
  if (
    url.startsWith("file:") &&
    /Module not found|Cannot find module/.test(text) &&
    text.includes(decodeURI(new URL(url).pathname))
  ) return "no such file";
  // Bun's build errors: one, or an AggregateError of them, with places.
  const errors = (error as { errors?: unknown[]; position?: unknown }).errors ??
    ((error as { position?: unknown }).position ? [error] : undefined);
  const details = Array.isArray(errors)
    ? errors.map((entry) => {
      const { message, position } = entry as {
        message?: string;
        position?: { file?: string; line?: number; column?: number } | null;
      };
      const where = position?.file
        ? ` at ${position.file}:${position.line}:${position.column}`
        : "";
      return `${message ?? String(entry)}${where}`;
    })
    : [];
  const said = details.length > 0 ? details.join("; ") : text;
  // deno-lint-ignore no-control-regex
  return said.replace(/\x1b\[[0-9;]*m/g, "");
}

/** Keys of Bun's default export that would not work here, and what to use. */
const BUN_KEYS: Record<string, string> = {
  websocket:
    "websocket handlers are Bun.serve's: call upgradeWebSocket(request) from @workerpool/core in fetch",
  error:
    "error() is Bun.serve's name: workerpool calls onError(error, request)",
  unix: "workerpool serves TCP: use -b HOST:PORT",
  tls: "TLS is set with --certfile and --keyfile",
  routes: "routes are Bun.serve's: route in fetch",
};

/** The app a module's namespace exports by default; throws when it is not one. */
export function checkApp(namespace: { default?: unknown }, shown: string): App {
  const app = namespace.default as Record<string, unknown> | undefined;
  if (!("default" in namespace)) {
    throw new TypeError(
      `Cannot serve ${shown}: it has no default export (export default { fetch(request) { … } })`,
    );
  }
  if (typeof app !== "object" || app === null) {
    throw new TypeError(
      `Cannot serve ${shown}: its default export must be an object with fetch(), got ${
        describeValue(app)
      }`,
    );
  }
  if (typeof app["fetch"] !== "function") {
    throw new TypeError(
      `Cannot serve ${shown}: its default export has no fetch() method, got fetch = ${
        describeValue(app["fetch"])
      }`,
    );
  }
  for (const [key, instead] of Object.entries(BUN_KEYS)) {
    if (key in app) {
      throw new TypeError(`Cannot serve ${shown}: ${instead}`);
    }
  }
  for (const hook of ["onStart", "onShutdown", "onError"]) {
    if (app[hook] !== undefined && typeof app[hook] !== "function") {
      throw new TypeError(
        `Cannot serve ${shown}: ${hook} must be a function, got ${
          describeValue(app[hook])
        }`,
      );
    }
  }
  return app as unknown as App;
}

/** Keys of a `bun app.ts` default export that are ignored here. */
const IGNORED_KEYS = ["port", "hostname", "development", "idleTimeout"];

/** What the master should warn of: keys of the app that are ignored. */
export function appWarnings(app: App, shown: string): string[] {
  return IGNORED_KEYS.filter((key) => key in app).map((key) =>
    `${shown}: ${key} in the default export is ignored${
      key === "port" || key === "hostname" ? " (use -b HOST:PORT)" : ""
    }`
  );
}

/** What an app's default export has, for `--check`: "fetch, onStart". */
export function appShape(app: App): string {
  return ["fetch", "onStart", "onShutdown", "onError"]
    .filter((name) =>
      typeof (app as unknown as Record<string, unknown>)[name] === "function"
    )
    .join(", ");
}

/** Set (to "1") in a process that only checks the app, and exits. */
export const CHECK_ENV = "WORKERPOOL_APP_CHECK";

/** The variable that gives `workerpool serve`'s workers their settings. */
export const APP_ENV = "WORKERPOOL_APP";

/** What each worker of `workerpool serve` is told (as JSON in {@linkcode APP_ENV}). */
export interface WorkerConfig {
  /** The app module's URL. */
  module: string;
  /** The module as the user named it, for messages. */
  shown: string;
  hostname: string;
  port: number;
  /** PEM files, read by each worker as it starts (so a reload renews them). */
  certfile: string | null;
  keyfile: string | null;
  /** `-` for stdout, a file to append to, or null for none. */
  accessLog: string | null;
  logFormat: "text" | "json";
}
