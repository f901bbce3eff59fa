/**
 * What psync compares: one entry's version (what both sides must agree
 * on), the identity that names it on one side, and the one comparison of
 * two versions. The reconcile (reconcile.ts), the realtime echo rules
 * (agreed.ts) and the conflict check after a transfer (conflict.ts) all use
 * `sameVersion`; a Stat is compared through `sameStat`.
 */

import type { Stat } from './types.js';

export interface Version {
  /** `other`: a FIFO or a socket, which rsync makes again (never a device: `--no-devices`). */
  readonly type: 'file' | 'dir' | 'symlink' | 'other';
  /** Files: bytes; symlinks: the target's length; directories: ignored. */
  readonly size: number;
  /** Float milliseconds. */
  readonly mtimeMs: number;
  /** Permission bits; ignored for symlinks. */
  readonly mode: number;
  /** Content digest (a file's bytes, a symlink's target), when known. */
  readonly hash?: string;
}

/** What names one file object on one side; ino 0 = unknown. */
export interface Identity {
  readonly ino: number;
  readonly birthMs?: number;
}

/** What a side holds at a path now. */
export interface Observed extends Version, Identity {}

/** The archive: the last state both sides agreed on, with each side's identity for it. */
export interface Agreed extends Version {
  readonly left: Identity;
  readonly right: Identity;
}

/**
 * Two mtimes this close are the same: an mtime in float milliseconds near
 * 2^40 keeps about a quarter of a microsecond, so the nanoseconds a file
 * system stores do not survive exactly; a real write is further apart.
 */
export const MTIME_TOLERANCE_MS = 0.001;

export const sameMtime = (a: Version, b: Version): boolean => Math.abs(a.mtimeMs - b.mtimeMs) <= MTIME_TOLERANCE_MS;

/**
 * The one content-and-metadata comparison. Same type, and:
 * - directories: the same mode (their size and mtime are noise; their
 *   content is their children, compared path by path);
 * - files and symlinks: the same size and mtime (within
 *   MTIME_TOLERANCE_MS), the same mode for files, and the same digest when
 *   both have one.
 * Equal digests with different mtimes are NOT the same version: that is
 * equal content with other metadata, which the reconcile settles by copying
 * the newer metadata, never by a conflict (see `sameContent`).
 */
export function sameVersion(a: Version, b: Version): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'dir') return a.mode === b.mode;
  if (a.size !== b.size || !sameMtime(a, b)) return false;
  if ((a.type === 'file' || a.type === 'other') && a.mode !== b.mode) return false;
  return a.hash === undefined || b.hash === undefined || a.hash === b.hash;
}

/** A stat as a version. */
export function versionOf(stat: Stat): Version {
  return { type: stat.type, size: stat.size, mtimeMs: stat.mtimeMs, mode: stat.mode };
}

/** Two stats hold the same version (their inodes are not compared: they may be on two hosts). */
export function sameStat(a: Stat, b: Stat): boolean {
  return sameVersion(versionOf(a), versionOf(b));
}
