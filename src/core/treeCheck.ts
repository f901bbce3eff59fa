/**
 * `psync check`'s decisions: which itemized rsync changes are differences
 * between the two trees, how each is printed, and the exit code.
 *
 * The comparison is an rsync dry run from the right root (sender) to the
 * left one (receiver) with `--delete` (commands/check.ts): `*deleting` is
 * an entry only on the left, a created entry one only on the right, a
 * changed one differs. A dry run cannot tell "the receiver lacks it" from
 * "the receiver has it as another type" (a real run would delete the other
 * type first, and the dry run does not say so), so the topmost created
 * paths (typeProbePaths) are looked up the other way, left to right, in a
 * second dry run over just those paths: what that run creates on the right
 * exists on both sides with different types.
 *
 * What is not a difference: a directory's mtime (psync does not keep
 * them: every change inside a directory moves it, on each side at its own
 * moment); a symlink's mtime (its target is what psync compares: the same
 * link made on both sides is agreed as it is); psync's own names, excludes
 * and temp files (left out of both runs by rsync's excludes). Everything
 * else rsync compares is: type, a file's size and mtime (and its content
 * with --checksum), a symlink's target, permissions, owner and group (when
 * the receiver runs as root).
 */

import { ancestorsOf, isSameOrUnder } from './paths.js';
import type { Attribute, EntryType, ItemizedChange } from './rsyncOutput.js';

export type Difference =
  | { readonly kind: 'onlyLeft'; readonly path: string; readonly isDir: boolean }
  | { readonly kind: 'onlyRight'; readonly path: string; readonly isDir: boolean }
  | { readonly kind: 'attributes'; readonly path: string; readonly attributes: readonly Attribute[] }
  | { readonly kind: 'type'; readonly path: string; readonly left: EntryType; readonly right: EntryType };

/**
 * The paths the right-to-left dry run created whose parent is not created
 * too: one of them may exist on the left as another type. (Below a created
 * path the left has nothing, or the parent's type already differs.)
 */
export function typeProbePaths(rightToLeft: readonly ItemizedChange[]): string[] {
  const created = rightToLeft.filter((change) => change.kind === 'created').map((change) => change.path);
  const all = new Set(created);
  return created.filter((path) => !ancestorsOf(path).some((ancestor) => all.has(ancestor)));
}

/**
 * The differences, in tree order. `rightToLeft`: the changes of the dry run
 * from the right root to the left one (with --delete); `leftToRight`: those
 * of the second dry run over typeProbePaths (only its created entries count:
 * the entries that are there on the right, as another type).
 * INVARIANT: nothing below a path whose type differs is listed (one side
 * has nothing there, or a directory the other side lacks: the type line
 * says it).
 */
export function treeDifferences(rightToLeft: readonly ItemizedChange[], leftToRight: readonly ItemizedChange[]): Difference[] {
  const rightTypes = new Map<string, EntryType>();
  for (const change of rightToLeft) if (change.kind === 'created') rightTypes.set(change.path, change.type);
  const typeDiffers: Difference[] = [];
  for (const change of leftToRight) {
    if (change.kind !== 'created') continue;
    const right = rightTypes.get(change.path);
    if (right !== undefined) typeDiffers.push({ kind: 'type', path: change.path, left: change.type, right });
  }
  const underTypeDifference = (path: string): boolean => typeDiffers.some((difference) => isSameOrUnder(path, difference.path));
  const differences: Difference[] = [...typeDiffers];
  for (const change of rightToLeft) {
    if (underTypeDifference(change.path)) continue;
    const difference = toDifference(change);
    if (difference !== undefined) differences.push(difference);
  }
  return differences.sort((a, b) => comparePaths(a.path, b.path));
}

/** Tree order: a directory's entries right after it (`d`, `d/x`, `d-2`), as `/` sorts before every other character. */
function comparePaths(a: string, b: string): number {
  const [x, y] = [a.replaceAll('/', '\0'), b.replaceAll('/', '\0')];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Entries whose mtime is no difference (see the header). */
const MTIME_IGNORED: readonly EntryType[] = ['dir', 'symlink'];

/** One change of the right-to-left run as a difference; undefined when it is none (a directory's mtime alone). */
function toDifference(change: ItemizedChange): Difference | undefined {
  switch (change.kind) {
    case 'deleted':
      return { kind: 'onlyLeft', path: change.path, isDir: change.isDir };
    case 'created':
      return { kind: 'onlyRight', path: change.path, isDir: change.type === 'dir' };
    case 'changed': {
      const attributes = MTIME_IGNORED.includes(change.type) ? change.attributes.filter((attribute) => attribute !== 'mtime') : change.attributes;
      return attributes.length === 0 ? undefined : { kind: 'attributes', path: change.path, attributes };
    }
  }
}

/**
 * A path as printed: as it is when it reads unambiguously (visible
 * characters, no quote or backslash, spaces only between them), else
 * JSON-quoted with every invisible or non-UTF-8 character escaped. The root
 * is `.`.
 */
export function showPath(path: string): string {
  if (path === '') return '.';
  if (PLAIN_PATH.test(path)) return path;
  return JSON.stringify(path).replace(/[\p{C}\p{Z}]/gu, (ch) => (ch === ' ' ? ch : escapeUnits(ch)));
}

/** Visible characters but quotes and backslashes, and spaces between them. */
const PLAIN_PATH = /^[^\p{C}\p{Z}"\\](?: *[^\p{C}\p{Z}"\\])*$/u;

/** `\uXXXX` for each UTF-16 unit of one character (two for a character above U+FFFF). */
const escapeUnits = (ch: string): string =>
  Array.from({ length: ch.length }, (_, i) => `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`).join('');

const TYPE_NAMES: Readonly<Record<EntryType, string>> = { file: 'file', dir: 'directory', symlink: 'symlink', device: 'device', special: 'special file' };

/** One output line per difference: `only on left: a/`, `differs: b (size, mtime)`, `differs: c (type: file on left, directory on right)`. */
export function describeDifference(difference: Difference): string {
  const shown = (isDir: boolean): string => `${showPath(difference.path)}${isDir ? '/' : ''}`;
  switch (difference.kind) {
    case 'onlyLeft':
      return `only on left: ${shown(difference.isDir)}`;
    case 'onlyRight':
      return `only on right: ${shown(difference.isDir)}`;
    case 'attributes':
      return `differs: ${showPath(difference.path)} (${difference.attributes.join(', ')})`;
    case 'type':
      return `differs: ${showPath(difference.path)} (type: ${TYPE_NAMES[difference.left]} on left, ${TYPE_NAMES[difference.right]} on right)`;
  }
}

/** The last line: `identical`, or how many differences of each kind. */
export function summarize(differences: readonly Difference[]): string {
  if (differences.length === 0) return 'identical';
  const count = (kinds: readonly Difference['kind'][]): number => differences.filter((d) => kinds.includes(d.kind)).length;
  const parts = [
    `${count(['onlyLeft'])} only on left`,
    `${count(['onlyRight'])} only on right`,
    `${count(['attributes', 'type'])} differing`,
  ];
  return `${differences.length} difference${differences.length === 1 ? '' : 's'}: ${parts.join(', ')}`;
}

/** `psync check`'s exit codes, as diff(1) and cmp(1) have them. */
export const CHECK_EXIT = {
  identical: 0,
  different: 1,
  /** Bad usage, a missing root, an unreachable host, an rsync that failed: nothing was compared, or not everything. */
  error: 2,
} as const;

export const checkExitCode = (differences: readonly Difference[]): number =>
  differences.length === 0 ? CHECK_EXIT.identical : CHECK_EXIT.different;
