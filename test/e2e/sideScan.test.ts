/**
 * What a side gives the brain for a three-way reconcile (protocol version
 * 4): the filter's start-up scan as ENTRY frames, READY with the root's pair
 * markers, and the helper's MARK seen by the next READY. Driven in-process
 * through pipes, as the brain drives a side (see side.test.ts).
 */

import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { expect, test } from 'vitest';
import { FrameReceiver, FrameWriter, type Frame } from '../../src/core/frame.js';
import { joinPath, parentOf, pathToBytes } from '../../src/core/paths.js';
import { decodeEntry, decodeReady, encodeHelperRequest, type FilterConfig, type ScanEntry } from '../../src/core/protocol.js';
import { coreStat, Directory, using } from '../../src/fs/directory.js';
import { runFilter } from '../../src/filter/filter.js';
import { runSide, type SideConfig } from '../../src/side.js';
import { waitFor } from '../support/psync.js';
import { tempDir } from '../support/tmp.js';

const filterConfig = (root: string, more: Partial<FilterConfig> = {}): FilterConfig => ({
  root,
  excludes: [],
  tempfiles: [],
  settleMs: 50,
  maxDelayMs: 1000,
  rescanMs: 0,
  lock: true,
  debug: 0,
  ...more,
});

/** A side on `root`, read as fast as it writes. */
function drive(root: string, filter: Partial<FilterConfig> = {}) {
  const input = new PassThrough();
  const output = new PassThrough();
  const writer = new FrameWriter();
  const receiver = new FrameReceiver();
  const frames: Frame[] = [];
  output.on('data', (chunk: Buffer) => {
    for (const received of receiver.push(chunk.toString('latin1'))) {
      if (!received.ok) throw received.error;
      frames.push(received.frame);
    }
  });
  const config: SideConfig = { filter: filterConfig(root, filter), helper: { root, force: false, dryRun: false, relay: false } };
  const exit = runSide(input, output);
  input.write(writer.encode('CONFIG', [JSON.stringify(config)]));
  const send = (verb: string, args: string[]): void => void input.write(writer.encode(verb, args));
  const find = (verb: string, arg0?: string) =>
    waitFor(`${verb} ${arg0 ?? ''}`, () => frames.find((f) => f.verb === verb && (arg0 === undefined || f.args[0] === arg0)));
  const stop = async (): Promise<number> => {
    input.end();
    return exit;
  };
  return { frames, send, find, stop, exit };
}

/** Every entry below the root as the file layer reads it (psync's own `.psync` left out), by path. */
function treeEntries(root: string): ScanEntry[] {
  const out: ScanEntry[] = [];
  const walk = (dir: Directory): void => {
    for (const name of dir.list()) {
      const path = joinPath(dir.path, name);
      if (path === '.psync') continue;
      const stat = dir.stat(name)!;
      out.push({ path, stat: coreStat(stat) });
      if (stat.type === 'dir') using(dir.openDir(name), walk);
    }
  };
  using(Directory.openRoot(root), walk);
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}

const byPath = (entries: readonly ScanEntry[]): ScanEntry[] => [...entries].sort((a, b) => (a.path < b.path ? -1 : 1));
const at = (root: string, path: string): Buffer => Buffer.concat([Buffer.from(`${root}/`), pathToBytes(path)]);

/** A tree with a symlink, a dangling one, a non-UTF-8 name, blanks and a newline in names, an empty directory. */
function plantTree(root: string): void {
  writeFileSync(join(root, 'a.txt'), 'a');
  mkdirSync(join(root, 'd', 'e'), { recursive: true });
  writeFileSync(join(root, 'd', 'e', 'deep.bin'), Buffer.alloc(5000, 7));
  symlinkSync('../a.txt', join(root, 'd', 'link'));
  symlinkSync('/nowhere/at/all', join(root, 'dangling'));
  mkdirSync(at(root, 'caf\udce9'));
  writeFileSync(at(root, 'caf\udce9/\udcff name\nwith newline'), 'odd');
  mkdirSync(join(root, 'empty'));
  mkdirSync(join(root, 'skipped'));
  writeFileSync(join(root, 'skipped', 'inside'), 'excluded');
}

test('with reportScan, ENTRY frames before READY are the tree (symlinks as symlinks, any name), parents first, birth times included', async () => {
  const root = tempDir('psync-scan-');
  plantTree(root);
  const side = drive(root, { reportScan: true, excludes: ['skipped'] });
  const readyFrame = await side.find('READY');
  const ready = side.frames.indexOf(readyFrame);
  const entries = side.frames.slice(0, ready).filter((f) => f.verb === 'ENTRY').map(decodeEntry);
  expect(side.frames.slice(ready + 1).filter((f) => f.verb === 'ENTRY')).toEqual([]);

  const expected = treeEntries(root).filter((e) => !e.path.startsWith('skipped'));
  expect(byPath(entries)).toEqual(expected);
  expect(expected.map((e) => e.path)).toEqual(
    expect.arrayContaining(['d/link', 'dangling', 'caf\udce9', 'caf\udce9/\udcff name\nwith newline', 'empty']),
  );
  expect(entries.find((e) => e.path === 'd/link')?.stat).toMatchObject({ type: 'symlink', size: '../a.txt'.length });
  expect(entries.every((e) => e.stat.birthMs !== undefined && e.stat.birthMs > 0)).toBe(true); // ext4 keeps them
  // Parents before children.
  const seen = new Set<string>(['']);
  for (const { path } of entries) {
    expect(seen.has(parentOf(path)), path).toBe(true);
    seen.add(path);
  }
  expect(decodeReady(readyFrame)).toEqual({ entries: entries.length, markers: undefined });
  expect(await side.stop()).toBe(0);
});

test('without reportScan there is no ENTRY frame, and READY still says how many entries and which markers', async () => {
  const root = tempDir('psync-scan-');
  plantTree(root);
  const side = drive(root);
  const ready = decodeReady(await side.find('READY'));
  expect(side.frames.filter((f) => f.verb === 'ENTRY')).toEqual([]);
  expect(ready).toEqual({ entries: treeEntries(root).length, markers: undefined });
  expect(await side.stop()).toBe(0);
});

test('READY carries the pair ids of .psync/id, each once, ignoring other lines', async () => {
  const root = tempDir('psync-scan-');
  mkdirSync(join(root, '.psync'), { mode: 0o700 });
  writeFileSync(join(root, '.psync', 'id'), '# a comment\nABCDEF00\n0123abcd\n0123abcd\nfedcba9876543210\nxyz');
  const side = drive(root, { reportScan: true });
  expect(decodeReady(await side.find('READY'))).toEqual({ entries: 0, markers: ['0123abcd', 'fedcba9876543210'] });
  expect(await side.stop()).toBe(0);

  writeFileSync(join(root, '.psync', 'id'), '');
  const again = drive(root, { reportScan: true });
  expect(decodeReady(await again.find('READY'))).toEqual({ entries: 0, markers: [] });
  expect(await again.stop()).toBe(0);
});

test('a MARK through the side is in the next READY; the scan never reports .psync', async () => {
  const root = tempDir('psync-scan-');
  writeFileSync(join(root, 'f'), 'x');
  const id = '00112233445566778899aabbccddeeff';
  const first = drive(root, { reportScan: true });
  await first.find('READY');
  const { verb, args } = encodeHelperRequest({ id: 1, kind: 'mark', pairId: id });
  first.send(verb, args);
  expect((await first.find('DONE', '1')).args.slice(1, 2)).toEqual(['other']);
  expect(await first.stop()).toBe(0);

  const second = drive(root, { reportScan: true });
  const ready = decodeReady(await second.find('READY'));
  expect(ready).toEqual({ entries: 1, markers: [id] });
  expect(second.frames.filter((f) => f.verb === 'ENTRY').map((f) => decodeEntry(f).path)).toEqual(['f']);
  expect(await second.stop()).toBe(0);
});

test('a .psync/id that is a symlink stops the filter with an ERROR: it is never read, and never taken for "no marker"', async () => {
  const root = tempDir('psync-scan-');
  const outside = tempDir('psync-outside-');
  writeFileSync(join(outside, 'id'), '0123abcd\n');
  mkdirSync(join(root, '.psync'), { mode: 0o700 });
  symlinkSync(join(outside, 'id'), join(root, '.psync', 'id'));
  const side = drive(root, { reportScan: true });
  const error = await side.find('ERROR');
  expect(error.args[0]).toMatch(/\.psync\/id.*symlink/);
  expect(side.frames.filter((f) => f.verb === 'READY')).toEqual([]);
  expect(await side.stop()).toBe(6);
});

/** A tree of `count` files in 20 directories: its ENTRY frames are some 100 bytes each. */
function plantMany(root: string, count: number): void {
  for (let d = 0; d < 20; d++) mkdirSync(join(root, `dir-${d}`));
  for (let i = 0; i < count; i++) writeFileSync(join(root, `dir-${i % 20}`, `file-number-${i}`), '');
}

const readyOrError = (frames: readonly Frame[]): boolean => frames.some((f) => f.verb === 'READY' || f.verb === 'ERROR');

/**
 * Read `output` a little at a time (1 KiB per turn of the event loop), as a
 * slow brain would, until `enough` (READY by default); returns the frames
 * and the most that was ever waiting in `output`.
 */
async function readSlowly(
  output: PassThrough,
  enough: (frames: readonly Frame[]) => boolean = readyOrError,
): Promise<{ frames: Frame[]; bytes: number; mostBuffered: number }> {
  const receiver = new FrameReceiver();
  const frames: Frame[] = [];
  let bytes = 0;
  let mostBuffered = 0;
  const deadline = Date.now() + 30_000;
  while (!enough(frames)) {
    if (Date.now() > deadline) throw new Error(`not there after ${frames.length} frames: ${frames.slice(-3).map((f) => f.verb).join(' ')}`);
    mostBuffered = Math.max(mostBuffered, output.readableLength + output.writableLength);
    const chunk = (output.read(1024) ?? output.read()) as Buffer | null;
    if (chunk !== null) {
      bytes += chunk.length;
      for (const received of receiver.push(chunk.toString('latin1'))) {
        if (!received.ok) throw received.error;
        frames.push(received.frame);
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { frames, bytes, mostBuffered };
}

const MANY = 6000;
/** Far below the ~600 KB the ENTRY frames of MANY files take, far above a stream's 16 KiB buffers. */
const MOST_BUFFERED_BYTES = 128 * 1024;

test('the filter writes its ENTRY frames as fast as they are read, never all at once', async () => {
  const root = tempDir('psync-scan-');
  plantMany(root, MANY);
  const input = new PassThrough();
  const output = new PassThrough();
  const exit = runFilter(input, output);
  input.write(new FrameWriter().encode('CONFIG', [JSON.stringify(filterConfig(root, { reportScan: true, lock: false }))]));
  const { frames, bytes, mostBuffered } = await readSlowly(output);
  expect(frames.filter((f) => f.verb === 'ENTRY')).toHaveLength(MANY + 20);
  expect(bytes).toBeGreaterThan(4 * MOST_BUFFERED_BYTES);
  expect(mostBuffered).toBeLessThan(MOST_BUFFERED_BYTES);
  input.end();
  output.resume();
  expect(await exit).toBe(0);
});

test('the side passes the wait on: it stops reading its filter while its own output is full', async () => {
  const root = tempDir('psync-scan-');
  plantMany(root, MANY);
  const input = new PassThrough();
  const output = new PassThrough();
  const exit = runSide(input, output);
  const config: SideConfig = { filter: filterConfig(root, { reportScan: true }), helper: { root, force: false, dryRun: false, relay: false } };
  input.write(new FrameWriter().encode('CONFIG', [JSON.stringify(config)]));
  const { frames, mostBuffered } = await readSlowly(output);
  expect(frames.filter((f) => f.verb === 'ENTRY')).toHaveLength(MANY + 20);
  expect(mostBuffered).toBeLessThan(MOST_BUFFERED_BYTES);
  input.end();
  output.resume();
  expect(await exit).toBe(0);
});

test('a change made while the brain is slow to read the scan is reported after READY, never before', async () => {
  const root = tempDir('psync-scan-');
  plantMany(root, MANY);
  const input = new PassThrough();
  const output = new PassThrough();
  const exit = runSide(input, output);
  const config: SideConfig = { filter: filterConfig(root, { reportScan: true }), helper: { root, force: false, dryRun: false, relay: false } };
  input.write(new FrameWriter().encode('CONFIG', [JSON.stringify(config)]));
  // The side is stuck on its full output (nothing is read yet) once it said HELLO: change the tree now.
  await waitFor('a full output', () => output.writableNeedDrain);
  writeFileSync(join(root, 'late'), 'written during the report');
  // Many settle delays (50 ms) with the report stuck: a filter that decided changes before READY would have sent one.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const { frames } = await readSlowly(output, (got) => got.some((f) => f.verb === 'RSYNC' && f.args[0] === 'late'));
  const ready = frames.findIndex((f) => f.verb === 'READY');
  expect(ready).toBeGreaterThan(MANY);
  expect(frames.slice(0, ready).filter((f) => !['HELLO', 'ENTRY'].includes(f.verb))).toEqual([]);
  expect(frames.some((f) => f.verb === 'ENTRY' && f.args[0] === 'late')).toBe(false);
  input.end();
  output.resume();
  expect(await exit).toBe(0);
});
