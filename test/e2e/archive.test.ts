/**
 * The archive of agreed state across restarts of psync, with local pairs and
 * `psync -s` run as a user runs it (issue 9): deletes and renames made while
 * psync was stopped are carried over (a rename as a rename), edits made on
 * both sides while it was stopped keep both versions even when their mtimes
 * share a second or are equal, a first run keeps both versions of a path
 * that differs and leaves equal content alone, `-n -s` lists what it would do
 * and changes nothing, a root that lost its `.psync/id` marker and a start-up
 * that would delete most of the archive halt (exit 7, nothing changed), and
 * directory renames and renames onto an existing file meet the other side's
 * changes made meanwhile, and an archive that cannot be read is kept aside
 * and the start is a first run (never "everything was deleted").
 *
 * Each test uses fresh roots, so each has its own archive (the pair id is a
 * hash of the roots); test/support/setup.ts points XDG_STATE_HOME at this
 * file's own state directory, so the runs of one test share their archive.
 */

import { chmod, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect, test } from 'vitest';
import { CLI, diffTrees, snapshotTree } from '../support/psync.js';
import { tempDir } from '../support/tmp.js';

const EXIT = { ok: 0, safety: 7 } as const;
const RUN_TIMEOUT_MS = 25_000;

interface Run {
  exitCode: number | undefined;
  stderr: string;
}

/** Run the built CLI to its end. */
async function psync(args: readonly string[]): Promise<Run> {
  const result = await execa(process.execPath, [CLI, ...args], { reject: false, stdin: 'ignore', timeout: RUN_TIMEOUT_MS });
  return { exitCode: result.exitCode, stderr: String(result.stderr) };
}

/** `psync -s` (plus `extra`) on the pair, expecting exit 0. */
async function syncOnce(left: string, right: string, extra: readonly string[] = []): Promise<Run> {
  const run = await psync(['-s', ...extra, left, right]);
  expect(run.exitCode, `psync -s ${extra.join(' ')} should exit 0:\n${run.stderr}`).toBe(EXIT.ok);
  return run;
}

/** A fresh pair of empty roots. */
async function freshPair(): Promise<{ left: string; right: string }> {
  const base = tempDir('psync-archive-');
  const left = join(base, 'left');
  const right = join(base, 'right');
  await mkdir(left);
  await mkdir(right);
  return { left, right };
}

/** `NAME.psync-conflict-YYYYMMDD-HHMMSS.EXT`: the name the losing version (of mtime `mtimeMs`, UTC) is kept under. */
function conflictCopy(path: string, mtimeMs: number): string {
  const slash = path.lastIndexOf('/');
  const dir = path.slice(0, slash + 1);
  const base = path.slice(slash + 1);
  const dot = base.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [base.slice(0, dot), base.slice(dot)] : [base, ''];
  const iso = new Date(Math.floor(mtimeMs)).toISOString();
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
  return `${dir}${stem}.psync-conflict-${stamp}${ext}`;
}

const read = (path: string): Promise<string> => readFile(path, 'utf8');
const exists = (path: string): Promise<boolean> => stat(path).then(
  () => true,
  () => false,
);
/** Every path under `root` (psync's own `.psync` left out) that is a conflict copy. */
const conflictCopies = async (root: string): Promise<string[]> => [...(await snapshotTree(root)).keys()].filter((p) => p.includes('.psync-conflict-')).sort();
/** The `start-up reconcile ...` summary line of a run. */
const summaryOf = (run: Run): string => run.stderr.split('\n').find((line) => line.includes('start-up reconcile')) ?? `(no start-up summary line in:\n${run.stderr})`;
/** The decisions a `-n` run listed, without their timestamps. */
const wouldLines = (run: Run): string[] => run.stderr.split('\n').flatMap((line) => {
  const at = line.indexOf('would ');
  return at < 0 ? [] : [line.slice(at)];
}).sort();

/** Exit 7 and a last stderr line `psync: halted: ...`. */
function expectHalted(run: Run): void {
  expect(run.exitCode, `a halt (exit 7) expected:\n${run.stderr}`).toBe(EXIT.safety);
  const lines = run.stderr.split('\n').filter((line) => line.trim() !== '');
  expect(lines.at(-1) ?? '', `the last stderr line should say the pair halted:\n${run.stderr}`).toMatch(/^psync: halted: /);
}

test('bug 2: a delete and a rename made while psync was stopped are carried over, the rename as a rename', async () => {
  const { left, right } = await freshPair();
  for (const name of ['x', 'y', 'keep1', 'keep2', 'keep3', 'keep4']) await writeFile(join(left, name), `content of ${name}\n`);
  await syncOnce(left, right);
  expect(await diffTrees(left, right)).toEqual([]);
  const rightY = await stat(join(right, 'y'));

  await rm(join(left, 'x'));
  await rename(join(left, 'y'), join(left, 'z'));
  const run = await syncOnce(left, right);

  for (const root of [left, right]) {
    expect(await exists(join(root, 'x')), `${root}/x should stay deleted\n${run.stderr}`).toBe(false);
    expect(await exists(join(root, 'y')), `${root}/y should be gone (renamed)\n${run.stderr}`).toBe(false);
    expect(await read(join(root, 'z')), `${root}/z`).toBe('content of y\n');
  }
  expect((await stat(join(right, 'z'))).ino, `the right's z should be its old y, renamed (not a new copy)\n${run.stderr}`).toBe(rightY.ino);
  expect(await diffTrees(left, right)).toEqual([]);
  expect(summaryOf(run)).toMatch(/: 0 to the right, 0 to the left, 1 deletes, 1 moves, 0 conflicts/);
});

test('bug 3: both sides edited while stopped, mtimes 300 ms apart: the newer keeps the name, the older is a conflict copy on both sides', async () => {
  const { left, right } = await freshPair();
  await writeFile(join(left, 'doc.txt'), 'the original text\n');
  for (let i = 0; i < 4; i++) await writeFile(join(left, `other${i}`), `${i}\n`);
  await syncOnce(left, right);

  // Same size, same whole second: only the milliseconds tell which is newer.
  const second = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  const older = new Date(second + 100);
  const newer = new Date(second + 400);
  await writeFile(join(left, 'doc.txt'), 'left edit, older.\n');
  await writeFile(join(right, 'doc.txt'), 'right edit, newer\n');
  await utimes(join(left, 'doc.txt'), older, older);
  await utimes(join(right, 'doc.txt'), newer, newer);
  expect((await stat(join(left, 'doc.txt'))).size).toBe((await stat(join(right, 'doc.txt'))).size);
  const run = await syncOnce(left, right);

  const copy = conflictCopy('doc.txt', older.getTime());
  for (const root of [left, right]) {
    expect(await read(join(root, 'doc.txt')), `${root}/doc.txt should be the newer (right) edit\n${run.stderr}`).toBe('right edit, newer\n');
    expect(await read(join(root, copy)).catch(() => '(missing)'), `${root}/${copy} should keep the older (left) edit\n${run.stderr}`).toBe('left edit, older.\n');
    expect(await conflictCopies(root)).toEqual([copy]);
  }
  expect(await diffTrees(left, right)).toEqual([]);
  expect(summaryOf(run)).toMatch(/, 1 conflicts/);
});

test('bug 3: both sides edited while stopped, same size and same mtime, different content: both versions are kept', async () => {
  const { left, right } = await freshPair();
  await writeFile(join(left, 'same.txt'), 'the original text\n');
  for (let i = 0; i < 4; i++) await writeFile(join(left, `other${i}`), `${i}\n`);
  await syncOnce(left, right);

  const when = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000 + 250);
  await writeFile(join(left, 'same.txt'), 'edited on the left\n');
  await writeFile(join(right, 'same.txt'), 'edited on the rite\n');
  await utimes(join(left, 'same.txt'), when, when);
  await utimes(join(right, 'same.txt'), when, when);
  expect((await stat(join(left, 'same.txt'))).size).toBe((await stat(join(right, 'same.txt'))).size);
  const run = await syncOnce(left, right);

  const copy = conflictCopy('same.txt', when.getTime());
  for (const root of [left, right]) {
    const versions = [await read(join(root, 'same.txt')), await read(join(root, copy)).catch(() => '(missing)')].sort();
    expect(versions, `${root}: same.txt and ${copy} should hold both edits\n${run.stderr}`).toEqual(['edited on the left\n', 'edited on the rite\n']);
    expect(await conflictCopies(root)).toEqual([copy]);
  }
  expect(await diffTrees(left, right)).toEqual([]);
  expect(summaryOf(run)).toMatch(/, 1 conflicts/);
});

test('a first run with different content on both sides keeps both: the newer at the name, the older as a conflict copy on both sides', async () => {
  const { left, right } = await freshPair();
  const older = new Date('2021-03-04T05:06:07.250Z');
  const newer = new Date('2021-03-04T05:06:09.500Z');
  await mkdir(join(left, 'sub'));
  await mkdir(join(right, 'sub'));
  await writeFile(join(left, 'sub', 'notes.md'), 'the left version, older\n');
  await writeFile(join(right, 'sub', 'notes.md'), 'the right one, newer\n');
  await utimes(join(left, 'sub', 'notes.md'), older, older);
  await utimes(join(right, 'sub', 'notes.md'), newer, newer);
  await writeFile(join(left, 'left-only'), 'l\n');
  await writeFile(join(right, 'right-only'), 'r\n');
  const run = await syncOnce(left, right);

  const copy = conflictCopy('sub/notes.md', older.getTime());
  expect(copy).toBe('sub/notes.psync-conflict-20210304-050607.md');
  for (const root of [left, right]) {
    expect(await read(join(root, 'sub', 'notes.md')), `${root}/sub/notes.md\n${run.stderr}`).toBe('the right one, newer\n');
    expect(await read(join(root, copy)).catch(() => '(missing)'), `${root}/${copy}\n${run.stderr}`).toBe('the left version, older\n');
    expect(await conflictCopies(root)).toEqual([copy]);
  }
  expect(await diffTrees(left, right)).toEqual([]);
  // The copies a conflict makes (the winner to one side, the loser's copy to the other) count as copies too.
  expect(summaryOf(run)).toMatch(/, 0 deletes, 0 moves, 1 conflicts$/);
});

test('a first run with equal content (and mtime) on both sides makes no conflict copy', async () => {
  const { left, right } = await freshPair();
  const when = new Date('2022-01-02T03:04:05.678Z');
  for (const root of [left, right]) {
    await writeFile(join(root, 'same.txt'), 'the same on both sides\n');
    await utimes(join(root, 'same.txt'), when, when);
  }
  await writeFile(join(left, 'left-only'), 'l\n');
  const run = await syncOnce(left, right);

  for (const root of [left, right]) {
    expect(await read(join(root, 'same.txt'))).toBe('the same on both sides\n');
    expect(await conflictCopies(root), run.stderr).toEqual([]);
  }
  expect(await diffTrees(left, right)).toEqual([]);
  expect(summaryOf(run)).toMatch(/: 1 to the right, 0 to the left, 0 deletes, 0 moves, 0 conflicts/);
});

test('-n -s lists every decision (copies, a delete, a move, a conflict) and changes nothing, so a second -n -s lists the same', async () => {
  const { left, right } = await freshPair();
  for (const name of ['c', 'd', 'f.txt', 'keep1', 'keep2', 'keep3', 'keep4']) await writeFile(join(left, name), `content of ${name}\n`);
  await syncOnce(left, right);

  await writeFile(join(left, 'a'), 'new on the left\n');
  await writeFile(join(right, 'b'), 'new on the right\n');
  await rm(join(left, 'c'));
  await rename(join(right, 'd'), join(right, 'e'));
  const older = new Date('2023-05-06T07:08:09.100Z');
  const newer = new Date('2023-05-06T07:08:11.100Z');
  await writeFile(join(left, 'f.txt'), 'left edit of f, older\n');
  await writeFile(join(right, 'f.txt'), 'right edit of f, newer\n');
  await utimes(join(left, 'f.txt'), older, older);
  await utimes(join(right, 'f.txt'), newer, newer);
  const before = [await snapshotTree(left), await snapshotTree(right)];

  const first = await syncOnce(left, right, ['-n']);
  const listed = wouldLines(first);
  const copy = conflictCopy('f.txt', older.getTime());
  for (const expected of [
    'would copy left->right "a"',
    'would copy right->left "b"',
    'would delete on right "c"',
    'would move on left "d" -> "e"',
    `would conflict on "f.txt": both sides changed it; the left side's version is kept as "${copy}"`,
  ]) {
    expect(listed, `-n -s should list ${expected}\n${first.stderr}`).toContain(expected);
  }
  expect([await snapshotTree(left), await snapshotTree(right)], 'a dry run must change nothing').toEqual(before);
  expect(summaryOf(first)).toMatch(/1 deletes, 1 moves, 1 conflicts/);

  const second = await syncOnce(left, right, ['-n']);
  expect(wouldLines(second), `the second -n -s should list what the first did (nothing was recorded)\n${second.stderr}`).toEqual(listed);
  expect([await snapshotTree(left), await snapshotTree(right)]).toEqual(before);
});

test('a root replaced by an empty directory halts (exit 7) and changes nothing; --reset then restores it from the other side', async () => {
  const { left, right } = await freshPair();
  await mkdir(join(left, 'dir'));
  for (const name of ['one', 'two', 'dir/three']) await writeFile(join(left, name), `content of ${name}\n`);
  await syncOnce(left, right);
  const leftId = await read(join(left, '.psync', 'id')).catch(() => '(no marker)');
  expect(leftId, 'the left root should carry the pair id in .psync/id').not.toBe('(no marker)');
  expect(await read(join(right, '.psync', 'id')).catch(() => '(no marker)'), 'both roots should carry the same pair id').toBe(leftId);
  const leftBefore = await snapshotTree(left);

  await rm(right, { recursive: true });
  await mkdir(right);
  const halted = await psync(['-s', left, right]);
  expectHalted(halted);
  expect(await snapshotTree(left), `the left must be untouched\n${halted.stderr}`).toEqual(leftBefore);
  expect([...(await snapshotTree(right)).keys()], `the emptied right must stay empty\n${halted.stderr}`).toEqual([]);

  const reset = await syncOnce(left, right, ['--reset']);
  expect(await snapshotTree(left), `--reset deletes nothing\n${reset.stderr}`).toEqual(leftBefore);
  expect(await diffTrees(left, right), reset.stderr).toEqual([]);
  expect(summaryOf(reset)).toMatch(/, 0 deletes, /);
  // The pair is whole again: the next start goes ahead and has nothing to do.
  const next = await syncOnce(left, right);
  expect(summaryOf(next)).toMatch(/: 0 to the right, 0 to the left, 0 deletes, 0 moves, 0 conflicts/);
});

test('--max-delete: a start-up that would delete 8 of 10 archived files halts (exit 7, nothing deleted); --max-delete 100 goes ahead', async () => {
  const { left, right } = await freshPair();
  const files = Array.from({ length: 10 }, (_, i) => `f${i}`);
  for (const name of files) await writeFile(join(left, name), `content of ${name}\n`);
  await syncOnce(left, right);
  for (const name of files.slice(2)) await rm(join(left, name));
  const rightBefore = await snapshotTree(right);
  const leftBefore = await snapshotTree(left);

  const halted = await psync(['-s', left, right]);
  expectHalted(halted);
  expect(halted.stderr).toMatch(/--max-delete/);
  expect(await snapshotTree(right), `nothing may be deleted on the right\n${halted.stderr}`).toEqual(rightBefore);
  expect(await snapshotTree(left), `nothing may come back on the left\n${halted.stderr}`).toEqual(leftBefore);

  const run = await syncOnce(left, right, ['--max-delete', '100']);
  expect((await readdir(right)).filter((n) => n !== '.psync').sort(), run.stderr).toEqual(['f0', 'f1']);
  expect(await diffTrees(left, right)).toEqual([]);
  expect(summaryOf(run)).toMatch(/, 8 deletes, /);
});

test('bug 5 offline: a directory renamed on the left while a file inside it was edited on the right: the edit ends up under the new name on both sides', async () => {
  const { left, right } = await freshPair();
  await mkdir(join(left, 'd'));
  await writeFile(join(left, 'd', 'f'), 'old f\n');
  await writeFile(join(left, 'd', 'g'), 'g, untouched\n');
  for (let i = 0; i < 4; i++) await writeFile(join(left, `other${i}`), `${i}\n`);
  await syncOnce(left, right);

  await rename(join(left, 'd'), join(left, 'e'));
  await writeFile(join(right, 'd', 'f'), 'new f, edited on the right\n');
  const run = await syncOnce(left, right);

  for (const root of [left, right]) {
    expect(await exists(join(root, 'd')), `${root}/d should be gone\n${run.stderr}`).toBe(false);
    expect(await read(join(root, 'e', 'f')).catch(() => '(missing)'), `${root}/e/f should hold the right's edit\n${run.stderr}`).toBe('new f, edited on the right\n');
    expect(await read(join(root, 'e', 'g')).catch(() => '(missing)'), `${root}/e/g`).toBe('g, untouched\n');
    expect(await conflictCopies(root)).toEqual([]);
  }
  expect(await diffTrees(left, right)).toEqual([]);
});

test('bug 6 offline: a rename onto an existing file on the left while the right deleted the source: both sides end with the moved content', async () => {
  const { left, right } = await freshPair();
  await writeFile(join(left, 'a'), 'the content of a\n');
  await writeFile(join(left, 'b'), 'old b\n');
  // `a` is the older file: the moved-over `b` is older than the one it replaced.
  const anHourAgo = new Date(Date.now() - 3_600_000);
  await utimes(join(left, 'a'), anHourAgo, anHourAgo);
  for (let i = 0; i < 4; i++) await writeFile(join(left, `other${i}`), `${i}\n`);
  await syncOnce(left, right);

  await rename(join(left, 'a'), join(left, 'b'));
  await rm(join(right, 'a'));
  const run = await syncOnce(left, right);

  for (const root of [left, right]) {
    expect(await exists(join(root, 'a')), `${root}/a should be gone\n${run.stderr}`).toBe(false);
    expect(await read(join(root, 'b')), `${root}/b should hold a's content\n${run.stderr}`).toBe('the content of a\n');
    expect(await conflictCopies(root), `the right's b was unchanged: no conflict\n${run.stderr}`).toEqual([]);
  }
  expect(await diffTrees(left, right)).toEqual([]);
});

test('a chmod made while psync was stopped is carried over, not undone', async () => {
  const { left, right } = await freshPair();
  await writeFile(join(left, 'script'), '#!/bin/sh\n');
  await chmod(join(left, 'script'), 0o644);
  for (let i = 0; i < 4; i++) await writeFile(join(left, `other${i}`), `${i}\n`);
  await syncOnce(left, right);

  await chmod(join(right, 'script'), 0o755);
  const run = await syncOnce(left, right);
  for (const root of [left, right]) expect((await stat(join(root, 'script'))).mode & 0o777, `${root}/script\n${run.stderr}`).toBe(0o755);
  expect(await diffTrees(left, right)).toEqual([]);
});

test('an archive that cannot be read is kept aside and the start is a first run: the union, nothing deleted', async () => {
  const { left, right } = await freshPair();
  const state = tempDir('psync-archive-state-');
  await writeFile(join(left, 'a.txt'), 'a');
  await writeFile(join(left, 'b.txt'), 'b');
  await syncOnce(left, right, ['--state-dir', state]);
  const [file] = (await readdir(state)).filter((name) => name.endsWith('.sqlite'));
  expect(file, `no archive in ${state}`).toBeDefined();
  await writeFile(join(state, file!), 'not a database at all, but long enough to look like a header: '.repeat(20));
  await rm(join(left, 'a.txt')); // with the archive this would be a delete; without it, the union brings it back
  const run = await syncOnce(left, right, ['--state-dir', state]);
  expect(run.stderr).toMatch(/cannot be read .* it is kept as .*unreadable-.* this start is a first run/);
  expect(summaryOf(run)).toMatch(/0 deletes/);
  expect(await read(join(left, 'a.txt'))).toBe('a');
  expect(await read(join(right, 'a.txt'))).toBe('a');
  expect((await readdir(state)).some((name) => name.startsWith(`${file!}.unreadable-`))).toBe(true);
  expect(await diffTrees(left, right)).toEqual([]);
});
