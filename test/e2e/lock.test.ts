/**
 * One psync per root: two instances on one tree would take each other's
 * writes for user changes and send them back and forth for ever.
 */

import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect, test } from 'vitest';
import { tempDir } from '../support/tmp.js';
import { CLI, PsyncProcess, waitFor } from '../support/psync.js';

test('a second psync on a root already watched exits 7 naming the root and the pid of the psync to stop; the first goes on', async () => {
  const base = tempDir('psync-lock-');
  const [left, right, other] = [join(base, 'left'), join(base, 'right'), join(base, 'other')];
  await Promise.all([mkdir(left), mkdir(right), mkdir(other)]);
  const first = await PsyncProcess.start([left, right]);
  try {
    const second = await execa(process.execPath, [CLI, left, other], { reject: false, stdin: 'ignore', timeout: 60_000 });
    expect(second.exitCode, second.stderr).toBe(7);
    const report = second.stderr.trim().split('\n').at(-1) ?? '';
    expect(report).toMatch(/^psync: .*another psync .* already watches /);
    expect(report).toContain(left);
    // The brain's pid (the process PsyncProcess started), not its side process's.
    expect(report).toContain(`another psync (pid ${first.child.pid})`);
    // The first one still syncs.
    await writeFile(join(left, 'after.txt'), 'still here');
    await waitFor('the first psync to go on syncing', async () => (await readFile(join(right, 'after.txt'), 'utf8')) === 'still here');
  } finally {
    expect(await first.stop()).toBe(0);
  }
  // Its lock went with it: a new psync may take the root.
  const again = await PsyncProcess.start([left, other]);
  expect(await again.stop()).toBe(0);
});

test('a stale lock (as a psync killed with SIGKILL leaves: its pid is no psync filter) does not stop the next one', async () => {
  const base = tempDir('psync-lock-');
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right)]);
  await mkdir(join(left, '.psync'));
  // A pid that is certainly not a running psync filter: this test's own short-lived child, already gone.
  const child = execa('true');
  const pid = child.pid;
  await child;
  await writeFile(join(left, '.psync', 'lock'), `${pid}\n`);
  const next = await PsyncProcess.start([left, right]);
  expect(await next.stop()).toBe(0);
});

test('the same pair twice: the second exits 7 naming the pid of the first', async () => {
  const base = tempDir('psync-lock-');
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right)]);
  const first = await PsyncProcess.start([left, right]);
  try {
    const second = await execa(process.execPath, [CLI, left, right], { reject: false, stdin: 'ignore', timeout: 60_000 });
    expect(second.exitCode, second.stderr).toBe(7);
    expect(second.stderr.trim().split('\n').at(-1)).toMatch(new RegExp(`^psync: another psync \\(pid ${first.child.pid}\\) already runs this pair`));
  } finally {
    expect(await first.stop()).toBe(0);
  }
});

test('a lock that holds no pid was not written by psync: it is never taken over, and psync says so', async () => {
  const base = tempDir('psync-lock-');
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right)]);
  await mkdir(join(left, '.psync'), { mode: 0o700 });
  await writeFile(join(left, '.psync', 'lock'), 'not a pid\n');
  const result = await execa(process.execPath, [CLI, left, right], { reject: false, stdin: 'ignore', timeout: 60_000 });
  expect(result.exitCode).not.toBe(0);
  expect(result.stderr.trim().split('\n').at(-1)).toMatch(/^psync: .*does not hold a psync pid/);
  expect(await readFile(join(left, '.psync', 'lock'), 'utf8')).toBe('not a pid\n');
});

test('a root removed with rm -rf stops psync with a clear error; its deletes never reach the other side', async () => {
  const base = tempDir('psync-lock-');
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right)]);
  for (let i = 0; i < 20; i++) await writeFile(join(left, `f${i}`), `content ${i}`);
  const running = await PsyncProcess.start([left, right]);
  const synced = async (): Promise<string[]> => (await readdir(right)).filter((name) => name !== '.psync').sort();
  await waitFor('the merge to copy everything', async () => (await synced()).length === 20);
  await rm(left, { recursive: true });
  const result = await running.child;
  expect(result.exitCode).toBe(5);
  const report = running.log().trim().split('\n').at(-1) ?? '';
  expect(report).toMatch(/^psync: .*disappeared or was replaced/);
  expect(await synced()).toEqual(Array.from({ length: 20 }, (_, i) => `f${i}`).sort());
});
