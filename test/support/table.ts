/** Shared fixtures for the table tests. */

import { TreeIndex } from '../../src/core/tree.js';
import type { Stat } from '../../src/core/types.js';

/** Rows as [description, row], so that a test's name is its row's whole description (vitest cuts `$description`). */
export const described = <T extends { description: string }>(rows: readonly T[]): Array<[string, T]> =>
  rows.map((row) => [row.description, row]);

export const file = (ino: number, more: Partial<Stat> = {}): Stat => ({ type: 'file', ino, size: 1, mtimeMs: 1000 + ino, mode: 0o644, ...more });
export const dir = (ino: number, more: Partial<Stat> = {}): Stat => ({ type: 'dir', ino, size: 4096, mtimeMs: 1000, mode: 0o755, ...more });

/**
 * The small tree most core tests start from:
 *   a.txt     file 10
 *   d/        dir  20
 *   d/x       file 21
 *   d/sub/    dir  22
 *   d/sub/y   file 23
 *   e/        dir  30   (empty)
 */
export const FIXTURE: ReadonlyArray<[string, Stat]> = [
  ['a.txt', file(10)],
  ['d', dir(20)],
  ['d/x', file(21)],
  ['d/sub', dir(22)],
  ['d/sub/y', file(23)],
  ['e', dir(30)],
];

/** A fresh index holding FIXTURE under a root of inode 1. */
export function fixtureIndex(): TreeIndex {
  const index = new TreeIndex(dir(1));
  for (const [path, stat] of FIXTURE) {
    if (index.set(path, stat) === undefined) throw new Error(`fixture: cannot index ${path}`);
  }
  return index;
}
