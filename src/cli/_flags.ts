/**
 * The command line of `workerpool`: each command's flags in one table (the
 * parser, the checks and the `--help` text all read it), the units
 * durations and sizes take, and usage errors (exit code 2).
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { SupervisorOptions } from "../types.ts";

/** A bad command line: said in one line with a hint; exit code 2. */
export class UsageError extends Error {
  readonly command: string;
  constructor(command: string, message: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

/** How a flag's value is read. */
type Kind =
  | "boolean"
  | "count" // a non-negative integer
  | "duration" // ms, s, m, h; a plain number is seconds
  | "size" // bytes, with K, M, G
  | "text";

/** One flag of a command. */
export interface Flag {
  name: string;
  short?: string;
  kind: Kind;
  /** The value's placeholder in the help text (none for a boolean). */
  value?: string;
  help: string;
  /** The default, as the help text shows it. */
  shown?: string;
  /** The library option the value sets as it is (`Supervisor` options). */
  option?: keyof SupervisorOptions;
}

const PID: Flag = {
  name: "pid",
  short: "p",
  kind: "text",
  value: "FILE",
  help: "the pidfile of the pool's master",
};
const HELP: Flag = {
  name: "help",
  short: "h",
  kind: "boolean",
  help: "show this help",
};

/** The flags of `workerpool serve`. */
export const SERVE_FLAGS: readonly Flag[] = [
  {
    name: "workers",
    option: "workers",
    short: "w",
    kind: "count",
    value: "N",
    help: "worker processes",
    shown: "$WEB_CONCURRENCY, else the number of CPUs",
  },
  {
    name: "bind",
    short: "b",
    kind: "text",
    value: "HOST:PORT",
    help: "where to serve: [::1]:8080 for IPv6, :PORT for 0.0.0.0:PORT",
    shown: "127.0.0.1:8080",
  },
  {
    name: "host",
    kind: "text",
    value: "HOST",
    help: "the host part of --bind",
  },
  {
    name: "port",
    kind: "count",
    value: "PORT",
    help: "the port part of --bind",
  },
  {
    name: "certfile",
    kind: "text",
    value: "FILE",
    help: "serve HTTPS with this PEM certificate (read again on each reload)",
  },
  {
    name: "keyfile",
    kind: "text",
    value: "FILE",
    help: "the PEM private key of --certfile",
  },
  {
    name: "timeout",
    option: "workerTimeout",
    kind: "duration",
    value: "DURATION",
    help: "kill and replace a worker silent this long (a hung event loop)",
    shown: "15s",
  },
  {
    name: "graceful-timeout",
    option: "gracefulTimeout",
    kind: "duration",
    value: "DURATION",
    help: "how long a stopping worker may drain before it is killed",
    shown: "30s",
  },
  {
    name: "ready-timeout",
    option: "readyTimeout",
    kind: "duration",
    value: "DURATION",
    help: "how long a new worker may take to get ready",
    shown: "60s",
  },
  {
    name: "check-interval",
    option: "checkInterval",
    kind: "duration",
    value: "DURATION",
    help: "how often the master checks its workers",
    shown: "1s",
  },
  {
    name: "min-uptime",
    option: "minUptime",
    kind: "duration",
    value: "DURATION",
    help: "a worker that dies younger is restarted with backoff",
    shown: "1s",
  },
  {
    name: "max-restart-delay",
    option: "maxRestartDelay",
    kind: "duration",
    value: "DURATION",
    help: "the longest backoff before a restart",
    shown: "10s",
  },
  {
    name: "max-boot-errors",
    option: "maxBootErrors",
    kind: "count",
    value: "N",
    help: "halt the pool after this many boot errors in a row",
    shown: "5",
  },
  {
    name: "reload-concurrency",
    option: "reloadConcurrency",
    kind: "count",
    value: "N",
    help: "workers replaced at a time by a rolling reload",
    shown: "1",
  },
  {
    name: "max-requests",
    option: "maxRequests",
    kind: "count",
    value: "N",
    help: "replace a worker after this many requests",
    shown: "never",
  },
  {
    name: "max-requests-jitter",
    option: "maxRequestsJitter",
    kind: "count",
    value: "N",
    help: "up to this many more, drawn per worker",
    shown: "0",
  },
  {
    name: "max-memory",
    option: "maxMemory",
    kind: "size",
    value: "SIZE",
    help: "replace a worker whose RSS grows past this (512M, 1G)",
    shown: "never",
  },
  {
    name: "max-age",
    option: "maxAge",
    kind: "duration",
    value: "DURATION",
    help: "replace a worker after this long",
    shown: "never",
  },
  {
    name: "admin",
    kind: "text",
    value: "HOST:PORT",
    help: "serve /metrics, /healthz, /readyz and /status here",
    shown: "off",
  },
  {
    name: "shutdown-delay",
    option: "shutdownDelay",
    kind: "duration",
    value: "DURATION",
    help: "on SIGTERM, keep serving (with /readyz 503) this long first",
    shown: "0",
  },
  {
    name: "min-ready",
    option: "minReady",
    kind: "count",
    value: "N",
    help: "ready workers /readyz needs",
    shown: "1",
  },
  PID,
  {
    name: "daemon",
    short: "D",
    kind: "boolean",
    help: "detach from the terminal once every worker is ready",
  },
  {
    name: "log-level",
    option: "logLevel",
    kind: "text",
    value: "LEVEL",
    help: "DEBUG, INFO, WARN, ERROR or CRITICAL",
    shown: "INFO",
  },
  {
    name: "log-format",
    option: "logFormat",
    kind: "text",
    value: "text|json",
    help: "the master's log lines",
    shown: "text",
  },
  {
    name: "access-log",
    kind: "text",
    value: "FILE|-",
    help:
      "one line per request (time, worker, method, path, status, bytes, ms); - for stdout",
    shown: "off",
  },
  {
    name: "stdout",
    option: "stdout",
    kind: "text",
    value: "inherit|null|FILE",
    help: "where the workers' stdout goes",
    shown: "inherit",
  },
  {
    name: "stderr",
    option: "stderr",
    kind: "text",
    value: "inherit|null|FILE",
    help: "where the workers' stderr goes",
    shown: "inherit",
  },
  {
    name: "takeover",
    kind: "boolean",
    help: "take the port and pidfile over from a running pool once ready",
  },
  {
    name: "watch",
    kind: "text",
    value: "PATHS",
    help:
      "a rolling reload when a file changes, once they are quiet for 200 ms; alone it watches the app's folder, =a,b those paths",
  },
  {
    name: "check",
    kind: "boolean",
    help: "load the app and check its default export and the flags, then exit",
  },
  HELP,
];

/** How long a command waits for the master. */
const WAIT: Flag = {
  name: "timeout",
  kind: "duration",
  value: "DURATION",
  help: "give up waiting after this long (exit 1)",
  shown: "no limit",
};

/** The flags of `workerpool status`. */
export const STATUS_FLAGS: readonly Flag[] = [
  PID,
  WAIT,
  {
    name: "json",
    kind: "boolean",
    help: "the pool's status as JSON (what /status says)",
  },
  HELP,
];

/** The flags of `workerpool reload`, `scale` and `stop`. */
export const CONTROL_FLAGS: readonly Flag[] = [PID, WAIT, HELP];

/** Parsed flags, by name: strings, numbers (ms, bytes, counts), booleans. */
export type Values = Record<string, string | number | boolean | undefined>;

/**
 * Parses `args` against `flags`: the values, and the positional arguments.
 * Throws a {@linkcode UsageError} naming a flag that is unknown, lacks its
 * value or has a bad one.
 */
export function parseFlags(
  command: string,
  flags: readonly Flag[],
  args: string[],
): { values: Values; positionals: string[] } {
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string }
  > = {};
  for (const flag of flags) {
    options[flag.name] = {
      type: flag.kind === "boolean" ? "boolean" : "string",
      ...(flag.short ? { short: flag.short } : {}),
    };
  }
  const prepared: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const flag = flags.find((f) =>
      arg === `--${f.name}` || arg === `-${f.short}`
    );
    if (arg === "--watch") {
      prepared.push("--watch="); // an optional value: alone, it is empty
    } else if (
      flag && flag.kind !== "boolean" && /^-\d/.test(args[i + 1] ?? "")
    ) {
      // `--timeout -1`: a (bad) value, not a flag.
      prepared.push(`--${flag.name}=${args[++i]}`);
    } else prepared.push(arg);
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: prepared,
      options,
      allowPositionals: true,
      strict: true,
      tokens: true,
    });
  } catch (error) {
    throw new UsageError(command, explain(error, flags));
  }
  // A flag given twice is a mistake here, not "the last one wins".
  const seen = new Set<string>();
  for (const token of parsed.tokens ?? []) {
    if (token.kind !== "option") continue;
    const flag = flags.find((f) => f.name === token.name);
    if (flag?.kind === "boolean") continue;
    if (seen.has(token.name)) {
      throw new UsageError(
        command,
        `--${token.name} given twice${
          token.name === "bind" ? ": workerpool serves one address" : ""
        }`,
      );
    }
    seen.add(token.name);
  }
  const values: Values = {};
  for (const flag of flags) {
    const raw = (parsed.values as Record<string, string | boolean | undefined>)[
      flag.name
    ];
    if (raw === undefined) continue;
    values[flag.name] = typeof raw === "boolean"
      ? raw
      : readValue(command, flag, raw);
  }
  return { values, positionals: parsed.positionals };
}

/** node:util's error, said as one line naming the flag. */
function explain(error: unknown, flags: readonly Flag[]): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const named = /'(-[^' ]+)/.exec(message)?.[1] ?? "";
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const name = named.replace(/^-+/, "").split("=")[0] ?? "";
    const alias = ALIASES[name];
    const near = alias !== undefined && flags.some((f) => f.name === alias)
      ? alias
      : nearest(name, flags);
    return `unknown option ${named}${near ? ` (did you mean --${near}?)` : ""}`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const flag = flags.find((f) =>
      new RegExp(`--${f.name}(?![\\w-])`).test(message)
    );
    if (flag?.kind === "boolean") return `option --${flag.name} takes no value`;
    if (flag !== undefined) {
      return `option --${flag.name} needs a value (${flag.value})`;
    }
  }
  return message.split(". ")[0] ?? message;
}

/** What users of gunicorn, uvicorn and the library type, and mean. */
const ALIASES: Record<string, string> = {
  reload: "watch",
  pidfile: "pid",
  "access-logfile": "access-log",
  "error-logfile": "stderr",
  "worker-timeout": "timeout",
  "ssl-certfile": "certfile",
  "ssl-keyfile": "keyfile",
  "cert-file": "certfile",
  "key-file": "keyfile",
  "log-file": "stderr",
};

/** The flag whose name is closest to `name` (two edits at most), if any. */
function nearest(name: string, flags: readonly Flag[]): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const flag of flags) {
    const distance = editDistance(name, flag.name);
    if (
      distance < bestDistance ||
      (flag.name.startsWith(name) && name.length >= 3) ||
      (name.startsWith(flag.name) && flag.name.length >= 3)
    ) {
      best = flag.name;
      bestDistance = Math.min(distance, bestDistance);
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

function readValue(command: string, flag: Flag, raw: string): string | number {
  const bad = (what: string) =>
    new UsageError(
      command,
      `bad value for --${flag.name}: ${JSON.stringify(raw)} (${what})`,
    );
  switch (flag.kind) {
    case "count": {
      if (!/^\d+$/.test(raw)) throw bad("a whole number");
      return Number(raw);
    }
    case "duration": {
      const ms = parseDuration(raw);
      if (ms === null) {
        throw bad("a duration: 500ms, 30s, 5m, 1h; a plain number is seconds");
      }
      return ms;
    }
    case "size": {
      const bytes = parseSize(raw);
      if (bytes === null) throw bad("a size: 512M, 1G, 300K, or bytes");
      return bytes;
    }
    default:
      return raw;
  }
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Milliseconds in a duration: `500ms`, `30s`, `1.5s`, `5m`, `1h`; a plain
 * number is seconds (as in gunicorn). Null when it is not one.
 */
export function parseDuration(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (match === null) return null;
  return Math.round(Number(match[1]) * DURATION_UNITS[match[2] ?? "s"]!);
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
};

/** Bytes in a size: `512M`, `1G`, `300K` (1024-based; KB, MiB… too), or bytes. */
export function parseSize(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?$/i.exec(text.trim());
  if (match === null) return null;
  return Math.round(
    Number(match[1]) * SIZE_UNITS[(match[2] ?? "").toUpperCase()]!,
  );
}

/**
 * A `HOST:PORT` (`[::1]:8080`, `:8080` for 0.0.0.0, or a port
 * alone) as its parts; throws a {@linkcode UsageError} naming `flag`.
 */
export function parseAddress(
  command: string,
  flag: string,
  text: string,
  defaultHost: string,
): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d+)$/.exec(text) ??
    /^()()(\d+)$/.exec(text);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || !(port >= 1 && port <= 65535)) {
    throw new UsageError(
      command,
      `bad value for --${flag}: ${
        JSON.stringify(text)
      } (HOST:PORT with a port from 1 to 65535)`,
    );
  }
  const host = match[1] ?? match[2];
  const hostname = host === undefined || (host === "" && !text.startsWith(":"))
    ? defaultHost
    : host === ""
    ? "0.0.0.0"
    : host;
  return { hostname, port };
}

/** The width help texts are wrapped to. */
const LINE = 80;

/**
 * `text` in lines of at most `width` characters (a longer word stays
 * whole), and `whole` after it, never split.
 */
function wrap(text: string, width: number, whole?: string): string[] {
  const lines: string[] = [];
  let line = "";
  const words = text.split(" ");
  if (whole) words.push(whole); // kept on one line
  for (const word of words) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  return [...lines, line];
}

/** The `--help` text of a command. */
export function helpText(
  usage: string,
  summary: string,
  flags: readonly Flag[],
  examples: string[],
): string {
  const left = (flag: Flag) =>
    `${flag.short ? `-${flag.short}, ` : "    "}--${flag.name}${
      flag.name === "watch" ? "[=" : flag.value ? " " : ""
    }${flag.value ?? ""}${flag.name === "watch" ? "]" : ""}`;
  const width = Math.max(...flags.map((flag) => left(flag).length)) + 4;
  const lines = flags.flatMap((flag) =>
    wrap(flag.help, LINE - width, flag.shown && `[default: ${flag.shown}]`).map(
      (text, i) =>
        i === 0
          ? `  ${left(flag).padEnd(width - 2)}${text}`
          : " ".repeat(width) + text,
    )
  );
  return [
    `Usage: ${usage}`,
    "",
    ...summary.split("\n").flatMap((line) => wrap(line, LINE)),
    "",
    "Options:",
    ...lines,
    "",
    ...(flags.some((f) => f.kind === "duration")
      ? [
        flags.some((f) => f.kind === "size")
          ? "Durations take ms, s, m or h (a plain number is seconds); sizes K, M or G."
          : "Durations take ms, s, m or h (a plain number is seconds).",
        "",
      ]
      : []),
    "Examples:",
    ...examples.map((example) => `  ${example}`),
    "",
  ].join("\n");
}
