import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { encodeRelayHeader, MAX_HEADER_BYTES, parseRelayHeader, relayScript, type RelayHeader } from '../../src/core/relay.js';
import { shellQuote } from '../../src/transport/endpoint.js';
import { described } from '../support/table.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

describe('parseRelayHeader', () => {
  test.each(described<{ description: string; data: Buffer; header: RelayHeader }>([
    { description: 'nothing yet', data: bytes(''), header: { kind: 'incomplete' } },
    { description: 'a token but no command yet', data: bytes('t0k\nrsync\0--ser'), header: { kind: 'incomplete' } },
    { description: 'a probe', data: bytes('t0k\npsync-probe\0\0'), header: { kind: 'probe', token: 't0k', rest: bytes('') } },
    {
      description: 'a server command and the start of rsync\'s stream',
      data: bytes('t0k\nrsync\0--server\0-logDtpre.iLsfxCIvu\0.\0/srv/a b/\0\0\x1f\0\0\0'),
      header: { kind: 'command', token: 't0k', args: ['rsync', '--server', '-logDtpre.iLsfxCIvu', '.', '/srv/a b/'], rest: bytes('\x1f\0\0\0') },
    },
    { description: 'a command that is not an rsync server', data: bytes('t0k\nsh\0-c\0id\0\0'), header: { kind: 'bad', reason: 'not an rsync server command: ["sh","-c"]' } },
    { description: 'an empty command', data: bytes('t0k\n\0'), header: { kind: 'bad', reason: 'not an rsync server command: []' } },
  ]))('%s', (_description, { data, header }) => {
    expect(parseRelayHeader(data)).toEqual(header);
  });

  test('a header that never ends is refused once it is too long', () => {
    expect(parseRelayHeader(Buffer.alloc(MAX_HEADER_BYTES + 1, 0x61))).toMatchObject({ kind: 'bad' });
    expect(parseRelayHeader(Buffer.concat([bytes('t\n'), Buffer.alloc(MAX_HEADER_BYTES + 1, 0x61)]))).toMatchObject({ kind: 'bad' });
  });

  test('round trip through encodeRelayHeader, with a non-ASCII argument', () => {
    const header = parseRelayHeader(Buffer.concat([encodeRelayHeader('abc', ['rsync', '--server', '.', '/srv/é']), bytes('DATA')]));
    expect(header).toEqual({ kind: 'command', token: 'abc', args: ['rsync', '--server', '.', '/srv/é'], rest: bytes('DATA') });
  });
});

describe('relayScript', () => {
  test('refuses a token that would need quoting', () => {
    expect(() => relayScript('a b', { argv: ['ssh'], host: 'h', port: 1 }, shellQuote)).toThrow();
  });

  test('sends the header, then the stream, to `ssh ... -W 127.0.0.1:PORT -- HOST` (run with a fake ssh)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'psync-relay-'));
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
