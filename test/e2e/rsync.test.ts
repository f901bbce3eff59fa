import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { RsyncError } from '../../src/core/errors.js';
import { pathToBytes } from '../../src/core/paths.js';
import { DEFAULT_TEMPFILES, compilePathClassifier, toRsyncFilterArgs } from '../../src/core/patterns.js';
import { buildRsyncArgv, runRsync, type RsyncArgvOptions } from '../../src/transfer/rsync.js';

let base: string;
let source: string;
let target: string;

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'psync-rsync-'));
  source = join(base, 'source');
  target = join(base, 'target');
  mkdirSync(source);
  mkdirSync(target);
});

afterEach(() => {
  rmSync(base, { recursive: true, force: true });
});

/** An absolute Buffer path for a root-relative psync path (so non-UTF-8 names work). */
const at = (root: string, path: string): Buffer => Buffer.concat([Buffer.from(`${root}/`), pathToBytes(path)]);

const argv = (options: Partial<RsyncArgvOptions> = {}): string[] =>
  buildRsyncArgv({ source: `${source}/`, target: `${target}/`, transportArgs: [], extra: [], excludes: [], filesFrom: true, ...options });

/** Every entry below a root as psync paths, sorted, with the names read as bytes. */
function listTree(root: string, dir = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir === '' ? root : at(root, dir), { encoding: 'buffer' })) {
    const path = dir === '' ? bytesPath(name) : `${dir}/${bytesPath(name)}`;
    out.push(path);
    if (lstatSync(at(root, path)).isDirectory()) out.push(...listTree(root, path));
  }
  return out.sort();
}
const bytesPath = (name: Buffer): string => [...name].map((b) => (b < 0x80 ? String.fromCharCode(b) : String.fromCharCode(0xdc00 + b))).join('');

describe('runRsync with a file list', () => {
  const NEWLINE = 'line\nbreak.txt';
  const NON_UTF8 = 'caf\udce9.txt'; // "café" in Latin-1: the byte 0xE9 is not valid UTF-8
  const NESTED = 'new/dir/deep.txt';

  test('names with a newline and non-UTF-8 bytes arrive byte for byte, with mode and mtime', async () => {
    mkdirSync(join(source, 'new/dir'), { recursive: true });
    for (const [path, mode] of [[NEWLINE, 0o640], [NON_UTF8, 0o600], [NESTED, 0o755]] as const) {
      writeFileSync(at(source, path), `content of ${path}`, { mode });
      utimesSync(at(source, path), 1_600_000_000.123456, 1_600_000_000.123456);
    }
    const result = await runRsync({ argv: argv(), files: [NEWLINE, NON_UTF8, NESTED] });
    expect(result).toMatchObject({ exitCode: 0, status: 'ok' });
    for (const path of [NEWLINE, NON_UTF8, NESTED]) {
      const from = lstatSync(at(source, path), { bigint: true });
      const to = lstatSync(at(target, path), { bigint: true });
      expect(readFileSync(at(target, path))).toEqual(readFileSync(at(source, path)));
      expect(to.mode).toBe(from.mode);
      expect(to.mtimeNs).toBe(from.mtimeNs);
    }
    expect(readdirSync(target, { encoding: 'buffer' }).map((name) => name.toString('hex')).sort()).toContain(
      Buffer.from(pathToBytes(NON_UTF8)).toString('hex'),
    );
  });

  test('a listed file that vanished before the transfer is not an error', async () => {
    writeFileSync(join(source, 'here.txt'), 'here');
    const result = await runRsync({ argv: argv(), files: ['here.txt', 'gone.txt'] });
    expect(result).toMatchObject({ exitCode: 0, status: 'ok' });
    expect(listTree(target)).toEqual(['here.txt']);
  });

  test('a symlink arrives as a symlink, even one pointing outside the tree', async () => {
    symlinkSync('/etc/passwd', join(source, 'outside'));
    symlinkSync('here.txt', join(source, 'inside'));
    const result = await runRsync({ argv: argv(), files: ['outside', 'inside'] });
    expect(result.status).toBe('ok');
    expect(lstatSync(join(target, 'outside')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(target, 'outside'))).toBe('/etc/passwd');
    expect(readlinkSync(join(target, 'inside'))).toBe('here.txt');
  });

  test('a listed directory is created without its contents unless recursive', async () => {
    mkdirSync(join(source, 'd/e'), { recursive: true });
    writeFileSync(join(source, 'd/e/f'), 'f');
    await runRsync({ argv: argv(), files: ['d'] });
    expect(listTree(target)).toEqual(['d']);
    await runRsync({ argv: argv({ recursive: true }), files: ['d'] });
    expect(listTree(target)).toEqual(['d', 'd/e', 'd/e/f']);
  });

  test('a target parent that is a symlink is replaced, never followed out of the tree', async () => {
    const outside = join(base, 'outside');
    mkdirSync(outside);
    mkdirSync(join(source, 'p'));
    writeFileSync(join(source, 'p/f'), 'f');
    symlinkSync(outside, join(target, 'p'));
    await runRsync({ argv: argv(), files: ['p/f'] });
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(target, 'p')).isDirectory()).toBe(true);
    expect(readFileSync(join(target, 'p/f'), 'utf8')).toBe('f');
  });

  test('stderr lines reach the log', async () => {
    const lines: string[] = [];
    await expect(runRsync({ argv: ['--no-such-option'], log: (line) => lines.push(line) })).rejects.toThrow(RsyncError);
    expect(lines.join('\n')).toContain('no-such-option');
  });
});

describe('runRsync failures', () => {
  test('a usage error throws RsyncError with exit code 1 and rsync’s message', async () => {
    const error = await runRsync({ argv: ['--no-such-option', `${source}/`, `${target}/`] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RsyncError);
    expect((error as RsyncError).exitCode).toBe(1);
    expect((error as RsyncError).message).toMatch(/exit code 1 \(syntax or usage error\): .+/);
  });

  test('a missing rsync binary throws RsyncError 127', async () => {
    const error = await runRsync({ argv: argv(), files: [], command: join(base, 'no-rsync') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RsyncError);
    expect((error as RsyncError).exitCode).toBe(127);
  });

  test('a cancelled run throws RsyncError 20', async () => {
    const controller = new AbortController();
    controller.abort(new Error('shutting down'));
    const error = await runRsync({ argv: argv(), files: [], signal: controller.signal }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RsyncError);
    expect((error as RsyncError).exitCode).toBe(20);
  });

  test('a path that could leave the root is refused before rsync starts', async () => {
    await expect(runRsync({ argv: argv(), files: ['../escape'] })).rejects.toThrow(/leave the root/);
  });
});

describe('the rsync excludes agree with the classifier', () => {
  const excludes = ['*.o', 'node_modules', '/build', 'docs/private', 'cache/', '**/gen/*.js', 'logs/**', 'a/**/z', '[!a]x'];
  const FILES = [
    'keep.txt', 'x.o', 'src/y.o', 'src/node_modules/p/i.js', 'build/out', 'src/build/out', 'docs/private/a', 'x/docs/private/a',
    'cache/f', 'src/cache', 'gen/a.js', 'q/gen/b.js', 'q/gen/b.ts', 'logs/1/2.log', 'q/logs', 'a/z', 'a/b/z', 'a/b/c/z', 'a/zz',
    'bx', 'ax', '.psync/state', 'f.1.psync.ignore', '.a.swp', 'notes~', 'd/.file.Ab12Cd', '.bashrc', 'w.tmp/inner',
  ];

  test('a full sync copies exactly the paths the classifier syncs', async () => {
    for (const file of FILES) {
      mkdirSync(join(source, file, '..'), { recursive: true });
      writeFileSync(join(source, file), file);
    }
    const patterns = { excludes, tempfiles: DEFAULT_TEMPFILES };
    await runRsync({ argv: argv({ filesFrom: false, excludes: toRsyncFilterArgs(patterns) }) });
    const classify = compilePathClassifier(patterns);
    const all = listTree(source);
    const expected = all.filter((path) => classify(path, lstatSync(join(source, path)).isDirectory()) === 'sync');
    expect(listTree(target)).toEqual(expected);
  });
});

test('the merge (--update) sees a newer save made within the same second at the same size', async () => {
  const { writeFile, utimes, readFile, mkdir } = await import('node:fs/promises');
  const { tempDir } = await import('../support/tmp.js');
  const { join } = await import('node:path');
  const { buildRsyncArgv, runRsync } = await import('../../src/transfer/rsync.js');
  const base = tempDir('psync-window-');
  await mkdir(join(base, 'a'));
  await mkdir(join(base, 'b'));
  const at = (ms: number): Date => new Date(Date.UTC(2022, 0, 2, 3, 4, 5, ms));
  await writeFile(join(base, 'b', 'f'), 'older');
  await utimes(join(base, 'b', 'f'), at(100), at(100));
  await writeFile(join(base, 'a', 'f'), 'newer');
  await utimes(join(base, 'a', 'f'), at(900), at(900));
  const argv = buildRsyncArgv({ source: `${join(base, 'a')}/`, target: `${join(base, 'b')}/`, transportArgs: [], update: true, extra: [], excludes: [], filesFrom: false });
  await runRsync({ argv });
  expect(await readFile(join(base, 'b', 'f'), 'utf8')).toBe('newer');
});

test('a device node on the source is never made on the target; a FIFO still is (issue 8)', async () => {
  const { execFileSync } = await import('node:child_process');
  execFileSync('mknod', [join(source, 'disk'), 'c', '1', '3']); // /dev/null's numbers: harmless if it did arrive
  execFileSync('mkfifo', [join(source, 'pipe')]);
  writeFileSync(join(source, 'f'), 'x');
  expect((await runRsync({ argv: argv(), files: ['disk', 'pipe', 'f'] })).status).toBe('ok');
  expect(listTree(target)).toEqual(['f', 'pipe']);
  expect(lstatSync(join(target, 'pipe')).isFIFO()).toBe(true);
});
