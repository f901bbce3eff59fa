/**
 * Exclude and temp-file patterns: which paths psync syncs, and the same
 * choice spelled as rsync `--exclude` arguments for the initial full sync.
 *
 * Pattern language: rsync's / .gitignore's globs, checked the same way by
 * the filter (micromatch, here) and by rsync, so that a path the filter
 * drops is also one a full sync does not copy.
 * - A pattern without a slash matches the base name at any depth:
 *   `*.skip` matches `a/b/c.skip`.
 * - A pattern with a slash matches the whole root-relative path; a leading
 *   `/` only anchors (`/build` is the top-level `build` only). `**` as a whole
 *   path component (between slashes, or at either end) matches zero or more
 *   directories.
 * - A trailing `/` means "directories only".
 * - `*`, `?` and `[...]` match dot files too and never cross a `/`;
 *   `[!x]` and `[^x]` both negate; `\` escapes a wildcard.
 * - A path is excluded when it or any of its ancestors matches: excluding
 *   `node_modules` excludes everything below it (rsync does not descend
 *   into an excluded directory, so it behaves the same).
 *
 * What rsync and micromatch would read differently is made equal here or
 * refused by `validatePattern`:
 * - braces `{a,b}` and extglobs `+(a|b)` are literal text in rsync, so
 *   micromatch runs with `nobrace`/`noextglob` (they are literal here too);
 *   a brace list (`*.{jpg,png}`, `{1..9}`) is refused, since users expect
 *   the shell's expansion (a literal brace is written `[{]`);
 * - a leading `!` is negation in micromatch and "clear the list" in rsync:
 *   refused; `+ ` / `- ` prefixes are rule prefixes to rsync: refused;
 * - `**` glued to other text (`a**b`) crosses `/` in rsync but not in a base
 *   name match: refused; rsync's `***` suffix: refused;
 * - rsync's `**` between two slashes needs at least one directory where
 *   micromatch's matches zero: `toRsyncFilterArgs` emits both spellings;
 * - a pattern without a wildcard is a literal name to rsync even if it holds a
 *   backslash: compared literally here too.
 */

import micromatch from 'micromatch';
import { ConfigError } from './errors.js';
import { ancestorsOf, baseName } from './paths.js';

/** psync's own state directory at the root of each tree (never synced). */
export const PSYNC_DIR = '.psync';
/** Any path component containing this is a scratch name of the helper's rename dance. */
export const IGNORE_MARK = '.psync.ignore';

/**
 * Temp files of common editors and office suites, and rsync's own. They are
 * never synced under their temp name; once renamed onto a real name the
 * real name is synced.
 */
export const DEFAULT_TEMPFILES: readonly string[] = [
  '.*.swp', // vim swap file of `name`: `.name.swp`
  '.*.swo', // vim's second swap file
  '.*.swx', // vim's swap file probe
  '*~', // vim / emacs / gedit backup: `name~`
  '.#*', // emacs lock (a dangling symlink): `.#name`
  '#*#', // emacs auto-save: `#name#`
  '4913', // vim's "can I write in this directory" probe file
  '*.tmp', // generic; MS Word's `~WRL0001.tmp`, many tools' save-then-rename
  '~$*', // MS Office owner file: `~$report.docx`
  '.~lock.*#', // LibreOffice lock: `.~lock.report.odt#`
  '.goutputstream-*', // GLib/GIO safe save (gedit, nautilus): `.goutputstream-XXXXXX`
  // rsync's own temp file `.name.XXXXXX` (6 random characters), renamed onto
  // `name` when complete. Known false positive: a real dot file whose last
  // extension has 6 characters (`.bashrc.backup`) is treated as temp too.
  '.*.??????',
];

/** Is `entry` the temp file rsync writes for `name` in the same directory (`.name.XXXXXX`, mkstemp's 6 letters and digits)? */
export function isRsyncTempOf(entry: string, name: string): boolean {
  return entry.length === name.length + 8 && entry.startsWith(`.${name}.`) && /^[A-Za-z0-9]{6}$/.test(entry.slice(-6));
}

export interface PatternSet {
  readonly excludes: readonly string[];
  readonly tempfiles: readonly string[];
}

/** What psync does with a path: sync it, or why not. */
export type PathClass = 'sync' | 'internal' | 'excluded' | 'temp';

/** Classifies a root-relative path; `isDir` enables directory-only (`dir/`) patterns on the path itself. */
export type PathClassifier = (path: string, isDir?: boolean) => PathClass;

const MAX_GLOBSTARS = 6;

/** An error message for a pattern psync cannot use, or undefined when it is fine. */
export function validatePattern(pattern: string): string | undefined {
  const quoted = JSON.stringify(pattern);
  if (pattern.trim() === '') return 'empty pattern';
  if (/[\0\n\r]/.test(pattern)) return `pattern ${quoted} holds a NUL or line break`;
  if (stripSlashes(pattern).body === '') return `pattern ${quoted} names the root`;
  if (pattern.startsWith('!')) return `pattern ${quoted}: negation with "!" is not supported (escape a literal "!" as "\\!")`;
  if (/^[+-] /.test(pattern)) return `pattern ${quoted}: rsync would read "${pattern.slice(0, 2)}" as a rule prefix`;
  if (/(?<!\[)\{[^}]*(,|\.\.)[^}]*\}/.test(pattern)) {
    return `pattern ${quoted}: braces are not expanded (rsync reads them literally); give one pattern per alternative, or write a literal "{" as "[{]"`;
  }
  if (pattern.includes('***')) return `pattern ${quoted}: "***" is not supported (use "dir" for a directory and its contents)`;
  for (const part of pattern.split('/')) {
    if (part.includes('**') && part !== '**') return `pattern ${quoted}: "**" must be a whole path component (as in "a/**/b")`;
  }
  if (pattern.split('/').filter((part) => part === '**').length > MAX_GLOBSTARS) return `pattern ${quoted} has too many "**"`;
  return undefined;
}

interface Split {
  /** The pattern without its leading and trailing slashes. */
  readonly body: string;
  readonly dirOnly: boolean;
  /** Matched against the whole root-relative path (it has a slash), else against base names. */
  readonly anchored: boolean;
}

function stripSlashes(pattern: string): Split {
  const dirOnly = pattern.endsWith('/');
  const withoutTrailing = pattern.replace(/\/+$/, '');
  const body = withoutTrailing.replace(/^\/+/, '');
  return { body, dirOnly, anchored: withoutTrailing.includes('/') };
}

const hasWildcard = (pattern: string): boolean => /[*?[]/.test(pattern);

/** micromatch reads `[!x]` as the characters `!` and `x`; rsync (and POSIX) read it as negation. */
function posixBrackets(pattern: string): string {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '\\') {
      out += pattern.slice(i, i + 2);
      i += 1;
    } else if (ch === '[' && pattern[i + 1] === '!') {
      out += '[^';
      i += 1;
    } else {
      out += ch;
    }
  }
  return out;
}

const MICROMATCH_OPTIONS = { dot: true, nobrace: true, noextglob: true, nonegate: true } as const;

interface CompiledPattern {
  readonly dirOnly: boolean;
  readonly anchored: boolean;
  readonly test: (subject: string) => boolean;
}

function compilePattern(pattern: string): CompiledPattern {
  const { body, dirOnly, anchored } = stripSlashes(pattern);
  const test = hasWildcard(body)
    ? micromatch.matcher(posixBrackets(body), MICROMATCH_OPTIONS)
    : (subject: string): boolean => subject === body;
  return { dirOnly, anchored, test };
}

/** The entry itself, then each ancestor (always a directory), nearest first. */
function candidates(path: string, isDir: boolean): Array<{ path: string; isDir: boolean }> {
  return [{ path, isDir }, ...ancestorsOf(path).map((ancestor) => ({ path: ancestor, isDir: true }))];
}

function compileSet(patterns: readonly string[]): (path: string, isDir: boolean) => boolean {
  const compiled = patterns.map(compilePattern);
  return (path, isDir) =>
    candidates(path, isDir).some((candidate) =>
      compiled.some(
        (pattern) =>
          (!pattern.dirOnly || candidate.isDir) &&
          pattern.test(pattern.anchored ? candidate.path : baseName(candidate.path)),
      ),
    );
}

function assertValid(patterns: readonly string[]): void {
  for (const pattern of patterns) {
    const problem = validatePattern(pattern);
    if (problem !== undefined) throw new ConfigError(problem);
  }
}

/** True for `.psync` at the root and below it, and for any path with a `.psync.ignore` component, whatever the entry's type. */
export function isPsyncInternal(path: string): boolean {
  if (path === PSYNC_DIR || path.startsWith(`${PSYNC_DIR}/`)) return true;
  return path.split('/').some((part) => part.includes(IGNORE_MARK));
}

/**
 * Compile the pattern sets once into a classifier. Order: psync's own names,
 * then excludes, then temp files. Without `isDir`, directory-only patterns
 * apply to the path's ancestors but not to the path itself.
 * Throws ConfigError for a pattern `validatePattern` refuses.
 */
export function compilePathClassifier(patterns: PatternSet): PathClassifier {
  assertValid(patterns.excludes);
  assertValid(patterns.tempfiles);
  const isExcluded = compileSet(patterns.excludes);
  const isTemp = compileSet(patterns.tempfiles);
  return (path, isDir = false) => {
    if (path === '') return 'sync';
    if (isPsyncInternal(path)) return 'internal';
    if (isExcluded(path, isDir)) return 'excluded';
    if (isTemp(path, isDir)) return 'temp';
    return 'sync';
  };
}

/**
 * rsync's exclude rules that keep psync's own names out of every transfer,
 * whatever the entry is: `.psync` at the root as a directory, a file or a
 * symlink (`/.psync/` would match a directory only, and `psync -s` copied a
 * `.psync` link from one side to the other), and every name holding
 * `.psync.ignore`. Each rule comes twice: the entry itself, and `/**` for
 * what is below it, because a `--files-from` list names entries one by one
 * and rsync checks each listed path on its own, so an excluded parent does
 * not exclude a listed child (`.psync/lock` went through `/.psync`).
 */
export const INTERNAL_RSYNC_EXCLUDES: readonly string[] = [`/${PSYNC_DIR}`, `/${PSYNC_DIR}/**`, `*${IGNORE_MARK}*`, `*${IGNORE_MARK}*/**`];

/**
 * One psync pattern as rsync exclude patterns. A pattern with a slash is
 * anchored with a leading `/` (psync anchors it; rsync would otherwise match
 * it at any depth). Each `/**` component is emitted both with and without
 * it, because rsync's `**` between slashes needs at least one directory.
 */
export function toRsyncPatterns(pattern: string): string[] {
  const { body, dirOnly, anchored } = stripSlashes(pattern);
  const suffix = dirOnly ? '/' : '';
  if (!anchored) return [`${body}${suffix}`];
  const pieces = `/${body}`.split(/\/\*\*(?=\/|$)/);
  let variants = [pieces[0]!];
  for (const piece of pieces.slice(1)) {
    variants = variants.flatMap((head) => [`${head}${piece}`, `${head}/**${piece}`]);
  }
  return [...new Set(variants)].filter((variant) => variant !== '').map((variant) => `${variant}${suffix}`);
}

/**
 * The pattern sets and psync's internal names as rsync `--exclude=` arguments,
 * internal names first. Throws ConfigError for a pattern `validatePattern` refuses.
 */
export function toRsyncFilterArgs(patterns: PatternSet): string[] {
  assertValid(patterns.excludes);
  assertValid(patterns.tempfiles);
  const all = [...INTERNAL_RSYNC_EXCLUDES, ...[...patterns.excludes, ...patterns.tempfiles].flatMap(toRsyncPatterns)];
  return [...new Set(all)].map((pattern) => `--exclude=${pattern}`);
}
