/**
 * INTERNAL_RSYNC_EXCLUDES against the real rsync: psync's own names never
 * travel, whatever the entry is (a directory, a file, a symlink) and whether
 * rsync recurses (the merge) or is handed a `--files-from` list (realtime,
 * where each listed path is checked on its own).
 */

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { INTERNAL_RSYNC_EXCLUDES } from '../../src/core/patterns.js';
import { described } from '../support/table.js';

const base = mkdtempSync(join(tmpdir(), 'psync-internal-excludes-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** Every path below `root`, sorted. */
function listTree(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return [relative(root, path), ...(entry.isDirectory() ? listTree(root, path) : [])];
  }).sort();
}

let serial = 0;
function transfer(make: (source: string) => void, files?: string[]): string[] {
  const dir = join(base, String(++serial));
  const [source, target] = [join(dir, 'source'), join(dir, 'target')];
  mkdirSync(source, { recursive: true });
  mkdirSync(target);
  make(source);
  const list = files === undefined ? [] : ['--files-from=-', '--from0', '--ignore-missing-args'];
  execFileSync('rsync', ['-a', ...list, ...INTERNAL_RSYNC_EXCLUDES.map((p) => `--exclude=${p}`), '--', `${source}/`, `${target}/`], {
    input: files === undefined ? '' : files.map((f) => `${f}\0`).join(''),
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  return listTree(target);
}

const file = (path: string) => (root: string): void => {
  mkdirSync(join(root, path, '..'), { recursive: true });
  writeFileSync(join(root, path), 'x');
};

describe('psync-internal names never travel', () => {
  test.each(described<{ description: string; make: Array<(root: string) => void>; files?: string[]; arrives: string[] }>([
    { description: 'a .psync directory at the root (merge)', make: [file('.psync/lock'), file('a')], arrives: ['a'] },
    { description: 'a .psync file at the root (merge)', make: [file('.psync'), file('a')], arrives: ['a'] },
    {
      description: 'a .psync symlink at the root (merge): psync -s made L/.psync a link',
      make: [(root) => symlinkSync('/etc', join(root, '.psync')), file('a')],
      arrives: ['a'],
    },
    {
      description: 'a .psync symlink at the root, listed',
      make: [(root) => symlinkSync('/etc', join(root, '.psync'))],
      files: ['.psync'],
      arrives: [],
    },
    { description: 'files below .psync, listed one by one', make: [file('.psync/lock'), file('.psync/replaced/1-1/a')], files: ['.psync/lock', '.psync/replaced/1-1/a', '.psync'], arrives: [] },
    { description: 'a scratch name, listed', make: [file('d/x.1-1-abc.psync.ignore')], files: ['d/x.1-1-abc.psync.ignore'], arrives: [] },
    { description: 'below a scratch directory, listed', make: [file('d.1-1-abc.psync.ignore/e/f')], files: ['d.1-1-abc.psync.ignore/e/f'], arrives: [] },
    { description: 'below a scratch directory (merge)', make: [file('d.1-1-abc.psync.ignore/e/f'), file('k')], arrives: ['k'] },
    { description: 'a .psync below the root is an ordinary name', make: [file('a/.psync/x')], files: ['a/.psync/x'], arrives: ['a', 'a/.psync', 'a/.psync/x'] },
    { description: 'a .psync below the root is an ordinary name (merge)', make: [file('a/.psync')], arrives: ['a', 'a/.psync'] },
  ]))('%s', (_description, { make, files, arrives }) => {
    expect(transfer((root) => make.forEach((step) => step(root)), files)).toEqual(arrives);
  });
});
