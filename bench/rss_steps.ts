/**
 * Where a master's memory goes: RSS of processes that each do one more of
 * the things a master does, under both runtimes. Prints a markdown table.
 *
 *     deno run -A bench/rss_steps.ts
 */
import {
  fixture,
  median,
  Proc,
  rssMiB,
  type RuntimeName,
  sleep,
} from "./_lib.ts";

const STEPS = [
  "an idle process (the baseline)",
  "+ import mod.ts, pick the runtime adapter",
  "+ a private temp dir, a Unix listener, SIGTERM and SIGINT listeners",
  "+ a spawned child",
  "+ a connected Unix socket, a line on stderr",
  "a master of 4 idle workers",
];

async function rss(runtime: RuntimeName, step: number): Promise<number> {
  const samples: number[] = [];
  for (let run = 0; run < 3; run++) {
    const p = step === 0
      ? Proc.script(runtime, fixture("idle.ts"))
      : step === STEPS.length - 1
      ? Proc.script(runtime, fixture("pool.ts"), { WORKERS: "4", PORT: "0" })
      : Proc.script(runtime, fixture("rss_step.ts"), { STEP: String(step) });
    await sleep(1500);
    samples.push(rssMiB(p.pid));
    await p.stop();
  }
  return median(samples);
}

const rows = ["| step | Deno MiB | Bun MiB |", "| --- | --- | --- |"];
for (let step = 0; step < STEPS.length; step++) {
  const [deno, bun] = [await rss("deno", step), await rss("bun", step)];
  rows.push(`| ${STEPS[step]} | ${deno.toFixed(1)} | ${bun.toFixed(1)} |`);
}
console.log(rows.join("\n"));
