/**
 * The psync command line, run as a user runs it (the built dist/src/cli.js):
 * exit codes, the one `psync: ` line on stderr that says what went wrong,
 * and that a refused or failed run syncs nothing and deletes nothing.
 *
 * Exit codes (src/cli.ts EXIT): 0 ok, 1 internal, 2 usage/config,
 * 3 connection, 4 rsync, 5 protocol/child failure, 6 banned, 7 safety.
 */

import { randomBytes } from 'node:crypto';
import { chmod, copyFile, lstat, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CLI, diffTrees, PsyncProcess, snapshotTree, waitFor, waitForSameTrees } from '../support/psync.js';
import { startSshd, writeCorrectKnownHosts, writeEmptyKnownHosts, writeWrongKnownHosts, type SshdFixture } from '../support/sshd.js';
import { described } from '../support/table.js';
import { isAlive, processesUnder } from '../support/procs.js';


const EXIT = { ok: 0, usage: 2, connection: 3, rsync: 4, protocol: 5, banned: 6, safety: 7 } as const;

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'psync-cli-'));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

let pairs = 0;
/** A fresh pair of empty roots (the right one's name has a space). */
async function freshPair(): Promise<{ left: string; right: string }> {
  pairs += 1;
  const left = join(work, `pair-${pairs}`, 'left');
  const right = join(work, `pair-${pairs}`, 'right side');
  await mkdir(left, { recursive: true });
  await mkdir(right, { recursive: true });
  return { left, right };
}

/** Run the CLI to its end. */
function psync(args: readonly string[], timeout = 60_000) {
  return execa(process.execPath, [CLI, ...args], { reject: false, stdin: 'ignore', timeout });
}

/**
 * The error report: exactly one stderr line starting `psync: `, and it is
 * the last line. Returns the message after the prefix (or the last line
 * when there is no such line, so that the content checks still run). The
 * format checks are soft: one run reports the code, the format and the
 * content at once.
 */
function errorMessage(result: { stderr: unknown }): string {
  const stderr = String(result.stderr);
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  const reports = lines.filter((line) => line.startsWith('psync: '));
  expect.soft(reports, `one "psync: " line expected on stderr:\n${stderr}`).toHaveLength(1);
  expect.soft(lines.at(-1) ?? '', `the last stderr line should be the "psync: " report:\n${stderr}`).toMatch(/^psync: \S/);
  // Whatever its format, the report is expected last: the caller checks what it says.
  const report = reports.at(-1) ?? lines.at(-1) ?? '';
  const prefix = report.indexOf('psync: ');
  return prefix < 0 ? report : report.slice(prefix + 'psync: '.length);
}

/** The entries of `dir`, without psync's own `.psync` (its lock and the pair's marker). */
const names = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((name) => name !== '.psync').sort();

describe('usage and config errors exit 2 with one clear line', () => {
  let left: string;
  let right: string;
  beforeAll(async () => {
    ({ left, right } = await freshPair());
    await mkdir(join(left, 'inner'));
  });

  test.each(described<{ description: string; args: () => string[]; message: RegExp }>([
    { description: 'missing SRCROOT (no roots at all)', args: () => [], message: /argument|SRCROOT|srcroot/i },
    { description: 'missing DSTROOT (local mode)', args: () => [left], message: /argument|DSTROOT|dstroot/i },
    { description: 'SRCROOT /', args: () => ['/', right], message: /refusing \/ as SRCROOT/ },
    { description: 'both roots the same directory', args: () => [left, `${left}/`], message: /same directory/ },
    { description: 'DSTROOT inside SRCROOT', args: () => [left, join(left, 'inner')], message: /inside/ },
    { description: 'SRCROOT inside DSTROOT', args: () => [join(left, 'inner'), left], message: /inside/ },
    { description: '-T a:b', args: () => ['-T', 'a:b', left, right], message: /translate/ },
    { description: '-d 7', args: () => ['-d', '7', left, right], message: /--debug.*7/ },
    { description: '-i with a word for a number', args: () => ['-i', 'soon', left, right], message: /^--interval takes a number$/ },
    { description: '--log-format xml', args: () => ['--log-format', 'xml', left, right], message: /log-format.*xml/ },
    { description: '--progress sometimes', args: () => ['--progress', 'sometimes', left, right], message: /progress.*sometimes/ },
    { description: '--log-file in a directory that does not exist', args: () => ['--log-file', join(left, 'no', 'such', 'dir', 'psync.log'), left, right], message: /cannot open the log file .*no such file/i },
    // The message must name the option the user got wrong, wherever it stands.
    { description: 'an unknown option before the roots', args: () => ['--bogus-option', left, right], message: /bogus-option/ },
    { description: 'an unknown option after the roots', args: () => [left, right, '--bogus-option'], message: /bogus-option/ },
    { description: 'a third positional argument (once silently ignored)', args: () => [left, right, 'third'], message: /unexpected argument "third": psync takes two roots/ },
    {
      description: '-x followed by an rsync option without "=": the hint spells it',
      args: () => ['-x', '--bwlimit=1000', left, right],
      message: /Unknown argument: bwlimit .*-x=--bwlimit=1000 or --extra=--bwlimit=1000/,
    },
    { description: 'host:/path as a local DSTROOT: suggests -r', args: () => [left, 'replica:/srv/share'], message: /DSTROOT .*replica:\/srv\/share does not exist .*use -r replica SRCROOT \/srv\/share/ },
    { description: 'a value outside the choices of --log-format', args: () => ['--log-format', 'xml', left, right], message: /Invalid values: Argument: log-format, Given: "xml", Choices: "text", "json"/ },
    { description: 'a brace list in a pattern (it would be taken literally)', args: () => ['-e', '*.{jpg,png}', left, right], message: /braces are not expanded/ },
  ]))('%s', async (_description, { args, message }) => {
    const result = await psync(args());
    expect(result.exitCode, String(result.stderr)).toBe(EXIT.usage);
    expect(errorMessage(result)).toMatch(message);
    expect(await names(right)).toEqual([]);
  });
});

test('-s whose start-up transfer fails (rsync refuses an option) exits 4 with rsync\'s reason, not 0', async () => {
  const { left, right } = await freshPair();
  await writeFile(join(left, 'a.txt'), 'a');
  const result = await psync(['-s', '-x=--no-such-rsync-option', left, right]);
  expect(result.exitCode, String(result.stderr)).toBe(EXIT.rsync);
  expect(errorMessage(result)).toMatch(/rsync failed .*syntax or usage error/);
  expect(await names(right)).toEqual([]);
});

describe('repeatable options', () => {
  test('-e, -t, -x and --rsync-excludes take one value each, so the roots after them stay roots', async () => {
    const { left, right } = await freshPair();
    for (const name of ['keep.txt', 'a.o', 'b.p', 'c.bak', 'draft.wip']) await writeFile(join(left, name), name);
    const result = await psync(['-s', '-e', '*.o', '-e', '*.p', '-t', '*.wip', '-x=--bwlimit=100000', '--rsync-excludes', '*.bak', left, right]);
    expect(result.exitCode, String(result.stderr)).toBe(EXIT.ok);
    expect(await names(right)).toEqual(['keep.txt']);
  });
});

describe('--help and --version', () => {
  const OPTIONS = [
    '--remote-host',
    '--debug',
    '--log-file',
    '--log-format',
    '--progress',
    '--tempfiles',
    '--excludes',
    '--rsync-excludes',
    '--extra',
    '--banned',
    '--translate',
    '--dry-run',
    '--sync-only',
    '--skip-initial-sync',
    '--force',
    '--interval',
    '--max-delay',
    '--ssh-config',
    '--remote-psync',
    '--status-file',
    '--log-file',
    '--log-format',
    '--progress',
    '--config',
    '--version',
  ];

  test('--help exits 0 and lists every option, and no error', async () => {
    const result = await psync(['--help']);
    const help = `${String(result.stdout)}${String(result.stderr)}`;
    for (const option of OPTIONS) expect(help, `--help should list ${option}`).toContain(option);
    expect(String(result.stderr), 'no error after the help').not.toMatch(/psync: /);
    expect(result.exitCode).toBe(EXIT.ok);
  });

  test('-h is --help', async () => {
    const result = await psync(['-h']);
    expect(String(result.stdout)).toContain('--remote-host');
    expect(String(result.stderr)).not.toMatch(/psync: /);
    expect(result.exitCode).toBe(EXIT.ok);
  });

  test('--version exits 0 and prints the version only', async () => {
    const result = await psync(['--version']);
    expect(String(result.stdout).trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(String(result.stderr), 'no error after the version').toBe('');
    expect(result.exitCode).toBe(EXIT.ok);
  });
});

describe('--banned', () => {
  let program: string;
  let path: string;
  beforeAll(async () => {
    // A private copy of sleep under a unique name (within comm's 15 characters).
    program = `psb${randomBytes(5).toString('hex')}`;
    const dir = await mkdtemp(join(work, 'banned-'));
    path = join(dir, program);
    await copyFile('/bin/sleep', path);
    await chmod(path, 0o755);
  });

  /**
   * Start the banned program and wait until /proc shows it under its name.
   * Wrapped in an object: an async function returning the subprocess (a
   * thenable) would wait for it to end.
   */
  async function startBanned() {
    const sleeper = execa(path, ['600'], { reject: false, stdin: 'ignore' });
    await waitFor('the banned program to run', async () => (await readFile(`/proc/${sleeper.pid}/comm`, 'utf8')).trim() === program);
    return { sleeper };
  }

  test('refuses to start while the program runs (exit 6) and syncs nothing', async () => {
    const { left, right } = await freshPair();
    await writeFile(join(left, 'must-not-sync.txt'), 'x');
    const { sleeper } = await startBanned();
    try {
      const result = await psync(['-b', program, left, right]);
      expect(result.exitCode, String(result.stderr)).toBe(EXIT.banned);
      expect(errorMessage(result)).toContain(program);
      expect(await names(right)).toEqual([]);
    } finally {
      sleeper.kill('SIGKILL');
      await sleeper;
    }
  });

  test('stops (exit 6) when the program starts while psync watches', async () => {
    const { left, right } = await freshPair();
    const proc = await PsyncProcess.start(['-b', program, left, right]);
    const { sleeper } = await startBanned();
    try {
      const code = await waitFor('psync to stop', () => (proc.child.exitCode === null ? undefined : proc.child.exitCode), 20_000);
      expect(code, proc.log()).toBe(EXIT.banned);
      expect(errorMessage({ stderr: proc.log() })).toContain(program);
    } finally {
      sleeper.kill('SIGKILL');
      await sleeper;
      if (proc.child.exitCode === null) await proc.stop();
    }
  });
});

describe('over SSH (private sshd)', () => {
  let sshd: SshdFixture;
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  const remote = (...args: string[]): string[] => ['-r', sshd.host, '--ssh-config', sshd.configFile, ...args];

  test('a wrong host key in known_hosts: exit 3, the message says so, nothing synced', async () => {
    const { left, right } = await freshPair();
    await writeFile(join(left, 'must-not-sync.txt'), 'x');
    await writeWrongKnownHosts(sshd);
    try {
      const result = await psync(remote(left, right));
      expect(result.exitCode, String(result.stderr)).toBe(EXIT.connection);
      expect(errorMessage(result)).toMatch(/host key/i);
      expect(await names(right)).toEqual([]);
    } finally {
      await writeCorrectKnownHosts(sshd);
    }
  });

  test('an unknown host (empty known_hosts): exit 3, nothing synced', async () => {
    const { left, right } = await freshPair();
    await writeFile(join(left, 'must-not-sync.txt'), 'x');
    await writeEmptyKnownHosts(sshd);
    try {
      const result = await psync(remote(left, right));
      expect(result.exitCode, String(result.stderr)).toBe(EXIT.connection);
      expect(errorMessage(result)).toMatch(/host key|known_hosts/i);
      expect(await names(right)).toEqual([]);
    } finally {
      await writeCorrectKnownHosts(sshd);
    }
  });

  test('a closed port: exit 3, nothing synced', async () => {
    const { left, right } = await freshPair();
    await writeFile(join(left, 'must-not-sync.txt'), 'x');
    const port = await closedPort();
    const config = join(work, `ssh_config-closed-${port}`);
    await writeFile(config, (await readFile(sshd.configFile, 'utf8')).replace(/^(\s*Port\s+)\d+$/m, `$1${port}`));
    const result = await psync(['-r', sshd.host, '--ssh-config', config, left, right]);
    expect(result.exitCode, String(result.stderr)).toBe(EXIT.connection);
    expect(errorMessage(result)).toMatch(new RegExp(`refused|${port}`));
    expect(await names(right)).toEqual([]);
  });

  test('a DSTROOT missing on the remote side: exit 2 as a missing local root, the message names the root', async () => {
    const { left, right } = await freshPair();
    await writeFile(join(left, 'must-stay.txt'), 'x');
    const missing = join(right, 'does-not-exist');
    const result = await psync(remote(left, missing));
    expect(result.exitCode, String(result.stderr)).toBe(EXIT.usage);
    expect(errorMessage(result)).toContain(missing);
    expect(await names(right)).toEqual([]);
    expect(await names(left)).toEqual(['must-stay.txt']);
  });

  test.each(described<{ description: string; command: string; cause: RegExp }>([
    { description: 'a script that is not there (node prints a 13-line stack trace)', command: `${process.execPath} /nonexistent/psync/cli.js`, cause: /Error: Cannot find module '\/nonexistent\/psync\/cli\.js'/ },
    { description: 'a command that is not there', command: 'no-such-psync-command', cause: /no-such-psync-command: (command )?not found/ },
  ]))('a wrong --remote-psync, %s: exit 5 with one short line naming the cause, not the remote stack trace', async (_description, { command, cause }) => {
    const { left, right } = await freshPair();
    const result = await psync(remote('-s', '--remote-psync', command, left, right));
    expect(result.exitCode, String(result.stderr)).toBe(EXIT.protocol);
    const message = errorMessage(result);
    expect(message).toMatch(cause);
    expect(message).toMatch(/--remote-psync/);
    const stderr = String(result.stderr);
    expect(stderr, 'no stack trace lines').not.toMatch(/^\s+at /m);
    // Nothing of what the remote side wrote is relayed as a warning (it is kept for -d 2): only the report says it.
    expect(stderr, 'no relayed remote stderr').not.toMatch(/ warn |node:internal|MODULE_NOT_FOUND/);
  });

  describe('--sync-only merges two different trees: the union, the newer file wins', () => {
    test.each([
      { description: 'over SSH (-r)', remote: true },
      { description: 'local', remote: false },
    ])('$description', async ({ remote: overSsh }) => {
      const { left, right } = await freshPair();
      const expected = await fillConflictingTrees(left, right);
      const args = ['-s', left, right];
      const result = await psync(overSsh ? remote(...args) : args);
      expect(result.exitCode, String(result.stderr)).toBe(EXIT.ok);
      expect(await diffTrees(left, right)).toEqual([]);
      for (const [path, content] of Object.entries(expected)) {
        expect(await readFile(join(left, path), 'utf8'), path).toBe(content);
        expect(await readFile(join(right, path), 'utf8'), path).toBe(content);
      }
    });

    test('-s -n (dry run) changes nothing on either side', async () => {
      const { left, right } = await freshPair();
      await fillConflictingTrees(left, right);
      const before = [await snapshotTree(left), await snapshotTree(right)];
      const result = await psync(remote('-s', '-n', left, right));
      expect(result.exitCode, String(result.stderr)).toBe(EXIT.ok);
      expect([await snapshotTree(left), await snapshotTree(right)]).toEqual(before);
    });
  });
});

/**
 * Two different trees: files only on each side, nested directories on both,
 * and two paths on both sides with different content, one newer on each
 * side. Returns what each conflicting path must hold after the merge.
 */
async function fillConflictingTrees(left: string, right: string): Promise<Record<string, string>> {
  const older = new Date('2020-01-02T03:04:05Z');
  const newer = new Date('2022-06-07T08:09:10Z');
  await mkdir(join(left, 'nested', 'a', 'b'), { recursive: true });
  await mkdir(join(right, 'nested', 'a', 'c'), { recursive: true });
  await mkdir(join(right, 'right-only-dir', 'deeper'), { recursive: true });
  await writeFile(join(left, 'only-left.txt'), 'left only\n');
  await writeFile(join(right, 'only-right.txt'), 'right only\n');
  await writeFile(join(left, 'nested', 'a', 'b', 'deep-left.txt'), 'deep left\n');
  await writeFile(join(right, 'nested', 'a', 'c', 'deep-right.txt'), 'deep right\n');
  await writeFile(join(right, 'right-only-dir', 'deeper', 'r.txt'), 'r\n');
  const conflicts = {
    'newer-on-left.txt': { left: ['left wins, longer content\n', newer], right: ['right loses\n', older] },
    'newer-on-right.txt': { left: ['left loses\n', older], right: ['right wins, longer content\n', newer] },
    'nested/a/newer-on-right.txt': { left: ['nested left loses\n', older], right: ['nested right wins\n', newer] },
  } as const;
  const expected: Record<string, string> = {};
  for (const [path, sides] of Object.entries(conflicts)) {
    for (const [root, [content, mtime]] of [[left, sides.left], [right, sides.right]] as const) {
      await writeFile(join(root, path), content);
      await utimes(join(root, path), mtime, mtime);
    }
    expected[path] = sides.left[1] === newer ? sides.left[0] : sides.right[0];
  }
  return expected;
}

/** A port on 127.0.0.1 that nobody listens on (bound, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (address !== null && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

describe('a running psync', () => {
  test('--dry-run: a file created on the left is reported but never reaches the right', async () => {
    const { left, right } = await freshPair();
    const proc = await PsyncProcess.start(['-n', left, right]);
    try {
      const before = (await proc.status())!;
      await writeFile(join(left, 'dry.txt'), 'dry run\n');
      // The report was received and taken off the queue (dispatched as a dry run).
      const after = await waitFor('the report to be received and dispatched', async () => {
        const s = await proc.status();
        return s !== undefined && s.counters.reported.left > before.counters.reported.left && s.queued === 0 ? s : undefined;
      });
      expect(await names(right)).toEqual([]);
      expect(after.counters.rsyncRuns, proc.log()).toBe(before.counters.rsyncRuns);
      expect(after.counters.applied).toEqual({ leftToRight: 0, rightToLeft: 0 });
    } finally {
      expect(await proc.stop()).toBe(EXIT.ok);
    }
    expect(await names(right)).toEqual([]);
    expect(await names(left)).toEqual(['dry.txt']);
  });

  test.each(['SIGTERM', 'SIGINT'] as const)('%s while watching: exit 0', async (signal) => {
    const { left, right } = await freshPair();
    const proc = await PsyncProcess.start([left, right]);
    proc.child.kill(signal);
    const result = await proc.child;
    expect(result.exitCode, proc.log()).toBe(EXIT.ok);
    expect(proc.log()).not.toMatch(/psync: /);
    expect((await proc.status())?.state).toBe('stopped');
  });

  test("the start-up's own writes are not sent back (only the barrier travels right to left)", async () => {
    const { left, right } = await freshPair();
    await mkdir(join(left, 'dir', 'sub'), { recursive: true });
    for (let i = 0; i < 10; i++) await writeFile(join(left, 'dir', 'sub', `f${i}.txt`), `file ${i}\n`);
    await writeFile(join(left, 'top.txt'), 'top\n');
    const proc = await PsyncProcess.start([left, right]);
    try {
      // A barrier from the right: the right filter reports in order, so anything it reported
      // about the merge's writes is queued before it.
      await writeFile(join(right, 'barrier'), 'b');
      await waitFor('the barrier to arrive', () => lstat(join(left, 'barrier')).then(() => true));
      const after = await waitFor('the barrier to be counted', async () => {
        const s = await proc.status();
        return s !== undefined && s.counters.applied.rightToLeft > 0 ? s : undefined;
      });
      expect(after.counters.applied.rightToLeft, proc.log()).toBe(1);
      await waitForSameTrees(left, right);
    } finally {
      expect(await proc.stop()).toBe(EXIT.ok);
    }
  });

  test('an entry made on the right that reuses the inode of one psync just deleted there is still sent', async (ctx) => {
    const { left, right } = await freshPair();
    const proc = await PsyncProcess.start([left, right]);
    const exists = (path: string): Promise<boolean> => lstat(path).then(() => true, () => false);
    try {
      // The file system decides whether a new directory reuses a freed inode: try until it does.
      for (let attempt = 0; attempt < 20; attempt++) {
        const deleted = join(right, `deleted-${attempt}`);
        await mkdir(join(left, `deleted-${attempt}`));
        await waitFor('the directory to arrive', () => exists(deleted));
        const inode = (await lstat(deleted)).ino;
        await rm(join(left, `deleted-${attempt}`), { recursive: true });
        await waitFor('psync to delete it on the right', async () => !(await exists(deleted)));
        const fresh = `fresh-${attempt}`;
        await mkdir(join(right, fresh));
        const reused = (await lstat(join(right, fresh))).ino === inode;
        await waitFor(
          `${fresh} to arrive on the left${reused ? ` (it reuses inode ${inode} of the directory psync just deleted)` : ''}`,
          () => exists(join(left, fresh)),
          10_000,
        ).catch((error: Error) => {
          throw new Error(`${error.message}\n${proc.log().slice(-3000)}`);
        });
        if (!reused) continue;
        await writeFile(join(right, fresh, 'inside.txt'), 'inside\n');
        await waitFor('a file inside it to arrive too', () => exists(join(left, fresh, 'inside.txt')), 10_000);
        await waitForSameTrees(left, right);
        return;
      }
      ctx.skip('the file system never reused an inode here');
    } finally {
      expect(await proc.stop()).toBe(EXIT.ok);
    }
  });

  test('with --reconnect-timeout 0, a dropped SSH connection exits 3 or 5 within 30 s with a clear message, and the left keeps everything', async () => {
    const sshd = await startSshd();
    const { left, right } = await freshPair();
    await mkdir(join(left, 'dir', 'sub'), { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(join(left, 'dir', 'sub', `f${i}.txt`), `file ${i}\n`);
    await writeFile(join(left, 'top.txt'), 'top\n');
    let proc: PsyncProcess | undefined;
    let sessions: number[] = [];
    try {
      proc = await PsyncProcess.start(['-r', sshd.host, '--ssh-config', sshd.configFile, '--reconnect-timeout', '0', left, right]);
      expect(await diffTrees(left, right)).toEqual([]);
      const before = await snapshotTree(left);

      // Everything sshd forked for us: the per-connection sshd processes and the remote psync children.
      const sshdPid = Number((await readFile(join(sshd.dir, 'sshd.pid'), 'utf8')).trim());
      const tree = await processesUnder(sshdPid);
      sessions = tree.filter((p) => /^sshd/.test(p.comm)).map((p) => p.pid);
      expect(sessions.length, `sshd's sessions: ${JSON.stringify(tree)}`).toBeGreaterThan(0);
      // The fixture's stop() SIGTERMs the listener only, and then waits for sshd's stderr,
      // which the established sessions hold open: it would wait for as long as psync stays
      // connected. So: stop the listener, then kill the sessions, and every TCP connection dies.
      killQuietly(sshdPid, 'SIGTERM');
      for (const pid of sessions) killQuietly(pid, 'SIGKILL');

      const started = Date.now();
      const running = proc;
      const code = await waitFor('psync to exit', () => (running.child.exitCode === null ? undefined : running.child.exitCode), 30_000);
      expect([EXIT.connection, EXIT.protocol], running.log()).toContain(code);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(errorMessage({ stderr: running.log() })).toMatch(/connection|lost|stopped|closed/i);
      expect(await snapshotTree(left)).toEqual(before);
      // The remote children end once their stdin is gone.
      await waitFor('the remote psync children to end', async () => {
        for (const p of tree) if (p.comm !== 'sshd' && (await isAlive(p.pid))) return false;
        return true;
      });
    } finally {
      if (proc !== undefined && proc.child.exitCode === null) await proc.stop();
      await sshd.stop();
    }
  });
});

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

