/** What a root's lock says, and how a refused second psync names the psync to stop (src/filter/rootLock.ts). */

import { describe, expect, test } from 'vitest';
import { describeHolder, parseLock, type LockHolder } from '../../src/filter/rootLock.js';
import { described } from '../support/table.js';

describe('parseLock', () => {
  test.each(described<{ description: string; text: string; holder: LockHolder | undefined }>([
    { description: 'a pid with its owner (this version)', text: '4242\n4100@files1\n', holder: { pid: 4242, owner: { pid: 4100, host: 'files1' } } },
    { description: 'a pid alone (older psync)', text: '4242\n', holder: { pid: 4242 } },
    { description: 'a pid without a newline', text: '4242', holder: { pid: 4242 } },
    { description: 'not a pid: not ours', text: 'not a pid\n', holder: undefined },
    { description: 'an owner line that is not an owner: not ours', text: '4242\nrm -rf /\n', holder: undefined },
    { description: 'a pid of 0: not ours', text: '0\n', holder: undefined },
    { description: 'empty: not ours', text: '', holder: undefined },
  ]))('%s', (_description, { text, holder }) => {
    expect(parseLock(text)).toEqual(holder);
  });
});

describe('describeHolder', () => {
  test.each(described<{ description: string; holder: LockHolder; expected: string }>([
    { description: 'the owner on this host: its pid', holder: { pid: 12, owner: { pid: 10, host: 'here' } }, expected: 'pid 10' },
    { description: 'the owner on another host (a remote side): its pid and host', holder: { pid: 12, owner: { pid: 10, host: 'there' } }, expected: 'pid 10 on there' },
    { description: 'no owner (an older psync): the lock pid', holder: { pid: 12 }, expected: 'pid 12' },
  ]))('%s', (_description, { holder, expected }) => {
    expect(describeHolder(holder, 'here')).toBe(expected);
  });
});
