/**
 * What a psync killed in the middle of a transfer leaves, and how the next
 * start deals with it (issue 10): the versions that transfer replaced
 * (kept under `.psync/replaced/<run>` for its conflict check) are judged
 * against what was agreed, and the temp files of a journaled transfer are
 * removed. The kill itself is simulated by planting exactly what it leaves,
 * so that each case is certain; test/e2e/faults.test.ts kills for real.
 */

import { link, mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect, test } from 'vitest';
import { Archive, archiveFile, defaultStateDir, pairId } from '../../src/state/archive.js';
import { CLI, diffTrees, snapshotTree } from '../support/psync.js';
import { tempDir } from '../support/tmp.js';

async function syncOnce(left: string, right: string): Promise<string> {
  const result = await execa(process.execPath, [CLI, '-s', left, right], { reject: false, stdin: 'ignore', timeout: 25_000 });
  expect(result.exitCode, String(result.stderr)).toBe(0);
  return String(result.stderr);
}

async function syncedPair(files: Record<string, string>): Promise<{ left: string; right: string }> {
  const base = tempDir('psync-crash-');
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right)]);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(left, path, '..'), { recursive: true });
    await writeFile(join(left, path), content);
  }
  await syncOnce(left, right);
  expect(await diffTrees(left, right)).toEqual([]);
  return { left, right };
}

const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false);
const conflictCopies = async (root: string): Promise<string[]> => [...(await snapshotTree(root)).keys()].filter((p) => p.includes('.psync-conflict-')).sort();

test('versions a killed transfer replaced are judged at the next start: the agreed one goes, an edit it overwrote is kept as a conflict copy on both sides', async () => {
  const { left, right } = await syncedPair({ 'a.txt': 'agreed a', 'd/b.txt': 'agreed b' });
  const run = join(right, '.psync/replaced/999-1-1');
  await mkdir(join(run, 'd'), { recursive: true, mode: 0o700 });
  // a.txt: the transfer replaced the agreed version (rsync's --backup renames it: same inode).
  await link(join(right, 'a.txt'), join(run, 'a.txt'));
  // d/b.txt: it replaced an edit made on the right that nobody had synced yet.
  await writeFile(join(run, 'd/b.txt'), 'edited on the right');
  // What the transfer wrote, from the left's new versions.
  for (const root of [left, right]) {
    await writeFile(join(root, 'a.txt.new'), 'new a');
    await writeFile(join(root, 'd/b.txt.new'), 'new b');
  }
  for (const root of [left, right]) {
    await rename(join(root, 'a.txt.new'), join(root, 'a.txt'));
    await rename(join(root, 'd/b.txt.new'), join(root, 'd/b.txt'));
  }

  const log = await syncOnce(left, right);
  expect(log).toMatch(/right: 2 version\(s\) a killed transfer kept/);
  expect(await exists(run), 'the run directory is removed once judged').toBe(false);
  for (const root of [left, right]) {
    const copies = await conflictCopies(root);
    expect(copies, `${root}: only d/b.txt's overwritten edit is kept\n${log}`).toEqual([expect.stringMatching(/^d\/b\.psync-conflict-.*\.txt$/)]);
    expect(await readFile(join(root, copies[0]!), 'utf8')).toBe('edited on the right');
    expect(await readFile(join(root, 'a.txt'), 'utf8')).toBe('new a');
    expect(await readFile(join(root, 'd/b.txt'), 'utf8')).toBe('new b');
  }
  expect(await diffTrees(left, right)).toEqual([]);
});

test("a journaled transfer's temp files are removed at the next start; other files are not", async () => {
  const { left, right } = await syncedPair({ 'd/big.bin': 'big' });
  const archive = Archive.open(archiveFile(defaultStateDir(), pairId(left, undefined, right)));
  try {
    archive.beginTransfer('.psync/replaced/999-1-2', 'right', ['d/big.bin', 'gone/x']);
  } finally {
    archive.close();
  }
  await writeFile(join(right, 'd/.big.bin.Ab3dE9'), 'half a file');
  await writeFile(join(right, 'd/.other.Ab3dE9'), 'a user file that only looks like a temp file');
  await writeFile(join(right, 'd/.big.bin.no-tmp'), 'a dash: never in a temp name of mkstemp');

  await syncOnce(left, right);
  expect((await readdir(join(right, 'd'))).sort()).toEqual(['.big.bin.no-tmp', '.other.Ab3dE9', 'big.bin']);
  const reopened = Archive.open(archiveFile(defaultStateDir(), pairId(left, undefined, right)));
  try {
    expect(reopened.unfinishedTransfers()).toEqual([]);
  } finally {
    reopened.close();
  }
});
