import { describe, expect, test } from 'vitest';
import { ageSeconds, observedState, pairProblem, type StatusView } from '../../src/core/health.js';
import { described } from '../support/table.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const ago = (seconds: number): string => new Date(NOW - seconds * 1000).toISOString();
const LIMITS = { heartbeatStaleMs: 10_000, queueStuckMs: 600_000 };
const healthy: StatusView = { name: 'web', state: 'watching', connected: { left: true, right: true }, queued: 0, progressAt: ago(0), heartbeatAt: ago(1) };

describe('observedState: what a reader calls a pair', () => {
  test.each(described([
    { description: 'alive: what it says', state: 'watching', alive: true, expected: 'watching' },
    { description: 'alive and reconnecting', state: 'reconnecting', alive: true, expected: 'reconnecting' },
    { description: 'gone after writing stopped: stopped', state: 'stopped', alive: false, expected: 'stopped' },
    { description: 'gone after writing failed: failed', state: 'failed', alive: false, expected: 'failed' },
    { description: 'gone while watching (kill -9): dead', state: 'watching', alive: false, expected: 'dead' },
    { description: 'gone while stopping (killed on its way out): dead', state: 'stopping', alive: false, expected: 'dead' },
  ]))('%s', (_, { state, alive, expected }) => {
    expect(observedState({ state }, alive)).toBe(expected);
  });
});

describe('pairProblem: why a live pair is not healthy', () => {
  test.each(described<{ description: string; status: { [K in keyof StatusView]?: StatusView[K] | undefined }; expected: string | undefined }>([
    { description: 'watching, both connected, fresh heartbeat, empty queue: healthy', status: {}, expected: undefined },
    { description: 'a queue that moved within --stuck-after: healthy', status: { queued: 5, progressAt: ago(599) }, expected: undefined },
    { description: 'a queue that has not moved for longer: stuck', status: { queued: 5, progressAt: ago(601) }, expected: 'pair web: 5 actions queued with no progress for 601 s' },
    { description: 'a heartbeat older than --stale-after: hung', status: { heartbeatAt: ago(11) }, expected: 'pair web: no heartbeat for 11 s (psync hangs?)' },
    { description: 'no heartbeat at all (an older psync wrote it)', status: { heartbeatAt: undefined }, expected: 'pair web: no heartbeat for ever (psync hangs?)' },
    {
      description: 'reconnecting: the attempt and the last error',
      status: { state: 'reconnecting', reconnect: { attempt: 3, since: ago(30), lastError: 'connection refused' } },
      expected: `pair web is reconnecting (attempt 3, since ${ago(30)}): connection refused`,
    },
    { description: 'failed: its error', status: { state: 'failed', lastError: 'the left root disappeared' }, expected: 'pair web failed: the left root disappeared' },
    { description: 'still reconciling at start-up', status: { state: 'reconciling' }, expected: 'pair web is reconciling, not watching' },
    { description: 'a side not connected', status: { connected: { left: true, right: false } }, expected: 'pair web: right side not connected' },
    { description: 'the hung heartbeat wins over the rest', status: { state: 'failed', heartbeatAt: ago(60) }, expected: 'pair web: no heartbeat for 60 s (psync hangs?)' },
  ]))('%s', (_, { status, expected }) => {
    expect(pairProblem({ ...healthy, ...status } as StatusView, NOW, LIMITS)).toBe(expected);
  });
});

describe('ageSeconds', () => {
  test.each(described([
    { description: 'whole seconds, rounded down', iso: new Date(NOW - 2_900).toISOString(), expected: 2 },
    { description: 'a time in the future is 0', iso: ago(-5), expected: 0 },
    { description: 'missing', iso: undefined, expected: undefined },
    { description: 'unreadable', iso: 'yesterday', expected: undefined },
  ]))('%s', (_, { iso, expected }) => {
    expect(ageSeconds(iso, NOW)).toBe(expected);
  });
});
