/**
 * `workerpool serve [flags] app.ts`: the master. It reads the flags, checks
 * the app module before anything is spawned, and runs a `Supervisor` whose
 * workers run `_worker.ts` with the app; it says when the pool is up and
 * when each reload ends, and with `--watch` reloads on a change.
 *
 * @module
 */
import { daemonLogPath } from "../_daemon.ts";
import { resolve } from "../_path.ts";
import type { Pool } from "../_pool.ts";
import { writeStderr } from "../_stderr.ts";
import { plural } from "../_text.ts";
import { describe } from "../errors.ts";
import { createLogger, LogLevels, stderrHandler } from "../logging.ts";
import type { Runtime, Watcher } from "../runtime/mod.ts";
import { forCommand, Supervisor } from "../supervisor.ts";
import type { LevelName, Logger, SupervisorOptions } from "../types.ts";
import {
  type App,
  APP_ENV,
  appShape,
  appWarnings,
  CHECK_ENV,
  loadApp,
  moduleUrl,
  type WorkerConfig,
} from "./_app.ts";
import { CommandError, withDeadline } from "./_control.ts";
import {
  helpText,
  parseAddress,
  parseFlags,
  SERVE_FLAGS,
  UsageError,
  type Values,
} from "./_flags.ts";

const COMMAND = "serve";

/** The `--help` of `workerpool serve`. */
export const SERVE_HELP = helpText(
  "workerpool serve [options] app.ts",
  [
    "Serves the module's default export, { fetch(request, info) } (the object",
    "`deno serve` and Bun run), on N worker processes sharing one port. The",
    "master replaces workers that die or hang; SIGHUP (or `workerpool reload`)",
    "replaces them one by one with no request lost; SIGTERM drains and stops.",
  ].join("\n"),
  SERVE_FLAGS,
  [
    "workerpool serve -w 4 app.ts",
    "workerpool serve -b 127.0.0.1:3000 --max-memory 512M --admin 127.0.0.1:9090 app.ts",
    "workerpool serve -p app.pid -D --access-log access.log app.ts",
    "workerpool serve --watch app.ts",
  ],
);

/** Library option names, as the flags that set them (for error messages). */
const FLAG_OF: Record<string, string> = Object.fromEntries(
  SERVE_FLAGS.filter((flag) => flag.option !== undefined).map((flag) => [
    flag.option,
    `--${flag.name}`,
  ]),
);

/** Runs `workerpool serve`; resolves with the exit code (the pool's, once it ran). */
export async function serveCommand(
  runtime: Runtime,
  args: string[],
): Promise<number> {
  const { values, positionals } = parseFlags(COMMAND, SERVE_FLAGS, args);
  if (values["help"]) {
    console.log(SERVE_HELP);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      COMMAND,
      positionals.length === 0
        ? "missing the app module (workerpool serve app.ts)"
        : `one app module expected, got ${positionals.join(" ")}`,
    );
  }
  const shown = positionals[0]!;
  const { options, hostname, port } = toOptions(runtime, values);
  const supervisor = newSupervisor(options);
  const module = moduleUrl(shown, runtime.cwd());
  const tls = await checkTls(runtime, values);
  const watch = watchPaths(runtime, values, module);
  const log = cliLogger(runtime, options);
  await checkOutputs(runtime, values);
  const config: WorkerConfig = {
    module,
    shown,
    hostname,
    port,
    ...tls,
    accessLog: (values["access-log"] as string | undefined) ?? null,
    logFormat: options.logFormat ?? "text",
  };
  // The module is loaded and checked before any worker is spawned: a
  // mistake is said once, here, not by every worker in turn. Run as the
  // main module (examples/app.ts), it is being loaded: its workers check it.
  let app: App | null = null;
  let flags: string[] = [];
  if (module !== runtime.mainModule()) {
    try {
      app = await withDeadline(
        loadApp(module, shown),
        options.readyTimeout ?? 60_000,
        () =>
          new Error(
            `Cannot load ${shown}: it did not finish loading in ${
              options.readyTimeout ?? 60_000
            } ms (--ready-timeout; a top-level await that never settles?)`,
          ),
      );
    } catch (error) {
      const deno = denoConfig(runtime, module, error);
      if (deno === null) throw new CommandError(describe(error));
      // The app's own deno.json maps its imports: the workers run with it,
      // and a process of theirs checks the app now.
      flags = ["--config", deno];
      await checkInProcess(runtime, config, flags);
    }
    for (const warning of app ? appWarnings(app, shown) : []) log.warn(warning);
  }
  const scheme = tls.certfile === null ? "http" : "https";
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const url = `${scheme}://${host}:${port}`;
  if (values["check"]) {
    console.log(
      `${shown}: ok, export default { ${
        app === null ? "…" : appShape(app)
      } }; ${options.workers} workers would serve ${url}`,
    );
    return 0;
  }
  runtime.setEnv(APP_ENV, JSON.stringify(config));
  // What the pool writes itself never counts as a change to --watch.
  const ignored = [
    values["pid"],
    values["access-log"],
    values["stdout"],
    values["stderr"],
    values["daemon"]
      ? daemonLogPath(runtime.cwd(), values["pid"] as string)
      : null,
  ].filter((path): path is string => typeof path === "string");
  forCommand(supervisor, {
    // The app's name after the module: what `ps` shows of a worker.
    script: { module: workerModule(), flags, args: [shown] },
    onPool: (pool) =>
      announce(runtime, pool, log, url, supervisor, watch, ignored),
  });
  await supervisor.main({
    ...(values["pid"] === undefined
      ? {}
      : { pidfile: values["pid"] as string }),
    daemonize: values["daemon"] === true,
  });
  return 0; // main() exits the process itself
}

/**
 * The deno.json of an app that failed to load for want of its import map,
 * or null. Deno reads the deno.json of the folder of the script it runs
 * (this package's, from a checkout; the install's own, installed), not
 * the app's.
 */
function denoConfig(
  runtime: Runtime,
  module: string,
  error: unknown,
): string | null {
  if (
    runtime.name !== "deno" || !module.startsWith("file:") ||
    !/not a dependency|import map|Relative import path/.test(describe(error))
  ) return null;
  // Given with --config already: that one is the user's choice.
  const own = runtime.moduleCommand("-").args;
  if (own.some((arg) => /^(--config|-c)(=|$)/.test(arg))) return null;
  let folder = folderOf(module);
  for (; folder !== ""; folder = folder.slice(0, folder.lastIndexOf("/"))) {
    const names = runtime.readDir(folder || "/", "deno.json");
    const config = names.find((name) => /^deno\.jsonc?$/.test(name));
    if (config !== undefined) return `${folder}/${config}`;
  }
  return null;
}

/**
 * Checks the app in a process of its own, run as a worker would be (with
 * `flags`): resolves, or throws a {@linkcode CommandError} with its reason.
 */
async function checkInProcess(
  runtime: Runtime,
  config: WorkerConfig,
  flags: string[],
): Promise<void> {
  const { command, args } = runtime.moduleCommand(workerModule(), flags);
  const child = runtime.spawn(command, {
    args,
    env: { [APP_ENV]: JSON.stringify(config), [CHECK_ENV]: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
  const [status, stderr] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
  ]);
  if (status.code !== 0) {
    throw new CommandError(
      stderr.trim() || `checking ${config.shown} failed (exit ${status.code})`,
    );
  }
}

/** The Supervisor, or the library's complaint as a usage error naming the flag. */
function newSupervisor(options: SupervisorOptions): Supervisor {
  try {
    return new Supervisor(() => {
      throw new Error("workerpool serve's workers run src/cli/_worker.ts");
    }, options);
  } catch (error) {
    let message = error instanceof Error ? error.message : String(error);
    message = message.replace(/^Cannot create supervisor: /, "")
      .replace(
        /must be a finite number of milliseconds from (\d+) to (\d+), got (\S+)/,
        (_, low, high, got) =>
          Number(got) < Number(low)
            ? `must be at least ${low}ms, got ${got}ms`
            : `must be at most ${high}ms (${
              Math.floor(Number(high) / 86_400_000)
            } days), got ${got}ms`,
      );
    for (const [name, flag] of Object.entries(FLAG_OF)) {
      message = message.replace(new RegExp(`\\b${name}\\b`), flag);
    }
    throw new UsageError(COMMAND, message);
  }
}

/** The flags as library options, and where to serve. */
function toOptions(
  runtime: Runtime,
  values: Values,
): { options: SupervisorOptions; hostname: string; port: number } {
  let { hostname, port } = values["bind"] === undefined
    ? { hostname: "127.0.0.1", port: 8080 }
    : parseAddress(COMMAND, "bind", values["bind"] as string, "127.0.0.1");
  if (values["host"] !== undefined) {
    hostname = (values["host"] as string).replace(/^\[(.*)\]$/, "$1");
    if (hostname === "") {
      throw new UsageError(COMMAND, "bad value for --host: an empty name");
    }
  }
  if (values["port"] !== undefined) {
    port = values["port"] as number;
    if (port < 1 || port > 65535) {
      throw new UsageError(
        COMMAND,
        `bad value for --port: ${port} (a port from 1 to 65535)`,
      );
    }
  }
  // The flags that set an option as they are; the others are read below.
  const options: SupervisorOptions = {};
  for (const flag of SERVE_FLAGS) {
    if (flag.option !== undefined && values[flag.name] !== undefined) {
      (options as Record<string, unknown>)[flag.option] = values[flag.name];
    }
  }
  options.workers = workerCount(runtime, values);
  if (values["log-level"] !== undefined) {
    let level = (values["log-level"] as string).toUpperCase();
    if (level === "WARNING") level = "WARN";
    if (!(level in LogLevels) || level === "NOTSET") {
      throw new UsageError(
        COMMAND,
        `bad value for --log-level: ${
          JSON.stringify(values["log-level"])
        } (DEBUG, INFO, WARN, ERROR or CRITICAL)`,
      );
    }
    options.logLevel = level as LevelName;
  }
  if (values["log-format"] !== undefined) {
    const format = values["log-format"];
    if (format !== "text" && format !== "json") {
      throw new UsageError(
        COMMAND,
        `bad value for --log-format: ${JSON.stringify(format)} (text or json)`,
      );
    }
    options.logFormat = format;
  }
  if (values["admin"] !== undefined) {
    options.admin = parseAddress(
      COMMAND,
      "admin",
      values["admin"] as string,
      "127.0.0.1",
    );
  }
  if (options.admin?.port === port) {
    throw new UsageError(
      COMMAND,
      `--admin ${
        values["admin"]
      } takes the app's port ${port}: give it another`,
    );
  }
  if (values["takeover"]) options.takeover = true;
  return { options, hostname, port };
}

/** `--workers`, else `$WEB_CONCURRENCY`, else the number of CPUs. */
function workerCount(runtime: Runtime, values: Values): number {
  if (values["workers"] !== undefined) return values["workers"] as number;
  const concurrency = runtime.getEnv("WEB_CONCURRENCY");
  if (concurrency !== undefined && concurrency !== "") {
    if (!/^\d+$/.test(concurrency) || Number(concurrency) < 1) {
      throw new UsageError(
        COMMAND,
        `bad value in $WEB_CONCURRENCY: ${
          JSON.stringify(concurrency)
        } (a number of workers)`,
      );
    }
    return Number(concurrency);
  }
  return navigator.hardwareConcurrency || 1;
}

/**
 * The files the pool will write can be written: the access log, the
 * workers' output files (opened, so created, now), the pidfile's folder.
 */
async function checkOutputs(runtime: Runtime, values: Values): Promise<void> {
  for (const flag of ["access-log", "stdout", "stderr"]) {
    const path = values[flag] as string | undefined;
    if (
      path === undefined || path === "-" || path === "inherit" ||
      path === "null"
    ) {
      continue;
    }
    try {
      await (await runtime.openAppend(path)).close();
    } catch (error) {
      throw new UsageError(
        COMMAND,
        `bad value for --${flag}: ${JSON.stringify(path)} (cannot open it: ${
          describe(error)
        })`,
      );
    }
  }
  const pid = values["pid"] as string | undefined;
  if (pid !== undefined) {
    const slash = pid.lastIndexOf("/");
    const folder = slash === -1 ? "." : pid.slice(0, slash) || "/";
    if (!exists(runtime, folder)) {
      throw new UsageError(
        COMMAND,
        `bad value for --pid: ${JSON.stringify(pid)} (no folder ${folder})`,
      );
    }
  }
}

/** `--certfile` and `--keyfile`, both or neither, and readable now. */
async function checkTls(
  runtime: Runtime,
  values: Values,
): Promise<{ certfile: string | null; keyfile: string | null }> {
  const certfile = (values["certfile"] as string | undefined) ?? null;
  const keyfile = (values["keyfile"] as string | undefined) ?? null;
  if ((certfile === null) !== (keyfile === null)) {
    throw new UsageError(
      COMMAND,
      certfile === null
        ? "--keyfile needs --certfile"
        : "--certfile needs --keyfile",
    );
  }
  const files: [string, string | null][] = [
    ["certfile", certfile],
    ["keyfile", keyfile],
  ];
  for (const [flag, path] of files) {
    if (path === null) continue;
    const text = await runtime.readText(path).catch(() => null);
    const wanted = flag === "certfile"
      ? /-----BEGIN CERTIFICATE-----/
      : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
    if (text === null || !wanted.test(text)) {
      throw new UsageError(
        COMMAND,
        `bad value for --${flag}: ${JSON.stringify(path)} (${
          text === null
            ? "cannot read it"
            : text.includes("-----BEGIN ")
            ? `not a PEM ${flag === "certfile" ? "certificate" : "private key"}`
            : "not a PEM file"
        })`,
      );
    }
  }
  return { certfile, keyfile };
}

/** What `--watch` watches: its paths, or the app module's folder; null without it. */
function watchPaths(
  runtime: Runtime,
  values: Values,
  module: string,
): string[] | null {
  if (values["watch"] === undefined) return null;
  const given = (values["watch"] as string).split(",").filter((path) => path);
  if (given.length === 0) {
    if (!module.startsWith("file:")) {
      throw new UsageError(
        COMMAND,
        "--watch needs paths for an app that is not a local file (--watch=src,lib)",
      );
    }
    return [folderOf(module) || "/"];
  }
  return given.map((path) => {
    if (!exists(runtime, path)) {
      throw new UsageError(
        COMMAND,
        `bad value for --watch: ${
          JSON.stringify(path)
        } (no such file or folder)`,
      );
    }
    return resolve(runtime.cwd(), path);
  });
}

/** The folder of module `url` (a file: URL), without a trailing slash. */
function folderOf(url: string): string {
  return decodeURI(new URL(".", url).pathname).replace(/\/$/, "");
}

/** Whether `path` is a folder. */
function isFolder(runtime: Runtime, path: string): boolean {
  try {
    runtime.readDir(path, "");
    return true;
  } catch {
    return false;
  }
}

/** Whether a file or folder is at `path`. */
function exists(runtime: Runtime, path: string): boolean {
  const full = resolve(runtime.cwd(), path);
  if (full === "/") return true;
  const slash = full.lastIndexOf("/");
  const name = full.slice(slash + 1);
  try {
    return runtime.readDir(full.slice(0, slash) || "/", name).includes(name);
  } catch {
    return false;
  }
}

/** The master's own lines: the pool's logger, its level and format. */
function cliLogger(runtime: Runtime, options: SupervisorOptions): Logger {
  const handler = stderrHandler(options.logLevel, options.logFormat);
  return createLogger(
    "workerpool.serve",
    (record) => handler.handle({ ...record, workerId: null, pid: runtime.pid }),
  );
}

/**
 * Says when the pool is up and when each reload ended (a plain line on a
 * terminal, else a log record), and starts `--watch` once it is up.
 */
function announce(
  runtime: Runtime,
  pool: Pool,
  log: Logger,
  url: string,
  supervisor: Supervisor,
  watch: string[] | null,
  ignored: string[],
): void {
  const terminal = runtime.stdoutIsTerminal();
  // Never console.log: a terminal paused with Ctrl-S would block the
  // master, its socket and its admin endpoint with it.
  const say = (line: string) =>
    terminal ? writeStderr(`${line}\n`, true) : log.info(line);
  let reloadStart = 0;
  pool.observe({
    reloadBegan: () => reloadStart = performance.now(),
    reloadEnded: (failure) =>
      failure === null
        ? say(
          `${plural(pool.size, "worker")} reloaded in ${
            Math.round(performance.now() - reloadStart)
          } ms`,
        )
        : log.error(`reload failed: ${failure}`),
  });
  let watcher: Watcher | null = null;
  pool.allReady.then(() => {
    // performance.now() counts from the process's start.
    say(
      `${plural(pool.size, "worker")} ready on ${url} in ${
        Math.round(performance.now())
      } ms`,
    );
    if (watch !== null && !pool.stopping) {
      watcher = watchFiles(runtime, watch, ignored, log, supervisor);
    }
  }, () => {}); // stopped first: the pool said why
  supervisor.onShutdown(() => watcher?.close());
}

/** Files whose change never reloads: editors' droppings, version control. */
const NOT_CODE =
  /(^|\/)(\.git|node_modules|\.[^/]*\.sw.|\.#[^/]*|4913)(\/|$)|~$/;
/** Files whose change reloads, in a watched folder: code and its settings. */
const CODE = /\.([cm]?[jt]sx?|json5?|jsonc|html|css|wasm|pem|key|crt|env)$/;
/** How long the files must stay quiet before a reload. */
const DEBOUNCE_MS = 200;

/** Watches `paths`; a change, once they are quiet, is a rolling reload. */
function watchFiles(
  runtime: Runtime,
  paths: string[],
  ignored: string[],
  log: Logger,
  supervisor: Supervisor,
): Watcher {
  const skip = new Set(ignored.map((path) => resolve(runtime.cwd(), path)));
  // A file is watched through its folder: an editor that saves by writing
  // a new file and renaming it over the old one replaces what a watch on
  // the file itself would follow.
  const folders = paths.filter((path) => isFolder(runtime, path));
  const files = new Set(paths.filter((path) => !folders.includes(path)));
  const roots = [
    ...new Set([
      ...folders,
      ...[...files].map((file) => file.slice(0, file.lastIndexOf("/")) || "/"),
    ]),
  ];
  const counts = (path: string) =>
    files.has(path) ||
    (CODE.test(path) &&
      folders.some((folder) => path.startsWith(`${folder}/`)));
  log.info(`watching ${paths.join(", ")} for changes`);
  let changed: string | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const reload = () => {
    const what = changed;
    changed = null;
    log.info(`${what} changed: reloading`);
    supervisor.reload().catch((error) =>
      log.debug(`--watch reload: ${describe(error)}`)
    );
  };
  try {
    return runtime.watch(roots, (path) => {
      path = resolve("/", path);
      // A file named on the command line counts; in a folder, code only
      // (a server.log written into the folder would reload for ever).
      if (NOT_CODE.test(path) || skip.has(path) || !counts(path)) return;
      changed = path.startsWith(`${runtime.cwd()}/`)
        ? path.slice(runtime.cwd().length + 1)
        : path;
      clearTimeout(timer);
      timer = setTimeout(reload, DEBOUNCE_MS);
    });
  } catch (error) {
    log.error(`Cannot watch ${paths.join(", ")}: ${describe(error)}`);
    return { close() {} };
  }
}

/** The path (or URL) of the workers' module, `_worker.ts` beside this one. */
function workerModule(): string {
  const url = new URL("./_worker.ts", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : url.href;
}
