/**
 * The three-way reconcile: for every path, the state both sides last agreed
 * on (the archive) against what each side holds now decides what to move,
 * delete and copy so that both trees end up identical and no change made
 * on either side is lost. Start-up, a reconnect and a realtime report all
 * go through it.
 *
 * Pure: no I/O, no clock. The brain gathers both snapshots, asks
 * `hashesNeeded` which contents it must digest first (and adds those
 * digests to the snapshots), calls `reconcile`, applies the steps in order,
 * each checked on its target before it acts (`expect`), and records in the
 * archive what each target confirms. `records` are the archive updates that
 * need no transfer.
 *
 * Coordinates. A plan's steps name paths as they stand when the step runs:
 * its moves come first, and every later step (including a conflict's
 * set-aside move) names paths after all of the plan's renames. `records`
 * name paths in the archive as it is given, before any of the plan's moves,
 * so they can be written before the moves run: a move the brain records
 * later carries them along, and one that fails leaves them right.
 */

import { conflictName } from './conflict.js';
import { ancestorsOf, depthOf, isSameOrUnder, parentOf, rebase } from './paths.js';
import { directionFrom, otherSide, type Direction, type Side } from './types.js';
import { MTIME_TOLERANCE_MS, sameMtime, sameVersion, type Agreed, type Identity, type Observed, type Version } from './version.js';

export type { Agreed, Identity, Observed, Version } from './version.js';
export { MTIME_TOLERANCE_MS, sameVersion } from './version.js';

/** Root-relative POSIX paths ("a/b"); the root "" is never present. */
export type Snapshot<T> = ReadonlyMap<string, T>;

export type Step =
  /** rsync `path` from the source to the target; `version` is the source's. */
  | { kind: 'copy'; direction: Direction; path: string; version: Observed }
  /** Rename on `side`; `expect` is what `from` holds there now. */
  | { kind: 'move'; side: Side; from: string; to: string; expect: Observed }
  /** Remove on `side` (a directory only after its children's deletes). */
  | { kind: 'delete'; side: Side; path: string; expect: Observed }
  /** For the log and the summary; its work is in move and copy steps. */
  | { kind: 'conflict'; path: string; loser: Side; copy: string };

/**
 * Archive updates that need no transfer: both sides already agree, or both
 * are gone. Transfers are recorded by the brain once confirmed.
 */
export type Record =
  | { kind: 'agree'; path: string; entry: Agreed }
  /** That path and its descendants. */
  | { kind: 'forget'; path: string };

export interface Plan {
  steps: Step[];
  records: Record[];
  /** Step counts; `moves` counts renames carried to the other side, not a conflict's set-aside (counted in `conflicts`). */
  summary: { toRight: number; toLeft: number; deletes: number; moves: number; conflicts: number };
}

/**
 * The same bytes, as far as can be told: equal digests when both are
 * known, else equal size and mtime (rsync's quick check). Any two
 * directories hold the same content: their children are compared on their
 * own paths.
 */
function sameContent(a: Version, b: Version): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'dir') return true;
  if (a.size !== b.size) return false;
  if (a.hash !== undefined && b.hash !== undefined) return a.hash === b.hash;
  return sameMtime(a, b);
}

const identityOf = (o: Observed): Identity => (o.birthMs === undefined ? { ino: o.ino } : { ino: o.ino, birthMs: o.birthMs });
const sameIdentity = (a: Identity, b: Identity): boolean => a.ino === b.ino && a.birthMs === b.birthMs;

/** Known to be another file object: both inodes known and different, or both birth times known and different (a reused inode). */
const otherObject = (a: Identity, b: Identity): boolean =>
  (a.ino !== 0 && b.ino !== 0 && a.ino !== b.ino) || (a.birthMs !== undefined && b.birthMs !== undefined && a.birthMs !== b.birthMs);

/**
 * Has `side` changed this path since the archive? Absent against present
 * counts. A file with the archive's size, mtime and mode that is another
 * file object (`cp -p`, a restore, an atomic save) has changed unless
 * digests show the same bytes: only they can tell.
 */
function changed(a: Agreed | undefined, x: Observed | undefined, side: Side): boolean {
  if (a === undefined || x === undefined) return (a === undefined) !== (x === undefined);
  if (!sameVersion(a, x)) return true;
  return x.type === 'file' && otherObject(a[side], x) && (a.hash === undefined || x.hash === undefined);
}

/** Which side's version is newer; a tie (within MTIME_TOLERANCE_MS) goes to the left. */
const newer = (l: Version, r: Version): Side => (r.mtimeMs - l.mtimeMs > MTIME_TOLERANCE_MS ? 'right' : 'left');

// ---------------------------------------------------------------------------
// A snapshot as it stands after some of the plan's moves.

interface Node<T> {
  /** The path of this entry in the snapshot the view was made from. */
  readonly orig: string;
  readonly v: T;
}

/**
 * A snapshot seen through the moves planned so far. It copies the snapshot
 * only when the first move or set-aside touches it, so a plan without
 * either costs nothing here.
 */
class View<T> {
  private entries: Map<string, Node<T>> | undefined;
  private children: Map<string, Set<string>> | undefined;
  /** Where an entry of the snapshot stands now, for those that moved. */
  private readonly moved = new Map<string, string>();
  /** Directories a move creates as missing parents of its destination (the helper makes them; their metadata comes later). */
  readonly made = new Set<string>();

  constructor(private readonly base: Snapshot<T>) {}

  get(path: string): T | undefined {
    return this.entries === undefined ? this.base.get(path) : this.entries.get(path)?.v;
  }

  origOf(path: string): string | undefined {
    if (this.entries === undefined) return this.base.has(path) ? path : undefined;
    return this.entries.get(path)?.orig;
  }

  /** Where the snapshot's entry at `orig` stands now; undefined when it left the view. */
  locate(orig: string): string | undefined {
    const path = this.moved.get(orig) ?? orig;
    return this.origOf(path) === orig ? path : undefined;
  }

  occupied(path: string): boolean {
    return this.get(path) !== undefined || this.made.has(path);
  }

  get size(): number {
    return (this.entries ?? this.base).size;
  }

  forEach(visit: (value: T, path: string) => void): void {
    if (this.entries === undefined) this.base.forEach(visit);
    else this.entries.forEach((node, path) => visit(node.v, path));
  }

  /** Rename `from` and everything below it to `to`; with `makeParents`, note the missing parents of `to` as made. */
  move(from: string, to: string, makeParents: boolean): void {
    const { entries, children } = this.materialize();
    const subtree: string[] = [];
    for (const stack = [from]; stack.length > 0; ) {
      const path = stack.pop()!;
      subtree.push(path);
      for (const child of children.get(path) ?? []) stack.push(child);
    }
    const nodes = subtree.map((path) => [path, entries.get(path)!] as const);
    for (const [path] of nodes) this.unlink(path);
    for (const [path, node] of nodes) this.link(rebase(path, from, to), node);
    if (this.made.size > 0) {
      for (const dir of [...this.made]) {
        if (!isSameOrUnder(dir, from)) continue;
        this.made.delete(dir);
        this.made.add(rebase(dir, from, to));
      }
    }
    if (makeParents) for (let dir = parentOf(to); dir !== '' && !this.occupied(dir); dir = parentOf(dir)) this.made.add(dir);
  }

  /** A conflict's loser, a file or symlink, renamed on its own side. */
  setAside(from: string, to: string): void {
    this.materialize();
    const node = this.entries!.get(from)!;
    this.unlink(from);
    this.link(to, node);
  }

  private unlink(path: string): void {
    this.entries!.delete(path);
    this.children!.delete(path);
    this.children!.get(parentOf(path))?.delete(path);
  }

  private link(path: string, node: Node<T>): void {
    this.entries!.set(path, node);
    if (node.orig !== path) this.moved.set(node.orig, path);
    else this.moved.delete(node.orig);
    const parent = parentOf(path);
    const siblings = this.children!.get(parent);
    if (siblings === undefined) this.children!.set(parent, new Set([path]));
    else siblings.add(path);
  }

  private materialize(): { entries: Map<string, Node<T>>; children: Map<string, Set<string>> } {
    if (this.entries === undefined || this.children === undefined) {
      const entries = new Map<string, Node<T>>();
      const children = new Map<string, Set<string>>();
      for (const [path, v] of this.base) {
        entries.set(path, { orig: path, v });
        const parent = parentOf(path);
        const siblings = children.get(parent);
        if (siblings === undefined) children.set(parent, new Set([path]));
        else siblings.add(path);
      }
      this.entries = entries;
      this.children = children;
    }
    return { entries: this.entries, children: this.children };
  }
}

interface Views {
  readonly archive: View<Agreed>;
  readonly left: View<Observed>;
  readonly right: View<Observed>;
}

// ---------------------------------------------------------------------------
// Moves: a rename on one side, found by identity, carried to the other.

/** `mover` renamed the archive's `from` to `to` (its own path now). */
interface Rename {
  readonly mover: Side;
  readonly from: string;
  readonly to: string;
  readonly entry: Agreed;
  readonly depth: number;
}

type Missing = Map<number, { readonly from: string; readonly entry: Agreed } | null>;

/** An archived identity of `side` no longer at its path: noted by inode, null when several archive paths share it. */
function noteMissing(missing: Missing, side: Side, from: string, entry: Agreed, here: Observed | undefined): void {
  const id = entry[side];
  if (id.ino === 0 || (here !== undefined && here.ino === id.ino && !otherObject(id, here))) return;
  missing.set(id.ino, missing.has(id.ino) ? null : { from, entry });
}

/**
 * Renames `side` made since the archive: an archive path whose identity for
 * that side is no longer there (`missing`) but stands at exactly one other
 * path, with the same type. An inode held at several paths (hard links) or
 * by several archive paths is no rename. Only the topmost of a renamed
 * subtree: an entry that went along with its renamed parent is no rename of
 * its own.
 */
function findRenames(missing: Missing, snapshot: Snapshot<Observed>, side: Side): Rename[] {
  if (missing.size === 0) return [];
  const now = new Map<number, string | null>();
  snapshot.forEach((x, path) => {
    if (missing.has(x.ino)) now.set(x.ino, now.has(x.ino) ? null : path);
  });
  const found = new Map<string, Rename>();
  for (const [ino, was] of missing) {
    const to = now.get(ino);
    if (was === null || to === undefined || to === null || to === was.from) continue;
    const there = snapshot.get(to)!;
    if (there.type !== was.entry.type || otherObject(was.entry[side], there)) continue;
    found.set(was.from, { mover: side, from: was.from, to, entry: was.entry, depth: depthOf(to) });
  }
  const out: Rename[] = [];
  for (const rename of found.values()) {
    const parent = ancestorsOf(rename.from).find((path) => found.has(path));
    if (parent !== undefined && rebase(rename.from, parent, found.get(parent)!.to) === rename.to) continue;
    out.push(rename);
  }
  return out;
}

/** Every path of these renames, and every ancestor of one. */
function renameFootprint(renames: readonly Rename[]): { paths: Set<string>; above: Set<string> } {
  const paths = new Set<string>();
  const above = new Set<string>();
  for (const { from, to } of renames) {
    for (const path of [from, to]) {
      paths.add(path);
      for (const dir of ancestorsOf(path)) above.add(dir);
    }
  }
  return { paths, above };
}

const touches = (footprint: { paths: Set<string>; above: Set<string> }, path: string): boolean =>
  footprint.paths.has(path) || footprint.above.has(path) || ancestorsOf(path).some((dir) => footprint.paths.has(dir));

/**
 * Carry renames to the other side where that is safe, and return the views
 * of the archive and both sides as they stand after them (the renamed
 * subtrees rebased), with the move steps in the order they must run.
 *
 * A rename of `from` to `to` by X is carried to Y only when
 * - Y still holds `from` unchanged: the archive's type and Y identity, and
 *   for a file or symlink the archive's version (a directory's content may
 *   have changed: it is compared after the move, below `to`);
 * - nothing stands at `to` on Y nor in the archive, once the renames
 *   planned before it have run (a chain `b -> c`, `a -> b` runs `b -> c`
 *   first; a cycle is no move);
 * - no ancestor of `to` on Y is a file or symlink (missing ones are made by
 *   the helper; the later copy of the directory sets their metadata), and
 *   none is waiting to be renamed itself;
 * - Y renamed nothing at, above or below `from` or `to` itself: renames on
 *   both sides that touch each other are left to the per-path rules, which
 *   keep both names (both sides renaming to the same name ends agreed).
 * Anything else falls back to the per-path rules, which lose nothing.
 */
function carryRenames(archive: Snapshot<Agreed>, left: Snapshot<Observed>, right: Snapshot<Observed>): { views: Views; moves: Step[]; archived: Archived | undefined } {
  const views: Views = { archive: new View(archive), left: new View(left), right: new View(right) };
  const snapshots = { left, right };
  // One pass over the archive finds what each side no longer holds in place, and keeps what it looked up for the per-path pass.
  const archived: Archived = { paths: [], entries: [], left: [], right: [] };
  const missing = { left: new Map() as Missing, right: new Map() as Missing };
  archive.forEach((entry, path) => {
    const l = left.get(path);
    const r = right.get(path);
    archived.paths.push(path);
    archived.entries.push(entry);
    archived.left.push(l);
    archived.right.push(r);
    noteMissing(missing.left, 'left', path, entry, l);
    noteMissing(missing.right, 'right', path, entry, r);
  });
  const found = { left: findRenames(missing.left, left, 'left'), right: findRenames(missing.right, right, 'right') };
  const apart = (renames: Rename[], others: Rename[]): Rename[] => {
    if (others.length === 0) return renames;
    const footprint = renameFootprint(others);
    return renames.filter((r) => !touches(footprint, r.from) && !touches(footprint, r.to));
  };
  const candidates = [...apart(found.left, found.right), ...apart(found.right, found.left)].sort((x, y) => x.depth - y.depth || (x.to < y.to ? -1 : x.to > y.to ? 1 : 0));

  // Renames not yet carried nor refused, per mover, by source and by destination.
  const pending = {
    left: { from: new Map<string, Rename>(), to: new Map<string, Rename>() },
    right: { from: new Map<string, Rename>(), to: new Map<string, Rename>() },
  };
  for (const r of candidates) {
    pending[r.mover].from.set(r.from, r);
    pending[r.mover].to.set(r.to, r);
  }
  /** Renames waiting for another (the key) to be carried or refused first. */
  const waiting = new Map<Rename, Rename[]>();
  const moves: Step[] = [];

  type Verdict = { kind: 'carry'; from: string; expect: Observed } | { kind: 'no' } | { kind: 'wait'; on: Rename };
  const NO: Verdict = { kind: 'no' };
  const judge = (r: Rename): Verdict => {
    const target = otherSide(r.mover);
    const view = views[target];
    const mine = pending[r.mover];
    const held = snapshots[target].get(r.from);
    if (held === undefined || held.type !== r.entry.type || otherObject(r.entry[target], held)) return NO;
    if (held.type !== 'dir' && !sameVersion(r.entry, held)) return NO;
    const from = view.locate(r.from);
    if (from === undefined || views.archive.locate(r.from) !== from) return NO;
    if (isSameOrUnder(r.to, from) || isSameOrUnder(from, r.to)) return NO;
    // Wait for a rename that vacates the destination or a directory above it, or that makes such a directory.
    for (let path = r.to; path !== ''; path = parentOf(path)) {
      const here = view.origOf(path);
      const vacating = here === undefined ? undefined : mine.from.get(here);
      if (vacating !== undefined && vacating !== r) return { kind: 'wait', on: vacating };
      const archived = views.archive.origOf(path);
      const vacatingArchived = archived === undefined ? undefined : mine.from.get(archived);
      if (vacatingArchived !== undefined && vacatingArchived !== r) return { kind: 'wait', on: vacatingArchived };
      const making = path === r.to ? undefined : mine.to.get(path);
      if (making !== undefined) return { kind: 'wait', on: making };
    }
    if (view.occupied(r.to) || views.archive.get(r.to) !== undefined) return NO;
    for (let dir = parentOf(r.to); dir !== ''; dir = parentOf(dir)) {
      const there = view.get(dir);
      if (there !== undefined && there.type !== 'dir') return NO;
    }
    return { kind: 'carry', from, expect: held };
  };

  const settle = (first: Rename): void => {
    for (const stack = [first]; stack.length > 0; ) {
      const r = stack.pop()!;
      const mine = pending[r.mover];
      if (mine.from.get(r.from) !== r) continue;
      const verdict = judge(r);
      if (verdict.kind === 'wait') {
        const queue = waiting.get(verdict.on);
        if (queue === undefined) waiting.set(verdict.on, [r]);
        else queue.push(r);
        continue;
      }
      mine.from.delete(r.from);
      mine.to.delete(r.to);
      if (verdict.kind === 'carry') {
        const target = otherSide(r.mover);
        views.archive.move(views.archive.locate(r.from)!, r.to, false);
        views[target].move(verdict.from, r.to, true);
        moves.push({ kind: 'move', side: target, from: verdict.from, to: r.to, expect: verdict.expect });
      }
      const released = waiting.get(r);
      if (released === undefined) continue;
      waiting.delete(r);
      for (let i = released.length - 1; i >= 0; i--) stack.push(released[i]!);
    }
  };
  for (const r of candidates) settle(r);
  // Whatever still waits is part of a cycle (a swap): no move, the per-path rules copy it.
  return { views, moves, archived: moves.length === 0 ? archived : undefined };
}

// ---------------------------------------------------------------------------
// The per-path decision.

/** A path that ends holding `side`'s version: copied to the other side. */
interface Winner {
  readonly side: Side;
  readonly v: Observed;
}

type Visit = (path: string, a: Agreed | undefined, l: Observed | undefined, r: Observed | undefined) => void;

/** The archive's paths with what each side held there, as one pass looked them up (valid while no rename moved anything). */
interface Archived {
  readonly paths: string[];
  readonly entries: Agreed[];
  readonly left: Array<Observed | undefined>;
  readonly right: Array<Observed | undefined>;
}

/** Every path of the archive or of either side, once, as they stand after the carried renames. */
function eachPath(views: Views, archived: Archived | undefined, visit: Visit): void {
  const { archive, left, right } = views;
  // Counting what was seen skips a side's pass when all its paths were (the usual case).
  let seenLeft = 0;
  let seenRight = 0;
  const visitArchived = (a: Agreed, path: string, l: Observed | undefined, r: Observed | undefined): void => {
    if (l !== undefined) seenLeft += 1;
    if (r !== undefined) seenRight += 1;
    visit(path, a, l, r);
  };
  if (archived === undefined) archive.forEach((a, path) => visitArchived(a, path, left.get(path), right.get(path)));
  else for (let i = 0; i < archived.paths.length; i++) visitArchived(archived.entries[i]!, archived.paths[i]!, archived.left[i], archived.right[i]);
  if (seenLeft < left.size) {
    left.forEach((l, path) => {
      if (archive.get(path) !== undefined) return;
      const r = right.get(path);
      if (r !== undefined) seenRight += 1;
      visit(path, undefined, l, r);
    });
  }
  if (seenRight < right.size) {
    right.forEach((r, path) => {
      if (archive.get(path) === undefined && left.get(path) === undefined) visit(path, undefined, undefined, r);
    });
  }
}

function agreedEntry(l: Observed, r: Observed): Agreed {
  const version = { type: l.type, size: l.size, mtimeMs: l.mtimeMs, mode: l.mode, left: identityOf(l), right: identityOf(r) };
  const hash = l.hash ?? r.hash;
  return hash === undefined ? version : { ...version, hash };
}

/** The archive entry again, with what both sides now tell of it that it did not hold (identities, a digest). */
function refreshed(a: Agreed, l: Observed, r: Observed): Agreed | undefined {
  const hash = a.hash ?? l.hash ?? r.hash;
  if (sameIdentity(a.left, l) && sameIdentity(a.right, r) && hash === a.hash) return undefined;
  const entry = { type: a.type, size: a.size, mtimeMs: a.mtimeMs, mode: a.mode, left: identityOf(l), right: identityOf(r) };
  return hash === undefined ? entry : { ...entry, hash };
}

/**
 * Plan how both trees become identical without losing a change.
 *
 * Invariants, per path p (A = archive, L = left, R = right, in the
 * coordinates after the renames carried by `carryRenames`; undefined =
 * absent):
 * - A side changed p when it differs from A (see `changed`). When the
 *   archive cannot tell (no digest) but both sides hold digests that
 *   differ, both changed.
 * - Neither changed: nothing; an `agree` refreshes identities or a digest
 *   the archive lacked.
 * - One changed: its state wins; absent -> delete on the other side,
 *   present -> copy to it, after a delete of an entry of another type there.
 * - Both changed: both absent -> forget; the same version -> agree; the
 *   same content (equal digests, or two directories) -> the newer mtime's
 *   metadata is copied, no conflict; one absent -> the present (modified)
 *   version is restored; else a conflict: the newer mtime keeps the name (a
 *   directory always keeps it against a file or symlink; a tie goes to the
 *   left), the loser is moved aside on its own side to
 *   conflictName(p, loser mtime) (numbered when that name is taken) and both
 *   names are copied across. Two directories never conflict.
 * - No archive entry is the same rule with A absent: the union; different
 *   content on both sides is a conflict, equal content agrees.
 * - The result is a tree: a path that survives makes each ancestor a
 *   directory. An ancestor the rules above would delete (deleted on one
 *   side while something below changed or appeared on the other) is kept
 *   from the side that still has it, and so restored on the deleting side;
 *   an ancestor the rules would replace by a file or symlink is kept as the
 *   directory, and that file or symlink is set aside as a conflict copy.
 *   Unchanged descendants of a deleted directory are deleted. Hence a
 *   directory is never deleted on a side where something below it survives.
 * - Steps: renames (ancestors' before descendants', a chain's vacating one
 *   first), then conflict set-asides, then deletes (deepest first), then
 *   copies (parents first), then the conflict notes.
 */
export function reconcile(archive: Snapshot<Agreed>, left: Snapshot<Observed>, right: Snapshot<Observed>): Plan {
  const { views, moves, archived } = carryRenames(archive, left, right);
  // The result, path by path: a path both sides hold and keep is in neither of these.
  const winners = new Map<string, Winner>();
  /** Paths that end absent while a side holds them. */
  const gone = new Set<string>();
  const records: Record[] = [];
  const forgets: string[] = [];
  const conflicts: Array<{ path: string; loser: Side; version: Observed }> = [];

  eachPath(views, archived, (path, a, l, r) => {
    let lc = changed(a, l, 'left');
    let rc = changed(a, r, 'right');
    if (!lc && !rc && l?.hash !== undefined && r?.hash !== undefined && l.hash !== r.hash) lc = rc = true;
    if (!lc && !rc) {
      // Present on both sides (an archived path absent on a side is a change there).
      const entry = refreshed(a!, l!, r!);
      if (entry !== undefined) records.push({ kind: 'agree', path: archivePath(views, path), entry });
      return;
    }
    if (lc !== rc || l === undefined || r === undefined) {
      // One side changed, or both and one deleted: the present (changed) version wins.
      const side: Side = lc !== rc ? (lc ? 'left' : 'right') : l !== undefined ? 'left' : 'right';
      const v = side === 'left' ? l : r;
      if (v !== undefined) winners.set(path, { side, v });
      else if (l !== undefined || r !== undefined) gone.add(path);
      else if (a !== undefined) forgets.push(path);
      return;
    }
    if (sameVersion(l, r)) {
      records.push({ kind: 'agree', path: archivePath(views, path), entry: agreedEntry(l, r) });
    } else if (sameContent(l, r)) {
      const side = newer(l, r);
      winners.set(path, { side, v: side === 'left' ? l : r });
    } else {
      const winner: Side = l.type === 'dir' ? 'left' : r.type === 'dir' ? 'right' : newer(l, r);
      winners.set(path, { side: winner, v: winner === 'left' ? l : r });
      conflicts.push({ path, loser: otherSide(winner), version: winner === 'left' ? r : l });
    }
  });

  const setAsides: Step[] = [];
  const notes: Step[] = [];
  const setAside = (path: string, loser: Side, version: Observed): void => {
    let copy = conflictName(path, version.mtimeMs);
    for (let attempt = 1; isTaken(views, winners, copy); attempt++) copy = conflictName(path, version.mtimeMs, attempt);
    views[loser].setAside(path, copy);
    winners.set(copy, { side: loser, v: version });
    setAsides.push({ kind: 'move', side: loser, from: path, to: copy, expect: version });
    notes.push({ kind: 'conflict', path, loser, copy });
  };
  for (const c of conflicts) setAside(c.path, c.loser, c.version);

  // Make the result a tree: every ancestor of a surviving path a directory.
  // A path both sides hold has directories above it on both sides, which
  // stay directories (two directories never conflict), except above a
  // carried rename's destination, whose missing parents the helper makes:
  // only the winners and those destinations need looking at.
  const resultAt = (path: string): Observed | undefined => {
    const winner = winners.get(path);
    if (winner !== undefined || gone.has(path)) return winner?.v;
    return views.right.get(path) === undefined ? undefined : views.left.get(path);
  };
  const survivors = [...winners.keys(), ...moves.flatMap((m) => (m.kind === 'move' && resultAt(m.to) !== undefined ? [m.to] : []))];
  for (const path of survivors) {
    for (const dir of ancestorsOf(path)) {
      const result = resultAt(dir);
      if (result?.type === 'dir') break;
      const holder: Side | undefined =
        views.left.get(dir)?.type === 'dir' ? 'left' : views.right.get(dir)?.type === 'dir' ? 'right' : undefined;
      if (holder === undefined) throw new Error(`reconcile: no side holds the directory ${JSON.stringify(dir)} above ${JSON.stringify(path)}`);
      if (result !== undefined) setAside(dir, otherSide(holder), result);
      gone.delete(dir);
      winners.set(dir, { side: holder, v: views[holder].get(dir)! });
    }
  }

  const deletes: Step[] = [];
  const copies: Step[] = [];
  for (const path of gone) {
    for (const side of ['left', 'right'] as const) {
      const held = views[side].get(path);
      if (held !== undefined) deletes.push({ kind: 'delete', side, path, expect: held });
    }
  }
  for (const [path, w] of winners) {
    // An entry of another type goes first (a directory after its contents, which the result does not hold).
    const target = otherSide(w.side);
    const held = views[target].get(path);
    if (held !== undefined && held.type !== w.v.type) deletes.push({ kind: 'delete', side: target, path, expect: held });
    copies.push({ kind: 'copy', direction: directionFrom(w.side), path, version: w.v });
  }
  deletes.sort((x, y) => compareBy(y, x));
  copies.sort(compareBy);
  setAsides.sort(compareBy);
  notes.sort(compareBy);

  const forgotten = new Set(forgets);
  for (const path of forgets) {
    if (ancestorsOf(path).some((dir) => forgotten.has(dir))) continue;
    records.push({ kind: 'forget', path: archivePath(views, path) });
  }

  const steps = [...moves, ...setAsides, ...deletes, ...copies, ...notes];
  return { steps, records, summary: summarize(steps, moves.length) };
}

/** A conflict copy's name must be free everywhere: on both sides, in the archive, in the plan. */
const isTaken = (views: Views, winners: Map<string, Winner>, path: string): boolean =>
  winners.has(path) || views.archive.get(path) !== undefined || views.left.occupied(path) || views.right.occupied(path);

/**
 * `path` (after the plan's renames) in the archive's coordinates before
 * them: the archive's own entry, else rebased from its nearest archived
 * ancestor.
 */
function archivePath(views: Views, path: string): string {
  const orig = views.archive.origOf(path);
  if (orig !== undefined) return orig;
  for (const dir of ancestorsOf(path)) {
    const dirOrig = views.archive.origOf(dir);
    if (dirOrig !== undefined) return rebase(path, dir, dirOrig);
  }
  return path;
}

const pathOf = (step: Step): string => (step.kind === 'move' ? step.from : step.path);
const sideOf = (step: Step): string =>
  step.kind === 'copy' ? step.direction : step.kind === 'conflict' ? step.loser : step.side;

/** By path, then side: parents before children. */
function compareBy(x: Step, y: Step): number {
  const px = pathOf(x);
  const py = pathOf(y);
  if (px !== py) return px < py ? -1 : 1;
  const sx = sideOf(x);
  const sy = sideOf(y);
  return sx === sy ? 0 : sx < sy ? -1 : 1;
}

function summarize(steps: readonly Step[], moves: number): Plan['summary'] {
  const summary = { toRight: 0, toLeft: 0, deletes: 0, moves, conflicts: 0 };
  for (const step of steps) {
    if (step.kind === 'copy') summary[step.direction === 'leftToRight' ? 'toRight' : 'toLeft'] += 1;
    else if (step.kind === 'delete') summary.deletes += 1;
    else if (step.kind === 'conflict') summary.conflicts += 1;
  }
  return summary;
}

/**
 * The paths, per side (in that side's snapshot), whose digest the brain
 * must add before `reconcile` can decide them right; a small set:
 * - both sides hold a file (or both a symlink) of equal size at a path
 *   both changed (the archive lacking it included: a first run hashes
 *   every such path, as Unison does): equal size and mtime do not prove
 *   equal bytes (two writes within a microsecond), and equal bytes with
 *   other mtimes are no conflict;
 * - a side holds a file with the archive's size, mtime and mode that is
 *   another file object, and the archive has the digest to compare with.
 * Without those digests equal size and mtime count as equal content.
 */
export function hashesNeeded(archive: Snapshot<Agreed>, left: Snapshot<Observed>, right: Snapshot<Observed>): { left: string[]; right: string[] } {
  const { views, archived } = carryRenames(archive, left, right);
  const needed = { left: new Set<string>(), right: new Set<string>() };
  const need = (side: Side, path: string): void => {
    needed[side].add(views[side].origOf(path)!);
  };
  eachPath(views, archived, (path, a, l, r) => {
    if (l !== undefined && r !== undefined && l.type === r.type && (l.type === 'file' || l.type === 'symlink') && l.size === r.size) {
      if ((l.hash === undefined || r.hash === undefined) && changed(a, l, 'left') && changed(a, r, 'right')) {
        if (l.hash === undefined) need('left', path);
        if (r.hash === undefined) need('right', path);
      }
    }
    if (a?.hash === undefined || a.type !== 'file') return;
    if (l !== undefined && l.hash === undefined && sameVersion(a, l) && otherObject(a.left, l)) need('left', path);
    if (r !== undefined && r.hash === undefined && sameVersion(a, r) && otherObject(a.right, r)) need('right', path);
  });
  const sorted = (paths: Set<string>): string[] => [...paths].sort();
  return { left: sorted(needed.left), right: sorted(needed.right) };
}
