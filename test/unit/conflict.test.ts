import { describe, expect, test } from 'vitest';
import { conflictName, expectedVersions, judgeReplaced, type ReplacedVerdict } from '../../src/core/conflict.js';
import { pathToBytes } from '../../src/core/paths.js';
import type { Stat } from '../../src/core/types.js';
import { described } from '../support/table.js';

const v = (size: number, mtimeMs: number, more: Partial<Stat> = {}): Stat => ({ type: 'file', ino: 9, size, mtimeMs, mode: 0o644, ...more });
const original = v(10, 1_000.25);
const incoming = v(20, 5_000);

describe('judgeReplaced', () => {
  test.each(described<{ description: string; replaced: Stat; written: Stat | undefined; expected: Stat[]; sameBytes?: boolean; verdict: ReplacedVerdict }>([
    { description: 'the version the source had before: nobody changed the target', replaced: original, written: incoming, expected: [original], verdict: { kind: 'expected' } },
    { description: 'the last synced version: expected too', replaced: original, written: incoming, expected: [v(1, 1), original], verdict: { kind: 'expected' } },
    { description: 'the source\'s previous version, sent with no inode (inodes differ across sides), is expected whatever the inode', replaced: { ...original, ino: 1 }, written: incoming, expected: [{ ...original, ino: 0 }], verdict: { kind: 'expected' } },
    { description: 'the agreed version with the target\'s recorded inode is expected', replaced: original, written: incoming, expected: [{ ...original, ino: 9 }], verdict: { kind: 'expected' } },
    // Issue 9, bug 7: a file replaced there by another with the same size and mtime is not what was agreed.
    { description: 'the agreed size and mtime under another inode is not expected', replaced: { ...original, ino: 1 }, written: incoming, expected: [{ ...original, ino: 9 }], verdict: { kind: 'conflict', keep: 'written' } },
    { description: 'the same as what was written: both sides made the same change', replaced: incoming, written: incoming, expected: [original], verdict: { kind: 'same' } },
    // Issue 9, bug 7: both sides wrote within microseconds: the kernel gave both the same mtime.
    { description: 'the same size and mtime as what was written but other bytes: a conflict', replaced: { ...incoming, ino: 4 }, written: incoming, expected: [original], sameBytes: false, verdict: { kind: 'conflict', keep: 'written' } },
    { description: 'edited on the target after the source: the target keeps the name', replaced: v(11, 9_000), written: incoming, expected: [original], verdict: { kind: 'conflict', keep: 'replaced' } },
    { description: 'edited on the target before the source: the incoming version keeps the name', replaced: v(11, 3_000), written: incoming, expected: [original], verdict: { kind: 'conflict', keep: 'written' } },
    { description: 'a tie in mtime goes to the incoming version', replaced: v(11, 5_000), written: incoming, expected: [original], verdict: { kind: 'conflict', keep: 'written' } },
    { description: 'only the mode changed on the target: a conflict', replaced: { ...original, mode: 0o600 }, written: incoming, expected: [original], verdict: { kind: 'conflict', keep: 'written' } },
    // Fuzz (full mix), seed 101 local round 5: both sides chmodded one file; a copy was kept for a mode, under a name the user had deleted.
    { description: 'the same content with another mode (both sides chmodded): the written mode stands', replaced: { ...incoming, ino: 4, mode: 0o640 }, written: incoming, expected: [original], sameBytes: true, verdict: { kind: 'same' } },
    { description: 'a new file on the source met one on the target', replaced: v(11, 3_000), written: incoming, expected: [], verdict: { kind: 'conflict', keep: 'written' } },
    { description: 'the written version is gone again: the name stays free', replaced: v(11, 9_000), written: undefined, expected: [original], verdict: { kind: 'conflict', keep: 'written' } },
    { description: 'a millisecond apart is another version', replaced: v(10, 1_001.5), written: incoming, expected: [original], verdict: { kind: 'conflict', keep: 'written' } },
    // Issue 10, fuzz bug 1: a directory sent over the target's new file pushed the file out, unjudged.
    { description: 'a newer file that a directory replaced is kept beside it: the directory keeps the name', replaced: v(11, 9_000), written: { ...incoming, type: 'dir' }, expected: [], verdict: { kind: 'conflict', keep: 'written' } },
    { description: 'a newer symlink a file replaced is kept beside it', replaced: v(11, 9_000, { type: 'symlink' }), written: incoming, expected: [], verdict: { kind: 'conflict', keep: 'written' } },
  ]))('%s', (_description, { replaced, written, expected, sameBytes, verdict }) => {
    let read = false;
    expect(judgeReplaced(replaced, written, expected, () => ((read = true), sameBytes ?? true))).toEqual(verdict);
    // The files are read only when size and mtime cannot tell them apart.
    if (sameBytes !== undefined) expect(read).toBe(true);
  });
});

describe('conflictName', () => {
  const at = Date.UTC(2026, 10, 22, 9, 5, 7, 250);
  test.each(described<{ description: string; path: string; attempt?: number; name: string }>([
    { description: 'the mark goes before the extension', path: 'docs/report.txt', name: 'docs/report.psync-conflict-20261122-090507.txt' },
    { description: 'a name without an extension', path: 'Makefile', name: 'Makefile.psync-conflict-20261122-090507' },
    { description: 'a dot file is not an extension', path: '.bashrc', name: '.bashrc.psync-conflict-20261122-090507' },
    { description: 'only the last extension moves', path: 'a.tar.gz', name: 'a.tar.psync-conflict-20261122-090507.gz' },
    { description: 'a long tail after a dot is not an extension', path: 'notes.this-is-not-an-extension', name: 'notes.this-is-not-an-extension.psync-conflict-20261122-090507' },
    { description: 'a second attempt is numbered', path: 'x.txt', attempt: 2, name: 'x.psync-conflict-20261122-090507-2.txt' },
    { description: 'a name with a newline and non-UTF-8 bytes', path: 'd/a\nb\udcff.c', name: 'd/a\nb\udcff.psync-conflict-20261122-090507.c' },
  ]))('%s', (_description, { path, attempt, name }) => {
    expect(conflictName(path, at, attempt)).toBe(name);
  });

  test('a 255-byte name is cut in its stem, never inside a UTF-8 character, and keeps mark and extension', () => {
    const long = `${'é'.repeat(125)}x.txt`; // 250 + 5 bytes
    const name = conflictName(long, at);
    expect(pathToBytes(name).length).toBeLessThanOrEqual(255);
    expect(name.endsWith('.psync-conflict-20261122-090507.txt')).toBe(true);
    expect(name.startsWith('é')).toBe(true);
    expect(name).not.toMatch(/[\udc80-\udcff]/);
  });
});

describe('expectedVersions', () => {
  test('prev first, then the agreed version unless it is the same', () => {
    expect(expectedVersions(original, incoming)).toEqual([original, incoming]);
    expect(expectedVersions(original, { ...original, ino: 3 })).toEqual([original]);
    expect(expectedVersions(undefined, incoming)).toEqual([incoming]);
    expect(expectedVersions(undefined, undefined)).toEqual([]);
  });
});
