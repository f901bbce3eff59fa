import { describe, expect, test } from 'vitest';
import { ActionQueue } from '../../src/core/batch.js';
import { EchoLedger, sameAsMerged } from '../../src/core/echo.js';
import type { Stat } from '../../src/core/types.js';
import { parseTransferLine } from '../../src/transfer/rsync.js';

const local = (y: number, mo: number, d: number, h: number, mi: number, s: number): number => new Date(y, mo - 1, d, h, mi, s).getTime() / 1000;
const file = (size: number, mtimeMs: number): Stat => ({ type: 'file', ino: 1, size, mtimeMs, mode: 0o644 });

describe('parseTransferLine: rsync -8 --out-format="%l %M %n"', () => {
  test.each([
    { description: 'a plain file', line: '12 2021/03/04-05:06:07 a/b.txt', want: { path: 'a/b.txt', isDir: false, size: 12, mtimeSeconds: local(2021, 3, 4, 5, 6, 7) } },
    { description: 'a directory ends with a slash', line: '4096 2021/03/04-05:06:07 a/sub/', want: { path: 'a/sub', isDir: true, size: 4096, mtimeSeconds: local(2021, 3, 4, 5, 6, 7) } },
    { description: 'a newline is \\#012', line: '1 2020/01/01-00:00:00 new\\#012line', want: { path: 'new\nline', isDir: false, size: 1, mtimeSeconds: local(2020, 1, 1, 0, 0, 0) } },
    { description: 'a literal backslash-hash is escaped as \\#134#', line: '1 2020/01/01-00:00:00 lit\\#134#012', want: { path: 'lit\\#012', isDir: false, size: 1, mtimeSeconds: local(2020, 1, 1, 0, 0, 0) } },
    { description: 'a lone backslash stays', line: '1 2020/01/01-00:00:00 back\\slash', want: { path: 'back\\slash', isDir: false, size: 1, mtimeSeconds: local(2020, 1, 1, 0, 0, 0) } },
    { description: 'spaces in the name', line: '1 2020/01/01-00:00:00 two  spaces ', want: { path: 'two  spaces ', isDir: false, size: 1, mtimeSeconds: local(2020, 1, 1, 0, 0, 0) } },
    { description: 'UTF-8 bytes (read as latin1) decode', line: Buffer.from('1 2020/01/01-00:00:00 café').toString('latin1'), want: { path: 'café', isDir: false, size: 1, mtimeSeconds: local(2020, 1, 1, 0, 0, 0) } },
    { description: 'a non-UTF-8 byte is kept as an escaped surrogate', line: '1 2020/01/01-00:00:00 bad\xff', want: { path: 'bad\udcff', isDir: false, size: 1, mtimeSeconds: local(2020, 1, 1, 0, 0, 0) } },
  ])('$description', ({ line, want }) => {
    expect(parseTransferLine(line)).toEqual(want);
  });

  test.each([
    { description: 'the root itself', line: '4096 2020/01/01-00:00:00 ./' },
    { description: 'a line that is not a transfer', line: 'sending incremental file list' },
    { description: 'an empty line', line: '' },
  ])('ignores $description', ({ line }) => {
    expect(parseTransferLine(line)).toBeUndefined();
  });
});

describe('sameAsMerged', () => {
  const merged = { kind: 'merged' as const, path: 'f', isDir: false, size: 5, mtimeSeconds: 1000 };
  test.each([
    { description: 'same size, mtime within the listed second', stat: file(5, 1_000_999), want: true },
    { description: 'another size', stat: file(6, 1_000_500), want: false },
    { description: 'a later second (edited since)', stat: file(5, 1_001_000), want: false },
    { description: 'a directory where a file was written', stat: { type: 'dir', ino: 1, size: 5, mtimeMs: 1_000_000, mode: 0o755 } as Stat, want: false },
  ])('$description', ({ stat, want }) => {
    expect(sameAsMerged(merged, stat)).toBe(want);
  });

  test('a directory the merge wrote matches any directory report', () => {
    expect(sameAsMerged({ ...merged, isDir: true }, { type: 'dir', ino: 2, size: 4096, mtimeMs: 9, mode: 0o700 })).toBe(true);
  });

  test('the ledger drops a late report of a merged file once, and a later edit gets through', () => {
    const ledger = new EchoLedger();
    ledger.expect('right', merged, 0);
    expect(ledger.isEcho('right', { kind: 'rsync', path: 'f', stat: file(5, 1_000_200) }, 10)).toBe(true);
    expect(ledger.isEcho('right', { kind: 'rsync', path: 'f', stat: file(7, 1_005_000) }, 20)).toBe(false);
    expect(ledger.isEcho('right', { kind: 'rsync', path: 'f', stat: file(5, 1_000_200) }, 30)).toBe(false);
  });
});

describe('ActionQueue.dropWhere', () => {
  test('drops the picked items, keeps order and the rest, and frees the conflict slot', () => {
    const queue = new ActionQueue();
    queue.enqueue('right', { kind: 'rsync', path: 'a', stat: file(1, 1) }, true);
    queue.enqueue('left', { kind: 'delete', path: 'b', stat: file(1, 1) }, true);
    queue.enqueue('right', { kind: 'rsync', path: 'c', stat: file(1, 1) }, true);
    expect(queue.dropWhere((q) => q.action.kind === 'rsync' && q.action.path === 'a')).toBe(1);
    expect(queue.length).toBe(2);
    // 'a' no longer has a pending rival: a left report of it is simply queued.
    expect(queue.enqueue('left', { kind: 'rsync', path: 'a', stat: file(1, 0) }).dropped).toBeUndefined();
    expect(queue.takeBatch()?.actions.map((a) => a.kind)).toEqual(['delete']);
    expect(queue.takeBatch()?.actions.map((a) => (a.kind === 'rsync' ? a.path : ''))).toEqual(['c']);
    expect(queue.takeBatch()?.actions.map((a) => (a.kind === 'rsync' ? a.path : ''))).toEqual(['a']);
    expect(queue.takeBatch()).toBeUndefined();
  });
});
