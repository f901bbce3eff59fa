/**
 * Realtime decisions against the archive of agreed state (reconcile.ts has
 * the types; the brain keeps the archive in src/state/archive.ts).
 *
 * A filter's report is a hint that a path changed on its side. It is an
 * echo, and nothing is sent, when it equals what the archive holds for that
 * side: psync's own transfer, move or delete was recorded there once the
 * target confirmed it, so the target's report of that work matches. This
 * replaces the echo ledger, whose expectations had to guess what a report
 * would look like and for how long to wait for it.
 *
 * The archive is written only with what a target confirmed holding after an
 * action (agreedAfterSend, agreedAfterMove), never with what the source
 * reported before it: a file still being written on the source is agreed as
 * the snapshot the target received, and the source's next report, which
 * differs, is sent again.
 */

import { depthOf, isSameOrUnder } from './paths.js';
import { sameStat, sameVersion, versionOf, type Agreed, type Identity, type Observed } from './version.js';
import { otherSide, type Action, type Side, type Stat } from './types.js';

/** The archive as the decisions read it. */
export type Lookup = (path: string) => Agreed | undefined;

export function identityOf(stat: Identity): Identity {
  return stat.birthMs === undefined ? { ino: stat.ino } : { ino: stat.ino, birthMs: stat.birthMs };
}

/** What `side` holds at an agreed path if nobody changed it there: the stat a helper checks before it acts. */
export function agreedStat(entry: Agreed, side: Side): Stat {
  return { type: entry.type, ino: entry[side].ino, size: entry.size, mtimeMs: entry.mtimeMs, mode: entry.mode };
}

/**
 * What the target must still hold for a reported DELETE to go ahead there:
 * the version both sides agreed on, as the target holds it. The source's
 * last stat is another version when the source changed the path just
 * before deleting it (an edit and a delete within one settle delay report
 * as one DELETE of the edited version); the target, which never saw that
 * edit, still holds the agreed one, and deleting it is right. A path the
 * archive does not hold is checked against the reported stat.
 */
export function deleteExpectation(agreed: Agreed | undefined, target: Side, reported: Stat): Stat {
  return agreed === undefined ? reported : agreedStat(agreed, target);
}

/**
 * How a reported MOVE is carried over: what the target must still hold at
 * the old name, and whether the new name must be sent after the move.
 * Like a DELETE (deleteExpectation), the target is expected to hold the
 * agreed version: a file edited and renamed within one settle delay is
 * reported as one MOVE of the edited version, which the target never had;
 * expecting that version refused the move, and the old name stayed on the
 * target for good. The target renames what it holds, then the edit is sent
 * (`thenSend`). Only when what moved is the agreed file itself (the
 * source's inode the archive knows): another file under the old name (a
 * conflict copy set aside there, a file psync wrote since) is checked
 * against the reported stat, and so are a path the archive does not hold
 * and a directory (its children carry its content).
 */
export function movePlan(agreed: Agreed | undefined, source: Side, moved: Stat): { expect: Stat; thenSend: boolean } {
  if (agreed === undefined || moved.type === 'dir' || agreed[source].ino === 0 || agreed[source].ino !== moved.ino) return { expect: moved, thenSend: false };
  return { expect: agreedStat(agreed, otherSide(source)), thenSend: !sameVersion(agreed, versionOf(moved)) };
}

/**
 * Does `stat` on `side` hold the agreed version? Same version (sameVersion)
 * and, for a file or symlink, the same inode when the archive knows it: a
 * file replaced by another with the same size and mtime (`cp -p`) is a
 * change. A directory's inode is not compared: its children carry its
 * content.
 */
export function holdsAgreed(entry: Agreed, side: Side, stat: Stat): boolean {
  if (!sameVersion(entry, versionOf(stat))) return false;
  if (entry.type === 'dir') return true;
  const known = entry[side].ino;
  return known === 0 || known === stat.ino;
}

/**
 * Is this report from `side` an echo: does it only say what the archive
 * already holds for that side? An RSYNC of the agreed version; a DELETE of
 * a path the archive does not hold (deleted by psync on this side, or never
 * agreed: nothing the other side could still need to lose), or of a file
 * psync has replaced there since (its tombstone, below); a MOVE whose
 * old name is no longer agreed and whose new name holds the agreed version.
 *
 * `gone` holds what the archive agreed at a path before psync last changed
 * it there (deleted it, renamed it away, or agreed on a newer version: its
 * tombstone). A report that still shows exactly that version, inode
 * included, was seen before psync's own later change and says nothing new:
 * psync writes a file and the source deletes it at once, or a file still
 * being written is sent twice, and the target's report of the first write
 * comes after the second (not when the inode agreed there now is the
 * report's own: a chmod back to the old mode is the user's change); or the
 * user deletes a file as psync's write of
 * the other side's edit replaces it (another inode now agreed there): the
 * edit wins over the delete, as it would have had it come a moment later.
 * RACE: a user who puts that very version back
 * into the same inode (size and mtime too) in that moment is not seen.
 */
export function isEcho(lookup: Lookup, side: Side, action: Action, gone: Lookup = () => undefined): boolean {
  switch (action.kind) {
    case 'rsync': {
      const entry = lookup(action.path);
      if (entry !== undefined && holdsAgreed(entry, side, action.stat)) return true;
      const tombstone = gone(action.path);
      // A directory's inode must match too (holdsAgreed does not compare it): one made again is a change.
      if (tombstone === undefined || tombstone[side].ino === 0 || tombstone[side].ino !== action.stat.ino) return false;
      // The inode agreed there now is that very one: the user put the old version back (a chmod back), no late report.
      if (entry !== undefined && entry[side].ino === action.stat.ino) return false;
      return holdsAgreed(tombstone, side, action.stat);
    }
    case 'delete': {
      const entry = lookup(action.path);
      if (entry === undefined) return true;
      // A delete of the version psync replaced on this side since (the user deleted it as psync's write
      // of the other side's edit landed): the path holds psync's newer write, which the delete never saw.
      const tombstone = gone(action.path);
      const known = entry[side].ino;
      return (
        action.stat.type !== 'dir' &&
        known !== 0 &&
        known !== action.stat.ino &&
        tombstone !== undefined &&
        tombstone[side].ino === action.stat.ino &&
        holdsAgreed(tombstone, side, action.stat)
      );
    }
    case 'move': {
      if (lookup(action.from) !== undefined) return false;
      const entry = lookup(action.to);
      return entry !== undefined && holdsAgreed(entry, side, action.stat);
    }
  }
}

/**
 * A MOVE whose old name holds, in the archive, another file than the one
 * that moved (both inodes known, and different) is not a rename of what was
 * agreed there: the other side must keep its entry at the old name. It is
 * the arrival of a new entry under the new name, sent as an RSYNC. This is
 * the target's report when its helper set aside its own version as a
 * conflict copy to let a move take the name: carried over as a move, it
 * would have set aside the other side's good file. Judged again as the
 * move is applied: psync may have written the old name on the source since
 * (the other side's edit, queued first, recreated it there).
 */
export function asReported(lookup: Lookup, side: Side, action: Action): Action {
  if (action.kind !== 'move' || action.stat.type === 'dir') return action;
  const agreedThere = lookup(action.from);
  if (agreedThere === undefined || agreedThere[side].ino === 0 || agreedThere[side].ino === action.stat.ino) return action;
  return { kind: 'rsync', path: action.to, stat: action.stat };
}

/**
 * A reported MOVE, just before it is applied, when psync has written its
 * new name since the report was judged: still a rename to carry over, or
 * `superseded` when what psync agreed there on the source side is another
 * file (a transfer from the other side replaced the
 * moved file there and kept it as a conflict copy, which is sent as a file
 * of its own). Carrying the move over then would put the moved file back
 * at the name on the other side, crossed with the source: only its old
 * name still has to go there.
 */
export function moveStillValid(lookup: Lookup, source: Side, move: Extract<Action, { kind: 'move' }>): 'move' | 'superseded' {
  const there = lookup(move.to);
  if (there === undefined || move.stat.type === 'dir') return 'move';
  const ino = there[source].ino;
  return ino !== 0 && ino !== move.stat.ino ? 'superseded' : 'move';
}

/** What rsync's transfer list says it sent: the size, the mtime in whole seconds, the permissions. */
export interface Listed {
  readonly isDir: boolean;
  readonly size: number;
  readonly mtimeSeconds: number;
  /** Unknown for a directory rsync did not list (its attributes were right already). */
  readonly mode?: number;
}

/** Does `stat` carry what rsync listed: the mtime's second, and the size unless `sizeToo` is false? */
function matchesListed(listed: Listed, stat: Stat, sizeToo: boolean): boolean {
  if (listed.isDir || stat.type === 'dir') return listed.isDir && stat.type === 'dir';
  return (!sizeToo || listed.size === stat.size) && Math.floor(stat.mtimeMs / 1000) === listed.mtimeSeconds;
}

/**
 * The archive entry after rsync sent `path` from `source`, or undefined
 * when nothing confirms what was sent (the path is not in the transfer
 * list: it vanished, or rsync skipped it; the archive keeps what it had).
 * In order:
 * - the target holds what the source reported: agreed, both inodes;
 * - the list shows rsync read a newer state than the report (the file
 *   changed, or grew, before rsync got to it) and the target holds that
 *   state (the listed size, or more for a file growing while rsync read
 *   it, with the listed mtime): what the target holds is agreed, the
 *   source's inode unknown (its next report differs, and is sent);
 * - the list confirms the report: the report is agreed, the target's
 *   inode unknown (it changed again since rsync wrote it: its own report
 *   differs, and is sent).
 * RACE: a target edited within the same second of mtime right after
 * rsync's write of a file that had also changed since its report is taken
 * for rsync's write.
 */
export function agreedAfterSend(source: Side, sent: Stat, listed: Listed | undefined, targetNow: Stat | undefined): Agreed | undefined {
  if (listed === undefined) return undefined;
  const readNewer = !matchesListed(listed, sent, true);
  let agreed: Stat;
  if (targetNow !== undefined && sameStat(targetNow, sent)) agreed = targetNow;
  else if (targetNow !== undefined && readNewer && matchesListed(listed, targetNow, false) && targetNow.size >= listed.size) agreed = targetNow;
  else if (!readNewer) agreed = sent;
  else return undefined;
  const found = versionOf(agreed);
  // A directory gets the source's mode as rsync read it, which may be newer than the report.
  const version = found.type === 'dir' && listed.mode !== undefined ? { ...found, mode: listed.mode } : found;
  const identity = (stat: Stat | undefined): Identity =>
    stat !== undefined && sameVersion(version, versionOf(stat)) ? identityOf(stat) : { ino: 0 };
  return { ...version, ...bySide(source, identity(sent), identity(targetNow)) };
}

/**
 * The archive entry at `to` after the target's helper moved `from` there:
 * the version the source reported, the source's inode, and the target's
 * inode when what now stands at `to` there is that version.
 */
export function agreedAfterMove(source: Side, moved: Stat, targetNow: Stat | undefined): Agreed {
  const version = versionOf(moved);
  const targetIdentity = targetNow !== undefined && sameVersion(version, versionOf(targetNow)) ? identityOf(targetNow) : { ino: 0 };
  return { ...version, ...bySide(source, identityOf(moved), targetIdentity) };
}

/**
 * A directory rsync listed without being asked for it: a parent it made or
 * updated on the way to a listed path. Both sides now hold it with the
 * listed permissions; neither inode is known.
 */
export function agreedImpliedDir(listed: Listed): Agreed {
  return { type: 'dir', size: 0, mtimeMs: listed.mtimeSeconds * 1000, mode: listed.mode ?? 0, left: { ino: 0 }, right: { ino: 0 } };
}

/**
 * The directories a send made again on its target, and what it wrote below
 * them. rsync makes the missing parents of a listed path; one both sides
 * had agreed on (the archive holds it as a directory) and no send named was
 * renamed or deleted on the target after the brain checked it (dropOrphans)
 * and before rsync wrote: what rsync wrote below it stands where the
 * target's user no longer has that directory. `dirs` are the directories
 * rsync made at or below such a one, deepest first; `sends` the sent paths
 * below them.
 */
export function remadeBelow(
  listed: Iterable<{ readonly path: string; readonly isDir: boolean; readonly created: boolean }>,
  sent: readonly string[],
  lookup: Lookup,
): { readonly dirs: string[]; readonly sends: string[] } {
  const named = new Set(sent);
  const made = [...listed].filter((entry) => entry.isDir && entry.created && !named.has(entry.path)).map((entry) => entry.path);
  const roots = made.filter((path) => lookup(path)?.type === 'dir');
  if (roots.length === 0) return { dirs: [], sends: [] };
  const below = (path: string): boolean => roots.some((root) => isSameOrUnder(path, root));
  return { dirs: made.filter(below).sort((a, b) => depthOf(b) - depthOf(a)), sends: sent.filter(below) };
}

/** The entry a file sent from `source` as `stat` will be agreed as, if it arrives as reported (the target's inode unknown). */
export function sentAs(source: Side, stat: Stat): Agreed {
  return { ...versionOf(stat), ...bySide(source, identityOf(stat), { ino: 0 }) };
}

/**
 * A transfer that was cut off (psync killed, its session ended) journaled
 * what it was sending (`sent`, sentAs), but nobody saw what arrived. At the
 * next start, each such path whose target scan holds exactly that version
 * got it from psync, and is agreed (so that a change the source made to it
 * since is a change on that side alone, not a conflict with psync's own
 * write); the others (never reached their name, or changed since) are left
 * to the reconcile. The source's identity is kept only where it still holds
 * that version.
 */
export function adoptCutOff(sent: ReadonlyMap<string, Agreed>, target: Side, scans: Record<Side, ReadonlyMap<string, Observed>>): Map<string, Agreed> {
  const adopted = new Map<string, Agreed>();
  const source: Side = target === 'left' ? 'right' : 'left';
  for (const [path, candidate] of sent) {
    const there = scans[target].get(path);
    if (there === undefined || candidate.type === 'dir' || !sameVersion(candidate, there)) continue;
    const here = scans[source].get(path);
    const identity = (seen: Observed | undefined): Identity => (seen !== undefined && sameVersion(candidate, seen) ? identityOf(seen) : { ino: 0 });
    const { left: _left, right: _right, ...version } = candidate;
    adopted.set(path, { ...version, ...bySide(source, identity(here), identity(there)) });
  }
  return adopted;
}

function bySide<T>(source: Side, ofSource: T, ofTarget: T): { left: T; right: T } {
  return source === 'left' ? { left: ofSource, right: ofTarget } : { left: ofTarget, right: ofSource };
}

/**
 * A map of what is recent per path, keeping the newest `capacity` paths
 * (the oldest set go first). The brain keeps two: the tombstones isEcho
 * reads (the agreed version at each path before psync last changed it:
 * deleted, renamed away, or replaced by a newer agreed version), and when
 * it last wrote each path. Only a late report of psync's own work needs
 * either: a forgotten tombstone costs a needless transfer of a file that is
 * gone (rsync finds nothing to send), never a lost change.
 */
export class Recent<V> {
  private readonly entries = new Map<string, V>();

  constructor(private readonly capacity = 100_000) {}

  get(path: string): V | undefined {
    return this.entries.get(path);
  }

  set(path: string, entry: V): void {
    this.entries.delete(path); // re-inserted last: Map order is the age order
    this.entries.set(path, entry);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(path: string): void {
    this.entries.delete(path);
  }
}
