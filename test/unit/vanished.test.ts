import { describe, expect, test } from 'vitest';
import { VANISHED_TTL_MS, VanishedSends } from '../../src/core/vanished.js';
import type { Stat } from '../../src/core/types.js';

const S: Stat = { type: 'file', ino: 5, size: 9, mtimeMs: 123.5, mode: 0o644 };
const P: Stat = { ...S, size: 3, mtimeMs: 100 };
const send = (path: string) => ({ path, stat: S, prev: P });

describe('VanishedSends: a file that moved with its directory before rsync sent it is sent again', () => {
  test('the move comes after the vanished send', () => {
    const v = new VanishedSends();
    expect(v.noteVanished('left', send('d/f'), 0)).toEqual([]);
    expect(v.noteMove('left', 'd', 'e', 10)).toEqual([{ path: 'e/f', stat: S, prev: P }]);
    expect(v.noteMove('left', 'e', 'g', 20)).toEqual([]); // once
  });

  test('the move comes first', () => {
    const v = new VanishedSends();
    expect(v.noteMove('left', 'a/d', 'a/e', 0)).toEqual([]);
    expect(v.noteVanished('left', send('a/d/sub/f'), 10)).toEqual([{ path: 'a/e/sub/f', stat: S, prev: P }]);
  });

  test('only the same side, and only below the moved name', () => {
    const v = new VanishedSends();
    v.noteVanished('left', send('d/f'), 0);
    v.noteVanished('left', send('dx/f'), 0);
    expect(v.noteMove('right', 'd', 'e', 1)).toEqual([]);
    expect(v.noteMove('left', 'd', 'e', 2)).toEqual([{ path: 'e/f', stat: S, prev: P }]);
  });

  test('a vanished send with no move (the file was deleted) is forgotten after the TTL', () => {
    const v = new VanishedSends();
    v.noteVanished('left', send('d/f'), 0);
    expect(v.noteMove('left', 'd', 'e', VANISHED_TTL_MS + 2_000)).toEqual([]);
  });
});
