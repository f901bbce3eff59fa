/**
 * Big trees end to end over a real sshd (issue 3, scale): a directory of
 * 10,000 files renamed is one move with no data re-sent; `rm -rf` of it is a
 * handful of helper runs, not one per file; a `git checkout` between two
 * branches and a `tar x` of a few thousand files converge with few rsync
 * runs. Each test stays well under a minute on a loaded 2-core machine.
 */

import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startRemotePair, waitFor, type RemotePair } from '../support/psync.js';
import { gone, ino, Stepper } from '../support/steps.js';

const DIRS = 100;
const FILES_PER_DIR = 100;
const SCALE_TEST_MS = 60_000;

let pair: RemotePair;
let stepper: Stepper;
let left: string;
let right: string;
let outside: string;

beforeAll(async () => {
  pair = await startRemotePair([]);
  ({ left, right } = pair);
  stepper = new Stepper(pair.psync, left, right);
  outside = await mkdtemp(join(tmpdir(), 'psync-scale-'));
}, 60_000);

afterAll(async () => {
  expect(await pair?.stop()).toBe(0);
  if (outside !== undefined) await rm(outside, { recursive: true, force: true });
});

/** How many entries are below `dir` (readdir only: cheap enough to poll on 10,000 files). */
async function countEntries(dir: string): Promise<number> {
  let count = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    count += 1;
    if (entry.isDirectory()) count += await countEntries(join(dir, entry.name));
  }
  return count;
}

async function writeTree(root: string, dirs: number, filesPerDir: number, tag: string): Promise<void> {
  for (let d = 0; d < dirs; d++) {
    await mkdir(join(root, `d${d}`), { recursive: true });
    await Promise.all(Array.from({ length: filesPerDir }, (_, f) => writeFile(join(root, `d${d}`, `f${f}`), `${tag} ${d}/${f}\n`)));
  }
}

const inodesOf = (root: string): Promise<number[]> =>
  Promise.all(Array.from({ length: DIRS * FILES_PER_DIR }, (_, i) => ino(join(root, `d${Math.floor(i / FILES_PER_DIR)}`, `f${i % FILES_PER_DIR}`))));

/** Entries below `ten/`: 100 directories of 100 files. */
const TEN_ENTRIES = DIRS * (FILES_PER_DIR + 1);

test(
  'a directory of 10,000 files renamed: one move, no rsync run, every inode kept',
  async () => {
    await stepper.step(
      'leftToRight',
      'ten',
      () => writeTree(join(left, 'ten'), DIRS, FILES_PER_DIR, 'ten'),
      () => waitFor('10,000 files on the right', async () => (await countEntries(join(right, 'ten')).catch(() => 0)) === TEN_ENTRIES, 40_000),
    );
    const before = await inodesOf(join(right, 'ten'));
    const started = performance.now();
    let arrivedMs = 0;
    const renamed = await stepper.step(
      'leftToRight',
      'ten-renamed',
      () => rename(join(left, 'ten'), join(left, 'ten-renamed')),
      async () => {
        await waitFor('the rename on the right', async () => (await gone(join(right, 'ten'))) && !(await gone(join(right, 'ten-renamed'))));
        arrivedMs = performance.now() - started;
      },
    );
    expect(renamed, pair.psync.log().slice(-3000)).toEqual({ forward: 1, reverse: 0, rsyncRuns: 0, helperRuns: 1 });
    expect(await inodesOf(join(right, 'ten-renamed'))).toEqual(before);
    // "About a second" on an idle machine; generous for a loaded one.
    expect(arrivedMs).toBeLessThan(5_000);
  },
  SCALE_TEST_MS,
);

test(
  'rm -rf of a 10,000-file tree: the other side ends empty there, in a handful of helper runs',
  async () => {
    const removed = await stepper.step(
      'leftToRight',
      'ten-renamed',
      () => rm(join(left, 'ten-renamed'), { recursive: true }),
      () => waitFor('the tree gone on the right', () => gone(join(right, 'ten-renamed')), 40_000),
    );
    expect(removed.reverse).toBe(0);
    expect(removed.rsyncRuns).toBe(0);
    expect(removed.forward).toBe(TEN_ENTRIES + 1);
    expect(removed.helperRuns, 'deletes are batched').toBeLessThanOrEqual(20);
  },
  SCALE_TEST_MS,
);

// Building the second branch writes d39/f0..f11, then renames d39: the children's round must not
// take them for gone under the old name (splitByAncestry makes them wait for d39's round).
test(
  'git checkout between two branches of a 2,000-file repository converges with few rsync runs',
  async () => {
    const gitDir = join(outside, 'repo.git');
    const work = join(left, 'repo');
    await mkdir(work);
    const git = (...args: string[]) =>
      execa('git', ['-c', 'user.name=psync', '-c', 'user.email=psync@test', '-c', 'core.autocrlf=false', `--git-dir=${gitDir}`, `--work-tree=${work}`, ...args], {
        stdin: 'ignore',
      });
    await execa('git', ['init', '-q', '--bare', gitDir]);
    await git('config', 'core.bare', 'false');
    // main: 40 directories of 50 files.
    await stepper.step(
      'leftToRight',
      'repo',
      async () => {
        await writeTree(work, 40, 50, 'main');
        await git('add', '-A');
        await git('commit', '-q', '-m', 'main');
        await git('branch', '-M', 'main');
      },
      undefined,
      40_000,
    );
    // other: 500 files changed, 300 deleted, 300 added in new directories, one directory renamed.
    await stepper.step(
      'leftToRight',
      'repo',
      async () => {
        await git('checkout', '-q', '-b', 'other');
        for (let i = 0; i < 500; i++) await writeFile(join(work, `d${i % 40}`, `f${Math.floor(i / 40)}`), `other ${i}\n`);
        for (let i = 0; i < 300; i++) await rm(join(work, `d${i % 40}`, `f${20 + Math.floor(i / 40)}`), { force: true });
        await writeTree(join(work, 'new'), 6, 50, 'new');
        await rename(join(work, 'd39'), join(work, 'd39-renamed'));
        await git('add', '-A');
        await git('commit', '-q', '-m', 'other');
      },
      undefined,
      40_000,
    );
    for (const branch of ['main', 'other', 'main']) {
      const counts = await stepper.step('leftToRight', 'repo', () => git('checkout', '-q', branch), undefined, 40_000);
      expect(counts.reverse, `checkout ${branch}: nothing comes back`).toBe(0);
      expect(counts.rsyncRuns, `checkout ${branch}: ${JSON.stringify(counts)}`).toBeLessThanOrEqual(15);
    }
  },
  SCALE_TEST_MS,
);

test(
  'tar x of 3,000 files converges with few rsync runs, and the same archive unpacked on the right comes back',
  async () => {
    const staged = join(outside, 'tarball');
    await writeTree(staged, 30, 100, 'tar');
    const archive = join(outside, 'tree.tar');
    await execa('tar', ['-cf', archive, '-C', staged, '.']);
    for (const direction of ['leftToRight', 'rightToLeft'] as const) {
      const into = join(direction === 'leftToRight' ? left : right, `untar-${direction}`);
      const counts = await stepper.step(
        direction,
        `untar-${direction}`,
        async () => {
          await mkdir(into);
          await execa('tar', ['-xf', archive, '-C', into]);
        },
        undefined,
        40_000,
      );
      expect(counts.reverse).toBe(0);
      expect(counts.forward).toBeGreaterThanOrEqual(3_000);
      expect(counts.rsyncRuns, JSON.stringify(counts)).toBeLessThanOrEqual(15);
    }
  },
  SCALE_TEST_MS,
);
