/**
 * What psync does about a fault that ended a session (supervisor.ts): try
 * again after a backoff, or exit with the error's code. Pure, so that the
 * table test can name every case.
 *
 * - Before the pair was ever up (the first connect, the first start of the
 *   sides) nothing is retried: a typo'd host, a refused key or a missing
 *   remote psync is the user's to fix, and a service manager restarts
 *   psync when the fault was one worth retrying (scripts/psync@.service).
 * - Once the pair was up, a lost link, a side that died or stopped
 *   answering (ConnectionError) is retried; so is anything that fails while
 *   psync reconnects (a side that cannot start yet: its old process still
 *   holds the root's lock, its filesystem is not mounted yet: RootInUseError,
 *   RootUnusableError, or a ProtocolError), except
 *   what a person must act on: a refused host key or login (RefusedError),
 *   bad settings (ConfigError), a safety halt (SafetyError), a --banned
 *   program (BannedError).
 * - A ProtocolError while the pair runs (a forged frame, a root that
 *   vanished) ends psync, as it always did.
 */

import { BannedError, ConfigError, ConnectionError, ProtocolError, RefusedError, RootInUseError, RootUnusableError, SafetyError } from './errors.js';

/** Where psync was when the fault came. */
export type FaultPhase = 'firstStart' | 'running' | 'reconnecting';

export type FaultVerdict = 'retry' | 'exit';

export function faultVerdict(error: Error, phase: FaultPhase): FaultVerdict {
  if (phase === 'firstStart') return 'exit';
  if ((error instanceof RootInUseError || error instanceof RootUnusableError) && phase === 'reconnecting') return 'retry';
  if (error instanceof RefusedError || error instanceof ConfigError || error instanceof SafetyError || error instanceof BannedError) return 'exit';
  if (error instanceof ConnectionError) return 'retry';
  if (error instanceof ProtocolError) return phase === 'reconnecting' ? 'retry' : 'exit';
  return 'exit';
}

export const BACKOFF_FIRST_MS = 1_000;
export const BACKOFF_MAX_MS = 30_000;

/**
 * How long to wait before reconnect attempt `attempt` (1, 2, ...): 1 s
 * doubling to 30 s, each with up to ±20 % jitter (`random` in [0, 1)) so
 * that many pairs cut off together do not all knock at once.
 */
export function backoffMs(attempt: number, random: number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, Math.min(attempt - 1, 30)));
  return Math.round(base * (0.8 + 0.4 * random));
}

/**
 * Has psync tried long enough? `timeoutSeconds` undefined: never give up;
 * 0: give up at once (no reconnect at all).
 */
export function reconnectExpired(outageStartedMs: number, nowMs: number, timeoutSeconds: number | undefined): boolean {
  if (timeoutSeconds === undefined) return false;
  return nowMs - outageStartedMs >= timeoutSeconds * 1000;
}
