import { describe, expect, test } from 'vitest';
import { ActionQueue, footprintOf, HARD_MAX_QUEUED_ACTIONS, MAX_BATCH_ACTIONS, MAX_QUEUED_ACTIONS, QueueBound, RESUME_QUEUED_ACTIONS, waitsForBatch, type Admission, type Batch } from '../../src/core/batch.js';
import type { Action, Side, Stat } from '../../src/core/types.js';
import { described } from '../support/table.js';


const stat = (mtimeMs: number, size = 1): Stat => ({ type: 'file', ino: 1, size, mtimeMs, mode: 0o644 });
const rsync = (path: string, mtimeMs = 1_000, size = 1): Action => ({ kind: 'rsync', path, stat: stat(mtimeMs, size) });
const move = (from: string, to: string): Action => ({ kind: 'move', from, to, stat: stat(1_000) });
const del = (path: string): Action => ({ kind: 'delete', path, stat: stat(1_000) });
const mkdirAt = (path: string, mtimeMs: number): Action => ({ kind: 'rsync', path, stat: { ...stat(mtimeMs), type: 'dir' } });

interface Push {
  from: Side;
  action: Action;
}
const L = (action: Action): Push => ({ from: 'left', action });
const R = (action: Action): Push => ({ from: 'right', action });

/** A batch in one line: `leftToRight rsync a b c`, with each rsync's mtime when it is not 1000. */
const show = (batch: Batch): string =>
  [
    batch.direction,
    batch.kind,
    ...batch.actions.map((a) =>
      a.kind === 'move' ? `${a.from}->${a.to}` : a.stat.mtimeMs === 1_000 ? a.path : `${a.path}@${a.stat.mtimeMs}`,
    ),
  ].join(' ');

function drain(queue: ActionQueue, max?: number): string[] {
  const out: string[] = [];
  for (let batch = queue.takeBatch(max); batch !== undefined; batch = queue.takeBatch(max)) out.push(show(batch));
  return out;
}

describe('ActionQueue', () => {
  test.each(described<{ description: string; pushes: Push[]; max?: number; batches: string[] }>([
    { description: 'an empty queue has no batch', pushes: [], batches: [] },
    {
      description: 'consecutive rsyncs in one direction form one batch',
      pushes: [L(rsync('a')), L(rsync('b')), L(rsync('c'))],
      batches: ['leftToRight rsync a b c'],
    },
    {
      description: 'consecutive moves form one batch, in order',
      pushes: [R(move('a', 'b')), R(move('c', 'd'))],
      batches: ['rightToLeft move a->b c->d'],
    },
    {
      description: 'a change of kind cuts the batch',
      pushes: [L(rsync('a')), L(del('b')), L(del('c')), L(rsync('d'))],
      batches: ['leftToRight rsync a', 'leftToRight delete b c', 'leftToRight rsync d'],
    },
    {
      description: 'a change of direction cuts the batch',
      pushes: [L(rsync('a')), R(rsync('b')), L(rsync('c'))],
      batches: ['leftToRight rsync a', 'rightToLeft rsync b', 'leftToRight rsync c'],
    },
    {
      description: 'order is kept across kinds: a MOVE queued first runs before the RSYNC of its destination',
      pushes: [L(move('a', 'b')), L(rsync('b'))],
      batches: ['leftToRight move a->b', 'leftToRight rsync b'],
    },
    {
      description: 'order is kept across kinds: an RSYNC queued first runs before a MOVE of it',
      pushes: [L(rsync('a')), L(move('a', 'b')), L(del('c'))],
      batches: ['leftToRight rsync a', 'leftToRight move a->b', 'leftToRight delete c'],
    },
    {
      description: 'duplicate rsyncs of one path in a batch become one, with the last stat, at the first place',
      pushes: [L(rsync('a', 1_001)), L(rsync('b')), L(rsync('a', 1_002)), L(rsync('c'))],
      batches: ['leftToRight rsync a@1002 b c'],
    },
    {
      description: 'duplicate rsyncs in different batches are not merged across a cut',
      pushes: [L(rsync('a', 1_001)), L(del('x')), L(rsync('a', 1_002))],
      batches: ['leftToRight rsync a@1001', 'leftToRight delete x', 'leftToRight rsync a@1002'],
    },
    {
      description: 'a batch holds at most max actions',
      pushes: [L(rsync('a')), L(rsync('b')), L(rsync('c')), L(rsync('d')), L(rsync('e'))],
      max: 2,
      batches: ['leftToRight rsync a b', 'leftToRight rsync c d', 'leftToRight rsync e'],
    },
    {
      description: 'max applies to moves too',
      pushes: [L(move('a', 'b')), L(move('c', 'd')), L(move('e', 'f'))],
      max: 2,
      batches: ['leftToRight move a->b c->d', 'leftToRight move e->f'],
    },
    {
      description: 'conflict: both sides rsync one path, the newer mtime (incoming) is kept',
      pushes: [L(rsync('a', 1_001)), R(rsync('a', 1_002))],
      batches: ['rightToLeft rsync a@1002'],
    },
    {
      description: 'conflict: both sides rsync one path, the newer mtime (queued) is kept',
      pushes: [L(rsync('a', 1_002)), R(rsync('a', 1_001))],
      batches: ['leftToRight rsync a@1002'],
    },
    {
      description: 'conflict on one path leaves other paths alone',
      pushes: [L(rsync('a', 1_001)), L(rsync('b')), R(rsync('a', 1_005)), R(rsync('c'))],
      batches: ['leftToRight rsync b', 'rightToLeft rsync a@1005 c'],
    },
    {
      // Issue 11: tar x on the left set a directory's mode after rsync sent it; the right reported the mode rsync set there too.
      description: 'both sides report a directory with the same mode: no conflict, the one queued first carries it',
      pushes: [L(mkdirAt('t', 1_001)), R(mkdirAt('t', 1_009))],
      batches: ['leftToRight rsync t@1001'],
    },
    {
      description: 'a directory with another mode on each side is still a conflict: the newer mtime wins',
      pushes: [L(mkdirAt('t', 1_001)), R({ kind: 'rsync', path: 't', stat: { ...stat(1_009), type: 'dir', mode: 0o700 } })],
      batches: ['rightToLeft rsync t@1009'],
    },
    {
      description: 'two rsyncs of one path from the same side are not a conflict',
      pushes: [L(rsync('a', 1_002)), L(rsync('a', 1_001))],
      batches: ['leftToRight rsync a@1001'],
    },
    {
      description: 'the same name in another kind is not an rsync conflict',
      pushes: [L(del('a')), R(rsync('a', 1_001))],
      batches: ['leftToRight delete a', 'rightToLeft rsync a@1001'],
    },
  ]))('%s', (_description, { pushes, max, batches }) => {
    const queue = new ActionQueue();
    for (const { from, action } of pushes) queue.enqueue(from, action);
    expect(drain(queue, max)).toEqual(batches);
    expect(queue.length).toBe(0);
  });

  // After a rename, what is queued below the old name is due under the new one (issue 9, bug 5:
  // left `mv d e` while the right edits `d/f` must not make `d` again on the left).
  test.each(described<{ description: string; pushes: Push[]; op: (q: ActionQueue) => void; batches: string[] }>([
    {
      description: "rebaseSource renames that side's queued actions below the old name, in place",
      pushes: [R(rsync('d/f')), R(rsync('x')), R(del('d/g'))],
      op: (q) => q.rebaseSource('right', 'd', 'e'),
      batches: ['rightToLeft rsync e/f x', 'rightToLeft delete e/g'],
    },
    {
      description: "rebaseSource leaves the other side's actions and names that only share a prefix alone",
      pushes: [L(rsync('d/f')), R(rsync('dd/f')), R(rsync('d'))],
      op: (q) => q.rebaseSource('right', 'd', 'e'),
      batches: ['leftToRight rsync d/f', 'rightToLeft rsync dd/f e'],
    },
    {
      description: "deferUnder moves the other side's sends below the old name behind the rename, renamed",
      pushes: [R(rsync('d/f')), R(rsync('x')), L(move('d', 'e'))],
      op: (q) => q.deferUnder('right', 'd', 'e'),
      batches: ['rightToLeft rsync x', 'leftToRight move d->e', 'rightToLeft rsync e/f'],
    },
    {
      description: 'deferUnder renames both names of a move below the old name',
      pushes: [R(move('d/a', 'd/b')), L(move('d', 'e'))],
      op: (q) => q.deferUnder('right', 'd', 'e'),
      batches: ['leftToRight move d->e', 'rightToLeft move e/a->e/b'],
    },
    {
      // Fuzz, seed 101 local round 3: the right's DELETE, rebased, deleted on the left what the move's fallback had sent to the right.
      description: 'deferUnder drops the other side’s delete of the renamed name itself: the rename wins',
      pushes: [R(del('a')), L(move('a', 'b'))],
      op: (q) => q.deferUnder('right', 'a', 'b'),
      batches: ['leftToRight move a->b'],
    },
    {
      description: 'deferUnder drops an rm -rf of the renamed directory (children and the directory), keeps other deletes',
      pushes: [R(del('d/f')), R(del('d')), R(del('x')), L(move('d', 'e'))],
      op: (q) => q.deferUnder('right', 'd', 'e'),
      batches: ['rightToLeft delete x', 'leftToRight move d->e'],
    },
    {
      // Fuzz (full mix), seed 303 remote round 5: the left's edit of c, rebased under the right's new name, was never sent as c.
      description: 'deferUnder leaves a send of the renamed file itself where it is: the rename is refused on the side that edited it',
      pushes: [L(rsync('c')), R(move('c', 'r'))],
      op: (q) => q.deferUnder('left', 'c', 'r'),
      batches: ['leftToRight rsync c', 'rightToLeft move c->r'],
    },
    {
      // Fuzz (full mix), seed 303 local round 11: both sides renamed d; the left's move, rebased, renamed the right's copy away on one side.
      description: 'deferUnder leaves the other side’s own rename of the same entry where it is',
      pushes: [L(move('d', 'x')), R(move('d', 'y'))],
      op: (q) => q.deferUnder('left', 'd', 'y'),
      batches: ['leftToRight move d->x', 'rightToLeft move d->y'],
    },
    {
      description: 'deferUnder rebases a delete of a child alone (the directory stays): it is due under the new name',
      pushes: [R(del('d/f')), L(move('d', 'e'))],
      op: (q) => q.deferUnder('right', 'd', 'e'),
      batches: ['leftToRight move d->e', 'rightToLeft delete e/f'],
    },
    {
      description: 'a rebased rsync still meets its rival from the other side as a conflict',
      pushes: [R(rsync('d/f', 1_001))],
      op: (q) => {
        q.rebaseSource('right', 'd', 'e');
        q.enqueue('left', rsync('e/f', 1_005));
      },
      batches: ['leftToRight rsync e/f@1005'],
    },
  ]))('%s', (_description, { pushes, op, batches }) => {
    const queue = new ActionQueue();
    for (const { from, action } of pushes) queue.enqueue(from, action);
    op(queue);
    expect(drain(queue)).toEqual(batches);
  });

  // Fuzz (full mix), seed 606 remote round 4: `mv d e; rm e/f` on one side; the delete, judged before the move was applied, was dropped.
  test.each(described<{ description: string; pushes: Push[]; take: number; side: Side; path: string; moving: boolean }>([
    { description: 'a path below a queued rename’s new name', pushes: [R(move('d', 'e'))], take: 0, side: 'right', path: 'e/m/f', moving: true },
    { description: 'the new name itself', pushes: [R(move('d', 'e'))], take: 0, side: 'right', path: 'e', moving: true },
    { description: 'the other side’s rename does not count', pushes: [L(move('d', 'e'))], take: 0, side: 'right', path: 'e/f', moving: false },
    { description: 'a rename already taken (being applied) does not count', pushes: [R(move('d', 'e'))], take: 1, side: 'right', path: 'e/f', moving: false },
    { description: 'a rename rebased by the other side’s rename counts under its new names', pushes: [R(move('d/a', 'd/b')), L(move('d', 'x'))], take: 0, side: 'right', path: 'x/b', moving: true },
  ]))('movingOnto: %s', (_description, { pushes, take, side, path, moving }) => {
    const queue = new ActionQueue();
    for (const { from, action } of pushes) queue.enqueue(from, action);
    if (pushes.some((p) => p.from === 'left')) queue.deferUnder('right', 'd', 'x');
    for (let i = 0; i < take; i++) queue.takeBatch();
    expect(queue.movingOnto(side, path)).toBe(moving);
  });

  test.each(described<{ description: string; first: Push; second: Push; dropped: 'first' | 'second' }>([
    { description: 'the older queued change is reported dropped', first: L(rsync('a', 1_001)), second: R(rsync('a', 1_002)), dropped: 'first' },
    { description: 'the older incoming change is reported dropped', first: L(rsync('a', 1_002)), second: R(rsync('a', 1_001)), dropped: 'second' },
    { description: 'right first, left newer', first: R(rsync('a', 1_001)), second: L(rsync('a', 1_009)), dropped: 'first' },
    // Fuzz (full mix), seed 101 local round 3: a newer file won over a directory; rsync cannot put a file over a directory, and both stayed.
    { description: 'a directory beats a newer file', first: R(mkdirAt('a', 1_001)), second: L(rsync('a', 1_009)), dropped: 'second' },
    { description: 'an incoming directory beats a newer queued file', first: L(rsync('a', 1_009)), second: R(mkdirAt('a', 1_001)), dropped: 'first' },
  ]))('conflict report: %s', (_description, { first, second, dropped }) => {
    const queue = new ActionQueue();
    expect(queue.enqueue(first.from, first.action)).toEqual({});
    const result = queue.enqueue(second.from, second.action);
    const loser = dropped === 'first' ? first : second;
    expect(result.dropped?.action).toBe(loser.action);
    expect(result.dropped?.direction).toBe(loser.from === 'left' ? 'leftToRight' : 'rightToLeft');
    expect(queue.length).toBe(1);
  });

  test('the same directory reported by both sides reports nothing dropped (no conflict is logged)', () => {
    const queue = new ActionQueue();
    expect(queue.enqueue('left', mkdirAt('t', 1_001))).toEqual({});
    expect(queue.enqueue('right', mkdirAt('t', 1_009))).toEqual({});
    expect(queue.length).toBe(1);
  });

  test('a non-conflicting enqueue reports nothing dropped and grows the queue', () => {
    const queue = new ActionQueue();
    expect(queue.enqueue('left', rsync('a'))).toEqual({});
    expect(queue.enqueue('right', rsync('b'))).toEqual({});
    expect(queue.length).toBe(2);
  });

  test('the default max is MAX_BATCH_ACTIONS', () => {
    const queue = new ActionQueue();
    for (let i = 0; i <= MAX_BATCH_ACTIONS; i++) queue.enqueue('left', rsync(`f${i}`));
    expect(queue.takeBatch()?.actions).toHaveLength(MAX_BATCH_ACTIONS);
    expect(queue.takeBatch()?.actions).toHaveLength(1);
    expect(queue.takeBatch()).toBeUndefined();
  });
});

describe('a merged rsync keeps what the target still holds', () => {
  const withPrev = (path: string, mtimeMs: number, prevMtimeMs?: number): Action =>
    prevMtimeMs === undefined ? rsync(path, mtimeMs) : { kind: 'rsync', path, stat: stat(mtimeMs), prev: stat(prevMtimeMs) };
  const merged = (...actions: Action[]): Action | undefined => {
    const queue = new ActionQueue();
    for (const action of actions) queue.enqueue('left', action);
    return queue.takeBatch()?.actions[0];
  };

  test.each(described<{ description: string; actions: Action[]; prev: number | undefined }>([
    { description: 'the first report\'s prev: the target never saw the second one\'s', actions: [withPrev('a', 2, 1), withPrev('a', 3, 2)], prev: 1 },
    { description: 'a new file saved again is still new: no prev', actions: [withPrev('a', 2), withPrev('a', 3, 2)], prev: undefined },
    { description: 'a single report keeps its own prev', actions: [withPrev('a', 5, 4)], prev: 4 },
  ]))('%s', (_description, { actions, prev }) => {
    const action = merged(...actions);
    expect(action?.kind).toBe('rsync');
    if (action?.kind !== 'rsync') return;
    expect(action.stat.mtimeMs).toBe(actions.at(-1)!.stat.mtimeMs);
    expect(action.prev?.mtimeMs).toBe(prev);
  });
});

describe('QueueBound: the queue stays bounded and no report is dropped', () => {
  type Step = { report: Side; queued: number; admission: Admission } | { drain: number; resume: Side[] };
  test.each(described<{ description: string; steps: Step[] }>([
    {
      description: 'below the limit every report is taken',
      steps: [{ report: 'left', queued: 0, admission: 'accept' }, { report: 'right', queued: MAX_QUEUED_ACTIONS - 1, admission: 'accept' }],
    },
    {
      description: 'at the limit the reporting side is asked to pause, once; its in-flight reports are still taken',
      steps: [
        { report: 'left', queued: MAX_QUEUED_ACTIONS, admission: 'acceptAndPause' },
        { report: 'left', queued: MAX_QUEUED_ACTIONS + 1, admission: 'accept' },
        { report: 'left', queued: HARD_MAX_QUEUED_ACTIONS - 1, admission: 'accept' },
      ],
    },
    {
      description: 'each side is paused on its own first report past the limit',
      steps: [
        { report: 'left', queued: MAX_QUEUED_ACTIONS, admission: 'acceptAndPause' },
        { report: 'right', queued: MAX_QUEUED_ACTIONS + 5, admission: 'acceptAndPause' },
      ],
    },
    {
      description: 'a side that goes on past the hard limit overflows (the brain stops rather than drop)',
      steps: [
        { report: 'right', queued: MAX_QUEUED_ACTIONS, admission: 'acceptAndPause' },
        { report: 'right', queued: HARD_MAX_QUEUED_ACTIONS, admission: 'overflow' },
      ],
    },
    {
      description: 'the paused sides resume once the queue is down to the resume mark, and only once',
      steps: [
        { report: 'left', queued: MAX_QUEUED_ACTIONS, admission: 'acceptAndPause' },
        { report: 'right', queued: MAX_QUEUED_ACTIONS, admission: 'acceptAndPause' },
        { drain: RESUME_QUEUED_ACTIONS + 1, resume: [] },
        { drain: RESUME_QUEUED_ACTIONS, resume: ['left', 'right'] },
        { drain: 0, resume: [] },
      ],
    },
    {
      description: 'a resumed side is paused again when the queue fills again',
      steps: [
        { report: 'left', queued: MAX_QUEUED_ACTIONS, admission: 'acceptAndPause' },
        { drain: 10, resume: ['left'] },
        { report: 'left', queued: MAX_QUEUED_ACTIONS, admission: 'acceptAndPause' },
      ],
    },
    { description: 'nothing paused, nothing to resume', steps: [{ drain: 0, resume: [] }] },
  ]))('%s', (_description, { steps }) => {
    const bound = new QueueBound();
    for (const step of steps) {
      if ('report' in step) expect(bound.admit(step.report, step.queued), JSON.stringify(step)).toBe(step.admission);
      else expect(bound.drained(step.drain), JSON.stringify(step)).toEqual(step.resume);
    }
  });

  test('the limits leave room for what a side sent before its PAUSE arrived', () => {
    expect(RESUME_QUEUED_ACTIONS).toBeLessThan(MAX_QUEUED_ACTIONS);
    expect(HARD_MAX_QUEUED_ACTIONS - MAX_QUEUED_ACTIONS).toBeGreaterThanOrEqual(MAX_BATCH_ACTIONS);
  });
});

describe('waitsForBatch: reports that wait until the running batch is recorded', () => {
  const running = (kind: Batch['kind'], actions: Action[]): Batch => ({ direction: 'leftToRight', kind, actions });
  test.each(described<{ description: string; batch: Batch; report: Action; waits: boolean }>([
    { description: 'a path the batch sends', batch: running('rsync', [rsync('d/f')]), report: rsync('d/f'), waits: true },
    { description: 'a path below one the batch sends', batch: running('rsync', [mkdirAt('d', 1_000)]), report: rsync('d/f'), waits: true },
    // Issue 11: tar x on the left; rsync set the right's `t` (an implied parent of t/d/f) and the right's report of it, judged at once, was taken for a change there: a "conflict" on a directory only the left had changed.
    { description: 'a directory above a path an rsync batch writes (rsync sets its mode and mtime)', batch: running('rsync', [rsync('t/d/f')]), report: mkdirAt('t', 1_000), waits: true },
    { description: 'the nearest parent too', batch: running('rsync', [rsync('t/d/f')]), report: mkdirAt('t/d', 1_000), waits: true },
    { description: 'a directory above a path a delete batch removes does not wait (the helper sets no attribute)', batch: running('delete', [del('t/d/f')]), report: mkdirAt('t', 1_000), waits: false },
    { description: 'a sibling does not wait', batch: running('rsync', [rsync('t/d/f')]), report: rsync('t/e'), waits: false },
    { description: 'a move whose new name the batch sends', batch: running('rsync', [rsync('b')]), report: move('a', 'b'), waits: true },
    { description: 'a path the running move renames away', batch: running('move', [move('a', 'b')]), report: del('a'), waits: true },
  ]))('%s', (_description, { batch, report, waits }) => {
    expect(waitsForBatch(footprintOf(batch), report)).toBe(waits);
  });
});
