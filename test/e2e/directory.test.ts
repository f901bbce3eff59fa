/**
 * The file layer (src/fs) on real files: a symlink at any component of a
 * path below the root is never followed, by any operation, and a directory
 * swapped for a symlink while a recursive delete walks the tree never makes
 * it delete anything outside the root.
 */

import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, existsSync, fstatSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { DirCache, Directory, removeTree, statFd, Tree, UnsafePathError, using } from '../../src/fs/directory.js';
import { openPsyncDir } from '../../src/fs/psyncDir.js';
import { SafetyError } from '../../src/core/errors.js';
import { described } from '../support/table.js';

let base: string;
let root: string;
let outside: string;

/** The same names inside the root and outside it: following a link would find the outside twin. */
const PATH = ['a', 'b', 'c'];
const CANARY = 'canary';

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'psync-fs-'));
  root = join(base, 'root');
  outside = join(base, 'outside');
  for (const top of [root, outside]) {
    mkdirSync(join(top, ...PATH), { recursive: true });
    writeFileSync(join(top, ...PATH, 'f'), top === root ? 'inside' : CANARY);
    writeFileSync(join(top, 'a', 'g'), top === root ? 'inside' : CANARY);
  }
});

afterEach(() => {
  rmSync(base, { recursive: true, force: true });
});

/** Replace the directory at depth `depth` of PATH inside the root by a symlink to its outside twin. */
function plantLink(depth: number): string {
  const rel = PATH.slice(0, depth + 1);
  rmSync(join(root, ...rel), { recursive: true });
  symlinkSync(join(outside, ...rel), join(root, ...rel));
  return rel.join('/');
}

/** Every outside file still there with its content, and nothing new outside. */
function expectOutsideIntact(): void {
  expect(readFileSync(join(outside, ...PATH, 'f'), 'utf8')).toBe(CANARY);
  expect(readFileSync(join(outside, 'a', 'g'), 'utf8')).toBe(CANARY);
  expect(readdirSync(join(outside, ...PATH)).sort()).toEqual(['f']);
  expect(readdirSync(join(outside, 'a')).sort()).toEqual(['b', 'g']);
}

const DEEP = `${PATH.join('/')}/f`;

const OPERATIONS = [
  { description: 'lstat of the deepest file', act: (tree: Tree) => tree.lstat(DEEP) },
  { description: 'opening the deepest directory', act: (tree: Tree) => tree.openDir(PATH.join('/')).close() },
  { description: 'makeDir below it', act: (tree: Tree) => tree.makeDir(`${PATH.join('/')}/new/deeper`).close() },
  { description: 'unlink of the deepest file', act: (tree: Tree) => tree.withParent(DEEP, (dir, name) => dir.unlink(name)) },
  {
    description: 'creating a file beside it',
    act: (tree: Tree) => tree.withParent(DEEP, (dir) => dir.openFile('planted', 0o101 /* O_WRONLY|O_CREAT */)),
  },
  { description: 'a rename within its directory', act: (tree: Tree) => tree.withParent(DEEP, (dir, name) => dir.rename(name, dir, 'moved')) },
  { description: 'readlink beside it', act: (tree: Tree) => tree.withParent(DEEP, (dir, name) => dir.readlink(name)) },
  { description: 'reading it whole', act: (tree: Tree) => tree.withParent(DEEP, (dir, name) => dir.readFile(name, 1024)) },
];

const LINK_DEPTHS = PATH.map((_, depth) => ({ description: `a symlink at ${PATH.slice(0, depth + 1).join('/')}`, depth }));

test.each(described(OPERATIONS.flatMap((op) => LINK_DEPTHS.map((at) => ({ ...at, description: `${op.description}, ${at.description}`, act: op.act })))))(
  '%s is refused as unsafe and touches nothing outside',
  (_, { depth, act }) => {
    const link = plantLink(depth);
    const tree = new Tree(root);
    let thrown: unknown;
    try {
      act(tree);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(UnsafePathError);
    expect((thrown as UnsafePathError).path).toBe(link);
    expectOutsideIntact();
  },
);

test.each(described(LINK_DEPTHS))('DirCache: nothing is read behind %s', (_, { depth }) => {
  plantLink(depth);
  const cache = new DirCache(new Tree(root));
  try {
    expect(cache.lstat(DEEP)).toBeUndefined();
    expect(cache.dir(PATH.join('/'))).toBeUndefined();
    expect(cache.lstat(PATH.slice(0, depth + 1).join('/'))?.type).toBe('symlink');
  } finally {
    cache.close();
  }
  expectOutsideIntact();
});

test('DirCache reads what Tree reads, and keeps a bounded number of directories open', () => {
  for (let i = 0; i < 300; i++) {
    mkdirSync(join(root, 'many', `d${i}`), { recursive: true });
    writeFileSync(join(root, 'many', `d${i}`, 'f'), String(i));
  }
  const tree = new Tree(root);
  const cache = new DirCache(tree);
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const before = fds();
  try {
    for (let i = 0; i < 300; i++) expect(cache.lstat(`many/d${i}/f`)).toEqual(tree.lstat(`many/d${i}/f`));
    expect(cache.lstat(DEEP)).toEqual(tree.lstat(DEEP));
    expect(cache.lstat('nothing/here')).toBeUndefined();
    expect(fds() - before).toBeLessThanOrEqual(256);
  } finally {
    cache.close();
  }
  expect(fds()).toBe(before);
});

test('single components only: a name with a slash, "." or ".." is refused before any system call', () => {
  using(Directory.openRoot(root), (dir) => {
    for (const bad of ['a/b', '.', '..', '']) {
      expect(() => dir.openDir(bad), bad).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      expect(() => dir.unlink(bad), bad).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
    expect(() => dir.rename('a', dir, '../escaped')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
  expect(existsSync(join(root, 'a'))).toBe(true);
});

test('lstat sees a symlink as a symlink, and a path below a file or a missing directory as missing', () => {
  symlinkSync(outside, join(root, 'link'));
  const tree = new Tree(root);
  expect(tree.lstat('link')?.type).toBe('symlink');
  expect(tree.lstat('a/g/below')).toBeUndefined();
  expect(tree.lstat('nothing/here')).toBeUndefined();
  expect(tree.lstat(DEEP)).toMatchObject({ type: 'file', size: 'inside'.length, ino: lstatSync(join(root, DEEP)).ino });
});

test('readlink gives a symlink\'s target bytes (not UTF-8 ones too) and never follows it; anything else is refused', () => {
  const target = Buffer.concat([Buffer.from(`${outside}/caf`), Buffer.from([0xe9, 0xff])]);
  symlinkSync(target, join(root, 'a', 'link'));
  symlinkSync('dangling/../nowhere', join(root, 'a', 'dangling'));
  using(new Tree(root).openDir('a'), (dir) => {
    expect(dir.readlink('link')).toEqual(target);
    expect(dir.readlink('dangling')).toEqual(Buffer.from('dangling/../nowhere'));
    expect(() => dir.readlink('g')).toThrow(expect.objectContaining({ code: 'EINVAL' })); // a file
    expect(() => dir.readlink('b')).toThrow(expect.objectContaining({ code: 'EINVAL' })); // a directory
    expect(() => dir.readlink('missing')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    for (const bad of ['b/c', '..', '.', '']) expect(() => dir.readlink(bad), bad).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
  // A link to a link is read one level, not resolved.
  symlinkSync(join(root, 'a', 'link'), join(root, 'chain'));
  using(Directory.openRoot(root), (dir) => expect(dir.readlink('chain')).toEqual(Buffer.from(join(root, 'a', 'link'))));
});

test('readFile reads a small regular file whole; a symlink, a FIFO, a directory and an oversized file are refused', () => {
  writeFileSync(join(root, 'small'), 'twelve bytes');
  symlinkSync(join(outside, 'a', 'g'), join(root, 'link'));
  execFileSync('mkfifo', [join(root, 'fifo')]);
  using(Directory.openRoot(root), (dir) => {
    expect(dir.readFile('small', 12)?.toString()).toBe('twelve bytes');
    expect(dir.readFile('missing', 12)).toBeUndefined();
    expect(() => dir.readFile('small', 11)).toThrow(expect.objectContaining({ code: 'EFBIG' }));
    expect(() => dir.readFile('link', 1024)).toThrow(UnsafePathError);
    expect(() => dir.readFile('fifo', 1024)).toThrow(expect.objectContaining({ code: 'EINVAL' })); // and does not hang
    expect(() => dir.readFile('a', 1024)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
  expectOutsideIntact();
});

test('statFd reads an open file as a stat by name does, birth time included', () => {
  const tree = new Tree(root);
  using(tree.openDir('a'), (dir) => {
    const fd = dir.openFile('g', constants.O_RDONLY);
    try {
      const byFd = statFd(fd);
      expect(byFd).toEqual(dir.stat('g'));
      expect(byFd).toMatchObject({ type: 'file', ino: fstatSync(fd).ino, size: 'inside'.length });
    } finally {
      closeSync(fd);
    }
  });
});

test('RENAME_NOREPLACE fails on a taken name; a plain rename replaces it', () => {
  using(new Tree(root).openDir('a'), (dir) => {
    writeFileSync(join(root, 'a', 'h'), 'h');
    expect(() => dir.rename('g', dir, 'h', 'noReplace')).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(readFileSync(join(root, 'a', 'h'), 'utf8')).toBe('h');
    dir.rename('g', dir, 'h');
    expect(readFileSync(join(root, 'a', 'h'), 'utf8')).toBe('inside');
  });
});

test('removeTree removes a tree and unlinks the symlinks in it, never what they point to', () => {
  symlinkSync(outside, join(root, 'a', 'b', 'to-outside'));
  symlinkSync(join(outside, 'a'), join(root, 'a', 'b', 'c', 'to-a'));
  using(Directory.openRoot(root), (dir) => removeTree(dir, 'a'));
  expect(readdirSync(root)).toEqual([]);
  expectOutsideIntact();
});

test('.psync must be psync\'s own directory: a symlink there or one owned by another user is refused; a wider mode is narrowed', () => {
  const tree = new Tree(root);
  symlinkSync(outside, join(root, '.psync'));
  expect(() => openPsyncDir(tree, true)).toThrow(SafetyError);
  rmSync(join(root, '.psync'));
  mkdirSync(join(root, '.psync'), { mode: 0o755 });
  using(openPsyncDir(tree, true)!, () => undefined);
  expect(lstatSync(join(root, '.psync')).mode & 0o777).toBe(0o700);
  rmSync(join(root, '.psync'), { recursive: true });
  expect(openPsyncDir(tree, false)).toBeUndefined();
  using(openPsyncDir(tree, true)!, () => undefined);
  expect(lstatSync(join(root, '.psync')).isDirectory()).toBe(true);
  expectOutsideIntact();
});

/**
 * A child process swaps `root/victim/sub` with a symlink to the outside
 * (renameat2 RENAME_EXCHANGE through the same addon) as fast as it can while
 * removeTree deletes `root/victim`, many times over.
 */
test('removeTree racing a directory swapped for a symlink never deletes outside the root', async () => {
  const rounds = 30;
  // The outside twin holds the very names the swapped directory holds: a walk that follows the link finds them.
  const twin = join(outside, 'twin');
  const names = Array.from({ length: 50 }, (_, i) => `f${i}`);
  mkdirSync(twin);
  for (const name of names) writeFileSync(join(twin, name), CANARY);
  for (let round = 0; round < rounds; round++) {
    const victim = join(root, 'victim');
    mkdirSync(join(victim, 'sub'), { recursive: true });
    for (const name of names) writeFileSync(join(victim, 'sub', name), 'inside');
    symlinkSync(twin, join(victim, 'swap'));
    const swapper = startSwapper(victim, 'sub', 'swap');
    await swapper.running;
    try {
      using(Directory.openRoot(root), (dir) => {
        try {
          removeTree(dir, 'victim');
        } catch (error) {
          // ENOENT / ENOTEMPTY / ENOTDIR from the race are fine: only what happened outside matters.
          if (!['ENOENT', 'ENOTEMPTY', 'EBUSY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
        }
      });
    } finally {
      swapper.child.kill('SIGKILL');
      await swapper.exited;
    }
    expectOutsideIntact();
    expect(readdirSync(twin).sort()).toEqual([...names].sort());
    rmSync(victim, { recursive: true, force: true });
  }
});

function startSwapper(dir: string, a: string, b: string) {
  const script = `
    const { Directory } = await import(${JSON.stringify(new URL('../../dist/src/fs/directory.js', import.meta.url).href)});
    const dir = Directory.openRoot(${JSON.stringify(dir)});
    process.stdout.write('ready\\n');
    for (;;) { try { dir.rename(${JSON.stringify(a)}, dir, ${JSON.stringify(b)}, 'exchange'); } catch {} }
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const running = new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the swapper exited early (${code})`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, running, exited };
}
