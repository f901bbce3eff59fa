/**
 * Judging a pair from its status file (brain/status.ts), for `psync status`
 * and the service commands: pure functions of what the file says, whether
 * its process is still alive, and `now` (ms).
 *
 * - observedState: what a reader should call the pair. A process that is
 *   gone (or whose pid another program now holds) wrote `stopped` or
 *   `failed` on its way out when it ended by itself; anything else means it
 *   was killed or crashed: `dead`.
 * - pairProblem: why a running pair is not healthy, in one line, or
 *   undefined: it must be watching with both sides connected, its heartbeat
 *   recent (a hung psync stops rewriting it), and its queue moving. A pair
 *   that ended (`failed`, `stopped`) while its process runs on for other
 *   pairs wrote its status for the last time: its heartbeat stops, and its
 *   state, not the heartbeat, says why.
 * - instanceProblems: the same for every pair of one psync process, and
 *   the pairs it should run that published no status.
 * - isSettled: a pair's start-up is over (watching, or ended).
 */

/** What health needs from a status file (a subset of brain/status.ts PairStatus). */
export interface StatusView {
  readonly name: string;
  readonly state: string;
  readonly connected?: { readonly left: boolean; readonly right: boolean };
  readonly queued: number;
  readonly progressAt?: string;
  readonly heartbeatAt?: string;
  readonly lastError?: string;
  readonly reconnect?: { readonly attempt: number; readonly since: string; readonly lastError: string };
}

export interface HealthLimits {
  /** A heartbeat older than this (ms) means psync is hung. */
  readonly heartbeatStaleMs: number;
  /** A non-empty queue that has not moved for this long (ms) is stuck. */
  readonly queueStuckMs: number;
}

/** States a psync writes as it ends: its process is gone after them, and that is no death. */
const FINAL_STATES = new Set(['stopped', 'failed']);

export function observedState(status: Pick<StatusView, 'state'>, alive: boolean): string {
  return alive || FINAL_STATES.has(status.state) ? status.state : 'dead';
}

/** Seconds between an ISO time and `now`, rounded down; undefined for a missing or unreadable time. */
export function ageSeconds(iso: string | undefined, now: number): number | undefined {
  const at = iso === undefined ? NaN : Date.parse(iso);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.floor((now - at) / 1000));
}

/** Why the pair of a live psync is not healthy, or undefined when it is. */
export function pairProblem(status: StatusView, now: number, limits: HealthLimits): string | undefined {
  const who = `pair ${status.name}`;
  if (status.state === 'failed') return `${who} failed: ${status.lastError ?? 'no error recorded'}`;
  if (status.state === 'stopped') return `${who} is stopped, not watching`;
  const heartbeat = ageSeconds(status.heartbeatAt, now);
  if (heartbeat === undefined || heartbeat * 1000 > limits.heartbeatStaleMs) {
    return `${who}: no heartbeat for ${heartbeat === undefined ? 'ever' : `${heartbeat} s`} (psync hangs?)`;
  }
  if (status.state === 'reconnecting') {
    const r = status.reconnect;
    return `${who} is reconnecting${r === undefined ? '' : ` (attempt ${r.attempt}, since ${r.since}): ${r.lastError}`}`;
  }
  if (status.state !== 'watching') return `${who} is ${status.state}, not watching`;
  const down = (['left', 'right'] as const).filter((side) => status.connected?.[side] !== true);
  if (down.length > 0) return `${who}: ${down.join(' and ')} side not connected`;
  const still = ageSeconds(status.progressAt, now);
  if (status.queued > 0 && (still === undefined || still * 1000 > limits.queueStuckMs)) {
    return `${who}: ${status.queued} actions queued with no progress for ${still === undefined ? 'ever' : `${still} s`}`;
  }
  return undefined;
}

/** A pair whose start-up is over: it watches, or it ended (start stops waiting for it). */
export function isSettled(status: Pick<StatusView, 'state'>): boolean {
  return status.state === 'watching' || FINAL_STATES.has(status.state);
}

/**
 * Why the pairs of one live psync are not all healthy (one line per pair),
 * none when they are. `expected`: the names of the pairs it runs when known
 * (a config file's `pairs`); a pair that published no status is named.
 * Without names, it runs one pair, which must have published one.
 */
export function instanceProblems(statuses: readonly StatusView[], expected: readonly string[] | undefined, now: number, limits: HealthLimits): string[] {
  const published = new Set(statuses.map((status) => status.name));
  const missing =
    expected === undefined
      ? statuses.length === 0
        ? ['no pair has published a status']
        : []
      : expected.filter((name) => !published.has(name)).map((name) => `pair ${name} has published no status`);
  const problems = statuses.map((status) => pairProblem(status, now, limits)).filter((problem): problem is string => problem !== undefined);
  return [...problems, ...missing];
}
