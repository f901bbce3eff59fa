import { describe, expect, test } from 'vitest';
import { TreeIndex, type TreeNode } from '../../src/core/tree.js';
import { FIXTURE, described, dir, file, fixtureIndex } from '../support/table.js';

const fixture = fixtureIndex;

const DETACHED = '(detached)';
const where = (index: TreeIndex, ino: number): string[] =>
  index
    .nodesWithInode(ino)
    .map((n) => (index.isAttached(n) ? index.pathOf(n) : DETACHED))
    .sort();

/** Detach `from` and attach it at `to`, as the rules do for a move. */
const move = (index: TreeIndex, from: string, to: string): boolean => {
  const node = index.detach(from);
  expect(node).toBeDefined();
  return index.attachAt(to, node!);
};

describe('TreeIndex', () => {
  test('the fixture', () => {
    const index = fixture();
    expect(index.size).toBe(6);
    expect(index.get('')).toBe(index.root);
    expect(index.pathOf(index.root)).toBe('');
    for (const [path, stat] of FIXTURE) {
      const node = index.get(path);
      expect(node?.stat).toEqual(stat);
      expect(index.pathOf(node!)).toBe(path);
      expect(where(index, stat.ino)).toEqual([path]);
    }
  });

  test.each(described<{ description: string; path: string; found: boolean }>([
    { description: 'a trailing slash is not a name', path: 'd/', found: false },
    { description: 'a doubled slash is not a name', path: 'd//x', found: false },
    { description: 'a leading slash is not a name', path: '/d', found: false },
    { description: 'a prefix of a name is not the name', path: 'a', found: false },
    { description: 'below a file there is nothing', path: 'a.txt/x', found: false },
    { description: 'a deep entry is found', path: 'd/sub/y', found: true },
  ]))('get: %s', (_description, { path, found }) => {
    expect(fixture().get(path) !== undefined).toBe(found);
  });

  test.each(described<{
    description: string;
    act: (index: TreeIndex) => unknown;
    result?: unknown;
    /** path -> inode there now, or null for nothing. */
    paths: Record<string, number | null>;
    size: number;
    /** inode -> where the inode table finds it. */
    inodes?: Record<number, string[]>;
    /** [path before, path after]: the very same node object (and its watch) is there now. */
    kept?: Array<[string, string]>;
    /** Entries left detached (still counted, still in the inode table). */
    detached?: number;
  }>([
    {
      description: 'set adds a file under an indexed directory',
      act: (index) => index.set('d/new', file(40)) !== undefined,
      result: true,
      paths: { 'd/new': 40 },
      size: 7,
      inodes: { 40: ['d/new'] },
    },
    {
      description: 'set under a missing parent is refused',
      act: (index) => index.set('nope/f', file(41)),
      result: undefined,
      paths: { 'nope/f': null, nope: null },
      size: 6,
      inodes: { 41: [] },
    },
    {
      description: 'set under a file is refused',
      act: (index) => index.set('a.txt/f', file(41)),
      result: undefined,
      paths: { 'a.txt/f': null, 'a.txt': 10 },
      size: 6,
      inodes: { 41: [] },
    },
    {
      description: 'set on an indexed path keeps the node',
      act: (index) => index.set('a.txt', file(10, { size: 99 }))?.stat.size,
      result: 99,
      paths: { 'a.txt': 10 },
      size: 6,
      inodes: { 10: ['a.txt'] },
      kept: [['a.txt', 'a.txt']],
    },
    {
      description: 'set with a new inode moves the node in the inode table',
      act: (index) => index.set('a.txt', file(50)),
      paths: { 'a.txt': 50 },
      size: 6,
      inodes: { 10: [], 50: ['a.txt'] },
      kept: [['a.txt', 'a.txt']],
    },
    {
      description: 'a directory whose stat changes keeps its children',
      act: (index) => index.set('d', dir(20, { mtimeMs: 5000 })),
      paths: { d: 20, 'd/x': 21, 'd/sub/y': 23 },
      size: 6,
      kept: [['d', 'd'], ['d/sub/y', 'd/sub/y']],
    },
    {
      description: 'replacing a directory by a file drops its children',
      act: (index) => index.set('d', file(60)),
      paths: { d: 60, 'd/x': null, 'd/sub': null, 'd/sub/y': null },
      size: 3,
      inodes: { 20: [], 21: [], 22: [], 23: [], 60: ['d'] },
    },
    {
      description: 'remove forgets the whole subtree and updates size',
      act: (index) => index.remove('d') !== undefined,
      result: true,
      paths: { d: null, 'd/x': null, 'd/sub/y': null, 'a.txt': 10 },
      size: 2,
      inodes: { 20: [], 21: [], 22: [], 23: [] },
    },
    {
      description: 'remove of a file updates size',
      act: (index) => index.remove('d/sub/y') !== undefined,
      result: true,
      paths: { 'd/sub/y': null, 'd/sub': 22 },
      size: 5,
      inodes: { 23: [] },
    },
    {
      description: 'remove of a missing path does nothing',
      act: (index) => index.remove('d/zz'),
      result: undefined,
      paths: { d: 20 },
      size: 6,
    },
    {
      description: 'the root cannot be removed',
      act: (index) => index.remove(''),
      result: undefined,
      paths: { 'a.txt': 10, d: 20 },
      size: 6,
    },
    {
      description: 'the root cannot be detached',
      act: (index) => index.detach(''),
      result: undefined,
      paths: { 'a.txt': 10 },
      size: 6,
    },
    {
      description: 'a detached subtree keeps its inodes known and its count',
      act: (index) => index.detach('d') !== undefined,
      result: true,
      paths: { d: null, 'd/x': null },
      size: 6,
      inodes: { 20: [DETACHED], 21: [DETACHED], 23: [DETACHED] },
      detached: 4,
    },
    {
      description: 'detach + attachAt renames a file in place',
      act: (index) => move(index, 'd/x', 'd/x2'),
      result: true,
      paths: { 'd/x': null, 'd/x2': 21 },
      size: 6,
      inodes: { 21: ['d/x2'] },
      kept: [['d/x', 'd/x2']],
    },
    {
      description: 'detach + attachAt moves a subtree keeping every node',
      act: (index) => move(index, 'd', 'e/f'),
      result: true,
      paths: { d: null, 'e/f': 20, 'e/f/x': 21, 'e/f/sub': 22, 'e/f/sub/y': 23 },
      size: 6,
      inodes: { 20: ['e/f'], 21: ['e/f/x'], 22: ['e/f/sub'], 23: ['e/f/sub/y'] },
      kept: [['d', 'e/f'], ['d/x', 'e/f/x'], ['d/sub', 'e/f/sub'], ['d/sub/y', 'e/f/sub/y']],
    },
    {
      description: 'a child moved out of a directory, then the directory renamed',
      act: (index) => move(index, 'd/sub/y', 'y') && move(index, 'd', 'f'),
      result: true,
      paths: { y: 23, f: 20, 'f/sub': 22, 'f/sub/y': null, d: null },
      size: 6,
      inodes: { 23: ['y'], 22: ['f/sub'] },
      kept: [['d/sub/y', 'y'], ['d', 'f'], ['d/sub', 'f/sub']],
    },
    {
      description: 'a file moved into a directory that was renamed',
      act: (index) => move(index, 'd', 'e/f') && move(index, 'a.txt', 'e/f/sub/a.txt'),
      result: true,
      paths: { 'a.txt': null, 'e/f/sub/a.txt': 10, 'e/f/sub/y': 23 },
      size: 6,
      inodes: { 10: ['e/f/sub/a.txt'] },
      kept: [['a.txt', 'e/f/sub/a.txt'], ['d/sub', 'e/f/sub']],
    },
    {
      description: 'attachAt onto an existing file replaces it',
      act: (index) => move(index, 'd/x', 'a.txt'),
      result: true,
      paths: { 'a.txt': 21, 'd/x': null },
      size: 5,
      inodes: { 10: [], 21: ['a.txt'] },
      kept: [['d/x', 'a.txt']],
    },
    {
      description: 'attachAt onto an existing directory replaces its whole subtree',
      act: (index) => move(index, 'a.txt', 'd'),
      result: true,
      paths: { d: 10, 'd/x': null, 'd/sub/y': null, 'a.txt': null },
      size: 2,
      inodes: { 10: ['d'], 20: [], 21: [], 22: [], 23: [] },
      kept: [['a.txt', 'd']],
    },
    {
      description: 'attachAt under a missing parent fails and leaves the node detached',
      act: (index) => move(index, 'a.txt', 'zz/a.txt'),
      result: false,
      paths: { 'a.txt': null, 'zz/a.txt': null },
      size: 6,
      inodes: { 10: [DETACHED] },
      detached: 1,
    },
    {
      description: 'attachAt under a file fails',
      act: (index) => move(index, 'd', 'a.txt/d'),
      result: false,
      paths: { 'a.txt': 10, 'a.txt/d': null, d: null },
      size: 6,
      inodes: { 20: [DETACHED] },
      detached: 4,
    },
    {
      description: 'forget after a failed attach drops the subtree from the count and the inode table',
      act: (index) => {
        const node = index.detach('d')!;
        index.forget(node);
      },
      paths: { d: null },
      size: 2,
      inodes: { 20: [], 21: [], 22: [], 23: [] },
    },
    {
      description: 'hard links: two nodes hold one inode',
      act: (index) => index.set('e/h', file(10)),
      paths: { 'e/h': 10, 'a.txt': 10 },
      size: 7,
      inodes: { 10: ['a.txt', 'e/h'] },
    },
    {
      description: 'hard links: removing one name keeps the other in the inode table',
      act: (index) => index.set('e/h', file(10)) && index.remove('a.txt'),
      paths: { 'e/h': 10, 'a.txt': null },
      size: 6,
      inodes: { 10: ['e/h'] },
    },
  ]))('%s', (_description, row) => {
    const { act, paths, size, inodes, kept } = row;
    const index = fixture();
    const before = new Map<string, TreeNode | undefined>(FIXTURE.map(([path]) => [path, index.get(path)]));
    for (const [path] of FIXTURE) index.get(path)!.watch = `watch of ${path}`;
    const returned = act(index);
    if ('result' in row) expect(returned).toEqual(row.result);
    for (const [path, ino] of Object.entries(paths)) {
      const node = index.get(path);
      expect(node?.stat.ino ?? null, path).toBe(ino);
      if (node !== undefined) {
        expect(index.pathOf(node)).toBe(path);
        expect(index.isAttached(node)).toBe(true);
      }
    }
    expect(index.size).toBe(size);
    for (const [ino, at] of Object.entries(inodes ?? {})) expect(where(index, Number(ino)), `inode ${ino}`).toEqual([...at].sort());
    for (const [from, to] of kept ?? []) {
      const node = index.get(to);
      expect(node, `${from} -> ${to}`).toBe(before.get(from));
      expect(node?.watch).toBe(`watch of ${from}`);
    }
    // The count is the attached entries below the root plus those detached and not yet forgotten.
    expect([...index.walk(index.root)].length - 1 + (row.detached ?? 0)).toBe(size);
  });

  test.each(described<{ description: string; path: string; expected: string[] }>([
    { description: 'a directory with a nested subdirectory', path: 'd', expected: ['d/x', 'd/sub/y', 'd/sub'] },
    { description: 'a file has no descendants', path: 'a.txt', expected: [] },
    { description: 'an empty directory has no descendants', path: 'e', expected: [] },
    { description: 'a missing path has no descendants', path: 'zz', expected: [] },
    { description: 'the root lists everything', path: '', expected: ['a.txt', 'd/x', 'd/sub/y', 'd/sub', 'd', 'e'] },
  ]))('descendantPathsDeepestFirst: %s', (_description, { path, expected }) => {
    const index = fixture();
    const paths = index.descendantPathsDeepestFirst(path);
    expect([...paths].sort()).toEqual([...expected].sort());
    // Children always come before their directory, so they can be deleted in this order.
    paths.forEach((p, i) => {
      for (const later of paths.slice(i + 1)) expect(later.startsWith(`${p}/`), `${later} after ${p}`).toBe(false);
    });
  });

  test('walk yields the root, then every node after its parent', () => {
    const index = fixture();
    const seen = new Set<TreeNode>();
    for (const node of index.walk(index.root)) {
      if (node !== index.root) expect(seen.has(node.parent!), index.pathOf(node)).toBe(true);
      seen.add(node);
    }
    expect([...index.walk(index.root)][0]).toBe(index.root);
    expect(seen.size).toBe(7);
  });
});
