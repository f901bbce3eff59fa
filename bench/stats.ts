/** Summaries of samples and the Markdown rendering of the results. */

import type { ToolName } from './tools.js';

export type Unit = 'ms' | 's' | 'MB' | '% of a core' | 'bytes' | 'fraction';

export interface Figure {
  readonly scenario: string;
  readonly metric: string;
  readonly unit: Unit;
  readonly tool: ToolName;
  /** Part of what `--smoke` must produce for psync and the floor. */
  readonly required: boolean;
  readonly samples: readonly number[];
  readonly median: number | null;
  readonly min: number | null;
  readonly max: number | null;
  readonly p95?: number | null;
  /** median / the floor's median for the same metric (null without a usable floor). */
  ratioToFloor: number | null;
  readonly notes: readonly string[];
  readonly error?: string;
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples; null when empty. */
export function percentile(samples: readonly number[], p: number): number | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  if (p === 50) {
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  }
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

export function summarize(samples: readonly number[], withP95: boolean): Pick<Figure, 'median' | 'min' | 'max' | 'p95'> {
  const finite = samples.filter((value) => Number.isFinite(value));
  const base = {
    median: percentile(finite, 50),
    min: finite.length === 0 ? null : Math.min(...finite),
    max: finite.length === 0 ? null : Math.max(...finite),
  };
  return withP95 ? { ...base, p95: percentile(finite, 95) } : base;
}

/** Fill in each figure's ratio to the rsync figure of the same scenario and metric. */
export function addRatios(figures: Figure[]): void {
  for (const figure of figures) {
    const floor = figures.find((other) => other.tool === 'rsync' && other.scenario === figure.scenario && other.metric === figure.metric);
    figure.ratioToFloor =
      figure.unit !== 'fraction' && floor?.median != null && figure.median !== null && floor.median !== 0 ? figure.median / floor.median : null;
  }
}

export function formatValue(value: number | null | undefined, unit: Unit): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return 'n/a';
  switch (unit) {
    case 'ms':
      return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
    case 's':
      return `${value.toFixed(2)} s`;
    case 'MB':
      return `${value.toFixed(1)} MB`;
    case '% of a core':
      return `${value.toFixed(2)} %`;
    case 'bytes':
      return value >= 1_048_576 ? `${(value / 1_048_576).toFixed(1)} MiB` : value >= 1024 ? `${(value / 1024).toFixed(1)} KiB` : `${value} B`;
    case 'fraction':
      return `${(value * 100).toFixed(0)} %`;
  }
}

function cell(figure: Figure | undefined): string {
  if (figure === undefined) return '';
  if (figure.error !== undefined) return 'error';
  if (figure.median === null) return figure.notes.length > 0 ? `n/a¹` : 'n/a';
  let text = formatValue(figure.median, figure.unit);
  const extra: string[] = [];
  if (figure.p95 != null) extra.push(`p95 ${formatValue(figure.p95, figure.unit)}`);
  if (figure.samples.length > 1 && figure.min !== figure.max) extra.push(`${formatValue(figure.min, figure.unit)}–${formatValue(figure.max, figure.unit)}`);
  if (extra.length > 0) text += ` (${extra.join('; ')})`;
  if (figure.tool !== 'rsync' && figure.ratioToFloor !== null) text += ` **×${figure.ratioToFloor.toFixed(2)}**`;
  return text;
}

/** One Markdown table: a row per scenario and metric, a column per tool; notes and errors below. */
export function markdownTable(figures: readonly Figure[], tools: readonly ToolName[]): string {
  const header = `| scenario | metric | ${tools.map((tool) => (tool === 'rsync' ? 'rsync (floor)' : tool)).join(' | ')} |`;
  const rule = `|${' --- |'.repeat(tools.length + 2)}`;
  const rows: string[] = [];
  const seen = new Set<string>();
  for (const figure of figures) {
    const key = `${figure.scenario}\u0000${figure.metric}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const cells = tools.map((tool) => cell(figures.find((f) => f.scenario === figure.scenario && f.metric === figure.metric && f.tool === tool)));
    rows.push(`| ${figure.scenario} | ${figure.metric} (${figure.unit}) | ${cells.join(' | ')} |`);
  }
  const notes: string[] = [];
  for (const figure of figures) {
    // Notes and errors belong to a tool's whole scenario: once each.
    for (const note of figure.notes) notes.push(`- ${figure.scenario}, ${figure.tool}: ${note}`);
    if (figure.error !== undefined) notes.push(`- ${figure.scenario}, ${figure.tool}: **error**: ${figure.error.split('\n')[0]?.slice(0, 300)}`);
  }
  const legend =
    'Cells: median (p95 where measured; min–max over the runs) and, in bold, the ratio to the floor (plain `rsync -a` over the same reused SSH connection).';
  return [header, rule, ...rows, '', legend, ...(notes.length > 0 ? ['', '¹ and other notes:', ...[...new Set(notes)]] : [])].join('\n');
}
