import { describe, expect, test } from 'vitest';
import type { Observed, Plan, Step } from '../../src/core/reconcile.js';
import { batchesOf, describeStep } from '../../src/core/steps.js';
import { described } from '../support/table.js';

const file = (ino: number, size = 1): Observed => ({ type: 'file', size, mtimeMs: 1_000, mode: 0o644, ino });
const plan = (steps: Step[]): Plan => ({ steps, records: [], summary: { toRight: 0, toLeft: 0, deletes: 0, moves: 0, conflicts: 0 } });
const show = (p: Plan, scans = { left: new Map<string, Observed>(), right: new Map<string, Observed>() }): string[] =>
  batchesOf(p, scans).map(
    (b) =>
      `${b.direction} ${b.kind}${b.setAside ? ' aside' : ''}: ${b.actions
        .map((a) => (a.kind === 'move' ? `${a.from}->${a.to}` : a.kind === 'rsync' && a.prev !== undefined ? `${a.path}(prev ${a.prev.ino})` : a.path))
        .join(' ')}`,
  );

describe('batchesOf: a plan as the batches the brain applies', () => {
  test.each(
    described<{ description: string; steps: Step[]; batches: string[] }>([
      { description: 'an empty plan has no batch', steps: [], batches: [] },
      {
        description: 'a copy to each side: one rsync batch per direction',
        steps: [
          { kind: 'copy', direction: 'leftToRight', path: 'a', version: file(1) },
          { kind: 'copy', direction: 'rightToLeft', path: 'b', version: file(2) },
          { kind: 'copy', direction: 'leftToRight', path: 'c', version: file(3) },
        ],
        batches: ['leftToRight rsync: a c', 'rightToLeft rsync: b'],
      },
      {
        description: 'a move on the right is applied from the left (its direction has the right as target)',
        steps: [{ kind: 'move', side: 'right', from: 'a', to: 'b', expect: file(9) }],
        batches: ['leftToRight move: a->b'],
      },
      {
        // helper-4: a conflict inside a directory the left renamed names its set-aside after the rename.
        description: 'renames carried over run before conflicts’ set-asides, then deletes, then copies',
        steps: [
          { kind: 'move', side: 'right', from: 'd', to: 'e', expect: file(9) },
          { kind: 'move', side: 'left', from: 'e/x', to: 'e/x.psync-conflict-1', expect: file(8) },
          { kind: 'delete', side: 'right', path: 'gone', expect: file(7) },
          { kind: 'copy', direction: 'rightToLeft', path: 'e/x', version: file(6) },
          { kind: 'copy', direction: 'leftToRight', path: 'e/x.psync-conflict-1', version: file(8) },
          { kind: 'conflict', path: 'e/x', loser: 'left', copy: 'e/x.psync-conflict-1' },
        ],
        batches: [
          'leftToRight move: d->e',
          'rightToLeft move aside: e/x->e/x.psync-conflict-1',
          'leftToRight delete: gone',
          'leftToRight rsync: e/x.psync-conflict-1',
          'rightToLeft rsync: e/x',
        ],
      },
    ]),
  )('%s', (_d, { steps, batches }) => {
    expect(show(plan(steps))).toEqual(batches);
  });

  test('a copy carries what its target held in the scan as `prev` (what the transfer may replace without a conflict)', () => {
    const scans = { left: new Map([['a', file(1)]]), right: new Map([['a', file(5, 2)]]) };
    expect(show(plan([{ kind: 'copy', direction: 'leftToRight', path: 'a', version: file(1) }]), scans)).toEqual(['leftToRight rsync: a(prev 5)']);
  });
});

describe('describeStep: the line -n lists', () => {
  test.each(
    described<{ description: string; step: Step; line: string }>([
      { description: 'a copy', step: { kind: 'copy', direction: 'leftToRight', path: 'a b', version: file(1) }, line: 'copy left->right "a b"' },
      { description: 'a move', step: { kind: 'move', side: 'right', from: 'a', to: 'b', expect: file(1) }, line: 'move on right "a" -> "b"' },
      { description: 'a delete', step: { kind: 'delete', side: 'left', path: 'x', expect: file(1) }, line: 'delete on left "x"' },
      {
        description: 'a conflict',
        step: { kind: 'conflict', path: 'p', loser: 'right', copy: 'p.psync-conflict-1' },
        line: 'conflict on "p": both sides changed it; the right side\'s version is kept as "p.psync-conflict-1"',
      },
    ]),
  )('%s', (_d, { step, line }) => {
    expect(describeStep(step)).toBe(line);
  });
});
