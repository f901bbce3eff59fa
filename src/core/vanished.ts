/**
 * Files that vanished under rsync because a directory above them was
 * renamed. The filter reports `d/f` changed; before rsync gets to it, `d` is
 * renamed to `e`; rsync skips the missing `d/f`, then the filter's
 * `MOVE d -> e` moves the target's OLD `d/f` to `e/f`. The filter has
 * nothing more to report (its index holds the new content), so the change
 * would be lost. The brain remembers what vanished and what moved, in
 * either order, and sends `e/f` again once both are known.
 */

import { isSameOrUnder, rebase } from './paths.js';
import type { Side, Stat } from './types.js';

/** How long a vanished send or a move waits for its other half. */
export const VANISHED_TTL_MS = 30_000;

interface Vanished extends Resend {
  readonly at: number;
}

interface Moved {
  readonly from: string;
  readonly to: string;
  readonly at: number;
}

export interface Resend {
  readonly path: string;
  readonly stat: Stat;
  /** What the target holds there (the send's own `prev`): it moved along with the directory. */
  readonly prev: Stat | undefined;
}

export class VanishedSends {
  private readonly vanished: Record<Side, Vanished[]> = { left: [], right: [] };
  private readonly moved: Record<Side, Moved[]> = { left: [], right: [] };

  /** A send from `source` whose file rsync did not find there. Resolves at once if a move already explains it. */
  noteVanished(source: Side, send: Resend, now: number): Resend[] {
    this.expire(now);
    for (const move of [...this.moved[source]].reverse()) {
      if (isSameOrUnder(send.path, move.from)) return [{ ...send, path: rebase(send.path, move.from, move.to) }];
    }
    this.vanished[source].push({ ...send, at: now });
    return [];
  }

  /** A move reported by `source`: the vanished sends below `from` are due again under `to`. */
  noteMove(source: Side, from: string, to: string, now: number): Resend[] {
    this.expire(now);
    this.moved[source].push({ from, to, at: now });
    const out: Resend[] = [];
    this.vanished[source] = this.vanished[source].filter((v) => {
      if (!isSameOrUnder(v.path, from)) return true;
      out.push({ path: rebase(v.path, from, to), stat: v.stat, prev: v.prev });
      return false;
    });
    return out;
  }

  private nextSweepAt = 0;

  /** Drop what is older than VANISHED_TTL_MS; at most once a second, so a burst of moves stays O(1) each. */
  private expire(now: number): void {
    if (now < this.nextSweepAt) return;
    this.nextSweepAt = now + 1_000;
    for (const side of ['left', 'right'] as const) {
      if (this.vanished[side].length > 0) this.vanished[side] = this.vanished[side].filter((v) => now - v.at < VANISHED_TTL_MS);
      if (this.moved[side].length > 0) this.moved[side] = this.moved[side].filter((m) => now - m.at < VANISHED_TTL_MS);
    }
  }
}
