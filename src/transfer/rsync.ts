/**
 * rsync: building its argv and running it.
 *
 * File names reach rsync only as NUL-separated bytes on stdin
 * (`--files-from=- --from0`) and the two roots only as argv elements; with
 * `--protect-args` rsync passes them to the remote rsync inside its own
 * protocol, never through the remote shell. psync needs rsync 3.5.0 or
 * newer on both hosts (core/rsyncVersion.ts): each end is confined to its
 * root with `--confine-root` (see buildRsyncArgv).
 */

import { performance } from 'node:perf_hooks';
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { RsyncError } from '../core/errors.js';
import { MAX_STDERR_LINE_CHARS, readLines } from '../lineStream.js';
import { guardPath, pathToBytes } from '../core/paths.js';
import { toRsyncFilterArgs, type PatternSet } from '../core/patterns.js';
import { decodeRsyncName } from '../core/rsyncOutput.js';

export interface RsyncArgvOptions {
  /** Source root as rsync names it, with a trailing slash: "/srv/a/" or "host:/srv/a/". */
  readonly source: string;
  /** Target root, same form. */
  readonly target: string;
  /** How to reach a remote side (`-e ...`); empty when both are local. */
  readonly transportArgs: readonly string[];
  /** Skip files that are newer on the target (`--update`). */
  readonly update?: boolean;
  /**
   * Transfer even when size and mtime look the same (`--ignore-times`).
   * rsync's quick check compares mtimes in whole seconds: a file saved twice
   * within one second at the same size would otherwise be skipped. Realtime
   * transfers send only paths known to have changed, so they always force.
   */
  readonly ignoreTimes?: boolean;
  readonly dryRun?: boolean;
  /**
   * Keep every file the run replaces under this target-relative directory
   * (`--backup --backup-dir`) instead of dropping it, for the conflict check
   * after the run (conflict.ts).
   */
  readonly backupDir?: string;
  /** The user's extra rsync options, passed as they are. */
  readonly extra: readonly string[];
  /** `--exclude=...` arguments (see rsyncExcludeArgs). */
  readonly excludes: readonly string[];
  /** Transfer only the root-relative paths given on stdin (see runRsync's `files`). */
  readonly filesFrom: boolean;
  /**
   * With `filesFrom`, also descend into listed directories (a directory moved
   * in from outside the tree). Without `filesFrom` rsync always recurses.
   */
  readonly recursive?: boolean;
  /**
   * The real path (no symlink in it) of the root of the end where this rsync
   * runs, the client: `--confine-root`. Unset when that rsync is too old to
   * know the option (core/rsyncVersion.ts).
   */
  readonly confineRoot?: string;
  /**
   * The same for the other end, the rsync server, passed to it with
   * `--remote-option` (it reaches the server inside rsync's protected args,
   * never through a shell). Unset when the server is started by the
   * helper's relay, which adds it itself (core/relay.ts), or is too old.
   */
  readonly serverConfineRoot?: string;
  /** Keep setuid and setgid bits on the files made (`--preserve-suid`); by default they are dropped. */
  readonly preserveSuid?: boolean;
}

/**
 * The argv for one rsync run (without the `rsync` itself).
 *
 * - `-a`: symlinks stay symlinks, permissions, times, group, owner (when
 *   root), devices. With `--files-from` it does not imply `-r`, so a listed
 *   directory is created with its attributes but its contents are their
 *   own entries in the list.
 * - `--numeric-ids`: ids are kept as numbers, as the two trees of one user
 *   usually share them (GlusterFS geo-replication does the same).
 * - `--files-from=- --from0` implies `--relative`; we KEEP implied
 *   directories (no `--no-implied-dirs`): a listed file whose parent is
 *   missing on the target gets it created instead of failing with exit 23,
 *   and a parent that is a symlink on the target is replaced by a real
 *   directory instead of being followed out of the tree. The cost: rsync
 *   also sets the parents' mode and mtime to the source's (they appear in
 *   the transfer list). (`--no-implied-dirs` does not stop rsync from
 *   making a missing parent, only from copying its attributes: the brain
 *   checks realtime parents itself before a run, brain.ts dropOrphans.)
 * - `--ignore-missing-args`: a listed path that vanished before rsync got to
 *   it is not an error (its DELETE follows).
 * - No `--inplace`, no `--partial-dir`: rsync writes `.name.XXXXXX` beside
 *   the file and renames it into place, so the target never sees a half
 *   file under the real name, and the filter treats the temp name as temp.
 *   A run killed halfway leaves its temp files: the brain journals each run
 *   in the archive and has them removed at the next start (startup.ts).
 *   Not `--temp-dir` under `.psync`: rsync creates its temp file there
 *   through a symlink even with `--confine-root` (only the rename is
 *   refused), so a `.psync` swapped for a link would let a user have root
 *   write a file anywhere.
 * - `--chmod=Fug-s` (unless `preserveSuid`): a file is never made setuid or
 *   setgid. psync runs as root and `-a` keeps owners, so a user's setuid file
 *   on one side (or one the other side merely claims) would become a
 *   setuid file of that owner, root included, on the other. Only files
 *   (`F`): a setgid directory (a group-shared directory) grants nothing and
 *   keeps its meaning.
 * - `--confine-root` on each end (rsync >= 3.5.0): a path rsync is handed
 *   (a `--files-from` entry, `--backup-dir`) that resolves outside that
 *   end's root is refused, even through a symlink owned by root (one rsync
 *   itself made from the other side); rsync's ownership walk alone follows
 *   those. Without it, `lnk/secret` with `lnk -> /root` was read through the
 *   link. The client gets its own root; the server gets its root through
 *   `--remote-option` (or from the relay). Each end needs its own rsync
 *   process: a local copy forks its receiver with the client's options, and
 *   the client's root there made rsync skip `--backup-dir` silently, so a
 *   local right side is reached like a remote one (transport/local.ts).
 * - `--no-devices`: `-a` would make device nodes as root with whatever owner
 *   and mode the other side claims; a block device a user can read in one
 *   tree is the whole disk, far outside the root. FIFOs and sockets (specials)
 *   are still synced.
 * - No `-H`: hard links are not preserved; each name is synced as a file of
 *   its own. A hard link made inside a tree to a file outside it therefore
 *   never carries that file's inode to the other side, and psync never
 *   links two names on the target.
 * - `--` before the roots, so a root can never be read as an option.
 */
export function buildRsyncArgv(options: RsyncArgvOptions): string[] {
  const listArgs = options.filesFrom
    ? ['--files-from=-', '--from0', '--ignore-missing-args', ...(options.recursive === true ? ['--recursive'] : [])]
    : [];
  return [
    '--archive',
    '--no-devices',
    '--protect-args',
    '--numeric-ids',
    // Compare mtimes to the nanosecond, not the second (rsync >= 3.1.3), where a
    // run without --ignore-times uses its quick check.
    '--modify-window=-1',
    ...(options.preserveSuid === true ? [] : [NO_SUID_ARG]),
    ...(options.confineRoot === undefined ? [] : [`--confine-root=${options.confineRoot}`]),
    ...(options.serverConfineRoot === undefined ? [] : [`--remote-option=--confine-root=${options.serverConfineRoot}`]),
    ...listArgs,
    ...(options.update === true ? ['--update'] : []),
    ...(options.ignoreTimes === true ? ['--ignore-times'] : []),
    ...(options.dryRun === true ? ['--dry-run'] : []),
    ...(options.backupDir === undefined ? [] : ['--backup', `--backup-dir=${options.backupDir}`]),
    ...options.transportArgs,
    ...options.excludes,
    ...options.extra,
    '--',
    options.source,
    options.target,
  ];
}

/**
 * The `--exclude` arguments of every rsync run of a pair: the filters'
 * patterns and psync's own names in rsync's spelling (core/patterns.ts),
 * then the user's own rsync patterns (`--rsync-excludes`).
 * Throws ConfigError for a pattern psync refuses.
 */
export const rsyncExcludeArgs = (patterns: PatternSet & { readonly rsyncExcludes: readonly string[] }): string[] => [
  ...toRsyncFilterArgs({ excludes: patterns.excludes, tempfiles: patterns.tempfiles }),
  ...patterns.rsyncExcludes.map((pattern) => `--exclude=${pattern}`),
];

/** Drops the setuid and setgid bits of every file rsync makes or updates (see buildRsyncArgv). */
export const NO_SUID_ARG = '--chmod=Fug-s';

/** What rsync's exit statuses mean (rsync(1), EXIT VALUES). */
export const RSYNC_EXIT_MEANINGS: Readonly<Record<number, string>> = {
  0: 'success',
  1: 'syntax or usage error',
  2: 'protocol incompatibility',
  3: 'errors selecting input/output files or directories',
  4: 'requested action not supported',
  5: 'error starting client-server protocol',
  6: 'daemon unable to append to log file',
  10: 'error in socket I/O',
  11: 'error in file I/O',
  12: 'error in rsync protocol data stream',
  13: 'errors with program diagnostics',
  14: 'error in IPC code',
  20: 'received SIGUSR1 or SIGINT',
  21: 'some error returned by waitpid()',
  22: 'error allocating core memory buffers',
  23: 'partial transfer due to error',
  24: 'partial transfer due to vanished source files',
  25: 'the --max-delete limit stopped deletions',
  30: 'timeout in data send/receive',
  35: 'timeout waiting for daemon connection',
  255: 'the remote shell failed (ssh could not connect or authenticate)',
};

export const rsyncExitMeaning = (exitCode: number): string => RSYNC_EXIT_MEANINGS[exitCode] ?? 'unknown error';

/** 23 and 24 are normal while the tree changes under rsync: the caller retries what is still there. */
export const PARTIAL_EXIT_CODES: readonly number[] = [23, 24];

/**
 * Is this stderr line rsync's notice of a file that vanished while it ran
 * (`file has vanished: "..."`, and its closing `some files vanished before
 * they could be transferred (code 24)`)? Normal while the tree changes (a
 * `git gc`): the file's own DELETE or MOVE follows.
 */
export function isVanishedNotice(line: string): boolean {
  return /^file has vanished: /.test(line) || /^rsync warning: some files vanished before they could be transferred \(code 24\)/.test(line);
}

/** Used when rsync could not be started at all (as a shell says "command not found"). */
export const RSYNC_NOT_STARTED = 127;
/** Used when rsync was killed by a signal or cancelled: rsync's own code for a signal. */
export const RSYNC_SIGNALLED = 20;

export interface RunRsyncOptions {
  readonly argv: readonly string[];
  /** Root-relative paths for `--files-from=- --from0`, written to stdin as NUL-separated bytes. */
  readonly files?: readonly string[];
  readonly signal?: AbortSignal;
  /** Receives each line rsync wrote on stderr. */
  readonly log?: (line: string) => void;
  /** The rsync binary; "rsync" from PATH by default. */
  readonly command?: string;
  /**
   * Receives each entry rsync transferred, when the argv asks for the list
   * (`transferList: true` in buildRsyncArgv).
   */
  readonly onTransferred?: (entry: TransferredEntry) => void;
  /**
   * Receives each line rsync wrote on stdout, its bytes as latin1 chars
   * (what an `--out-format` prints, e.g. core/rsyncOutput.ts ITEMIZE_ARGS).
   * A line longer than MAX_LIST_LINE_CHARS is given cut.
   */
  readonly onOutputLine?: (line: string) => void;
}

/** One line of the transfer list: what rsync wrote on the receiver. */
export interface TransferredEntry {
  readonly path: string;
  readonly isDir: boolean;
  readonly size: number;
  /** Modification time in whole seconds since the epoch, as rsync prints it (local time). */
  readonly mtimeSeconds: number;
  /** Permission bits (mode & 0o7777), from rsync's `rwxr-xr-x`. */
  readonly mode: number;
  /** rsync created it on the receiver (its itemized change is `+++++++++`): it was not there before. */
  readonly created: boolean;
}

/**
 * The `--out-format` that lists transferred entries: the itemized change
 * (`cd+++++++++` for a directory it made), size, mtime, permissions, name.
 * It lists the directories a run created or whose
 * attributes it set, also the parents it made or updated on the way to a
 * listed path (implied directories). With `-8` rsync prints names raw but
 * for `\#ooo` escapes (newlines, control bytes, a backslash before `#`),
 * which parseTransferLine undoes.
 */
export const TRANSFER_LIST_ARGS: readonly string[] = ['-8', '--out-format=%i %l %M %B %n'];
/** A transfer-list line is a change, a size, a time and a name (at most 4096 bytes, each escaped to at most 4): more is not one. */
const MAX_LIST_LINE_CHARS = 64 * 1024;
/** How much of rsync's stderr the result keeps. */
export const STDERR_KEEP_CHARS = 8 * 1024;

/** Parse one transfer-list line (bytes as latin1 chars); undefined for a line that is not one. */
export function parseTransferLine(line: string): TransferredEntry | undefined {
  const match = /^([<>ch.][fdLDS]([-+.a-zA-Z?]{9})) (\d+) (\d{4})\/(\d\d)\/(\d\d)-(\d\d):(\d\d):(\d\d) ([-rwxsStT]{9}) (.+)$/.exec(line);
  if (match === null) return undefined;
  const [, , changes, size, year, month, day, hour, minute, second, perms, rawName] = match as unknown as string[];
  const { path, isDir } = decodeRsyncName(rawName!);
  if (path === '') return undefined;
  const mtime = new Date(Number(year), Number(month) - 1, Number(day), Number(hour), Number(minute), Number(second));
  return { path, isDir, size: Number(size), mtimeSeconds: mtime.getTime() / 1000, mode: parsePermissions(perms!), created: /^\++$/.test(changes!) };
}

/** `rwsr-x--T` -> 0o4750 | sticky: rsync's %B, as ls prints permissions. */
export function parsePermissions(text: string): number {
  let mode = 0;
  for (let i = 0; i < 9; i++) {
    const ch = text[i]!;
    const bit = 1 << (8 - i);
    if (ch === 'r' || ch === 'w' || ch === 'x' || ch === 's' || ch === 't') mode |= bit;
    if (i === 2 && (ch === 's' || ch === 'S')) mode |= 0o4000;
    if (i === 5 && (ch === 's' || ch === 'S')) mode |= 0o2000;
    if (i === 8 && (ch === 't' || ch === 'T')) mode |= 0o1000;
  }
  return mode;
}

export interface RsyncResult {
  /** 0, or one of PARTIAL_EXIT_CODES. */
  readonly exitCode: number;
  readonly status: 'ok' | 'partial';
  /** The last STDERR_KEEP_CHARS of what rsync wrote on stderr (every line went to `log` as it came). */
  readonly stderr: string;
  readonly durationMs: number;
}

/** The file list as rsync's `--from0` reads it: each path's exact bytes, each followed by NUL. */
export function encodeFileList(files: readonly string[]): Uint8Array {
  const parts = files.map((file) => pathToBytes(guardPath(file)));
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length + 1, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length + 1; // the byte after each name stays 0: the separator
  }
  return out;
}

const lastLine = (text: string): string => text.trimEnd().split('\n').pop() ?? '';

/**
 * rsync is started through setpriv(1) (util-linux, on every Debian) with a
 * parent-death signal: when psync is killed (kill -9, the OOM killer), its
 * rsync dies with it instead of writing on into the tree unwatched, its
 * replaced versions unjudged. Where setpriv is missing rsync runs as is.
 */
const SETPRIV = '/usr/bin/setpriv';
const DIE_WITH_PSYNC: readonly string[] = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'KILL', '--'] : [];

/**
 * Run rsync once. Resolves for success and for a partial transfer (23, 24);
 * throws RsyncError for any other outcome, with rsync's exit code (or
 * RSYNC_NOT_STARTED / RSYNC_SIGNALLED) and the last line rsync wrote on stderr.
 * Every path in `files` passes the path guard first (SafetyError otherwise).
 */
export async function runRsync(options: RunRsyncOptions): Promise<RsyncResult> {
  const input = options.files === undefined ? undefined : encodeFileList(options.files);
  const started = performance.now();
  const listing = options.onTransferred;
  const onOutputLine = options.onOutputLine;
  const [program, ...args] = [...DIE_WITH_PSYNC, options.command ?? 'rsync', ...options.argv] as [string, ...string[]];
  const subprocess = execa(program, args, {
    ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
    ...(options.signal === undefined ? {} : { cancelSignal: options.signal }),
    stdout: listing === undefined && onOutputLine === undefined ? 'ignore' : 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    stripFinalNewline: false,
  });
  // stderr goes to the log line by line as it comes (bounded: it carries the remote rsync's messages
  // too); only its end is kept, for the result and the error's last line.
  let stderr = '';
  const stderrDone =
    subprocess.stderr === null
      ? Promise.resolve()
      : readLines(subprocess.stderr, MAX_STDERR_LINE_CHARS, (line) => {
          if (line.text === '') return;
          options.log?.(line.cut ? `${line.text} [line cut]` : line.text);
          stderr = `${stderr}${line.text}\n`.slice(-STDERR_KEEP_CHARS);
        });
  const listDone =
    subprocess.stdout === null
      ? Promise.resolve()
      : readLines(
          subprocess.stdout,
          MAX_LIST_LINE_CHARS,
          (line) => {
            onOutputLine?.(line.text);
            const entry = line.cut || listing === undefined ? undefined : parseTransferLine(line.text);
            if (entry !== undefined) listing?.(entry);
          },
          'latin1',
        );
  const result = await subprocess;
  await Promise.all([stderrDone, listDone]);
  const durationMs = performance.now() - started;
  const cause = result instanceof Error ? { cause: result } : undefined;

  if (result.isCanceled || result.signal !== undefined) {
    const how = result.isCanceled ? 'was cancelled' : `was killed by ${result.signal}`;
    throw new RsyncError(`rsync ${how}`, RSYNC_SIGNALLED, { cause: options.signal?.reason ?? result });
  }
  if (result.exitCode === undefined) {
    throw new RsyncError(`could not start rsync: ${result.message}`, RSYNC_NOT_STARTED, cause);
  }
  // setpriv's own "could not execute" (rsync's exit codes stop below 126, but for 255).
  if (DIE_WITH_PSYNC.length > 0 && (result.exitCode === 126 || result.exitCode === 127)) {
    throw new RsyncError(`could not start rsync: ${lastLine(stderr)}`, RSYNC_NOT_STARTED, cause);
  }
  const exitCode = result.exitCode;
  if (exitCode === 0) return { exitCode, status: 'ok', stderr, durationMs };
  if (PARTIAL_EXIT_CODES.includes(exitCode)) return { exitCode, status: 'partial', stderr, durationMs };
  const detail = lastLine(stderr);
  throw new RsyncError(
    `rsync failed with exit code ${exitCode} (${rsyncExitMeaning(exitCode)})${detail === '' ? '' : `: ${detail}`}`,
    exitCode,
    cause,
  );
}
