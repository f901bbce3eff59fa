/**
 * `ROOT/.psync`: psync's own directory inside each root (the lock, the
 * pair's marker, the versions a transfer
 * replaced under `replaced/<run>`). Users write into the root, so whatever is
 * found at that name is untrusted until checked: it must be a real
 * directory (not a symlink), owned by psync's user, with mode 0700. It is
 * created with mkdirat and always opened through the file layer, so a
 * `.psync` swapped for a symlink later is refused, never followed.
 */

import { fchmodSync } from 'node:fs';
import { SafetyError } from '../core/errors.js';
import { joinPath } from '../core/paths.js';
import { PSYNC_DIR } from '../core/patterns.js';
import { REPLACED_DIR, RUN_NAME_PATTERN } from '../core/protocol.js';
import { Directory, removeTree, UnsafePathError, using, type Tree } from './directory.js';

const PSYNC_DIR_MODE = 0o700;

/**
 * Open `.psync` of `tree`, creating it when `create` (else undefined when
 * there is none). Throws SafetyError when what stands there is not psync's
 * own directory: a symlink, another type, or one owned by another user.
 * A directory of ours with a wider mode is narrowed to 0700.
 */
export function openPsyncDir(tree: Tree, create: boolean): Directory | undefined {
  return using(tree.openDir(''), (root) => {
    const where = `${tree.root}/${PSYNC_DIR}`;
    let found = root.stat(PSYNC_DIR);
    if (found === undefined) {
      if (!create) return undefined;
      try {
        root.mkdir(PSYNC_DIR, PSYNC_DIR_MODE);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      found = root.stat(PSYNC_DIR);
    }
    if (found === undefined || found.type !== 'dir') {
      throw new SafetyError(`${where} is a ${found?.type ?? 'vanishing entry'}, not psync's own directory: remove it, psync keeps its state there`);
    }
    const euid = process.geteuid?.() ?? found.uid;
    if (found.uid !== euid) {
      throw new SafetyError(`${where} belongs to uid ${found.uid}, not to psync's user (uid ${euid}): remove it, psync keeps its state there`);
    }
    let dir: Directory;
    try {
      dir = root.openDir(PSYNC_DIR);
    } catch (error) {
      if (error instanceof UnsafePathError) throw new SafetyError(`${where} was swapped for a symlink: refusing to use it`);
      throw error;
    }
    // RACE: checked by name, then opened: check the opened one is the one we checked.
    const opened = dir.stat('');
    if (opened === undefined || opened.ino !== found.ino || opened.dev !== found.dev) {
      dir.close();
      throw new SafetyError(`${where} changed while it was opened: refusing to use it`);
    }
    if ((opened.mode & 0o777) !== PSYNC_DIR_MODE) fchmodSync(dir.fd, PSYNC_DIR_MODE);
    return dir;
  });
}

/** A version a killed transfer kept: `path` (in the tree) as it was before the run `run` (`.psync/replaced/<name>`) replaced it. */
export interface Leftover {
  readonly run: string;
  readonly path: string;
}

/**
 * The versions kept under `.psync/replaced` by transfers whose conflict
 * check never ran (psync was killed first), at most `max` of them. Only
 * regular files and symlinks: directories are walked, never listed. A run
 * that holds no version any more (only directories) is removed. Called by
 * the filter once it holds the root's lock, so no run is still going.
 */
export function collectLeftovers(tree: Tree, max: number): Leftover[] {
  const psync = openPsyncDir(tree, false);
  if (psync === undefined) return [];
  return using(psync, (held) => {
    const replacedName = REPLACED_DIR.split('/')[1]!;
    if (held.stat(replacedName)?.type !== 'dir') return [];
    return using(held.openDir(replacedName), (replaced) => {
      const out: Leftover[] = [];
      const walk = (dir: Directory, run: string, prefix: string): void => {
        for (const name of dir.list()) {
          if (out.length >= max) return;
          const stat = dir.stat(name);
          const path = joinPath(prefix, name);
          if (stat?.type === 'dir') using(dir.openDir(name), (sub) => walk(sub, run, path));
          else if (stat !== undefined) out.push({ run, path });
        }
      };
      for (const name of replaced.list()) {
        if (out.length >= max) break;
        if (!RUN_NAME_PATTERN.test(name) || replaced.stat(name)?.type !== 'dir') continue;
        const before = out.length;
        using(replaced.openDir(name), (dir) => walk(dir, `${REPLACED_DIR}/${name}`, ''));
        if (out.length === before) removeTree(replaced, name);
      }
      return out;
    });
  });
}
