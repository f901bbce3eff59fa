import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { FrameReceiver, FrameWriter, type Frame } from '../../src/core/frame.js';
import { pathToBytes } from '../../src/core/paths.js';
import {
  decodeHelperReply,
  encodeHelperRequest,
  encodeStat,
  NO_STAT,
  PROTOCOL_VERSION,
  type HelperConfig,
  type HelperReply,
  type HelperRequest,
} from '../../src/core/protocol.js';
import type { Stat } from '../../src/core/types.js';
import { runHelper } from '../../helpers/helper.js';
import { coreStat, Directory, Tree } from '../../src/fs/directory.js';
import { connect } from 'node:net';
import { encodeRelayHeader, PROBE_ANSWER, PROBE_COMMAND } from '../../src/core/relay.js';
import { described } from '../support/table.js';

// Fault injection (errorfs style): a test can make one rename of the file layer fail; by default it is the real one.
const realRename = Directory.prototype.rename;
type RenameArgs = Parameters<Directory['rename']>;
const renames = vi.spyOn(Directory.prototype, 'rename');

/** Drives runHelper in-process through two PassThrough pipes, as the brain would. */
class Driver {
  readonly input = new PassThrough();
  readonly output = new PassThrough();
  readonly logs: string[] = [];
  readonly exit: Promise<number>;
  private readonly writer = new FrameWriter();
  private readonly receiver = new FrameReceiver();
  private readonly frames: Frame[] = [];
  private wake: (() => void) | undefined;
  private nextId = 1;

  constructor(config: HelperConfig) {
    this.output.on('data', (chunk: Buffer) => {
      for (const received of this.receiver.push(chunk.toString('latin1'))) {
        if (!received.ok) throw received.error;
        this.frames.push(received.frame);
      }
      this.wake?.();
    });
    this.exit = runHelper(this.input, this.output, { log: (line) => this.logs.push(line) });
    this.send('CONFIG', [JSON.stringify(config)]);
  }

  send(verb: string, args: readonly string[]): void {
    this.input.write(this.writer.encode(verb, args));
  }

  async next(): Promise<Frame> {
    while (this.frames.length === 0) await new Promise<void>((resolve) => (this.wake = resolve));
    return this.frames.shift()!;
  }

  /** Send one request and read its reply, which must have the form of that request's kind. */
  async request(request: DistributiveOmit<HelperRequest, 'id'>): Promise<HelperReply> {
    const { verb, args } = encodeHelperRequest({ ...request, id: this.nextId++ } as HelperRequest);
    this.send(verb, args);
    return decodeHelperReply(await this.next(), request.kind);
  }

  async close(): Promise<number> {
    this.input.end();
    return this.exit;
  }
}
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

let base: string;
let root: string;
const drivers: Driver[] = [];

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'psync-helper-'));
  root = join(base, 'root');
  mkdirSync(root);
});

afterEach(async () => {
  for (const driver of drivers.splice(0)) expect(await driver.close()).toBe(0);
  expect(scratchNames(root)).toEqual([]);
  expect(existsSync(root)).toBe(true);
  renames.mockReset();
  rmSync(base, { recursive: true, force: true });
});

async function startHelper(options: Partial<HelperConfig> = {}): Promise<Driver> {
  const driver = new Driver({ root, force: false, dryRun: false, relay: false, ...options });
  drivers.push(driver);
  const hello = await driver.next();
  expect(hello.verb).toBe('HELLO');
  return driver;
}

/** An absolute Buffer path for a root-relative psync path (so non-UTF-8 names work). */
const at = (path: string): Buffer => Buffer.concat([Buffer.from(`${root}/`), pathToBytes(path)]);
const statOf = (path: string): Stat => coreStat(new Tree(root).lstat(path)!);
const exists = (path: string): boolean => {
  try {
    lstatSync(at(path));
    return true;
  } catch {
    return false;
  }
};
function file(path: string, content = path): Stat {
  mkdirSync(at(path).subarray(0, at(path).lastIndexOf('/')), { recursive: true });
  writeFileSync(at(path), content);
  return statOf(path);
}
function dir(path: string): Stat {
  mkdirSync(at(path), { recursive: true });
  return statOf(path);
}

/** Every name below `top` that holds `.psync.ignore`, read as bytes. */
function scratchNames(top: string): string[] {
  if (!existsSync(top)) return [];
  const out: string[] = [];
  for (const name of readdirSync(top, { encoding: 'buffer' })) {
    const full = Buffer.concat([Buffer.from(`${top}/`), name]);
    if (name.includes('.psync.ignore')) out.push(name.toString('latin1'));
    if (lstatSync(full).isDirectory()) out.push(...scratchNames(full.toString('latin1')));
  }
  return out;
}

describe('handshake', () => {
  test('answers CONFIG with HELLO <version> helper <pid>', async () => {
    const driver = new Driver({ root, force: false, dryRun: false, relay: false });
    drivers.push(driver);
    const hello = await driver.next();
    expect(hello).toMatchObject({ seq: 1, verb: 'HELLO', args: [String(PROTOCOL_VERSION), 'helper', String(process.pid)] });
  });

  test('a missing root is an ERROR and exit code 2', async () => {
    const driver = new Driver({ root: join(base, 'nope'), force: false, dryRun: false, relay: false });
    const error = await driver.next();
    expect(error.verb).toBe('ERROR');
    expect(error.args[0]).toContain('nope');
    // Its kind: the brain makes it a settings error (exit 2), like a missing local root.
    expect(error.args[1]).toBe('root');
    expect(await driver.exit).toBe(2);
  });

  test('a relative root is an ERROR', async () => {
    const driver = new Driver({ root: 'relative/root', force: false, dryRun: false, relay: false });
    expect((await driver.next()).verb).toBe('ERROR');
    expect(await driver.exit).toBe(2);
  });
});

describe('MOVE', () => {
  test('moves a file and keeps its inode', async () => {
    const helper = await startHelper();
    const stat = file('a.txt');
    const reply = await helper.request({ kind: 'move', from: 'a.txt', to: 'b.txt', expect: stat });
    expect(reply).toMatchObject({ ok: true, stat: { type: 'file', ino: stat.ino, size: stat.size } });
    expect(exists('a.txt')).toBe(false);
    expect(statOf('b.txt').ino).toBe(stat.ino);
  });

  test('moves a directory with its files, keeping every inode', async () => {
    const helper = await startHelper();
    const d = dir('d/sub');
    const inner = file('d/sub/f');
    const top = statOf('d');
    const reply = await helper.request({ kind: 'move', from: 'd', to: 'e', expect: top });
    expect(reply).toMatchObject({ ok: true, stat: { type: 'dir', ino: top.ino } });
    expect(statOf('e/sub').ino).toBe(d.ino);
    expect(statOf('e/sub/f').ino).toBe(inner.ino);
    expect(exists('d')).toBe(false);
  });

  test('replaces the file the source replaced at the destination', async () => {
    const helper = await startHelper();
    const stat = file('a', 'new');
    const old = file('b', 'the old b');
    const reply = await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat, replaces: old });
    expect(reply).toMatchObject({ ok: true });
    expect(reply.ok && reply.conflict).toBeFalsy();
    expect(readFileSync(at('b'), 'utf8')).toBe('new');
    expect(readdirSync(root)).toEqual(['b']);
  });

  test('keeps a destination file the source did not have there as a conflict copy', async () => {
    const helper = await startHelper();
    const stat = file('a', 'moved here');
    file('b', 'edited on this side');
    utimesSync(at('b'), new Date(3_000_000), new Date(3_000_000));
    const reply = await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat, replaces: { ...stat, size: 99 } });
    expect(reply).toMatchObject({ ok: true, conflict: { copy: 'b.psync-conflict-19700101-005000', kept: 'written' } });
    expect(readFileSync(at('b'), 'utf8')).toBe('moved here');
    expect(readFileSync(at('b.psync-conflict-19700101-005000'), 'utf8')).toBe('edited on this side');
  });

  test('a destination file with no replaced file on the source is a conflict too (both created it)', async () => {
    const helper = await startHelper();
    const stat = file('a', 'moved here');
    file('b', 'created on this side');
    utimesSync(at('b'), new Date(3_000_000), new Date(3_000_000));
    const reply = await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat });
    expect(reply).toMatchObject({ ok: true, conflict: { kept: 'written' } });
    expect(readdirSync(root).sort()).toEqual(['b', 'b.psync-conflict-19700101-005000']);
  });

  test('replaces an empty directory at the destination', async () => {
    const helper = await startHelper();
    const stat = file('a');
    dir('b');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat })).toMatchObject({ ok: true, stat: { type: 'file' } });
  });

  test('refuses to move onto a non-empty directory without force', async () => {
    const helper = await startHelper();
    const stat = dir('a');
    file('b/keep');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat })).toMatchObject({ ok: false, code: 'notempty' });
    expect(exists('a')).toBe(true);
    expect(exists('b/keep')).toBe(true);
  });

  test('replaces a non-empty directory with force', async () => {
    const helper = await startHelper({ force: true });
    const stat = dir('a');
    file('a/mine');
    file('b/theirs');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat })).toMatchObject({ ok: true });
    expect(readdirSync(at('b'))).toEqual(['mine']);
  });

  test('refuses to move a directory onto a file', async () => {
    const helper = await startHelper();
    const stat = dir('a');
    file('b');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat })).toMatchObject({ ok: false, code: 'exists' });
  });

  test('refuses to move a directory into itself', async () => {
    const helper = await startHelper({ force: true });
    const stat = dir('a');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'a/b', expect: stat })).toMatchObject({ ok: false, code: 'unsafe' });
  });

  test('refuses to move an entry onto its own ancestor', async () => {
    const helper = await startHelper({ force: true });
    dir('a');
    const stat = file('a/b');
    expect(await helper.request({ kind: 'move', from: 'a/b', to: 'a', expect: stat })).toMatchObject({ ok: false, code: 'unsafe' });
    expect(exists('a/b')).toBe(true);
  });

  test('creates missing parent directories of the destination', async () => {
    const helper = await startHelper();
    const stat = file('a');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'x/y/z', expect: stat })).toMatchObject({ ok: true });
    expect(statOf('x/y').type).toBe('dir');
    expect(statOf('x/y/z').ino).toBe(stat.ino);
  });

  test('a source that changed since is left alone', async () => {
    const helper = await startHelper();
    const stat = file('a', 'short');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: { ...stat, size: 99 } })).toMatchObject({
      ok: false,
      code: 'changed',
    });
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: { ...stat, mtimeMs: stat.mtimeMs - 5000 } })).toMatchObject({
      ok: false,
      code: 'changed',
    });
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: { ...stat, type: 'dir' } })).toMatchObject({ ok: false, code: 'changed' });
    expect(exists('a')).toBe(true);
    expect(exists('b')).toBe(false);
  });

  test('the inode is not compared (it differs across hosts)', async () => {
    const helper = await startHelper();
    const stat = file('a');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: { ...stat, ino: stat.ino + 1 } })).toMatchObject({ ok: true });
  });

  test('a missing source is reported as missing', async () => {
    const helper = await startHelper();
    const stat = file('a');
    rmSync(at('a'));
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat })).toMatchObject({ ok: false, code: 'missing' });
  });

  test('refuses a destination below a file', async () => {
    const helper = await startHelper();
    const stat = file('a');
    file('f');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'f/b', expect: stat })).toMatchObject({ ok: false, code: 'exists' });
    expect(exists('a')).toBe(true);
  });

  test('moves one hard link onto another of the same file', async () => {
    const helper = await startHelper();
    const stat = file('a');
    linkSync(at('a'), at('b'));
    const reply = await helper.request({ kind: 'move', from: 'a', to: 'b', expect: statOf('a') });
    expect(reply).toMatchObject({ ok: true, stat: { ino: stat.ino } });
    expect(exists('a')).toBe(false);
  });

  test('an interrupted dance puts the entry back under its own name', async () => {
    const helper = await startHelper();
    const stat = file('a', 'precious');
    renames.mockImplementation(function (this: Directory, ...args: RenameArgs) {
      const [from, , to] = args;
      if (from.includes('.psync.ignore') && to === 'b') {
        throw Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' });
      }
      realRename.apply(this, args);
    });
    const reply = await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat });
    expect(reply).toMatchObject({ ok: false, code: 'error' });
    expect(readFileSync(at('a'), 'utf8')).toBe('precious');
    expect(statOf('a').ino).toBe(stat.ino);
    expect(exists('b')).toBe(false);
  });

  test('an interrupted dance restores a directory that was set aside at the destination', async () => {
    const helper = await startHelper();
    const stat = file('a');
    const target = dir('b');
    let calls = 0;
    renames.mockImplementation(function (this: Directory, ...args: RenameArgs) {
      calls += 1;
      if (calls === 3) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }); // scratch -> b
      realRename.apply(this, args);
    });
    expect(await helper.request({ kind: 'move', from: 'a', to: 'b', expect: stat })).toMatchObject({ ok: false, code: 'error' });
    expect(statOf('a').ino).toBe(stat.ino);
    expect(statOf('b').ino).toBe(target.ino);
  });
});

describe('DELETE', () => {
  test('deletes a file', async () => {
    const helper = await startHelper();
    const stat = file('a');
    expect(await helper.request({ kind: 'delete', path: 'a', expect: stat })).toMatchObject({ ok: true, stat: { type: 'file' } });
    expect(exists('a')).toBe(false);
  });

  test('refuses a file whose size changed since', async () => {
    const helper = await startHelper();
    const stat = file('a', 'v1');
    writeFileSync(at('a'), 'version 2, edited on the target');
    expect(await helper.request({ kind: 'delete', path: 'a', expect: stat })).toMatchObject({ ok: false, code: 'changed' });
    expect(readFileSync(at('a'), 'utf8')).toBe('version 2, edited on the target');
  });

  test('reports a missing entry as missing', async () => {
    const helper = await startHelper();
    expect(await helper.request({ kind: 'delete', path: 'nothing', expect: { type: 'file', ino: 1, size: 0, mtimeMs: 0, mode: 0o644 } })).toMatchObject({
      ok: false,
      code: 'missing',
    });
  });

  test('reports an entry below what is now a file as missing', async () => {
    const helper = await startHelper();
    dir('d');
    const stat = file('d/f');
    rmSync(at('d'), { recursive: true });
    file('d');
    expect(await helper.request({ kind: 'delete', path: 'd/f', expect: stat })).toMatchObject({ ok: false, code: 'missing' });
  });

  test('deletes an empty directory', async () => {
    const helper = await startHelper();
    const stat = dir('d');
    expect(await helper.request({ kind: 'delete', path: 'd', expect: stat })).toMatchObject({ ok: true });
    expect(exists('d')).toBe(false);
  });

  test('refuses a non-empty directory without force', async () => {
    const helper = await startHelper();
    const stat = dir('d');
    file('d/f');
    expect(await helper.request({ kind: 'delete', path: 'd', expect: stat })).toMatchObject({ ok: false, code: 'notempty' });
    expect(exists('d/f')).toBe(true);
  });

  test('deletes a non-empty directory with force', async () => {
    const helper = await startHelper({ force: true });
    file('d/e/f');
    symlinkSync(base, at('d/link-out'));
    expect(await helper.request({ kind: 'delete', path: 'd', expect: statOf('d') })).toMatchObject({ ok: true });
    expect(exists('d')).toBe(false);
    expect(existsSync(root)).toBe(true); // the link to the outside (root's parent) was unlinked, not followed
  });

  test('deletes a symlink, never what it points to', async () => {
    const helper = await startHelper();
    const outside = join(base, 'outside.txt');
    writeFileSync(outside, 'outside');
    symlinkSync(outside, at('link'));
    expect(await helper.request({ kind: 'delete', path: 'link', expect: statOf('link') })).toMatchObject({ ok: true, stat: { type: 'symlink' } });
    expect(readFileSync(outside, 'utf8')).toBe('outside');
  });

  test('a failed delete puts the entry back', async () => {
    const helper = await startHelper();
    const stat = dir('d');
    renames.mockImplementation(function (this: Directory, ...args: RenameArgs) {
      realRename.apply(this, args);
      const [, target, to] = args;
      if (to.includes('.psync.ignore')) writeFileSync(join(root, target.path, to, 'created-meanwhile'), 'x');
    });
    expect(await helper.request({ kind: 'delete', path: 'd', expect: stat })).toMatchObject({ ok: false, code: 'notempty' });
    expect(readdirSync(at('d'))).toEqual(['created-meanwhile']);
  });
});

describe('safety', () => {
  const anyStat: Stat = { type: 'file', ino: 1, size: 0, mtimeMs: 0, mode: 0o644 };

  test.each([
    { description: 'a parent reference', path: '../outside' },
    { description: 'a parent reference inside', path: 'a/../../outside' },
    { description: 'an absolute path', path: '/etc/passwd' },
    { description: 'the root itself', path: '' },
    { description: 'a dot', path: '.' },
  ])('refuses $description as unsafe, answering the id', async ({ path }) => {
    const helper = await startHelper({ force: true });
    helper.send('DELETE', ['41', path, ...encodeStat({ ...anyStat, type: 'dir' })]);
    expect(decodeHelperReply(await helper.next())).toMatchObject({ id: 41, ok: false, code: 'unsafe' });
    helper.send('MOVE', ['42', path, 'x', ...encodeStat(anyStat)]);
    expect(decodeHelperReply(await helper.next())).toMatchObject({ id: 42, ok: false, code: 'unsafe' });
    helper.send('MOVE', ['43', 'x', path, ...encodeStat(anyStat)]);
    expect(decodeHelperReply(await helper.next())).toMatchObject({ id: 43, ok: false, code: 'unsafe' });
  });

  test('refuses psync’s own names', async () => {
    const helper = await startHelper({ force: true });
    const state = dir('.psync');
    expect(await helper.request({ kind: 'delete', path: '.psync', expect: state })).toMatchObject({ ok: false, code: 'unsafe' });
    const a = file('a');
    expect(await helper.request({ kind: 'move', from: 'a', to: '.psync/a', expect: a })).toMatchObject({ ok: false, code: 'unsafe' });
    expect(await helper.request({ kind: 'move', from: 'a', to: 'y.psync.ignore', expect: a })).toMatchObject({ ok: false, code: 'unsafe' });
    expect(exists('.psync')).toBe(true);
    expect(exists('a')).toBe(true);
  });

  test('refuses to act through a symlinked directory', async () => {
    const helper = await startHelper({ force: true });
    const outside = join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'victim'), 'keep me');
    symlinkSync(outside, at('link'));
    const victim = coreStat(new Tree(outside).lstat('victim')!);
    expect(await helper.request({ kind: 'delete', path: 'link/victim', expect: victim })).toMatchObject({ ok: false, code: 'unsafe' });
    expect(await helper.request({ kind: 'move', from: 'link/victim', to: 'stolen', expect: victim })).toMatchObject({ ok: false, code: 'unsafe' });
    const a = file('a');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'link/planted', expect: a })).toMatchObject({ ok: false, code: 'unsafe' });
    expect(readdirSync(outside)).toEqual(['victim']);
    expect(exists('a')).toBe(true);
  });

  test('a malformed frame is skipped and the next request is still answered', async () => {
    const helper = await startHelper();
    helper.input.write('2 DELETE 1 a file 1 0 0 644 deadbeef\n');
    helper.input.write('this is not a frame\n');
    const stat = file('a');
    expect(await helper.request({ kind: 'delete', path: 'a', expect: stat })).toMatchObject({ id: 1, ok: true });
    expect(helper.logs.join('\n')).toMatch(/malformed/);
  });

  test('a request without a readable id is skipped, never acted on', async () => {
    const helper = await startHelper({ force: true });
    const stat = dir('d');
    helper.send('DELETE', ['not-an-id', 'd', ...encodeStat(stat)]);
    helper.send('RMRF', ['d']);
    const a = file('a');
    expect(await helper.request({ kind: 'delete', path: 'a', expect: a })).toMatchObject({ id: 1, ok: true });
    expect(exists('d')).toBe(true);
  });
});

describe('names', () => {
  test.each([
    { description: 'a newline', name: 'line\nbreak' },
    { description: 'a colon', name: 'host:path' },
    { description: 'a leading dash', name: '-rf' },
    { description: 'spaces and a percent sign', name: ' 100% done ' },
    { description: 'non-UTF-8 bytes', name: 'caf\udce9 \udcff' },
    { description: 'a name at the length limit', name: 'n'.repeat(255) },
  ])('moves and deletes a name with $description', async ({ name }) => {
    const helper = await startHelper();
    dir('in');
    const stat = file(`in/${name}`, 'data');
    const moved = await helper.request({ kind: 'move', from: `in/${name}`, to: `out/${name}`, expect: stat });
    expect(moved).toMatchObject({ ok: true, stat: { ino: stat.ino } });
    expect(readFileSync(at(`out/${name}`), 'utf8')).toBe('data');
    expect(await helper.request({ kind: 'delete', path: `out/${name}`, expect: statOf(`out/${name}`) })).toMatchObject({ ok: true });
    expect(readdirSync(at('out'))).toEqual([]);
    expect(readdirSync(at('in'))).toEqual([]);
  });
});

describe('dry run', () => {
  test('checks but changes nothing', async () => {
    const helper = await startHelper({ dryRun: true, force: true });
    const a = file('a');
    const d = dir('d');
    file('d/f');
    expect(await helper.request({ kind: 'move', from: 'a', to: 'new/b', expect: a })).toMatchObject({ ok: true, stat: { ino: a.ino } });
    expect(await helper.request({ kind: 'delete', path: 'd', expect: d })).toMatchObject({ ok: true });
    expect(await helper.request({ kind: 'delete', path: 'a', expect: { ...a, size: 1234 } })).toMatchObject({ ok: false, code: 'changed' });
    expect(readdirSync(root).sort()).toEqual(['a', 'd']);
    expect(readdirSync(at('d'))).toEqual(['f']);
  });
});

describe('RESOLVE: what a transfer replaced', () => {
  const run = '.psync/replaced/7-1';
  /** Set up as rsync --backup-dir leaves it: the target's old version kept in the run's directory, the new one in place. */
  function replacedBy(path: string, old: string, oldMtime: number, written: string, writtenMtime: number): { old: Stat; written: Stat } {
    const kept = `${run}/${path}`;
    file(kept, old);
    utimesSync(at(kept), new Date(oldMtime), new Date(oldMtime));
    file(path, written);
    utimesSync(at(path), new Date(writtenMtime), new Date(writtenMtime));
    return { old: statOf(kept), written: statOf(path) };
  }

  test('an expected version goes with PURGE and leaves no trace', async () => {
    const helper = await startHelper();
    const { old } = replacedBy('a.txt', 'old', 1_000_000, 'new', 2_000_000);
    const reply = await helper.request({ kind: 'resolve', dir: run, path: 'a.txt', expected: [old] });
    expect(reply).toMatchObject({ ok: true, stat: { size: 3 } });
    expect(reply.ok && reply.conflict).toBeFalsy();
    expect(readFileSync(at('a.txt'), 'utf8')).toBe('new');
    expect(await helper.request({ kind: 'purge', dir: run })).toMatchObject({ ok: true });
    expect(exists('.psync/replaced')).toBe(false);
    expect(readdirSync(root).sort()).toEqual(['.psync', 'a.txt']);
  });

  test('a newer edit on the target keeps the name; the incoming version becomes the conflict copy', async () => {
    const helper = await startHelper();
    const { written } = replacedBy('d/r.txt', 'edited here', 9_000_000, 'incoming', 5_000_000);
    const reply = await helper.request({ kind: 'resolve', dir: run, path: 'd/r.txt', expected: [{ ...written, size: 99 }] });
    expect(reply).toMatchObject({ ok: true, conflict: { copy: 'd/r.psync-conflict-19700101-012320.txt', kept: 'replaced' } });
    expect(readFileSync(at('d/r.txt'), 'utf8')).toBe('edited here');
    expect(readFileSync(at('d/r.psync-conflict-19700101-012320.txt'), 'utf8')).toBe('incoming');
  });

  test('an older edit on the target becomes the conflict copy; the incoming version keeps the name', async () => {
    const helper = await startHelper();
    replacedBy('o.txt', 'older edit', 3_000_000, 'incoming', 5_000_000);
    const reply = await helper.request({ kind: 'resolve', dir: run, path: 'o.txt', expected: [] });
    expect(reply).toMatchObject({ ok: true, conflict: { copy: 'o.psync-conflict-19700101-005000.txt', kept: 'written' } });
    expect(readFileSync(at('o.txt'), 'utf8')).toBe('incoming');
    expect(readFileSync(at('o.psync-conflict-19700101-005000.txt'), 'utf8')).toBe('older edit');
  });

  test('a conflict copy name held by something else is not overwritten', async () => {
    const helper = await startHelper();
    file('o.psync-conflict-19700101-005000.txt', 'someone else');
    replacedBy('o.txt', 'older edit', 3_000_000, 'incoming', 5_000_000);
    const reply = await helper.request({ kind: 'resolve', dir: run, path: 'o.txt', expected: [] });
    expect(reply).toMatchObject({ ok: true, conflict: { copy: 'o.psync-conflict-19700101-005000-1.txt' } });
    expect(readFileSync(at('o.psync-conflict-19700101-005000.txt'), 'utf8')).toBe('someone else');
    expect(readFileSync(at('o.psync-conflict-19700101-005000-1.txt'), 'utf8')).toBe('older edit');
  });

  test('a conflict copy that arrived from the other side first is kept once, not twice', async () => {
    const helper = await startHelper();
    replacedBy('o.txt', 'older edit', 3_000_000, 'incoming', 5_000_000);
    file('o.psync-conflict-19700101-005000.txt', 'older edit');
    utimesSync(at('o.psync-conflict-19700101-005000.txt'), new Date(3_000_000), new Date(3_000_000));
    const reply = await helper.request({ kind: 'resolve', dir: run, path: 'o.txt', expected: [] });
    expect(reply).toMatchObject({ ok: true, conflict: { copy: 'o.psync-conflict-19700101-005000.txt', kept: 'written' } });
    expect(readFileSync(at('o.txt'), 'utf8')).toBe('incoming');
    expect(readdirSync(root).filter((name) => name.startsWith('o.')).sort()).toEqual(['o.psync-conflict-19700101-005000.txt', 'o.txt']);
  });

  test('the newer replaced version takes the name back when the written one\'s copy arrived first', async () => {
    const helper = await startHelper();
    replacedBy('n.txt', 'edited here', 9_000_000, 'incoming', 5_000_000);
    file('n.psync-conflict-19700101-012320.txt', 'incoming');
    utimesSync(at('n.psync-conflict-19700101-012320.txt'), new Date(5_000_000), new Date(5_000_000));
    const reply = await helper.request({ kind: 'resolve', dir: run, path: 'n.txt', expected: [] });
    expect(reply).toMatchObject({ ok: true, conflict: { copy: 'n.psync-conflict-19700101-012320.txt', kept: 'replaced' } });
    expect(readFileSync(at('n.txt'), 'utf8')).toBe('edited here');
    expect(readdirSync(root).filter((name) => name.startsWith('n.')).sort()).toEqual(['n.psync-conflict-19700101-012320.txt', 'n.txt']);
  });

  test('nothing replaced: the reply carries what stands at the path now', async () => {
    const helper = await startHelper();
    const now = file('fresh', 'new file');
    expect(await helper.request({ kind: 'resolve', dir: run, path: 'fresh', expected: [] })).toMatchObject({ ok: true, stat: { size: now.size } });
    expect(await helper.request({ kind: 'purge', dir: run })).toMatchObject({ ok: true, stat: { type: 'other' } });
  });

  test('never acts through a symlinked parent', async () => {
    const helper = await startHelper();
    const outside = join(base, 'outside');
    mkdirSync(outside);
    symlinkSync(outside, at('link'));
    file(`${run}/link/x`, 'old');
    writeFileSync(join(outside, 'x'), 'outside file');
    const reply = await helper.request({ kind: 'resolve', dir: run, path: 'link/x', expected: [] });
    expect(reply).toMatchObject({ ok: false, code: 'unsafe' });
    expect(readFileSync(join(outside, 'x'), 'utf8')).toBe('outside file');
    expect(readdirSync(outside)).toEqual(['x']);
  });
});

describe('the rsync relay', () => {
  async function relayOf(driver: Driver): Promise<{ port: number; token: string }> {
    const frame = await driver.next();
    expect(frame.verb).toBe('RELAY');
    return { port: Number(frame.args[0]), token: frame.args[1]! };
  }
  /** Connect, send `bytes`, and collect what comes back until the helper closes. */
  const exchange = (port: number, bytes: Buffer): Promise<string> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = connect({ host: '127.0.0.1', port }, () => socket.write(bytes));
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('close', () => resolve(Buffer.concat(chunks).toString()));
      socket.on('error', reject);
    });

  test('is offered after HELLO only when asked for, and answers a probe with the right token', async () => {
    const helper = await startHelper({ relay: true });
    const { port, token } = await relayOf(helper);
    expect(token).toMatch(/^[0-9a-f]{48}$/);
    expect(await exchange(port, encodeRelayHeader(token, [PROBE_COMMAND]))).toBe(PROBE_ANSWER);
  });

  test.each(described<{ description: string; header: (token: string) => Buffer }>([
    { description: 'a wrong token', header: (token) => encodeRelayHeader(`${token.slice(1)}x`, [PROBE_COMMAND]) },
    { description: 'no token', header: () => encodeRelayHeader('', ['rsync', '--server', '.', '/tmp']) },
    { description: 'a command that is not an rsync server', header: (token) => encodeRelayHeader(token, ['sh', '-c', 'touch /tmp/psync-pwned']) },
  ]))('refuses %s and runs nothing', async (_description, { header }) => {
    const helper = await startHelper({ relay: true });
    const { port, token } = await relayOf(helper);
    expect(await exchange(port, header(token))).toBe('');
    expect(existsSync('/tmp/psync-pwned')).toBe(false);
    expect(helper.logs.join('\n')).toMatch(/rsync relay: refused/);
  });
});

// ---------------------------------------------------------------------------
// STAT, HASH and MARK: what the brain's three-way reconcile asks a side

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
/** A stat as HASH answers it: the five wire fields, no birth time. */
const wireStat = ({ type, ino, size, mtimeMs, mode }: Stat): Stat => ({ type, ino, size, mtimeMs, mode });

describe('STAT', () => {
  test('answers the lstat of a file, a directory and a symlink (never followed), birth time included', async () => {
    const helper = await startHelper();
    file('d/f', 'content');
    symlinkSync('/etc/passwd', at('d/link'));
    for (const path of ['d/f', 'd', 'd/link']) {
      const reply = await helper.request({ kind: 'stat', path });
      expect(reply, path).toEqual({ id: expect.any(Number), ok: true, stat: statOf(path) });
    }
    expect(statOf('d/f').birthMs).toBeGreaterThan(0); // this file system keeps it, so the reply carried it
    expect(await helper.request({ kind: 'stat', path: 'd/link' })).toMatchObject({ stat: { type: 'symlink', size: '/etc/passwd'.length } });
  });

  test('a missing entry is missing; one behind a symlinked directory is unsafe; psync\'s own names are refused', async () => {
    const helper = await startHelper();
    const outside = join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret'), 'x');
    symlinkSync(outside, at('link'));
    file('.psync/id', '0123abcd\n');
    expect(await helper.request({ kind: 'stat', path: 'nothing' })).toMatchObject({ ok: false, code: 'missing' });
    expect(await helper.request({ kind: 'stat', path: 'nothing/below' })).toMatchObject({ ok: false, code: 'missing' });
    expect(await helper.request({ kind: 'stat', path: 'link/secret' })).toMatchObject({ ok: false, code: 'unsafe' });
    expect(await helper.request({ kind: 'stat', path: '.psync/id' })).toMatchObject({ ok: false, code: 'unsafe' });
  });
});

describe('HASH', () => {
  test('a file: the SHA-256 of its content and the stat of what was read', async () => {
    const helper = await startHelper();
    const stat = file('a b/\udcffdata', 'some content');
    expect(await helper.request({ kind: 'hash', path: 'a b/\udcffdata' })).toEqual({ id: 1, ok: true, stat: wireStat(stat), hash: sha256('some content') });
    file('empty', '');
    expect(await helper.request({ kind: 'hash', path: 'empty' })).toMatchObject({ ok: true, hash: sha256('') });
  });

  test('a file larger than one read step is hashed whole', async () => {
    const helper = await startHelper();
    const content = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < content.length; i++) content[i] = (i * 31 + (i >> 12)) & 0xff;
    writeFileSync(at('big'), content);
    expect(await helper.request({ kind: 'hash', path: 'big' })).toEqual({ id: 1, ok: true, stat: wireStat(statOf('big')), hash: sha256(content) });
  });

  test('a symlink: the SHA-256 of its target bytes, never of what it points to', async () => {
    const helper = await startHelper();
    const outside = join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret'), 'secret content');
    const target = Buffer.concat([Buffer.from(`${outside}/secret`), Buffer.from([0xff])]);
    symlinkSync(join(outside, 'secret'), at('link'));
    symlinkSync(target, at('odd'));
    expect(await helper.request({ kind: 'hash', path: 'link' })).toEqual({
      id: 1,
      ok: true,
      stat: wireStat(statOf('link')),
      hash: sha256(join(outside, 'secret')),
    });
    expect(await helper.request({ kind: 'hash', path: 'odd' })).toMatchObject({ ok: true, hash: sha256(target) });
  });

  test('never reads through a symlinked parent', async () => {
    const helper = await startHelper();
    const outside = join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret'), 'secret content');
    symlinkSync(outside, at('link'));
    expect(await helper.request({ kind: 'hash', path: 'link/secret' })).toMatchObject({ ok: false, code: 'unsafe' });
    dir('d');
    symlinkSync(outside, at('d/deeper'));
    expect(await helper.request({ kind: 'hash', path: 'd/deeper/secret' })).toMatchObject({ ok: false, code: 'unsafe' });
  });

  test('a directory, a FIFO or nothing has no hash; the next request is still answered', async () => {
    const helper = await startHelper();
    dir('d');
    execFileSync('mkfifo', [join(root, 'fifo')]);
    expect(await helper.request({ kind: 'hash', path: 'd' })).toMatchObject({ ok: false, code: 'error' });
    expect(await helper.request({ kind: 'hash', path: 'fifo' })).toMatchObject({ ok: false, code: 'error' });
    expect(await helper.request({ kind: 'hash', path: 'nothing' })).toMatchObject({ ok: false, code: 'missing' });
    expect(await helper.request({ kind: 'hash', path: '.psync/lock' })).toMatchObject({ ok: false, code: 'unsafe' });
    file('f', 'x');
    expect(await helper.request({ kind: 'hash', path: 'f' })).toMatchObject({ ok: true, hash: sha256('x') });
  });
});

describe('MARK', () => {
  const ID = '0123456789abcdef';
  const OTHER = 'fedcba9876543210fedcba9876543210';
  const marker = (): string => readFileSync(at('.psync/id'), 'latin1');

  test('creates .psync/id (mode 0600, in a 0700 .psync) and appends a new id once', async () => {
    const helper = await startHelper();
    expect(await helper.request({ kind: 'mark', pairId: ID })).toEqual({ id: 1, ok: true, stat: NO_STAT });
    expect(marker()).toBe(`${ID}\n`);
    expect(lstatSync(at('.psync/id')).mode & 0o777).toBe(0o600);
    expect(lstatSync(at('.psync')).mode & 0o777).toBe(0o700);
    expect(await helper.request({ kind: 'mark', pairId: OTHER })).toMatchObject({ ok: true });
    expect(await helper.request({ kind: 'mark', pairId: ID })).toMatchObject({ ok: true });
    expect(marker()).toBe(`${ID}\n${OTHER}\n`);
    expect(readdirSync(at('.psync'))).toEqual(['id']); // no temp file left
  });

  test('keeps the lines it does not know, and ends an unterminated last line before adding', async () => {
    file('.psync/id', `# kept\n${OTHER}`);
    const helper = await startHelper();
    expect(await helper.request({ kind: 'mark', pairId: ID })).toMatchObject({ ok: true });
    expect(marker()).toBe(`# kept\n${OTHER}\n${ID}\n`);
  });

  test('refuses a .psync/id that is a symlink, and writes nothing outside', async () => {
    const outside = join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'victim'), 'keep me\n');
    dir('.psync');
    symlinkSync(join(outside, 'victim'), at('.psync/id'));
    const helper = await startHelper();
    expect(await helper.request({ kind: 'mark', pairId: ID })).toMatchObject({ ok: false, code: 'unsafe' });
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('keep me\n');
    expect(readdirSync(outside)).toEqual(['victim']);
    expect(lstatSync(at('.psync/id')).isSymbolicLink()).toBe(true);
    expect(readdirSync(at('.psync'))).toEqual(['id']);
  });

  test('refuses a .psync that is a symlink, and writes nothing outside', async () => {
    const outside = join(base, 'outside');
    mkdirSync(outside);
    symlinkSync(outside, at('.psync'));
    const helper = await startHelper();
    expect(await helper.request({ kind: 'mark', pairId: ID })).toMatchObject({ ok: false, code: 'unsafe' });
    expect(readdirSync(outside)).toEqual([]);
  });

  test('refuses a pair id that is not 8 to 64 lower-case hex digits, and writes nothing', async () => {
    const helper = await startHelper();
    for (const [n, bad] of ['ABCDEF12', 'abc', 'a'.repeat(65), '../../x', `${ID}\n${OTHER}`].entries()) {
      helper.send('MARK', [String(100 + n), bad]);
      expect(decodeHelperReply(await helper.next(), 'mark'), bad).toMatchObject({ id: 100 + n, ok: false, code: 'unsafe' });
    }
    expect(exists('.psync')).toBe(false);
  });

  test('a dry run writes nothing and answers done', async () => {
    const helper = await startHelper({ dryRun: true });
    expect(await helper.request({ kind: 'mark', pairId: ID })).toEqual({ id: 1, ok: true, stat: NO_STAT });
    expect(exists('.psync')).toBe(false);
  });
});
