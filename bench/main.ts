/**
 * The benchmark suite: every figure for Deno and Bun, each next to a
 * baseline measured in the same run. Prints a table and writes
 * bench/results.md and bench/results.svg.
 *
 *     deno task bench [--runs 5] [--seconds 4] [--idle 20] [--only name]
 *     bun bench/main.ts [same flags]
 *
 * With `--only`, the figures chosen get a section of their own in
 * results.md (and a chart, results-<names>.svg), replacing an earlier run
 * of the same ones; the full table stays as it is.
 *
 * `heartbeat` compares with another checkout, the code before the heartbeats
 * carried usage, and runs only when given one: `--before DIR`.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BIN, type RuntimeName, stopAll } from "./_lib.ts";
import {
  type BenchOptions,
  crashLoop,
  type Figure,
  idle,
  killNine,
  logs,
  masterKill,
  readiness,
  row,
  sigstop,
  sigterm,
  throughput,
} from "./figures.ts";
import { chart } from "./_chart.ts";
import { reload } from "./reload.ts";
import { heartbeat, HEARTBEAT_BASELINE } from "./heartbeat.ts";
import { cliServe } from "./cli.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    seconds: { type: "string", default: "4" },
    idle: { type: "string", default: "20" },
    logs: { type: "string", default: "100000" },
    only: { type: "string", multiple: true },
    runtime: { type: "string", multiple: true },
    "no-write": { type: "boolean", default: false },
    before: { type: "string" },
  },
});
const options: BenchOptions = {
  runs: positive("runs", values.runs),
  seconds: positive("seconds", values.seconds),
  idleSeconds: positive("idle", values.idle),
  logCount: positive("logs", values.logs),
};
const runtimes = (values.runtime ?? ["deno", "bun"]) as RuntimeName[];
for (const runtime of runtimes) {
  if (runtime !== "deno" && runtime !== "bun") {
    throw new RangeError(`Cannot bench: unknown runtime "${runtime}"`);
  }
}

const suite: Record<string, (r: RuntimeName) => Promise<Figure | Figure[]>> = {
  throughput: async (r) => [
    ...await throughput(r, 1, options),
    ...await throughput(r, 2, options),
  ],
  readiness: (r) => readiness(r, options),
  kill: (r) => killNine(r, options),
  sigstop: (r) => sigstop(r, options),
  sigterm: (r) => sigterm(r, options),
  idle: (r) => idle(r, options),
  logs: (r) => logs(r, options),
  orphans: (r) => masterKill(r, options),
  crash: (r) => crashLoop(r, options),
  reload: (r) => reload(r, options),
  cli: (r) => cliServe(r, options),
};
/** Benches left out for want of an option: what to say instead. */
const skipped: Record<string, string> = {};
const before = values.before;
if (before === undefined) skipped.heartbeat = HEARTBEAT_BASELINE;
else suite.heartbeat = (r) => heartbeat(r, before, options);
for (const name of values.only ?? []) {
  if (!(name in suite) && !(name in skipped)) {
    throw new RangeError(
      `Cannot bench: unknown figure "${name}" (one of ${
        [...Object.keys(suite), ...Object.keys(skipped)].join(", ")
      })`,
    );
  }
}

ensureWrk();
const figures: Figure[] = [];
const chosen = (name: string) => !values.only || values.only.includes(name);
for (const [name, why] of Object.entries(skipped)) {
  if (chosen(name)) console.error(why);
}
const selected = Object.entries(suite).filter(([name]) => chosen(name));
// Nothing left to run: results.md is not overwritten with an empty table.
if (selected.length === 0) process.exit(1);
try {
  for (const [name, measure] of selected) {
    for (const runtime of runtimes) {
      console.error(`… ${name} on ${runtime}`);
      figures.push(...[await measure(runtime)].flat());
    }
  }
} finally {
  await stopAll();
}

const header = [
  "figure",
  "runtime",
  "median (min–max)",
  "baseline median (min–max)",
  "score",
  "target",
  "verdict",
  "note",
];
const table = [header, header.map(() => "---"), ...figures.map(row)]
  .map((cells) => `| ${cells.join(" | ")} |`).join("\n");
console.log(table);

if (!values["no-write"] && values.only) {
  // A partial run writes its own section (and chart) into results.md,
  // replacing an earlier run of the same figures, leaving the rest as it is.
  const name = values.only.join("-");
  const svg = new URL(`./results-${name}.svg`, import.meta.url);
  writeFileSync(svg, chart(figures));
  spawnSync(BIN.deno, ["fmt", "--quiet", fileURLToPath(svg)]);
  const path = new URL("./results.md", import.meta.url);
  const existing = readText(path);
  const heading = `\n## Figures run on their own: ${values.only.join(", ")}\n`;
  const section = [
    heading,
    `- date: ${
      new Date().toISOString()
    }; runs: ${options.runs}, wrk ${options.seconds} s`,
    `- command: \`${process.argv.slice(1).join(" ")}\``,
    "",
    `![chart](results-${name}.svg)`,
    "",
    table,
    "",
  ].join("\n");
  const start = existing.indexOf(heading);
  const end = start === -1 ? -1 : existing.indexOf("\n## ", start + 1);
  const analysis = existing.indexOf("\n## Analysis");
  const updated = start !== -1
    ? existing.slice(0, start) + section +
      (end === -1 ? "" : existing.slice(end))
    : analysis !== -1
    ? existing.slice(0, analysis) + section + existing.slice(analysis)
    : existing + section;
  writeFileSync(path, updated);
  console.error(
    `wrote a section of bench/results.md and ${fileURLToPath(svg)}`,
  );
} else if (!values["no-write"]) {
  const versions = runtimes.map((r) =>
    `${r} ${spawnSync(BIN[r], ["--version"]).stdout.toString().split("\n")[0]}`
  );
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, ${
    (totalmem() / 2 ** 30).toFixed(0)
  } GiB, ${
    readFileSync("/proc/version", "utf8").split(" ").slice(0, 3).join(" ")
  }`;
  const wrk = spawnSync("wrk", ["--version"]);
  const results = [
    "# workerpool benchmark results",
    "",
    `- date: ${new Date().toISOString()}`,
    `- machine: ${machine}`,
    `- runtimes: ${versions.join("; ")}`,
    `- load: ${
      (wrk.stdout.toString() + wrk.stderr.toString()).split("\n")[0]
    }, 1 thread, 32 keep-alive connections on 127.0.0.1, 1 s warm-up then ${options.seconds} s`,
    `- runs: ${options.runs} per figure (${
      options.runs * 2
    } for start-up and kill -9, 3 for the crash loop, up to 3 series of 10 reloads under load for the reload figures); median and min–max. A ratio is the median of per-run ratios where each run measured the figure and its baseline in turn`,
    `- command: \`${process.argv.slice(1).join(" ")}\``,
    "",
    "![chart](results.svg)",
    "",
    table,
    "",
  ].join("\n");
  const path = new URL("./results.md", import.meta.url);
  const existing = readText(path);
  // Keep the hand-written analysis below the generated part.
  const analysis = existing.includes("\n## Analysis")
    ? existing.slice(existing.indexOf("\n## Analysis"))
    : "";
  writeFileSync(path, results + analysis);
  const svg = new URL("./results.svg", import.meta.url);
  writeFileSync(svg, chart(figures));
  // deno fmt formats SVG too: format it now, so a run leaves the tree clean.
  spawnSync(BIN.deno, ["fmt", "--quiet", fileURLToPath(svg)]);
  console.error("wrote bench/results.md and bench/results.svg");
}

function positive(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(
      `Cannot bench: --${name} must be a positive number, got "${text}"`,
    );
  }
  return value;
}

function readText(path: URL): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function ensureWrk(): void {
  if (spawnSync("wrk", ["--version"]).error === undefined) return;
  console.error("wrk is missing: installing the Debian package");
  const install = spawnSync("sh", [
    "-c",
    "apt-get update -qq && apt-get install -y -qq wrk",
  ], { stdio: "inherit" });
  if (install.status !== 0) {
    throw new Error(
      "Cannot bench: wrk is missing and apt-get could not install it",
    );
  }
}
