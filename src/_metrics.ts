/**
 * The admin endpoint's `/metrics`: the pool in Prometheus' text exposition
 * format (version 0.0.4), aggregated in the master, so that a scrape never
 * lands on a random worker. Pure: a status in, text out.
 *
 * @module
 */
import type { ProcessUsage } from "./runtime/mod.ts";
import type { PoolStatus, RestartReason, WorkerInfo } from "./types.ts";

/** Every reason a restart is counted under, zeros included. */
const REASONS: readonly RestartReason[] = [
  "exit",
  "signal",
  "timeout",
  "boot_error",
  "reload",
  "max_requests",
  "max_memory",
  "max_age",
];

/** The states `workerpool_workers` counts ids in. */
const STATES = ["starting", "ready", "stopping", "restarting"] as const;

/** One metric family: its samples as `[labels, value]`. */
interface Family {
  name: string;
  type: "gauge" | "counter";
  help: string;
  samples: [labels: string, value: number][];
}

/**
 * The pool's metrics as Prometheus text. `master`: the master's own usage,
 * `startTime`: when the master started (seconds since the epoch).
 */
export function renderMetrics(
  status: PoolStatus,
  master: ProcessUsage,
  startTime: number,
  ready: boolean,
): string {
  const workers = status.workers;
  const perWorker = (
    name: string,
    type: Family["type"],
    help: string,
    value: (worker: WorkerInfo) => number | null | undefined,
  ): Family => ({
    name,
    type,
    help,
    samples: workers.flatMap((worker) => {
      const v = value(worker);
      return v === null || v === undefined ? [] : [[id(worker), v]];
    }),
  });
  const families: Family[] = [
    {
      name: "workerpool_info",
      type: "gauge",
      help: "The runtime the pool runs on, as labels; always 1.",
      samples: [[
        `runtime="${label(status.runtime.split(" ")[0] ?? "")}",version="${
          label(status.runtime.split(" ")[1] ?? "")
        }"`,
        1,
      ]],
    },
    {
      name: "workerpool_ready",
      type: "gauge",
      help:
        "1 when /readyz answers 200: minReady workers ready and no stop under way.",
      samples: [["", ready ? 1 : 0]],
    },
    {
      name: "workerpool_workers",
      type: "gauge",
      help: "Worker ids by the state of their current process.",
      samples: STATES.map((state) => [
        `state="${state}"`,
        workers.filter((worker) => worker.state === state).length,
      ]),
    },
    {
      name: "workerpool_workers_min_ready",
      type: "gauge",
      help: "Ready workers /readyz needs (minReady, at most the pool's size).",
      samples: [["", Math.min(status.minReady, status.size)]],
    },
    {
      name: "workerpool_reloads_total",
      type: "counter",
      help: "Rolling reloads begun.",
      samples: [["", status.reloads]],
    },
    {
      name: "workerpool_reload_failures_total",
      type: "counter",
      help: "Rolling reloads that failed (the old processes kept serving).",
      samples: [["", status.reloadFailures]],
    },
    {
      name: "workerpool_requests_total",
      type: "counter",
      help:
        "Requests taken by serve() in all worker processes, removed ids included.",
      samples: [["", status.totals.requests]],
    },
    {
      name: "workerpool_cpu_seconds_total",
      type: "counter",
      help: "CPU time of all worker processes, removed ids included.",
      samples: [["", seconds(status.totals.cpuTime)!]],
    },
    {
      name: "workerpool_restarts_total",
      type: "counter",
      help: "Worker processes replaced, by reason, removed ids included.",
      samples: REASONS.map((reason) => [
        `reason="${reason}"`,
        status.totals.restartsBy[reason] ?? 0,
      ]),
    },
    perWorker(
      "workerpool_worker_up",
      "gauge",
      "1 when the worker id has a ready process, else 0.",
      (worker) => worker.state === "ready" ? 1 : 0,
    ),
    perWorker(
      "workerpool_worker_rss_bytes",
      "gauge",
      "Resident memory of the current process, from its last heartbeat.",
      (worker) => worker.metrics?.rss,
    ),
    perWorker(
      "workerpool_worker_heap_used_bytes",
      "gauge",
      "JavaScript heap in use in the current process, from its last heartbeat.",
      (worker) => worker.metrics?.heapUsed,
    ),
    perWorker(
      "workerpool_worker_event_loop_lag_seconds",
      "gauge",
      "How late the current process's last heartbeat timer fired.",
      (worker) => seconds(worker.metrics?.eventLoopLag),
    ),
    perWorker(
      "workerpool_worker_cpu_seconds_total",
      "counter",
      "CPU time, user and system, of all processes of the worker id.",
      (worker) => seconds(worker.totals.cpuTime),
    ),
    perWorker(
      "workerpool_worker_requests_total",
      "counter",
      "Requests taken by serve() in all processes of the worker id.",
      (worker) => worker.totals.requests,
    ),
    perWorker(
      "workerpool_worker_requests_in_flight",
      "gauge",
      "Requests of the worker id's processes not answered yet.",
      (worker) => worker.totals.requestsInFlight,
    ),
    perWorker(
      "workerpool_worker_uptime_seconds",
      "gauge",
      "Age of the worker id's current process.",
      (worker) => worker.pid === null ? null : seconds(worker.uptime),
    ),
    perWorker(
      "workerpool_worker_heartbeat_age_seconds",
      "gauge",
      "Time since the current process last showed a sign of life (killed past workerTimeout).",
      (worker) => seconds(worker.heartbeatAge),
    ),
    {
      name: "workerpool_worker_restarts_total",
      type: "counter",
      help: "Replacements of the worker id's process, by reason.",
      samples: workers.flatMap((worker) =>
        REASONS.map((reason): [string, number] => [
          `${id(worker)},reason="${reason}"`,
          worker.restartsBy[reason] ?? 0,
        ])
      ),
    },
    {
      name: "process_cpu_seconds_total",
      type: "counter",
      help: "CPU time, user and system, of the master process.",
      samples: master.cpuTime === null
        ? []
        : [["", round(master.cpuTime / 1e6)]],
    },
    {
      name: "process_resident_memory_bytes",
      type: "gauge",
      help: "Resident memory of the master process.",
      samples: [["", master.rss]],
    },
    {
      name: "process_start_time_seconds",
      type: "gauge",
      help: "When the master process started, in seconds since the epoch.",
      samples: [["", startTime]],
    },
  ];
  let text = "";
  for (const family of families) {
    text += `# HELP ${family.name} ${family.help}\n`;
    text += `# TYPE ${family.name} ${family.type}\n`;
    for (const [labels, value] of family.samples) {
      text += labels === ""
        ? `${family.name} ${value}\n`
        : `${family.name}{${labels}} ${value}\n`;
    }
  }
  return text;
}

function id(worker: WorkerInfo): string {
  return `id="${worker.id}"`;
}

function seconds(ms: number | null | undefined): number | null {
  return ms === null || ms === undefined ? null : round(ms / 1000);
}

/** Microsecond precision: no float noise (`0.16220099999999998`). */
function round(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}

/** A label value, escaped as the text format wants. */
function label(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}
