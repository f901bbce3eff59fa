import { describe, expect, test } from 'vitest';
import { SafetyError } from '../../src/core/errors.js';
import {
  ancestorsOf,
  baseName,
  bytesToPath,
  depthOf,
  guardPath,
  hasEscapedBytes,
  isSameOrUnder,
  isValidPath,
  joinPath,
  parentOf,
  pathToBytes,
  rebase,
} from '../../src/core/paths.js';
import { described } from '../support/table.js';


const utf8 = (text: string): number[] => [...new TextEncoder().encode(text)];

describe('bytesToPath / pathToBytes', () => {
  test.each(described<{ description: string; bytes: number[]; path: string }>([
    { description: 'plain ASCII', bytes: utf8('a/b.txt'), path: 'a/b.txt' },
    { description: 'empty name', bytes: [], path: '' },
    { description: '2-byte sequence', bytes: [0xc3, 0xa9], path: 'é' },
    { description: '3-byte sequence', bytes: [0xe2, 0x82, 0xac], path: '€' },
    { description: '4-byte emoji', bytes: [0xf0, 0x9f, 0x98, 0x80], path: '\u{1f600}' },
    { description: 'emoji between ASCII', bytes: [0x61, 0xf0, 0x9f, 0x98, 0x80, 0x62], path: 'a\u{1f600}b' },
    { description: 'highest code point U+10FFFF', bytes: [0xf4, 0x8f, 0xbf, 0xbf], path: '\u{10ffff}' },
    { description: 'U+FFFD itself is a real character, not an escape', bytes: [0xef, 0xbf, 0xbd], path: '\ufffd' },
    { description: 'NFC e-acute', bytes: [0xc3, 0xa9], path: '\u00e9' },
    { description: 'NFD e + combining acute', bytes: [0x65, 0xcc, 0x81], path: 'e\u0301' },
    { description: 'byte 0xff is escaped', bytes: [0xff], path: '\udcff' },
    { description: 'byte 0xfe is escaped', bytes: [0xfe], path: '\udcfe' },
    { description: 'invalid byte between ASCII', bytes: [0x61, 0xff, 0x62], path: 'a\udcffb' },
    { description: 'lone continuation byte', bytes: [0x80], path: '\udc80' },
    { description: 'truncated 2-byte sequence at the end', bytes: [0x61, 0xc3], path: 'a\udcc3' },
    { description: 'truncated 3-byte sequence at the end', bytes: [0xe2, 0x82], path: '\udce2\udc82' },
    { description: 'truncated 4-byte sequence before ASCII', bytes: [0xf0, 0x9f, 0x98, 0x78], path: '\udcf0\udc9f\udc98x' },
    { description: 'overlong slash (C0 AF) is not a slash', bytes: [0xc0, 0xaf], path: '\udcc0\udcaf' },
    { description: 'overlong NUL (C0 80)', bytes: [0xc0, 0x80], path: '\udcc0\udc80' },
    { description: 'overlong 3-byte slash', bytes: [0xe0, 0x80, 0xaf], path: '\udce0\udc80\udcaf' },
    { description: 'overlong 4-byte slash', bytes: [0xf0, 0x80, 0x80, 0xaf], path: '\udcf0\udc80\udc80\udcaf' },
    { description: 'encoded high surrogate U+D800', bytes: [0xed, 0xa0, 0x80], path: '\udced\udca0\udc80' },
    { description: 'encoded low surrogate U+DC80 (looks like an escape)', bytes: [0xed, 0xb2, 0x80], path: '\udced\udcb2\udc80' },
    { description: 'code point above U+10FFFF', bytes: [0xf4, 0x90, 0x80, 0x80], path: '\udcf4\udc90\udc80\udc80' },
    { description: 'lead byte F5 is never valid', bytes: [0xf5, 0x80, 0x80, 0x80], path: '\udcf5\udc80\udc80\udc80' },
    { description: 'valid sequence right after an invalid byte', bytes: [0xff, 0xc3, 0xa9], path: '\udcffé' },
    { description: 'Latin-1 name (ISO-8859-1 e-acute)', bytes: [0x63, 0x61, 0x66, 0xe9], path: 'caf\udce9' },
  ]))('%s', (_description, { bytes, path }) => {
    expect(bytesToPath(Uint8Array.from(bytes))).toBe(path);
    expect([...pathToBytes(path)]).toEqual(bytes);
  });

  test('NFC and NFD spellings stay distinct both ways', () => {
    const nfc = bytesToPath(Uint8Array.from(utf8('caf\u00e9')));
    const nfd = bytesToPath(Uint8Array.from(utf8('cafe\u0301')));
    expect(nfc).not.toBe(nfd);
    expect(nfc.normalize('NFC')).toBe(nfd.normalize('NFC'));
    expect([...pathToBytes(nfc)]).not.toEqual([...pathToBytes(nfd)]);
  });

  test('every single byte survives the round trip', () => {
    for (let b = 0; b < 256; b++) expect([...pathToBytes(bytesToPath(Uint8Array.of(b)))]).toEqual([b]);
  });

  test('every pair of high bytes survives the round trip', () => {
    for (let a = 0x80; a < 0x100; a++) {
      for (let b = 0; b < 0x100; b += 7) {
        expect([...pathToBytes(bytesToPath(Uint8Array.of(a, b)))]).toEqual([a, b]);
      }
    }
  });
});

describe('hasEscapedBytes', () => {
  test.each(described<{ description: string; path: string; expected: boolean }>([
    { description: 'ASCII', path: 'a/b', expected: false },
    { description: 'valid UTF-8 with an emoji', path: 'é\u{1f600}', expected: false },
    { description: 'an escaped 0xff', path: 'a\udcffb', expected: true },
    { description: 'the lowest escape 0x80', path: '\udc80', expected: true },
  ]))('%s', (_description, { path, expected }) => {
    expect(hasEscapedBytes(path)).toBe(expected);
  });
});

describe('guardPath', () => {
  test.each(described<{ description: string; path: string; ok: boolean }>([
    { description: 'a plain name', path: 'a', ok: true },
    { description: 'a nested path', path: 'a/b/c.txt', ok: true },
    { description: 'a dot file', path: '.bashrc', ok: true },
    { description: 'a name of three dots', path: '...', ok: true },
    { description: 'dots inside a name', path: 'a..b', ok: true },
    { description: 'a name starting with ..', path: '..a/b', ok: true },
    { description: 'a name with spaces', path: 'my file', ok: true },
    { description: 'a name with a backslash (a plain byte on Linux)', path: 'a\\..', ok: true },
    { description: 'a name with a leading dash', path: '-rf', ok: true },
    { description: 'a non-UTF-8 name', path: 'x/\udcff', ok: true },
    { description: 'an emoji name', path: '\u{1f600}', ok: true },
    { description: 'the root itself', path: '', ok: false },
    { description: 'a lone slash', path: '/', ok: false },
    { description: 'an absolute path', path: '/etc/passwd', ok: false },
    { description: 'a double leading slash', path: '//etc/passwd', ok: false },
    { description: 'dot-dot', path: '..', ok: false },
    { description: 'leading dot-dot', path: '../x', ok: false },
    { description: 'trailing dot-dot', path: 'a/..', ok: false },
    { description: 'dot-dot that climbs out from below', path: 'a/../../b', ok: false },
    { description: 'dot', path: '.', ok: false },
    { description: 'leading dot', path: './a', ok: false },
    { description: 'dot in the middle', path: 'a/./b', ok: false },
    { description: 'an empty component', path: 'a//b', ok: false },
    { description: 'a trailing slash', path: 'a/', ok: false },
    { description: 'a NUL byte', path: 'a\0b', ok: false },
    { description: 'a NUL byte alone', path: '\0', ok: false },
  ]))('%s', (_description, { path, ok }) => {
    if (ok) expect(guardPath(path)).toBe(path);
    else expect(() => guardPath(path)).toThrow(SafetyError);
    expect(isValidPath(path)).toBe(ok);
  });
});

describe('path arithmetic', () => {
  test.each(described<{ description: string; path: string; parent: string; base: string; ancestors: string[]; depth: number }>([
    { description: 'the root', path: '', parent: '', base: '', ancestors: [], depth: 0 },
    { description: 'a top-level name', path: 'a', parent: '', base: 'a', ancestors: [], depth: 1 },
    { description: 'two levels', path: 'a/b', parent: 'a', base: 'b', ancestors: ['a'], depth: 2 },
    { description: 'three levels, nearest ancestor first', path: 'a/b/c', parent: 'a/b', base: 'c', ancestors: ['a/b', 'a'], depth: 3 },
    { description: 'dots in names are not separators', path: 'a.d/b.e', parent: 'a.d', base: 'b.e', ancestors: ['a.d'], depth: 2 },
  ]))('%s', (_description, { path, parent, base, ancestors, depth }) => {
    expect(parentOf(path)).toBe(parent);
    expect(baseName(path)).toBe(base);
    expect(ancestorsOf(path)).toEqual(ancestors);
    expect(depthOf(path)).toBe(depth);
  });

  test.each(described<{ description: string; dir: string; name: string; expected: string }>([
    { description: 'joining onto the root gives the bare name', dir: '', name: 'a', expected: 'a' },
    { description: 'joining onto a directory', dir: 'a/b', name: 'c', expected: 'a/b/c' },
  ]))('joinPath: %s', (_description, { dir, name, expected }) => {
    expect(joinPath(dir, name)).toBe(expected);
    expect(parentOf(expected)).toBe(dir);
  });

  test.each(described<{ description: string; path: string; dir: string; expected: boolean }>([
    { description: 'a path is under itself', path: 'a/b', dir: 'a/b', expected: true },
    { description: 'a child is under its directory', path: 'a/b', dir: 'a', expected: true },
    { description: 'a grandchild is under its directory', path: 'a/b/c', dir: 'a', expected: true },
    { description: 'everything is under the root', path: 'a/b', dir: '', expected: true },
    { description: 'the root is under the root', path: '', dir: '', expected: true },
    { description: 'the root is not under a directory', path: '', dir: 'a', expected: false },
    { description: 'a sibling sharing a prefix is not under', path: 'ab', dir: 'a', expected: false },
    { description: 'a sibling subtree sharing a prefix is not under', path: 'ab/c', dir: 'a', expected: false },
    { description: 'a parent is not under its child', path: 'a', dir: 'a/b', expected: false },
  ]))('isSameOrUnder: %s', (_description, { path, dir, expected }) => {
    expect(isSameOrUnder(path, dir)).toBe(expected);
  });

  test.each(described<{ description: string; path: string; from: string; to: string; expected: string }>([
    { description: 'the moved entry itself', path: 'a', from: 'a', to: 'x', expected: 'x' },
    { description: 'a child follows its directory', path: 'a/b', from: 'a', to: 'x', expected: 'x/b' },
    { description: 'a grandchild follows into a deeper place', path: 'a/b/c', from: 'a', to: 'x/y', expected: 'x/y/b/c' },
    { description: 'moving up to the top level', path: 'd/a/b', from: 'd/a', to: 'a', expected: 'a/b' },
    { description: 'rebasing onto the root strips the prefix', path: 'a/b/c', from: 'a', to: '', expected: 'b/c' },
    { description: 'rebasing from the root prefixes the path', path: 'a/b', from: '', to: 'x', expected: 'x/a/b' },
  ]))('rebase: %s', (_description, { path, from, to, expected }) => {
    expect(rebase(path, from, to)).toBe(expected);
  });
});
