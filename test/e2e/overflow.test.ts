/**
 * A kernel inotify queue overflow loses events; the native watcher reports
 * it and the filter rescans at once. Forced for real: the left filter is
 * stopped (SIGSTOP) while more files than fs.inotify.max_queued_events are
 * created, then resumed. The periodic rescan is off (`--rescan 0`), so only
 * the overflow rescan can bring the lost files across.
 */

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { PsyncProcess, waitForSameTrees } from '../support/psync.js';

const DIRS = 50;
/** The brain gives up on a filter after 15 s without a heartbeat: stay well inside. */
const MAX_STOPPED_MS = 10_000;

let running: PsyncProcess | undefined;
let base: string | undefined;

afterEach(async () => {
  expect(await running?.stop()).toBe(0);
  running = undefined;
  if (base !== undefined) await rm(base, { recursive: true, force: true }); // 40,000 files: not left in /tmp
  base = undefined;
});

/** The filter watching `root`: the pid in its lock, checked to be a `_side` child of psync (its filter and helper). */
async function filterOf(root: string, psyncPid: number): Promise<number> {
  const pid = Number.parseInt(await readFile(join(root, '.psync', 'lock'), 'utf8'), 10);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  if (parent !== psyncPid || !cmdline.includes('_side')) throw new Error(`pid ${pid} is not the filter of psync ${psyncPid}`);
  return pid;
}

test('files created while the filter is stopped and its event queue overflows all arrive, without the periodic rescan', async () => {
  const limit = Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8').trim());
  const files = Math.max(20_000, limit + 4_000); // several events per file: far more than the queue holds
  base = await mkdtemp(join(tmpdir(), 'psync-overflow-'));
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right)]);
  // The directories exist and are watched first: a directory that appears is listed when it is
  // reported, which would find its files without any help from the overflow.
  for (let d = 0; d < DIRS; d += 1) mkdirSync(join(left, `d${d}`));
  running = await PsyncProcess.start(['--rescan', '0', left, right]);
  const psync = running;
  await waitForSameTrees(left, right);
  const filter = await filterOf(left, psync.child.pid!);

  process.kill(filter, 'SIGSTOP');
  const stoppedAt = Date.now();
  try {
    for (let i = 0; i < files; i += 1) writeFileSync(join(left, `d${i % DIRS}`, `f${i}`), `${i}\n`);
  } finally {
    process.kill(filter, 'SIGCONT');
  }
  expect(Date.now() - stoppedAt).toBeLessThan(MAX_STOPPED_MS);

  await waitForSameTrees(left, right, 120_000);
  expect(psync.log()).toMatch(/left filter: .*overflowed/);
  expect(psync.log()).toMatch(/left filter: rescan found \d+ change/);
}, 240_000);
