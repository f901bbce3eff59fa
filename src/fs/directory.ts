/**
 * The symlink-safe file layer: every place psync touches a tree (the
 * helper's moves, deletes and conflict copies, the filter's scan, the root
 * lock, `.psync/`) goes through here.
 *
 * A `Directory` is a held directory descriptor; every operation names one
 * component inside it (native/fs.c refuses anything else). A `Tree` opens
 * root-relative paths one component at a time from the root with
 * O_NOFOLLOW | O_DIRECTORY. So:
 * - a symlink anywhere below the root is never followed: a component that
 *   is one ends the operation with UnsafePathError (`unsafe`), and nothing is
 *   retried through a path string;
 * - a check and the act that follows it are made on the same held
 *   directory, so swapping a directory for a symlink between them changes
 *   nothing outside the root (RACE: the swapped directory itself may have
 *   been moved elsewhere by then; the act then happens in that directory,
 *   which held only tree entries).
 * The root path itself is the operator's: it is the one open that may follow
 * symlinks (a root given as a link to the real tree is fine).
 *
 * The addon is required: there is no safe fallback through path strings.
 */

import { closeSync, constants, readSync } from 'node:fs';
import { SafetyError } from '../core/errors.js';
import { baseName, bytesToPath, joinPath, parentOf, pathToBytes } from '../core/paths.js';
import type { EntryType, Stat } from '../core/types.js';
import { loadAddon } from '../native.js';

/** native/fs.c */
interface FsAddon {
  openRoot(path: Buffer): number;
  openDir(dirfd: number, name: Buffer): number;
  openFile(dirfd: number, name: Buffer, flags: number, mode: number): number;
  stat(dirfd: number, name: Buffer, out: Float64Array): boolean;
  rename(fromfd: number, from: Buffer, tofd: number, to: Buffer, flags: number): void;
  unlink(dirfd: number, name: Buffer, isDir: boolean): void;
  mkdir(dirfd: number, name: Buffer, mode: number): void;
  readlink(dirfd: number, name: Buffer): Buffer;
  readdir(dirfd: number): { names: Buffer[]; types: number[] };
}

/** The indexes of the numbers native stat() writes (native/fs.c, enum ST_*). */
const enum St {
  mode,
  size,
  ino,
  dev,
  uid,
  mtimeSec,
  mtimeNsec,
  birthSec,
  birthNsec,
  count,
}
/** One buffer for every stat: the layer is synchronous, so no two calls overlap. */
const statBuffer = new Float64Array(St.count);

let addon: FsAddon | undefined;

/** The addon, loaded once; throws SafetyError when it was not built (there is no safe fallback). */
function fs(): FsAddon {
  if (addon !== undefined) return addon;
  const loaded = loadAddon<FsAddon>('psync_fs');
  if (loaded instanceof Error) {
    throw new SafetyError(`psync's file layer is not available (${loaded.message}); rebuild it with "npm rebuild" (needs make, g++, python3; see native/build.log)`);
  }
  addon = loaded;
  return addon;
}

/** Throws when the file layer cannot be used here: call it once at start for a clear error. */
export function requireFileLayer(): void {
  fs();
}

/** What the file layer reads of an entry: the core's Stat plus what a same-entry check needs. */
export interface EntryStat extends Stat {
  readonly dev: number;
  readonly uid: number;
}

const S_IFMT = 0o170000;
const TYPES: Readonly<Record<number, EntryType>> = { 0o100000: 'file', 0o040000: 'dir', 0o120000: 'symlink' };

function readStatBuffer(): EntryStat {
  const raw = statBuffer;
  const birthMs = raw[St.birthSec]! * 1000 + raw[St.birthNsec]! / 1e6;
  return {
    type: TYPES[raw[St.mode]! & S_IFMT] ?? 'other',
    ino: raw[St.ino]!,
    size: raw[St.size]!,
    mtimeMs: raw[St.mtimeSec]! * 1000 + raw[St.mtimeNsec]! / 1e6,
    mode: raw[St.mode]! & 0o7777,
    ...(birthMs > 0 ? { birthMs } : {}),
    dev: raw[St.dev]!,
    uid: raw[St.uid]!,
  };
}

const THIS_ENTRY = Buffer.alloc(0);

/** fstat of an open descriptor (statx AT_EMPTY_PATH): the same numbers as a stat by name, birth time included. */
export function statFd(fd: number): EntryStat {
  if (!fs().stat(fd, THIS_ENTRY, statBuffer)) throw Object.assign(new Error(`fstat of descriptor ${fd} found nothing`), { code: 'EBADF' });
  return readStatBuffer();
}

/** The core's Stat of an entry (without the identity fields). */
export function coreStat(stat: EntryStat): Stat {
  const { type, ino, size, mtimeMs, mode, birthMs } = stat;
  return birthMs === undefined ? { type, ino, size, mtimeMs, mode } : { type, ino, size, mtimeMs, mode, birthMs };
}

/** The same inode, not a new one under the same name. */
export const sameInode = (a: EntryStat, b: EntryStat): boolean => a.ino === b.ino && a.dev === b.dev;

/** A component below the root that is a symlink (or an ancestor that is not a directory): psync does not act through it. */
export class UnsafePathError extends SafetyError {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

const errnoOf = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code;

export type RenameMode = 'replace' | 'noReplace' | 'exchange';
const RENAME_FLAGS: Readonly<Record<RenameMode, number>> = { replace: 0, noReplace: 1, exchange: 2 };

const name = (component: string): Buffer => Buffer.from(pathToBytes(component));

/** A held directory of a tree: `path` is its root-relative path, for messages. */
export class Directory {
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  /** Open the operator's root (it may be reached through a symlink; nothing below it is). */
  static openRoot(root: string): Directory {
    return new Directory(fs().openRoot(Buffer.from(pathToBytes(root))), '');
  }

  /**
   * Open the child directory `component`. A symlink there is UnsafePathError;
   * a non-directory throws ENOTDIR, a missing one ENOENT.
   */
  openDir(component: string): Directory {
    const path = joinPath(this.path, component);
    try {
      return new Directory(fs().openDir(this.fd, name(component)), path);
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'ELOOP' || (code === 'ENOTDIR' && this.stat(component)?.type === 'symlink')) {
        throw new UnsafePathError(path, `${JSON.stringify(path)} is a symlink: refusing to act through it`);
      }
      throw error;
    }
  }

  /** lstat of `component` ("" is this directory), or undefined when there is none. */
  stat(component: string): EntryStat | undefined {
    return fs().stat(this.fd, name(component), statBuffer) ? readStatBuffer() : undefined;
  }

  /** The names in this directory (without . and ..), as core path components. */
  list(): string[] {
    return this.listTyped().names;
  }

  /** The names with their directory-entry types (d_type: 4 directory, 8 file, 10 symlink, 0 unknown). */
  listTyped(): { names: string[]; types: number[] } {
    const { names, types } = fs().readdir(this.fd);
    return { names: names.map((bytes) => bytesToPath(bytes)), types };
  }

  /** renameat2 from here to `target` (which may be this directory). `noReplace` fails with EEXIST. */
  rename(from: string, target: Directory, to: string, mode: RenameMode = 'replace'): void {
    fs().rename(this.fd, name(from), target.fd, name(to), RENAME_FLAGS[mode]);
  }

  unlink(component: string): void {
    fs().unlink(this.fd, name(component), false);
  }

  rmdir(component: string): void {
    fs().unlink(this.fd, name(component), true);
  }

  mkdir(component: string, mode = 0o777): void {
    fs().mkdir(this.fd, name(component), mode);
  }

  /**
   * The target of the symlink `component`, as bytes: data (to hash or
   * compare), never a path to open. Not a symlink: EINVAL; missing: ENOENT.
   */
  readlink(component: string): Buffer {
    return fs().readlink(this.fd, name(component));
  }

  /**
   * The whole content of the regular file `component`, or undefined when
   * there is none. Opened O_NOFOLLOW | O_NONBLOCK: a symlink there is
   * UnsafePathError, a FIFO planted there cannot hang the read, and anything
   * but a regular file is refused (EINVAL); so is a file of more than
   * `maxBytes` (EFBIG), also one that grows past it while it is read.
   */
  readFile(component: string, maxBytes: number): Buffer | undefined {
    let fd: number;
    try {
      fd = this.openFile(component, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'ENOENT') return undefined;
      const path = joinPath(this.path, component);
      if (code === 'ELOOP') throw new UnsafePathError(path, `${JSON.stringify(path)} is a symlink: refusing to read through it`);
      throw error;
    }
    try {
      const path = JSON.stringify(joinPath(this.path, component));
      const stat = statFd(fd);
      if (stat.type !== 'file') throw Object.assign(new Error(`${path} is a ${stat.type}, not a regular file`), { code: 'EINVAL' });
      const tooBig = (): Error => Object.assign(new Error(`${path} is larger than ${maxBytes} bytes`), { code: 'EFBIG' });
      if (stat.size > maxBytes) throw tooBig();
      const buffer = Buffer.alloc(maxBytes + 1);
      let length = 0;
      for (;;) {
        const read = readSync(fd, buffer, length, buffer.length - length, null);
        if (read === 0) break;
        length += read;
        if (length > maxBytes) throw tooBig();
      }
      return buffer.subarray(0, length);
    } finally {
      closeSync(fd);
    }
  }

  /** A file descriptor for `component`, never through a symlink (O_NOFOLLOW is always added). Close it with closeSync. */
  openFile(component: string, flags: number, mode = 0o666): number {
    return fs().openFile(this.fd, name(component), flags, mode);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

const components = (path: string): string[] => (path === '' ? [] : path.split('/'));

/**
 * Open `path` (components) below `start`, one held directory at a time,
 * each with O_NOFOLLOW. `start` is taken over: it is closed, or returned
 * when `path` is empty. With `createMode`, a missing component is made
 * (mkdirat) before it is opened.
 */
export function descend(start: Directory, path: readonly string[], createMode?: number): Directory {
  let current = start;
  for (const component of path) {
    try {
      if (createMode !== undefined && current.stat(component) === undefined) {
        try {
          current.mkdir(component, createMode);
        } catch (error) {
          if (errnoOf(error) !== 'EEXIST') throw error; // RACE: created meanwhile; openDir checks what it is
        }
      }
      const next = current.openDir(component);
      current.close();
      current = next;
    } catch (error) {
      current.close();
      throw error;
    }
  }
  return current;
}

/** Run `fn` with `dir`, then close it. */
export function using<T>(dir: Directory, fn: (dir: Directory) => T): T {
  try {
    return fn(dir);
  } finally {
    dir.close();
  }
}

/** A tree: root-relative paths opened component by component from the root. */
export class Tree {
  constructor(readonly root: string) {}

  /** The directory at `dir` ("" is the root). Missing: ENOENT; a symlink on the way: UnsafePathError. */
  openDir(dir: string): Directory {
    return descend(Directory.openRoot(this.root), components(dir));
  }

  /**
   * Like openDir, but missing directories are created (mkdirat, `mode`), top
   * first, each in the directory just opened. A component that exists and
   * is not a directory throws ENOTDIR; a symlink, UnsafePathError.
   */
  makeDir(dir: string, mode = 0o777): Directory {
    return descend(Directory.openRoot(this.root), components(dir), mode);
  }

  /** Run `fn` with the held parent of `path` and its last component; `path` is not "". */
  withParent<T>(path: string, fn: (dir: Directory, component: string) => T): T {
    return using(this.openDir(parentOf(path)), (dir) => fn(dir, baseName(path)));
  }

  /**
   * lstat of `path`, or undefined when it or an ancestor is missing or an
   * ancestor is not a directory. An ancestor that is a symlink throws
   * UnsafePathError: what lies behind it is not in the tree.
   */
  lstat(path: string): EntryStat | undefined {
    if (path === '') return using(Directory.openRoot(this.root), (dir) => dir.stat(''));
    try {
      return this.withParent(path, (dir, component) => dir.stat(component));
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw error;
    }
  }
}

/** A DirCache holds at most this many directories open at once (the descriptor limit is often 1024). */
const DIR_CACHE_MAX = 256;

/**
 * The held directories of one round of work (a filter's settle round): each
 * directory is opened once, from its parent in the cache, and reused until
 * close(). A stat through the cache costs one statx instead of a walk from
 * the root. A directory that cannot be opened (missing, not a directory, a
 * symlink) reads as undefined.
 *
 * RACE: a directory renamed during the round is still reached under its old
 * path until the round ends. What is read through it is the directory it
 * was when it was opened, component by component inside the tree, so
 * nothing outside the root is ever reached; the rename's own events make
 * the next round look again.
 */
export class DirCache {
  private readonly held = new Map<string, Directory | undefined>();

  constructor(private readonly tree: Tree) {}

  /** The held directory at `path`, or undefined when it is not one (or is behind a symlink). */
  dir(path: string): Directory | undefined {
    if (this.held.has(path)) return this.held.get(path);
    if (this.held.size >= DIR_CACHE_MAX) this.close();
    let dir: Directory | undefined;
    try {
      dir = path === '' ? Directory.openRoot(this.tree.root) : this.dir(parentOf(path))?.openDir(baseName(path));
    } catch {
      dir = undefined;
    }
    this.held.set(path, dir);
    return dir;
  }

  /** lstat of `path`, or undefined when it is not in the tree (missing, or behind a symlink). */
  lstat(path: string): EntryStat | undefined {
    if (path === '') return this.dir('')?.stat('');
    return this.dir(parentOf(path))?.stat(baseName(path));
  }

  close(): void {
    for (const dir of this.held.values()) dir?.close();
    this.held.clear();
  }
}

/** d_type of a directory in readdir's answer. */
export const DT_DIR = 4;

/** An entry removed this many times in a row changed its type between the look and the act: give up on it. */
const REMOVE_ATTEMPTS = 5;

/**
 * Remove `component` of `dir` and, when it is a directory, everything in
 * it, deepest first. Every directory is entered through openDir (O_NOFOLLOW):
 * a directory swapped for a symlink mid-walk is unlinked as the symlink it
 * now is, never followed. `onEntry` is called before each removal (for a
 * caller that wants to yield or count).
 */
export function removeTree(dir: Directory, component: string, onEntry: () => void = () => {}): void {
  for (let attempt = 0; attempt < REMOVE_ATTEMPTS; attempt++) {
    const stat = dir.stat(component);
    if (stat === undefined) return;
    onEntry();
    try {
      if (stat.type !== 'dir') {
        dir.unlink(component);
        return;
      }
      using(dir.openDir(component), (held) => {
        for (const entry of held.list()) removeTree(held, entry, onEntry);
      });
      dir.rmdir(component);
      return;
    } catch (error) {
      // RACE: swapped for another type since the stat (EISDIR: a directory now; ENOTDIR or
      // unsafe: a file or symlink now): look again and remove the name, never what it points to.
      if (error instanceof UnsafePathError || errnoOf(error) === 'EISDIR' || errnoOf(error) === 'ENOTDIR') continue;
      throw error;
    }
  }
  throw Object.assign(new Error(`${JSON.stringify(joinPath(dir.path, component))} keeps changing its type: not removed`), { code: 'EBUSY' });
}
