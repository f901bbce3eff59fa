/**
 * Faults, end to end: a link or a side lost after the pair was up is
 * reconnected (status `reconnecting`, then `watching`), and the new
 * session's start-up reconcile carries over what changed on both sides
 * meanwhile; psync gives up only after --reconnect-timeout (exit 3) or on a
 * refusal a person must act on; a stalled side is restarted; psync killed
 * with SIGKILL at any moment loses nothing at the next start; SIGHUP stops
 * it cleanly.
 *
 * Faults are made for real: the per-connection processes of the fixture's
 * sshd are killed with SIGKILL (both TCP connections, the ssh2 one and the
 * rsync ControlMaster's, drop at once, or the ControlMaster's alone), the
 * listening daemon is stopped with SIGSTOP so that connects hang until it
 * is continued, a local side or psync itself is killed or stopped. Every
 * wait polls with a deadline; the only timed waits are the outages
 * themselves. Nothing here changes one path on both sides, so a conflict
 * copy is a failure too.
 */

import { randomBytes, createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { PsyncProcess, snapshotTree, startRemotePair, waitFor, waitForSameTrees, type RemotePair, type Status } from '../support/psync.js';
import { isAlive, processesUnder, signalQuietly, tcpPortsOf } from '../support/procs.js';
import { writeCorrectKnownHosts, writeWrongKnownHosts, revokeUserKey } from '../support/sshd.js';
import { tempDir } from '../support/tmp.js';

const EXIT = { ok: 0, connection: 3 } as const;
/** A transfer this big under --bwlimit lasts seconds: long enough to be cut off in its middle. */
const BIG_FILE_BYTES = 64 * 1024 * 1024;
const BWLIMIT = '--bwlimit=16m';
const BURST_FILES = 300;
/** The brain gives up on a silent side after 15 s (core/protocol.ts HEARTBEAT_TIMEOUT_MS). */
const HEARTBEAT_TIMEOUT_MS = 15_000;
/** How long the sshd refuses to answer in the long-outage test. */
const LONG_OUTAGE_MS = 60_000;

const exists = (path: string): Promise<boolean> => lstat(path).then(
  () => true,
  () => false,
);
const read = (path: string): Promise<string> => readFile(path, 'utf8');
const sha1 = (data: Buffer): string => createHash('sha1').update(data).digest('hex');
const inode = async (path: string): Promise<number> => (await lstat(path)).ino;

/** psync's log, for failure messages. */
const tail = (psync: PsyncProcess): string => `\n--- psync log ---\n${psync.log().slice(-6000)}`;

async function statusOf(psync: PsyncProcess): Promise<Status> {
  const status = await psync.status();
  if (status === undefined) throw new Error('no status file yet');
  return status;
}

/** `wait`, failed at once (with psync's log) if psync exits first. */
function whileRunning<T>(psync: PsyncProcess, wait: Promise<T>): Promise<T> {
  const exited = psync.child.then((result) => {
    throw new Error(`psync exited (${String(result.exitCode ?? result.signal)}) while the test waited${tail(psync)}`);
  });
  exited.catch(() => {}); // only raced
  return Promise.race([wait, exited]);
}

/** Wait until the status file shows `state` (and `extra` holds), and return it. */
function waitForState(psync: PsyncProcess, state: string, deadlineMs = 30_000, extra: (s: Status) => boolean = () => true): Promise<Status> {
  const waiting = waitFor(
    `status "${state}"`,
    async () => {
      const status = await psync.status();
      return status?.state === state && extra(status) ? status : undefined;
    },
    deadlineMs,
  ).catch((error: Error) => {
    throw new Error(`${error.message}${tail(psync)}`);
  });
  return whileRunning(psync, waiting);
}

const count = (text: string, pattern: RegExp): number => text.match(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))?.length ?? 0;

/** psync's log says it lost the pair, then that it reconnected, `times` times in all so far. */
function expectReconnectedLog(psync: PsyncProcess, times: number): void {
  const log = psync.log();
  expect(count(log, /lost the pair: [^\n]*; reconnecting/), log).toBe(times);
  expect(count(log, /reconnected after \d+(\.\d+)? s/), log).toBe(times);
}

/** rsync's temp files (`.name.XXXXXX`) and psync's rename-dance scratch names under `root/under`. */
async function tempNames(root: string, under = ''): Promise<string[]> {
  const found: string[] = [];
  const visit = async (dir: string, rel: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      const path = rel === '' ? name : `${rel}/${name}`;
      if (path === '.psync') continue;
      if (/^\..+\.[A-Za-z0-9]{6}$/.test(name) || name.includes('.psync.ignore')) found.push(`${root}: ${path}`);
      if ((await lstat(join(dir, name))).isDirectory()) await visit(join(dir, name), path);
    }
  };
  await visit(join(root, under), under);
  return found;
}

/** The versions realtime transfers replaced and nobody judged since: `.psync/replaced/<run>`. */
async function replacedLeftovers(root: string): Promise<string[]> {
  return (await readdir(join(root, '.psync', 'replaced')).catch(() => [])).map((run) => join(root, '.psync', 'replaced', run));
}

/** Conflict copies under `root/under`. */
async function conflictCopies(root: string, under = ''): Promise<string[]> {
  return [...(await snapshotTree(join(root, under))).keys()].filter((path) => path.includes('.psync-conflict-')).map((path) => `${root}: ${join(under, path)}`);
}

/**
 * Under `under` in both trees: no rsync temp file or scratch name is left,
 * and no conflict copy was made (none of these tests changes one path on
 * both sides, so any is spurious).
 */
async function expectClean(psync: PsyncProcess, left: string, right: string, under: string): Promise<void> {
  expect([...(await tempNames(left, under)), ...(await tempNames(right, under))], tail(psync)).toEqual([]);
  const conflicts = [...(await conflictCopies(left, under)), ...(await conflictCopies(right, under))];
  // The tail alone is what came after the reconnect: the lines that made the copies, and what the first one's path went through, say why.
  const first = conflicts[0]?.split(': ')[1]?.replace(/\.psync-conflict-.*$/, '');
  const why = psync
    .log()
    .split('\n')
    .filter((line) => /conflict|lost the pair|reconnect/.test(line) || (first !== undefined && line.includes(`"${first}`)))
    .slice(-60)
    .join('\n');
  expect.soft(conflicts, `spurious conflict copies\n--- the lines about them ---\n${why}${tail(psync)}`).toEqual([]);
}

/**
 * On each side, under `dir`: a file to edit, one to delete, one to rename
 * and a directory to rename, made on the left and synced before the fault.
 * `change` then makes a create, an edit, a delete, a rename of the file
 * and one of the directory on both sides (the left's under `L-`, the
 * right's under `R-`); `verify` checks that both trees hold the result,
 * renames carried over as renames (the inode on the other side kept).
 */
class OutageChanges {
  private readonly inodes = new Map<string, number>();

  constructor(
    private readonly left: string,
    private readonly right: string,
    readonly dir: string,
  ) {}

  private p(root: string, ...parts: string[]): string {
    return join(root, this.dir, ...parts);
  }

  /** Make the entries on the left and wait until both trees hold them and psync recorded them. */
  async seed(psync: PsyncProcess): Promise<void> {
    await mkdir(this.p(this.left), { recursive: true });
    for (const who of ['L', 'R']) {
      await writeFile(this.p(this.left, `${who}-edit.txt`), `${who} edit: before\n`);
      await writeFile(this.p(this.left, `${who}-delete.txt`), `${who} delete\n`);
      await writeFile(this.p(this.left, `${who}-rename.txt`), `${who} rename\n`);
      await mkdir(this.p(this.left, `${who}-dir`, 'sub'), { recursive: true });
      await writeFile(this.p(this.left, `${who}-dir`, 'sub', 'inside.txt'), `${who} inside\n`);
    }
    await recorded(psync, this.left, this.right);
  }

  /** The changes, on both sides: call it while the link is down. */
  async change(): Promise<void> {
    for (const [who, root, other] of [
      ['L', this.left, this.right],
      ['R', this.right, this.left],
    ] as const) {
      // The inode each renamed entry has on the other side: a rename carried over keeps it.
      this.inodes.set(`${who}-renamed.txt`, await inode(this.p(other, `${who}-rename.txt`)));
      this.inodes.set(`${who}-dir-renamed`, await inode(this.p(other, `${who}-dir`)));
      await writeFile(this.p(root, `${who}-new.txt`), `${who} new\n`);
      await writeFile(this.p(root, `${who}-edit.txt`), `${who} edit: after the outage\n`);
      await rm(this.p(root, `${who}-delete.txt`));
      await rename(this.p(root, `${who}-rename.txt`), this.p(root, `${who}-renamed.txt`));
      await rename(this.p(root, `${who}-dir`), this.p(root, `${who}-dir-renamed`));
    }
  }

  /** Both trees hold every change (call once they are identical); a failure shows psync's log. */
  async verify(psync: PsyncProcess): Promise<void> {
    await this.check().catch((error: Error) => {
      throw new Error(`${error.message}${tail(psync)}`, { cause: error });
    });
  }

  private async check(): Promise<void> {
    for (const root of [this.left, this.right]) {
      for (const who of ['L', 'R']) {
        expect(await read(this.p(root, `${who}-new.txt`))).toBe(`${who} new\n`);
        expect(await read(this.p(root, `${who}-edit.txt`))).toBe(`${who} edit: after the outage\n`);
        expect(await exists(this.p(root, `${who}-delete.txt`)), `${who}-delete.txt came back in ${root}`).toBe(false);
        expect(await exists(this.p(root, `${who}-rename.txt`))).toBe(false);
        expect(await read(this.p(root, `${who}-renamed.txt`))).toBe(`${who} rename\n`);
        expect(await exists(this.p(root, `${who}-dir`))).toBe(false);
        expect(await read(this.p(root, `${who}-dir-renamed`, 'sub', 'inside.txt'))).toBe(`${who} inside\n`);
      }
    }
    for (const [who, other] of [
      ['L', this.right],
      ['R', this.left],
    ] as const) {
      expect(await inode(this.p(other, `${who}-renamed.txt`)), `${who}-rename.txt was copied, not renamed, on the other side`).toBe(
        this.inodes.get(`${who}-renamed.txt`),
      );
      expect(await inode(this.p(other, `${who}-dir-renamed`)), `${who}-dir was copied, not renamed, on the other side`).toBe(
        this.inodes.get(`${who}-dir-renamed`),
      );
    }
  }
}

/** Wait for identical trees, printing psync's log when they do not come. */
async function converge(psync: PsyncProcess, left: string, right: string, deadlineMs = 60_000): Promise<void> {
  const waiting = waitForSameTrees(left, right, deadlineMs).catch((error: Error) => {
    throw new Error(`${error.message}${tail(psync)}`);
  });
  await whileRunning(psync, waiting);
}

let barriers = 0;

/**
 * Wait until both trees are identical and psync recorded in its archive
 * what it sent: identical trees alone do not say so (a transfer is
 * recorded after rsync's end and the target's check of what it replaced),
 * and a link cut in between leaves entries the next start-up reconcile
 * takes for new on both sides. Batches run one at a time, in order, and
 * the applied counter moves once a batch is recorded: so a barrier sent the
 * other way, counted, comes after everything before it was recorded.
 */
async function recorded(psync: PsyncProcess, left: string, right: string): Promise<void> {
  await converge(psync, left, right);
  const before = (await statusOf(psync)).counters.applied.rightToLeft;
  const name = `barrier-${++barriers}.txt`;
  await writeFile(join(right, name), 'barrier\n');
  const barrier = waitFor('the barrier to be recorded', async () => (await exists(join(left, name))) && (await statusOf(psync)).counters.applied.rightToLeft > before);
  await whileRunning(psync, barrier);
}

/** Write `BIG_FILE_BYTES` of random bytes to `path`; returns their sha1. */
async function writeBigFile(path: string): Promise<string> {
  const data = randomBytes(BIG_FILE_BYTES);
  await writeFile(path, data);
  return sha1(data);
}

/**
 * Wait until rsync is copying `name` into `targetDir`: an rsync process runs
 * below psync and rsync's temp file `.name.XXXXXX` has some of the bytes,
 * but not all of them.
 */
async function waitForTransferOf(psync: PsyncProcess, targetDir: string, name: string): Promise<void> {
  const waiting = waitFor(
    `rsync to be writing ${name} in ${targetDir}`,
    async () => {
      const rsyncs = (await processesUnder(psync.child.pid!)).filter((p) => p.comm === 'rsync');
      if (rsyncs.length === 0) return false;
      for (const entry of await readdir(targetDir)) {
        if (!entry.startsWith(`.${name}.`)) continue;
        const size = (await stat(join(targetDir, entry)).catch(() => undefined))?.size ?? 0;
        if (size > 0 && size < BIG_FILE_BYTES) return true;
      }
      return false;
    },
    30_000,
  );
  await whileRunning(psync, waiting);
}

describe('a remote pair whose sshd connections are killed', () => {
  let pair: RemotePair;

  beforeEach(async () => {
    pair = await startRemotePair(['-d', '2', `--extra=${BWLIMIT}`]);
  });

  afterEach(async () => {
    expect(await pair.stop(), tail(pair.psync)).toBe(EXIT.ok);
  });

  /**
   * Kill every per-connection sshd process; with `hold`, first stop the
   * listening daemon so that psync's reconnect hangs until `during` is done.
   * Checks the status shows the outage, runs `during`, lets sshd answer
   * again and waits for the status to go back to watching.
   */
  async function dropLink(during: () => Promise<void>, hold: boolean, someLeft = true): Promise<void> {
    const { sshd, psync } = pair;
    if (hold) sshd.freeze();
    try {
      const droppedAt = Date.now();
      const dropped = await sshd.dropConnections();
      if (someLeft) expect(dropped, 'no sshd connection to kill').not.toHaveLength(0);
      await waitForState(psync, 'reconnecting');
      // Attempt 0 while the failed session shuts down, then one per try.
      const status = await waitFor('a reconnect attempt in the status', async () => {
        const now = await psync.status();
        return now?.state === 'reconnecting' && (now.reconnect?.attempt ?? 0) >= 1 ? now : undefined;
      });
      expect(status.reconnect, JSON.stringify(status)).toBeDefined();
      expect(Date.parse(status.reconnect!.since)).toBeGreaterThanOrEqual(droppedAt - 1_000);
      expect(Date.parse(status.reconnect!.since)).toBeLessThanOrEqual(Date.now());
      expect(status.reconnect!.lastError).toMatch(/\w/);
      await during();
    } finally {
      if (hold) sshd.thaw();
    }
    const watching = await waitForState(psync, 'watching', 60_000);
    expect(watching.reconnect).toBeUndefined();
    expect(psync.exited, tail(psync)).toBeUndefined();
    expectReconnectedLog(psync, 1);
  }

  test('while idle: psync reconnects and carries over what changed on both sides meanwhile', async () => {
    const { left, right, psync } = pair;
    const changes = new OutageChanges(left, right, 'idle');
    await changes.seed(psync);
    await dropLink(() => changes.change(), true);
    await converge(psync, left, right);
    await changes.verify(psync);
    await expectClean(psync, left, right, changes.dir);
  });

  test('during a burst of 300 writes: every file arrives, none is lost or left half-written', async () => {
    const { left, right, psync } = pair;
    const changes = new OutageChanges(left, right, 'burst');
    await changes.seed(psync);
    const dir = join(left, 'burst', 'many');
    await mkdir(dir);
    let dropped: Promise<void> | undefined;
    for (let i = 0; i < BURST_FILES; i++) {
      await writeFile(join(dir, `f${i}.txt`), `burst file ${i}\n`.repeat(1 + (i % 50)));
      if (i === BURST_FILES / 3) {
        // psync is busy with the burst: its first files are arriving.
        await waitFor('the burst to start arriving', () => exists(join(right, 'burst', 'many', 'f0.txt')));
        dropped = dropLink(() => changes.change(), false);
        dropped.catch(() => {}); // awaited below
      }
    }
    // Edits of files the burst made, while psync reconnects.
    for (let i = 0; i < BURST_FILES; i += 10) await writeFile(join(dir, `f${i}.txt`), `burst file ${i}, edited\n`);
    await dropped;
    await converge(psync, left, right);
    await changes.verify(psync);
    for (let i = 0; i < BURST_FILES; i++) {
      const expected = i % 10 === 0 ? `burst file ${i}, edited\n` : `burst file ${i}\n`.repeat(1 + (i % 50));
      expect(await read(join(right, 'burst', 'many', `f${i}.txt`))).toBe(expected);
    }
    await expectClean(psync, left, right, changes.dir);
  });

  test(`during the transfer of a ${BIG_FILE_BYTES >> 20} MB file: it arrives whole, no temp file is left`, async () => {
    const { left, right, psync } = pair;
    const changes = new OutageChanges(left, right, 'transfer');
    await changes.seed(psync);
    const hash = await writeBigFile(join(left, 'transfer', 'big.bin'));
    await waitForTransferOf(psync, join(right, 'transfer'), 'big.bin');
    await dropLink(() => changes.change(), true);
    await converge(psync, left, right);
    await changes.verify(psync);
    expect(sha1(await readFile(join(right, 'transfer', 'big.bin')))).toBe(hash);
    await expectClean(psync, left, right, changes.dir);
  }, 120_000);

  test('the rsync connection drops in a transfer, then the sides\' link while psync deals with it', async () => {
    const { left, right, psync, sshd } = pair;
    const changes = new OutageChanges(left, right, 'split');
    await changes.seed(psync);
    const hash = await writeBigFile(join(left, 'split', 'big.bin'));
    await waitForTransferOf(psync, join(right, 'split'), 'big.bin');
    // The ControlMaster (rsync's connection) is psync's `ssh -M` child; its sshd session alone is killed.
    const master = (await processesUnder(psync.child.pid!)).find((p) => p.comm === 'ssh' && p.argv.includes('-M'));
    expect(master, 'no ssh -M below psync').toBeDefined();
    const [connection] = await tcpPortsOf(master!.pid);
    expect(await sshd.dropConnections(connection!.local)).not.toHaveLength(0);
    const rsyncFailed = waitFor('rsync to fail', () => /rsync failed with exit code|lost the SSH connection|lost the pair/.test(psync.log()));
    await whileRunning(psync, rsyncFailed);
    // What is left of the link (the sides' connection) drops while psync retries or reconnects.
    await dropLink(() => changes.change(), true, false);
    await converge(psync, left, right);
    await changes.verify(psync);
    expect(sha1(await readFile(join(right, 'split', 'big.bin')))).toBe(hash);
    await expectClean(psync, left, right, changes.dir);
  }, 120_000);
});

describe('a remote pair whose sshd stops answering for a minute', () => {
  test('psync keeps trying with backoff, shows it in the status, and catches up once sshd answers again', async () => {
    const pair = await startRemotePair(['-d', '2']);
    const { left, right, psync, sshd } = pair;
    try {
      const changes = new OutageChanges(left, right, 'long');
      await changes.seed(psync);
      sshd.freeze();
      const frozenAt = Date.now();
      try {
        expect(await sshd.dropConnections()).not.toHaveLength(0);
        await waitForState(psync, 'reconnecting');
        await changes.change();
        // Each attempt connects (the kernel queues it) and then waits for a banner that never comes.
        const retried = await waitForState(psync, 'reconnecting', LONG_OUTAGE_MS - 10_000, (s) => (s.reconnect?.attempt ?? 0) >= 2);
        expect(retried.reconnect!.lastError, JSON.stringify(retried)).toMatch(/timed out|connect/i);
        expect(Date.parse(retried.reconnect!.since)).toBeGreaterThanOrEqual(frozenAt - 1_000);
        expect(retried.lastError).toBe(retried.reconnect!.lastError);
        // The outage itself: a deliberate wait, not a synchronisation.
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, frozenAt + LONG_OUTAGE_MS - Date.now())));
        expect(psync.exited, tail(psync)).toBeUndefined();
        expect((await statusOf(psync)).state).toBe('reconnecting');
      } finally {
        sshd.thaw();
      }
      // The next attempt comes within the 30 s backoff cap (plus jitter).
      const watching = await waitForState(psync, 'watching', 45_000);
      expect(watching.reconnect).toBeUndefined();
      expectReconnectedLog(psync, 1);
      expect(psync.log()).toMatch(/reconnected after (5\d|6\d|7\d|8\d|9\d|1\d\d)\.\d s and [2-9] attempt\(s\)/);
      await converge(psync, left, right);
      await changes.verify(psync);
      await expectClean(psync, left, right, changes.dir);
    } finally {
      expect(await pair.stop(), tail(psync)).toBe(EXIT.ok);
    }
  }, 150_000);
});

/** The last line psync wrote to stderr. */
const lastLine = (psync: PsyncProcess): string => psync.log().trimEnd().split('\n').pop() ?? '';

describe('psync gives up: --reconnect-timeout, a refused host key or login', () => {
  test('--reconnect-timeout 5 with sshd stopped for good: exit 3 after about 5 s, one line saying why', async () => {
    const pair = await startRemotePair(['-d', '2', '--reconnect-timeout', '5']);
    const { psync, sshd } = pair;
    try {
      sshd.freeze();
      expect(await sshd.dropConnections()).not.toHaveLength(0);
      const droppedAt = Date.now();
      await waitForState(psync, 'reconnecting');
      const code = await psync.waitExit(30_000);
      const tookMs = Date.now() - droppedAt;
      expect(code, tail(psync)).toBe(EXIT.connection);
      expect.soft(tookMs).toBeGreaterThanOrEqual(5_000);
      // 5 s, plus at most a last backoff: psync does not wait out a connect it started (20 s by default).
      expect.soft(tookMs, `psync gave up ${tookMs} ms after the drop${tail(psync)}`).toBeLessThan(11_000);
      expect.soft(lastLine(psync)).toMatch(/^psync: gave up reconnecting after 5 s \S/);
      expect.soft(count(psync.log(), /^psync: /m), tail(psync)).toBe(1);
      // The status file of the psync that stopped says so: it no longer reconnects.
      expect.soft((await statusOf(psync)).state).toBe('failed');
    } finally {
      sshd.thaw();
      await pair.stop();
    }
  }, 60_000);

  test('--reconnect-timeout 0: exit 3 as soon as the link drops, without one attempt', async () => {
    const pair = await startRemotePair(['-d', '2', '--reconnect-timeout', '0']);
    const { psync, sshd } = pair;
    try {
      expect(await sshd.dropConnections()).not.toHaveLength(0);
      expect(await psync.waitExit(5_000), tail(psync)).toBe(EXIT.connection);
      expect.soft(psync.log(), 'psync connected again').not.toMatch(/reconnect attempt|connecting to psync-test[^]*connecting to psync-test/);
      expect.soft(psync.log(), 'psync says it reconnects, and does not').not.toMatch(/reconnecting/);
      expect.soft(lastLine(psync)).toMatch(/^psync: \S/);
      expect.soft(count(psync.log(), /^psync: /m), tail(psync)).toBe(1);
      expect.soft((await statusOf(psync)).state).toBe('failed');
    } finally {
      await pair.stop();
    }
  });

  test.each([
    ['a changed host key', writeWrongKnownHosts, /host key .* does not match known_hosts/],
    ['a refused login', revokeUserKey, /authentication as \S+ to .* failed/],
  ] as const)('%s while reconnecting: exit 3 at the first attempt, no retry', async (_, change, message) => {
    const pair = await startRemotePair(['-d', '2']);
    const { psync, sshd } = pair;
    try {
      await change(sshd);
      expect(await sshd.dropConnections()).not.toHaveLength(0);
      // The first attempt comes after 1 s (±20 %); a second would come 2 s later.
      expect(await psync.waitExit(10_000), tail(psync)).toBe(EXIT.connection);
      expect(lastLine(psync)).toMatch(new RegExp(`^psync: .*${message.source}`));
      expect(count(psync.log(), /reconnect attempt/), tail(psync)).toBe(1);
      expect(count(psync.log(), /connecting to psync-test/), tail(psync)).toBe(2);
    } finally {
      await writeCorrectKnownHosts(sshd);
      await pair.stop();
    }
  });
});

/** The right side's process of a local pair: the pid in its root's lock, a `_side` child of psync. */
async function sideOf(root: string, psync: PsyncProcess): Promise<number> {
  const pid = Number.parseInt(await read(join(root, '.psync', 'lock')), 10);
  const child = (await processesUnder(psync.child.pid!)).find((p) => p.pid === pid);
  if (child === undefined || child.ppid !== psync.child.pid || !child.argv.includes('_side')) {
    throw new Error(`pid ${pid} (in ${root}/.psync/lock) is not a side of psync ${String(psync.child.pid)}`);
  }
  return pid;
}

/** Two fresh local roots. */
async function localRoots(): Promise<{ left: string; right: string }> {
  const base = tempDir('psync-faults-');
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right)]);
  return { left, right };
}

describe('a local pair whose right side dies or stalls', () => {
  let psync: PsyncProcess;
  let left: string;
  let right: string;
  /** Processes a test stopped: they are continued and killed whatever happens. */
  const stopped: number[] = [];

  beforeAll(async () => {
    ({ left, right } = await localRoots());
    psync = await PsyncProcess.start(['-d', '2', left, right]);
  });

  afterEach(() => {
    for (const pid of stopped.splice(0)) {
      signalQuietly(pid, 'SIGKILL');
      signalQuietly(pid, 'SIGCONT');
    }
  });

  afterAll(async () => {
    if (psync !== undefined) expect(await psync.stop(), tail(psync)).toBe(EXIT.ok);
  });

  test('kill -9 of the right side: psync starts it again and syncs what changed meanwhile', async () => {
    const changes = new OutageChanges(left, right, 'killed');
    await changes.seed(psync);
    const side = await sideOf(right, psync);
    process.kill(side, 'SIGKILL');
    await changes.change();
    await waitForState(psync, 'watching', 30_000, () => /reconnected after/.test(psync.log()));
    expectReconnectedLog(psync, 1);
    expect(await sideOf(right, psync)).not.toBe(side);
    await converge(psync, left, right);
    await changes.verify(psync);
    await expectClean(psync, left, right, changes.dir);
  });

  test('kill -STOP of the right side: after the heartbeat timeout psync starts another and syncs what changed meanwhile', async () => {
    const changes = new OutageChanges(left, right, 'stalled');
    await changes.seed(psync);
    const side = await sideOf(right, psync);
    process.kill(side, 'SIGSTOP');
    stopped.push(side);
    const stalledAt = Date.now();
    await changes.change();
    const status = await waitForState(psync, 'reconnecting', HEARTBEAT_TIMEOUT_MS + 10_000);
    expect(Date.now() - stalledAt).toBeGreaterThanOrEqual(HEARTBEAT_TIMEOUT_MS - 2_000);
    expect(status.reconnect!.lastError).toMatch(/heartbeat/);
    await waitForState(psync, 'watching', 45_000, () => count(psync.log(), /reconnected after/) === 2);
    expectReconnectedLog(psync, 2);
    expect(await sideOf(right, psync)).not.toBe(side);
    await converge(psync, left, right);
    await changes.verify(psync);
    await expectClean(psync, left, right, changes.dir);
  }, 120_000);
});

/**
 * psync killed with SIGKILL, restarted with the same arguments: one local
 * pair, killed in its start-up reconcile, in a burst and in a transfer,
 * each phase in a directory of its own.
 */
describe('kill -9 of psync itself, then a restart', () => {
  let left: string;
  let right: string;
  let args: string[];
  let psync: PsyncProcess | undefined;

  beforeAll(async () => {
    ({ left, right } = await localRoots());
    args = ['-d', '2', `--extra=${BWLIMIT}`, left, right];
  });

  afterAll(async () => {
    if (psync !== undefined && psync.exited === undefined) expect(await psync.stop(), tail(psync)).toBe(EXIT.ok);
  });

  /** SIGKILL psync, and wait until every process it started is gone (they end when their input does). */
  async function killPsync(running: PsyncProcess): Promise<void> {
    const children = await processesUnder(running.child.pid!);
    running.child.kill('SIGKILL');
    await running.waitExit(5_000);
    await waitFor(
      'the processes of the killed psync to end',
      async () => {
        for (const child of children) if (await isAlive(child.pid)) return false;
        return true;
      },
      15_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(children)}`);
    });
  }

  /** Start again with the same arguments; wait until it watches, the trees are identical and recorded. */
  async function restart(): Promise<PsyncProcess> {
    psync = await PsyncProcess.start(args, { waitWatching: false });
    await waitForState(psync, 'watching', 60_000);
    await recorded(psync, left, right);
    return psync;
  }

  /**
   * Once the restart settled: no temp file, scratch name or conflict copy
   * under `under`, and no replaced version left unjudged in `.psync/replaced`
   * (removed after the check, so that the next phase judges only its own).
   */
  async function expectNoLeftovers(running: PsyncProcess, under: string): Promise<void> {
    const replaced = [...(await replacedLeftovers(left)), ...(await replacedLeftovers(right))];
    for (const dir of replaced) await rm(dir, { recursive: true, force: true });
    expect.soft(replaced, `unjudged replaced versions after the restart${tail(running)}`).toEqual([]);
    await expectClean(running, left, right, under);
  }

  test('during the start-up reconcile of a big tree: nothing deleted comes back, offline edits arrive', async () => {
    const p = (root: string, ...parts: string[]): string => join(root, 'startup', ...parts);
    // The pair agrees on a small tree first, then psync stops.
    await mkdir(p(left, 'agreed'), { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(p(left, 'agreed', `a${i}.txt`), `agreed ${i}\n`);
    const first = await PsyncProcess.start(args);
    await recorded(first, left, right);
    expect(await first.stop(), tail(first)).toBe(EXIT.ok);
    // Offline: deletes on both sides, edits on the right, a big new tree on the left.
    for (let i = 0; i < 5; i++) await rm(p(left, 'agreed', `a${i}.txt`));
    for (let i = 5; i < 10; i++) await rm(p(right, 'agreed', `a${i}.txt`));
    for (let i = 10; i < 20; i++) await writeFile(p(right, 'agreed', `a${i}.txt`), `agreed ${i}, edited on the right\n`);
    for (let d = 0; d < 20; d++) {
      await mkdir(p(left, 'big', `d${d}`), { recursive: true });
      for (let f = 0; f < 200; f++) await writeFile(p(left, 'big', `d${d}`, `f${f}`), `${d}/${f}\n`.repeat(1000));
    }

    const killed = await PsyncProcess.start(args, { waitWatching: false });
    await waitForState(killed, 'reconciling');
    await waitFor(
      'the start-up reconcile to be copying the big tree',
      async () => (await exists(p(right, 'big', 'd0', 'f0'))) && !(await exists(p(right, 'big', 'd19', 'f199'))),
      30_000,
    );
    expect((await statusOf(killed)).state).toBe('reconciling');
    await killPsync(killed);

    const running = await restart();
    for (let i = 0; i < 10; i++) expect(await exists(p(left, 'agreed', `a${i}.txt`)), `a${i}.txt came back`).toBe(false);
    for (let i = 10; i < 20; i++) expect(await read(p(left, 'agreed', `a${i}.txt`))).toBe(`agreed ${i}, edited on the right\n`);
    expect((await readdir(p(right, 'big'))).length).toBe(20);
    expect(await read(p(right, 'big', 'd19', 'f199'))).toBe('19/199\n'.repeat(1000));
    await expectNoLeftovers(running, 'startup');
  }, 120_000);

  test('during a burst of writes: every file arrives, nothing deleted comes back', async () => {
    const p = (root: string, ...parts: string[]): string => join(root, 'burst', ...parts);
    const running = psync!;
    // Agreed files for the burst to edit (their transfers replace versions on the right) and to delete.
    await mkdir(p(left, 'agreed'), { recursive: true });
    for (let i = 0; i < 40; i++) await writeFile(p(left, 'agreed', `e${i}.txt`), `agreed ${i}\n`);
    await mkdir(p(left, 'many'));
    await recorded(running, left, right);
    for (let i = 0; i < BURST_FILES; i++) {
      await writeFile(p(left, 'many', `f${i}.txt`), `burst ${i}\n`);
      if (i % 10 === 0) await writeFile(p(left, 'agreed', `e${i / 10}.txt`), `agreed ${i / 10}, edited in the burst${i <= BURST_FILES / 3 ? ' (first)' : ''}\n`);
      if (i === BURST_FILES / 3) {
        await waitFor('the burst to start arriving', () => exists(p(right, 'many', 'f0.txt')));
        await killPsync(running);
        // While psync is dead: the files the burst edited so far edited again on the left (the first
        // edit may have reached the right unrecorded: still no conflict), deletes of agreed entries on the right.
        for (let e = 0; e <= i / 10; e++) await writeFile(p(left, 'agreed', `e${e}.txt`), `agreed ${e}, edited in the burst\n`);
        for (let e = 30; e < 40; e++) await rm(p(right, 'agreed', `e${e}.txt`));
        for (let d = 0; d < 5; d++) await rm(join(right, 'startup', 'big', `d${d}`), { recursive: true });
      }
    }
    const again = await restart();
    for (let i = 0; i < BURST_FILES; i++) expect(await read(p(right, 'many', `f${i}.txt`))).toBe(`burst ${i}\n`);
    for (let i = 0; i < 30; i++) expect(await read(p(right, 'agreed', `e${i}.txt`))).toBe(`agreed ${i}, edited in the burst\n`);
    for (let e = 30; e < 40; e++) expect(await exists(p(left, 'agreed', `e${e}.txt`)), `e${e}.txt came back`).toBe(false);
    for (let d = 0; d < 5; d++) expect(await exists(join(left, 'startup', 'big', `d${d}`)), `big/d${d} came back`).toBe(false);
    await expectNoLeftovers(again, 'burst');
  }, 120_000);

  test(`during the transfer of a ${BIG_FILE_BYTES >> 20} MB file that replaces an older one: it arrives whole`, async () => {
    const running = psync!;
    await mkdir(join(left, 'transfer'));
    const older = await writeBigFile(join(left, 'transfer', 'big.bin'));
    await waitFor('the older big file to arrive', async () => sha1(await readFile(join(right, 'transfer', 'big.bin'))) === older, 30_000);
    await recorded(running, left, right);
    const hash = await writeBigFile(join(left, 'transfer', 'big.bin'));
    await waitForTransferOf(running, join(right, 'transfer'), 'big.bin');
    await killPsync(running);
    // What is at the final name is one whole version, never a part.
    expect([older, hash]).toContain(sha1(await readFile(join(right, 'transfer', 'big.bin'))));
    const again = await restart();
    expect(sha1(await readFile(join(right, 'transfer', 'big.bin')))).toBe(hash);
    await expectNoLeftovers(again, 'transfer');
  }, 120_000);
});

test('SIGHUP stops psync cleanly (exit 0, "stopping") and releases its roots at once', async () => {
  const { left, right } = await localRoots();
  const first = await PsyncProcess.start([left, right]);
  first.child.kill('SIGHUP');
  expect(await first.waitExit(15_000), tail(first)).toBe(EXIT.ok);
  expect(first.log()).toMatch(/\bstopping\b/);
  expect(first.log()).not.toMatch(/^psync: /m);
  const second = await PsyncProcess.start([left, right]);
  await writeFile(join(left, 'after.txt'), 'after\n');
  await waitFor('after.txt to arrive', () => exists(join(right, 'after.txt')));
  expect(await second.stop(), tail(second)).toBe(EXIT.ok);
});
