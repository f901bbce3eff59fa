/**
 * The echo ledger: what the brain expects a side to report after it changed
 * that side, so that exactly those reports are dropped and nothing else.
 *
 * The original psync dropped every event on a name it had touched in the
 * last 60 s, which also dropped a real edit made in that window. Here an
 * expectation names the path and what the entry will look like (type, size,
 * mtime, mode as the transfer writes them); a report that matches is an
 * echo; a report on that path that does not match is a real change, and it
 * also retires the expectation, because the path has moved on.
 */

import type { Action, Side, Stat } from './types.js';

/** How long an expectation waits for its echo (the settle delay plus transfer time is far less). */
export const ECHO_TTL_MS = 30_000;

export type Expectation =
  /** rsync wrote `path`: the side will report RSYNC with this content. */
  | { readonly kind: 'written'; readonly path: string; readonly stat: Stat }
  /** The helper moved `from` to `path`: RSYNC or MOVE reports of `path` with this content are echoes. */
  | { readonly kind: 'movedIn'; readonly path: string; readonly from: string; readonly stat: Stat }
  /** The helper removed `path` (deleted it or moved it away): a DELETE of it is an echo. */
  | { readonly kind: 'removed'; readonly path: string }
  /**
   * The initial merge wrote `path`. rsync lists what it wrote with the size
   * and the mtime in whole seconds only, so that is what must match.
   */
  | { readonly kind: 'merged'; readonly path: string; readonly isDir: boolean; readonly size: number; readonly mtimeSeconds: number };

interface Entry {
  readonly expectation: Expectation;
  readonly expiresAt: number;
}

/**
 * At most this many expectations wait on one path: psync may change a path
 * again (write it, then delete it) before the first change's report comes.
 */
const MAX_PER_PATH = 8;

/** Same content and metadata as far as a transfer preserves them. Directory sizes and mtimes are noise. */
export function sameAsWritten(expected: Stat, actual: Stat): boolean {
  if (expected.type !== actual.type) return false;
  if (expected.type === 'dir') return expected.mode === actual.mode;
  if (expected.type !== 'symlink' && expected.mode !== actual.mode) return false;
  return expected.size === actual.size && Math.abs(expected.mtimeMs - actual.mtimeMs) < 1;
}

/** Is `actual` what the initial merge wrote, as far as rsync's transfer list tells? */
export function sameAsMerged(expected: Extract<Expectation, { kind: 'merged' }>, actual: Stat): boolean {
  if (expected.isDir || actual.type === 'dir') return expected.isDir && actual.type === 'dir';
  return expected.size === actual.size && Math.floor(actual.mtimeMs / 1000) === expected.mtimeSeconds;
}

export class EchoLedger {
  /** Per side and path, the expectations in the order the changes were made. */
  private readonly entries: Record<Side, Map<string, Entry[]>> = { left: new Map(), right: new Map() };
  private nextSweepAt = 0;

  constructor(private readonly ttlMs = ECHO_TTL_MS) {}

  /** Record what `side` will report about a change the brain is about to make there. */
  expect(side: Side, expectation: Expectation, now: number): void {
    const list = this.entries[side].get(expectation.path) ?? [];
    list.push({ expectation, expiresAt: now + this.ttlMs });
    if (list.length > MAX_PER_PATH) list.shift();
    this.entries[side].set(expectation.path, list);
  }

  /** Forget an expectation that will not come (the change failed). */
  cancel(side: Side, path: string): void {
    const list = this.entries[side].get(path);
    list?.pop(); // the latest: the change that failed
    if (list?.length === 0) this.entries[side].delete(path);
  }

  /** How many expectations wait, on both sides. */
  get size(): number {
    let size = 0;
    for (const table of Object.values(this.entries)) for (const list of table.values()) size += list.length;
    return size;
  }

  /**
   * Is this report from `side` the echo of the brain's own change? Every
   * path the action names is checked. Reports of a path come in the order
   * its changes happened: a report that matches one expectation retires
   * the older ones (the side has moved past them); a report that matches
   * none is a real change and retires them all.
   */
  isEcho(side: Side, action: Action, now: number): boolean {
    this.expire(now);
    const table = this.entries[side];
    const matches = (path: string, test: (e: Expectation) => boolean): boolean => {
      const list = table.get(path);
      if (list === undefined) return false;
      const at = list.findIndex((entry) => entry.expiresAt > now && test(entry.expectation));
      if (at < 0) {
        table.delete(path);
        return false;
      }
      list.splice(0, at); // it stays (a side may report the same state twice); older ones go
      return true;
    };
    switch (action.kind) {
      case 'rsync':
        return matches(action.path, (e) =>
          e.kind === 'merged' ? sameAsMerged(e, action.stat) : e.kind !== 'removed' && sameAsWritten(e.stat, action.stat),
        );
      case 'delete':
        return matches(action.path, (e) => e.kind === 'removed');
      case 'move': {
        const arrived = matches(
          action.to,
          (e) =>
            (e.kind === 'written' || e.kind === 'movedIn') &&
            sameAsWritten(e.stat, action.stat) &&
            (e.kind !== 'movedIn' || e.from === action.from),
        );
        const left = matches(action.from, (e) => e.kind === 'removed');
        return arrived && left;
      }
    }
  }

  /** Drop expired entries, at most once per TTL so that a burst of reports stays O(1) each. */
  private expire(now: number): void {
    if (now < this.nextSweepAt) return;
    this.nextSweepAt = now + this.ttlMs;
    for (const table of Object.values(this.entries)) {
      for (const [path, list] of table) {
        const live = list.filter((entry) => entry.expiresAt > now);
        if (live.length === 0) table.delete(path);
        else if (live.length < list.length) table.set(path, live);
      }
    }
  }
}
