/**
 * The file patterns real programs produce (issue 3), end to end over a real
 * sshd with real rsync, in both directions where it applies: chained renames
 * and swaps, moves across the exclude boundary and the root, create+delete
 * within the settle window, slow writers, editors' safe saves, special files,
 * symlinks, and the sequences that broke other sync tools.
 *
 * Each step is closed by a barrier in each direction (test/support/steps.ts),
 * so the counters between them are the step's own: `forward` actions,
 * `reverse` actions (0: no echo), rsync runs and helper runs.
 */

import { appendFile, copyFile, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { PsyncProcess, startRemotePair, waitFor, waitForSameTrees, type RemotePair } from '../support/psync.js';
import { DIRECTIONS, gone, ino, Stepper, type StepCounts } from '../support/steps.js';

let pair: RemotePair;
let psync: PsyncProcess;
let left: string;
let right: string;
/** Outside both roots, on the same file system (moves in and out of the tree). */
let outside: string;

beforeAll(async () => {
  pair = await startRemotePair(['-e', 'attic', '-d', '2']);
  ({ psync, left, right } = pair);
  stepper = new Stepper(psync, left, right);
  outside = await mkdtemp(join(tmpdir(), 'psync-outside-'));
}, 60_000);

afterAll(async () => {
  expect(await pair?.stop()).toBe(0);
  if (outside !== undefined) await rm(outside, { recursive: true, force: true });
});

let stepper: Stepper;
const step = (...args: Parameters<Stepper['step']>): Promise<StepCounts> => stepper.step(...args);

/** Names that appear in `dir` while it is watched (to prove a temp name never showed up). */
function recordNames(dir: string): { names: Set<string>; close: () => void } {
  const names = new Set<string>();
  const watcher: FSWatcher = watch(dir, (_event, name) => {
    if (name !== null) names.add(name.toString());
  });
  return { names, close: () => watcher.close() };
}

describe.each(DIRECTIONS)('%s', (direction) => {
  /** Each test works in its own directory, `<direction>/<test name>`. */
  let sub = '';
  const src = (...parts: string[]): string => join(direction === 'leftToRight' ? left : right, direction, sub, ...parts);
  const dst = (...parts: string[]): string => join(direction === 'leftToRight' ? right : left, direction, sub, ...parts);
  const s = (change: () => Promise<unknown>, settled?: () => Promise<unknown>): Promise<StepCounts> =>
    step(direction, join(direction, sub), change, settled);

  beforeAll(async () => {
    sub = '';
    const counts = await step(direction, direction, () => mkdir(src()));
    expect(counts.reverse).toBe(0);
  });

  beforeEach(async (context) => {
    sub = context.task.name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 40);
    await s(() => mkdir(src()));
  });

  test('chained renames a -> b -> c inside one settle window: one move, no data re-sent', async () => {
    await s(() => writeFile(src('a'), 'chained content\n'));
    const inode = await ino(dst('a'));
    const counts = await s(async () => {
      await rename(src('a'), src('b'));
      await rename(src('b'), src('c'));
    });
    expect(await ino(dst('c'))).toBe(inode);
    expect(await gone(dst('a'))).toBe(true);
    expect(await gone(dst('b'))).toBe(true);
    expect(counts, psync.log().slice(-4000)).toEqual({ forward: 1, reverse: 0, rsyncRuns: 0, helperRuns: 1 });
  });

  test('swap through a third name (a -> t; b -> a; t -> b): contents swapped, nothing re-sent', async () => {
    await s(async () => {
      await writeFile(src('swap-a'), 'content A, the longer one\n');
      await writeFile(src('swap-b'), 'content B\n');
    });
    const [inoA, inoB] = [await ino(dst('swap-a')), await ino(dst('swap-b'))];
    const counts = await s(async () => {
      await rename(src('swap-a'), src('swap-t'));
      await rename(src('swap-b'), src('swap-a'));
      await rename(src('swap-t'), src('swap-b'));
    });
    expect(await readFile(dst('swap-a'), 'utf8')).toBe('content B\n');
    expect(await readFile(dst('swap-b'), 'utf8')).toBe('content A, the longer one\n');
    expect(await gone(dst('swap-t'))).toBe(true);
    expect({ a: await ino(dst('swap-a')), b: await ino(dst('swap-b')) }).toEqual({ a: inoB, b: inoA });
    expect(counts.rsyncRuns, psync.log().slice(-4000)).toBe(0);
    expect(counts.reverse).toBe(0);
  });

  test('move into an excluded directory is a delete there; move out of it is a new file', async () => {
    await s(
      async () => {
        await mkdir(src('attic'));
        await writeFile(src('to-attic'), 'going into the attic\n');
      },
      () => waitFor('to-attic to arrive', () => stat(dst('to-attic')).then(() => true)),
    );
    expect(await gone(dst('attic'))).toBe(true);
    const into = await s(() => rename(src('to-attic'), src('attic', 'to-attic')), async () => {
      await waitFor('to-attic to be deleted', () => gone(dst('to-attic')));
    });
    expect(into).toMatchObject({ forward: 1, reverse: 0, rsyncRuns: 0 });
    expect(await gone(dst('attic'))).toBe(true);

    await writeFile(src('attic', 'from-attic'), 'coming out of the attic\n');
    const out = await s(() => rename(src('attic', 'from-attic'), src('from-attic')), async () => {
      await waitFor('from-attic to arrive', async () => (await readFile(dst('from-attic'), 'utf8')) === 'coming out of the attic\n');
    });
    expect(out).toMatchObject({ forward: 1, reverse: 0, rsyncRuns: 1 });
    expect(await gone(dst('attic'))).toBe(true);
    await rm(src('attic'), { recursive: true });
  });

  test('a directory moved in from outside the root arrives whole; moved out, it is deleted', async () => {
    const staged = join(outside, direction);
    await mkdir(join(staged, 'sub', 'deeper'), { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(join(staged, `f${i}`), `file ${i}\n`);
    await writeFile(join(staged, 'sub', 'deeper', 'leaf'), 'leaf\n');
    await symlink('sub/deeper/leaf', join(staged, 'link-to-leaf'));
    const into = await s(() => rename(staged, src('moved-in')));
    expect(into.reverse).toBe(0);
    expect(await readFile(dst('moved-in', 'sub', 'deeper', 'leaf'), 'utf8')).toBe('leaf\n');
    expect(await readlink(dst('moved-in', 'link-to-leaf'))).toBe('sub/deeper/leaf');

    const out = await s(() => rename(src('moved-in'), staged));
    expect(out).toMatchObject({ reverse: 0, rsyncRuns: 0 });
    expect(await gone(dst('moved-in'))).toBe(true);
    await rm(staged, { recursive: true });
  });

  test('create then delete within the settle window: nothing is sent', async () => {
    const counts = await s(async () => {
      await writeFile(src('ephemeral'), 'here and gone\n');
      await rm(src('ephemeral'));
    });
    expect(counts, psync.log().slice(-3000)).toMatchObject({ forward: 0, reverse: 0, helperRuns: 0 });
  });

  test('delete then re-create, and cp over: the new content arrives', async () => {
    await s(() => writeFile(src('recreated'), 'old\n'));
    await s(async () => {
      await rm(src('recreated'));
      await writeFile(src('recreated'), 'new content after rm\n');
    });
    expect(await readFile(dst('recreated'), 'utf8')).toBe('new content after rm\n');

    await writeFile(join(outside, `${direction}-other`), 'copied over the old one\n');
    await s(() => copyFile(join(outside, `${direction}-other`), src('recreated')));
    expect(await readFile(dst('recreated'), 'utf8')).toBe('copied over the old one\n');
  });

  test('editors\' safe saves: the temp names never appear on the other side, the final file does', async () => {
    await s(async () => {
      await mkdir(src('edit'));
      await writeFile(src('edit', 'x'), 'x v1\n');
      await writeFile(src('edit', 'x.docx'), 'docx v1\n');
    });
    const seen = recordNames(dst('edit'));
    try {
      // vim (backupcopy=no): probe 4913, swap file, rename x to x~ as backup, write x, drop the backup.
      await s(async () => {
        await writeFile(src('edit', '4913'), '');
        await rm(src('edit', '4913'));
        await writeFile(src('edit', '.x.swp'), 'swap');
        await rename(src('edit', 'x'), src('edit', 'x~'));
        await writeFile(src('edit', 'x'), 'x v2 (vim)\n');
        await rm(src('edit', 'x~'));
        await rm(src('edit', '.x.swp'));
      });
      expect(await readFile(dst('edit', 'x'), 'utf8')).toBe('x v2 (vim)\n');
      // emacs: lock symlink .#x, backup x~, write x; the lock goes, the backup stays (as a temp name).
      await s(
        async () => {
          await symlink('user@host.1234:1700000000', src('edit', '.#x'));
          await copyFile(src('edit', 'x'), src('edit', 'x~'));
          await writeFile(src('edit', 'x'), 'x v3 (emacs)\n');
          await rm(src('edit', '.#x'));
        },
        () => waitFor('x v3', async () => (await readFile(dst('edit', 'x'), 'utf8')) === 'x v3 (emacs)\n'),
      );
      await rm(src('edit', 'x~'));
      // Word: owner file ~$x.docx, write x.docx.~tmp~, rename it onto x.docx, drop the owner file.
      await s(async () => {
        await writeFile(src('edit', '~$x.docx'), 'owner');
        await writeFile(src('edit', 'x.docx.~tmp~'), 'docx v2\n');
        await rename(src('edit', 'x.docx.~tmp~'), src('edit', 'x.docx'));
        await rm(src('edit', '~$x.docx'));
      });
      expect(await readFile(dst('edit', 'x.docx'), 'utf8')).toBe('docx v2\n');
      // gedit / GIO: .goutputstream-XXXXXX renamed onto x.
      await s(async () => {
        await writeFile(src('edit', '.goutputstream-ABC123'), 'x v4 (gedit)\n');
        await rename(src('edit', '.goutputstream-ABC123'), src('edit', 'x'));
      });
      expect(await readFile(dst('edit', 'x'), 'utf8')).toBe('x v4 (gedit)\n');
    } finally {
      seen.close();
    }
    const temps = ['4913', '.x.swp', 'x~', '.#x', '~$x.docx', 'x.docx.~tmp~', '.goutputstream-ABC123'];
    expect([...seen.names].filter((n) => temps.includes(n))).toEqual([]);
    expect(seen.names.has('x')).toBe(true);
  });

  test('symlinks are synced as links, never followed, one pointing outside the tree included', async () => {
    const precious = join(outside, `${direction}-precious`);
    await mkdir(precious);
    await writeFile(join(precious, 'keep'), 'never touch me\n');
    await s(async () => {
      await mkdir(src('links'));
      await symlink(precious, src('links', 'out-abs'));
      await symlink('../../../..', src('links', 'out-rel'));
      await symlink('missing-target', src('links', 'dangling'));
    });
    expect(await readlink(dst('links', 'out-abs'))).toBe(precious);
    expect((await lstat(dst('links', 'out-abs'))).isSymbolicLink()).toBe(true);
    expect(await readlink(dst('links', 'out-rel'))).toBe('../../../..');
    // Rename the directory holding the links, then delete them: the helper acts on links, not through them.
    await s(() => rename(src('links'), src('links2')));
    expect(await readlink(dst('links2', 'out-abs'))).toBe(precious);
    await s(() => rm(src('links2'), { recursive: true }));
    expect(await gone(dst('links2'))).toBe(true);
    expect(await readFile(join(precious, 'keep'), 'utf8')).toBe('never touch me\n');
    await rm(precious, { recursive: true });
  });

  const replaceDirByLink = async (gapMs: number): Promise<void> => {
    await s(async () => {
      await mkdir(src('rl', 'd1'), { recursive: true });
      await writeFile(src('rl', 'd1', 'real1'), 'real one\n');
      await writeFile(src('rl', 'd1', 'real2'), 'real two\n');
      await mkdir(src('rl', 'd2', 'd1'), { recursive: true });
      await writeFile(src('rl', 'd2', 'd1', 'real1'), 'copy one\n');
      await writeFile(src('rl', 'd2', 'd1', 'other'), 'copy other\n');
    });
    const counts = await s(async () => {
      await execa('rm', ['-r', src('rl', 'd2', 'd1')]);
      if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
      await symlink('../d1', src('rl', 'd2', 'd1'));
    });
    expect(counts.reverse).toBe(0);
    for (const root of [src(), dst()]) {
      expect(await readlink(join(root, 'rl', 'd2', 'd1'))).toBe('../d1');
      expect(await readFile(join(root, 'rl', 'd1', 'real1'), 'utf8')).toBe('real one\n');
      expect(await readFile(join(root, 'rl', 'd1', 'real2'), 'utf8')).toBe('real two\n');
    }
  };

  // lstat of `d2/d1/real1` would follow the new link and find `d1/real1`: the filter waits for
  // `d2/d1`'s own round instead (splitByAncestry), however the events fall into rounds.
  test('rm -r d2/d1; ln -s ../d1 d2/d1 never deletes the real files behind the link', () => replaceDirByLink(0));

  test('the same with the link made 50 ms after the rm (its own settle round)', () => replaceDirByLink(50));

  test('mv dirA/f dirA/g; touch dirA; cp other dirA/f ends with exactly those contents', async () => {
    await writeFile(join(outside, `${direction}-cp-source`), 'the other file\n');
    await s(async () => {
      await mkdir(src('dirA'));
      await writeFile(src('dirA', 'f'), 'original f\n');
    });
    const counts = await s(async () => {
      await rename(src('dirA', 'f'), src('dirA', 'g'));
      const now = new Date();
      await utimes(src('dirA'), now, now);
      await copyFile(join(outside, `${direction}-cp-source`), src('dirA', 'f'));
    });
    expect(await readFile(dst('dirA', 'g'), 'utf8')).toBe('original f\n');
    expect(await readFile(dst('dirA', 'f'), 'utf8')).toBe('the other file\n');
    expect((await readdir(dst('dirA'))).sort()).toEqual(['f', 'g']);
    expect(counts.reverse).toBe(0);
  });

  test('cp -a SOMEDIR t; mv t u; rm -rf u leaves nothing behind', async () => {
    await s(async () => {
      await mkdir(src('somedir', 'a', 'b'), { recursive: true });
      for (let i = 0; i < 200; i++) await writeFile(src('somedir', i % 2 ? 'a' : join('a', 'b'), `f${i}`), `some ${i}\n`.repeat(50));
      await symlink('a/b/f0', src('somedir', 'link'));
    });
    const counts = await s(async () => {
      await execa('cp', ['-a', src('somedir'), src('t')]);
      await rename(src('t'), src('u'));
      await rm(src('u'), { recursive: true });
    });
    expect(await gone(dst('t')), psync.log().slice(-6000)).toBe(true);
    expect(await gone(dst('u')), psync.log().slice(-6000)).toBe(true);
    expect(counts.reverse).toBe(0);
  });

  test('rm -rf d; mkdir d, and a file written into d a second later still arrives', async () => {
    await s(async () => {
      await mkdir(src('d'));
      for (let i = 0; i < 10; i++) await writeFile(src('d', `old${i}`), 'old\n');
    });
    await rm(src('d'), { recursive: true });
    await mkdir(src('d'));
    await waitFor('d to be emptied on the other side', async () => (await readdir(dst('d')).catch(() => ['x'])).length === 0);
    // A second later, not a fixed wait for sync: the pattern is a late write into the re-made directory.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const counts = await s(() => writeFile(src('d', 'late'), 'late file\n'));
    expect(await readFile(dst('d', 'late'), 'utf8')).toBe('late file\n');
    expect(counts.reverse).toBe(0);
  });
});

describe('special files (left to right)', () => {
  const src = (...parts: string[]): string => join(left, 'special', ...parts);
  const dst = (...parts: string[]): string => join(right, 'special', ...parts);
  let server: Server | undefined;

  afterAll(() => {
    server?.close();
  });

  test('a FIFO and a socket never hang psync; as root rsync -a recreates them (README: left to rsync)', async () => {
    await step('leftToRight', 'special', () => mkdir(src()));
    await step(
      'leftToRight',
      'special',
      async () => {
        await execa('mkfifo', [src('fifo')]);
        server = createServer();
        await new Promise<void>((resolve) => server!.listen(src('sock'), resolve));
        await writeFile(src('after-fifo'), 'still syncing\n');
      },
      () => waitFor('after-fifo to arrive', () => stat(dst('after-fifo')).then(() => true)),
    );
    if (process.getuid?.() === 0) {
      expect((await lstat(dst('fifo'))).isFIFO()).toBe(true);
      expect((await lstat(dst('sock'))).isSocket()).toBe(true);
    }
    // Renaming and deleting special files goes through the helper like any entry.
    await step('leftToRight', 'special', () => rename(src('fifo'), src('fifo2')), () => waitFor('fifo2', () => gone(dst('fifo')).then((g) => g && lstat(dst('fifo2')).then(() => true))));
    await step('leftToRight', 'special', () => rm(src('fifo2')), () => waitFor('fifo2 deleted', () => gone(dst('fifo2'))));
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
    await rm(src('sock'), { force: true });
    await waitFor('sock deleted', () => gone(dst('sock')));
    await waitForSameTrees(src(), dst());
  });

  test('hard links are synced as separate files, and a write through one name updates both on the other side', async () => {
    await step('leftToRight', 'special', async () => {
      await writeFile(src('h1'), 'linked v1\n');
      await link(src('h1'), src('h2'));
    });
    expect(await readFile(dst('h2'), 'utf8')).toBe('linked v1\n');
    await step('leftToRight', 'special', () => appendFile(src('h1'), 'written through h1\n'));
    expect(await readFile(dst('h1'), 'utf8')).toBe('linked v1\nwritten through h1\n');
    expect(await readFile(dst('h2'), 'utf8')).toBe('linked v1\nwritten through h1\n');
  });
});

describe('mkdir every 200 ms during a big transfer', () => {
  test('every directory arrives without another trigger', async () => {
    const from = join(left, 'bigxfer');
    const to = join(right, 'bigxfer');
    await mkdir(from);
    await waitFor('bigxfer on the right', () => stat(to).then(() => true));
    const big = join(from, 'big.bin');
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
    for (let i = 0; i < 200; i++) await appendFile(big, chunk);
    const made: string[] = [];
    let stop = false;
    let duringTransfer = 0;
    const bigSize = (await stat(big)).size;
    const mkdirs = (async () => {
      for (let i = 0; (!stop || i < 10) && i < 60; i++) {
        await mkdir(join(from, `x${i}`));
        made.push(`x${i}`);
        if ((await stat(join(to, 'big.bin')).then((st) => st.size, () => 0)) !== bigSize) duringTransfer += 1;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    await waitFor('the big file to arrive', async () => (await stat(join(to, 'big.bin'))).size === bigSize, 50_000);
    stop = true;
    await mkdirs;
    expect(duringTransfer, 'directories made while the big file was on its way').toBeGreaterThan(1);
    await waitFor(
      'every directory to arrive',
      async () => (await Promise.all(made.map((d) => stat(join(to, d)).then(() => true, () => false)))).every(Boolean),
      15_000,
    );
    await rm(big);
    for (const d of made) await rm(join(from, d), { recursive: true });
    await waitForSameTrees(from, to, 30_000);
  }, 90_000);
});

describe('slow writer (own pair: -i 0.25 --max-delay 1)', () => {
  let slow: RemotePair;
  beforeAll(async () => {
    slow = await startRemotePair(['-i', '0.25', '--max-delay', '1']);
  }, 60_000);
  afterAll(async () => {
    expect(await slow?.stop()).toBe(0);
  });

  test.each(DIRECTIONS)('%s: a file appended every 100 ms for 3 s is sent while it grows, and ends identical', async (direction) => {
    const [src, dst] = direction === 'leftToRight' ? [slow.left, slow.right] : [slow.right, slow.left];
    const file = join(src, `growing-${direction}.log`);
    const target = join(dst, `growing-${direction}.log`);
    const sizesSeen = new Set<number>();
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 30; i++) {
        await appendFile(file, `line ${i} ${'.'.repeat(100)}\n`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      writing = false;
    })();
    while (writing) {
      const size = await stat(target).then((s) => s.size, () => undefined);
      if (size !== undefined && size > 0) sizesSeen.add(size);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await writer;
    // The settle delay (0.25 s) never passes while it grows: only the max delay (1 s) sends it meanwhile.
    expect(sizesSeen.size, slow.psync.log().slice(-3000)).toBeGreaterThanOrEqual(2);
    await waitForSameTrees(slow.left, slow.right);
  });
});
