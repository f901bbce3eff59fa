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
 *   stat it had, children before their directory; a gone path the index
 *   never held, in a directory still there, with an unknown stat (psync may
 *   have written it a moment before: unindexedDeletes).
 * - Moves come first, in an order the target can apply one by one; a cycle
 *   (a swap `a -> t; b -> a; t -> b`) is broken by moving one member aside
 *   to a temp name first (`a -> a.psync-swap-<ino>~`, then on to `b`), so
 *   nothing is re-sent. A move into a directory new in this round becomes a
 *   DELETE of its old name there and an RSYNC of its new one. Then deletes;
 *   then RSYNCs, parents before children.
 * - A name vacated by a move may be taken by another entry in the same
 *   round (`mv f g; cp other f`, a swap): the move is still a move.
 * - A path whose ancestor is observed gone or as a non-directory in the same
 *   round is gone, whatever its own lstat said: lstat follows a symlink in
 *   the middle of a path, so after `rm -r d2/d1; ln -s ../d1 d2/d1` the old
 *   `d2/d1/x` "exists" (it is `d1/x`).
 * - The helper's own work (a danced entry) is never reported, even when its
 *   name already holds the next entry (DELETE d then RSYNC d on the target).
 * - A directory replaced by another directory keeps its name on the other
 *   side: only the old children are deleted, the name itself is re-sent.
 * - A content change is reported under every indexed name of the inode
 *   (hard links): the other side holds them as separate files.
 * - A new entry that got a just-freed inode number (same inode, another
 *   birth time) is not a rename.
 * - Paths that are excluded, temp files or psync's own names are never
 *   indexed and never produce an action.
 */

import type { PathClass } from './patterns.js';
import { ancestorsOf, baseName, depthOf, isSameOrUnder, joinPath, parentOf, rebase } from './paths.js';
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
  /**
   * Entries the helper was seen moving out through a `.psync.ignore` name,
   * and when. Keyed by node, not inode: a new entry that reuses the inode
   * number later is not the helper's.
   */
  readonly danced = new Map<TreeNode, number>();
  /**
   * Danced entries whose old name is gone but whose new name has not been
   * seen yet (the helper's second rename can land in a later settle round):
   * kept detached so that reappearing re-attaches them silently.
   */
  readonly parked = new Map<number, { readonly node: TreeNode; readonly at: number }>();

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
  if (node !== undefined && node !== state.index.root) state.danced.set(node, now);
  expireDanceMarks(state, now);
}

function expireDanceMarks(state: FilterState, now: number): void {
  for (const [node, at] of state.danced) if (now - at > DANCE_TTL_MS) state.danced.delete(node);
}

/**
 * Could `after` be the entry `before` was, under another name? Same inode and
 * type, and the same birth time where both are known: a new file that
 * reuses a just-freed inode number is not a rename.
 */
export function isSameEntry(before: Stat, after: Stat): boolean {
  if (before.ino !== after.ino || before.type !== after.type) return false;
  return before.birthMs === undefined || after.birthMs === undefined || before.birthMs === after.birthMs;
}

/** Content and metadata a receiver would see differ. Directory mtimes are noise (children change them). */
export function hasChanged(before: Stat, after: Stat): boolean {
  if (before.type !== after.type || before.mode !== after.mode) return true;
  if (after.type === 'dir') return false;
  return before.size !== after.size || before.mtimeMs !== after.mtimeMs;
}

/** An entry to send, with what the target should still hold there (see Action). */
interface Send {
  readonly path: string;
  readonly stat: Stat;
  readonly prev: Stat | undefined;
}

interface Move {
  readonly node: TreeNode;
  readonly to: string;
  /** The entry as it is now; `node.stat` is what it was (what the other side still has). */
  readonly stat: Stat;
  /** The helper's own move (rename dance): update the index, report nothing but a content change. */
  readonly silent: boolean;
}

export function reconcile(state: FilterState, observations: readonly Observation[], classify: Classify, now: number): Decision {
  const index = state.index;
  const dropped: TreeNode[] = expireDances(state, now);
  const gone = new Set<string>();
  const present: Observation[] = [];
  for (const observation of observations) {
    if (observation.path === '') continue;
    if (classify(observation.path, observation.stat?.type === 'dir') !== 'sync') continue;
    if (observation.stat === null) gone.add(observation.path);
    else present.push(observation);
  }
  // lstat resolves a symlink met in the middle of a path: below a name that is not a directory now, nothing is there.
  const nonDirs = new Set(present.filter((o) => o.stat!.type !== 'dir').map((o) => o.path));
  const reachable = present.filter((o) => {
    if (!ancestorsOf(o.path).some((a) => nonDirs.has(a) || gone.has(a))) return true;
    gone.add(o.path);
    return false;
  }) as { path: string; stat: Stat }[];
  const isGone = (path: string): boolean => gone.has(path) || ancestorsOf(path).some((a) => gone.has(a));
  // Before this round's moves change the index: an old name a move vacates was indexed.
  const unindexed = [...gone].filter((path) => index.get(path) === undefined);
  const presentAt = new Map(reachable.map((o) => [o.path, o.stat]));
  /** The node's name no longer holds it: gone, or another entry took it (a swap, `mv f g; cp other f`). */
  const isVacated = (node: TreeNode): boolean => {
    const path = index.pathOf(node);
    if (isGone(path)) return true;
    const now = presentAt.get(path);
    return now !== undefined && !isSameEntry(node.stat, now);
  };

  const moves: Move[] = [];
  const rsyncs: Send[] = [];
  const replacedBy = new Map<TreeNode, Stat>();
  for (const { path, stat } of reachable) {
    const current = index.get(path);
    if (current !== undefined && isSameEntry(current.stat, stat)) {
      if (hasChanged(current.stat, stat)) {
        rsyncs.push({ path, stat, prev: current.stat });
        if (stat.type === 'file') rsyncs.push(...otherLinks(index, current, stat, isGone));
      }
      current.stat = stat;
      continue;
    }
    const origin = index
      .nodesWithInode(stat.ino)
      .find((n) => isSameEntry(n.stat, stat) && n !== current && index.isAttached(n) && isVacated(n));
    if (origin !== undefined) {
      moves.push({ node: origin, to: path, stat, silent: isDanced(state, origin) });
      continue;
    }
    const parked = state.parked.get(stat.ino);
    if (parked !== undefined && isSameEntry(parked.node.stat, stat)) {
      state.parked.delete(stat.ino);
      moves.push({ node: parked.node, to: path, stat, silent: true });
      continue;
    }
    if (current !== undefined) replacedBy.set(current, stat);
    rsyncs.push({ path, stat, prev: current?.stat });
  }
  // A replaced entry that moved to another name in this round is not replaced: it went there.
  for (const move of moves) replacedBy.delete(move.node);

  const actions: Action[] = [];
  const vacated: string[] = [];
  for (const move of applyMoves(state, withoutImpliedMoves(index, moves), dropped)) {
    vacated.push(move.from);
    if (move.applied === 'aside') {
      if (!move.silent) actions.push({ kind: 'move', from: move.from, to: move.to, stat: move.node.stat });
      continue;
    }
    if (move.applied === false) {
      // Part of a cycle, or its destination's parent is new in this round: delete the old name, send the new one.
      actions.push(...deletesFor(move.node, move.from));
      index.forget(move.node);
      dropped.push(move.node);
      rsyncs.push({ path: move.to, stat: move.stat, prev: undefined });
      continue;
    }
    if (!move.silent) {
      const { from, to, replaces } = move;
      actions.push(replaces === undefined ? { kind: 'move', from, to, stat: move.node.stat } : { kind: 'move', from, to, stat: move.node.stat, replaces });
    }
    if (hasChanged(move.node.stat, move.stat)) rsyncs.push({ path: move.to, stat: move.stat, prev: move.node.stat });
    move.node.stat = move.stat;
  }

  actions.push(...unindexedDeletes(index, unindexed.filter((path) => !vacated.some((from) => isSameOrUnder(path, from))), isGone));
  actions.push(...collectDeletes(state, gone, replacedBy, dropped, now));

  const scan: string[] = [];
  rsyncs.sort((a, b) => depthOf(a.path) - depthOf(b.path));
  const sent = new Set<string>();
  for (const { path, stat, prev } of rsyncs) {
    if (sent.has(path)) continue;
    const existing = index.get(path);
    const isNewDir = stat.type === 'dir' && (existing === undefined || !isSameEntry(existing.stat, stat));
    const node = index.set(path, stat);
    if (node === undefined) continue; // parent vanished meanwhile: the parent's own event covers it
    sent.add(path);
    actions.push(prev === undefined || prev.type === 'dir' ? { kind: 'rsync', path, stat } : { kind: 'rsync', path, stat, prev });
    if (isNewDir) scan.push(path);
  }
  return { actions, scan, dropped };
}

const isDanced = (state: FilterState, node: TreeNode): boolean => state.danced.has(node);

/**
 * A child seen under its renamed parent's new name (`d/x` -> `e/x` with
 * `d` -> `e`) moves with its parent: its own move is made silent, so one
 * MOVE covers the whole directory. A change of its content is still sent.
 */
function withoutImpliedMoves(index: TreeIndex, moves: readonly Move[]): Move[] {
  const from = new Map(moves.map((m) => [m, index.pathOf(m.node)]));
  const isImplied = (move: Move): boolean => {
    const path = from.get(move)!;
    return moves.some((parent) => {
      const parentFrom = from.get(parent)!;
      return parent !== move && path !== parentFrom && isSameOrUnder(path, parentFrom) && move.to === rebase(path, parentFrom, parent.to);
    });
  };
  return moves.map((move) => (isImplied(move) ? { ...move, silent: true } : move));
}

type AppliedMove = Move & {
  /** true: moved to `to`; false: cannot be applied; 'aside': first half of a cycle break, `from` -> a temp name `to`. */
  readonly applied: boolean | 'aside';
  readonly from: string;
  /** The file or symlink that stood at `to` and was replaced. */
  readonly replaces?: Stat;
};

/**
 * Where a member of a move cycle waits: a temp name (`*~` is always a temp
 * pattern), so the target's filter never reports it and, should psync stop
 * half way, it is never synced under that name. The inode makes it unique.
 */
export const asideName = (path: string, ino: number): string => `${path}.psync-swap-${ino}~`;

/**
 * Apply moves to the index in an order the other side can follow one by
 * one, and return them with the `from` each had when it ran. A move waits
 * while its destination is held by an entry that is itself moving away, or
 * while its destination's parent does not exist yet (another move creates
 * it). A cycle (a swap) is broken by moving one member aside first to its own
 * name: it is then re-sent. A move whose parent never appears is returned
 * with `applied: false`.
 */
function applyMoves(state: FilterState, moves: readonly Move[], dropped: TreeNode[]): AppliedMove[] {
  const index = state.index;
  const pending = [...moves];
  const out: AppliedMove[] = [];
  const movingOut = new Set(pending.map((m) => m.node));
  /** Moves already set aside once: each cycle member at most once, so the loop ends. */
  const setAside = new Set<Move>();
  while (pending.length > 0) {
    const readyAt = pending.findIndex((move) => {
      const occupant = index.get(move.to);
      if (occupant !== undefined && occupant !== move.node && movingOut.has(occupant)) return false;
      return index.get(parentOf(move.to))?.stat.type === 'dir';
    });
    if (readyAt >= 0) {
      const move = pending.splice(readyAt, 1)[0]!;
      const from = index.pathOf(move.node);
      index.detach(from);
      const occupant = index.get(move.to);
      if (occupant !== undefined && occupant !== move.node) {
        index.remove(move.to);
        dropped.push(occupant);
      }
      index.attachAt(move.to, move.node);
      movingOut.delete(move.node);
      state.danced.delete(move.node);
      const replaces = occupant !== undefined && occupant !== move.node && occupant.stat.type !== 'dir' ? occupant.stat : undefined;
      out.push(replaces === undefined ? { ...move, from, applied: true } : { ...move, from, applied: true, replaces });
      continue;
    }
    // Nothing is ready. A move blocked only by an occupant that moves away is part of a cycle:
    // move it aside to a temp name, which frees its source name for the rest of the cycle.
    const cyclic = pending.findIndex(
      (move) =>
        !setAside.has(move) &&
        index.get(parentOf(move.to))?.stat.type === 'dir' &&
        index.get(asideName(index.pathOf(move.node), move.node.stat.ino)) === undefined,
    );
    if (cyclic >= 0) {
      const move = pending[cyclic]!;
      setAside.add(move);
      const from = index.pathOf(move.node);
      const aside = asideName(from, move.node.stat.ino);
      index.detach(from);
      index.attachAt(aside, move.node);
      out.push({ ...move, to: aside, from, applied: 'aside' });
      continue;
    }
    const move = pending.splice(0, 1)[0]!;
    movingOut.delete(move.node);
    const from = index.pathOf(move.node);
    index.detach(from);
    out.push({ ...move, from, applied: false });
  }
  return out;
}

/** DELETEs for a detached subtree that was at `path`: children first, each with its last stat. */
function deletesFor(node: TreeNode, path: string): Action[] {
  const out: Action[] = [];
  const visit = (n: TreeNode, at: string): void => {
    for (const child of n.children.values()) visit(child, joinPath(at, child.name));
    out.push({ kind: 'delete', path: at, stat: n.stat });
  };
  visit(node, path);
  return out;
}

/**
 * DELETEs for everything indexed at or below a gone path, children first;
 * drops them from the index. The helper's own deletes (danced) are silent,
 * and a danced entry is parked rather than forgotten: its new name may
 * appear in a later round.
 */
function collectDeletes(state: FilterState, gone: Set<string>, replacedBy: ReadonlyMap<TreeNode, Stat>, dropped: TreeNode[], now: number): Action[] {
  const index = state.index;
  const roots: TreeNode[] = [];
  for (const path of gone) {
    const node = index.get(path);
    if (node !== undefined && node !== index.root && !ancestorsOf(path).some((a) => gone.has(a))) roots.push(node);
  }
  const actions: Action[] = [];
  for (const node of [...roots, ...replacedBy.keys()]) {
    if (!index.isAttached(node)) continue;
    const path = index.pathOf(node);
    if (isDanced(state, node)) {
      // The helper moved or deleted it (its name may already hold what rsync wrote next): not a change.
      index.detach(path);
      state.parked.set(node.stat.ino, { node, at: now });
      continue;
    }
    const all = deletesFor(node, path);
    // Replaced under the same name: a file or a directory taking the name needs no DELETE of it
    // (rsync replaces a file whole, keeps a directory); the old directory's children do.
    const by = replacedBy.get(node);
    const keepName = by !== undefined && (node.stat.type !== 'dir' || by.type === 'dir');
    actions.push(...(keepName ? all.slice(0, -1) : all));
    index.remove(path);
    dropped.push(node);
  }
  return actions;
}

/** The stat of a DELETE for an entry this side never indexed: nothing is known of it. */
const UNKNOWN: Stat = { type: 'other', ino: 0, size: 0, mtimeMs: 0, mode: 0 };

/**
 * DELETEs for gone paths the index did not hold when the round began, in
 * a directory it holds (and that is still there): an entry made and removed before its own
 * round came. Usually nothing the brain knows of (an echo it drops); but
 * psync itself may have written it moments before (the brain agreed on it
 * while this side's report of the write was still settling), and then the
 * delete must reach the other side: `mv d e; rm e/f` right after psync
 * wrote `d/f` left `e/f` there for good. A path below a directory this
 * round renamed is not one: it is looked at again under the new name
 * (the shell's followRenamedParents); nor is a name a move of this round
 * left. Names an entry passed through within the round (`a -> m -> c`)
 * are reported too: the brain holds nothing there and drops them.
 */
function unindexedDeletes(index: TreeIndex, unindexed: readonly string[], isGone: (path: string) => boolean): Action[] {
  const actions: Action[] = [];
  for (const path of unindexed) {
    if (index.get(path) !== undefined) continue;
    const parent = parentOf(path);
    if (index.get(parent)?.stat.type !== 'dir' || (parent !== '' && isGone(parent))) continue;
    actions.push({ kind: 'delete', path, stat: UNKNOWN });
  }
  return actions;
}

/**
 * The other indexed names of a file whose content changed (hard links, as
 * `stat` says: they share it), to be sent too. Names gone in this round are
 * left to their DELETE.
 */
function otherLinks(index: TreeIndex, changed: TreeNode, stat: Stat, isGone: (path: string) => boolean): Send[] {
  const out: Send[] = [];
  for (const node of index.nodesWithInode(stat.ino)) {
    if (node === changed || !index.isAttached(node) || !isSameEntry(node.stat, stat) || !hasChanged(node.stat, stat)) continue;
    const path = index.pathOf(node);
    if (isGone(path)) continue;
    out.push({ path, stat, prev: node.stat });
  }
  return out;
}

/** Forget dance marks and parked entries older than DANCE_TTL_MS; returns the parked subtrees forgotten. */
function expireDances(state: FilterState, now: number): TreeNode[] {
  expireDanceMarks(state, now);
  const forgotten: TreeNode[] = [];
  for (const [ino, { node, at }] of state.parked) {
    if (now - at <= DANCE_TTL_MS) continue;
    state.parked.delete(ino);
    state.index.forget(node);
    forgotten.push(node);
  }
  return forgotten;
}

export { TreeIndex };

export interface Ancestry {
  /** Decide these now. */
  readonly ready: string[];
  /** Below a name that is not a directory in the index: gone, whatever lstat says (it would follow a link). */
  readonly gone: string[];
  /** Wait for the round of their changed ancestor: touch them again. */
  readonly later: string[];
  /** Ancestors whose directory changed on disk and are not in this round: touch them. */
  readonly changedAncestors: string[];
}

/**
 * Which due paths can be decided in this round. A path's lstat is only
 * right while every indexed ancestor is still the directory the index
 * holds: after `mv d e` the old `d/f` looks gone although it moved (a write
 * to it would be lost as a DELETE), and after `rm -r d; ln -s x d` the old
 * `d/f` "exists" through the link. Such a path waits for its ancestor's own
 * round (which pairs the move or records the link), unless that ancestor is
 * in this round too. `lstatOf` is the shell's lstat, called at most once
 * per ancestor.
 */
export function splitByAncestry(index: TreeIndex, due: readonly string[], lstatOf: (path: string) => Stat | null): Ancestry {
  const dueSet = new Set(due);
  const disk = new Map<string, Stat | null>();
  const onDisk = (path: string): Stat | null => {
    if (!disk.has(path)) disk.set(path, lstatOf(path));
    return disk.get(path)!;
  };
  const out: Ancestry = { ready: [], gone: [], later: [], changedAncestors: [] };
  const changed = new Set<string>();
  for (const path of due) {
    let verdict: 'ready' | 'gone' | 'later' = 'ready';
    for (const ancestor of ancestorsOf(path).reverse()) {
      const node = index.get(ancestor);
      if (node === undefined) break; // new below here: nothing indexed to disagree with
      if (node.stat.type !== 'dir') {
        verdict = 'gone';
        break;
      }
      if (dueSet.has(ancestor)) break; // decided together
      const now = onDisk(ancestor);
      if (now === null || now.type !== 'dir' || now.ino !== node.stat.ino) {
        verdict = 'later';
        if (!changed.has(ancestor)) {
          changed.add(ancestor);
          out.changedAncestors.push(ancestor);
        }
        break;
      }
    }
    out[verdict].push(path);
  }
  return out;
}
