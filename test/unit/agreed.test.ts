import { describe, expect, test } from 'vitest';
import { adoptCutOff, agreedAfterMove, agreedAfterSend, asReported, deleteExpectation, holdsAgreed, movePlan, moveStillValid, isEcho, remadeBelow, type Listed } from '../../src/core/agreed.js';
import type { Agreed, Observed } from '../../src/core/reconcile.js';
import type { Action, Side, Stat } from '../../src/core/types.js';
import { described } from '../support/table.js';

const T = 1_700_000_000_000.25; // an mtime with a sub-millisecond part
const file = (ino: number, size = 10, mtimeMs = T, mode = 0o644): Stat => ({ type: 'file', ino, size, mtimeMs, mode });
const dir = (ino: number, mode = 0o755): Stat => ({ type: 'dir', ino, size: 4096, mtimeMs: T + 5, mode });
const agreed = (left: number, right: number, over: Partial<Agreed> = {}): Agreed => ({
  type: 'file',
  size: 10,
  mtimeMs: T,
  mode: 0o644,
  left: { ino: left },
  right: { ino: right },
  ...over,
});
const agreedDir = (mode = 0o755): Agreed => ({ type: 'dir', size: 0, mtimeMs: T, mode, left: { ino: 1 }, right: { ino: 2 } });
const archive = (entries: Record<string, Agreed>) => (path: string) => entries[path];

describe('isEcho: a report equal to what the archive holds for its side', () => {
  test.each(
    described<{ description: string; entries: Record<string, Agreed>; side: Side; action: Action; echo: boolean }>([
      { description: 'rsync of the agreed version with the recorded inode', entries: { a: agreed(11, 21) }, side: 'right', action: { kind: 'rsync', path: 'a', stat: file(21) }, echo: true },
      { description: 'the same from the left uses the left inode', entries: { a: agreed(11, 21) }, side: 'left', action: { kind: 'rsync', path: 'a', stat: file(11) }, echo: true },
      { description: 'the other side’s inode on this side is a replacement: a change', entries: { a: agreed(11, 21) }, side: 'left', action: { kind: 'rsync', path: 'a', stat: file(21) }, echo: false },
      { description: 'an unknown inode (0) in the archive matches any inode', entries: { a: agreed(0, 21) }, side: 'left', action: { kind: 'rsync', path: 'a', stat: file(99) }, echo: true },
      { description: 'another size is a change', entries: { a: agreed(11, 21) }, side: 'right', action: { kind: 'rsync', path: 'a', stat: file(21, 11) }, echo: false },
      { description: 'another mtime (1 ms later) is a change', entries: { a: agreed(11, 21) }, side: 'right', action: { kind: 'rsync', path: 'a', stat: file(21, 10, T + 1) }, echo: false },
      { description: 'another mode (chmod) is a change', entries: { a: agreed(11, 21) }, side: 'right', action: { kind: 'rsync', path: 'a', stat: file(21, 10, T, 0o600) }, echo: false },
      { description: 'a file where a directory was agreed is a change', entries: { a: agreedDir() }, side: 'right', action: { kind: 'rsync', path: 'a', stat: file(2) }, echo: false },
      { description: 'a path the archive does not hold is a change', entries: {}, side: 'right', action: { kind: 'rsync', path: 'a', stat: file(21) }, echo: false },
      { description: 'a directory is compared by mode only (its mtime and inode are noise)', entries: { d: agreedDir() }, side: 'left', action: { kind: 'rsync', path: 'd', stat: dir(77) }, echo: true },
      { description: 'a directory chmod is a change', entries: { d: agreedDir() }, side: 'left', action: { kind: 'rsync', path: 'd', stat: dir(1, 0o700) }, echo: false },
      { description: 'a delete of a path the archive does not hold is an echo (deleted by psync, or never agreed)', entries: {}, side: 'right', action: { kind: 'delete', path: 'a', stat: file(21) }, echo: true },
      { description: 'a delete of an agreed path is a change', entries: { a: agreed(11, 21) }, side: 'right', action: { kind: 'delete', path: 'a', stat: file(21) }, echo: false },
      { description: 'a move recorded as done (old name gone, new name agreed) is an echo', entries: { b: agreed(11, 21) }, side: 'right', action: { kind: 'move', from: 'a', to: 'b', stat: file(21) }, echo: true },
      { description: 'a move whose old name is still agreed is a change', entries: { a: agreed(11, 21) }, side: 'right', action: { kind: 'move', from: 'a', to: 'b', stat: file(21) }, echo: false },
      { description: 'a move onto a name agreed with other content is a change', entries: { b: agreed(11, 21, { size: 3 }) }, side: 'right', action: { kind: 'move', from: 'a', to: 'b', stat: file(21) }, echo: false },
    ]),
  )('%s', (_d, { entries, side, action, echo }) => {
    expect(isEcho(archive(entries), side, action)).toBe(echo);
  });

  test.each(
    described<{ description: string; gone: Record<string, Agreed>; action: Action; echo: boolean }>([
      {
        description: 'a late report of a file psync just deleted (same version, same inode) is an echo',
        gone: { a: agreed(11, 21) },
        action: { kind: 'rsync', path: 'a', stat: file(21) },
        echo: true,
      },
      { description: 'a new file at that name (another inode) is a change', gone: { a: agreed(11, 21) }, action: { kind: 'rsync', path: 'a', stat: file(22) }, echo: false },
      { description: 'a tombstone whose inode is unknown proves nothing', gone: { a: agreed(11, 0) }, action: { kind: 'rsync', path: 'a', stat: file(21) }, echo: false },
      { description: 'a directory made again at a deleted name (another inode) is a change', gone: { d: agreedDir() }, action: { kind: 'rsync', path: 'd', stat: dir(3) }, echo: false },
      { description: 'a late report of a directory psync made and then deleted (same inode) is an echo', gone: { d: agreedDir() }, action: { kind: 'rsync', path: 'd', stat: dir(2) }, echo: true },
    ]),
  )('%s', (_d, { gone, action, echo }) => {
    expect(isEcho(archive({}), 'right', action, archive(gone))).toBe(echo);
  });

  // Fuzz, seed 101 remote round 5: the right deleted a file as psync wrote the left's append over it; the
  // right's DELETE of the old version, judged after the send was agreed, deleted the append on the left.
  test.each(
    described<{ description: string; now: Agreed; gone: Agreed | undefined; stat: Stat; echo: boolean }>([
      { description: 'a delete of the version psync replaced since (tombstone, same inode) is an echo', now: agreed(11, 22, { size: 20 }), gone: agreed(10, 21), stat: file(21), echo: true },
      { description: 'a delete of psync’s own newer write is a change', now: agreed(11, 22, { size: 20 }), gone: agreed(10, 21), stat: file(22, 20), echo: false },
      { description: 'a delete of another file than the tombstone’s (renamed over it, then deleted) is a change', now: agreed(11, 22, { size: 20 }), gone: agreed(10, 21), stat: file(23), echo: false },
      { description: 'no tombstone: a change', now: agreed(11, 22, { size: 20 }), gone: undefined, stat: file(21), echo: false },
      { description: 'the inode psync wrote is unknown: a change (nothing proves the path holds the newer write)', now: agreed(11, 0, { size: 20 }), gone: agreed(10, 21), stat: file(21), echo: false },
      { description: 'a directory is never judged by the tombstone: a change', now: agreedDir(), gone: { ...agreedDir(), right: { ino: 3 } }, stat: dir(3), echo: false },
    ]),
  )('%s', (_d, { now, gone, stat, echo }) => {
    const deleted: Action = { kind: 'delete', path: 'a', stat };
    expect(isEcho(archive({ a: now }), 'right', deleted, archive(gone === undefined ? {} : { a: gone }))).toBe(echo);
  });

  // Issue 9, bug 4: a file still being written is sent twice; the target's report of the first copy comes after the second.
  test('a late report of the version agreed before the current one (same inode) is an echo', () => {
    const now = archive({ a: agreed(11, 22, { size: 20 }) });
    const before = archive({ a: agreed(10, 21) });
    expect(isEcho(now, 'right', { kind: 'rsync', path: 'a', stat: file(21) }, before)).toBe(true);
    expect(isEcho(now, 'right', { kind: 'rsync', path: 'a', stat: file(23) }, before)).toBe(false);
  });

  // Fuzz (paced mix), seed 9001 local round 23: chmod 640 then chmod 755 back on the right; the second was taken for a late report.
  test('the old version put back into the inode agreed now (a chmod back) is a change', () => {
    const now = archive({ a: agreed(11, 21, { mode: 0o640 }) });
    const before = archive({ a: agreed(11, 21, { mode: 0o755 }) });
    expect(isEcho(now, 'right', { kind: 'rsync', path: 'a', stat: file(21, 10, T, 0o755) }, before)).toBe(false);
    expect(isEcho(now, 'right', { kind: 'rsync', path: 'a', stat: file(21, 10, T, 0o640) }, before)).toBe(true);
  });
});

describe('movePlan: what a reported MOVE expects on the target, and whether the new name is sent after it', () => {
  // The source is the left (inode 11 agreed there); the target the right (inode 21).
  test.each(
    described<{ description: string; agreed: Agreed | undefined; moved: Stat; expect: Stat; thenSend: boolean }>([
      { description: 'a rename of the agreed version expects it (the target’s inode) and sends nothing', agreed: agreed(11, 21), moved: file(11), expect: file(21), thenSend: false },
      // Fuzz (full mix): an edit and a rename within one settle delay left the old name on the other side for good.
      { description: 'an edit in place then a rename expects the agreed version, then sends the edit', agreed: agreed(11, 21), moved: file(11, 30, T + 9), expect: file(21), thenSend: true },
      { description: 'a chmod then a rename sends the mode after the move', agreed: agreed(11, 21), moved: file(11, 10, T, 0o600), expect: file(21), thenSend: true },
      // conflict.test.ts under load: the helper's set-aside of a conflict copy, reported as a move, renamed the good file on the other side.
      { description: 'another file than the agreed one (another inode) is checked against the report', agreed: agreed(11, 21), moved: file(12, 30, T + 9), expect: file(12, 30, T + 9), thenSend: false },
      { description: 'an unknown source inode proves nothing: checked against the report', agreed: agreed(0, 21), moved: file(11, 30, T + 9), expect: file(11, 30, T + 9), thenSend: false },
      { description: 'a name the archive does not hold is checked against the report', agreed: undefined, moved: file(11), expect: file(11), thenSend: false },
      { description: 'a directory is checked against the report', agreed: agreedDir(), moved: dir(1, 0o700), expect: dir(1, 0o700), thenSend: false },
    ]),
  )('%s', (_d, { agreed: entry, moved, expect: wanted, thenSend }) => {
    expect(movePlan(entry, 'left', moved)).toEqual({ expect: wanted, thenSend });
  });
});

describe('asReported', () => {
  test.each(
    described<{ description: string; entries: Record<string, Agreed>; action: Action; want: 'move' | 'rsync' }>([
      { description: 'a rename of the agreed file (its inode) stays a move', entries: { a: agreed(11, 21) }, action: { kind: 'move', from: 'a', to: 'b', stat: file(21) }, want: 'move' },
      {
        description: 'a rename of another file at an agreed name (the helper set its own version aside) is the arrival of the new name',
        entries: { a: agreed(11, 21) },
        action: { kind: 'move', from: 'a', to: 'a.psync-conflict-x', stat: file(22) },
        want: 'rsync',
      },
      // Fuzz (full mix), seed 505 local round 9: the left's edit of f was sent to the right after the right renamed f; the rename, applied after, took the edit away on the left.
      { description: 'psync wrote the old name since (the other side’s edit): the arrival of the new name', entries: { f: agreed(11, 22) }, action: { kind: 'move', from: 'f', to: 'r', stat: file(21) }, want: 'rsync' },
      { description: 'an unknown inode in the archive proves nothing: a move', entries: { a: agreed(11, 0) }, action: { kind: 'move', from: 'a', to: 'b', stat: file(22) }, want: 'move' },
      // A swap through a third name: the last move's old name is not agreed yet when it is judged.
      { description: 'a move of a name the archive does not hold stays a move (its helper finds out)', entries: {}, action: { kind: 'move', from: 't', to: 'b', stat: file(21) }, want: 'move' },
      { description: 'a directory move stays a move', entries: { d: agreedDir() }, action: { kind: 'move', from: 'd', to: 'e', stat: dir(99) }, want: 'move' },
    ]),
  )('%s', (_d, { entries, action, want }) => {
    expect(asReported(archive(entries), 'right', action).kind).toBe(want);
  });
});

describe('moveStillValid', () => {
  const move: Action = { kind: 'move', from: 'a', to: 'b', stat: file(11) };
  test.each(
    described<{ description: string; entries: Record<string, Agreed>; want: 'move' | 'superseded' }>([
      { description: 'nothing agreed at the new name: a move', entries: { a: agreed(11, 21) }, want: 'move' },
      { description: 'the new name agreed with the moved file: a move', entries: { b: agreed(11, 21) }, want: 'move' },
      // conflict.test.ts: `mv a b` on the left while the right edits b; the right's b reached the left first.
      { description: 'the new name since agreed with another file on the source: superseded', entries: { a: agreed(11, 21), b: agreed(12, 22) }, want: 'superseded' },
      { description: 'an unknown inode at the new name proves nothing: a move', entries: { b: agreed(0, 22) }, want: 'move' },
    ]),
  )('%s', (_d, { entries, want }) => {
    expect(moveStillValid(archive(entries), 'left', move as Extract<Action, { kind: 'move' }>)).toBe(want);
  });
});

const listedOf = (stat: Stat): Listed => ({ isDir: stat.type === 'dir', size: stat.size, mtimeSeconds: Math.floor(stat.mtimeMs / 1000) });

describe('agreedAfterSend: the archive entry after rsync sent a path', () => {
  test.each(
    described<{ description: string; sent: Stat; listed: Listed | undefined; now: Stat | undefined; want: Agreed | undefined }>([
      {
        description: 'the target holds what was sent: both inodes are recorded',
        sent: file(11),
        listed: listedOf(file(11)),
        now: file(21),
        want: agreed(11, 21),
      },
      {
        description: 'a file still being written: the target got a snapshot, the source moved on; the snapshot is agreed, the source inode unknown (bug 4)',
        sent: file(11, 50, T + 2_000),
        listed: listedOf(file(0, 30)),
        now: file(21, 30),
        want: agreed(0, 21, { size: 30 }),
      },
      {
        // The race of conflict.test.ts: v5 written on the target in the same second, same size, right after rsync wrote v4.
        description: 'the target edited right after the transfer, same size and second: the sent version is agreed, the target inode unknown',
        sent: file(11, 10, T),
        listed: listedOf(file(11, 10, T)),
        now: file(21, 10, T + 150),
        want: agreed(11, 0),
      },
      {
        description: 'the target changed again after the transfer: the sent version is agreed, the target inode unknown',
        sent: file(11),
        listed: listedOf(file(11)),
        now: file(21, 99, T + 9_000),
        want: agreed(11, 0),
      },
      {
        description: 'not in the transfer list (vanished on the source): nothing is recorded',
        sent: file(11),
        listed: undefined,
        now: file(21),
        want: undefined,
      },
      {
        description: 'a directory: the sent mode, the target inode unknown',
        sent: dir(5, 0o750),
        listed: { isDir: true, size: 0, mtimeSeconds: 0 },
        now: undefined,
        want: { type: 'dir', size: 4096, mtimeMs: T + 5, mode: 0o750, left: { ino: 5 }, right: { ino: 0 } },
      },
      {
        description: 'the list confirms neither version (another mtime): nothing is recorded',
        sent: file(11),
        listed: listedOf(file(0, 77, T - 60_000)),
        now: file(21, 66),
        want: undefined,
      },
      {
        description: 'a file growing while rsync read it arrives longer than listed: what the target holds, with rsync’s mtime, is agreed (bug 4)',
        sent: file(11, 40),
        listed: listedOf(file(0, 50)),
        now: file(21, 64),
        want: agreed(0, 21, { size: 64 }),
      },
    ]),
  )('%s', (_d, { sent, listed, now, want }) => {
    expect(agreedAfterSend('left', sent, listed, now)).toEqual(want);
  });

  test('from the right, the identities land on the right sides', () => {
    expect(agreedAfterSend('right', file(21), listedOf(file(21)), file(11))).toEqual(agreed(11, 21));
  });
});

describe('agreedAfterMove', () => {
  test('the target holds the moved version: both inodes', () => {
    expect(agreedAfterMove('left', file(11), file(21))).toEqual(agreed(11, 21));
  });
  test('the target holds something else at the new name: its inode is unknown', () => {
    expect(agreedAfterMove('left', file(11), file(21, 3))).toEqual(agreed(11, 0));
  });
  test('a FIFO or a socket is agreed like a file (rsync makes it again)', () => {
    expect(agreedAfterMove('left', { ...file(11, 0), type: 'other' }, { ...file(21, 0), type: 'other' })).toEqual(agreed(11, 21, { type: 'other', size: 0 }));
  });
});

describe('deleteExpectation: what the target must still hold for a DELETE', () => {
  test.each(described<{ description: string; agreed: Agreed | undefined; reported: Stat; expected: Stat }>([
    { description: 'an agreed path: the agreed version, with the target\'s inode', agreed: agreed(1, 2), reported: file(1), expected: file(2) },
    // Issue 10, fuzz: overwrite then delete within one settle delay reported the edited version, the target refused and copied it back.
    { description: 'edited on the source just before the delete: still the agreed version', agreed: agreed(1, 2), reported: file(1, 81, T + 20_000), expected: file(2) },
    { description: 'a path the archive does not hold: the reported stat', agreed: undefined, reported: file(7, 5), expected: file(7, 5) },
  ]))('%s', (_description, { agreed: entry, reported, expected }) => {
    expect(deleteExpectation(entry, 'right', reported)).toEqual(expected);
  });
});

describe('adoptCutOff: what a cut-off transfer sent is agreed where its target holds it', () => {
  const seen = (ino: number, size = 10, mtimeMs = T): Observed => ({ type: 'file', size, mtimeMs, mode: 0o644, ino });
  const sent = new Map([['f', agreed(1, 0)]]);
  test.each(described<{ description: string; target: Array<[string, Observed]>; source: Array<[string, Observed]>; adopted: Array<[string, Agreed]> }>([
    { description: 'the target holds it whole and the source still does: agreed with both inodes', target: [['f', seen(2)]], source: [['f', seen(1)]], adopted: [['f', agreed(1, 2)]] },
    { description: 'the source changed it since: agreed without the source\'s inode (its change is then its own)', target: [['f', seen(2)]], source: [['f', seen(1, 99, T + 5)]], adopted: [['f', agreed(0, 2)]] },
    // Issue 10: rsync lists a file as it starts it; one cut off halfway never reached its name.
    { description: 'the target does not hold it (cut off before its rename): not agreed', target: [], source: [['f', seen(1)]], adopted: [] },
    { description: 'the target holds another version: not agreed', target: [['f', seen(2, 5)]], source: [['f', seen(1)]], adopted: [] },
  ]))('%s', (_description, { target, source, adopted }) => {
    expect([...adoptCutOff(sent, 'right', { left: new Map(source), right: new Map(target) })]).toEqual(adopted);
  });
});

describe('holdsAgreed', () => {
  test('a symlink is compared like a file: size (target length), mtime and inode', () => {
    const link: Agreed = agreed(11, 21, { type: 'symlink', size: 4, mode: 0o777 });
    expect(holdsAgreed(link, 'left', { type: 'symlink', ino: 11, size: 4, mtimeMs: T, mode: 0o777 })).toBe(true);
    expect(holdsAgreed(link, 'left', { type: 'symlink', ino: 12, size: 4, mtimeMs: T, mode: 0o777 })).toBe(false);
  });
});

// Fuzz (full mix), seed 101 remote round 8: the left renamed m while rsync wrote the right's edit of m/d/f
// into it; rsync made m/d again and the left ended with both m/d/f and its renamed copy.
describe('remadeBelow: the directories a send made again on its target, and the sends below them', () => {
  const made = (path: string) => ({ path, isDir: true, created: true });
  test.each(
    described<{ description: string; listed: { path: string; isDir: boolean; created: boolean }[]; sent: string[]; entries: Record<string, Agreed>; dirs: string[]; sends: string[] }>([
      { description: 'an agreed directory rsync made again: it and what was sent below it', listed: [made('m'), made('m/d'), { path: 'm/d/f', isDir: false, created: true }], sent: ['m/d/f', 'x'], entries: { m: agreedDir(), 'm/d': agreedDir() }, dirs: ['m/d', 'm'], sends: ['m/d/f'] },
      { description: 'a new directory rsync made for a new file (never agreed) is no remake', listed: [made('n')], sent: ['n/f'], entries: {}, dirs: [], sends: [] },
      { description: 'a new directory below a remade one goes with it', listed: [made('m'), made('m/new')], sent: ['m/new/f'], entries: { m: agreedDir() }, dirs: ['m/new', 'm'], sends: ['m/new/f'] },
      { description: 'a directory the batch sends itself is not a remake', listed: [made('m')], sent: ['m', 'm/f'], entries: { m: agreedDir() }, dirs: [], sends: [] },
      { description: 'a directory rsync only updated (not made) is no remake', listed: [{ path: 'm', isDir: true, created: false }], sent: ['m/f'], entries: { m: agreedDir() }, dirs: [], sends: [] },
      { description: 'a name agreed as a file that rsync made as a directory is not judged here', listed: [made('m')], sent: ['m/f'], entries: { m: agreed(1, 2) }, dirs: [], sends: [] },
    ]),
  )('%s', (_d, { listed, sent, entries, dirs, sends }) => {
    expect(remadeBelow(listed, sent, archive(entries))).toEqual({ dirs, sends });
  });
});
