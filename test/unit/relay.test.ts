import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { tempDir } from '../support/tmp.js';
import {
  encodeRelayHeader,
  MAX_HEADER_BYTES,
  parseRelayHeader,
  relayCommand,
  relayScript,
  type RelayCommand,
  type RelayHeader,
  type RelayRoot,
} from '../../src/core/relay.js';
import { shellQuote } from '../../src/transport/endpoint.js';
import { described } from '../support/table.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

/** The header and protected args psync's rsync sends (captured from rsync 3.5.0), then the start of its stream. */
const list = (args: readonly string[]): string => `${args.map((a) => `${a}\0`).join('')}\0`;
const PUSH_ARGS = ['rsync', '--server', '-slogDtpIRe.LsfxCIvu'];
const PUSH_PROTECTED = ['rsync', '--log-format=X', '--backup-dir', '.psync/replaced/1-6', '-@-1', '--numeric-ids', '.', '/srv/b/'];
const PULL_ARGS = ['rsync', '--server', '--sender', '-sulogDtpre.iLsfxCIvu'];
const PULL_PROTECTED = ['rsync', '--files-from=-', '--from0', '.', '/srv/b/'];
const STREAM = '\x1f\0\0\0';

describe('parseRelayHeader', () => {
  test.each(described<{ description: string; data: Buffer; header: RelayHeader }>([
    { description: 'nothing yet', data: bytes(''), header: { kind: 'incomplete' } },
    { description: 'a token but no command yet', data: bytes('t0k\nrsync\0--ser'), header: { kind: 'incomplete' } },
    { description: 'a command but not all its protected args yet', data: bytes(`t0k\n${list(PUSH_ARGS)}rsync\0--log-format=X\0.\0/sr`), header: { kind: 'incomplete' } },
    { description: 'a probe', data: bytes('t0k\npsync-probe\0\0'), header: { kind: 'probe', token: 't0k', rest: bytes('') } },
    {
      description: 'a push: the server command, its protected args, and the start of rsync\'s stream (all of it rsync\'s)',
      data: bytes(`t0k\n${list(PUSH_ARGS)}${list(PUSH_PROTECTED)}${STREAM}`),
      header: { kind: 'command', token: 't0k', args: PUSH_ARGS, protectedArgs: PUSH_PROTECTED, rest: bytes(`${list(PUSH_PROTECTED)}${STREAM}`) },
    },
    {
      description: 'a pull (--sender)',
      data: bytes(`t0k\n${list(PULL_ARGS)}${list(PULL_PROTECTED)}`),
      header: { kind: 'command', token: 't0k', args: PULL_ARGS, protectedArgs: PULL_PROTECTED, rest: bytes(list(PULL_PROTECTED)) },
    },
    { description: 'a command that is not an rsync server', data: bytes('t0k\nsh\0-c\0id\0\0'), header: { kind: 'bad', reason: 'not an rsync server command: ["sh","-c"]' } },
    { description: 'an empty command', data: bytes('t0k\n\0'), header: { kind: 'bad', reason: 'not an rsync server command: []' } },
    {
      description: 'another binary with --server',
      data: bytes('t0k\n/bin/sh\0--server\0-slogDtpre.iLsfxCIvu\0\0'),
      header: { kind: 'bad', reason: 'not an rsync server command: ["/bin/sh","--server"]' },
    },
    {
      description: 'rsync without --protect-args (paths on the command line)',
      data: bytes('t0k\nrsync\0--server\0-logDtpre.iLsfxCIvu\0.\0/etc/\0\0'),
      header: { kind: 'bad', reason: 'not the server command line of rsync --protect-args: ["-logDtpre.iLsfxCIvu",".","/etc/"]' },
    },
    {
      description: 'a link-following flag (-L)',
      data: bytes('t0k\nrsync\0--server\0--sender\0-sLlogDtpre.iLsfxCIvu\0\0'),
      header: { kind: 'bad', reason: 'refusing a link-following flag in "-sLlogDtpre.iLsfxCIvu"' },
    },
    { description: 'a daemon', data: bytes('t0k\nrsync\0--server\0--daemon\0.\0\0'), header: { kind: 'bad', reason: 'not the server command line of rsync --protect-args: ["--daemon","."]' } },
  ]))('%s', (_description, { data, header }) => {
    expect(parseRelayHeader(data)).toEqual(header);
  });

  test('a header that never ends is refused once it is too long', () => {
    expect(parseRelayHeader(Buffer.alloc(MAX_HEADER_BYTES + 1, 0x61))).toMatchObject({ kind: 'bad' });
    expect(parseRelayHeader(Buffer.concat([bytes('t\n'), Buffer.alloc(MAX_HEADER_BYTES + 1, 0x61)]))).toMatchObject({ kind: 'bad' });
    expect(parseRelayHeader(Buffer.concat([bytes(`t\n${list(PUSH_ARGS)}rsync\0`), Buffer.alloc(MAX_HEADER_BYTES + 1, 0x61)]))).toMatchObject({ kind: 'bad' });
  });

  test('round trip through encodeRelayHeader, with a non-ASCII root', () => {
    const header = parseRelayHeader(Buffer.concat([encodeRelayHeader('abc', PUSH_ARGS), encodeRelayHeader('', ['rsync', '.', '/srv/é']).subarray(1), bytes('DATA')]));
    expect(header).toMatchObject({ kind: 'command', token: 'abc', args: PUSH_ARGS, protectedArgs: ['rsync', '.', '/srv/é'] });
  });
});

describe('relayCommand: only rsync --server, confined to the root, every transfer root under it', () => {
  const where: RelayRoot = { root: '/srv/b', realRoot: '/data/b', cwd: '/home/u' };
  const command = (protectedArgs: readonly string[], args: readonly string[] = PUSH_ARGS): Extract<RelayHeader, { kind: 'command' }> => ({
    kind: 'command',
    token: 't',
    args,
    protectedArgs,
    rest: bytes(''),
  });
  const CONFINED = '--confine-root=/data/b';

  test.each(described<{ description: string; args?: readonly string[]; protectedArgs: readonly string[]; where?: RelayRoot; result: RelayCommand }>([
    { description: 'a push into the root: rsync --server, with --confine-root added', protectedArgs: PUSH_PROTECTED, result: { ok: true, argv: [...PUSH_ARGS, CONFINED] } },
    { description: 'a pull from the root', args: PULL_ARGS, protectedArgs: PULL_PROTECTED, result: { ok: true, argv: [...PULL_ARGS, CONFINED] } },
    { description: 'the root without a trailing slash', protectedArgs: ['rsync', '.', '/srv/b'], result: { ok: true, argv: [...PUSH_ARGS, CONFINED] } },
    { description: 'the root by its real path', protectedArgs: ['rsync', '.', '/data/b/'], result: { ok: true, argv: [...PUSH_ARGS, CONFINED] } },
    { description: 'a directory below the root', protectedArgs: ['rsync', '.', '/srv/b/sub/'], result: { ok: true, argv: [...PUSH_ARGS, CONFINED] } },
    {
      description: 'a relative root, resolved from the relay\'s directory',
      protectedArgs: ['rsync', '.', 'share/'],
      where: { root: '/home/u/share', realRoot: '/home/u/share', cwd: '/home/u' },
      result: { ok: true, argv: [...PUSH_ARGS, '--confine-root=/home/u/share'] },
    },
    { description: 'a --backup-dir of "." is a value, not the separator', protectedArgs: ['rsync', '--backup-dir', '.', '.', '/srv/b/'], result: { ok: true, argv: [...PUSH_ARGS, CONFINED] } },
    { description: 'another directory', protectedArgs: ['rsync', '.', '/etc/'], result: { ok: false, reason: 'refusing a transfer root outside "/srv/b": "/etc/"' } },
    { description: 'a sibling that shares the prefix', protectedArgs: ['rsync', '.', '/srv/bb/'], result: { ok: false, reason: 'refusing a transfer root outside "/srv/b": "/srv/bb/"' } },
    { description: 'a way out with ..', protectedArgs: ['rsync', '.', '/srv/b/../../etc/'], result: { ok: false, reason: 'refusing a transfer root outside "/srv/b": "/srv/b/../../etc/"' } },
    { description: 'a second root outside', protectedArgs: ['rsync', '.', '/srv/b/', '/root/'], result: { ok: false, reason: 'refusing a transfer root outside "/srv/b": "/root/"' } },
    { description: 'the client\'s own --confine-root (a later one wins in rsync)', protectedArgs: ['rsync', '--confine-root=/', '.', '/srv/b/'], result: { ok: false, reason: 'refusing --confine-root' } },
    { description: '--insecure-links', protectedArgs: ['rsync', '--insecure-links', '.', '/srv/b/'], result: { ok: false, reason: 'refusing --insecure-links' } },
    { description: '--copy-unsafe-links', protectedArgs: ['rsync', '--copy-unsafe-links', '.', '/srv/b/'], result: { ok: false, reason: 'refusing --copy-unsafe-links' } },
    { description: '--keep-dirlinks', protectedArgs: ['rsync', '--keep-dirlinks', '.', '/srv/b/'], result: { ok: false, reason: 'refusing --keep-dirlinks' } },
    { description: 'a --log-file', protectedArgs: ['rsync', '--log-file=/etc/cron.d/x', '.', '/srv/b/'], result: { ok: false, reason: 'refusing --log-file' } },
    { description: 'a file list read on the server', protectedArgs: ['rsync', '--files-from=/etc/shadow', '.', '/srv/b/'], result: { ok: false, reason: 'refusing "--files-from=/etc/shadow": a file list comes over the connection only' } },
    { description: 'a short option that is not one rsync sends', protectedArgs: ['rsync', '-L', '.', '/srv/b/'], result: { ok: false, reason: 'unexpected argument "-L"' } },
    { description: 'a bare word among the options', protectedArgs: ['rsync', '/etc/', '.', '/srv/b/'], result: { ok: false, reason: 'unexpected argument "/etc/"' } },
    { description: 'no transfer root', protectedArgs: ['rsync', '--numeric-ids'], result: { ok: false, reason: 'no transfer root' } },
    { description: 'protected args that are not rsync\'s', protectedArgs: ['sh', '.', '/srv/b/'], result: { ok: false, reason: 'protected args that do not start with rsync: "sh"' } },
    { description: 'another binary', args: ['/bin/sh', '--server', '-s'], protectedArgs: PUSH_PROTECTED, result: { ok: false, reason: 'not an rsync server command: ["/bin/sh","--server"]' } },
    {
      description: 'a relative real root (never confined by it)',
      protectedArgs: PUSH_PROTECTED,
      where: { root: '/srv/b', realRoot: 'srv/b', cwd: '/' },
      result: { ok: false, reason: 'the root\'s real path is not absolute: "srv/b"' },
    },
  ]))('%s', (_description, row) => {
    expect(relayCommand(command(row.protectedArgs, row.args), row.where ?? where)).toEqual(row.result);
  });
});

describe('relayScript', () => {
  test('refuses a token that would need quoting', () => {
    expect(() => relayScript('a b', { argv: ['ssh'], host: 'h', port: 1 }, shellQuote)).toThrow();
  });

  test('sends the header, then the stream, to `ssh ... -W 127.0.0.1:PORT -- HOST` (run with a fake ssh)', () => {
    const dir = tempDir('psync-relay-');
    // A stand-in for ssh that writes its argv to one file and its stdin to another.
    const fakeSsh = join(dir, 'fake ssh');
    writeFileSync(fakeSsh, `#!/bin/sh\nprintf '%s|' "$@" > '${dir}/argv'; cat > '${dir}/stdin'\n`, { mode: 0o755 });
    const script = join(dir, 'rsh');
    writeFileSync(script, relayScript('T0K', { argv: [fakeSsh, '-S', '/tmp/cm x'], host: 'host', port: 4242 }, shellQuote), { mode: 0o700 });
    execFileSync(script, ['host', 'rsync', '--server', '-e.x', '.', 'dir with space/'], { input: 'abc' });
    expect(readFileSync(join(dir, 'argv'), 'utf8')).toBe('-S|/tmp/cm x|-W|127.0.0.1:4242|--|host|');
    expect(readFileSync(join(dir, 'stdin'))).toEqual(Buffer.concat([encodeRelayHeader('T0K', ['rsync', '--server', '-e.x', '.', 'dir with space/']), bytes('abc')]));
  });
});
