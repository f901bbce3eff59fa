/**
 * Conflicts over a real sshd: a change made on the target is never
 * overwritten by a transfer, neither when both sides edit a file at once nor
 * when the target is edited while a transfer to it is in flight. Both
 * versions survive: the newer under the name, the other as a conflict copy,
 * on both sides. And ordinary edits never make a conflict copy.
 */

import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { conflictName } from '../../src/core/conflict.js';
import { startRemotePair, waitFor, waitForSameTrees, type RemotePair } from '../support/psync.js';

let pair: RemotePair;

beforeAll(async () => {
  // A slow link (about 4 MB/s) so that a transfer of a few MB stays in flight long enough to edit its target.
  pair = await startRemotePair(['-x=--bwlimit=4000']);
}, 60_000);

afterAll(async () => {
  expect(await pair?.stop()).toBe(0);
});

const conflicts = async (): Promise<number> => (await pair.psync.status())?.counters.conflicts ?? -1;
const read = (path: string): Promise<string> => readFile(path, 'utf8');
const withLog = (error: Error): never => {
  throw new Error(`${error.message}\n--- psync log ---\n${pair.psync.log().slice(-6000)}`);
};

async function synced(name: string, content: string | Buffer): Promise<void> {
  await writeFile(join(pair.left, name), content);
  await waitFor(`${name} to arrive`, async () => (await readFile(join(pair.right, name))).equals(Buffer.from(content)));
}

test('ordinary edits on one side never make a conflict copy', async () => {
  const { left, right } = pair;
  const before = await conflicts();
  await synced('plain.txt', 'v1');
  await writeFile(join(left, 'plain.txt'), 'v2');
  await writeFile(join(left, 'plain.txt'), 'v3, saved again at once');
  await writeFile(join(left, 'plain.txt.tmp'), 'v4 by a safe save');
  await rename(join(left, 'plain.txt.tmp'), join(left, 'plain.txt'));
  await waitFor('v4 on the right', async () => (await read(join(right, 'plain.txt'))) === 'v4 by a safe save').catch(withLog);
  await writeFile(join(right, 'plain.txt'), 'v5 from the right, later');
  await waitFor('v5 on the left', async () => (await read(join(left, 'plain.txt'))) === 'v5 from the right, later').catch(withLog);
  await rm(join(left, 'plain.txt'));
  await writeFile(join(left, 'plain.txt'), 'v6 re-created');
  await waitForSameTrees(left, right).catch(withLog);
  expect(await read(join(right, 'plain.txt'))).toBe('v6 re-created');
  expect((await readdir(right)).filter((n) => n.includes('psync-conflict')), pair.psync.log()).toEqual([]);
  expect(await conflicts()).toBe(before);
});

test('both sides edit the same file at once: the newer keeps the name, the older is kept as a copy on both sides', async () => {
  const { left, right } = pair;
  await synced('doc.txt', 'original');
  const older = new Date(Date.now() - 60_000);
  // Within one settle window: both reports are in flight together.
  await writeFile(join(left, 'doc.txt'), 'left edit');
  await utimes(join(left, 'doc.txt'), older, older);
  await writeFile(join(right, 'doc.txt'), 'right edit, newer');
  const copy = conflictName('doc.txt', older.getTime());
  // The trees can look the same for a moment before the conflict is seen: wait for the outcome.
  await waitFor('the conflict copy on the left', () => read(join(left, copy))).catch(withLog);
  await waitFor('the newer version on the left', async () => (await read(join(left, 'doc.txt'))) === 'right edit, newer').catch(withLog);
  await waitForSameTrees(left, right).catch(withLog);
  for (const root of [left, right]) {
    expect(await read(join(root, 'doc.txt')), `${root}/doc.txt\n${pair.psync.log().slice(-4000)}`).toBe('right edit, newer');
    expect(await read(join(root, copy)), `${root}/${copy}`).toBe('left edit');
  }
  await waitFor('the conflict to be counted', async () => (await conflicts()) > 0);
});

test('an edit on the target while a transfer to that file is in flight is not overwritten', async () => {
  const { left, right } = pair;
  await synced('big.bin', 'small first version');
  const before = await conflicts();
  const incoming = randomBytes(8 << 20);
  await writeFile(join(left, 'big.bin'), incoming);
  const leftMtime = (await stat(join(left, 'big.bin'))).mtimeMs;
  // rsync writes into `.big.bin.XXXXXX` beside the file and renames it over at the end.
  await waitFor('the transfer to start', async () => (await readdir(right)).some((n) => n.startsWith('.big.bin.')), 20_000);
  await appendFile(join(right, 'big.bin'), ' + edited on the right during the transfer');
  const edited = 'small first version + edited on the right during the transfer';
  const copy = conflictName('big.bin', leftMtime);
  await waitFor('the conflict copy on the left', () => stat(join(left, copy)), 40_000).catch(withLog);
  await waitFor('the edit on the left', async () => (await stat(join(left, 'big.bin'))).size === edited.length, 20_000).catch(withLog);
  await waitForSameTrees(left, right, 40_000).catch(withLog);
  for (const root of [left, right]) {
    const kept = await readFile(join(root, 'big.bin'));
    expect(kept.length === edited.length && kept.toString() === edited, `${root}/big.bin is the edit\n${pair.psync.log().slice(-4000)}`).toBe(true);
    expect((await readFile(join(root, copy))).equals(incoming), `${root}/${copy} holds the incoming version`).toBe(true);
  }
  await waitFor('the conflict to be counted', async () => (await conflicts()) > before);
}, 60_000);

test('a rename onto a file that the other side is editing at the same moment loses neither version', async () => {
  const { left, right } = pair;
  await synced('onto-a.txt', 'moved over b');
  await synced('onto-b.txt', 'old b');
  await Promise.all([rename(join(left, 'onto-a.txt'), join(left, 'onto-b.txt')), writeFile(join(right, 'onto-b.txt'), 'edited on the right')]);
  const contents = async (root: string): Promise<string[]> =>
    Promise.all((await readdir(root)).filter((n) => n.startsWith('onto-')).map((n) => read(join(root, n)))).then((all) => all.sort());
  for (const root of [left, right]) {
    await waitFor(`both versions on ${root}`, async () => {
      const all = await contents(root);
      return all.includes('moved over b') && all.includes('edited on the right');
    }).catch(withLog);
  }
  await waitForSameTrees(left, right).catch(withLog);
  expect(await exists(join(left, 'onto-a.txt'))).toBe(false);
});

const exists = (path: string): Promise<boolean> => stat(path).then(
  () => true,
  () => false,
);

test('files changed and then moved with their directory while the queue is busy arrive with their new content, and nothing comes back', async () => {
  const { left, right } = pair;
  await mkdir(join(left, 'busy-d'));
  for (let i = 0; i < 5; i++) await synced(`busy-d/f${i}`, `old ${i}`);
  const before = (await pair.psync.status())!.counters.applied.rightToLeft;
  // A transfer that keeps the queue busy for a second or two.
  await writeFile(join(left, 'busy-big.bin'), randomBytes(6 << 20));
  await waitFor('the big transfer to start', async () => (await readdir(right)).some((n) => n.startsWith('.busy-big.bin.')), 20_000);
  for (let i = 0; i < 5; i++) await writeFile(join(left, 'busy-d', `f${i}`), `new ${i}`);
  await new Promise((resolve) => setTimeout(resolve, 400)); // let the writes be reported (and queued) before the rename
  await rename(join(left, 'busy-d'), join(left, 'busy-e'));
  await waitFor('the new contents under the new name', async () => {
    for (let i = 0; i < 5; i++) if ((await read(join(right, 'busy-e', `f${i}`)).catch(() => '')) !== `new ${i}`) return false;
    return true;
  }, 40_000).catch(withLog);
  await waitForSameTrees(left, right, 20_000).catch(withLog);
  // A barrier from the right proves any echo would have been dispatched by now.
  await writeFile(join(right, 'busy-barrier'), 'b');
  await waitFor('the barrier', () => stat(join(left, 'busy-barrier')));
  await waitFor('the barrier to be counted', async () => (await pair.psync.status())!.counters.applied.rightToLeft > before);
  expect((await pair.psync.status())!.counters.applied.rightToLeft - before, pair.psync.log().slice(-6000)).toBe(1);
  // The race this test sets up did happen: rsync found the files gone and they were sent again.
  expect(pair.psync.log()).toContain('moved with its directory before rsync sent it');
}, 90_000);
