/**
 * Progress of long operations (the start-up scan and reconcile, transfers):
 * a bar on a terminal (cli-progress), a periodic one-line log elsewhere.
 *
 * `--progress auto` (the default) is a bar when stderr is a TTY, else the
 * line; `bar`, `line` and `off` force one. A task shows nothing for its
 * first SHOW_AFTER_MS: short work stays quiet. Then the bar shows files and
 * bytes done of the total, the rate and the ETA; the line mode logs the
 * same at info every LINE_PERIOD_MS (PSYNC_PROGRESS_PERIOD_MS overrides it,
 * for tests). Every log line written to stderr goes through the board
 * (`write`), which puts it above the bar instead of through it.
 *
 * The formatting and the arithmetic (rate, ETA, what counts as a big
 * transfer) are the pure functions at the top, unit-tested.
 */

import { MultiBar, type SingleBar } from 'cli-progress';
import type { Logger } from './log.js';

export type ProgressSetting = 'auto' | 'bar' | 'line' | 'off';
export type ProgressMode = 'bar' | 'line' | 'off';

/** A task shows progress only once it has run this long. */
export const SHOW_AFTER_MS = 2_000;
/** The line mode logs a task's progress this often. */
export const LINE_PERIOD_MS = 10_000;
/** A transfer that ran this long, or moved this much, logs its size, duration and rate when done. */
export const BIG_TRANSFER_MS = 2_000;
export const BIG_TRANSFER_BYTES = 100 * 1000 * 1000;

export interface Counts {
  readonly files: number;
  readonly bytes: number;
}

/** The mode a setting means for a stderr that is (or is not) a terminal. */
export function resolveProgress(setting: ProgressSetting, stderrIsTTY: boolean): ProgressMode {
  return setting === 'auto' ? (stderrIsTTY ? 'bar' : 'line') : setting;
}

/** `512 B`, `1.2 kB`, `3.4 MB`, `1.0 GB` (decimal units, as rsync -h prints them). */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 999.95 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]!}`;
}

/** `850 ms`, `12.3 s`, `4m05s`, `2h07m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  const minutes = Math.round(seconds / 60);
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

/** Bytes a second over `elapsedMs`; 0 before any time has passed. */
export function rateOf(bytes: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (bytes * 1000) / elapsedMs : 0;
}

/**
 * Milliseconds left at the average rate so far, by bytes when the total has
 * bytes, else by files; undefined while nothing is done yet or the total is unknown.
 */
export function etaMs(done: Counts, total: Partial<Counts>, elapsedMs: number): number | undefined {
  const [doneOf, totalOf] = total.bytes !== undefined && total.bytes > 0 ? [done.bytes, total.bytes] : [done.files, total.files];
  if (totalOf === undefined || doneOf <= 0 || elapsedMs <= 0) return undefined;
  return (Math.max(0, totalOf - doneOf) * elapsedMs) / doneOf;
}

/** `1,234` */
const count = (n: number): string => n.toLocaleString('en-US');

/**
 * What a task has done: `12/340 files, 1.2 MB/45.0 MB, 3.1 MB/s, ETA 14.2 s`;
 * without a total (a scan): `12,345 entries, 1.2 GB`.
 */
export function describeProgress(done: Counts, total: Partial<Counts>, elapsedMs: number): string {
  if (total.files === undefined) return `${count(done.files)} entries, ${formatBytes(done.bytes)}`;
  const parts = [`${count(Math.min(done.files, total.files))}/${count(total.files)} files`];
  if (total.bytes !== undefined) parts.push(`${formatBytes(Math.min(done.bytes, total.bytes))}/${formatBytes(total.bytes)}`);
  parts.push(`${formatBytes(rateOf(done.bytes, elapsedMs))}/s`);
  const eta = etaMs(done, total, elapsedMs);
  if (eta !== undefined) parts.push(`ETA ${formatDuration(eta)}`);
  return parts.join(', ');
}

/** Does a finished transfer deserve its duration and rate in the log? */
export function isBigTransfer(bytes: number, durationMs: number): boolean {
  return durationMs > BIG_TRANSFER_MS || bytes > BIG_TRANSFER_BYTES;
}

/** `3 files, 1.2 MB`, and for a big transfer ` in 12.3 s (4.5 MB/s)`. */
export function describeTransfer(done: Counts, durationMs: number): string {
  const size = `${count(done.files)} file${done.files === 1 ? '' : 's'}, ${formatBytes(done.bytes)}`;
  return isBigTransfer(done.bytes, durationMs) ? `${size} in ${formatDuration(durationMs)} (${formatBytes(rateOf(done.bytes, durationMs))}/s)` : size;
}

/** The percentage a bar shows: by bytes when the total has any, else by files. */
export function fractionDone(done: Counts, total: Partial<Counts>): number {
  if (total.bytes !== undefined && total.bytes > 0) return Math.min(1, done.bytes / total.bytes);
  if (total.files !== undefined && total.files > 0) return Math.min(1, done.files / total.files);
  return 0;
}

function periodFromEnv(): number {
  const value = Number(process.env.PSYNC_PROGRESS_PERIOD_MS);
  return Number.isFinite(value) && value > 0 ? value : LINE_PERIOD_MS;
}

/** The bar's resolution: the fraction done in thousandths. */
const BAR_STEPS = 1000;

/**
 * One process's progress display: hands out tasks, owns the bar (one line
 * per running task) and writes the log's stderr lines.
 */
export class ProgressBoard {
  private multibar: MultiBar | undefined;
  private readonly bars = new Set<SingleBar>();
  private readonly periodMs = periodFromEnv();

  constructor(
    readonly mode: ProgressMode,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  /** A log line for stderr: above the bar while one shows. */
  write(text: string): void {
    if (this.multibar === undefined) this.stream.write(text);
    else this.multibar.log(text);
  }

  /** Start a task; `total` unset for a count without an end (a scan). Lines go to `log`, the pair's logger. */
  start(label: string, log: Logger, total: Partial<Counts> = {}): ProgressTask {
    return new ProgressTask(this, label, log, total, this.periodMs);
  }

  /** At exit: what waits above the bar is written, and the bar goes. */
  close(): void {
    const multibar = this.multibar;
    if (multibar === undefined) return;
    multibar.update();
    multibar.stop();
    this.multibar = undefined;
    this.bars.clear();
  }

  /** @internal A task's bar, once it has run SHOW_AFTER_MS. */
  addBar(label: string): SingleBar {
    this.multibar ??= new MultiBar({
      stream: this.stream,
      format: '{label} |{bar}| {percent} {detail}',
      barCompleteChar: '#',
      barIncompleteChar: '-',
      barsize: 30,
      clearOnComplete: true,
      hideCursor: false,
      // A bar forced on a pipe (--progress bar) still shows, one render a line.
      noTTYOutput: true,
      notTTYSchedule: 1000,
    });
    const bar = this.multibar.create(BAR_STEPS, 0, { label, percent: '', detail: '' });
    this.bars.add(bar);
    return bar;
  }

  /** @internal A task ended: its bar goes; the last one takes the board back to plain lines. */
  removeBar(bar: SingleBar): void {
    const multibar = this.multibar;
    if (multibar === undefined || !this.bars.delete(bar)) return;
    multibar.remove(bar);
    if (this.bars.size > 0) return;
    multibar.stop();
    this.multibar = undefined;
  }
}

/** One long operation's progress (see ProgressBoard.start). */
export class ProgressTask {
  private done: Counts = { files: 0, bytes: 0 };
  private readonly started = performance.now();
  private bar: SingleBar | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private ended = false;

  constructor(
    private readonly board: ProgressBoard,
    private readonly label: string,
    private readonly log: Logger,
    private total: Partial<Counts>,
    periodMs: number,
  ) {
    if (board.mode === 'bar') this.timers.push(setTimeout(() => this.showBar(), SHOW_AFTER_MS));
    if (board.mode === 'line') {
      const line = setInterval(() => {
        if (performance.now() - this.started >= SHOW_AFTER_MS) this.log.info(`${this.label}: ${this.describe()}`);
      }, Math.max(periodMs, 1));
      this.timers.push(line);
    }
    // A progress display never keeps psync alive.
    for (const timer of this.timers) timer.unref();
  }

  /** More of the total is known (a scan's entries, a plan's size). */
  setTotal(total: Partial<Counts>): void {
    this.total = total;
    this.render();
  }

  advance(files: number, bytes: number): void {
    this.done = { files: this.done.files + files, bytes: this.done.bytes + bytes };
    this.render();
  }

  /** What was done and how long it took; the bar goes, the lines stop. */
  end(): { done: Counts; durationMs: number } {
    if (!this.ended) {
      this.ended = true;
      for (const timer of this.timers) clearTimeout(timer);
      if (this.bar !== undefined) this.board.removeBar(this.bar);
    }
    return { done: this.done, durationMs: performance.now() - this.started };
  }

  private describe(): string {
    return describeProgress(this.done, this.total, performance.now() - this.started);
  }

  private showBar(): void {
    if (this.ended) return;
    this.bar = this.board.addBar(this.label);
    this.render();
  }

  private render(): void {
    if (this.bar === undefined) return;
    const fraction = fractionDone(this.done, this.total);
    const percent = this.total.files === undefined ? '' : `${Math.floor(fraction * 100)}%`;
    this.bar.update(Math.round(fraction * BAR_STEPS), { label: this.label, percent, detail: this.describe() });
  }
}
