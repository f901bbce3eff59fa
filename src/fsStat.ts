/** Node's fs.Stats as the core's Stat, shared by the filter and the helper. */

import type { BigIntStats, Stats } from 'node:fs';
import type { EntryType, Stat } from './core/types.js';

/** The entry type of an lstat result (a symlink is never followed, so it is 'symlink'). */
export function entryTypeOf(stats: Stats | BigIntStats): EntryType {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'dir';
  if (stats.isSymbolicLink()) return 'symlink';
  return 'other';
}

/**
 * Convert an lstat result. With BigIntStats the mtime keeps its full
 * nanosecond precision down to the double's resolution (~0.25 µs today);
 * plain Stats already carries mtimeMs with its sub-millisecond part.
 */
export function toStat(stats: Stats | BigIntStats): Stat {
  const mtimeMs = 'mtimeNs' in stats ? Number(stats.mtimeNs) / 1e6 : stats.mtimeMs;
  const birthMs = Number(stats.birthtimeMs);
  return {
    type: entryTypeOf(stats),
    ino: Number(stats.ino),
    size: Number(stats.size),
    mtimeMs,
    mode: Number(stats.mode) & 0o7777,
    // 0 where the file system keeps no birth time.
    ...(birthMs > 0 ? { birthMs } : {}),
  };
}
