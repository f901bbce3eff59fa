/**
 * Conflicts: both sides changed the same file before either change reached
 * the other.
 *
 * rsync writes each file to a temp name and renames it over the old one,
 * and with `--backup-dir` it keeps the old one instead of dropping it. After
 * the run the target's helper looks at every version that was replaced:
 *
 * - it is what the brain expected the target to hold (the source's previous
 *   version of the file, or the last version psync synced there): nobody
 *   changed it on the target; it goes;
 * - it already equals what was written (both sides made the same change);
 *   it goes;
 * - anything else is a change made on the target that the transfer was
 *   about to overwrite (made while the transfer was in flight, or before its
 *   report reached the brain): a conflict. Nothing is lost: the newer
 *   version (by mtime) keeps the name, the other one is kept beside it as
 *   `name.psync-conflict-YYYYMMDD-HHMMSS.ext`, and both then sync as usual.
 *
 * The copy's name comes from the losing version's mtime, not from the
 * clock, so both sides name the same losing version the same way.
 */

import { sameAsWritten } from './echo.js';
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
 * the target may hold without having changed on its own.
 */
export function judgeReplaced(replaced: Stat, written: Stat | undefined, expected: readonly Stat[]): ReplacedVerdict {
  if (expected.some((stat) => sameAsWritten(stat, replaced))) return { kind: 'expected' };
  if (written !== undefined && sameAsWritten(written, replaced)) return { kind: 'same' };
  // Gone again since the transfer: its name stays free (a delete made there syncs as one).
  const keep = written !== undefined && replaced.mtimeMs > written.mtimeMs ? 'replaced' : 'written';
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

/**
 * The last version of each path that psync synced (sent, or moved into
 * place), so a later transfer knows what the target may hold without having
 * changed there. The oldest entries go beyond `capacity`: a path it forgot
 * falls back on the source's own previous version, which only risks a
 * needless conflict copy, never a lost change.
 */
export class LastSynced {
  private readonly entries = new Map<string, Stat>();

  constructor(private readonly capacity = 100_000) {}

  get(path: string): Stat | undefined {
    return this.entries.get(path);
  }

  set(path: string, stat: Stat): void {
    this.entries.delete(path); // re-inserted last: Map order is the age order
    this.entries.set(path, stat);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(path: string): void {
    this.entries.delete(path);
  }

  get size(): number {
    return this.entries.size;
  }
}

/** The versions a target may hold at a path without a change of its own there. */
export function expectedVersions(prev: Stat | undefined, synced: Stat | undefined): Stat[] {
  const out: Stat[] = [];
  if (prev !== undefined) out.push(prev);
  if (synced !== undefined && (prev === undefined || !sameAsWritten(prev, synced))) out.push(synced);
  return out;
}
