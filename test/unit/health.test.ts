import { describe, expect, test } from 'vitest';
import { ageSeconds, instanceProblems, isSettled, observedState, pairProblem, type StatusView } from '../../src/core/health.js';
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
    { description: 'the hung heartbeat wins over the rest', status: { state: 'reconnecting', heartbeatAt: ago(60) }, expected: 'pair web: no heartbeat for 60 s (psync hangs?)' },
    {
      description: 'failed while psync runs on for other pairs: its error, however old its last write (an ended pair is written no more)',
      status: { state: 'failed', lastError: 'the right root disappeared', heartbeatAt: ago(60) },
      expected: 'pair web failed: the right root disappeared',
    },
    { description: 'stopped while psync runs on for other pairs', status: { state: 'stopped', heartbeatAt: ago(60) }, expected: 'pair web is stopped, not watching' },
  ]))('%s', (_, { status, expected }) => {
    expect(pairProblem({ ...healthy, ...status } as StatusView, NOW, LIMITS)).toBe(expected);
  });
});

describe('instanceProblems: why the pairs of one live psync are not all healthy', () => {
  const pair = (name: string, status: Partial<StatusView> = {}): StatusView => ({ ...healthy, name, ...status });
  test.each(described<{ description: string; statuses: StatusView[]; expected: string[] | undefined; problems: string[] }>([
    { description: 'one pair, healthy', statuses: [pair('web')], expected: undefined, problems: [] },
    { description: 'one pair expected, none published', statuses: [], expected: undefined, problems: ['no pair has published a status'] },
    { description: 'every listed pair healthy', statuses: [pair('a'), pair('b')], expected: ['a', 'b'], problems: [] },
    { description: 'a listed pair that published nothing is named', statuses: [pair('a')], expected: ['a', 'b'], problems: ['pair b has published no status'] },
    {
      description: 'a failed pair is named, the healthy one is not',
      statuses: [pair('a', { state: 'failed', lastError: 'SRCROOT /x does not exist' }), pair('b')],
      expected: ['a', 'b'],
      problems: ['pair a failed: SRCROOT /x does not exist'],
    },
    {
      description: 'each pair with a problem, then the missing ones',
      statuses: [pair('a', { state: 'reconciling' }), pair('b', { state: 'failed', lastError: 'gone' })],
      expected: ['a', 'b', 'c'],
      problems: ['pair a is reconciling, not watching', 'pair b failed: gone', 'pair c has published no status'],
    },
  ]))('%s', (_, { statuses, expected, problems }) => {
    expect(instanceProblems(statuses, expected, NOW, LIMITS)).toEqual(problems);
  });
});

describe('isSettled: a start-up that is over', () => {
  test.each(described([
    { description: 'watching', state: 'watching', expected: true },
    { description: 'failed', state: 'failed', expected: true },
    { description: 'stopped', state: 'stopped', expected: true },
    { description: 'starting', state: 'starting', expected: false },
    { description: 'reconciling', state: 'reconciling', expected: false },
    { description: 'reconnecting (it may watch yet)', state: 'reconnecting', expected: false },
  ]))('%s', (_, { state, expected }) => {
    expect(isSettled({ state })).toBe(expected);
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
