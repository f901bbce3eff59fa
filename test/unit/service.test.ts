/**
 * The service commands' pure parts: naming an instance, splitting their
 * options from psync's, reading a process's start time, and the default
 * directories; ensurePrivateDir on real directories.
 */

import { lstat, mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parseInvocation } from '../../src/commands/service.js';
import { instanceName, psyncOption } from '../../src/service/instance.js';
import { ensurePrivateDir, logDir, runtimeDir, statusDir } from '../../src/service/paths.js';
import { parseStartTime } from '../../src/service/proc.js';
import { described } from '../support/table.js';
import { tempDir } from '../support/tmp.js';

describe('instanceName', () => {
  test.each(described<{ description: string; args: string[]; name?: string; expected: string | RegExp }>([
    { description: '--name wins', args: ['--config', '/etc/psync/web.json'], name: 'mirror', expected: 'mirror' },
    { description: 'the config file without its extension', args: ['--config', '/etc/psync/web.json'], expected: 'web' },
    { description: '-c and --config= too', args: ['-d', '2', '--config=/etc/psync/mail.ts'], expected: 'mail' },
    { description: 'psync arguments: a short hash', args: ['/srv/a', '/srv/b'], expected: /^psync-[0-9a-f]{12}$/ },
    { description: 'a config name that is no plain name: a hash', args: ['--config', '/etc/psync/.hidden.json'], expected: /^psync-[0-9a-f]{12}$/ },
  ]))('%s', (_, { args, name, expected }) => {
    const got = instanceName(args, name);
    if (typeof expected === 'string') expect(got).toBe(expected);
    else expect(got).toMatch(expected);
  });

  test('the same arguments name the same instance; others another', () => {
    expect(instanceName(['/srv/a', '/srv/b'], undefined)).toBe(instanceName(['/srv/a', '/srv/b'], undefined));
    expect(instanceName(['/srv/a', '/srv/b'], undefined)).not.toBe(instanceName(['/srv/b', '/srv/a'], undefined));
  });

  test.each(['', '../x', 'a/b', '.hidden', '-x', 'a b'])('--name %j is refused', (name) => {
    expect(() => instanceName(['a', 'b'], name)).toThrow(/^--name .*: use letters/);
  });
});

describe('psyncOption', () => {
  test.each(described([
    { description: 'long form with a value', args: ['--status-file', 's.json', 'a', 'b'], expected: 's.json' },
    { description: 'long=value', args: ['--status-file=s.json', 'a', 'b'], expected: 's.json' },
    { description: 'the last one given', args: ['--status-file', 'one', '--status-file', 'two'], expected: 'two' },
    { description: 'not after --', args: ['--', '--status-file', 'x'], expected: undefined },
    { description: 'absent', args: ['a', 'b'], expected: undefined },
  ]))('%s', (_, { args, expected }) => {
    expect(psyncOption(args, '--status-file')).toBe(expected);
  });
});

describe('parseInvocation: the command options and psync arguments', () => {
  test.each(described<{ description: string; command: 'start' | 'stop' | 'check'; argv: string[]; psync?: string[]; name?: string; flags?: string[]; seconds?: [string, number]; error?: RegExp }>([
    { description: 'start: --wait and --name anywhere, the rest is psync', command: 'start', argv: ['-d', '2', '--wait', '5', 'a', '--name=x', 'b'], psync: ['-d', '2', 'a', 'b'], name: 'x', seconds: ['--wait', 5] },
    { description: 'stop: --timeout defaults to 30 s', command: 'stop', argv: ['a', 'b'], psync: ['a', 'b'], seconds: ['--timeout', 30] },
    { description: 'check: --restart is a flag', command: 'check', argv: ['--restart', 'a', 'b'], psync: ['a', 'b'], flags: ['--restart'], seconds: ['--stale-after', 10] },
    { description: 'after --, everything is psync', command: 'check', argv: ['a', '--', '--restart'], psync: ['a', '--', '--restart'], flags: [] },
    { description: "another command's option goes to psync", command: 'stop', argv: ['--wait', '5', 'a', 'b'], psync: ['--wait', '5', 'a', 'b'] },
    { description: 'no psync arguments', command: 'start', argv: ['--name', 'x'], error: /^which psync\?/ },
    { description: 'a value missing', command: 'stop', argv: ['a', 'b', '--timeout'], error: /^--timeout needs a value/ },
    { description: 'seconds that are no number', command: 'stop', argv: ['--timeout', 'soon', 'a'], error: /^--timeout takes a number of seconds, got "soon"/ },
    { description: 'a flag given a value', command: 'check', argv: ['--restart=yes', 'a'], error: /^--restart takes no value/ },
  ]))('%s', (_, { command, argv, psync, name, flags, seconds, error }) => {
    if (error !== undefined) {
      expect(() => parseInvocation(command, argv)).toThrow(error);
      return;
    }
    const got = parseInvocation(command, argv);
    expect(got.psyncArgs).toEqual(psync);
    if (name !== undefined) expect(got.name).toBe(name);
    if (flags !== undefined) expect([...got.flags]).toEqual(flags);
    if (seconds !== undefined) expect(got.seconds(seconds[0])).toBe(seconds[1]);
  });
});

describe('parseStartTime: field 22 of /proc/<pid>/stat', () => {
  const rest = (start: string): string => `S 1 100 100 0 -1 4194560 500 0 0 0 10 5 0 0 20 0 1 0 ${start} 1000000 200 18446744073709551615`;
  test.each(described([
    { description: 'a plain comm', stat: `4242 (node) ${rest('123456')}`, expected: 123456 },
    { description: 'a comm with spaces and parentheses', stat: `4242 (a) b (c) ${rest('99')}`, expected: 99 },
    { description: 'truncated', stat: '4242 (node) S 1', expected: undefined },
    { description: 'not a stat line', stat: 'garbage', expected: undefined },
  ]))('%s', (_, { stat, expected }) => {
    expect(parseStartTime(stat)).toBe(expected);
  });
});

describe('the default directories', () => {
  test.each(described([
    { description: 'XDG_RUNTIME_DIR set', env: { XDG_RUNTIME_DIR: '/run/user/1000' }, uid: 1000, runtime: '/run/user/1000/psync' },
    { description: 'root without it: /run/psync', env: {}, uid: 0, runtime: '/run/psync' },
    { description: 'a relative XDG_RUNTIME_DIR is ignored', env: { XDG_RUNTIME_DIR: 'rel' }, uid: 0, runtime: '/run/psync' },
  ]))('%s', (_, { env, uid, runtime }) => {
    expect(runtimeDir(env, uid)).toBe(runtime);
    expect(statusDir(env, uid)).toBe(`${runtime}/status`);
  });

  test('an ordinary user without XDG_RUNTIME_DIR: a directory of its own in the temp dir', () => {
    expect(runtimeDir({}, 1000)).toMatch(/\/psync-1000$/);
  });

  test.each(described([
    { description: 'XDG_STATE_HOME set', env: { XDG_STATE_HOME: '/var/lib/x' }, expected: '/var/lib/x/psync/log' },
    { description: 'else under HOME', env: { HOME: '/home/u' }, expected: '/home/u/.local/state/psync/log' },
  ]))('logDir: %s', (_, { env, expected }) => {
    expect(logDir(env)).toBe(expected);
  });
});

describe('ensurePrivateDir', () => {
  test('makes the directory and its missing parents 0700', async () => {
    const base = tempDir('psync-private-');
    const dir = join(base, 'a', 'b');
    expect(ensurePrivateDir(dir)).toBe(dir);
    expect((await lstat(dir)).mode & 0o777).toBe(0o700);
    expect((await lstat(join(base, 'a'))).mode & 0o777).toBe(0o700);
  });

  test('an existing one of ours is made 0700', async () => {
    const dir = join(tempDir('psync-private-'), 'open');
    await mkdir(dir, { mode: 0o777 });
    ensurePrivateDir(dir);
    expect((await lstat(dir)).mode & 0o777).toBe(0o700);
  });

  test('a symlink there is refused, never followed', async () => {
    const base = tempDir('psync-private-');
    await mkdir(join(base, 'elsewhere'), { mode: 0o755 });
    await symlink(join(base, 'elsewhere'), join(base, 'link'));
    expect(() => ensurePrivateDir(join(base, 'link'))).toThrow(/is a symlink/);
    expect((await lstat(join(base, 'elsewhere'))).mode & 0o777).toBe(0o755);
  });

  test('a directory of another user is refused', async () => {
    const dir = join(tempDir('psync-private-'), 'theirs');
    await mkdir(dir);
    const { chown } = await import('node:fs/promises');
    await chown(dir, 65534, 65534);
    expect(() => ensurePrivateDir(dir)).toThrow(/belongs to uid 65534, not to this user/);
  });
});
