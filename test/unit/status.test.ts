/**
 * The status file in a real temp dir that an attacker could write to: a
 * symlink planted at any name psync writes to, one it could guess (the old
 * `<file>.<pid>.tmp`, the status file itself) or the very temp name psync
 * picks, is never written through; and its heartbeat.
 */

import { lstat, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { HEARTBEAT_WRITE_INTERVAL_MS, STATUS_FILE_MODE, STATUS_TEMP_FLAGS, StatusWriter } from '../../src/brain/status.js';
import { constants } from 'node:fs';
import { described } from '../support/table.js';

let dir: string;
let victim: string;
const VICTIM_TEXT = 'root-only config\n';

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'psync-status-'));
  victim = join(dir, 'victim.conf');
  await writeFile(victim, VICTIM_TEXT, { mode: 0o600 });
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const snapshot = (): object => ({ state: 'watching' });

describe('the status file is never written through a planted symlink', () => {
  test.each(described<{ description: string; plant: (statusFile: string) => string[]; pinned?: (statusFile: string) => string[] }>([
    { description: 'a link at the old predictable temp name <file>.<pid>.tmp', plant: (file) => [`${file}.${process.pid}.tmp`] },
    { description: 'a link at the status file itself is replaced, not followed', plant: (file) => [file] },
    {
      description: 'a link at the temp name psync picks: that name is skipped for another',
      plant: () => [join(dir, 'taken.tmp')],
      pinned: () => [join(dir, 'taken.tmp'), join(dir, 'free.tmp')],
    },
    {
      description: 'links at every temp name psync tries: nothing is written this time',
      plant: () => [1, 2, 3, 4, 5].map((n) => join(dir, `taken-${n}.tmp`)),
      pinned: () => [1, 2, 3, 4, 5].map((n) => join(dir, `taken-${n}.tmp`)),
    },
  ]))('%s', async (_description, { plant, pinned }) => {
    const statusFile = join(dir, 'status.json');
    for (const link of plant(statusFile)) await symlink(victim, link);
    const names = pinned?.(statusFile);
    const writer = new StatusWriter(statusFile, snapshot, names === undefined ? undefined : () => names.shift() ?? join(dir, 'unexpected.tmp'));
    await writer.flush();
    expect(await readFile(victim, 'utf8')).toBe(VICTIM_TEXT);
    expect((await stat(victim)).mode & 0o777).toBe(0o600);
    const written = await lstat(statusFile).catch(() => undefined);
    if (written?.isFile() === true) expect(JSON.parse(await readFile(statusFile, 'utf8'))).toMatchObject({ state: 'watching' });
    // No temp file is left behind, and the planted links are untouched (never replaced by a temp file).
    expect((await readdir(dir)).filter((name) => name.endsWith('.tmp') && !name.startsWith('taken') && name !== `status.json.${process.pid}.tmp`)).toEqual([]);
  });

  test('the status file is written to a fresh random name beside it, mode 0640, then renamed', async () => {
    const statusFile = join(dir, 'status.json');
    const used: string[] = [];
    const writer = new StatusWriter(statusFile, snapshot, (path) => {
      const name = `${path}.${used.length}.tmp`;
      used.push(name);
      return name;
    });
    await writer.flush();
    await writer.flush();
    expect(used).toEqual([`${statusFile}.0.tmp`, `${statusFile}.1.tmp`]);
    const info = await lstat(statusFile);
    expect(info.isFile()).toBe(true);
    expect(info.mode & 0o777).toBe(STATUS_FILE_MODE & ~process.umask());
  });

  test('the default temp names are unpredictable', async () => {
    const statusFile = join(dir, 'status.json');
    const writer = new StatusWriter(statusFile, snapshot);
    await writer.flush();
    expect(JSON.parse(await readFile(statusFile, 'utf8'))).toMatchObject({ state: 'watching', pid: process.pid });
    expect(await readdir(dir)).toEqual(['status.json', 'victim.conf']);
  });

  test('the temp file is opened exclusively and never through a symlink', () => {
    for (const flag of [constants.O_WRONLY, constants.O_CREAT, constants.O_EXCL, constants.O_NOFOLLOW]) expect(STATUS_TEMP_FLAGS & flag).toBe(flag);
  });
});

describe('the heartbeat', () => {
  test('from start() on, the file is rewritten every HEARTBEAT_WRITE_INTERVAL_MS with nothing changed: heartbeatAt moves, updatedAt does not; close() stops it', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    try {
      const startedAt = Date.now();
      const statusFile = join(dir, 'status.json');
      const writer = new StatusWriter(statusFile, snapshot);
      writer.start();
      vi.advanceTimersByTime(3 * HEARTBEAT_WRITE_INTERVAL_MS);
      await writer.flush();
      const status = JSON.parse(await readFile(statusFile, 'utf8')) as { heartbeatAt: string; updatedAt: string; startTime: number; bootId: string };
      expect(Date.parse(status.heartbeatAt) - startedAt).toBe(3 * HEARTBEAT_WRITE_INTERVAL_MS);
      expect(Date.parse(status.updatedAt)).toBe(startedAt);
      expect(status.startTime).toBeGreaterThan(0);
      expect(status.bootId).toMatch(/^[0-9a-f-]{36}$/);
      await writer.close();
      expect(vi.getTimerCount(), 'no timer left after close()').toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
