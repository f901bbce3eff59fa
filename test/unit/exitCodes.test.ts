/** exitCodeOf: each of psync's error classes has its exit code (the README's table); anything else is a bug. */

import { describe, expect, test } from 'vitest';
import { BannedError, ConfigError, ConnectionError, ProtocolError, RefusedError, RootInUseError, RootUnusableError, RsyncError, SafetyError } from '../../src/core/errors.js';
import { EXIT, exitCodeOf } from '../../src/exitCodes.js';
import { described } from '../support/table.js';

const rows: ReadonlyArray<{ description: string; error: unknown; code: number }> = [
  { description: 'bad settings: 2', error: new ConfigError('x'), code: EXIT.usage },
  { description: 'a missing root on a side is bad settings: 2', error: new RootUnusableError('x'), code: EXIT.usage },
  { description: 'an unreachable host: 3', error: new ConnectionError('x'), code: EXIT.connection },
  { description: 'a refused host key or login is a connection error: 3', error: new RefusedError('x'), code: EXIT.connection },
  { description: 'rsync failed: 4', error: new RsyncError('x', 12), code: EXIT.rsync },
  { description: 'a side failed or spoke wrongly: 5', error: new ProtocolError('x'), code: EXIT.protocol },
  { description: 'a --banned program runs: 6', error: new BannedError('x'), code: EXIT.banned },
  { description: 'refused as unsafe: 7', error: new SafetyError('x'), code: EXIT.safety },
  { description: 'another psync holds a root: unsafe, 7', error: new RootInUseError('x'), code: EXIT.safety },
  { description: 'any other Error is a bug: 1', error: new TypeError('x'), code: EXIT.internal },
  { description: 'something thrown that is no Error: 1', error: 'a string', code: EXIT.internal },
];

describe('exitCodeOf', () => {
  test.each(described(rows))('%s', (_, { error, code }) => {
    expect(exitCodeOf(error)).toBe(code);
  });
});
