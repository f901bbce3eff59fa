import { describe, expect, test } from 'vitest';
import type { Observed, Plan, Step } from '../../src/core/reconcile.js';
import { markerVerdict, tooManyDeletes, type MarkerVerdict } from '../../src/core/safety.js';
import type { Side } from '../../src/core/types.js';
import { described } from '../support/table.js';

const seen: Observed = { type: 'file', size: 1, mtimeMs: 1_000, mode: 0o644, ino: 7 };
const del = (path: string, side: Side = 'right'): Step => ({ kind: 'delete', side, path, expect: seen });
const copy = (path: string): Step => ({ kind: 'copy', direction: 'leftToRight', path, version: seen });
const move = (from: string, to: string): Step => ({ kind: 'move', side: 'right', from, to, expect: seen });
const planOf = (steps: Step[]): Plan => ({ steps, records: [], summary: { toRight: 0, toLeft: 0, deletes: 0, moves: 0, conflicts: 0 } });
const deletes = (n: number): Step[] => Array.from({ length: n }, (_, i) => del(`f${i}`));

describe('tooManyDeletes', () => {
  test.each(described<{ description: string; steps: Step[]; archiveSize: number; percent: number; verdict: { deletes: number; limit: number } | undefined }>([
    { description: 'no deletes', steps: [copy('a'), move('b', 'c')], archiveSize: 10, percent: 50, verdict: undefined },
    { description: 'half of the archive at 50%: within the limit', steps: deletes(5), archiveSize: 10, percent: 50, verdict: undefined },
    { description: 'one more than half: halts', steps: deletes(6), archiveSize: 10, percent: 50, verdict: { deletes: 6, limit: 5 } },
    { description: 'the limit rounds down: 3 of 5 at 50% halts', steps: deletes(3), archiveSize: 5, percent: 50, verdict: { deletes: 3, limit: 2 } },
    { description: 'a tiny archive: deleting its only entry halts at 50%', steps: deletes(1), archiveSize: 1, percent: 50, verdict: { deletes: 1, limit: 0 } },
    { description: '100% never halts', steps: deletes(10), archiveSize: 10, percent: 100, verdict: undefined },
    { description: '0% halts on any delete', steps: deletes(1), archiveSize: 1000, percent: 0, verdict: { deletes: 1, limit: 0 } },
    { description: 'an empty archive (a first run) never halts', steps: deletes(3), archiveSize: 0, percent: 50, verdict: undefined },
    {
      description: "a directory's contents count: each removed entry is its own step",
      steps: [del('d/x'), del('d/y'), del('d/z'), del('d')],
      archiveSize: 6,
      percent: 50,
      verdict: { deletes: 4, limit: 3 },
    },
    { description: 'deletes on both sides add up', steps: [del('a', 'left'), del('b', 'right'), del('c', 'left')], archiveSize: 4, percent: 50, verdict: { deletes: 3, limit: 2 } },
    { description: 'copies and moves do not count', steps: [...deletes(2), copy('x'), copy('y'), move('p', 'q')], archiveSize: 4, percent: 50, verdict: undefined },
  ]))('%s', (_description, { steps, archiveSize, percent, verdict }) => {
    expect(tooManyDeletes(planOf(steps), archiveSize, percent)).toEqual(verdict);
  });
});

describe('markerVerdict', () => {
  const ID = 'pair-1';
  test.each(described<{ description: string; archiveSize: number; left: string[] | undefined; right: string[] | undefined; verdict: MarkerVerdict['kind']; side?: Side }>([
    { description: 'archive with entries, both roots marked: ok', archiveSize: 5, left: [ID], right: [ID], verdict: 'ok' },
    { description: 'a root marked for several pairs, this one among them: ok', archiveSize: 5, left: ['other', ID], right: [ID], verdict: 'ok' },
    { description: 'empty archive, no markers: a first run', archiveSize: 0, left: undefined, right: undefined, verdict: 'firstRun' },
    { description: 'empty archive, one root marked: a first run', archiveSize: 0, left: [ID], right: undefined, verdict: 'firstRun' },
    { description: 'empty archive, roots marked by another pair: a first run', archiveSize: 0, left: ['other'], right: ['other'], verdict: 'firstRun' },
    { description: 'empty archive, both roots marked (two empty trees): ok', archiveSize: 0, left: [ID], right: [ID], verdict: 'ok' },
    { description: 'archive with entries, the left marker gone (replaced, emptied, unmounted): halt on the left', archiveSize: 5, left: undefined, right: [ID], verdict: 'halt', side: 'left' },
    { description: 'archive with entries, the right marker gone: halt on the right', archiveSize: 5, left: [ID], right: undefined, verdict: 'halt', side: 'right' },
    { description: 'archive with entries, a marker of another pair only: halt', archiveSize: 5, left: [ID], right: ['other'], verdict: 'halt', side: 'right' },
    { description: 'archive with entries, an empty marker file: halt', archiveSize: 5, left: [], right: [ID], verdict: 'halt', side: 'left' },
    { description: 'both markers gone: the left is named first', archiveSize: 5, left: undefined, right: undefined, verdict: 'halt', side: 'left' },
  ]))('%s', (_description, { archiveSize, left, right, verdict, side }) => {
    const result = markerVerdict(archiveSize, { left, right }, ID);
    expect(result.kind).toBe(verdict);
    if (result.kind === 'halt') {
      expect(result.side).toBe(side);
      expect(result.reason).toContain(`the ${side} root`);
      expect(result.reason).toContain(`${archiveSize} agreed entries`);
    }
  });

  test('the reason is one line naming the marker', () => {
    const result = markerVerdict(1, { left: undefined, right: ['x'] }, 'x');
    expect(result).toEqual({ kind: 'halt', side: 'left', reason: expect.stringContaining('.psync/id') });
    expect(result.kind === 'halt' && result.reason.includes('\n')).toBe(false);
    expect(result.kind === 'halt' && result.reason).toContain('1 agreed entry');
  });
});
