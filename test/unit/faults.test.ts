import { describe, expect, test } from 'vitest';
import { BannedError, ConfigError, ConnectionError, ProtocolError, RefusedError, RootInUseError, RootUnusableError, RsyncError, SafetyError } from '../../src/core/errors.js';
import { BACKOFF_MAX_MS, backoffMs, faultVerdict, reconnectExpired, type FaultPhase, type FaultVerdict } from '../../src/core/faults.js';
import { described } from '../support/table.js';

describe('faultVerdict', () => {
  test.each(described<{ description: string; error: Error; phase: FaultPhase; verdict: FaultVerdict }>([
    { description: 'the first connect failing (a typo, an unreachable host): exit, the user fixes it', error: new ConnectionError('cannot reach'), phase: 'firstStart', verdict: 'exit' },
    { description: 'the remote psync missing at the first start: exit', error: new ProtocolError('exited before it started'), phase: 'firstStart', verdict: 'exit' },
    { description: 'a dropped link while running: retry', error: new ConnectionError('the right side stopped unexpectedly'), phase: 'running', verdict: 'retry' },
    { description: 'a stalled side (no heartbeat) while running: retry', error: new ConnectionError('no heartbeat from the left filter'), phase: 'running', verdict: 'retry' },
    { description: 'the host unreachable while reconnecting: retry', error: new ConnectionError('cannot reach'), phase: 'reconnecting', verdict: 'retry' },
    { description: 'a changed host key while reconnecting: exit at once', error: new RefusedError('host key does not match'), phase: 'reconnecting', verdict: 'exit' },
    { description: 'an authentication failure while reconnecting: exit at once', error: new RefusedError('authentication failed'), phase: 'reconnecting', verdict: 'exit' },
    { description: 'a refusal while running (never thrown there, but not retried either)', error: new RefusedError('refused'), phase: 'running', verdict: 'exit' },
    { description: "a side that cannot start yet while reconnecting (its old process holds the root's lock): retry", error: new ProtocolError('right filter: another psync already watches'), phase: 'reconnecting', verdict: 'retry' },
    { description: "a side's root locked by another psync at the first start: exit (7)", error: new RootInUseError('another psync (pid 12) already watches /r'), phase: 'firstStart', verdict: 'exit' },
    { description: "a side's root missing at the first start: exit (2)", error: new RootUnusableError('cannot use root /r'), phase: 'firstStart', verdict: 'exit' },
    { description: "a side's root still locked while reconnecting (its old side is on its way out): retry", error: new RootInUseError('another psync (pid 12) already watches /r'), phase: 'reconnecting', verdict: 'retry' },
    { description: "a side's root not there yet while reconnecting (not mounted yet): retry", error: new RootUnusableError('cannot use root /r'), phase: 'reconnecting', verdict: 'retry' },
    { description: 'a forged frame or a vanished root while running: exit 5 as always', error: new ProtocolError('right filter: root vanished'), phase: 'running', verdict: 'exit' },
    { description: 'a safety halt at the reconnect reconcile (marker gone, too many deletes): exit', error: new SafetyError('halted'), phase: 'reconnecting', verdict: 'exit' },
    { description: 'bad settings: exit', error: new ConfigError('bad'), phase: 'reconnecting', verdict: 'exit' },
    { description: 'a --banned program: exit', error: new BannedError('banned'), phase: 'running', verdict: 'exit' },
    { description: 'an rsync failure that escaped its retries: exit', error: new RsyncError('rsync failed', 12), phase: 'running', verdict: 'exit' },
    { description: 'an internal error: exit', error: new TypeError('x is undefined'), phase: 'running', verdict: 'exit' },
  ]))('%s', (_description, { error, phase, verdict }) => {
    expect(faultVerdict(error, phase)).toBe(verdict);
  });
});

describe('backoffMs', () => {
  test.each(described<{ description: string; attempt: number; random: number; ms: number }>([
    { description: 'the first attempt waits 1 s (no jitter at 0.5)', attempt: 1, random: 0.5, ms: 1_000 },
    { description: 'it doubles', attempt: 2, random: 0.5, ms: 2_000 },
    { description: 'and doubles again', attempt: 4, random: 0.5, ms: 8_000 },
    { description: 'up to 30 s', attempt: 6, random: 0.5, ms: BACKOFF_MAX_MS },
    { description: 'and stays there, however many attempts', attempt: 1_000, random: 0.5, ms: BACKOFF_MAX_MS },
    { description: 'jitter: 20 % less at random 0', attempt: 3, random: 0, ms: 3_200 },
    { description: 'jitter: almost 20 % more near random 1', attempt: 3, random: 0.999, ms: 4_798 },
  ]))('%s', (_description, { attempt, random, ms }) => {
    expect(backoffMs(attempt, random)).toBe(ms);
  });
});

describe('reconnectExpired', () => {
  test.each(described<{ description: string; elapsedMs: number; timeout: number | undefined; expired: boolean }>([
    { description: 'no timeout: never', elapsedMs: 10 * 24 * 3600_000, timeout: undefined, expired: false },
    { description: '0: at once', elapsedMs: 0, timeout: 0, expired: true },
    { description: 'within the timeout', elapsedMs: 59_999, timeout: 60, expired: false },
    { description: 'at the timeout', elapsedMs: 60_000, timeout: 60, expired: true },
  ]))('%s', (_description, { elapsedMs, timeout, expired }) => {
    expect(reconnectExpired(1_000, 1_000 + elapsedMs, timeout)).toBe(expired);
  });
});
