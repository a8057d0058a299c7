/**
 * Log records shaped like `@std/log`'s `LogRecord`, the `Logger` workers log
 * through, and the default handler that prints records on stderr.
 *
 * @module
 */
import { setDropNotice, writeStderr } from "./_stderr.ts";
import { loadedRuntime } from "./runtime/mod.ts";
import type {
  LevelName,
  Logger,
  LogHandler,
  LogRecord,
  PoolLogRecord,
} from "./types.ts";

/** Numeric levels, the same as `@std/log`'s `LogLevels`. */
export const LogLevels: {
  /** Everything. */
  readonly NOTSET: 0;
  /** Diagnostics. */
  readonly DEBUG: 10;
  /** Normal events. */
  readonly INFO: 20;
  /** Something unexpected that the pool survives. */
  readonly WARN: 30;
  /** A failure of one operation. */
  readonly ERROR: 40;
  /** A failure that stops the pool. */
  readonly CRITICAL: 50;
} = {
  NOTSET: 0,
  DEBUG: 10,
  INFO: 20,
  WARN: 30,
  ERROR: 40,
  CRITICAL: 50,
};

/** Creates a {@linkcode Logger} that hands each record to `emit`. */
export function createLogger(
  loggerName: string,
  emit: (record: LogRecord) => void,
): Logger {
  const at =
    (levelName: Exclude<LevelName, "NOTSET">) =>
    (msg: string, ...args: unknown[]) =>
      emit({
        msg: typeof msg === "string" ? msg : formatArg(msg),
        args,
        datetime: new Date(),
        level: LogLevels[levelName],
        levelName,
        loggerName,
      });
  return {
    debug: at("DEBUG"),
    info: at("INFO"),
    warn: at("WARN"),
    error: at("ERROR"),
    critical: at("CRITICAL"),
  };
}

/**
 * The default line for a record:
 * `<ISO time> <LEVEL> [worker <id> pid <pid>] <logger>: <msg> <args>`.
 */
export function formatRecord(record: PoolLogRecord): string {
  const who = record.workerId === null
    ? `master pid ${record.pid}`
    : `worker ${record.workerId} pid ${record.pid}`;
  const args = record.args.map((arg) => {
    const text = formatArg(arg);
    return text.startsWith("\n") ? text : ` ${text}`;
  }).join("");
  return `${
    isoTime(record.datetime)
  } ${record.levelName} [${who}] ${record.loggerName}: ${record.msg}${args}`;
}

/**
 * A record as one line of JSON, for log collectors: `time` (ISO 8601),
 * `level`, `logger`, `worker` (null for the master), `pid`, `message`,
 * `args` (errors as `{ name, message, stack }`).
 */
export function formatJsonRecord(record: PoolLogRecord): string {
  return JSON.stringify({
    time: isoTime(record.datetime),
    level: record.levelName,
    logger: record.loggerName,
    worker: record.workerId,
    pid: record.pid,
    message: record.msg,
    args: toJsonSafe(record.args),
  });
}

/**
 * `Date.prototype.toISOString` by hand: Deno's own costs a process about
 * 1.5 MB of resident memory on first use, the UTC getters nothing.
 */
function isoTime(date: Date): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${
    pad(date.getUTCDate())
  }T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${
    pad(date.getUTCSeconds())
  }.${pad(date.getUTCMilliseconds(), 3)}Z`;
}

/**
 * A handler printing records on stderr from `level` up, without ever
 * blocking the event loop: {@linkcode formatRecord} lines, or with
 * `"json"` {@linkcode formatJsonRecord} lines.
 *
 * @param level The lowest level printed; `"INFO"` when left out.
 * @param format `"text"` (the default) or `"json"`.
 */
export function stderrHandler(
  level: LevelName = "INFO",
  format: "text" | "json" = "text",
): LogHandler {
  const threshold = LogLevels[level];
  const line = format === "json" ? formatJsonRecord : formatRecord;
  if (format === "json") {
    // Even the count of lines a stalled stderr cost is a JSON record.
    setDropNotice((count) =>
      formatJsonRecord({
        msg: `${count} lines dropped: stderr did not take them`,
        args: [],
        datetime: new Date(),
        level: LogLevels.WARN,
        levelName: "WARN",
        loggerName: "workerpool.stderr",
        workerId: null,
        pid: loadedRuntime()?.pid ?? 0,
      }) + "\n"
    );
  }
  return {
    handle(record) {
      // Never blocks: a stalled stderr must not stall the master's loop.
      if (record.level >= threshold) {
        writeStderr(line(record) + "\n", record.level >= LogLevels.WARN);
      }
    },
  };
}

/** One log argument as text: strings as they are, errors with their stack. */
export function formatArg(arg: unknown): string {
  if (typeof arg === "string") return arg;
  if (arg instanceof Error) return arg.stack ?? `${arg.name}: ${arg.message}`;
  try {
    return JSON.stringify(arg) ?? String(arg);
  } catch {
    // Circular or BigInt: JSON has no form for it.
    return String(arg);
  }
}

/**
 * Where `WorkerBase` loggers and `serve()` send records in this process:
 * set in a worker process to forward them to its master; null elsewhere.
 */
let processSink: ((record: LogRecord) => void) | null = null;

/** Sends this process's worker records to `sink` (the worker process does). */
export function setProcessSink(sink: ((record: LogRecord) => void) | null) {
  processSink = sink;
}

/** The process's sink, if a master receives its records. */
export function getProcessSink(): ((record: LogRecord) => void) | null {
  return processSink;
}

/** Turns log arguments into values that survive JSON, for forwarding. */
export function toJsonSafe(args: unknown[]): unknown[] {
  return args.map((arg) => {
    if (arg instanceof Error) {
      return { name: arg.name, message: arg.message, stack: arg.stack };
    }
    try {
      JSON.stringify(arg);
      return arg;
    } catch {
      return String(arg);
    }
  });
}
