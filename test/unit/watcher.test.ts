/**
 * The filter's watch backends against real inotify on temp directories:
 * names arrive byte for byte, closing stops events, a directory watched
 * twice shares one kernel watch, and a real kernel queue overflow (forced
 * by blocking the JS thread while a child floods the directory) is reported.
 */

import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterEach, describe, expect, test } from 'vitest';
import {
  FsWatchBackend,
  IN,
  InotifyBackend,
  loadInotifyAddon,
  parseEvents,
  type InotifyAddon,
  type WatchBackend,
} from '../../src/filter/watcher.js';
import { waitFor } from '../support/psync.js';

const addon = loadInotifyAddon();
if (addon instanceof Error) throw new Error(`build the addon first (npm install): ${addon.message}`);
const realAddon: InotifyAddon = addon;

const open: WatchBackend[] = [];
const made: string[] = [];
afterEach(async () => {
  for (const backend of open.splice(0)) backend.close();
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true });
});

function inotify(onOverflow: (reason: string) => void = () => {}): InotifyBackend {
  const backend = new InotifyBackend(realAddon, onOverflow);
  open.push(backend);
  return backend;
}

/** Names reported for one directory, as hex (so non-UTF-8 bytes compare exactly); `null` is the directory itself. */
function recorder(): { names: (string | null)[]; errors: number; onEvent: (name: Buffer | null) => void; onError: () => void } {
  const rec = {
    names: [] as (string | null)[],
    errors: 0,
    onEvent: (name: Buffer | null) => rec.names.push(name === null ? null : name.toString('hex')),
    onError: () => (rec.errors += 1),
  };
  return rec;
}

const hex = (name: string | Buffer): string => Buffer.from(name).toString('hex');

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'psync-watcher-'));
  made.push(dir, `${dir}.done`);
  return dir;
}

describe('inotify backend', () => {
  test('create, rename and delete arrive with the right names, a non-UTF-8 name included', async () => {
    const dir = await tempDir();
    const rec = recorder();
    inotify().watchDir(Buffer.from(dir), rec.onEvent, rec.onError);
    const odd = Buffer.from([0x6f, 0x64, 0x64, 0xff, 0xfe, 0x2e, 0x74]); // "odd\xff\xfe.t"
    await writeFile(join(dir, 'a.txt'), 'a');
    await rename(join(dir, 'a.txt'), join(dir, 'b.txt'));
    await writeFile(Buffer.concat([Buffer.from(`${dir}/`), odd]), 'x');
    await rm(join(dir, 'b.txt'));
    await mkdir(join(dir, 'sub'));
    for (const name of ['a.txt', 'b.txt', odd, 'sub']) {
      await waitFor(`an event for ${String(name)}`, () => rec.names.includes(hex(name)));
    }
    expect(rec.errors).toBe(0);
  });

  test('a deleted directory reports itself (null) and then ends without an error', async () => {
    const dir = await tempDir();
    const rec = recorder();
    inotify().watchDir(Buffer.from(dir), rec.onEvent, rec.onError);
    await rmdir(dir);
    await waitFor('the self event', () => rec.names.includes(null));
    expect(rec.errors).toBe(0);
  });

  test('watchDir throws with the errno name as code', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'file'), '');
    const backend = inotify();
    const codeOf = (path: string): unknown => {
      try {
        backend.watchDir(Buffer.from(path), () => {}, () => {});
        return 'no error';
      } catch (error) {
        return (error as NodeJS.ErrnoException).code;
      }
    };
    expect(codeOf(join(dir, 'missing'))).toBe('ENOENT');
    expect(codeOf(join(dir, 'file'))).toBe('ENOTDIR');
  });

  test('a closed watch reports nothing more; a closed backend neither', async () => {
    const dir = await tempDir();
    const backend = inotify();
    const closed = recorder();
    const kept = recorder();
    backend.watchDir(Buffer.from(dir), closed.onEvent, closed.onError).close();
    await mkdir(join(dir, 'other'));
    backend.watchDir(Buffer.from(join(dir, 'other')), kept.onEvent, kept.onError);
    await writeFile(join(dir, 'after-close'), '');
    await writeFile(join(dir, 'other', 'barrier'), '');
    await waitFor('the barrier', () => kept.names.includes(hex('barrier')));
    expect(closed.names).toEqual([]);
    backend.close();
    backend.close();
    await writeFile(join(dir, 'other', 'after-backend-close'), '');
    await new Promise((resolve) => setTimeout(resolve, 100)); // nothing may arrive; no later event to wait for
    expect(kept.names).not.toContain(hex('after-backend-close'));
  });

  test('one directory watched twice shares the kernel watch: closing the older handle keeps the newer one', async () => {
    const dir = await tempDir();
    const backend = inotify();
    const older = recorder();
    const newer = recorder();
    const first = backend.watchDir(Buffer.from(dir), older.onEvent, older.onError);
    backend.watchDir(Buffer.from(`${dir}/.`), newer.onEvent, newer.onError); // same inode, same wd
    await writeFile(join(dir, 'both'), '');
    await waitFor('both to see it', () => older.names.includes(hex('both')) && newer.names.includes(hex('both')));
    first.close();
    await writeFile(join(dir, 'newer-only'), '');
    await waitFor('the newer handle to see it', () => newer.names.includes(hex('newer-only')));
    expect(older.names).not.toContain(hex('newer-only'));
    expect(newer.errors + older.errors).toBe(0);
  });

  test('the addon does not keep a process alive, open or closed', async () => {
    const path = fileURLToPath(new URL('../../build/Release/psync_inotify.node', import.meta.url));
    const script = `const a = require(${JSON.stringify(path)});
      const h = a.open(() => {}); a.addWatch(h, Buffer.from('/tmp'), ${IN.CREATE});
      const h2 = a.open(() => {}); a.close(h2); a.close(h2);`;
    const result = await execa(process.execPath, ['-e', script], { timeout: 20_000, reject: false });
    expect(result.exitCode).toBe(0);
  });

  test('a real kernel queue overflow is reported', async () => {
    const limit = Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8').trim());
    const files = limit + 2000; // each file is several events; the reader absorbs a few thousand before it blocks
    const dir = await tempDir();
    const done = `${dir}.done`;
    const overflows: string[] = [];
    const rec = recorder();
    inotify((reason) => overflows.push(reason)).watchDir(Buffer.from(dir), rec.onEvent, rec.onError);
    const script = `const fs = require('fs'); const [dir, n, done] = process.argv.slice(1);
      for (let i = 0; i < Number(n); i++) fs.writeFileSync(dir + '/f' + i, 'x');
      fs.writeFileSync(done, '');`;
    const child = execa(process.execPath, ['-e', script, dir, String(files), done]);
    // Block the JS thread while the child floods the directory: the bounded queue fills,
    // the reader thread stops reading, and the kernel queue overflows.
    const until = Date.now() + 60_000;
    while (!existsSync(done) && Date.now() < until) {
      /* busy */
    }
    await child;
    await waitFor('the overflow report', () => overflows.length > 0, 30_000);
    expect(overflows[0]).toMatch(/overflowed/);
    expect(rec.errors).toBe(0);
  }, 120_000);
});

describe('inotify backend, fed by a fake addon', () => {
  function event(wd: number, mask: number, name?: string): Buffer {
    const padded = name === undefined ? 0 : Math.ceil((name.length + 1) / 16) * 16;
    const bytes = Buffer.alloc(16 + padded);
    bytes.writeInt32LE(wd, 0);
    bytes.writeUInt32LE(mask, 4);
    bytes.writeUInt32LE(padded, 12);
    if (name !== undefined) bytes.write(name, 16);
    return bytes;
  }

  function fake(): { addon: InotifyAddon; feed: (chunk: Buffer) => void; removed: number[] } {
    let feed: (chunk: Buffer) => void = () => {};
    const removed: number[] = [];
    const addon: InotifyAddon = {
      open: (onData) => {
        feed = (chunk) => onData(chunk, undefined);
        return {};
      },
      addWatch: () => 7,
      rmWatch: (_handle, wd) => void removed.push(wd),
      close: () => {},
    };
    return { addon, feed: (chunk) => feed(chunk), removed };
  }

  test('parses names without their NUL padding, and events on the directory itself as null', () => {
    const chunk = Buffer.concat([event(3, IN.CREATE, 'abc'), event(3, IN.ATTRIB), event(-1, IN.Q_OVERFLOW)]);
    expect(parseEvents(chunk).map((e) => [e.wd, e.mask, e.name?.toString() ?? null])).toEqual([
      [3, IN.CREATE, 'abc'],
      [3, IN.ATTRIB, null],
      [-1, IN.Q_OVERFLOW, null],
    ]);
  });

  test('IN_IGNORED without a deletion (an unmount) is a watch error; after a deletion it is not', () => {
    const { addon, feed, removed } = fake();
    const backend = new InotifyBackend(addon, () => {});
    const rec = recorder();
    backend.watchDir(Buffer.from('/x'), rec.onEvent, rec.onError);
    feed(Buffer.concat([event(7, IN.UNMOUNT), event(7, IN.IGNORED)]));
    expect(rec.errors).toBe(1);
    const again = recorder();
    const handle = backend.watchDir(Buffer.from('/x'), again.onEvent, again.onError);
    feed(Buffer.concat([event(7, IN.DELETE_SELF), event(7, IN.IGNORED)]));
    expect(again).toMatchObject({ names: [null], errors: 0 });
    handle.close(); // the kernel dropped it already: nothing to remove
    expect(removed).toEqual([]);
  });

  test('an overflow event calls the overflow callback', () => {
    const { addon, feed } = fake();
    const overflows: string[] = [];
    new InotifyBackend(addon, (reason) => overflows.push(reason));
    feed(event(-1, IN.Q_OVERFLOW));
    expect(overflows).toHaveLength(1);
  });
});

describe('fs.watch backend', () => {
  test('reports a created file by name and closes', async () => {
    const dir = await tempDir();
    const backend = new FsWatchBackend();
    const rec = recorder();
    const handle = backend.watchDir(Buffer.from(dir), rec.onEvent, rec.onError);
    await writeFile(join(dir, 'made'), '');
    await waitFor('the event', () => rec.names.includes(hex('made')));
    handle.close();
  });
});
