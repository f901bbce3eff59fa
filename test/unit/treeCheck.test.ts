import { describe, expect, test } from 'vitest';
import { decodeRsyncName, isRsyncNotice, parseItemizedLine, type ItemizedChange } from '../../src/core/rsyncOutput.js';
import {
  CHECK_EXIT,
  checkExitCode,
  describeDifference,
  showPath,
  summarize,
  treeDifferences,
  typeProbePaths,
  type Difference,
} from '../../src/core/treeCheck.js';
import { described } from '../support/table.js';

// rsync's `-8 --out-format='%i %n'` (ITEMIZE_ARGS), as psync check reads it.
describe('parseItemizedLine', () => {
  test.each(
    described<{ description: string; line: string; want: ItemizedChange | undefined }>([
      { description: 'a file only on the receiver', line: '*deleting   a/b.txt', want: { kind: 'deleted', path: 'a/b.txt', isDir: false } },
      { description: 'a directory only on the receiver', line: '*deleting   a/', want: { kind: 'deleted', path: 'a', isDir: true } },
      { description: 'a file the receiver lacks (received)', line: '>f+++++++++ f', want: { kind: 'created', path: 'f', type: 'file' } },
      { description: 'a file the receiver lacks (sent to a remote receiver)', line: '<f+++++++++ f', want: { kind: 'created', path: 'f', type: 'file' } },
      { description: 'a directory the receiver lacks', line: 'cd+++++++++ d/', want: { kind: 'created', path: 'd', type: 'dir' } },
      { description: 'a symlink the receiver lacks', line: 'cL+++++++++ l', want: { kind: 'created', path: 'l', type: 'symlink' } },
      { description: 'a FIFO the receiver lacks', line: 'cS+++++++++ p', want: { kind: 'created', path: 'p', type: 'special' } },
      { description: 'size and mtime differ', line: '>f.st...... f', want: { kind: 'changed', path: 'f', type: 'file', attributes: ['size', 'mtime'] } },
      { description: 'content differs (--checksum)', line: '>fc........ f', want: { kind: 'changed', path: 'f', type: 'file', attributes: ['content'] } },
      { description: "a symlink's target differs", line: 'cLc.t...... l', want: { kind: 'changed', path: 'l', type: 'symlink', attributes: ['target', 'mtime'] } },
      { description: 'only permissions differ', line: '.f...p..... f', want: { kind: 'changed', path: 'f', type: 'file', attributes: ['perms'] } },
      { description: 'owner and group differ', line: '.f....og... f', want: { kind: 'changed', path: 'f', type: 'file', attributes: ['owner', 'group'] } },
      { description: 'ACL and xattrs differ', line: '.f.......ax f', want: { kind: 'changed', path: 'f', type: 'file', attributes: ['acl', 'xattrs'] } },
      { description: "a directory's mtime (T: set to now)", line: '.d..T...... d/', want: { kind: 'changed', path: 'd', type: 'dir', attributes: ['mtime'] } },
      { description: 'the root is the empty path', line: '.d..t...... ./', want: { kind: 'changed', path: '', type: 'dir', attributes: ['mtime'] } },
      { description: 'an entry with nothing differing (-ii)', line: '.f          f', want: { kind: 'changed', path: 'f', type: 'file', attributes: [] } },
      { description: 'an escaped newline in the name', line: '*deleting   a\\#012b', want: { kind: 'deleted', path: 'a\nb', isDir: false } },
      { description: 'a leading dash and spaces are the name', line: '>f+++++++++  -x y ', want: { kind: 'created', path: ' -x y ', type: 'file' } },
      { description: 'a non-UTF-8 byte (raw with -8) is kept lossless', line: '>f+++++++++ caf\xe9', want: { kind: 'created', path: 'caf\udce9', type: 'file' } },
      { description: 'UTF-8 bytes decode', line: '>f+++++++++ caf\xc3\xa9', want: { kind: 'created', path: 'café', type: 'file' } },
      { description: 'the root created is not an entry', line: 'cd+++++++++ ./', want: undefined },
      { description: 'rsync chatter is not one', line: 'created directory /x', want: undefined },
      { description: 'an unknown type letter is not one', line: '>q+++++++++ f', want: undefined },
      { description: 'a line without a name is not one', line: '>f+++++++++ ', want: undefined },
    ]),
  )('%s', (_d, { line, want }) => {
    expect(parseItemizedLine(line)).toEqual(want);
  });
});

describe('isRsyncNotice', () => {
  test.each(
    described<{ description: string; line: string; want: boolean }>([
      { description: 'deletes skipped after an I/O error', line: 'IO error encountered -- skipping file deletion', want: true },
      { description: 'a change is none', line: '*deleting   IO error encountered -- skipping file deletion', want: false },
      { description: 'any other line is none (check fails on it)', line: 'skipping non-regular file "x"', want: false },
    ]),
  )('%s', (_d, { line, want }) => {
    expect(isRsyncNotice(line)).toBe(want);
  });
});

describe('decodeRsyncName', () => {
  test.each(
    described<{ description: string; raw: string; want: { path: string; isDir: boolean } }>([
      { description: 'a plain name', raw: 'a/b', want: { path: 'a/b', isDir: false } },
      { description: 'a directory', raw: 'a/b/', want: { path: 'a/b', isDir: true } },
      { description: 'the root', raw: './', want: { path: '', isDir: true } },
      { description: 'an escaped byte', raw: 'x\\#011y', want: { path: 'x\ty', isDir: false } },
      { description: 'a backslash not before # is itself', raw: 'a\\b', want: { path: 'a\\b', isDir: false } },
    ]),
  )('%s', (_d, { raw, want }) => {
    expect(decodeRsyncName(raw)).toEqual(want);
  });
});

const deleted = (path: string, isDir = false): ItemizedChange => ({ kind: 'deleted', path, isDir });
const created = (path: string, type: 'file' | 'dir' | 'symlink' = 'file'): ItemizedChange => ({ kind: 'created', path, type });
const changed = (path: string, type: 'file' | 'dir' | 'symlink', ...attributes: Array<'size' | 'mtime' | 'perms' | 'target'>): ItemizedChange => ({
  kind: 'changed',
  path,
  type,
  attributes,
});

describe('typeProbePaths', () => {
  test.each(
    described<{ description: string; rightToLeft: ItemizedChange[]; want: string[] }>([
      { description: 'nothing created: no second run', rightToLeft: [deleted('a'), changed('b', 'file', 'size')], want: [] },
      { description: 'a created file is probed', rightToLeft: [created('a')], want: ['a'] },
      { description: 'below a created directory nothing is probed', rightToLeft: [created('d', 'dir'), created('d/x'), created('d/e', 'dir'), created('d/e/y')], want: ['d'] },
      { description: 'a created entry in a directory both have is probed', rightToLeft: [changed('d', 'dir', 'mtime'), created('d/x')], want: ['d/x'] },
      { description: 'a sibling with a common prefix is not below', rightToLeft: [created('d', 'dir'), created('dx')], want: ['d', 'dx'] },
    ]),
  )('%s', (_d, { rightToLeft, want }) => {
    expect(typeProbePaths(rightToLeft)).toEqual(want);
  });
});

describe('treeDifferences', () => {
  test.each(
    described<{ description: string; rightToLeft: ItemizedChange[]; leftToRight?: ItemizedChange[]; want: Difference[] }>([
      { description: 'identical trees', rightToLeft: [], want: [] },
      { description: "a directory's mtime alone is no difference", rightToLeft: [changed('d', 'dir', 'mtime'), changed('', 'dir', 'mtime')], want: [] },
      {
        description: "a directory's other attributes are, without its mtime",
        rightToLeft: [changed('d', 'dir', 'perms', 'mtime')],
        want: [{ kind: 'attributes', path: 'd', attributes: ['perms'] }],
      },
      { description: "the root's permissions are", rightToLeft: [changed('', 'dir', 'perms')], want: [{ kind: 'attributes', path: '', attributes: ['perms'] }] },
      { description: "a file's mtime is", rightToLeft: [changed('f', 'file', 'mtime')], want: [{ kind: 'attributes', path: 'f', attributes: ['mtime'] }] },
      {
        description: "a symlink's target is, its mtime is not",
        rightToLeft: [changed('l', 'symlink', 'target', 'mtime')],
        want: [{ kind: 'attributes', path: 'l', attributes: ['target'] }],
      },
      { description: "a symlink's mtime alone is no difference", rightToLeft: [changed('l', 'symlink', 'mtime')], want: [] },
      { description: 'an entry with nothing differing is none', rightToLeft: [{ kind: 'changed', path: 'f', type: 'file', attributes: [] }], want: [] },
      {
        description: 'deleted on the left-receiver run: only on left',
        rightToLeft: [deleted('d/x'), deleted('d', true)],
        want: [
          { kind: 'onlyLeft', path: 'd', isDir: true },
          { kind: 'onlyLeft', path: 'd/x', isDir: false },
        ],
      },
      {
        description: 'created and not there on the way back: only on right, children listed',
        rightToLeft: [created('d', 'dir'), created('d/x')],
        leftToRight: [],
        want: [
          { kind: 'onlyRight', path: 'd', isDir: true },
          { kind: 'onlyRight', path: 'd/x', isDir: false },
        ],
      },
      {
        description: 'created both ways: the type differs, and nothing below it is listed',
        rightToLeft: [created('d', 'dir'), created('d/x'), deleted('d')],
        leftToRight: [created('d', 'file')],
        want: [{ kind: 'type', path: 'd', left: 'file', right: 'dir' }],
      },
      {
        description: 'a symlink on the left where the right has a file',
        rightToLeft: [created('l', 'file')],
        leftToRight: [created('l', 'symlink')],
        want: [{ kind: 'type', path: 'l', left: 'symlink', right: 'file' }],
      },
      {
        description: 'the way back counts only what it would create (its parents are attributes)',
        rightToLeft: [created('d/x')],
        leftToRight: [changed('d', 'dir', 'mtime')],
        want: [{ kind: 'onlyRight', path: 'd/x', isDir: false }],
      },
      {
        description: 'what the way back creates that the first run did not is no difference (it came meanwhile)',
        rightToLeft: [],
        leftToRight: [created('new')],
        want: [],
      },
      {
        description: "tree order: a directory's entries right after it",
        rightToLeft: [created('d-2'), created('d', 'dir'), created('d/x')],
        want: [
          { kind: 'onlyRight', path: 'd', isDir: true },
          { kind: 'onlyRight', path: 'd/x', isDir: false },
          { kind: 'onlyRight', path: 'd-2', isDir: false },
        ],
      },
      {
        description: 'sorted by path',
        rightToLeft: [created('b'), deleted('a'), changed('c', 'file', 'size')],
        want: [
          { kind: 'onlyLeft', path: 'a', isDir: false },
          { kind: 'onlyRight', path: 'b', isDir: false },
          { kind: 'attributes', path: 'c', attributes: ['size'] },
        ],
      },
    ]),
  )('%s', (_d, { rightToLeft, leftToRight = [], want }) => {
    expect(treeDifferences(rightToLeft, leftToRight)).toEqual(want);
  });
});

describe('showPath', () => {
  test.each(
    described<{ description: string; path: string; want: string }>([
      { description: 'a plain path as it is', path: 'a/b.txt', want: 'a/b.txt' },
      { description: 'a leading dash as it is', path: '-rf', want: '-rf' },
      { description: 'single spaces inside as they are', path: 'my file (1).txt', want: 'my file (1).txt' },
      { description: 'UTF-8 letters as they are', path: 'café/日本', want: 'café/日本' },
      { description: 'the root', path: '', want: '.' },
      { description: 'a newline: quoted', path: 'a\nb', want: '"a\\nb"' },
      { description: 'a leading space: quoted', path: ' a', want: '" a"' },
      { description: 'a trailing space: quoted', path: 'a ', want: '"a "' },
      { description: 'a double quote: quoted and escaped', path: 'say "hi"', want: '"say \\"hi\\""' },
      { description: 'a backslash: quoted and escaped', path: 'a\\b', want: '"a\\\\b"' },
      { description: 'a non-UTF-8 byte: escaped', path: 'caf\udce9', want: '"caf\\udce9"' },
      { description: 'a right-to-left override (invisible): escaped', path: 'a\u202eb', want: '"a\\u202eb"' },
      { description: 'a C1 control: escaped', path: 'a\u0085b', want: '"a\\u0085b"' },
      { description: 'a non-breaking space: escaped', path: 'a\u00a0b', want: '"a\\u00a0b"' },
    ]),
  )('%s', (_d, { path, want }) => {
    expect(showPath(path)).toBe(want);
  });
});

describe('describeDifference and summarize', () => {
  test.each(
    described<{ description: string; difference: Difference; want: string }>([
      { description: 'only on left, a directory', difference: { kind: 'onlyLeft', path: 'd', isDir: true }, want: 'only on left: d/' },
      { description: 'only on right, a file', difference: { kind: 'onlyRight', path: 'f', isDir: false }, want: 'only on right: f' },
      { description: 'only on right, an odd name', difference: { kind: 'onlyRight', path: 'a\nb', isDir: false }, want: 'only on right: "a\\nb"' },
      { description: 'attributes', difference: { kind: 'attributes', path: 'f', attributes: ['size', 'mtime'] }, want: 'differs: f (size, mtime)' },
      {
        description: 'type',
        difference: { kind: 'type', path: 'x', left: 'symlink', right: 'dir' },
        want: 'differs: x (type: symlink on left, directory on right)',
      },
    ]),
  )('%s', (_d, { difference, want }) => {
    expect(describeDifference(difference)).toBe(want);
  });

  test.each(
    described<{ description: string; differences: Difference[]; summary: string; code: number }>([
      { description: 'none: identical, exit 0', differences: [], summary: 'identical', code: CHECK_EXIT.identical },
      {
        description: 'one: singular, exit 1',
        differences: [{ kind: 'onlyLeft', path: 'a', isDir: false }],
        summary: '1 difference: 1 only on left, 0 only on right, 0 differing',
        code: CHECK_EXIT.different,
      },
      {
        description: 'several kinds: counted each, exit 1',
        differences: [
          { kind: 'onlyRight', path: 'a', isDir: false },
          { kind: 'attributes', path: 'b', attributes: ['size'] },
          { kind: 'type', path: 'c', left: 'file', right: 'dir' },
        ],
        summary: '3 differences: 0 only on left, 1 only on right, 2 differing',
        code: CHECK_EXIT.different,
      },
    ]),
  )('%s', (_d, { differences, summary, code }) => {
    expect(summarize(differences)).toBe(summary);
    expect(checkExitCode(differences)).toBe(code);
  });

  test('the exit codes are distinct, and 0 means identical', () => {
    expect(new Set(Object.values(CHECK_EXIT)).size).toBe(3);
    expect(CHECK_EXIT.identical).toBe(0);
  });
});
