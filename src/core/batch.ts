/**
 * The brain's queue of actions waiting to be applied, and how they are cut
 * into batches.
 *
 * A batch is the longest run of consecutive actions with the same direction
 * and kind: one rsync run or one helper round trip for all of them. Order is
 * kept across kinds, so a MOVE queued before an RSYNC of the moved path runs
 * first.
 *
 * Two sides changing the same path before either change was applied is a
 * conflict: the newer modification time wins (ties: the one queued first)
 * and the older report is dropped. The older version itself is
 * not lost: when the winner's transfer replaces it, the target's helper
 * keeps it as a conflict copy (conflict.ts).
 *
 * Both sides reporting the same version of a directory is not a conflict:
 * one side's `tar x` sets a directory's mode after rsync sent it, and the
 * other side reports the mode rsync then set there too.
 *
 * The queue is bounded (QueueBound): past MAX_QUEUED_ACTIONS the sides are
 * asked to hold their reports until it has drained.
 *
 * A rename changes the names of what is queued below it: once a side has
 * renamed `d` to `e`, that side's queued sends of `d/f` are due as `e/f`
 * (rebaseSource), and when one side's rename is queued, the other side's
 * sends below the old name must wait behind it (deferUnder), or they would
 * make `d` again on a side that has just renamed it away.
 */

import { ancestorsOf, isSameOrUnder, rebase } from './paths.js';
import { sameStat } from './version.js';
import { directionFrom, sourceOf, type Action, type ActionKind, type Direction, type Side, type Stat } from './types.js';

/** At most this many actions go into one batch, so one rsync's file list stays bounded. */
export const MAX_BATCH_ACTIONS = 20_000;

/** With this many actions queued the brain asks each side that reports to hold its reports (PAUSE, protocol.ts). */
export const MAX_QUEUED_ACTIONS = 100_000;
/** Once the queue is down to this, the paused sides are told to go on (RESUME). */
export const RESUME_QUEUED_ACTIONS = 50_000;
/**
 * Reports a side had already sent when its PAUSE reached it are still taken,
 * up to this many queued actions in all. A side that goes beyond ignores
 * PAUSE (a bug, or a forged stream): the brain stops rather than hold an
 * unbounded queue or drop reports it cannot get back (QueueBound).
 */
export const HARD_MAX_QUEUED_ACTIONS = 200_000;

/** What the brain does with a report, given how full the queue is (QueueBound.admit). */
export type Admission = 'accept' | 'acceptAndPause' | 'overflow';

/**
 * Keeps the queue bounded without losing a report. Dropping reports and
 * asking the side to rescan would not bring them back: a filter's rescan
 * compares the tree with its own index, which already holds what it
 * reported. So the brain asks the side to hold its reports instead (the
 * filter keeps the paths pending: nothing is lost, repeated changes of one
 * path merge) and to send them once the queue has drained.
 */
export class QueueBound {
  private readonly paused = new Set<Side>();

  constructor(
    private readonly max = MAX_QUEUED_ACTIONS,
    private readonly resumeAt = RESUME_QUEUED_ACTIONS,
    private readonly hardMax = HARD_MAX_QUEUED_ACTIONS,
  ) {}

  /** A report from `side` arrives with `queued` actions in the queue. */
  admit(side: Side, queued: number): Admission {
    if (queued >= this.hardMax) return 'overflow';
    if (queued < this.max || this.paused.has(side)) return 'accept';
    this.paused.add(side);
    return 'acceptAndPause';
  }

  /** The queue is down to `queued`: the sides to tell RESUME (each once per PAUSE). */
  drained(queued: number): Side[] {
    if (queued > this.resumeAt || this.paused.size === 0) return [];
    const sides = [...this.paused];
    this.paused.clear();
    return sides;
  }

  isPaused(side: Side): boolean {
    return this.paused.has(side);
  }
}

export interface Queued {
  readonly direction: Direction;
  readonly action: Action;
}

export interface Batch {
  readonly direction: Direction;
  readonly kind: ActionKind;
  readonly actions: Action[];
}

export interface EnqueueResult {
  /** The queued action that lost a conflict and was dropped, if any. */
  readonly dropped?: Queued;
}

export class ActionQueue {
  private items: Queued[] = [];
  /** The pending RSYNC of each path, to find a rival from the other side in O(1). */
  private readonly pendingRsync = new Map<string, Queued>();
  /** Queued items that lost a conflict: skipped when taken. */
  private readonly cancelled = new Set<Queued>();
  /** The queued renames (few), to answer movingOnto without a walk of the queue. */
  private readonly moves = new Set<Queued>();

  get length(): number {
    return this.items.length - this.cancelled.size;
  }

  enqueue(from: Side, action: Action): EnqueueResult {
    const incoming: Queued = { direction: directionFrom(from), action };
    if (action.kind !== 'rsync') {
      this.push(incoming);
      return {};
    }
    const rival = this.pendingRsync.get(action.path);
    if (rival !== undefined && sourceOf(rival.direction) !== from) {
      // Both sides report the same directory (sameVersion: its mode; its children carry its content): nothing
      // to choose, and no conflict. The one queued first carries it over.
      if (rival.action.stat.type === 'dir' && sameStat(rival.action.stat, action.stat)) return {};
      if (rivalWins(rival.action.stat, action.stat)) return { dropped: incoming };
      this.cancelled.add(rival);
      this.push(incoming);
      return { dropped: rival };
    }
    this.push(incoming);
    return {};
  }

  /**
   * `source` renamed `from` to `to`: its queued actions on paths at or below
   * `from` now name the new paths (where they stand in the queue).
   */
  rebaseSource(source: Side, from: string, to: string): void {
    this.rewrite(source, from, to, false);
  }

  /**
   * The other side's rename of `from` to `to` was just queued: `source`'s
   * queued actions at or below `from` are taken out, renamed, and queued
   * again behind it, but for what `source` did to `from` itself (rewrite's
   * `keepOwn`). When `source` deleted `from` itself, the rename wins
   * (like an edit wins over a delete): its deletes at and below `from` are
   * dropped. The rename's target no longer holds the old name, so it is
   * sent the new one whole (fallback.ts); carried over after that, the
   * deletes would remove on the renaming side what was just sent across.
   */
  deferUnder(source: Side, from: string, to: string): void {
    const direction = directionFrom(source);
    const deleted = (item: Queued, under: boolean): boolean =>
      item.direction === direction && item.action.kind === 'delete' && !this.cancelled.has(item) && (under ? isSameOrUnder(item.action.path, from) : item.action.path === from);
    if (this.items.some((item) => deleted(item, false))) this.items = this.items.filter((item) => !deleted(item, true));
    this.rewrite(source, from, to, true, true);
  }

  /**
   * `keepOwn`: what `source` did to `from` itself stays where it is. A send
   * of a file it edited: the rename is refused where the file was edited
   * (movePlan expects the agreed version), so the edit is due under the old
   * name, where it still is. Its own rename of `from` (both sides renamed
   * one entry): each rename finds the old name gone on the other side and
   * sends its new name whole (fallback.ts), and both names stay; rebased,
   * it renamed the other side's fallback copy away on one side only.
   */
  private rewrite(source: Side, from: string, to: string, toBack: boolean, keepOwn = false): void {
    const direction = directionFrom(source);
    const moved: Queued[] = [];
    const own = (action: Action): boolean =>
      (action.kind === 'rsync' && action.path === from && action.stat.type !== 'dir') || (action.kind === 'move' && action.from === from);
    this.items = this.items.flatMap((item) => {
      if (this.cancelled.has(item) || item.direction !== direction || !namesUnder(item.action, from)) return [item];
      if (keepOwn && own(item.action)) return [item];
      if (item.action.kind === 'rsync' && this.pendingRsync.get(item.action.path) === item) this.pendingRsync.delete(item.action.path);
      const renamed: Queued = { direction, action: rebaseAction(item.action, from, to) };
      if (this.moves.delete(item)) this.moves.add(renamed);
      if (toBack) {
        moved.push(renamed);
        return [];
      }
      if (renamed.action.kind === 'rsync') this.pendingRsync.set(renamed.action.path, renamed);
      return [renamed];
    });
    for (const item of moved) this.push(item);
  }

  private push(item: Queued): void {
    this.items.push(item);
    if (item.action.kind === 'rsync') this.pendingRsync.set(item.action.path, item);
    if (item.action.kind === 'move') this.moves.add(item);
  }

  /**
   * Is a rename by `source` of `path` or of a directory above it queued?
   * Until it is applied the archive holds the entries under their old
   * names: a report from `source` under the new name cannot be judged
   * against the archive yet (a file deleted right after its directory was
   * renamed looked never agreed, and its delete was dropped).
   */
  movingOnto(source: Side, path: string): boolean {
    const direction = directionFrom(source);
    for (const item of this.moves) {
      if (item.direction === direction && item.action.kind === 'move' && isSameOrUnder(path, item.action.to)) return true;
    }
    return false;
  }

  /** Take the next batch off the front of the queue, or undefined when it is empty. */
  takeBatch(max = MAX_BATCH_ACTIONS): Batch | undefined {
    while (this.items.length > 0 && this.cancelled.delete(this.items[0]!)) this.items.shift();
    const first = this.items[0];
    if (first === undefined) return undefined;
    const kind = first.action.kind;
    const taken: Action[] = [];
    let end = 0;
    while (end < this.items.length && taken.length < max) {
      const next = this.items[end]!;
      if (this.cancelled.delete(next)) {
        end += 1;
        continue;
      }
      if (next.direction !== first.direction || next.action.kind !== kind) break;
      taken.push(next.action);
      if (next.action.kind === 'rsync' && this.pendingRsync.get(next.action.path) === next) this.pendingRsync.delete(next.action.path);
      this.moves.delete(next);
      end += 1;
    }
    this.items.splice(0, end);
    return { direction: first.direction, kind, actions: kind === 'rsync' ? dedupeRsyncs(taken) : taken };
  }
}

/**
 * Both sides changed one path: does the queued change beat the incoming
 * one? A directory beats anything else, whatever the mtimes (rsync does
 * not replace a directory with a file, and a directory is never moved
 * aside: the file is kept beside it, conflict.ts); otherwise the newer
 * mtime, a tie going to the incoming change.
 */
function rivalWins(queued: Stat, incoming: Stat): boolean {
  if ((queued.type === 'dir') !== (incoming.type === 'dir')) return queued.type === 'dir';
  return queued.mtimeMs > incoming.mtimeMs;
}

function namesUnder(action: Action, dir: string): boolean {
  return action.kind === 'move' ? isSameOrUnder(action.from, dir) || isSameOrUnder(action.to, dir) : isSameOrUnder(action.path, dir);
}

function rebaseAction(action: Action, from: string, to: string): Action {
  const move = (path: string): string => (isSameOrUnder(path, from) ? rebase(path, from, to) : path);
  return action.kind === 'move' ? { ...action, from: move(action.from), to: move(action.to) } : { ...action, path: move(action.path) };
}

/**
 * One entry per path, at the place of its first report, with its last
 * report's stat and its first report's `prev`: the target still holds what
 * the source had before the first of the changes.
 */
function dedupeRsyncs(actions: Action[]): Action[] {
  const byPath = new Map<string, Extract<Action, { kind: 'rsync' }>>();
  for (const action of actions) {
    if (action.kind !== 'rsync') continue;
    const first = byPath.get(action.path);
    byPath.set(action.path, first === undefined ? action : withPrev(action, first.prev));
  }
  return [...byPath.values()];
}

function withPrev(action: Extract<Action, { kind: 'rsync' }>, prev: Stat | undefined): Extract<Action, { kind: 'rsync' }> {
  const { path, stat } = action;
  return prev === undefined ? { kind: 'rsync', path, stat } : { kind: 'rsync', path, stat, prev };
}

/**
 * What a running batch changes, on its target: the paths it names, what is
 * below them, and, for an rsync batch, the directories above them (rsync
 * sets an implied parent's mode and mtime to the source's as it writes into
 * it: the brain agrees on them from the transfer list once the run is over).
 */
export interface Footprint {
  readonly paths: ReadonlySet<string>;
  readonly parents: ReadonlySet<string>;
}

export function footprintOf(batch: Batch): Footprint {
  const paths = new Set(batch.actions.flatMap((a) => (a.kind === 'move' ? [a.from, a.to] : [a.path])));
  const parents = new Set(batch.kind === 'rsync' ? [...paths].flatMap(ancestorsOf) : []);
  return { paths, parents };
}

/**
 * Must a report wait until the running batch is recorded? When it names a
 * path the batch changes (footprintOf): judged now, psync's own write there
 * would look like a change of the target's (a directory whose mode rsync
 * just set as an implied parent was reported as changed on both sides: a
 * "conflict" on a directory only one side had changed).
 */
export function waitsForBatch(footprint: Footprint, action: Action): boolean {
  const named = action.kind === 'move' ? [action.from, action.to] : [action.path];
  return named.some((path) => footprint.paths.has(path) || footprint.parents.has(path) || ancestorsOf(path).some((p) => footprint.paths.has(p)));
}
