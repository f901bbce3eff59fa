/**
 * A running psync meets changes it did not foresee (issue 9, bugs 1 and
 * 4 to 8): a delete on the source while the start-up copies the file,
 * changes made during the start-up, a file still being written, a
 * directory rename racing an edit inside it, a rename onto a file racing a
 * delete of its source, and both sides writing one path at once. Every
 * case ends with identical trees that lost no version and brought nothing
 * back. Each runs on a local pair and over a real sshd (the right side
 * remote).
 *
 * Where a change must land in a window (during the start-up, while a
 * transfer runs) the test polls for what opens the window; the short fixed
 * gaps in the race rounds are the race being set up, not waits for psync.
 */

import { randomBytes } from 'node:crypto';
import { chmodSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { diffTrees, PsyncProcess, snapshotTree, startRemotePair, waitFor, waitForSameTrees } from '../support/psync.js';
import { startSshd, type SshdFixture } from '../support/sshd.js';
import { tempDir } from '../support/tmp.js';

type Mode = 'local' | 'remote';
const MODES: Mode[] = ['local', 'remote'];

/** One sshd for the tests that start psync over SSH on roots they filled first. */
let sshd: SshdFixture | undefined;
afterAll(async () => {
  await sshd?.stop();
});

interface Running {
  readonly psync: PsyncProcess;
  readonly left: string;
  readonly right: string;
  /** Stop psync (and its sshd, if it has its own); resolves with psync's exit code. */
  stop(): Promise<number | undefined>;
}

function freshRoots(): { left: string; right: string } {
  const base = tempDir('psync-concurrent-');
  const left = join(base, 'left');
  const right = join(base, 'right');
  return { left, right };
}

/** psync on two new empty roots, watching: locally, or over a private sshd (startRemotePair). */
async function startEmpty(mode: Mode, args: string[]): Promise<Running> {
  if (mode === 'remote') return startRemotePair(args);
  const { left, right } = freshRoots();
  await mkdir(left);
  await mkdir(right);
  const psync = await PsyncProcess.start([...args, left, right]);
  return { psync, left, right, stop: () => psync.stop() };
}

/** psync on roots `fill` prepared, not waiting for it to watch (the test acts during the start-up). */
async function startFilled(mode: Mode, args: string[], fill: (left: string, right: string) => Promise<void>): Promise<Running> {
  const { left, right } = freshRoots();
  await mkdir(left);
  await mkdir(right);
  await fill(left, right);
  let remote: string[] = [];
  if (mode === 'remote') {
    sshd ??= await startSshd();
    remote = ['-r', sshd.host, '--ssh-config', sshd.configFile];
  }
  const psync = await PsyncProcess.start([...remote, ...args, left, right], { waitWatching: false });
  return { psync, left, right, stop: () => psync.stop() };
}

/** Both trees, one line per entry (a short file's content included), for failure messages. */
async function dumpTrees(run: Running): Promise<string> {
  const lines: string[] = [];
  for (const root of [run.left, run.right]) {
    lines.push(`${root}:`);
    const tree = await snapshotTree(root).catch((error: Error) => new Map([[`(unreadable: ${error.message})`, undefined]]));
    for (const [path, info] of tree) {
      const text = info?.type === 'file' ? await readFile(join(root, path)).catch(() => Buffer.alloc(0)) : undefined;
      const shown = text === undefined ? '' : text.length <= 120 ? ` ${JSON.stringify(text.toString())}` : ` (${text.length} bytes)`;
      lines.push(`  ${path} ${info?.type ?? ''}${info?.type === 'file' ? ` mode ${(info.mode ?? 0).toString(8)} mtime ${String(info.mtimeMs)}` : ''}${shown}`);
    }
  }
  return lines.join('\n');
}

/** Rethrow with both trees and the end of psync's log. */
const withLog =
  (run: Running) =>
  async (error: Error): Promise<never> => {
    throw new Error(`${error.message}\n--- trees ---\n${await dumpTrees(run)}\n--- psync log ---\n${run.psync.log().slice(-8000)}`);
  };

/** Stop psync, expecting a clean exit. */
async function stopped(run: Running): Promise<void> {
  const log = run.psync.log();
  const code = await run.stop();
  expect(code, `psync should stop cleanly\n${log.slice(-4000)}`).toBe(0);
}

/** Wait until psync watches; fail at once if it exits. */
async function watching(run: Running): Promise<void> {
  const { psync } = run;
  const state = await waitFor(
    'psync to start watching',
    async () => (psync.child.exitCode !== null ? 'exited' : (await psync.status())?.state === 'watching' ? 'watching' : undefined),
    30_000,
  ).catch(withLog(run));
  if (state === 'exited') await withLog(run)(new Error(`psync exited (${String(psync.child.exitCode)}) before it watched`));
}

/** Whether psync has logged that it watches (the start-up is over). */
const watchingLogged = (psync: PsyncProcess): boolean => /\binfo\s+watching /.test(psync.log());

const read = (path: string): Promise<string> => readFile(path, 'utf8');
const readOr = (path: string, missing = '(missing)'): Promise<string> => read(path).catch(() => missing);
const exists = (path: string): Promise<boolean> => stat(path).then(
  () => true,
  () => false,
);
const anHourAgo = (): Date => new Date(Date.now() - 3_600_000);
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const conflictCopies = async (root: string): Promise<string[]> => [...(await snapshotTree(root)).keys()].filter((p) => p.includes('.psync-conflict-')).sort();

/** The contents of `name` and of its conflict copies in `root`'s top directory, sorted. */
async function versionsOf(root: string, name: string): Promise<string[]> {
  const dot = name.lastIndexOf('.');
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const paths = [...(await snapshotTree(root)).keys()].filter((p) => p === name || (p.startsWith(`${stem}.psync-conflict-`) && !p.includes('/')));
  return (await Promise.all(paths.map((p) => read(join(root, p))))).sort();
}

let barriers = 0;
/**
 * A barrier each way: a file written on the right arrives on the left, then
 * one written on the left arrives on the right. Filters report in order and
 * the brain applies in order, so whatever psync was going to do about the
 * changes made before is done by then.
 */
async function barrierRoundTrip(run: Running): Promise<void> {
  const n = ++barriers;
  await writeFile(join(run.right, `barrier-r${n}`), 'b');
  await waitFor(`barrier-r${n} to reach the left`, () => exists(join(run.left, `barrier-r${n}`))).catch(withLog(run));
  await writeFile(join(run.left, `barrier-l${n}`), 'b');
  await waitFor(`barrier-l${n} to reach the right`, () => exists(join(run.right, `barrier-l${n}`))).catch(withLog(run));
}

/** Synced: written on the left and arrived on the right. */
async function synced(run: Running, path: string, content: string): Promise<void> {
  await writeFile(join(run.left, path), content);
  await waitFor(`${path} to arrive on the right`, async () => (await readOr(join(run.right, path))) === content).catch(withLog(run));
}

describe.each(MODES)('%s', (mode) => {
  test('bug 1: a file deleted on the left while the start-up copies it to the right never comes back', async () => {
    const size = 1 << 20;
    // `y` is sent after `x` (rsync goes in name order) and keeps the start-up busy for a second after `x` arrived.
    const run = await startFilled(mode, ['-x=--bwlimit=4000'], async (left) => {
      await writeFile(join(left, 'x'), randomBytes(size));
      await writeFile(join(left, 'y'), randomBytes(4 << 20));
    });
    const { psync, left, right } = run;
    try {
      await waitFor('x to arrive on the right', async () => (await stat(join(right, 'x'))).size === size, 20_000).catch(withLog(run));
      await rm(join(left, 'x'));
      expect(watchingLogged(psync), `the delete was meant to land during the start-up\n${psync.log()}`).toBe(false);
      await watching(run);
      await barrierRoundTrip(run);
      await waitForSameTrees(left, right).catch(withLog(run));
      expect(await exists(join(left, 'x')), `x came back on the left\n${psync.log().slice(-6000)}`).toBe(false);
      expect(await exists(join(right, 'x')), `x stayed on the right\n${psync.log().slice(-6000)}`).toBe(false);
      expect((await stat(join(right, 'y'))).size).toBe(4 << 20);
    } finally {
      await stopped(run);
    }
  });

  test('bug 8: changes made during the start-up are kept: an edit on both sides keeps both versions, a rename and a chmod on the right stay', async () => {
    const when = new Date('2024-02-03T04:05:06.789Z');
    const run = await startFilled(mode, ['-x=--bwlimit=3000'], async (left, right) => {
      // Work for the start-up: a transfer of about two seconds.
      await writeFile(join(left, 'big.bin'), randomBytes(6 << 20));
      // Equal on both sides: agreed by the first run.
      for (const root of [left, right]) {
        await writeFile(join(root, 'shared.txt'), 'the shared text\n');
        await writeFile(join(root, 'ren-a.txt'), 'renamed on the right\n');
        await writeFile(join(root, 'mode.txt'), 'chmod on the right\n');
        await chmod(join(root, 'mode.txt'), 0o644);
        for (const name of ['shared.txt', 'ren-a.txt', 'mode.txt']) await utimes(join(root, name), when, when);
      }
    });
    const { psync, left, right } = run;
    const leftEdit = 'edited on the left during the start-up\n';
    const rightEdit = 'edited on the right during the start-up, a longer text\n';
    try {
      await waitFor('the start-up reconcile to be under way', () => psync.log().includes('start-up reconcile'), 30_000).catch(withLog(run));
      await writeFile(join(left, 'shared.txt'), leftEdit);
      await writeFile(join(right, 'shared.txt'), rightEdit);
      await rename(join(right, 'ren-a.txt'), join(right, 'ren-b.txt'));
      await chmod(join(right, 'mode.txt'), 0o600);
      expect(watchingLogged(psync), `the changes were meant to land during the start-up\n${psync.log()}`).toBe(false);
      await watching(run);

      for (const root of [left, right]) {
        await waitFor(`both versions of shared.txt on ${root}`, async () => {
          const versions = await versionsOf(root, 'shared.txt');
          return versions.includes(leftEdit) && versions.includes(rightEdit);
        }, 30_000).catch(withLog(run));
      }
      await waitForSameTrees(left, right, 30_000).catch(withLog(run));
      await barrierRoundTrip(run);
      await waitForSameTrees(left, right).catch(withLog(run));
      for (const root of [left, right]) {
        expect(await versionsOf(root, 'shared.txt'), `${root}: shared.txt and its conflict copy\n${psync.log().slice(-6000)}`).toEqual([leftEdit, rightEdit].sort());
        expect(await exists(join(root, 'ren-a.txt')), `${root}/ren-a.txt should be gone (renamed on the right)\n${psync.log().slice(-6000)}`).toBe(false);
        expect(await readOr(join(root, 'ren-b.txt')), `${root}/ren-b.txt`).toBe('renamed on the right\n');
        expect((await stat(join(root, 'mode.txt'))).mode & 0o777, `${root}/mode.txt keeps the right's chmod\n${psync.log().slice(-6000)}`).toBe(0o600);
        expect((await stat(join(root, 'big.bin'))).size).toBe(6 << 20);
      }
    } finally {
      await stopped(run);
    }
  });

  test('bug 4: a file still being written is sent as snapshots and ends identical on both sides, with no conflict copy', async () => {
    // A slowish link, so that the writer appends while a snapshot of the file is in flight.
    const run = await startEmpty(mode, ['--max-delay', '1', '-x=--bwlimit=20000']);
    const { psync, left, right } = run;
    try {
      const file = await open(join(left, 'growing.log'), 'a');
      let snapshotSeen = false;
      const until = Date.now() + 3_000;
      try {
        while (Date.now() < until) {
          await file.write(randomBytes(64 << 10));
          snapshotSeen ||= await exists(join(right, 'growing.log'));
          await delay(25);
        }
      } finally {
        await file.close();
      }
      expect(snapshotSeen, `--max-delay 1: a snapshot should reach the right while the writer still writes\n${psync.log().slice(-6000)}`).toBe(true);
      await waitForSameTrees(left, right, 30_000).catch(withLog(run));
      await barrierRoundTrip(run);
      expect(await diffTrees(left, right), psync.log().slice(-6000)).toEqual([]);
      expect((await readFile(join(right, 'growing.log'))).equals(await readFile(join(left, 'growing.log')))).toBe(true);
      for (const root of [left, right]) expect(await conflictCopies(root), `${root}\n${psync.log().slice(-6000)}`).toEqual([]);
      const status = await waitFor('a status', () => psync.status());
      expect(status.counters.conflicts, psync.log().slice(-6000)).toBe(0);
    } finally {
      await stopped(run);
    }
  });

  test('bug 5: a directory renamed on the left while the right edits a file inside it: the edit ends up under the new name on both sides (5 rounds)', async () => {
    const run = await startEmpty(mode, []);
    const { psync, left, right } = run;
    try {
      const rounds = [
        { gapMs: 0, rightFirst: false },
        { gapMs: 0, rightFirst: true },
        { gapMs: 20, rightFirst: false },
        { gapMs: 20, rightFirst: true },
        { gapMs: 50, rightFirst: false },
      ];
      for (const [i, { gapMs, rightFirst }] of rounds.entries()) {
        const [d, e] = [`d${i}`, `e${i}`];
        const edit = `f of round ${i}, edited on the right\n`;
        await mkdir(join(left, d));
        await synced(run, `${d}/g`, `g of round ${i}\n`);
        await synced(run, `${d}/f`, `f of round ${i}\n`);
        const moveLeft = (): Promise<void> => rename(join(left, d), join(left, e));
        const editRight = (): Promise<void> =>
          writeFile(join(right, d, 'f'), edit).catch((error: Error) => {
            throw new Error(`round ${i}: the right's edit came too late to race the rename (${error.message})`);
          });
        const [first, second] = rightFirst ? [editRight, moveLeft] : [moveLeft, editRight];
        await first();
        if (gapMs > 0) await delay(gapMs);
        await second();

        const what = `round ${i} (${rightFirst ? 'edit' : 'rename'} first, ${gapMs} ms apart)`;
        for (const root of [left, right]) {
          await waitFor(`${what}: ${e}/f with the right's edit on ${root}`, async () => (await readOr(join(root, e, 'f'))) === edit).catch(withLog(run));
        }
        await waitForSameTrees(left, right).catch((error: Error) => withLog(run)(new Error(`${what}: ${error.message}`)));
        for (const root of [left, right]) {
          expect(await exists(join(root, d)), `${what}: ${root}/${d} should be gone\n${psync.log().slice(-6000)}`).toBe(false);
          expect(await readOr(join(root, e, 'g')), `${what}: ${root}/${e}/g`).toBe(`g of round ${i}\n`);
        }
      }
      await barrierRoundTrip(run);
      expect(await diffTrees(left, right), psync.log().slice(-6000)).toEqual([]);
      for (const root of [left, right]) {
        for (const i of rounds.keys()) {
          expect(await exists(join(root, `d${i}`)), `${root}/d${i} in the end\n${psync.log().slice(-6000)}`).toBe(false);
          expect(await readOr(join(root, `e${i}`, 'f')), `${root}/e${i}/f in the end\n${psync.log().slice(-6000)}`).toBe(`f of round ${i}, edited on the right\n`);
        }
        expect(await conflictCopies(root), `only the right edited: no conflict\n${psync.log().slice(-6000)}`).toEqual([]);
      }
    } finally {
      await stopped(run);
    }
  });

  test('bug 6: a rename onto an existing file on the left while the right deletes its source: both sides end with the moved content (4 rounds)', async () => {
    const rounds = [
      { gapMs: 0, rightFirst: false, before: 'start' },
      { gapMs: 50, rightFirst: true, before: 'start' },
      { gapMs: 100, rightFirst: false, before: 'start' },
      { gapMs: 50, rightFirst: false, before: 'realtime' },
    ] as const;
    const moved = (i: number): string => `a of round ${i}, moved onto b\n`;
    // `a` is the older file, as when an older version is moved over a newer one.
    const writeA = async (root: string, i: number): Promise<void> => {
      await writeFile(join(root, `a${i}`), moved(i));
      await utimes(join(root, `a${i}`), anHourAgo(), anHourAgo());
    };
    // Most rounds' files are there before psync starts (the start-up sends them), one round's are synced while it runs.
    const run = await startFilled(mode, [], async (left) => {
      for (const [i, { before }] of rounds.entries()) {
        if (before !== 'start') continue;
        await writeFile(join(left, `b${i}`), `old b of round ${i}\n`);
        await writeA(left, i);
      }
    });
    const { psync, left, right } = run;
    try {
      await watching(run);
      for (const [i, { gapMs, rightFirst, before }] of rounds.entries()) {
        const [a, b] = [`a${i}`, `b${i}`];
        if (before === 'realtime') {
          await synced(run, b, `old b of round ${i}\n`);
          await writeA(left, i);
        }
        await waitFor(`${a} and ${b} on the right`, async () => (await readOr(join(right, a))) === moved(i) && (await readOr(join(right, b))) === `old b of round ${i}\n`).catch(withLog(run));
        const moveLeft = (): Promise<void> => rename(join(left, a), join(left, b));
        // force: psync may carry the rename over within the gap, and then the right's `a` is gone already.
        const deleteRight = (): Promise<void> => rm(join(right, a), { force: true });
        const [first, second] = rightFirst ? [deleteRight, moveLeft] : [moveLeft, deleteRight];
        await first();
        if (gapMs > 0) await delay(gapMs);
        await second();

        const what = `round ${i} (${rightFirst ? 'delete' : 'rename'} first, ${gapMs} ms apart, b synced ${before === 'start' ? 'by the start-up' : 'while running'})`;
        for (const root of [left, right]) {
          await waitFor(`${what}: ${b} with a's content on ${root}`, async () => (await readOr(join(root, b))) === moved(i)).catch(withLog(run));
        }
        await waitForSameTrees(left, right).catch((error: Error) => withLog(run)(new Error(`${what}: ${error.message}`)));
        for (const root of [left, right]) expect(await exists(join(root, a)), `${what}: ${root}/${a} should be gone\n${psync.log().slice(-6000)}`).toBe(false);
      }
      await barrierRoundTrip(run);
      expect(await diffTrees(left, right), psync.log().slice(-6000)).toEqual([]);
      for (const root of [left, right]) {
        for (const i of rounds.keys()) expect(await readOr(join(root, `b${i}`)), `${root}/b${i} in the end\n${psync.log().slice(-6000)}`).toBe(moved(i));
        expect(await conflictCopies(root), `the right's b was unchanged: no conflict\n${psync.log().slice(-6000)}`).toEqual([]);
      }
    } finally {
      await stopped(run);
    }
  });

  // Issue 10, fuzz (full mix): each change below is one synchronous call or two, so they land within one settle delay.
  test('fuzz races: an edit then a rename, a rename against a delete, a chmod on both sides: the trees end the same, nothing is lost', async () => {
    const run = await startEmpty(mode, []);
    const { psync, left, right } = run;
    try {
      for (const name of ['edited', 'renamed', 'chmodded']) await synced(run, name, `${name}: the agreed version\n`);
      // An edit and a rename within one settle delay: one MOVE of the edited version, which the right never held.
      writeFileSync(join(left, 'edited'), 'edited: the edit, then a rename\n');
      renameSync(join(left, 'edited'), join(left, 'edited-new'));
      // The left renames what the right deletes in the same instant: the rename wins, on both sides.
      renameSync(join(left, 'renamed'), join(left, 'renamed-new'));
      unlinkSync(join(right, 'renamed'));
      // Both sides chmod one file differently: one mode wins, no conflict copy for a mode.
      chmodSync(join(left, 'chmodded'), 0o600);
      chmodSync(join(right, 'chmodded'), 0o640);

      await waitFor('the edit under its new name on the right', async () => (await readOr(join(right, 'edited-new'))) === 'edited: the edit, then a rename\n').catch(withLog(run));
      await waitFor('the renamed file on the right', async () => (await readOr(join(right, 'renamed-new'))) === 'renamed: the agreed version\n').catch(withLog(run));
      await barrierRoundTrip(run);
      await waitForSameTrees(left, right).catch(withLog(run));
      for (const root of [left, right]) {
        for (const gone of ['edited', 'renamed']) expect(await exists(join(root, gone)), `${root}/${gone} should be gone\n${psync.log().slice(-6000)}`).toBe(false);
        expect(await readOr(join(root, 'renamed-new')), `${root}: the rename wins over the delete`).toBe('renamed: the agreed version\n');
        expect([0o600, 0o640], `${root}: one side's chmod`).toContain((await stat(join(root, 'chmodded'))).mode & 0o777);
        expect(await conflictCopies(root), `${root}: no conflict copy\n${psync.log().slice(-6000)}`).toEqual([]);
      }
    } finally {
      await stopped(run);
    }
  });

  test('fuzz races with renames: a delete right after its directory’s rename, both sides renaming one file, an edit against a rename: the trees end the same, nothing is lost', async () => {
    const run = await startEmpty(mode, []);
    const { psync, left, right } = run;
    try {
      await mkdir(join(left, 'd'));
      await writeFile(join(left, 'd', 'kept'), 'kept: in d\n');
      for (const name of ['d/gone', 'both', 'edited']) await synced(run, name, `${name}: the agreed version\n`);
      await waitFor('d/kept on the right', async () => (await readOr(join(right, 'd', 'kept'))) === 'kept: in d\n').catch(withLog(run));
      // One side: `mv d e; rm e/gone` within one settle delay.
      renameSync(join(right, 'd'), join(right, 'e'));
      unlinkSync(join(right, 'e', 'gone'));
      // Both sides rename one file, each to its own name: both names stay, with the same content.
      renameSync(join(left, 'both'), join(left, 'both-left'));
      renameSync(join(right, 'both'), join(right, 'both-right'));
      // The left edits what the right renames: the edit stays, and so does the rename.
      writeFileSync(join(left, 'edited'), 'edited: the left edit\n');
      renameSync(join(right, 'edited'), join(right, 'edited-right'));

      await waitFor('e/kept on the left', async () => (await readOr(join(left, 'e', 'kept'))) === 'kept: in d\n').catch(withLog(run));
      await barrierRoundTrip(run);
      await waitForSameTrees(left, right).catch(withLog(run));
      for (const root of [left, right]) {
        for (const gone of ['d', 'e/gone', 'both']) expect(await exists(join(root, gone)), `${root}/${gone} should be gone\n${psync.log().slice(-6000)}`).toBe(false);
        for (const name of ['both-left', 'both-right']) expect(await readOr(join(root, name)), `${root}/${name}`).toBe('both: the agreed version\n');
        const versions = await Promise.all(['edited', 'edited-right'].map((name) => readOr(join(root, name))));
        expect(versions, `${root}: the left's edit survives the right's rename\n${psync.log().slice(-6000)}`).toContain('edited: the left edit\n');
      }
    } finally {
      await stopped(run);
    }
  });

  test('bug 7: both sides write one path in the same instant with the same size: both versions are kept on both sides', async () => {
    const run = await startEmpty(mode, []);
    const { psync, left, right } = run;
    try {
      await synced(run, 'existing.txt', 'the agreed version\n');
      for (const name of ['new.txt', 'existing.txt']) {
        const leftText = `${name}: written on the left!\n`;
        const rightText = `${name}: written on the right\n`;
        expect(leftText.length).toBe(rightText.length);
        // One tick: microseconds apart, likely within one timestamp tick of the file system.
        writeFileSync(join(left, name), leftText);
        writeFileSync(join(right, name), rightText);

        for (const root of [left, right]) {
          await waitFor(`both versions of ${name} on ${root}`, async () => {
            const versions = await versionsOf(root, name);
            return versions.includes(leftText) && versions.includes(rightText);
          }).catch(withLog(run));
        }
        await waitForSameTrees(left, right).catch(withLog(run));
        await barrierRoundTrip(run);
        for (const root of [left, right]) {
          expect(await versionsOf(root, name), `${root}: ${name} and one conflict copy\n${psync.log().slice(-6000)}`).toEqual([leftText, rightText].sort());
        }
      }
      expect(await diffTrees(left, right), psync.log().slice(-6000)).toEqual([]);
    } finally {
      await stopped(run);
    }
  });
});
