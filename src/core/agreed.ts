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

import { sameVersion, type Agreed, type Identity, type Version } from './reconcile.js';
import type { Action, Side, Stat } from './types.js';

/** The archive as the decisions read it. */
export type Lookup = (path: string) => Agreed | undefined;

/** A stat as a version; undefined for what psync never syncs (a device, a socket). */
export function versionOf(stat: Stat): Version | undefined {
  if (stat.type === 'other') return undefined;
  return { type: stat.type, size: stat.size, mtimeMs: stat.mtimeMs, mode: stat.mode };
}

export function identityOf(stat: Stat): Identity {
  return stat.birthMs === undefined ? { ino: stat.ino } : { ino: stat.ino, birthMs: stat.birthMs };
}

/** What `side` holds at an agreed path if nobody changed it there: the stat a helper checks before it acts. */
export function agreedStat(entry: Agreed, side: Side): Stat {
  return { type: entry.type, ino: entry[side].ino, size: entry.size, mtimeMs: entry.mtimeMs, mode: entry.mode };
}

/**
 * Does `stat` on `side` hold the agreed version? Same version (sameVersion)
 * and, for a file or symlink, the same inode when the archive knows it: a
 * file replaced by another with the same size and mtime (`cp -p`) is a
 * change. A directory's inode is not compared: its children carry its
 * content.
 */
export function holdsAgreed(entry: Agreed, side: Side, stat: Stat): boolean {
  const version = versionOf(stat);
  if (version === undefined || !sameVersion(entry, version)) return false;
  if (entry.type === 'dir') return true;
  const known = entry[side].ino;
  return known === 0 || known === stat.ino;
}

/**
 * Is this report from `side` an echo: does it only say what the archive
 * already holds for that side? An RSYNC of the agreed version; a DELETE of
 * a path the archive does not hold (deleted by psync on this side, or never
 * agreed: nothing the other side could still need to lose); a MOVE whose
 * old name is no longer agreed and whose new name holds the agreed version.
 *
 * `gone` holds what the archive agreed at a path before psync last changed
 * it there (deleted it, renamed it away, or agreed on a newer version: its
 * tombstone). A report that still shows exactly that version, inode
 * included, was seen before psync's own later change and says nothing new:
 * psync writes a file and the source deletes it at once, or a file still
 * being written is sent twice, and the target's report of the first write
 * comes after the second. RACE: a user who puts that very version back
 * into the same inode (size and mtime too) in that moment is not seen.
 */
export function isEcho(lookup: Lookup, side: Side, action: Action, gone: Lookup = () => undefined): boolean {
  switch (action.kind) {
    case 'rsync': {
      const entry = lookup(action.path);
      if (entry !== undefined && holdsAgreed(entry, side, action.stat)) return true;
      const tombstone = gone(action.path);
      return tombstone !== undefined && tombstone.type !== 'dir' && tombstone[side].ino !== 0 && holdsAgreed(tombstone, side, action.stat);
    }
    case 'delete':
      return lookup(action.path) === undefined;
    case 'move': {
      if (lookup(action.from) !== undefined) return false;
      const entry = lookup(action.to);
      return entry !== undefined && holdsAgreed(entry, side, action.stat);
    }
  }
}

/** What rsync's transfer list says it sent: the size, the mtime in whole seconds, the permissions. */
export interface Listed {
  readonly isDir: boolean;
  readonly size: number;
  readonly mtimeSeconds: number;
  /** Unknown for a directory rsync did not list (its attributes were right already). */
  readonly mode?: number;
}

function matchesListed(listed: Listed, stat: Stat, sizeToo: boolean): boolean {
  if (listed.isDir || stat.type === 'dir') return listed.isDir && stat.type === 'dir';
  return (!sizeToo || listed.size === stat.size) && Math.floor(stat.mtimeMs / 1000) === listed.mtimeSeconds;
}

/**
 * The archive entry after rsync sent `path` from `source`: what the target
 * holds now, when it carries the mtime rsync listed (rsync sets it from its
 * file list: this is its write; the listed size is not compared, as a file
 * still growing while rsync reads it arrives longer than listed); else what
 * the source reported, when the list confirms its size and mtime. Each
 * side's inode is recorded where that side still holds exactly that version
 * (0, unknown, where it has moved on: its own report then differs and is
 * sent). Undefined when the path is not in the list (it vanished, or rsync
 * skipped it) or nothing matches: the archive keeps what it had.
 * RACE: an edit on the target in the few milliseconds between rsync's
 * write and the helper's stat, within the same second of mtime, is taken
 * for rsync's write.
 */
export function agreedAfterSend(source: Side, sent: Stat, listed: Listed | undefined, targetNow: Stat | undefined): Agreed | undefined {
  if (listed === undefined) return undefined;
  const agreed =
    targetNow !== undefined && matchesListed(listed, targetNow, false) ? targetNow : matchesListed(listed, sent, true) ? sent : undefined;
  const found = agreed === undefined ? undefined : versionOf(agreed);
  if (found === undefined) return undefined;
  // A directory gets the source's mode as rsync read it, which may be newer than the report.
  const version = found.type === 'dir' && listed.mode !== undefined ? { ...found, mode: listed.mode } : found;
  const identity = (stat: Stat | undefined): Identity =>
    stat !== undefined && stat.type === version.type && sameVersion(version, versionOf(stat)!) ? identityOf(stat) : { ino: 0 };
  return { ...version, ...bySide(source, identity(sent), identity(targetNow)) };
}

/**
 * The archive entry at `to` after the target's helper moved `from` there:
 * the version the source reported, the source's inode, and the target's
 * inode when what now stands at `to` there is that version.
 */
export function agreedAfterMove(source: Side, moved: Stat, targetNow: Stat | undefined): Agreed | undefined {
  const version = versionOf(moved);
  if (version === undefined) return undefined;
  const targetVersion = targetNow === undefined ? undefined : versionOf(targetNow);
  const targetIdentity = targetVersion !== undefined && sameVersion(version, targetVersion) ? identityOf(targetNow!) : { ino: 0 };
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

function bySide<T>(source: Side, ofSource: T, ofTarget: T): { left: T; right: T } {
  return source === 'left' ? { left: ofSource, right: ofTarget } : { left: ofTarget, right: ofSource };
}

/**
 * The tombstones isEcho reads: the agreed version at each path before
 * psync last changed it (deleted, renamed away, or replaced by a newer
 * agreed version). Only a late report of psync's own work needs one, so the oldest
 * go beyond `capacity`: a forgotten one costs a needless transfer of a
 * file that is gone (rsync finds nothing to send), never a lost change.
 */
export class Tombstones {
  private readonly entries = new Map<string, Agreed>();

  constructor(private readonly capacity = 100_000) {}

  get(path: string): Agreed | undefined {
    return this.entries.get(path);
  }

  set(path: string, entry: Agreed): void {
    this.entries.delete(path); // re-inserted last: Map order is the age order
    this.entries.set(path, entry);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(path: string): void {
    this.entries.delete(path);
  }
}
