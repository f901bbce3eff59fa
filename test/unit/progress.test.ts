import { describe, expect, test } from 'vitest';
import { describeProgress, describeTransfer, etaMs, formatBytes, formatDuration, fractionDone, isBigTransfer, rateOf, resolveProgress } from '../../src/progress.js';
import { described } from '../support/table.js';

describe('resolveProgress', () => {
  test.each(described([
    { description: 'auto on a terminal is a bar', setting: 'auto' as const, tty: true, mode: 'bar' },
    { description: 'auto on a pipe or file is the periodic line', setting: 'auto' as const, tty: false, mode: 'line' },
    { description: 'bar is a bar even on a pipe', setting: 'bar' as const, tty: false, mode: 'bar' },
    { description: 'line is a line even on a terminal', setting: 'line' as const, tty: true, mode: 'line' },
    { description: 'off is off', setting: 'off' as const, tty: true, mode: 'off' },
  ]))('%s', (_d, { setting, tty, mode }) => {
    expect(resolveProgress(setting, tty)).toBe(mode);
  });
});

describe('formatting', () => {
  test.each(described([
    { description: 'bytes below 1000', bytes: 999, text: '999 B' },
    { description: 'kilobytes', bytes: 1_234, text: '1.2 kB' },
    { description: 'megabytes', bytes: 45_600_000, text: '45.6 MB' },
    { description: 'a value that rounds up to the next unit', bytes: 999_990, text: '1.0 MB' },
    { description: 'gigabytes', bytes: 2_500_000_000, text: '2.5 GB' },
  ]))('formatBytes: %s', (_d, { bytes, text }) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  test.each(described([
    { description: 'under a second', ms: 850, text: '850 ms' },
    { description: 'seconds with a decimal', ms: 12_345, text: '12.3 s' },
    { description: 'minutes and seconds', ms: 245_000, text: '4m05s' },
    { description: 'hours and minutes', ms: 7_620_000, text: '2h07m' },
  ]))('formatDuration: %s', (_d, { ms, text }) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe('rate and ETA', () => {
  test('rate is bytes a second; none before any time passed', () => {
    expect(rateOf(3_000_000, 2_000)).toBe(1_500_000);
    expect(rateOf(5, 0)).toBe(0);
  });

  test.each(described([
    { description: 'by bytes when the total has bytes', done: { files: 1, bytes: 25 }, total: { files: 100, bytes: 100 }, elapsed: 1_000, eta: 3_000 },
    { description: 'by files when the total has no bytes (moves, deletes)', done: { files: 10, bytes: 0 }, total: { files: 40, bytes: 0 }, elapsed: 2_000, eta: 6_000 },
    { description: 'unknown before anything is done', done: { files: 0, bytes: 0 }, total: { files: 4, bytes: 100 }, elapsed: 2_000, eta: undefined },
    { description: 'unknown without a total (a scan)', done: { files: 10, bytes: 10 }, total: {}, elapsed: 2_000, eta: undefined },
    { description: 'zero once all is done', done: { files: 4, bytes: 100 }, total: { files: 4, bytes: 100 }, elapsed: 2_000, eta: 0 },
  ]))('etaMs: %s', (_d, { done, total, elapsed, eta }) => {
    expect(etaMs(done, total, elapsed)).toBe(eta);
  });

  test('fractionDone goes by bytes, else files, and never past 1', () => {
    expect(fractionDone({ files: 1, bytes: 50 }, { files: 10, bytes: 200 })).toBe(0.25);
    expect(fractionDone({ files: 3, bytes: 0 }, { files: 12, bytes: 0 })).toBe(0.25);
    expect(fractionDone({ files: 5, bytes: 500 }, { files: 4, bytes: 400 })).toBe(1);
    expect(fractionDone({ files: 5, bytes: 500 }, {})).toBe(0);
  });
});

describe('lines', () => {
  test('a task with a total: files and bytes done of total, rate, ETA', () => {
    expect(describeProgress({ files: 120, bytes: 30_000_000 }, { files: 300, bytes: 120_000_000 }, 10_000)).toBe(
      '120/300 files, 30.0 MB/120.0 MB, 3.0 MB/s, ETA 30.0 s',
    );
  });

  test('a scan without a total: what it has counted', () => {
    expect(describeProgress({ files: 60_000, bytes: 1_500_000_000 }, {}, 10_000)).toBe('60,000 entries, 1.5 GB');
  });

  test.each(described([
    { description: 'a small quick transfer: count and size', files: 3, bytes: 1_200_000, ms: 400, text: '3 files, 1.2 MB' },
    { description: 'one file', files: 1, bytes: 10, ms: 5, text: '1 file, 10 B' },
    { description: 'a long one: with its duration and rate', files: 2, bytes: 10_000_000, ms: 4_000, text: '2 files, 10.0 MB in 4.0 s (2.5 MB/s)' },
    { description: 'a big but quick one: with its duration and rate', files: 1, bytes: 200_000_000, ms: 1_000, text: '1 file, 200.0 MB in 1.0 s (200.0 MB/s)' },
  ]))('describeTransfer: %s', (_d, { files, bytes, ms, text }) => {
    expect(describeTransfer({ files, bytes }, ms)).toBe(text);
  });

  test('isBigTransfer: past 2 s or past 100 MB', () => {
    expect(isBigTransfer(1, 2_001)).toBe(true);
    expect(isBigTransfer(100_000_001, 10)).toBe(true);
    expect(isBigTransfer(100_000_000, 2_000)).toBe(false);
  });
});
