// The SVG chart of the results (bench/results.svg, shown in the README): each
// figure as a bar of its ratio to its baseline, or of its median to its fixed
// limit, with the goal marked on the bar and met or missed visible at a
// glance. Rows are grouped by which way is better.
import { median, type RuntimeName } from "./_lib.ts";
import type { Figure } from "./figures.ts";

type Palette = RuntimeName | "legend";
const COLOR: Record<Palette, { bar: string; tint: string }> = {
  deno: { bar: "#2b5c9e", tint: "#dbe5f3" },
  bun: { bar: "#e08a1e", tint: "#fbe9d2" },
  legend: { bar: "#6e7781", tint: "#e6e8eb" },
};
const RUNTIME_NAME: Record<RuntimeName, string> = { deno: "Deno", bun: "Bun" };
const MET = "#1b7a34";
const MISSED = "#c62828";
const INK = "#1f2328";
const MUTED = "#59636e";
const GRID = "#d0d7de";

// Text is laid out from the advance widths of DejaVu Sans (in hundredths of
// an em, for " " to "~"), the widest of the fonts named below (Verdana's are
// alike), so that no text is clipped or overlaps whichever of them renders.
const FONT = "DejaVu Sans, Verdana, Geneva, sans-serif";
const ASCII_WIDTHS = (
  "32 40 46 84 64 95 78 27 39 39 50 84 32 36 32 34 64 64 64 64 64 64 64 64 " +
  "64 64 34 34 84 84 84 53 100 68 69 70 77 63 58 77 75 29 29 66 56 86 75 79 " +
  "60 79 69 63 61 73 68 99 69 61 69 39 34 39 84 50 50 61 63 55 63 62 35 63 " +
  "63 28 28 58 28 97 63 61 63 63 41 52 39 63 59 82 59 59 52 64 34 64 84"
).split(" ").map(Number);
const OTHER_WIDTHS: Record<string, number> = { "–": 50, "—": 100, "·": 32 };

/** The width of `text` at `size` px, a little generous. */
function textWidth(text: string, size: number, bold = false): number {
  let ems = 0;
  for (const char of text) {
    const code = char.codePointAt(0)!;
    ems += (code >= 32 && code < 127
      ? ASCII_WIDTHS[code - 32]
      : OTHER_WIDTHS[char] ?? 84) / 100;
  }
  return ems * size * (bold ? 1.1 : 1) * 1.03;
}

/** `text` broken into lines of at most `width` px, at spaces. */
function wrap(
  text: string,
  size: number,
  width: number,
  bold = false,
): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    const next = line === "" ? word : `${line} ${word}`;
    if (line !== "" && textWidth(next, size, bold) > width) {
      lines.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  return [...lines, line];
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;")
    .replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A piece of a line of text: its words, colour and weight. */
interface Span {
  text: string;
  fill?: string;
  bold?: boolean;
}

function spansWidth(spans: Span[], size: number): number {
  return spans.reduce((w, s) => w + textWidth(s.text, size, s.bold), 0);
}

/**
 * A line of text: one <text> per span, each placed at the width of those
 * before it. No span relies on whitespace inside an element, so reformatting
 * the SVG (deno fmt indents it) cannot move any text.
 */
function textLine(
  x: number,
  y: number,
  size: number,
  spans: Span[],
  halo = false,
): string {
  // A white halo keeps gridlines from running through the text.
  const style = halo
    ? ` stroke="white" stroke-width="4" stroke-linejoin="round" paint-order="stroke"`
    : "";
  const out: string[] = [];
  for (const span of spans) {
    const text = span.text.trim();
    x += textWidth(span.text.slice(0, span.text.indexOf(text)), size);
    out.push(
      `<text x="${r(x)}" y="${r(y)}" font-size="${size}"${
        span.fill ? ` fill="${span.fill}"` : ""
      }${span.bold ? ` font-weight="bold"` : ""}${style}>${
        escape(text)
      }</text>`,
    );
    x += textWidth(span.text.slice(span.text.indexOf(text)), size, span.bold);
  }
  return out.join("");
}

function r(n: number): string {
  return String(Math.round(n * 10) / 10);
}

/** One bar: a runtime's value of a figure, in units of its reference. */
interface Bar {
  runtime: RuntimeName;
  /** Where the bar ends: value ÷ baseline, or median ÷ limit. */
  at: number;
  /** Where the goal is drawn, on the same scale; null for a report. */
  goal: number | null;
  met: boolean | null;
  /** What is written after the bar. */
  value: string;
  /** The goal as written, "report", or "" where the label tells it. */
  target: string;
}

/** Bars that share a label: one figure against one baseline or limit. */
interface Group {
  title: string;
  against: string;
  bars: Bar[];
}

interface Section {
  /** "Lower is better ←" or "Higher is better →": the way along the axis. */
  heading: string;
  caption: string;
  groups: Group[];
}

function ratioText(ratio: number): string {
  return `${ratio.toFixed(ratio >= 10 ? 1 : 2)}×`;
}

function valueText(f: Figure): string {
  const value = f.values.length ? median(f.values) : NaN;
  const digits = f.unit === "% of a core" ? 2 : value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${f.unit === "% of a core" ? "%" : f.unit}`;
}

/** The figures that can be drawn, grouped into sections by direction. */
function sections(figures: Figure[]): Section[] {
  const groups = new Map<string, Group & { section: string }>();
  const add = (section: string, title: string, against: string, bar: Bar) => {
    const key = `${section}\n${title}\n${against}`;
    const group = groups.get(key) ??
      { section, title, against, bars: [] };
    groups.set(key, group);
    group.bars.push(bar);
  };
  for (const f of figures) {
    if (f.ratio !== null && f.baseline !== null && Number.isFinite(f.ratio)) {
      const sign = f.better === "lower" ? "≤" : "≥";
      add(f.better, f.name, `÷ ${f.baseline.label}`, {
        runtime: f.runtime,
        at: f.ratio,
        goal: f.goal,
        met: f.goal === null ? null : f.met,
        value: ratioText(f.ratio),
        target: f.goal === null
          ? "report"
          : `goal ${sign} ${ratioText(f.goal)}`,
      });
    } else if (f.limit !== null && f.limit > 0 && f.values.length > 0) {
      add("limit", f.name, `÷ its limit of ${f.limit} ${f.unit}`, {
        runtime: f.runtime,
        at: median(f.values) / f.limit,
        goal: 1,
        met: f.met,
        value: valueText(f),
        target: "",
      });
    }
  }
  const all = [...groups.values()];
  for (const group of all) {
    group.bars.sort((a, b) => a.runtime.localeCompare(b.runtime)).reverse();
  }
  return [
    {
      heading: "Lower is better ←",
      caption: "workerpool ÷ baseline, same run; 1× = the baseline",
      groups: all.filter((g) => g.section === "lower"),
    },
    {
      heading: "Higher is better →",
      caption: "workerpool ÷ baseline, same run; 1× = the baseline",
      groups: all.filter((g) => g.section === "higher"),
    },
    {
      heading: "Fixed limits: lower is better ←",
      caption: "median ÷ the limit; 1× = the limit",
      groups: all.filter((g) => g.section === "limit"),
    },
  ].filter((s) => s.groups.length > 0);
}

// Sizes, in px.
const PAD = 16;
const TITLE = 16;
const TEXT = 13;
const SMALL = 12;
const LINE = 16;
const BAR = 15;
const BAR_GAP = 5;
const LABEL_MAX = 300;
const PLOT = 320;
const GAP = 14;

/** The chart of every figure with a ratio or a fixed limit. */
export function chart(figures: Figure[]): string {
  const drawn = sections(figures);
  const groups = drawn.flatMap((s) => s.groups);
  const shown = new Set(groups.flatMap((g) => g.bars.map((b) => b.runtime)));
  const runtimes = (["deno", "bun"] as const).filter((r) =>
    shown.size === 0 || shown.has(r)
  );

  // The label column: as wide as the longest label, up to LABEL_MAX.
  const labelWidth = Math.min(
    LABEL_MAX,
    Math.max(
      120,
      ...groups.map((g) => textWidth(g.title, TEXT, true)),
      ...groups.map((g) => textWidth(g.against, SMALL)),
    ),
  );
  const plotLeft = PAD + labelWidth + GAP;
  // Each section has its own scale, from 0 to past its longest bar or goal
  // (and 1×, the reference), in at most 8 round steps.
  const scales = drawn.map((section) => {
    const top = Math.max(
      1,
      ...section.groups.flatMap((g) =>
        g.bars.flatMap((b) => [b.at, b.goal ?? 0])
      ),
    ) * 1.08;
    const step = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100].find((s) =>
      top / s <= 8
    ) ?? top / 4;
    const max = Math.ceil(top / step) * step;
    const x = (value: number) => plotLeft + Math.min(value, max) / max * PLOT;
    const ticks: number[] = [];
    for (let tick = 0; tick <= max + 1e-9; tick += step) ticks.push(tick);
    return { x, ticks };
  });
  const textStart = (bar: Bar, x: (value: number) => number) =>
    Math.max(x(bar.at), bar.goal === null ? 0 : x(bar.goal) + 2) + 6;
  const right = Math.max(
    plotLeft + PLOT + 12,
    ...drawn.flatMap((section, i) =>
      section.groups.flatMap((g) =>
        g.bars.map((b) =>
          textStart(b, scales[i].x) + spansWidth(barText(b), SMALL)
        )
      )
    ),
  );
  const width = Math.ceil(right + PAD);

  // Title and legend, the legend wrapped to the width.
  const parts: string[] = [];
  let y = PAD + TITLE;
  parts.push(textLine(PAD, y, TITLE, [{
    text: "workerpool against its baselines and limits",
    bold: true,
    fill: INK,
  }]));
  y += 8 + LINE;
  const legend = [
    ...runtimes.map((runtime) =>
      legendItem(
        RUNTIME_NAME[runtime],
        (lx, ly) => swatch(lx, ly + 3, runtime, true),
      )
    ),
    legendItem("goal met ✓", (lx, ly) => swatch(lx, ly + 3, "legend", true)),
    legendItem("missed ✗", (lx, ly) => swatch(lx, ly + 3, "legend", false)),
    legendItem(
      "no goal: reported",
      (lx, ly) => swatch(lx, ly + 3, "legend", null),
    ),
    legendItem("the goal", (lx, ly) => goalMark(lx + 12, ly - 13, BAR + 4)),
  ];
  let lx = PAD;
  for (const item of legend) {
    if (lx + item.width > width - PAD && lx > PAD) {
      lx = PAD;
      y += LINE + 6;
    }
    parts.push(item.draw(lx, y));
    lx += item.width + 16;
  }

  drawn.forEach((section, i) => {
    const { x, ticks } = scales[i];
    y += 34;
    const heading = section.heading;
    parts.push(
      textLine(PAD, y, TEXT + 1, [{ text: heading, bold: true, fill: INK }]),
      textLine(
        PAD + textWidth(heading, TEXT + 1, true) + 10,
        y,
        SMALL,
        [{ text: section.caption, fill: MUTED }],
      ),
    );
    y += 7;
    parts.push(
      `<line x1="${PAD}" y1="${y}" x2="${
        width - PAD
      }" y2="${y}" stroke="${INK}" stroke-width="1"/>`,
    );
    y += 17;
    for (const tick of ticks) {
      parts.push(
        `<text x="${r(x(tick))}" y="${
          y - 4
        }" font-size="11" fill="${MUTED}" text-anchor="middle">${tick}×</text>`,
      );
    }
    const gridTop = y;
    const rows: string[] = [];
    for (const group of section.groups) {
      y += 6;
      const title = wrap(group.title, TEXT, labelWidth, true);
      const against = wrap(group.against, SMALL, labelWidth);
      const labelHeight = (title.length + against.length) * LINE;
      const barsHeight = group.bars.length * (BAR + BAR_GAP) - BAR_GAP;
      const height = Math.max(labelHeight, barsHeight);
      let ly = y + 12;
      for (const line of title) {
        rows.push(
          textLine(PAD, ly, TEXT, [{ text: line, bold: true, fill: INK }]),
        );
        ly += LINE;
      }
      for (const line of against) {
        rows.push(textLine(PAD, ly, SMALL, [{ text: line, fill: MUTED }]));
        ly += LINE;
      }
      let by = y + (height - barsHeight) / 2;
      for (const bar of group.bars) {
        rows.push(swatch(
          plotLeft,
          by + BAR,
          bar.runtime,
          bar.met,
          x(bar.at) - plotLeft,
        ));
        if (bar.goal !== null) {
          rows.push(goalMark(x(bar.goal), by - 3, BAR + 6));
        }
        rows.push(
          textLine(textStart(bar, x), by + BAR - 3, SMALL, barText(bar), true),
        );
        by += BAR + BAR_GAP;
      }
      y += height + 6;
      rows.push(
        `<line x1="${PAD}" y1="${y}" x2="${
          width - PAD
        }" y2="${y}" stroke="${GRID}" stroke-width="0.8"/>`,
      );
    }
    // Gridlines under the bars; 1×, the reference, dashed.
    for (const tick of ticks) {
      parts.push(
        `<line x1="${r(x(tick))}" y1="${gridTop}" x2="${r(x(tick))}" y2="${y}"${
          tick === 1
            ? ` stroke="${MUTED}" stroke-width="1.2" stroke-dasharray="4 3"`
            : ` stroke="${GRID}" stroke-width="0.8"`
        }/>`,
      );
    }
    parts.push(...rows);
  });
  const height = Math.ceil(y + PAD);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}">`,
    `<defs>`,
    ...(["deno", "bun", "legend"] as const).map((palette) =>
      `<pattern id="missed-${palette}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="${
        COLOR[palette].tint
      }"/><rect width="3" height="6" fill="${COLOR[palette].bar}"/></pattern>`
    ),
    `</defs>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}

/** What is written after a bar: runtime, value, ✓ or ✗, target. */
function barText(bar: Bar): Span[] {
  return [
    { text: `${RUNTIME_NAME[bar.runtime]} `, fill: COLOR[bar.runtime].bar },
    { text: bar.value, fill: INK, bold: true },
    ...(bar.met === null ? [] : [{
      text: bar.met ? " ✓" : " ✗",
      fill: bar.met ? MET : MISSED,
      bold: true,
    }]),
    ...(bar.target === "" ? [] : [{ text: `  ${bar.target}`, fill: MUTED }]),
  ];
}

function legendItem(
  label: string,
  mark: (x: number, y: number) => string,
): { width: number; draw: (x: number, y: number) => string } {
  return {
    width: 30 + textWidth(label, SMALL),
    draw: (lx, ly) =>
      mark(lx, ly) + textLine(lx + 29, ly, SMALL, [{ text: label, fill: INK }]),
  };
}

/** A bar (or, 24 px wide, a legend swatch) whose bottom is at `bottom`. */
function swatch(
  left: number,
  bottom: number,
  palette: Palette,
  met: boolean | null,
  width = 24,
): string {
  const y = r(bottom - BAR);
  const w = r(Math.max(1.5, width));
  if (met === false) {
    return `<rect x="${
      r(left)
    }" y="${y}" width="${w}" height="${BAR}" fill="url(#missed-${palette})" stroke="${MISSED}" stroke-width="1.5"/>`;
  }
  if (met === null) {
    return `<rect x="${r(left)}" y="${y}" width="${w}" height="${BAR}" fill="${
      COLOR[palette].tint
    }" stroke="${COLOR[palette].bar}" stroke-width="1"/>`;
  }
  return `<rect x="${r(left)}" y="${y}" width="${w}" height="${BAR}" fill="${
    COLOR[palette].bar
  }"/>`;
}

/** The goal: a dark line with a white halo, across a bar. */
function goalMark(x: number, top: number, height: number): string {
  const line = (stroke: string, w: number) =>
    `<line x1="${r(x)}" y1="${r(top)}" x2="${r(x)}" y2="${
      r(top + height)
    }" stroke="${stroke}" stroke-width="${w}"/>`;
  return line("white", 4) + line(INK, 2);
}
