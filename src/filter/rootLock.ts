/**
 * One psync per root. Two instances watching the same tree would each take
 * the other's writes for user changes and send them back and forth forever
 * (realtime transfers always rewrite, see --ignore-times). The filter holds
 * `<root>/.psync/lock` while it runs: its own pid on the first line, and on
 * a second the psync that runs it (`<pid>@<host>` of the brain, which a
 * refused second psync names: the process a person would stop). A lock
 * whose first pid is no longer a psync filter is stale and taken over. A
 * lock that does not hold a pid was not written by psync: it is never
 * taken over.
 *
 * Everything goes through the file layer (src/fs): `.psync` must be psync's
 * own directory (psyncDir.ts) and the lock is opened O_NOFOLLOW, so a user
 * of the tree cannot make psync create, read or remove a file elsewhere.
 */

import { closeSync, constants, readFileSync, readSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { PSYNC_DIR } from '../core/patterns.js';
import { Tree, using, type Directory } from '../fs/directory.js';
import { openPsyncDir } from '../fs/psyncDir.js';

export class RootLockedError extends Error {
  override readonly name = 'RootLockedError';
}

const LOCK = 'lock';
/** What psync writes into a lock: a pid, optionally followed by its owner's `<pid>@<host>`; anything else is not ours. */
const LOCK_TEXT = /^([1-9][0-9]{0,9})(?:\n|\n([1-9][0-9]{0,9})@([A-Za-z0-9._-]{1,253})\n)?$/;
/** An owner as the brain sends it. */
const OWNER_TEXT = /^[1-9][0-9]{0,9}@[A-Za-z0-9._-]{1,253}$/;

/** The lock's holder: the filter's (or side's) pid, and the psync that runs it when the lock says. */
export interface LockHolder {
  readonly pid: number;
  readonly owner?: { readonly pid: number; readonly host: string };
}

/** What a lock's text says, or undefined when psync did not write it. */
export function parseLock(text: string): LockHolder | undefined {
  const match = LOCK_TEXT.exec(text);
  if (match === null) return undefined;
  const pid = Number.parseInt(match[1]!, 10);
  return match[2] === undefined ? { pid } : { pid, owner: { pid: Number.parseInt(match[2], 10), host: match[3]! } };
}

/** The psync to stop, as the refusal names it: the owner's pid (and host, when it is another), else the lock's pid. */
export function describeHolder(holder: LockHolder, localHost: string): string {
  if (holder.owner === undefined) return `pid ${holder.pid}`;
  return `pid ${holder.owner.pid}${holder.owner.host === localHost ? '' : ` on ${holder.owner.host}`}`;
}

/**
 * Take the lock on `root` for the psync `owner` (`<pid>@<host>`); returns its
 * release. Throws RootLockedError when another psync holds it.
 */
export function lockRoot(root: string, owner?: string): () => void {
  const tree = new Tree(root);
  const where = `${root}/${PSYNC_DIR}/${LOCK}`;
  const dir = openPsyncDir(tree, true)!;
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (tryCreate(dir, owner)) return () => release(tree);
      const text = readLock(dir);
      if (text === undefined) continue; // gone meanwhile: try again
      const holder = parseLock(text);
      if (holder === undefined) {
        throw new RootLockedError(`${where} does not hold a psync pid: psync did not write it; remove it if no psync watches ${root}`);
      }
      if (holder.pid !== process.pid && isPsyncFilter(holder.pid)) {
        throw new RootLockedError(
          `another psync (${describeHolder(holder, hostname())}) already watches ${root}; stop that psync first (or, if it is gone, remove ${where})`,
        );
      }
      // Stale: take it over atomically (rename within the held directory), then try again.
      const stale = `${LOCK}.${process.pid}.stale`;
      try {
        dir.rename(LOCK, dir, stale);
        dir.unlink(stale);
      } catch {
        // someone else took it over meanwhile: the next attempt sees who
      }
    }
  } finally {
    dir.close();
  }
  throw new RootLockedError(`cannot take the psync lock ${where}`);
}

function tryCreate(dir: Directory, owner: string | undefined): boolean {
  let fd: number;
  try {
    fd = dir.openFile(LOCK, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    writeSync(fd, `${process.pid}\n${owner !== undefined && OWNER_TEXT.test(owner) ? `${owner}\n` : ''}`);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The lock's text (at most a few hundred bytes: a pid, an owner), or undefined when there is none. */
function readLock(dir: Directory): string | undefined {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted as the lock must not hang the open.
    fd = dir.openFile(LOCK, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') return 'a symlink';
    throw error;
  }
  try {
    const buffer = Buffer.alloc(300);
    const length = readSync(fd, buffer, 0, buffer.length, null);
    return buffer.subarray(0, length).toString('latin1');
  } catch {
    return 'unreadable';
  } finally {
    closeSync(fd);
  }
}

function release(tree: Tree): void {
  try {
    const dir = openPsyncDir(tree, false);
    if (dir === undefined) return;
    using(dir, (held) => {
      if (parseLock(readLock(held) ?? '')?.pid === process.pid) held.unlink(LOCK);
    });
    using(tree.openDir(''), (root) => root.rmdir(PSYNC_DIR)); // leave no empty .psync behind
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
  let args: string[];
  try {
    args = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
  } catch {
    return true; // alive, but we cannot tell what it is: do not take its lock
  }
  return args.includes('_filter') || args.includes('_side');
}
