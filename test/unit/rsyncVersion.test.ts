import { describe, expect, test } from 'vitest';
import { parseRsyncVersion, rsyncVerdict, type RsyncVersion } from '../../src/core/rsyncVersion.js';
import { described } from '../support/table.js';

const OUTPUT_350 = `rsync  version 3.5.0  protocol version 32
Copyright (C) 1996-2026 by Andrew Tridgell, Wayne Davison, and others.
Web site: https://rsync.samba.org/
`;
const v = (major: number, minor: number, patch: number): RsyncVersion => ({ major, minor, patch });

describe('parseRsyncVersion', () => {
  test.each(described<{ description: string; output: string; version: RsyncVersion | undefined }>([
    { description: 'rsync 3.5.0', output: OUTPUT_350, version: v(3, 5, 0) },
    { description: 'Debian 3.2.7', output: 'rsync  version 3.2.7  protocol version 31\n', version: v(3, 2, 7) },
    { description: 'a distribution suffix', output: 'rsync  version 3.2.7-1ubuntu1  protocol version 31\n', version: v(3, 2, 7) },
    { description: 'a leading v', output: 'rsync  version v3.2.3  protocol version 31\n', version: v(3, 2, 3) },
    { description: 'a pre-release', output: 'rsync  version 3.5.0pre1  protocol version 32\n', version: v(3, 5, 0) },
    { description: 'two components', output: 'rsync  version 3.6  protocol version 33\n', version: v(3, 6, 0) },
    { description: 'a later major', output: 'rsync  version 4.0.1  protocol version 33\n', version: v(4, 0, 1) },
    { description: 'nothing (rsync did not run)', output: '', version: undefined },
    { description: 'another program', output: 'openrsync: protocol version 29\n', version: undefined },
    { description: 'the version on a later line only', output: 'hello from bashrc\nrsync  version 3.5.0  protocol version 32\n', version: undefined },
  ]))('%s', (_description, { output, version }) => {
    expect(parseRsyncVersion(output)).toEqual(version);
  });
});

describe('rsyncVerdict', () => {
  test.each(described<{ description: string; output: string; euid: number; kind: 'ok' | 'refuse' | 'warn' }>([
    { description: '3.5.0 as root is fine', output: OUTPUT_350, euid: 0, kind: 'ok' },
    { description: '3.5.0 as a user is fine', output: OUTPUT_350, euid: 1000, kind: 'ok' },
    { description: 'a newer rsync is fine', output: 'rsync  version 3.10.2  protocol version 33\n', euid: 0, kind: 'ok' },
    { description: '3.4.1 as root is refused', output: 'rsync  version 3.4.1  protocol version 32\n', euid: 0, kind: 'refuse' },
    { description: '3.2.7 as root is refused', output: 'rsync  version 3.2.7  protocol version 31\n', euid: 0, kind: 'refuse' },
    { description: 'an unreadable version as root is refused', output: '', euid: 0, kind: 'refuse' },
    { description: '3.4.1 as a user is a warning', output: 'rsync  version 3.4.1  protocol version 32\n', euid: 1000, kind: 'warn' },
    { description: 'an unreadable version as a user is a warning', output: '', euid: 1000, kind: 'warn' },
    { description: 'an unknown uid counts as not root', output: 'rsync  version 3.2.7  protocol version 31\n', euid: -1, kind: 'warn' },
  ]))('%s', (_description, { output, euid, kind }) => {
    const verdict = rsyncVerdict(output, euid, 'this host');
    expect(verdict.kind).toBe(kind);
    if (verdict.kind !== 'ok') expect(verdict.message).toMatch(/^this host has .* 3\.5\.0/);
  });
});

test('an unreadable version is quoted in the message, so the cause can be seen', () => {
  const verdict = rsyncVerdict('sh: 1: exec: rsync: not found\n', 0, 'replica');
  expect(verdict.kind).toBe('refuse');
  expect(verdict.kind !== 'ok' && verdict.message).toContain('"sh: 1: exec: rsync: not found\\n"');
});
