import { describe, expect, test } from 'vitest';
import { isRsyncTempOf } from '../../src/core/patterns.js';
import { unknownAsAgreed } from '../../src/core/skipped.js';
import type { Agreed, Observed } from '../../src/core/version.js';
import { described } from '../support/table.js';

const agreed = (n: number): Agreed => ({ type: 'file', size: n, mtimeMs: 1_000 + n, mode: 0o644, left: { ino: n }, right: { ino: 100 + n, birthMs: 7 } });
const seen = (n: number, ino: number): Observed => ({ type: 'file', size: n, mtimeMs: 1_000 + n, mode: 0o644, ino });
const archive = new Map<string, Agreed>([
  ['d', { ...agreed(0), type: 'dir' }],
  ['d/a', agreed(1)],
  ['d/sub/b', agreed(2)],
  ['e/c', agreed(3)],
  ['dd/x', agreed(4)],
]);

describe('unknownAsAgreed', () => {
  test.each(described<{ description: string; scan: Array<[string, Observed]>; skipped: string[]; side: 'left' | 'right'; expected: Array<[string, Observed]> }>([
    { description: 'nothing skipped: the scan as it is', scan: [['e/c', seen(3, 3)]], skipped: [], side: 'left', expected: [['e/c', seen(3, 3)]] },
    {
      description: 'below a skipped directory the archive stands in, with that side\'s identity',
      scan: [['d', { ...seen(0, 0), type: 'dir' }]],
      skipped: ['d'],
      side: 'right',
      expected: [
        ['d', { ...seen(0, 0), type: 'dir' }],
        ['d/a', { ...seen(1, 101), birthMs: 7 }],
        ['d/sub/b', { ...seen(2, 102), birthMs: 7 }],
      ],
    },
    { description: 'what the scan did see there wins', scan: [['d/a', seen(9, 9)]], skipped: ['d'], side: 'left', expected: [['d/a', seen(9, 9)], ['d/sub/b', seen(2, 2)]] },
    { description: 'the skipped directory itself is not filled in (its parent listed it)', scan: [], skipped: ['d/sub'], side: 'left', expected: [['d/sub/b', seen(2, 2)]] },
    { description: 'a sibling sharing the prefix is not below it (dd is not under d)', scan: [], skipped: ['d/sub', 'dd/none'], side: 'left', expected: [['d/sub/b', seen(2, 2)]] },
  ]))('%s', (_description, { scan, skipped, side, expected }) => {
    expect([...unknownAsAgreed(archive, new Map(scan), new Set(skipped), side)].sort()).toEqual(expected.sort());
  });
});

describe('isRsyncTempOf', () => {
  test.each(described<{ description: string; entry: string; name: string; is: boolean }>([
    { description: "rsync's temp name", entry: '.big.bin.a1B2c3', name: 'big.bin', is: true },
    { description: 'the file itself', entry: 'big.bin', name: 'big.bin', is: false },
    { description: 'five characters after the dot', entry: '.big.bin.a1B2c', name: 'big.bin', is: false },
    { description: 'seven characters after the dot', entry: '.big.bin.a1B2c3d', name: 'big.bin', is: false },
    { description: 'a character mkstemp never uses', entry: '.big.bin.a1B2c_', name: 'big.bin', is: false },
    { description: "another file's temp name", entry: '.other.a1B2c3', name: 'big.bin', is: false },
    { description: 'a user file named like a backup of it', entry: '.big.bin.backup', name: 'big.bin', is: true },
  ]))('%s', (_description, { entry, name, is }) => {
    expect(isRsyncTempOf(entry, name)).toBe(is);
  });
});
