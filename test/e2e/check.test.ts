/**
 * `psync check SRCROOT DSTROOT` (and scripts/rcheck), run as a user runs it:
 * real trees, real rsync, a real sshd for `-r`. Exit 0 identical, 1
 * differences (one line each), 2 error; never a change to either tree.
 */

import { chmod, chown, lstat, mkdir, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CLI, snapshotTree } from '../support/psync.js';
import { startSshd, writeCorrectKnownHosts, writeEmptyKnownHosts, type SshdFixture } from '../support/sshd.js';
import { tempDir } from '../support/tmp.js';

const CHECK_EXIT = { identical: 0, different: 1, error: 2 } as const;
const RCHECK = fileURLToPath(new URL('../../scripts/rcheck', import.meta.url));
/** A fixed mtime (seconds) for files both sides should agree on. */
const MTIME = 1_700_000_000;

function check(args: readonly string[]) {
  return execa(process.execPath, [CLI, 'check', ...args], { reject: false, stdin: 'ignore', timeout: 60_000 });
}

/** stdout's lines, the summary last. */
const linesOf = (result: { stdout: unknown }): string[] => String(result.stdout).split('\n').filter((line) => line !== '');

/** The one `psync: ` line an error ends with (stderr's last line), without the prefix. */
function errorOf(result: { stderr: unknown }): string {
  const last = String(result.stderr).trimEnd().split('\n').at(-1) ?? '';
  expect(last, String(result.stderr)).toMatch(/^psync: \S/);
  return last.slice('psync: '.length);
}

/** A file with this content and the fixed mtime (so both sides' copies are equal). */
async function put(path: string, content: string, mtime = MTIME): Promise<void> {
  await writeFile(path, content);
  await utimes(path, mtime, mtime);
}

/** Two equal trees: files, a nested directory, a symlink. Directory mtimes are left as they come. */
async function equalPair(): Promise<{ left: string; right: string }> {
  const base = tempDir('psync-check-');
  const roots = { left: join(base, 'left'), right: join(base, 'right') };
  for (const root of [roots.left, roots.right]) {
    await mkdir(join(root, 'd', 'e'), { recursive: true });
    await put(join(root, 'a.txt'), 'alpha\n');
    await put(join(root, 'd', 'e', 'b.txt'), 'beta\n');
    await symlink('a.txt', join(root, 'link'));
  }
  return roots;
}

/** Every entry's type, mode, content and (for files) mtime, and every directory's mtime: what check must not change. */
async function stateOf(root: string): Promise<string> {
  const dirTimes: string[] = [];
  const visit = async (dir: string): Promise<void> => {
    dirTimes.push(`${dir} ${(await lstat(dir)).mtimeMs}`);
    for (const entry of await readdir(dir, { withFileTypes: true })) if (entry.isDirectory()) await visit(join(dir, entry.name));
  };
  await visit(root);
  return JSON.stringify([[...(await snapshotTree(root))], dirTimes]);
}

describe('identical trees exit 0', () => {
  test("directory mtimes, psync's own files, excludes and temp files are not differences", async () => {
    const { left, right } = await equalPair();
    await utimes(join(left, 'd'), MTIME - 1000, MTIME - 1000);
    await utimes(join(right, 'd', 'e'), MTIME + 1000, MTIME + 1000);
    await utimes(right, MTIME + 5, MTIME + 5);
    // psync's own directory, on one side only, and a name of its rename dance.
    await mkdir(join(left, '.psync'));
    await writeFile(join(left, '.psync', 'id'), 'left-id\n');
    await writeFile(join(right, 'd', 'x.psync.ignore.1'), 'scratch');
    // Excluded (-e, and --rsync-excludes) and temp files (built-in list and -t), differing or on one side.
    await put(join(left, 'build.log'), 'left log');
    await put(join(right, 'build.log'), 'the right log, longer');
    await mkdir(join(right, 'node_modules', 'x'), { recursive: true });
    await writeFile(join(left, 'd', '.a.txt.swp'), 'vim swap');
    await writeFile(join(right, 'd', 'e', 'upload.part'), 'half');
    await writeFile(join(right, 'cache.bin'), 'cache');

    const result = await check(['-e', '*.log', '-e', 'node_modules/', '--rsync-excludes', 'cache.bin', '-t', '*.part', left, right]);
    expect(result.stderr).toBe('');
    expect(linesOf(result)).toEqual(['identical']);
    expect(result.exitCode).toBe(CHECK_EXIT.identical);

    // Without the patterns, the same trees differ: the excludes above did the work.
    const unfiltered = await check([left, right]);
    expect(unfiltered.exitCode).toBe(CHECK_EXIT.different);
    // The built-in temp-file list and psync's own names are always left out.
    expect(linesOf(unfiltered)).toEqual([
      'differs: build.log (size)',
      'only on right: cache.bin',
      'only on right: d/e/upload.part',
      'only on right: node_modules/',
      'only on right: node_modules/x/',
      '5 differences: 0 only on left, 4 only on right, 1 differing',
    ]);
  });

  test('after psync -s synced two different trees', async () => {
    const { left, right } = await equalPair();
    await put(join(left, 'd', 'new-left.txt'), 'l');
    await mkdir(join(right, 'r', 's'), { recursive: true });
    await put(join(right, 'r', 's', 'new-right.txt'), 'r');
    await rm(join(right, 'link'));
    await symlink('d', join(right, 'link'));
    await chmod(join(left, 'd', 'e'), 0o700);
    expect((await check([left, right])).exitCode).toBe(CHECK_EXIT.different);
    const sync = await execa(process.execPath, [CLI, '-s', '-d', '0', left, right], { reject: false, stdin: 'ignore', timeout: 60_000 });
    expect(sync.exitCode, String(sync.stderr)).toBe(0);
    const result = await check([left, right]);
    expect(linesOf(result)).toEqual(['identical']);
    expect(result.exitCode).toBe(CHECK_EXIT.identical);
  });

  test('settings from --config: roots and patterns', async () => {
    const { left, right } = await equalPair();
    await writeFile(join(right, 'only.skip'), 'excluded by the config file');
    const config = join(tempDir('psync-check-config-'), 'pair.json');
    await writeFile(config, JSON.stringify({ srcRoot: left, dstRoot: right, excludes: ['*.skip'] }));
    const result = await check(['--config', config]);
    expect(linesOf(result)).toEqual(['identical']);
    expect(result.exitCode).toBe(CHECK_EXIT.identical);
  });

  test('a config with several pairs: --pair names the one compared, and is required', async () => {
    const alpha = await equalPair();
    const beta = await equalPair();
    await writeFile(join(alpha.right, 'only-in-alpha.txt'), 'a difference of the other pair');
    const config = join(tempDir('psync-check-config-'), 'pairs.json');
    await writeFile(
      config,
      JSON.stringify({ pairs: [{ name: 'alpha', srcRoot: alpha.left, dstRoot: alpha.right }, { name: 'beta', srcRoot: beta.left, dstRoot: beta.right }] }),
    );
    const unnamed = await check(['--config', config]);
    expect(unnamed.exitCode).toBe(CHECK_EXIT.error);
    expect(String(unnamed.stderr)).toMatch(/lists 2 pairs \(alpha, beta\): name one with --pair/);
    const wrong = await check(['--config', config, '--pair', 'gamma']);
    expect(wrong.exitCode).toBe(CHECK_EXIT.error);
    expect(String(wrong.stderr)).toMatch(/no pair named "gamma"/);
    const betaChecked = await check(['--config', config, '--pair', 'beta']);
    expect(linesOf(betaChecked)).toEqual(['identical']);
    const alphaChecked = await check(['--config', config, '--pair', 'alpha']);
    expect(linesOf(alphaChecked)).toEqual(['only on right: only-in-alpha.txt', '1 difference: 0 only on left, 1 only on right, 0 differing']);
    expect(alphaChecked.exitCode).toBe(CHECK_EXIT.different);
  });
});

describe('differences exit 1, one line each, and change nothing', () => {
  test('content with the same size and mtime: only --checksum sees it', async () => {
    const { left, right } = await equalPair();
    await put(join(left, 'a.txt'), 'ALPHA\n');
    const quick = await check([left, right]);
    expect(linesOf(quick)).toEqual(['identical']);
    expect(quick.exitCode).toBe(CHECK_EXIT.identical);

    const thorough = await check(['--checksum', left, right]);
    expect(linesOf(thorough)).toEqual(['differs: a.txt (content)', '1 difference: 0 only on left, 0 only on right, 1 differing']);
    expect(thorough.exitCode).toBe(CHECK_EXIT.different);
  });

  test('entries on one side, a symlink target, a type, permissions, a file mtime: listed, trees untouched', async () => {
    const { left, right } = await equalPair();
    await put(join(left, 'd', 'only-left.txt'), 'l');
    await mkdir(join(right, 'newdir'));
    await put(join(right, 'newdir', 'inside.txt'), 'r');
    await rm(join(right, 'link'));
    await symlink('d', join(right, 'link'));
    // A file on the left, a directory with contents on the right: one line, not its contents.
    await put(join(left, 'kind'), 'a file');
    await mkdir(join(right, 'kind'));
    await put(join(right, 'kind', 'child'), 'below the type difference');
    await chmod(join(right, 'a.txt'), 0o600);
    await utimes(join(right, 'd', 'e', 'b.txt'), MTIME + 60, MTIME + 60);
    const before = [await stateOf(left), await stateOf(right)];

    const result = await check([left, right]);
    expect(result.stderr).toBe('');
    expect(linesOf(result)).toEqual([
      'differs: a.txt (perms)',
      'differs: d/e/b.txt (mtime)',
      'only on left: d/only-left.txt',
      'differs: kind (type: file on left, directory on right)',
      'differs: link (target)',
      'only on right: newdir/',
      'only on right: newdir/inside.txt',
      '7 differences: 1 only on left, 2 only on right, 4 differing',
    ]);
    expect(result.exitCode).toBe(CHECK_EXIT.different);
    expect([await stateOf(left), await stateOf(right)]).toEqual(before);
  });

  test("a conflict copy is a user's file: compared like any other", async () => {
    const { left, right } = await equalPair();
    await put(join(right, 'a.psync-conflict-20261202-101500.txt'), 'the other version\n');
    const result = await check([left, right]);
    expect(linesOf(result)[0]).toBe('only on right: a.psync-conflict-20261202-101500.txt');
    expect(result.exitCode).toBe(CHECK_EXIT.different);
  });

  test.skipIf(process.getuid?.() !== 0)('owner and group, as root', async () => {
    const { left, right } = await equalPair();
    await chown(join(right, 'a.txt'), 4242, 4343);
    const result = await check([left, right]);
    expect(linesOf(result)[0]).toBe('differs: a.txt (owner, group)');
    expect(result.exitCode).toBe(CHECK_EXIT.different);
  });

  test('odd names: a newline, a leading dash, a non-UTF-8 byte, a quote', async () => {
    const { left, right } = await equalPair();
    await put(join(left, 'two\nlines'), 'x');
    await put(join(right, '-rf'), 'x');
    await writeFile(Buffer.concat([Buffer.from(`${left}/caf`), Buffer.from([0xe9])]), 'latin1');
    await put(join(right, 'say "hi"'), 'x');
    const result = await check([left, right]);
    expect(linesOf(result)).toEqual([
      'only on right: -rf',
      'only on left: "caf\\udce9"',
      'only on right: "say \\"hi\\""',
      'only on left: "two\\nlines"',
      '4 differences: 2 only on left, 2 only on right, 0 differing',
    ]);
    expect(result.exitCode).toBe(CHECK_EXIT.different);
  });

  test('scripts/rcheck is psync check', async () => {
    const { left, right } = await equalPair();
    await put(join(right, 'extra'), 'x');
    const result = await execa(RCHECK, [left, right], { reject: false, stdin: 'ignore', env: { PATH: `${join(process.execPath, '..')}:${process.env.PATH ?? ''}` } });
    expect(linesOf(result)).toEqual(['only on right: extra', '1 difference: 0 only on left, 1 only on right, 0 differing']);
    expect(result.exitCode).toBe(CHECK_EXIT.different);
  });
});

describe('errors exit 2 with one psync: line, and print no comparison', () => {
  test.each([
    { description: 'a missing SRCROOT', args: (l: string, r: string) => [join(l, 'nope'), r], message: /^SRCROOT .*nope does not exist/ },
    { description: 'a missing DSTROOT', args: (l: string, r: string) => [l, join(r, 'nope')], message: /^DSTROOT .*nope does not exist/ },
    { description: 'a file as DSTROOT', args: (l: string, r: string) => [l, join(r, 'a.txt')], message: /^DSTROOT .*a\.txt is not a directory/ },
    { description: 'no DSTROOT', args: (l: string) => [l], message: /^DSTROOT is missing/ },
    { description: 'a third root', args: (l: string, r: string) => [l, r, r], message: /Unknown argument/ },
    { description: 'an unknown option', args: (l: string, r: string) => ['--bogus', l, r], message: /Unknown argument: bogus/ },
    { description: 'a pattern psync refuses', args: (l: string, r: string) => ['-e', '!x', l, r], message: /negation/ },
    { description: 'a config file that is not there', args: (l: string) => ['--config', join(l, 'none.json')], message: /cannot read the config file/ },
  ])('$description', async ({ args, message }) => {
    const { left, right } = await equalPair();
    const result = await check(args(left, right));
    expect(errorOf(result)).toMatch(message);
    expect(result.stdout).toBe('');
    expect(result.exitCode).toBe(CHECK_EXIT.error);
  });

  test.skipIf(process.getuid?.() !== 0)('a directory rsync may not read: what was found is listed, then the error', async () => {
    const { left, right } = await equalPair();
    await chmod(dirname(left), 0o755);
    await put(join(right, 'extra'), 'x');
    for (const root of [left, right]) {
      await mkdir(join(root, 'locked'));
      await chmod(join(root, 'locked'), 0o000);
    }
    const asNobody = ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', process.execPath, CLI, 'check', left, right];
    const result = await execa('setpriv', asNobody, { reject: false, stdin: 'ignore' });
    expect(linesOf(result)).toEqual(['only on right: extra']);
    expect(errorOf(result)).toMatch(/^rsync could not read everything \(exit 23: .*\); the comparison is incomplete$/);
    expect(String(result.stderr)).toMatch(/opendir .*locked.* Permission denied/);
    expect(result.exitCode).toBe(CHECK_EXIT.error);
  });

  test('--help answers and exits 0', async () => {
    const result = await check(['--help']);
    expect(result.stdout).toMatch(/psync check \[options\] SRCROOT DSTROOT/);
    expect(result.stdout).toMatch(/--checksum/);
    expect(result.exitCode).toBe(0);
  });
});

describe('the right root on a remote host (-r, over psync ssh transport)', () => {
  let sshd: SshdFixture;
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });
  const remote = (args: readonly string[]) => check(['-r', sshd.host, '--ssh-config', sshd.configFile, ...args]);

  test('identical, then differing, then with --checksum', async () => {
    const { left, right } = await equalPair();
    await utimes(join(right, 'd'), MTIME + 1000, MTIME + 1000);
    const same = await remote([left, right]);
    expect(linesOf(same)).toEqual(['identical']);
    expect(same.exitCode).toBe(CHECK_EXIT.identical);

    await put(join(right, 'd', 'e', 'b.txt'), 'BETA\n');
    await put(join(right, 'remote only'), 'r');
    await put(join(left, 'kind'), 'a file');
    await mkdir(join(right, 'kind'));
    const quick = await remote([left, right]);
    expect(linesOf(quick)).toEqual([
      'differs: kind (type: file on left, directory on right)',
      'only on right: remote only',
      '2 differences: 0 only on left, 1 only on right, 1 differing',
    ]);
    expect(quick.exitCode).toBe(CHECK_EXIT.different);
    const thorough = await remote(['--checksum', left, right]);
    expect(linesOf(thorough)).toContain('differs: d/e/b.txt (content)');
    expect(thorough.exitCode).toBe(CHECK_EXIT.different);
  });

  test('a missing remote root exits 2', async () => {
    const { left, right } = await equalPair();
    const result = await remote([left, join(right, 'not here')]);
    expect(errorOf(result)).toMatch(/^DSTROOT .*not here on psync-test does not exist or is not a directory/);
    expect(result.stdout).toBe('');
    expect(result.exitCode).toBe(CHECK_EXIT.error);
  });

  test("a host whose key is not known exits 2 (psync's own host key check)", async () => {
    const { left, right } = await equalPair();
    await writeEmptyKnownHosts(sshd);
    try {
      const result = await remote([left, right]);
      expect(errorOf(result)).toMatch(/not in known_hosts/);
      expect(result.exitCode).toBe(CHECK_EXIT.error);
    } finally {
      await writeCorrectKnownHosts(sshd);
    }
  });
});
