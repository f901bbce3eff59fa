/**
 * Logs and progress (issue 11): dated lines, --log-format json, --log-file
 * and its rotation, a quiet -d 0 (no warning for what was already gone),
 * no conflict for a directory only one side changed (tar x), -n -s listing
 * what it would do, and the progress bar on a terminal (under `script`)
 * against the periodic progress line on a pipe.
 */

import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, lstatSync, openSync } from 'node:fs';
import { mkdir, readFile, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, test } from 'vitest';
import { CLI, PsyncProcess, snapshotTree, waitFor, waitForSameTrees } from '../support/psync.js';
import { tempDir } from '../support/tmp.js';

const RUN_TIMEOUT_MS = 40_000;
const DATED = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (error|warn |info |verbose|debug|silly) /;

interface Pair {
  left: string;
  right: string;
  stateDir: string;
}

function freshPair(): Pair {
  const base = tempDir('psync-logs-');
  const pair = { left: join(base, 'left'), right: join(base, 'right'), stateDir: join(base, 'state') };
  execFileSync('mkdir', ['-p', pair.left, pair.right]);
  return pair;
}

/** Run `psync ARGS` to its end with stderr on a pipe. */
async function run(args: readonly string[], env: Record<string, string> = {}): Promise<{ exitCode: number | undefined; stderr: string }> {
  const result = await execa(process.execPath, [CLI, ...args], { reject: false, stdin: 'ignore', timeout: RUN_TIMEOUT_MS, env });
  return { exitCode: result.exitCode, stderr: String(result.stderr) };
}

const lines = (text: string): string[] => text.split('\n').filter((line) => line.trim() !== '');

/** Eight 256 KiB files: with --bwlimit=500 (KiB/s) their transfer takes some 4 s. */
async function slowTree(root: string): Promise<void> {
  for (let i = 1; i <= 8; i++) await writeFile(join(root, `f${i}`), randomBytes(256 * 1024));
}
const SLOW = '-x=--bwlimit=500';

describe('log lines', () => {
  test('every text line carries the date; the report line stays last and plain', async () => {
    const { left, right, stateDir } = freshPair();
    await writeFile(join(left, 'a'), 'a\n');
    const result = await run(['-s', '-d', '3', '--state-dir', stateDir, left, right]);
    expect(result.exitCode, result.stderr).toBe(0);
    const all = lines(result.stderr);
    expect(all.length).toBeGreaterThan(5);
    for (const line of all) expect(line, result.stderr).toMatch(DATED);
    expect(result.stderr).toMatch(/ info  rsync left->right: 1 file, 2 B\n/);
  });

  test('--log-format json: one JSON object a line with timestamp, level and message', async () => {
    const { left, right, stateDir } = freshPair();
    await writeFile(join(left, 'a'), 'a\n');
    const result = await run(['-s', '--log-format', 'json', '--state-dir', stateDir, left, right]);
    expect(result.exitCode, result.stderr).toBe(0);
    const parsed = lines(result.stderr).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(parsed.length).toBeGreaterThan(3);
    for (const entry of parsed) {
      expect(Number.isNaN(Date.parse(String(entry.timestamp))), JSON.stringify(entry)).toBe(false);
      expect(['error', 'warn', 'info', 'verbose', 'debug', 'silly']).toContain(entry.level);
      expect(typeof entry.message).toBe('string');
    }
    expect(parsed.map((entry) => entry.message)).toContain('rsync left->right: 1 file, 2 B');
  });

  test('--log-file: every line goes to the file, rotated by size; stderr keeps warnings and errors', async () => {
    const { left, right, stateDir } = freshPair();
    for (let i = 0; i < 30; i++) await writeFile(join(left, `f${i}`), `${i}\n`);
    const logFile = join(stateDir, 'psync.log');
    await mkdir(stateDir, { recursive: true });
    const result = await run(['-s', '-d', '3', '--log-file', logFile, '--state-dir', stateDir, left, right], { PSYNC_LOG_MAX_BYTES: '4000' });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr, 'nothing below a warning on stderr').toBe('');
    const current = await readFile(logFile, 'utf8');
    expect(current.length).toBeLessThanOrEqual(4000);
    expect(existsSync(`${logFile}.1`), 'rotated once it grew past PSYNC_LOG_MAX_BYTES').toBe(true);
    const rotated = await readFile(`${logFile}.1`, 'utf8');
    for (const line of lines(rotated + current)) expect(line).toMatch(DATED);
    expect(current + rotated).toMatch(/info  applied 30 left->right/);
  });

  test('--log-file refuses a symlink planted at its name (exit 2) and writes nothing through it', async () => {
    const { left, right, stateDir } = freshPair();
    await mkdir(stateDir, { recursive: true });
    const victim = join(stateDir, 'victim');
    await writeFile(victim, 'precious\n');
    await symlink(victim, join(stateDir, 'psync.log'));
    const result = await run(['-s', '--log-file', join(stateDir, 'psync.log'), '--state-dir', stateDir, left, right]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^psync: cannot open the log file .*psync\.log: it is a symlink$/);
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(join(stateDir, 'psync.log')).isSymbolicLink()).toBe(true);
  });
});

describe('-d 0 is quiet', () => {
  test('start, one line per batch, stop; paths already gone on the target are no warning', async () => {
    const { left, right, stateDir } = freshPair();
    for (let i = 0; i < 40; i++) await writeFile(join(left, `gone${i}`), `${i}\n`);
    const psync = await PsyncProcess.start(['-d', '0', '--state-dir', stateDir, left, right]);
    try {
      await waitForSameTrees(left, right);
      // Both sides delete the same files at once: whichever delete is applied second finds them gone.
      await Promise.all(Array.from({ length: 40 }, (_, i) => Promise.all([rm(join(left, `gone${i}`)), rm(join(right, `gone${i}`))])));
      // git gc's way: temp files written, renamed and removed within moments, next to a few real changes.
      await mkdir(join(left, 'pack'));
      for (let i = 0; i < 20; i++) {
        await writeFile(join(left, 'pack', `tmp_pack_${i}`), randomBytes(2048));
        await rename(join(left, 'pack', `tmp_pack_${i}`), join(left, 'pack', `pack-${i}.pack`));
        if (i % 2 === 0) await rm(join(left, 'pack', `pack-${i}.pack`));
      }
      await writeFile(join(right, 'from-right.txt'), 'right\n');
      await waitForSameTrees(left, right);
      await waitFor('an idle queue', async () => ((await psync.status())?.queued === 0 ? true : undefined));
    } finally {
      expect(await psync.stop()).toBe(0);
    }
    const log = psync.log();
    const all = lines(log);
    expect(all.filter((line) => !/ info  /.test(line)), `only info lines at -d 0:\n${log}`).toEqual([]);
    expect(log).toMatch(/info  starting: /);
    expect(log).toMatch(/info  watching /);
    expect(log).toMatch(/info  rsync right->left: 1 file, 6 B\n/);
    expect(log).toMatch(/info  delete (left->right|right->left): \d+ entr(y|ies)/);
    expect(log).toMatch(/info  stopping\n/);
    expect(log).not.toMatch(/does not exist|not done/);
    // Not one line per path: a few dozen at most for 40 deletes and 20 temp files.
    expect(all.length, log).toBeLessThan(60);
  });
});

test('tar x on one side: no conflict on the directories it made (only that side changed them)', async () => {
  const { left, right, stateDir } = freshPair();
  const source = tempDir('psync-tar-');
  for (let d = 0; d < 12; d++) {
    await mkdir(join(source, 't', `d${d}`, 'sub'), { recursive: true });
    for (let f = 0; f < 25; f++) {
      await writeFile(join(source, 't', `d${d}`, `f${f}`), `${d} ${f}\n`);
      await writeFile(join(source, 't', `d${d}`, 'sub', `g${f}`), 'x\n');
    }
  }
  // Directories dated in the past: tar sets their mode and mtime after it wrote what is in them.
  const past = new Date('2020-01-01T00:00:00Z');
  for (let d = 0; d < 12; d++) for (const dir of [join(source, 't', `d${d}`, 'sub'), join(source, 't', `d${d}`)]) await utimes(dir, past, past);
  await utimes(join(source, 't'), past, past);
  const tarball = join(source, 't.tar');
  execFileSync('tar', ['-cf', tarball, '-C', source, 't']);
  const psync = await PsyncProcess.start(['--state-dir', stateDir, left, right]);
  try {
    execFileSync('tar', ['-xf', tarball, '-C', left]);
    await waitForSameTrees(left, right, 30_000);
    await waitFor('an idle queue', async () => ((await psync.status())?.queued === 0 ? true : undefined));
    const status = await psync.status();
    expect(status?.counters.conflicts, psync.log()).toBe(0);
  } finally {
    expect(await psync.stop()).toBe(0);
  }
  expect(psync.log()).not.toMatch(/conflict on/);
  expect([...(await snapshotTree(right)).keys()].filter((path) => path.includes('psync-conflict'))).toEqual([]);
});

test('-n -s lists every action it would take at -d 1 and changes nothing', async () => {
  const { left, right, stateDir } = freshPair();
  await writeFile(join(left, 'keep'), 'k\n');
  await writeFile(join(left, 'old'), 'o\n');
  await mkdir(join(right, 'dir'));
  expect((await run(['-s', '--state-dir', stateDir, left, right])).exitCode).toBe(0);
  await writeFile(join(left, 'new'), 'n\n');
  await rm(join(right, 'old'));
  await rename(join(left, 'dir'), join(left, 'dir2'));
  const before = [await snapshotTree(left), await snapshotTree(right)];
  const result = await run(['-n', '-s', '-d', '1', '--state-dir', stateDir, left, right]);
  expect(result.exitCode, result.stderr).toBe(0);
  for (const expected of ['would copy left->right "new"', 'would delete on left "old"', 'would move on right "dir" -> "dir2"']) {
    expect(result.stderr).toContain(expected);
  }
  expect([await snapshotTree(left), await snapshotTree(right)]).toEqual(before);
});

describe('progress', () => {
  test('on a terminal (script -q): a bar with files, bytes, rate and ETA, and the transfer’s size, time and rate when done', async () => {
    const { left, right, stateDir } = freshPair();
    await slowTree(left);
    // `script` runs psync on a pseudo-terminal; its command line is a shell string, so only test-made paths go into it.
    const command = [process.execPath, CLI, '-s', SLOW, '--state-dir', stateDir, left, right].map((word) => `'${word}'`).join(' ');
    const result = await execa('script', ['-q', '-e', '-c', command, '/dev/null'], { reject: false, stdin: 'ignore', timeout: RUN_TIMEOUT_MS });
    expect(result.exitCode, String(result.stdout)).toBe(0);
    const out = String(result.stdout);
    expect(out).toMatch(/start-up reconcile \|#+-*\| \d+% \d\/8 files, [\d.]+ [kM]B\/2\.1 MB, [\d.]+ [kM]B\/s, ETA /);
    expect(out).toMatch(/info  rsync left->right: 8 files, 2\.1 MB in \d+\.\d s \([\d.]+ kB\/s\)/);
    expect(await snapshotTree(right)).toEqual(await snapshotTree(left));
  });

  test('on a pipe: no bar, a progress line every period instead (PSYNC_PROGRESS_PERIOD_MS)', async () => {
    const { left, right, stateDir } = freshPair();
    await slowTree(left);
    const result = await run(['-s', '-d', '0', SLOW, '--state-dir', stateDir, left, right], { PSYNC_PROGRESS_PERIOD_MS: '500' });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(/\|#|\u001b\[/);
    const progress = lines(result.stderr).filter((line) => / info  start-up reconcile: \d\/8 files, /.test(line));
    expect(progress.length, result.stderr).toBeGreaterThanOrEqual(2);
    for (const line of lines(result.stderr)) expect(line).toMatch(DATED);
  });

  test('a realtime transfer longer than 2 s: progress lines while it runs, its size, time and rate when done', async () => {
    const { left, right, stateDir } = freshPair();
    const psync = await PsyncProcess.start(['-d', '0', SLOW, '--state-dir', stateDir, left, right], { env: { PSYNC_PROGRESS_PERIOD_MS: '500' } });
    try {
      await slowTree(left);
      await waitForSameTrees(left, right, 30_000);
      await waitFor('the batch line', () => / info  rsync left->right: \d files?, [\d.]+ [kM]B in \d+\.\d s \(/.test(psync.log()));
    } finally {
      expect(await psync.stop()).toBe(0);
    }
    expect(psync.log()).toMatch(/ info  rsync left->right: \d\/\d files, [\d.]+ [kM]?B\/[\d.]+ [kM]B, [\d.]+ [kM]?B\/s/);
  });

  test('under journald (stderr is JOURNAL_STREAM): no date of ours, a syslog priority first', async () => {
    const { left, right, stateDir } = freshPair();
    await writeFile(join(left, 'a'), 'a\n');
    const stderrFile = join(stateDir, '..', 'stderr.txt');
    const fd = openSync(stderrFile, 'w');
    try {
      const { dev, ino } = fstatSync(fd);
      const child = spawn(process.execPath, [CLI, '-s', '--state-dir', stateDir, left, right], { stdio: ['ignore', 'ignore', fd], env: { ...process.env, JOURNAL_STREAM: `${dev}:${ino}` } });
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(code).toBe(0);
    } finally {
      closeSync(fd);
    }
    const text = await readFile(stderrFile, 'utf8');
    expect(lines(text).length).toBeGreaterThan(2);
    for (const line of lines(text)) expect(line).toMatch(/^<[3-7]>(error|warn |info |verbose|debug|silly) /);
    expect(text).toMatch(/^<6>info  rsync left->right: 1 file, 2 B$/m);
  });

  test('--progress off: neither', async () => {
    const { left, right, stateDir } = freshPair();
    await slowTree(left);
    const result = await run(['-s', '-d', '0', SLOW, '--progress', 'off', '--state-dir', stateDir, left, right], { PSYNC_PROGRESS_PERIOD_MS: '500' });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(/start-up reconcile: \d|\|#/);
    expect(result.stderr).toMatch(/info  rsync left->right: 8 files, 2\.1 MB in /);
  });
});
