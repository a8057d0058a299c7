// The SVG chart of the results: one bar per figure and runtime, the score
// against its target where the figure is a ratio.
import { median } from "./_lib.ts";
import type { Figure } from "./figures.ts";

const COLORS = { deno: "#2f7d32", bun: "#c4671c" };

/** A horizontal bar chart of each ratio figure (value ÷ baseline). */
export function chart(figures: Figure[]): string {
  const rows = figures.filter((f) =>
    f.baseline !== null && f.baseline.values.length > 0 &&
    !f.baseline.label.startsWith("workerTimeout")
  );
  const width = 760;
  const left = 330;
  const barHeight = 18;
  const height = 50 + rows.length * (barHeight + 8);
  const max = Math.max(
    2,
    ...rows.map((f) => median(f.values) / median(f.baseline!.values)),
  );
  const x = (ratio: number) => left + (ratio / max) * (width - left - 60);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">workerpool ÷ baseline (same run; 1.0 = the baseline)</text>`,
    `<line x1="${x(1)}" y1="30" x2="${x(1)}" y2="${
      height - 10
    }" stroke="#888" stroke-dasharray="4 3"/>`,
    `<text x="${x(1) + 3}" y="40" fill="#555">1.0</text>`,
  ];
  rows.forEach((f, i) => {
    const y = 48 + i * (barHeight + 8);
    const ratio = median(f.values) / median(f.baseline!.values);
    parts.push(
      `<text x="10" y="${y + 13}">${
        escape(`${f.name} vs ${f.baseline!.label}`).slice(0, 60)
      }</text>`,
      `<rect x="${left}" y="${y}" width="${
        Math.max(1, x(ratio) - left)
      }" height="${barHeight}" fill="${COLORS[f.runtime]}"/>`,
      `<text x="${x(ratio) + 4}" y="${y + 13}">${f.runtime} ${
        ratio.toFixed(2)
      }×</text>`,
    );
  });
  parts.push("</svg>\n");
  return parts.join("\n");
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(
    />/g,
    "&gt;",
  );
}
