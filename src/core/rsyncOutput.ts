/**
 * What rsync prints on stdout with an `--out-format`, read back: the names
 * (`%n`) and the itemized changes (`%i`, rsync(1) "--itemize-changes").
 *
 * Lines arrive as bytes decoded as latin1 (one char per byte). With `-8`
 * rsync prints a name's bytes as they are, except those it will not print
 * (a newline, control bytes, a backslash before `#`), which it writes as
 * `\#ooo` (three octal digits); a directory's name ends with `/`, and the
 * transfer root is `./`.
 *
 * `%i` is always 11 characters, `YXcstpoguax`:
 * - Y: `<` sent, `>` received, `c` created or changed locally (directories,
 *   symlinks, specials), `h` a hard link, `.` only attributes change, `*` a
 *   message in the rest of the field (`*deleting`);
 * - X: `f` file, `d` directory, `L` symlink, `D` device, `S` special (FIFO, socket);
 * - the nine attributes, each `.` (same) or a letter (differs), or all `+`
 *   for an entry the receiver does not have: `c` checksum (a file's content,
 *   a symlink's target), `s` size, `t`/`T` mtime, `p` permissions, `o`
 *   owner, `g` group, `u`/`n`/`b` access/creation time, `a` ACL, `x` xattrs.
 */

import { bytesToPath } from './paths.js';

/** The `%i %n` format itemizeLine reads, with `-8` (raw bytes but for escapes). */
export const ITEMIZE_ARGS: readonly string[] = ['-8', '--out-format=%i %n'];

/** A name as rsync printed it: the root-relative path ('' for the root `./`), and whether rsync marked it a directory. */
export function decodeRsyncName(raw: string): { readonly path: string; readonly isDir: boolean } {
  const unescaped = raw.replace(/\\#([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
  const isDir = unescaped.endsWith('/');
  const name = isDir ? unescaped.slice(0, -1) : unescaped;
  const bytes = Uint8Array.from(name === '.' ? '' : name, (ch) => ch.charCodeAt(0));
  return { path: bytesToPath(bytes), isDir };
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'device' | 'special';

/** One attribute the receiver's entry does not share with the sender's. */
export type Attribute = 'content' | 'target' | 'size' | 'mtime' | 'perms' | 'owner' | 'group' | 'atime' | 'acl' | 'xattrs';

export type ItemizedChange =
  /** The receiver has it, the sender not (`*deleting`, with --delete). */
  | { readonly kind: 'deleted'; readonly path: string; readonly isDir: boolean }
  /** The sender has it (of this type), the receiver not, or not of this type: a dry run cannot tell. */
  | { readonly kind: 'created'; readonly path: string; readonly type: EntryType }
  /** Both have it, of this type, with these attributes differing (possibly none). */
  | { readonly kind: 'changed'; readonly path: string; readonly type: EntryType; readonly attributes: readonly Attribute[] };

const TYPES: Readonly<Record<string, EntryType>> = { f: 'file', d: 'dir', L: 'symlink', D: 'device', S: 'special' };
const ITEMIZE_CHARS = 11;
const DELETING = '*deleting  ';

/** The attribute at each of the nine positions after YX (position 0 depends on the type). */
const attributeAt = (position: number, type: EntryType): Attribute | undefined =>
  [type === 'symlink' ? 'target' : 'content', 'size', 'mtime', 'perms', 'owner', 'group', 'atime', 'acl', 'xattrs'][position] as Attribute | undefined;

/** One `%i %n` line; undefined for a line that is not one. */
export function parseItemizedLine(line: string): ItemizedChange | undefined {
  if (line.length <= ITEMIZE_CHARS + 1 || line[ITEMIZE_CHARS] !== ' ') return undefined;
  const item = line.slice(0, ITEMIZE_CHARS);
  const { path, isDir } = decodeRsyncName(line.slice(ITEMIZE_CHARS + 1));
  if (item === DELETING) return path === '' ? undefined : { kind: 'deleted', path, isDir };
  const type = TYPES[item[1]!];
  const flags = item.slice(2);
  if (type === undefined || !'<>ch.'.includes(item[0]!) || !/^[-+.a-zA-Z? ]{9}$/.test(flags)) return undefined;
  if (flags === '+++++++++') return path === '' ? undefined : { kind: 'created', path, type };
  const attributes = [...flags].flatMap((flag, position) => (flag === '.' || flag === ' ' ? [] : [attributeAt(position, type)!]));
  return { kind: 'changed', path, type, attributes };
}

/**
 * Lines rsync prints on stdout among the changes that are not changes.
 * "IO error encountered": something could not be read, so a `--delete` run
 * lists no deletes at all (it also exits 23, which says the rest).
 */
export const isRsyncNotice = (line: string): boolean => line === 'IO error encountered -- skipping file deletion';
