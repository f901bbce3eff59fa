/**
 * One psync per root. Two instances watching the same tree would each take
 * the other's writes for user changes and send them back and forth forever
 * (realtime transfers always rewrite, see --ignore-times). The filter holds
 * `<root>/.psync/lock` (its pid) while it runs; a lock whose pid is no
 * longer a psync filter is stale and taken over.
 */

import { mkdirSync, readFileSync, renameSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PSYNC_DIR } from '../core/patterns.js';

export class RootLockedError extends Error {
  override readonly name = 'RootLockedError';
}

/** Take the lock on `root`; returns its release. Throws RootLockedError when another psync holds it. */
export function lockRoot(root: string): () => void {
  const dir = join(root, PSYNC_DIR);
  const lock = join(dir, 'lock');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return () => release(lock);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number.parseInt(readOr(lock, ''), 10);
    if (Number.isInteger(holder) && holder !== process.pid && isPsyncFilter(holder)) {
      throw new RootLockedError(
        `another psync (filter pid ${holder}) already watches ${root}; stop it first (or, if it is gone, remove ${lock})`,
      );
    }
    // Stale: take it over atomically, then try again.
    const stale = `${lock}.${process.pid}.stale`;
    try {
      renameSync(lock, stale);
      unlinkSync(stale);
    } catch {
      // someone else took it over meanwhile: the next attempt sees who
    }
  }
  throw new RootLockedError(`cannot take the psync lock ${lock}`);
}

function release(lock: string): void {
  try {
    if (Number.parseInt(readOr(lock, ''), 10) === process.pid) unlinkSync(lock);
    rmdirSync(dirname(lock)); // leave no empty .psync behind
  } catch {
    // already gone, or .psync holds something else
  }
}

function isPsyncFilter(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A live pid: ours only if it is a psync filter, alone or in a side process (the pid may have been reused).
  const args = readOr(`/proc/${pid}/cmdline`, '_filter').split('\0');
  return args.includes('_filter') || args.includes('_side');
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}
