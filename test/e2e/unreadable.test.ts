/**
 * Paths psync cannot read, with psync running as an ordinary user (nobody)
 * on trees of its own: a directory it cannot list or watch and a file rsync
 * cannot read are skipped with one warning that names them, counted in the
 * status, and tried again at each rescan; everything else goes on syncing,
 * and what is in a skipped directory is never taken for deleted.
 */

import { chmod, chown, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { nobodyIds } from '../support/attacker.js';
import { PsyncProcess, waitFor, waitForSameTrees } from '../support/psync.js';
import { tempDir } from '../support/tmp.js';

let running: PsyncProcess | undefined;

afterEach(async () => {
  if (running !== undefined && running.child.exitCode === null) expect(await running.stop()).toBe(0);
  running = undefined;
});

/** left/ and right/ owned by nobody, with `files` (path -> content) on the left. */
async function nobodysPair(files: Record<string, string>): Promise<{ left: string; right: string; base: string }> {
  const { uid, gid } = await nobodyIds();
  const base = tempDir('psync-unreadable-');
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right), mkdir(join(base, 'state'))]);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(left, path, '..'), { recursive: true });
    await writeFile(join(left, path), content);
  }
  await chownTree(base, uid, gid);
  return { left, right, base };
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  for (const entry of await readdir(path, { withFileTypes: true })) {
    if (entry.isDirectory()) await chownTree(join(path, entry.name), uid, gid);
    else await chown(join(path, entry.name), uid, gid);
  }
}

const content = (path: string): Promise<string | undefined> => readFile(path, 'utf8').catch(() => undefined);
const warnings = (proc: PsyncProcess, name: string): number => proc.log().split('\n').filter((line) => line.includes('skipping') && line.includes(name)).length;

test('an unreadable directory and an unreadable file are skipped with one warning each, the rest syncs, and both sync once readable', async () => {
  const { left, right } = await nobodysPair({ 'ok.txt': 'ok', 'locked/inside.txt': 'inside', 'secret.txt': 'secret' });
  await chmod(join(left, 'locked'), 0o000);
  await chmod(join(left, 'secret.txt'), 0o000);
  running = await PsyncProcess.start(['--rescan', '2', left, right], { asNobody: true });
  const proc = running;
  await waitFor('ok.txt on the right', async () => (await content(join(right, 'ok.txt'))) === 'ok');
  // The directory's mode 000 is synced like any chmod, so the right side cannot read its copy either.
  await waitFor('all three counted as skipped', async () => (await proc.status())?.skipped === 3, 30_000);
  expect(warnings(proc, 'left: skipping "locked"'), proc.log()).toBe(1);
  expect(warnings(proc, 'right: skipping "locked"'), proc.log()).toBe(1);
  expect(warnings(proc, '"secret.txt"'), proc.log()).toBe(1);
  // Everything else goes on: a new file after the skips.
  await writeFile(join(left, 'later.txt'), 'later');
  await waitFor('later.txt on the right', async () => (await content(join(right, 'later.txt'))) === 'later');
  // Rescans come and go (every 2 s) without a second warning: the file is tried again at each.
  const runs = (await proc.status())!.counters.rsyncRuns;
  await waitFor('two more tries of the file', async () => (await proc.status())!.counters.rsyncRuns >= runs + 2, 15_000);
  expect(warnings(proc, '"secret.txt"')).toBe(1);
  expect(warnings(proc, 'left: skipping "locked"')).toBe(1);
  expect(proc.child.exitCode).toBeNull();

  await chmod(join(left, 'locked'), 0o755);
  await chmod(join(left, 'secret.txt'), 0o644);
  await waitFor('the directory once readable', async () => (await content(join(right, 'locked/inside.txt'))) === 'inside', 30_000);
  await waitFor('the file once readable', async () => (await content(join(right, 'secret.txt'))) === 'secret', 30_000);
  await waitFor('nothing skipped any more', async () => (await proc.status())?.skipped === 0);
  await waitForSameTrees(left, right);
});

test('a synced directory that becomes unreadable while psync is stopped is not taken for deleted at the next start', async () => {
  const { left, right, base } = await nobodysPair({ 'locked/inside.txt': 'inside', 'locked/sub/deep.txt': 'deep' });
  const state = ['--state-dir', join(base, 'state')];
  running = await PsyncProcess.start([...state, left, right], { asNobody: true });
  await waitForSameTrees(left, right);
  expect(await running.stop()).toBe(0);
  await chmod(join(left, 'locked'), 0o000);
  running = await PsyncProcess.start([...state, left, right], { asNobody: true });
  const proc = running;
  await writeFile(join(right, 'barrier.txt'), 'b');
  await waitFor('the barrier on the left', async () => (await content(join(left, 'barrier.txt'))) === 'b');
  expect((await proc.status())?.skipped).toBe(1);
  expect(await content(join(right, 'locked/inside.txt'))).toBe('inside');
  expect(await content(join(right, 'locked/sub/deep.txt'))).toBe('deep');
  await chmod(join(left, 'locked'), 0o755);
});
