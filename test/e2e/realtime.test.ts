/**
 * psync end to end over a real sshd on loopback: every change made on one
 * side arrives on the other, in both directions, and nothing echoes back.
 *
 * After each step a "barrier" file is written on the target side and waited
 * for on the source side. Filters report in order and the brain applies in
 * order, so once the barrier has arrived any echo of the step would have
 * been dispatched: the step's reverse-direction count must be exactly the
 * barrier's one action.
 */

import { appendFile, chmod, lstat, mkdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PsyncProcess, startRemotePair, waitFor, waitForSameTrees, type Status, type RemotePair } from '../support/psync.js';

let pair: RemotePair;
let psync: PsyncProcess;
let left: string;
let right: string;

beforeAll(async () => {
  pair = await startRemotePair(['-e', '*.skip', '-d', '2'], 'right with space');
  ({ psync, left, right } = pair);
}, 60_000);

afterAll(async () => {
  expect(await pair?.stop()).toBe(0);
});

type Dir = 'leftToRight' | 'rightToLeft';
const reverse = (d: Dir): Dir => (d === 'leftToRight' ? 'rightToLeft' : 'leftToRight');
let barriers = 0;

async function status(): Promise<Status> {
  const s = await psync.status();
  if (s === undefined) throw new Error('no status');
  return s;
}

/**
 * Run `change` on the source side, wait until both trees are identical, then
 * prove no echo came back: a barrier from the target arrives and the reverse
 * direction applied exactly that one action.
 */
async function step(direction: Dir, change: () => Promise<void>): Promise<void> {
  const [src, dst] = direction === 'leftToRight' ? [left, right] : [right, left];
  const before = await status();
  await change();
  await waitForSameTrees(left, right).catch((error: Error) => {
    throw new Error(`${error.message}\n--- psync log ---\n${psync.log().slice(-6000)}`);
  });
  const barrier = join(dst, `barrier-${++barriers}`);
  await writeFile(barrier, 'b');
  await waitFor('the barrier to arrive', () => stat(join(src, `barrier-${barriers}`)).then(() => true));
  const after = await waitFor('the barrier to be counted', async () => {
    const s = await status();
    return s.counters.applied[reverse(direction)] > before.counters.applied[reverse(direction)] ? s : undefined;
  });
  expect(after.counters.applied[reverse(direction)] - before.counters.applied[reverse(direction)], psync.log()).toBe(1);
  expect(after.counters.failures).toBe(0);
  await waitForSameTrees(left, right);
}

describe.each(['leftToRight', 'rightToLeft'] as const)('%s', (direction) => {
  const src = (): string => (direction === 'leftToRight' ? left : right);
  const dst = (): string => (direction === 'leftToRight' ? right : left);
  const p = (root: string, ...parts: string[]): string => join(root, direction, ...parts);

  test('setup: a directory for this direction', async () => {
    await step(direction, () => mkdir(p(src())));
  });

  test('create: content, mode and mtime arrive; the source is untouched', async () => {
    await step(direction, async () => {
      await writeFile(p(src(), 'file.txt'), 'hello\n', { mode: 0o640 });
      await chmod(p(src(), 'file.txt'), 0o640);
      await utimes(p(src(), 'file.txt'), new Date('2021-03-04T05:06:07.123Z'), new Date('2021-03-04T05:06:07.123Z'));
    });
    const [s, d] = await Promise.all([lstat(p(src(), 'file.txt')), lstat(p(dst(), 'file.txt'))]);
    expect(d.mode & 0o777).toBe(0o640);
    expect(d.mtimeMs).toBe(s.mtimeMs);
    expect(Math.round(s.mtimeMs)).toBe(new Date('2021-03-04T05:06:07.123Z').getTime());
  });

  test('modify and chmod arrive; no echo rewrites the source', async () => {
    const inode = (await lstat(p(src(), 'file.txt'))).ino;
    await step(direction, () => appendFile(p(src(), 'file.txt'), 'more\n'));
    await step(direction, () => chmod(p(src(), 'file.txt'), 0o600));
    const s = await lstat(p(src(), 'file.txt'));
    expect(s.ino).toBe(inode);
    expect((await lstat(p(dst(), 'file.txt'))).mode & 0o777).toBe(0o600);
  });

  // Fuzz (paced mix), seed 9001: a chmod back to the mode agreed before was taken for a late report of that version.
  test('a chmod back to the previous mode arrives', async () => {
    await step(direction, () => chmod(p(src(), 'file.txt'), 0o640));
    await step(direction, () => chmod(p(src(), 'file.txt'), 0o600));
    expect((await lstat(p(dst(), 'file.txt'))).mode & 0o777).toBe(0o600);
  });

  test('two saves of the same size within one second both arrive (rsync quick check compares whole seconds)', async () => {
    const at = (ms: number): Date => new Date(Date.UTC(2022, 0, 2, 3, 4, 5, ms));
    await step(direction, async () => {
      await writeFile(p(src(), 'same-second.txt'), 'version 1');
      await utimes(p(src(), 'same-second.txt'), at(100), at(100));
    });
    await step(direction, async () => {
      await writeFile(p(src(), 'same-second.txt'), 'version 2');
      await utimes(p(src(), 'same-second.txt'), at(900), at(900));
    });
    expect(await readFile(p(dst(), 'same-second.txt'), 'utf8')).toBe('version 2');
  });

  test('rename a file: moved on the other side, not copied (same inode)', async () => {
    const before = (await lstat(p(dst(), 'file.txt'))).ino;
    await step(direction, () => rename(p(src(), 'file.txt'), p(src(), 'renamed.txt')));
    expect((await lstat(p(dst(), 'renamed.txt'))).ino).toBe(before);
  });

  test('rename a directory of 100 files: every inode kept', async () => {
    await step(direction, async () => {
      await mkdir(p(src(), 'hundred'));
      for (let i = 0; i < 100; i++) await writeFile(p(src(), 'hundred', `f${i}`), `content ${i}\n`);
    });
    const inodes = await Promise.all(Array.from({ length: 100 }, (_, i) => lstat(p(dst(), 'hundred', `f${i}`)).then((s) => s.ino)));
    const runsBefore = (await status()).counters.rsyncRuns;
    await step(direction, () => rename(p(src(), 'hundred'), p(src(), 'hundred-renamed')));
    const after = await Promise.all(Array.from({ length: 100 }, (_, i) => lstat(p(dst(), 'hundred-renamed', `f${i}`)).then((s) => s.ino)));
    expect(after).toEqual(inodes);
    // Only the barrier was transferred with rsync: the rename itself moved, it did not copy.
    expect((await status()).counters.rsyncRuns - runsBefore).toBe(1);
  });

  test('mkdir -p of a nested tree with files', async () => {
    await step(direction, async () => {
      await mkdir(p(src(), 'nested', 'a', 'b', 'c'), { recursive: true });
      await writeFile(p(src(), 'nested', 'a', 'b', 'c', 'deep.txt'), 'deep');
      await writeFile(p(src(), 'nested', 'a', 'top.txt'), 'top');
    });
    expect((await lstat(p(dst(), 'nested', 'a', 'b', 'c', 'deep.txt'))).isFile()).toBe(true);
  });

  test('rm -rf of a tree and delete of a file', async () => {
    await step(direction, () => rm(p(src(), 'nested'), { recursive: true }));
    await expect(lstat(p(dst(), 'nested'))).rejects.toThrow(/ENOENT/);
    await step(direction, () => rm(p(src(), 'renamed.txt')));
    await expect(lstat(p(dst(), 'renamed.txt'))).rejects.toThrow(/ENOENT/);
  });

  test('excluded files and temp files never arrive', async () => {
    const runsBefore = (await status()).counters.applied[direction];
    await mkdir(p(src(), 'x', 'y'), { recursive: true });
    await writeFile(p(src(), 'x', 'y', 'c.skip'), 'excluded');
    await writeFile(p(src(), 'x', 'draft.tmp'), 'temp');
    await writeFile(p(src(), 'x', '.draft.txt.swp'), 'vim swap');
    await writeFile(p(src(), 'x', 'real.txt'), 'real');
    await waitFor('real.txt to arrive', () => stat(p(dst(), 'x', 'real.txt')).then(() => true));
    // Barrier from the source side: everything written before it has been reported by now.
    await writeFile(p(src(), 'x', 'after.txt'), 'after');
    await waitFor('after.txt to arrive', () => stat(p(dst(), 'x', 'after.txt')).then(() => true));
    for (const name of ['y/c.skip', 'draft.tmp', '.draft.txt.swp']) {
      await expect(lstat(p(dst(), 'x', name))).rejects.toThrow(/ENOENT/);
    }
    expect((await status()).counters.applied[direction]).toBeGreaterThan(runsBefore);
    // Clean up so the trees compare equal again.
    await rm(p(src(), 'x', 'y', 'c.skip'));
    await rm(p(src(), 'x', 'draft.tmp'));
    await rm(p(src(), 'x', '.draft.txt.swp'));
    await waitForSameTrees(left, right);
  });

  test('a temp file renamed onto a real name (safe save) sends the real name', async () => {
    await step(direction, async () => {
      await writeFile(p(src(), 'doc.txt'), 'version 1');
    });
    await step(direction, async () => {
      await writeFile(p(src(), 'doc.txt.tmp'), 'version 2');
      await rename(p(src(), 'doc.txt.tmp'), p(src(), 'doc.txt'));
    });
    await expect(lstat(p(dst(), 'doc.txt.tmp'))).rejects.toThrow(/ENOENT/);
  });
});

test('a genuine edit on the target shortly after psync wrote it is sent back', async () => {
  await step('leftToRight', () => writeFile(join(left, 'edited-back.txt'), 'from left'));
  const before = await status();
  await writeFile(join(right, 'edited-back.txt'), 'edited on the right');
  await waitFor('the right edit to reach the left', async () => (await readFile(join(left, 'edited-back.txt'), 'utf8')) === 'edited on the right');
  await waitFor('the edit to be counted', async () => (await status()).counters.applied.rightToLeft > before.counters.applied.rightToLeft);
  await waitForSameTrees(left, right);
});
