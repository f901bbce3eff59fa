/**
 * Conflicts: both sides changed the same file before either change reached
 * the other.
 *
 * rsync writes each file to a temp name and renames it over the old one,
 * and with `--backup-dir` it keeps the old one instead of dropping it. After
 * the run the target's helper looks at every version that was replaced:
 *
 * - it is what the brain expected the target to hold (the source's previous
 *   version of the file, or what both sides last agreed on there, with the
 *   target's inode when the archive knows it): nobody changed it on the
 *   target; it goes;
 * - it already equals what was written, byte for byte (both sides made the
 *   same change, or chmodded the same content: the written mode stands); it
 *   goes. Size and mtime alone cannot tell: two writes a
 *   few microseconds apart get the same mtime from the kernel's clock;
 * - anything else is a change made on the target that the transfer was
 *   about to overwrite (made while the transfer was in flight, or before its
 *   report reached the brain): a conflict. Nothing is lost: the newer
 *   version (by mtime) keeps the name, the other one is kept beside it as
 *   `name.psync-conflict-YYYYMMDD-HHMMSS.ext`, and both then sync as usual.
 *
 * The copy's name comes from the losing version's mtime, not from the
 * clock, so both sides name the same losing version the same way.
 */

import { sameStat } from './version.js';
import { baseName, bytesToPath, joinPath, parentOf, pathToBytes } from './paths.js';
import type { Stat } from './types.js';

export type ReplacedVerdict =
  /** The target held what the brain expected, or what was written anyway: drop the old version. */
  | { readonly kind: 'expected' | 'same' }
  /**
   * The target had its own change. `keep` names the version that keeps the
   * file's name: the newer one; 'written' when the name is empty again.
   */
  | { readonly kind: 'conflict'; readonly keep: 'written' | 'replaced' };

/**
 * Judge the version rsync replaced on the target. `written` is what stands
 * there now (undefined when it is gone again); `expected` are the versions
 * the target may hold without having changed on its own (an inode of 0:
 * any); `sameBytes` reads both files, asked only when their size and mtime
 * are equal.
 */
export function judgeReplaced(replaced: Stat, written: Stat | undefined, expected: readonly Stat[], sameBytes: () => boolean): ReplacedVerdict {
  if (expected.some((stat) => sameStat(stat, replaced) && (stat.ino === 0 || stat.ino === replaced.ino))) return { kind: 'expected' };
  // The mode is not compared: both sides chmodded the same content; the written mode stands (a copy kept for a mode is noise).
  if (written !== undefined && sameStat({ ...written, mode: replaced.mode }, replaced) && sameBytes()) return { kind: 'same' };
  // Gone again since the transfer: its name stays free (a delete made there syncs as one). A file that a
  // directory replaced (or the other way round) is kept beside it, whatever their mtimes: a directory is
  // never moved aside for a file.
  const keep = written !== undefined && written.type === replaced.type && replaced.mtimeMs > written.mtimeMs ? 'replaced' : 'written';
  return { kind: 'conflict', keep };
}

export const CONFLICT_MARK = '.psync-conflict-';
const NAME_MAX_BYTES = 255;

/**
 * The name for the losing version of `path`: `stem.psync-conflict-<utc
 * mtime>[-n].ext`, where `n` counts attempts when the name is taken by
 * something else. A name too long for the file system loses bytes from
 * its stem, never from the mark.
 */
export function conflictName(path: string, loserMtimeMs: number, attempt = 0): string {
  const base = baseName(path);
  const dot = base.lastIndexOf('.');
  // An extension is a short tail after a dot that does not start the name: `a.txt`, not `.bashrc`.
  const hasExt = dot > 0 && base.length - dot <= 16;
  const stem = hasExt ? base.slice(0, dot) : base;
  const ext = hasExt ? base.slice(dot) : '';
  const mark = `${CONFLICT_MARK}${stamp(loserMtimeMs)}${attempt > 0 ? `-${attempt}` : ''}`;
  const room = NAME_MAX_BYTES - pathToBytes(mark + ext).length;
  return joinPath(parentOf(path), `${cutToBytes(stem, room)}${mark}${ext}`);
}

/** YYYYMMDD-HHMMSS in UTC. */
function stamp(ms: number): string {
  const iso = new Date(Math.floor(ms)).toISOString(); // 2026-11-22T10:11:12.345Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
}

/** `text` cut to at most `max` bytes, never inside a UTF-8 sequence. */
function cutToBytes(text: string, max: number): string {
  const bytes = pathToBytes(text);
  if (bytes.length <= max) return text;
  let end = Math.max(0, max);
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end -= 1;
  return bytesToPath(bytes.subarray(0, end));
}

/** The versions a target may hold at a path without a change of its own there: the source's previous one, and the agreed one. */
export function expectedVersions(prev: Stat | undefined, synced: Stat | undefined): Stat[] {
  const out: Stat[] = [];
  if (prev !== undefined) out.push(prev);
  if (synced !== undefined && (prev === undefined || !sameStat(prev, synced))) out.push(synced);
  return out;
}
