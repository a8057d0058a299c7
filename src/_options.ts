/**
 * The supervisor's options, their defaults, and their validation: bad input
 * throws before anything is spawned.
 *
 * @module
 */
import { describeValue } from "./errors.ts";
import { LogLevels } from "./logging.ts";
import type {
  LevelName,
  LogHandler,
  OutputTarget,
  SupervisorOptions,
} from "./types.ts";
import { WorkerBase, type WorkerClass, type WorkerFactory } from "./worker.ts";

/**
 * The most workers a pool may have: each is a process of ~30 MB; past this
 * a typo (`workers: 1e9`) would spin a core and eat the machine's memory.
 */
export const MAX_WORKERS = 1024;

/** Options with defaults applied and checked. */
export interface ResolvedOptions {
  ids: number[];
  /**
   * The module the workers run instead of this script (the `workerpool`
   * command's own worker module), or null. Not a public option.
   */
  script: { module: string; flags: string[]; args: string[] } | null;
  checkInterval: number;
  workerTimeout: number;
  readyTimeout: number;
  gracefulTimeout: number;
  minUptime: number;
  maxRestartDelay: number;
  maxBootErrors: number;
  stdout: OutputTarget;
  stderr: OutputTarget;
  logger: LogHandler | undefined;
  logLevel: LevelName;
  reloadConcurrency: number;
  /** 0: never. */
  maxRequests: number;
  maxRequestsJitter: number;
  /** Bytes; 0: never. */
  maxMemory: number;
  /** 0: never. */
  maxAge: number;
  takeover: boolean;
  /** null: no admin endpoint. */
  admin: { port: number; hostname: string } | null;
  shutdownDelay: number;
  minReady: number;
  logFormat: "text" | "json";
}

const ACTION = "Cannot create supervisor";
const KNOWN_OPTIONS = [
  "workers",
  "checkInterval",
  "workerTimeout",
  "readyTimeout",
  "gracefulTimeout",
  "minUptime",
  "maxRestartDelay",
  "maxBootErrors",
  "stdout",
  "stderr",
  "logger",
  "logLevel",
  "reloadConcurrency",
  "maxRequests",
  "maxRequestsJitter",
  "maxMemory",
  "maxAge",
  "takeover",
  "admin",
  "shutdownDelay",
  "minReady",
  "logFormat",
];

/** Throws a TypeError naming the first key of `options` not in `known`. */
export function checkKeys(
  action: string,
  options: object,
  known: readonly string[],
): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(
        `${action}: unknown option ${JSON.stringify(key)} (known: ${
          known.join(", ")
        })`,
      );
    }
  }
}

/** Turns the first argument of `new Supervisor()` into a factory. */
export function toFactory(worker: WorkerClass | WorkerFactory): WorkerFactory {
  if (typeof worker !== "function") {
    throw new TypeError(
      `${ACTION}: expected a WorkerBase subclass or a factory, got ${
        describeValue(worker)
      }`,
    );
  }
  if (worker === (WorkerBase as unknown)) {
    throw new TypeError(`${ACTION}: WorkerBase is abstract, pass a subclass`);
  }
  if (worker.prototype instanceof WorkerBase) {
    const Class = worker as WorkerClass;
    return (id) => new Class(id);
  }
  if (/^class\b/.test(Function.prototype.toString.call(worker))) {
    throw new TypeError(
      `${ACTION}: class ${worker.name} does not extend WorkerBase`,
    );
  }
  const factory = worker as WorkerFactory;
  return (id) => {
    const created: unknown = factory(id);
    if (!(created instanceof WorkerBase)) {
      throw new TypeError(
        `Cannot create worker ${id}: the factory returned ${
          describeValue(created)
        }, not a WorkerBase`,
      );
    }
    return created;
  };
}

/** Applies defaults and validates; throws TypeError or RangeError. */
export function resolveOptions(options: SupervisorOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `${ACTION}: options must be an object, got ${describeValue(options)}`,
    );
  }
  checkKeys(ACTION, options, KNOWN_OPTIONS);
  const resolved: ResolvedOptions = {
    ids: resolveIds(options.workers ?? 2),
    script: null,
    checkInterval: time("checkInterval", options.checkInterval, 1000, 1),
    // Heartbeats go every workerTimeout / 5: below 100 ms they would be
    // too close together for a busy event loop to keep up.
    workerTimeout: time("workerTimeout", options.workerTimeout, 15000, 100),
    readyTimeout: time("readyTimeout", options.readyTimeout, 60000, 1),
    gracefulTimeout: time("gracefulTimeout", options.gracefulTimeout, 30000),
    minUptime: time("minUptime", options.minUptime, 1000),
    maxRestartDelay: time("maxRestartDelay", options.maxRestartDelay, 10000),
    maxBootErrors: count("maxBootErrors", options.maxBootErrors, 5),
    stdout: output("stdout", options.stdout),
    stderr: output("stderr", options.stderr),
    logger: options.logger,
    logLevel: options.logLevel ?? "INFO",
    reloadConcurrency: count(
      "reloadConcurrency",
      options.reloadConcurrency,
      1,
      MAX_WORKERS,
    ),
    maxRequests: limit("maxRequests", options.maxRequests),
    maxRequestsJitter: limit("maxRequestsJitter", options.maxRequestsJitter),
    maxMemory: limit("maxMemory", options.maxMemory),
    maxAge: time("maxAge", options.maxAge, 0),
    takeover: options.takeover ?? false,
    admin: admin(options.admin),
    shutdownDelay: time("shutdownDelay", options.shutdownDelay, 0),
    minReady: count("minReady", options.minReady, 1, MAX_WORKERS),
    logFormat: options.logFormat ?? "text",
  };
  if (resolved.logFormat !== "text" && resolved.logFormat !== "json") {
    throw new RangeError(
      `${ACTION}: logFormat must be "text" or "json", got ${
        describeValue(resolved.logFormat)
      }`,
    );
  }
  if (typeof resolved.takeover !== "boolean") {
    throw new TypeError(
      `${ACTION}: takeover must be a boolean, got ${
        describeValue(resolved.takeover)
      }`,
    );
  }
  if (
    resolved.logger !== undefined &&
    typeof resolved.logger?.handle !== "function"
  ) {
    throw new TypeError(
      `${ACTION}: logger must have a handle(record) method, got ${
        describeValue(resolved.logger)
      }`,
    );
  }
  if (!Object.hasOwn(LogLevels, resolved.logLevel)) {
    throw new RangeError(
      `${ACTION}: logLevel must be one of ${
        Object.keys(LogLevels).join(", ")
      }, got ${describeValue(resolved.logLevel)}`,
    );
  }
  return resolved;
}

/** Checks one worker id. */
export function checkId(id: unknown, action: string): number {
  if (typeof id !== "number") {
    throw new TypeError(
      `${action}: worker id must be a number, got ${describeValue(id)}`,
    );
  }
  if (!Number.isSafeInteger(id) || id < 0) {
    throw new RangeError(
      `${action}: worker id must be a non-negative integer, got ${id}`,
    );
  }
  return id;
}

function resolveIds(workers: number | Iterable<number>): number[] {
  if (typeof workers === "number") {
    if (!Number.isSafeInteger(workers) || workers < 1) {
      throw new RangeError(
        `${ACTION}: workers must be a positive integer, got ${workers}`,
      );
    }
    if (workers > MAX_WORKERS) {
      throw new RangeError(
        `${ACTION}: workers must be at most ${MAX_WORKERS}, got ${workers}`,
      );
    }
    return Array.from({ length: workers }, (_, i) => i);
  }
  if (
    typeof workers !== "object" || workers === null ||
    typeof (workers as Iterable<number>)[Symbol.iterator] !== "function"
  ) {
    throw new TypeError(
      `${ACTION}: workers must be a count or an iterable of ids, got ${
        describeValue(workers)
      }`,
    );
  }
  const ids: number[] = [];
  for (const id of workers) {
    // Stops an endless iterable too.
    if (ids.length === MAX_WORKERS) {
      throw new RangeError(
        `${ACTION}: workers must name at most ${MAX_WORKERS} ids`,
      );
    }
    checkId(id, ACTION);
    if (ids.includes(id)) {
      throw new RangeError(`${ACTION}: duplicate worker id ${id}`);
    }
    ids.push(id);
  }
  if (ids.length === 0) {
    throw new RangeError(`${ACTION}: workers must name at least one id`);
  }
  return ids;
}

function time(name: string, value: unknown, fallback: number, min = 0) {
  if (value === undefined) return fallback;
  if (typeof value !== "number") {
    throw new TypeError(
      `${ACTION}: ${name} must be a number of milliseconds, got ${
        describeValue(value)
      }`,
    );
  }
  if (!Number.isFinite(value) || value < min || value > 2 ** 31 - 1) {
    throw new RangeError(
      `${ACTION}: ${name} must be a finite number of milliseconds from ${min} to ${
        2 ** 31 - 1
      }, got ${value}`,
    );
  }
  return value;
}

function count(
  name: string,
  value: unknown,
  fallback: number,
  max = Number.MAX_SAFE_INTEGER,
) {
  if (value === undefined) return fallback;
  if (
    typeof value !== "number" || !Number.isSafeInteger(value) || value < 1 ||
    value > max
  ) {
    const range = max === Number.MAX_SAFE_INTEGER
      ? "a positive integer"
      : `an integer from 1 to ${max}`;
    throw new RangeError(
      `${ACTION}: ${name} must be ${range}, got ${describeValue(value)}`,
    );
  }
  return value;
}

/** A count or a size where 0 (the default) means no limit. */
function limit(name: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `${ACTION}: ${name} must be a non-negative integer (0: no limit), got ${
        describeValue(value)
      }`,
    );
  }
  return value;
}

function admin(value: unknown): ResolvedOptions["admin"] {
  if (value === undefined) return null;
  if (typeof value !== "object" || value === null) {
    throw new TypeError(
      `${ACTION}: admin must be an object { port, hostname }, got ${
        describeValue(value)
      }`,
    );
  }
  checkKeys(`${ACTION}: admin`, value, ["port", "hostname"]);
  const { port, hostname = "127.0.0.1" } = value as {
    port?: unknown;
    hostname?: unknown;
  };
  if (typeof port !== "number") {
    throw new TypeError(
      `${ACTION}: admin.port must be a number, got ${describeValue(port)}`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `${ACTION}: admin.port must be an integer from 0 to 65535, got ${
        describeValue(port)
      }`,
    );
  }
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError(
      `${ACTION}: admin.hostname must be a non-empty address, got ${
        describeValue(hostname)
      }`,
    );
  }
  return { port, hostname };
}

/** Words that name a mode, not a file: a typo of "inherit" or "null". */
const MODE_WORDS = /^(inherit|null|pipe|piped|ignore|none|stdout|stderr)$/i;

function output(name: string, value: unknown): OutputTarget {
  if (value === undefined) return "inherit";
  if (value instanceof WritableStream) return value;
  if (value === "inherit" || value === "null") return value;
  if (typeof value === "string" && MODE_WORDS.test(value.trim())) {
    throw new RangeError(
      `${ACTION}: ${name} ${
        JSON.stringify(value)
      } is not a mode ("inherit" or "null"); for a file of that name, say "./${value.trim()}"`,
    );
  }
  if (typeof value === "string" && value !== "") return value;
  throw new TypeError(
    `${ACTION}: ${name} must be "inherit", "null", a file path or a WritableStream, got ${
      describeValue(value)
    }`,
  );
}
