/**
 * Issue 8, "Nothing escapes the root": the attacks that were reproduced
 * against psync, run the way an attacker runs them (user nobody, writing
 * into `w/` of a tree, or a right side that forges frames) against psync
 * running as root, locally and over the tests' sshd. Each test plants
 * canaries outside both roots and, once psync has stopped, checks that none
 * was read into a tree, changed, moved or removed, and that nothing new
 * appeared beside them (support/attacker.ts). The races (4 and 5) are in
 * races.test.ts.
 */

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { describe, expect, test } from 'vitest';
import { FrameReceiver, FrameWriter, type Frame } from '../../src/core/frame.js';
import { decodeHelperReply, encodeAction, encodeHelperRequest, type HelperReply, type HelperRequest } from '../../src/core/protocol.js';
import type { Stat } from '../../src/core/types.js';
import { attack, AttackPair, attacker, Canaries, MODES, nobodyIds, PsyncExited, walkTree } from '../support/attacker.js';
import { CLI, waitFor } from '../support/psync.js';

/**
 * The attacker may write at the roots themselves (to plant `.psync`): both
 * are made 0777, as the merge makes the right root's mode the left's.
 */
const openRoots = async (pair: AttackPair): Promise<void> => {
  for (const root of [pair.left, pair.right]) await chmod(root, 0o777);
};

const WHENS = ['before psync starts', 'while psync runs'] as const;

/**
 * Start psync with R/.psync a link to `target`, made by the attacker before
 * psync starts, or while it runs (the real .psync is moved aside first:
 * renaming an entry takes only write access to its parent).
 */
async function linkPsyncDir(pair: AttackPair, target: string, when: (typeof WHENS)[number]): Promise<void> {
  await openRoots(pair);
  const link = join(pair.right, '.psync');
  if (when === 'while psync runs') {
    await pair.start();
    await attacker.rename(link, join(pair.right, 'psync-moved-aside'));
    await attacker.symlink(target, link);
    return;
  }
  await attacker.symlink(target, link);
  if (!(await pair.startOrRefuse())) throw new PsyncExited('psync refused to start');
}

/** Run an attack's steps; psync refusing to start, or stopping, on what the attacker did is safe too. */
async function unlessPsyncStops(steps: () => Promise<void>): Promise<void> {
  try {
    await steps();
  } catch (error) {
    if (!(error instanceof PsyncExited)) throw error;
  }
}

const isLink = async (path: string): Promise<boolean> => (await lstat(path).catch(() => undefined))?.isSymbolicLink() === true;
const contentOf = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');

/**
 * A transfer from the left that takes seconds (psync runs with a bandwidth
 * limit): reports from the right queue up behind it and then go out
 * together, in one rsync run.
 */
async function startBusyTransfer(pair: AttackPair): Promise<void> {
  await writeFile(join(pair.left, 'big.bin'), randomBytes(8 << 20));
  await pair.until('the big transfer to start', async () => (await readdir(pair.right)).some((name) => name.startsWith('.big.bin.')));
}

const SLOW_LINK = '-x=--bwlimit=4000';

describe.each(MODES)('%s', (mode) => {
  test('1: a link to a root-only dir, replaced by a directory while a transfer is busy, brings no file from there into a tree', () =>
    attack(mode, ['secret.txt'], async (pair, canaries) => {
      await pair.start([SLOW_LINK]);
      await attacker.symlink(canaries.dir, pair.r('lnk'));
      await pair.until('the link on the left', () => isLink(pair.l('lnk')));
      await startBusyTransfer(pair);
      // rsync replaces the left's link by the directory and keeps the link as the "replaced version";
      // the conflict check must not look up lnk/secret.txt through it.
      await attacker.remove(pair.r('lnk'));
      await attacker.mkdir(pair.r('lnk'));
      await attacker.write(pair.r('lnk/secret.txt'), 'bait');
      await pair.until('the bait on the left', async () => (await contentOf(pair.l('lnk/secret.txt'))) === 'bait', 40_000);
      await pair.settle();
    }));

  test.each(WHENS)('1: R/.psync made (%s) a link to an attacker dir whose run directories link to a root-only dir: nothing there is taken', (when) =>
    attack(mode, ['w/secret.txt'], async (pair, canaries) => {
      const evil = pair.r('evil');
      await attacker.mkdir(evil);
      await attacker.mkdir(join(evil, 'replaced'));
      await unlessPsyncStops(async () => {
        await linkPsyncDir(pair, evil, when);
        // A transfer's replaced versions live in .psync/replaced/<brain pid>-<session>-<n>: the pid is no secret (ps).
        const pid = pair.psync!.child.pid!;
        for (let n = 1; n <= 30; n++) await attacker.symlink(canaries.dir, join(evil, 'replaced', `${pid}-1-${n}`));
        // A new file from the left: its conflict check looks for a replaced version at .psync/replaced/<run>/w/secret.txt.
        await writeFile(pair.l('secret.txt'), 'a new file on the left');
        await pair.until('the new file on the right', async () => (await contentOf(pair.r('secret.txt'))) === 'a new file on the left');
        await pair.settle();
      });
    }));

  test.each(WHENS)('3: R/.psync made (%s) a link to a root-only dir: psync takes, writes and removes nothing there', (when) =>
    attack(mode, ['lock', 'replaced/keep.txt'], async (pair, canaries) => {
      await unlessPsyncStops(async () => {
        await linkPsyncDir(pair, canaries.dir, when);
        // A transfer that replaces a file on the right keeps the old version under .psync/replaced for its conflict check.
        await attacker.write(pair.r('f'), 'v1');
        await pair.until('v1 on the left', async () => (await contentOf(pair.l('f'))) === 'v1');
        // Whether it can be carried out or not (rsync >= 3.4 refuses to write through the attacker's link), it must not escape.
        await writeFile(pair.l('f'), 'v2 from the left');
        await pair.settle();
      });
    }));

  test('3: psync -s never copies a .psync link to the other side', () =>
    attack(mode, ['lock'], async (pair, canaries) => {
      await openRoots(pair);
      await attacker.symlink(canaries.dir, join(pair.right, '.psync'));
      const merge = await pair.syncOnly();
      expect(await isLink(join(pair.left, '.psync')), `the merge made L/.psync a link (exit ${String(merge.exitCode)})\n${merge.output}`).toBe(false);
    }));

  test('7: setuid and setgid bits the attacker sets reach no file on the other side (merge, then realtime)', () =>
    attack(mode, ['secret.txt'], async (pair) => {
      await plantSpecialFiles(pair);
      const merge = await pair.syncOnly();
      expect(merge.exitCode, merge.output).toBe(0);
      await expectNoSpecialFilesMade(pair, 'after the merge');
      await pair.start();
      await attacker.write(pair.r('suid-rt'), 'x');
      await attacker.chmod('4755', pair.r('suid-rt'));
      await attacker.chmod('6755', pair.r('plain'));
      await pair.until('suid-rt on the left', () => lstat(pair.l('suid-rt')));
      await pair.settle();
      await expectNoSpecialFilesMade(pair, 'in realtime');
    }));

  test('7: with --preserve-suid the bits are kept (merge, then realtime)', () =>
    attack(mode, ['secret.txt'], async (pair) => {
      await plantSpecialFiles(pair);
      const merge = await pair.syncOnly(['--preserve-suid']);
      expect(merge.exitCode, merge.output).toBe(0);
      expect(await permissions(pair.l('suid-new'))).toBe(0o4755);
      expect(await permissions(pair.l('sgid-new'))).toBe(0o2755);
      await pair.start(['--preserve-suid']);
      await attacker.write(pair.r('suid-rt'), 'x');
      await attacker.chmod('4755', pair.r('suid-rt'));
      await pair.until('suid-rt on the left, setuid', async () => (await permissions(pair.l('suid-rt'))) === 0o4755);
    }));
});

/** mtime of the twins: any fixed second. */
const TWIN_MTIME_S = 1_700_000_000;

/**
 * On the right, as nobody: a new setuid file, a new setgid file, a plain
 * file, and a setuid twin of a root-owned file on the left (same size, same
 * mtime: the merge's quick check sees no difference in content).
 */
async function plantSpecialFiles(pair: AttackPair): Promise<void> {
  for (const [name, mode] of [['suid-new', '4755'], ['sgid-new', '2755'], ['plain', '0644'], ['twin', '4755']] as const) {
    await attacker.write(pair.r(name), name === 'twin' ? 'twin' : `#!/bin/sh\necho ${name}\n`);
    await attacker.chmod(mode, pair.r(name));
  }
  await attacker.touch(pair.r('twin'), TWIN_MTIME_S);
  await writeFile(pair.l('twin'), 'twin', { mode: 0o755 });
  await utimes(pair.l('twin'), TWIN_MTIME_S, TWIN_MTIME_S);
}

const permissions = async (path: string): Promise<number> => (await lstat(path)).mode & 0o7777;

/** Every non-directory below `root` with a setuid or setgid bit, with its mode and owner. */
async function specialFiles(root: string): Promise<Array<{ path: string; mode: number; uid: number }>> {
  const out: Array<{ path: string; mode: number; uid: number }> = [];
  await walkTree(root, (path, info) => {
    if (!info.isDirectory() && (info.mode & 0o6000) !== 0) out.push({ path: relative(root, path), mode: info.mode & 0o7777, uid: info.uid });
  });
  return out;
}

/**
 * The attacker made setuid files on the right only, their own: the
 * left must have none, and nothing anywhere may be setuid or setgid and
 * owned by root.
 */
async function expectNoSpecialFilesMade(pair: AttackPair, when: string): Promise<void> {
  const { uid } = await nobodyIds();
  expect(await specialFiles(pair.left), `setuid/setgid files on the left ${when}\n${pair.log().slice(-4000)}`).toEqual([]);
  const right = await specialFiles(pair.right);
  expect(right.filter((f) => f.uid !== uid), `setuid/setgid files on the right not owned by the attacker ${when}`).toEqual([]);
}

describe('an evil right side (remote)', () => {
  test('2: a refused DELETE or MOVE through a link to a root-only dir is never answered by copying from there', () =>
    attack('remote', ['secret.txt'], async (pair, canaries) => {
      await pair.start(await pair.evilRightSide());
      // The attacker is the right host's root here: its link arrives root-owned, one rsync >= 3.4 trusts and follows.
      await symlink(canaries.dir, pair.r('lnk2'));
      await pair.until('the link on the left', () => isLink(pair.l('lnk2')));
      // The helper refuses both (a symlinked parent): the brain must not then rsync w/lnk2/secret.txt from the left.
      const secret = await statOf(canaries.path('secret.txt'));
      await pair.forge([
        encodeAction({ kind: 'delete', path: 'w/lnk2/secret.txt', stat: secret }),
        encodeAction({ kind: 'move', from: 'w/lnk2/secret.txt', to: 'w/stolen.txt', stat: secret }),
      ]);
    }));

  test('6: forged reports naming .psync or a scratch name are refused, counted, and change nothing', () =>
    attack('remote', ['secret.txt'], async (pair) => {
      const psync = await pair.start(await pair.evilRightSide());
      await attacker.write(pair.r('victim'), 'keep me');
      await pair.until('victim on the left', async () => (await contentOf(pair.l('victim'))) === 'keep me');
      const locks = await Promise.all([pair.left, pair.right].map((root) => readFile(join(root, '.psync', 'lock'), 'utf8')));
      const rejectedBefore = (await psync.status())!.counters.rejected.right;
      const file: Stat = { type: 'file', ino: 7, size: 8, mtimeMs: 1_600_000_000_000, mode: 0o600 };
      const forged = [
        encodeAction({ kind: 'rsync', path: '.psync/lock', stat: file }),
        encodeAction({ kind: 'rsync', path: '.psync', stat: { ...file, type: 'symlink' } }),
        encodeAction({ kind: 'rsync', path: 'w/x.1-1-abcdef.psync.ignore', stat: file }),
        encodeAction({ kind: 'move', from: 'w/victim', to: '.psync/victim', stat: file }),
        encodeAction({ kind: 'move', from: '.psync/lock', to: 'w/stolen', stat: file }),
        encodeAction({ kind: 'delete', path: '.psync/lock', stat: file }),
        encodeAction({ kind: 'delete', path: '.psync', stat: { ...file, type: 'dir' } }),
        encodeAction({ kind: 'delete', path: '.psync', stat: { ...file, type: 'symlink' } }),
      ];
      await pair.forge(forged);
      await expect
        .poll(async () => (await psync.status())!.counters.rejected.right - rejectedBefore, { timeout: 3_000, message: `forged reports refused\n${pair.log().slice(-6000)}` })
        .toBe(forged.length);
      expect(await Promise.all([pair.left, pair.right].map((root) => readFile(join(root, '.psync', 'lock'), 'utf8')))).toEqual(locks);
      expect(await contentOf(pair.l('victim'))).toBe('keep me');
      for (const path of ['w/stolen', '.psync/victim']) {
        for (const root of [pair.left, pair.right]) expect(existsSync(join(root, path)), `${root}/${path}`).toBe(false);
      }
    }));
});

const statOf = async (path: string): Promise<Stat> => {
  const info = await lstat(path);
  return { type: 'file', ino: info.ino, size: info.size, mtimeMs: info.mtimeMs, mode: info.mode & 0o7777 };
};

/** `psync _helper` in a child process, spoken to in frames as the brain would. */
class HelperProcess {
  private readonly writer = new FrameWriter();
  private readonly receiver = new FrameReceiver();
  private readonly frames: Frame[] = [];
  private nextId = 1;
  private readonly child = execa(process.execPath, [CLI, '_helper'], { reject: false, buffer: false, stdin: 'pipe', stderr: 'ignore' });

  constructor(root: string) {
    this.child.stdout.on('data', (chunk: Buffer) => {
      for (const received of this.receiver.push(chunk.toString('latin1'))) if (received.ok) this.frames.push(received.frame);
    });
    this.send('CONFIG', [JSON.stringify({ root, force: true, dryRun: false, relay: false })]);
  }

  send(verb: string, args: readonly string[]): void {
    this.child.stdin.write(this.writer.encode(verb, args));
  }

  next(): Promise<Frame> {
    return waitFor('a frame from the helper', () => this.frames.shift(), 10_000);
  }

  async request(request: DistributiveOmit<HelperRequest, 'id'>): Promise<HelperReply> {
    const { verb, args } = encodeHelperRequest({ ...request, id: this.nextId++ } as HelperRequest);
    this.send(verb, args);
    return decodeHelperReply(await this.next());
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    await this.child;
  }
}
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

test('6: the helper refuses every move and delete of .psync or below it, also when .psync is a link out of the tree', async () => {
  const canaries = await Canaries.plant(['lock']);
  const root = await mkdtemp(join(tmpdir(), 'psync-attack-helper-'));
  try {
    await symlink(canaries.dir, join(root, '.psync'));
    await writeFile(join(root, 'a'), 'a');
    const helper = new HelperProcess(root);
    try {
      const hello = await helper.next();
      // Refusing to serve a tree whose .psync is a link is safe too.
      if (hello.verb === 'HELLO') await expectUnsafe(helper, root, await statOf(canaries.path('lock')));
      else expect(hello.verb).toBe('ERROR');
    } finally {
      await helper.close();
    }
    await canaries.expectSafe([root], () => '');
    expect(await isLink(join(root, '.psync'))).toBe(true);
  } finally {
    await rm(root, { recursive: true, force: true });
    await canaries.remove();
  }
});

async function expectUnsafe(helper: HelperProcess, root: string, lock: Stat): Promise<void> {
  const link: Stat = { ...lock, type: 'symlink' };
  const a = await statOf(join(root, 'a'));
  const requests: Array<DistributiveOmit<HelperRequest, 'id'>> = [
    { kind: 'delete', path: '.psync/lock', expect: lock },
    { kind: 'move', from: '.psync/lock', to: 'stolen', expect: lock },
    { kind: 'delete', path: '.psync', expect: link },
    { kind: 'move', from: '.psync', to: 'moved', expect: link },
    { kind: 'move', from: 'a', to: '.psync', expect: a },
    { kind: 'move', from: 'a', to: '.psync/planted', expect: a },
  ];
  for (const request of requests) {
    expect(await helper.request(request), JSON.stringify(request)).toMatchObject({ ok: false, code: 'unsafe' });
  }
}

test('8: a link planted at the status file’s predictable temp name never makes psync write through it', () =>
  attack('local', ['victim.conf'], async (pair, canaries) => {
    // The status file sits in a directory the attacker can write to.
    const statusDir = join(pair.work, 'status');
    const { uid, gid } = await nobodyIds();
    await mkdir(statusDir);
    await chown(statusDir, uid, gid);
    const statusFile = join(statusDir, 'status.json');
    const psync = execa(process.execPath, [CLI, '--status-file', statusFile, ...pair.args()], { reject: false, stdin: 'ignore' });
    try {
      // The old temp name was `<file>.<pid>.tmp`, and the pid is no secret (ps).
      await attacker.symlink(canaries.path('victim.conf'), `${statusFile}.${String(psync.pid)}.tmp`);
      expect(existsSync(statusFile), 'planted too late: psync had written its status already').toBe(false);
      await waitFor('psync to watch', async () => (JSON.parse(await readFile(statusFile, 'utf8')) as { state: string }).state === 'watching', 30_000);
    } finally {
      psync.kill('SIGTERM');
      await psync;
    }
    expect((await lstat(statusFile)).isFile(), 'the status file is a file').toBe(true);
    expect((JSON.parse(await readFile(statusFile, 'utf8')) as { state: string }).state).toBe('stopped');
  }));
