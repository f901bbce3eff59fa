/**
 * The filter's decisions: which settled observations become which actions.
 *
 * The shell watches directories, waits until paths are quiet (settle.ts),
 * lstat()s them and hands the results here as observations: a path with the
 * stat it has now, or null when it is gone. `reconcile` compares them with
 * the index and returns the actions to send, the directories the shell must
 * start watching and scanning, and the subtrees it must stop watching.
 *
 * Invariants:
 * - A path that exists now and whose inode the index knows under a name that
 *   is gone now is a MOVE, never a delete plus a re-send.
 * - DELETE is emitted only for a path observed gone (or below one), with the
 *   stat it had, children before their directory.
 * - Moves come first, in an order the target can apply one by one; then
 *   deletes; then RSYNCs, parents before children.
 * - Paths that are excluded, temp files or psync's own names are never
 *   indexed and never produce an action.
 */

import type { PathClass } from './patterns.js';
import { ancestorsOf, baseName, depthOf, joinPath, parentOf } from './paths.js';
import { TreeIndex, type TreeNode } from './tree.js';
import type { Action, Stat } from './types.js';

export interface Observation {
  readonly path: string;
  readonly stat: Stat | null;
}

export interface Decision {
  readonly actions: Action[];
  /** Newly indexed directories: watch them, then mark their entries dirty. */
  readonly scan: string[];
  /** Subtrees no longer indexed: stop watching them. */
  readonly dropped: TreeNode[];
}

export type Classify = (path: string, isDir?: boolean) => PathClass;

/** How long a name the helper is moving through `.psync.ignore` stays recognised. */
export const DANCE_TTL_MS = 10_000;

/** The filter's whole state: the index plus what the rename dance told it. */
export class FilterState {
  /** inode -> when the helper was seen moving it out through a `.psync.ignore` name. */
  readonly danced = new Map<number, number>();

  constructor(readonly index: TreeIndex) {}
}

/** `dir/name.<id>.psync.ignore` -> `dir/name`, the entry the helper is moving or deleting. */
export function dancedOriginal(path: string): string | undefined {
  const match = /^(.*)\.[A-Za-z0-9-]+\.psync\.ignore$/.exec(baseName(path));
  return match?.[1] ? joinPath(parentOf(path), match[1]) : undefined;
}

/**
 * The shell saw an event on a `.psync.ignore` name: remember the inode of
 * the entry being danced so its disappearance (and reappearance under a new
 * name) is not reported back.
 */
export function noteDance(state: FilterState, internalPath: string, now: number): void {
  const original = dancedOriginal(internalPath);
  const node = original === undefined ? undefined : state.index.get(original);
  if (node !== undefined && node !== state.index.root) state.danced.set(node.stat.ino, now);
  for (const [ino, at] of state.danced) if (now - at > DANCE_TTL_MS) state.danced.delete(ino);
}

/** Content and metadata a receiver would see differ. Directory mtimes are noise (children change them). */
export function hasChanged(before: Stat, after: Stat): boolean {
  if (before.type !== after.type || before.mode !== after.mode) return true;
  if (after.type === 'dir') return false;
  return before.size !== after.size || before.mtimeMs !== after.mtimeMs;
}

interface Move {
  readonly node: TreeNode;
  readonly from: string;
  readonly to: string;
  readonly stat: Stat;
}

export function reconcile(state: FilterState, observations: readonly Observation[], classify: Classify, now: number): Decision {
  const index = state.index;
  const gone = new Set<string>();
  const present: Observation[] = [];
  for (const observation of observations) {
    if (observation.path === '') continue;
    if (classify(observation.path, observation.stat?.type === 'dir') !== 'sync') continue;
    if (observation.stat === null) gone.add(observation.path);
    else present.push(observation);
  }
  const isGone = (path: string): boolean => gone.has(path) || ancestorsOf(path).some((a) => gone.has(a));

  const moves: Move[] = [];
  const rsyncs: Observation[] = [];
  const replaced: TreeNode[] = [];
  for (const observation of present) {
    const stat = observation.stat!;
    const current = index.get(observation.path);
    if (current !== undefined && current.stat.ino === stat.ino && current.stat.type === stat.type) {
      if (hasChanged(current.stat, stat)) rsyncs.push(observation);
      current.stat = stat;
      continue;
    }
    const origin = index
      .nodesWithInode(stat.ino)
      .find((n) => n.stat.type === stat.type && n !== current && index.isAttached(n) && isGone(index.pathOf(n)));
    if (origin !== undefined) {
      moves.push({ node: origin, from: index.pathOf(origin), to: observation.path, stat });
      continue;
    }
    if (current !== undefined) replaced.push(current);
    rsyncs.push(observation);
  }

  const actions: Action[] = [];
  const dropped: TreeNode[] = [];
  const silentMoves = new Set<Move>(moves.filter((m) => state.danced.has(m.stat.ino)));
  for (const move of orderMoves(index, moves)) {
    if (move === 'cycle') continue;
    const from = index.pathOf(move.node);
    index.detach(from);
    if (!index.attachAt(move.to, move.node)) {
      // The destination's parent is not indexed (yet): send it as new content instead.
      index.forget(move.node);
      dropped.push(move.node);
      if (!silentMoves.has(move)) rsyncs.push({ path: move.to, stat: move.stat });
      gone.add(from);
      continue;
    }
    move.node.stat = move.stat;
    state.danced.delete(move.stat.ino);
    if (!silentMoves.has(move)) actions.push({ kind: 'move', from, to: move.to, stat: move.stat });
  }
  for (const move of moves) {
    // A move that could not be ordered (a cycle such as a swap) has been left in place: re-send it.
    if (index.pathOf(move.node) !== move.to && index.isAttached(move.node)) {
      rsyncs.push({ path: move.to, stat: move.stat });
    }
  }

  const deletes = collectDeletes(state, gone, replaced, dropped);
  actions.push(...deletes);

  const scan: string[] = [];
  rsyncs.sort((a, b) => depthOf(a.path) - depthOf(b.path));
  const sent = new Set<string>();
  for (const { path, stat } of rsyncs) {
    if (stat === null || sent.has(path)) continue;
    const existing = index.get(path);
    const isNewDir = stat.type === 'dir' && (existing === undefined || existing.stat.ino !== stat.ino);
    const node = index.set(path, stat);
    if (node === undefined) continue; // parent vanished meanwhile: the parent's own event covers it
    sent.add(path);
    actions.push({ kind: 'rsync', path, stat });
    if (isNewDir) scan.push(path);
  }
  expireDances(state, now);
  return { actions, scan, dropped };
}

/**
 * Orders moves so that each one's destination is free (or held by an entry
 * that is not itself moving) when it runs. Moves of deeper entries go first,
 * so a child moved out of a directory that is itself renamed is taken from
 * the old place. A move whose destination is held by a move that cannot go
 * first (a cycle) is skipped; the caller re-sends it.
 */
function orderMoves(index: TreeIndex, moves: readonly Move[]): (Move | 'cycle')[] {
  const pending = [...moves].sort((a, b) => depthOf(b.from) - depthOf(a.from));
  const ordered: (Move | 'cycle')[] = [];
  const movingOut = new Set(pending.map((m) => m.node));
  let progress = true;
  while (pending.length > 0 && progress) {
    progress = false;
    for (let i = 0; i < pending.length; i++) {
      const move = pending[i]!;
      const occupant = index.get(move.to);
      if (occupant !== undefined && movingOut.has(occupant) && occupant !== move.node) continue;
      ordered.push(move);
      movingOut.delete(move.node);
      pending.splice(i, 1);
      i -= 1;
      progress = true;
    }
  }
  if (pending.length > 0) {
    // Break the first cycle by dropping one move; the rest can then go.
    const [broken, ...rest] = pending;
    movingOut.delete(broken!.node);
    ordered.push('cycle', ...orderMoves(index, rest));
  }
  return ordered;
}

/** DELETEs for everything indexed at or below a gone path, children first; drops them from the index. */
function collectDeletes(state: FilterState, gone: Set<string>, replaced: TreeNode[], dropped: TreeNode[]): Action[] {
  const index = state.index;
  const roots: TreeNode[] = [];
  for (const path of gone) {
    const node = index.get(path);
    if (node !== undefined && node !== index.root && !ancestorsOf(path).some((a) => gone.has(a))) roots.push(node);
  }
  const actions: Action[] = [];
  for (const node of [...roots, ...replaced]) {
    if (!index.isAttached(node)) continue;
    const path = index.pathOf(node);
    const isReplaced = replaced.includes(node);
    const silent = state.danced.has(node.stat.ino) && !isReplaced;
    if (!silent) {
      for (const child of index.descendantPathsDeepestFirst(path)) {
        actions.push({ kind: 'delete', path: child, stat: index.get(child)!.stat });
      }
      // A replaced file needs no delete (rsync replaces it whole); a replaced directory's children do.
      const keepsName = isReplaced && node.stat.type !== 'dir';
      if (!isReplaced || !keepsName) actions.push({ kind: 'delete', path, stat: node.stat });
    }
    state.danced.delete(node.stat.ino);
    index.remove(path);
    dropped.push(node);
  }
  return actions;
}

function expireDances(state: FilterState, now: number): void {
  for (const [ino, at] of state.danced) if (now - at > DANCE_TTL_MS) state.danced.delete(ino);
}

export { TreeIndex };
