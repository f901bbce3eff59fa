/**
 * The psync wire protocol between the brain and the process it starts on
 * each side (src/side.ts: that side's filter and helper on one channel).
 * Every message is one frame (see frame.ts); every stream numbers its own
 * frames. The side passes the filter's and the helper's frames on in one
 * stream, and routes what the brain sends: PAUSE and RESUME to its filter,
 * every other frame after CONFIG to its helper.
 *
 * Start of every channel, protocol version 4 (PROTOCOL_VERSION):
 *   brain -> side    CONFIG <json>          the side's settings (SideConfig: a FilterConfig and a HelperConfig)
 *   side -> brain    HELLO <version> <role> <pid>
 *   A child that cannot start (missing root, bad config) sends
 *   `ERROR <message> [<kind>]` and exits non-zero; kind (START_ERROR_KIND)
 *   says why when the brain acts on it: `root` (the root is missing or not a
 *   directory), `locked` (another psync holds the root's lock). An older
 *   brain reads the message only.
 *
 * Filter -> brain, after HELLO:
 *   ENTRY <path> <stat...> <birth>          only when FilterConfig.reportScan: one frame per entry of
 *                                           the start-up scan, parents before children, the root not
 *                                           included, all of them before READY. Together they are the
 *                                           tree as the filter indexed it; what changes from then on is
 *                                           reported (RSYNC, MOVE, DELETE) after READY, against it
 *   LEFTOVER <run> <path>                   only with ENTRY, before READY: a version a killed
 *                                           transfer kept under `<run>` (`.psync/replaced/<name>`),
 *                                           replaced at `path`; the brain has it judged (RESOLVE
 *                                           against what was agreed) before it reconciles
 *   READY <entries> <markers>               the tree is indexed and watched; entries is how many (as
 *                                           many as the ENTRY frames, when sent); markers are the pair
 *                                           ids in the root's `.psync/id`, comma-separated (an empty
 *                                           argument: the file holds none), or `-` when there is no
 *                                           such file
 *   RSYNC <path> <stat...> [<prev...>]      a created or changed entry, settled; prev is what
 *                                           the path held before (absent for a new entry)
 *   MOVE <from> <to> <stat...> [<replaces...>]
 *                                           a rename inside the tree (same inode); replaces is the
 *                                           file it replaced at `to`, if any
 *   DELETE <path> <stat...>                 an entry confirmed gone; stat is what it was
 *   HEARTBEAT <n>                           every HEARTBEAT_INTERVAL_MS, so silence means trouble
 *   WARN <message>                          something the user should see; the filter goes on
 *   SKIPPED <path> <why>                    a directory the filter cannot read or watch (EACCES):
 *                                           it is left out, said once, and tried again at each
 *                                           rescan; SKIPPED <path> with an empty why: readable again
 *   ERROR <message>                         the filter stops (its root vanished, the watcher died,
 *                                           `.psync` or `.psync/id` cannot be trusted or read)
 *
 * Brain -> filter, after READY (flow control: the brain's queue is bounded, core/batch.ts):
 *   PAUSE                                   hold every RSYNC, MOVE and DELETE report until RESUME:
 *                                           keep watching, keep the changed paths pending (they
 *                                           merge as usual), keep sending HEARTBEAT, WARN, ERROR
 *   RESUME                                  send what was held, then report as usual
 *   A filter may send a few reports after PAUSE (those already on their way);
 *   one that goes on past HARD_MAX_QUEUED_ACTIONS stops the brain.
 *
 * Brain -> helper, after HELLO (the helper answers each request, in order):
 *   MOVE <id> <from> <to> <stat...> [<replaces...>]
 *                                           rename `from` to `to`; stat is what `from` must still be;
 *                                           a file at `to` that is not `replaces` is kept as a conflict copy
 *   DELETE <id> <path> <stat...>            remove `path`; stat is what it must still be
 *   RESOLVE <id> <dir> <path> <n> <stat...>*n
 *                                           after an rsync run that kept what it replaced in
 *                                           `dir` (--backup-dir): was `dir/path` one of the n
 *                                           expected versions? If not, keep both (conflict.ts)
 *   PURGE <id> <dir>                        remove the replaced versions kept in `dir`
 *   STAT <id> <path>                        lstat `path` (never following a symlink)
 *   UNTEMP <id> <path>                      remove the temp files a killed rsync left beside `path`
 *                                           (`.<name>.XXXXXX`, regular files only); DONE's stat is
 *                                           what `path` holds (missing: none)
 *   HASH <id> <path>                        the SHA-256 of a file's content (read through a descriptor
 *                                           opened O_NOFOLLOW) or of a symlink's target bytes
 *   MARK <id> <pairId>                      add the line `<pairId>` to the root's `.psync/id` unless it
 *                                           is there (written to a temp file, renamed into place);
 *                                           nothing in a dry run
 * Helper -> brain:
 *   RELAY <port> <token>                    right after HELLO when CONFIG asked for the rsync relay
 *   NORELAY <reason>                        (relay.ts), or why there is none
 *   DONE <id> <stat...> [<copy> <kept>]     done; for MOVE and RESOLVE the stat of the path as it is now; for
 *                                           RESOLVE of a conflict, where the loser was kept and
 *                                           which version stayed under the name; for DELETE what was
 *                                           removed; for PURGE and MARK, NO_STAT or what was removed
 *   DONE <id> <stat...> <birth>             the answer to STAT
 *   DONE <id> <stat...> <sha256>            the answer to HASH: 64 lower-case hex digits, and the stat
 *                                           of what was hashed (a file's fstat, unchanged from before
 *                                           the first read to after the last; a symlink's lstat)
 *   FAIL <id> <code> <message>              not done; code is one of HelperFailure. STAT and HASH of
 *                                           nothing: `missing`; HASH of a directory or a special
 *                                           file: `error`; of a file that changed while it was read:
 *                                           `changed`
 * Which DONE answers a request is known from the request's kind (decodeHelperReply's `kind`).
 *
 * `<stat...>` is five arguments: type ino size mtimeMs mode (mode in octal).
 * `<birth>` is the birth time in milliseconds (a positive decimal number, as
 * the file system gives it), or `-` where the file system keeps none.
 * `<pairId>` is 8 to 64 lower-case hex digits (PAIR_ID_PATTERN).
 *
 * Paths: every path in a frame passes the path guard (paths.ts), and none
 * may name psync's own entries (`.psync` at the root and below it, any
 * component holding `.psync.ignore`: patterns.ts isPsyncInternal), whatever
 * the entry's type; a frame that does is refused (SafetyError). The one
 * exception is the `<dir>` of RESOLVE and PURGE, which is by design a
 * `.psync/replaced/<run>` directory and matches nothing else.
 * A request that cannot be decoded is never acted on: the helper answers it
 * `FAIL <id> unsafe` when its id can be read.
 */

import { ProtocolError, SafetyError } from './errors.js';
import type { Frame } from './frame.js';
import { guardPath } from './paths.js';
import { isPsyncInternal } from './patterns.js';
import type { Action, EntryType, Stat } from './types.js';

export const PROTOCOL_VERSION = 4;
/** How often a filter proves it is alive. */
export const HEARTBEAT_INTERVAL_MS = 2_000;
/** A filter silent for this long is taken as lost. */
export const HEARTBEAT_TIMEOUT_MS = 15_000;

/** `side` is a filter and a helper in one process (src/side.ts): what the brain starts. */
export type Role = 'filter' | 'helper' | 'side';

export type HelperFailure = 'changed' | 'missing' | 'exists' | 'notempty' | 'unsafe' | 'error';
const HELPER_FAILURES: readonly HelperFailure[] = ['changed', 'missing', 'exists', 'notempty', 'unsafe', 'error'];

const ENTRY_TYPES: readonly EntryType[] = ['file', 'dir', 'symlink', 'other'];

export const NO_STAT: Stat = { type: 'other', ino: 0, size: 0, mtimeMs: 0, mode: 0 };

export function encodeStat(stat: Stat): string[] {
  return [stat.type, String(stat.ino), String(stat.size), String(stat.mtimeMs), stat.mode.toString(8)];
}

export function decodeStat(args: readonly string[], at: number): Stat {
  const [type, ino, size, mtimeMs, mode] = args.slice(at, at + 5);
  if (type === undefined || !ENTRY_TYPES.includes(type as EntryType)) throw new ProtocolError(`bad entry type ${JSON.stringify(type)}`);
  const number = (text: string | undefined, what: string): number => {
    const value = Number(text);
    if (text === undefined || text === '' || !Number.isFinite(value) || value < 0) throw new ProtocolError(`bad ${what} ${JSON.stringify(text)}`);
    return value;
  };
  if (mode === undefined || !/^[0-7]{1,6}$/.test(mode)) throw new ProtocolError(`bad mode ${JSON.stringify(mode)}`);
  return {
    type: type as EntryType,
    ino: number(ino, 'inode'),
    size: number(size, 'size'),
    mtimeMs: number(mtimeMs, 'mtime'),
    mode: Number.parseInt(mode, 8),
  };
}

/**
 * The path guard, and no psync-internal name: a path from a frame that names
 * `.psync` or anything below it, or a `.psync.ignore` scratch name, is
 * refused whatever the entry is (a file, a directory, a symlink).
 */
export function guardSyncedPath(path: string): string {
  guardPath(path);
  if (isPsyncInternal(path)) throw new SafetyError(`refusing psync's own name ${JSON.stringify(path)}`);
  return path;
}

function expectArgs(frame: Frame, count: number): void {
  if (frame.args.length !== count) {
    throw new ProtocolError(`${frame.verb} takes ${count} arguments, got ${frame.args.length}`);
  }
}

/** A birth time as one argument: milliseconds, or `-` where the file system keeps none (0 or less reads as none). */
export function encodeBirth(birthMs: number | undefined): string {
  return birthMs === undefined || !(birthMs > 0) ? '-' : String(birthMs);
}

const BIRTH_PATTERN = /^(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,20})?$/;

/** `-` is undefined; anything but a positive finite decimal number is a ProtocolError. */
export function decodeBirth(text: string | undefined): number | undefined {
  if (text === '-') return undefined;
  const value = Number(text);
  if (text === undefined || !BIRTH_PATTERN.test(text) || !Number.isFinite(value) || value <= 0) {
    throw new ProtocolError(`bad birth time ${JSON.stringify(text)}`);
  }
  return value;
}

const withBirth = (stat: Stat, birthMs: number | undefined): Stat => (birthMs === undefined ? stat : { ...stat, birthMs });

/** A pair's id: what MARK writes into a root's `.psync/id` and READY reports back. */
export const PAIR_ID_PATTERN = /^[0-9a-f]{8,64}$/;
export const isPairId = (text: string): boolean => PAIR_ID_PATTERN.test(text);

/** `.psync/id` is read (and written) whole, up to this size; a bigger one is not psync's. */
export const MARKER_FILE_MAX_BYTES = 64 * 1024;
/** The marker's name inside `.psync`. */
export const MARKER_FILE_NAME = 'id';

/**
 * The pair ids in the text of a `.psync/id`: one per line (surrounding
 * blanks ignored), in file order, each once; any other line is ignored.
 */
export function parsePairIds(text: string): string[] {
  const ids = new Set<string>();
  for (const line of text.split('\n')) {
    const id = line.trim();
    if (isPairId(id)) ids.add(id);
  }
  return [...ids];
}

/** One entry of a filter's start-up scan (ENTRY): `stat.birthMs` is set where the file system keeps it. */
export interface ScanEntry {
  readonly path: string;
  readonly stat: Stat;
}

export function encodeEntry(entry: ScanEntry): { verb: 'ENTRY'; args: string[] } {
  return { verb: 'ENTRY', args: [entry.path, ...encodeStat(entry.stat), encodeBirth(entry.stat.birthMs)] };
}

/** Decode an ENTRY frame; its path goes through the path guard and must not be psync's own, like an action's. */
export function decodeEntry(frame: Frame): ScanEntry {
  if (frame.verb !== 'ENTRY') throw new ProtocolError(`expected ENTRY, got ${frame.verb}`);
  expectArgs(frame, 7);
  const path = guardSyncedPath(frame.args[0]!);
  return { path, stat: withBirth(decodeStat(frame.args, 1), decodeBirth(frame.args[6])) };
}

/** A directory the filter left out (`why`), or, with `why` empty, took back in. */
export function encodeSkipped(path: string, why: string): { verb: 'SKIPPED'; args: string[] } {
  return { verb: 'SKIPPED', args: [path, why] };
}

export function decodeSkipped(frame: Frame): { path: string; why: string } {
  if (frame.verb !== 'SKIPPED') throw new ProtocolError(`expected SKIPPED, got ${frame.verb}`);
  expectArgs(frame, 2);
  return { path: guardSyncedPath(frame.args[0]!), why: frame.args[1]! };
}

export function encodeLeftover(leftover: { run: string; path: string }): { verb: 'LEFTOVER'; args: string[] } {
  return { verb: 'LEFTOVER', args: [leftover.run, leftover.path] };
}

/** Decode a LEFTOVER frame: a run directory of REPLACED_DIR's form, and a synced path. */
export function decodeLeftover(frame: Frame): { run: string; path: string } {
  if (frame.verb !== 'LEFTOVER') throw new ProtocolError(`expected LEFTOVER, got ${frame.verb}`);
  expectArgs(frame, 2);
  return { run: decodeReplacedDir(frame.args[0]), path: guardSyncedPath(frame.args[1]!) };
}

/** What READY says: how many entries the filter indexed, and the pair ids of its root's marker (undefined: no `.psync/id`). */
export interface ReadyReport {
  readonly entries: number;
  readonly markers: string[] | undefined;
}

export function encodeReady(ready: ReadyReport): { verb: 'READY'; args: string[] } {
  return { verb: 'READY', args: [String(ready.entries), ready.markers === undefined ? '-' : ready.markers.join(',')] };
}

/**
 * Decode READY strictly: a count without sign or leading zero, and markers
 * that are `-`, empty, or distinct pair ids joined by commas. Anything else
 * is a ProtocolError (a forged READY must not pass for "no marker").
 */
export function decodeReady(frame: Frame): ReadyReport {
  if (frame.verb !== 'READY') throw new ProtocolError(`expected READY, got ${frame.verb}`);
  expectArgs(frame, 2);
  const [count, markers] = frame.args as [string, string];
  if (!/^(?:0|[1-9][0-9]{0,15})$/.test(count) || !Number.isSafeInteger(Number(count))) {
    throw new ProtocolError(`bad READY entry count ${JSON.stringify(count)}`);
  }
  if (markers === '-') return { entries: Number(count), markers: undefined };
  const ids = markers === '' ? [] : markers.split(',');
  for (const id of ids) if (!isPairId(id)) throw new ProtocolError(`bad pair id ${JSON.stringify(id)} in READY`);
  if (new Set(ids).size !== ids.length) throw new ProtocolError('a pair id repeated in READY');
  return { entries: Number(count), markers: ids };
}

export function encodeAction(action: Action): { verb: string; args: string[] } {
  switch (action.kind) {
    case 'rsync':
      return { verb: 'RSYNC', args: [action.path, ...encodeStat(action.stat), ...(action.prev === undefined ? [] : encodeStat(action.prev))] };
    case 'move':
      return { verb: 'MOVE', args: [action.from, action.to, ...encodeStat(action.stat), ...(action.replaces === undefined ? [] : encodeStat(action.replaces))] };
    case 'delete':
      return { verb: 'DELETE', args: [action.path, ...encodeStat(action.stat)] };
  }
}

/** Decode a filter's action frame; every path goes through the path guard and must not be psync's own. */
export function decodeAction(frame: Frame): Action {
  switch (frame.verb) {
    case 'RSYNC': {
      if (frame.args.length !== 6 && frame.args.length !== 11) throw new ProtocolError(`RSYNC takes 6 or 11 arguments, got ${frame.args.length}`);
      const path = guardSyncedPath(frame.args[0]!);
      const stat = decodeStat(frame.args, 1);
      return frame.args.length === 6 ? { kind: 'rsync', path, stat } : { kind: 'rsync', path, stat, prev: decodeStat(frame.args, 6) };
    }
    case 'MOVE': {
      if (frame.args.length !== 7 && frame.args.length !== 12) throw new ProtocolError(`MOVE takes 7 or 12 arguments, got ${frame.args.length}`);
      const from = guardSyncedPath(frame.args[0]!);
      const to = guardSyncedPath(frame.args[1]!);
      if (from === to) throw new ProtocolError(`MOVE onto itself: ${JSON.stringify(from)}`);
      const stat = decodeStat(frame.args, 2);
      return frame.args.length === 7 ? { kind: 'move', from, to, stat } : { kind: 'move', from, to, stat, replaces: decodeStat(frame.args, 7) };
    }
    case 'DELETE':
      expectArgs(frame, 6);
      return { kind: 'delete', path: guardSyncedPath(frame.args[0]!), stat: decodeStat(frame.args, 1) };
    default:
      throw new ProtocolError(`unknown action ${frame.verb}`);
  }
}

export const isActionVerb = (verb: string): boolean => verb === 'RSYNC' || verb === 'MOVE' || verb === 'DELETE';

/** What the brain sends a side's filter to bound its queue (see the header); the side routes them to its filter. */
export type FlowControlVerb = 'PAUSE' | 'RESUME';
export const isFlowControlVerb = (verb: string): verb is FlowControlVerb => verb === 'PAUSE' || verb === 'RESUME';

export type HelperRequest =
  | { readonly id: number; readonly kind: 'move'; readonly from: string; readonly to: string; readonly expect: Stat; readonly replaces?: Stat }
  | { readonly id: number; readonly kind: 'delete'; readonly path: string; readonly expect: Stat }
  | { readonly id: number; readonly kind: 'resolve'; readonly dir: string; readonly path: string; readonly expected: readonly Stat[] }
  | { readonly id: number; readonly kind: 'purge'; readonly dir: string }
  | { readonly id: number; readonly kind: 'stat'; readonly path: string }
  | { readonly id: number; readonly kind: 'untemp'; readonly path: string }
  | { readonly id: number; readonly kind: 'hash'; readonly path: string }
  | { readonly id: number; readonly kind: 'mark'; readonly pairId: string };

export type HelperRequestKind = HelperRequest['kind'];

/** How a RESOLVE conflict ended: where the losing version was kept, and which version kept the name. */
export interface ConflictOutcome {
  readonly copy: string;
  readonly kept: 'written' | 'replaced';
}

/**
 * A request done. `stat` is what the path holds now (see the header for each
 * request); for STAT it carries `birthMs` where the file system keeps one.
 * `conflict` comes only with MOVE and RESOLVE, `hash` (SHA-256, lower-case
 * hex) only with HASH.
 */
export interface HelperDone {
  readonly id: number;
  readonly ok: true;
  readonly stat: Stat;
  readonly conflict?: ConflictOutcome;
  readonly hash?: string;
}

export interface HelperFailed {
  readonly id: number;
  readonly ok: false;
  readonly code: HelperFailure;
  readonly message: string;
}

export type HelperReply = HelperDone | HelperFailed;

/** The reply to a request of kind K: a HASH done always carries its hash. */
export type HelperReplyTo<K extends HelperRequestKind> = (K extends 'hash' ? HelperDone & { readonly hash: string } : HelperDone) | HelperFailed;

export function encodeHelperRequest(request: HelperRequest): { verb: string; args: string[] } {
  const id = String(request.id);
  switch (request.kind) {
    case 'move':
      return {
        verb: 'MOVE',
        args: [id, request.from, request.to, ...encodeStat(request.expect), ...(request.replaces === undefined ? [] : encodeStat(request.replaces))],
      };
    case 'delete':
      return { verb: 'DELETE', args: [id, request.path, ...encodeStat(request.expect)] };
    case 'resolve':
      return { verb: 'RESOLVE', args: [id, request.dir, request.path, String(request.expected.length), ...request.expected.flatMap(encodeStat)] };
    case 'purge':
      return { verb: 'PURGE', args: [id, request.dir] };
    case 'stat':
      return { verb: 'STAT', args: [id, request.path] };
    case 'untemp':
      return { verb: 'UNTEMP', args: [id, request.path] };
    case 'hash':
      return { verb: 'HASH', args: [id, request.path] };
    case 'mark':
      return { verb: 'MARK', args: [id, request.pairId] };
  }
}

/** Where an rsync run keeps what it replaced: `.psync/replaced/<run>`, never anything else. */
export const REPLACED_DIR = '.psync/replaced';
/** A run's name under REPLACED_DIR. */
export const RUN_NAME_PATTERN = /^[A-Za-z0-9-]{1,64}$/;
const REPLACED_DIR_PATTERN = /^\.psync\/replaced\/[A-Za-z0-9-]{1,64}$/;

function decodeReplacedDir(text: string | undefined): string {
  if (text === undefined || !REPLACED_DIR_PATTERN.test(text)) throw new ProtocolError(`bad replaced-files directory ${JSON.stringify(text)}`);
  return text;
}

/** At most this many expected versions in one RESOLVE (the source's previous one and the last synced one). */
const MAX_EXPECTED = 4;

function decodeId(text: string | undefined): number {
  if (text === undefined || !/^[0-9]{1,15}$/.test(text)) throw new ProtocolError(`bad request id ${JSON.stringify(text)}`);
  return Number(text);
}

/**
 * Decode a brain's request to a helper. Its paths pass the path guard and
 * must not be psync's own (guardSyncedPath), except the `<dir>` of RESOLVE
 * and PURGE, which must be exactly a `.psync/replaced/<run>` directory.
 */
export function decodeHelperRequest(frame: Frame): HelperRequest {
  if (frame.verb === 'MOVE') {
    if (frame.args.length !== 8 && frame.args.length !== 13) throw new ProtocolError(`MOVE takes 8 or 13 arguments, got ${frame.args.length}`);
    const move = {
      id: decodeId(frame.args[0]),
      kind: 'move' as const,
      from: guardSyncedPath(frame.args[1]!),
      to: guardSyncedPath(frame.args[2]!),
      expect: decodeStat(frame.args, 3),
    };
    return frame.args.length === 8 ? move : { ...move, replaces: decodeStat(frame.args, 8) };
  }
  if (frame.verb === 'DELETE') {
    expectArgs(frame, 7);
    return { id: decodeId(frame.args[0]), kind: 'delete', path: guardSyncedPath(frame.args[1]!), expect: decodeStat(frame.args, 2) };
  }
  if (frame.verb === 'RESOLVE') {
    const count = Number(frame.args[3]);
    if (!Number.isInteger(count) || count < 0 || count > MAX_EXPECTED || frame.args[3] !== String(count)) {
      throw new ProtocolError(`bad RESOLVE count ${JSON.stringify(frame.args[3])}`);
    }
    expectArgs(frame, 4 + 5 * count);
    return {
      id: decodeId(frame.args[0]),
      kind: 'resolve',
      dir: decodeReplacedDir(frame.args[1]),
      path: guardSyncedPath(frame.args[2]!),
      expected: Array.from({ length: count }, (_, i) => decodeStat(frame.args, 4 + 5 * i)),
    };
  }
  if (frame.verb === 'PURGE') {
    expectArgs(frame, 2);
    return { id: decodeId(frame.args[0]), kind: 'purge', dir: decodeReplacedDir(frame.args[1]) };
  }
  if (frame.verb === 'STAT' || frame.verb === 'HASH' || frame.verb === 'UNTEMP') {
    expectArgs(frame, 2);
    const kind = frame.verb === 'STAT' ? 'stat' : frame.verb === 'HASH' ? 'hash' : 'untemp';
    return { id: decodeId(frame.args[0]), kind, path: guardSyncedPath(frame.args[1]!) };
  }
  if (frame.verb === 'MARK') {
    expectArgs(frame, 2);
    const pairId = frame.args[1]!;
    if (!isPairId(pairId)) throw new ProtocolError(`bad pair id ${JSON.stringify(pairId)}`);
    return { id: decodeId(frame.args[0]), kind: 'mark', pairId };
  }
  throw new ProtocolError(`unknown helper request ${frame.verb}`);
}

/** The verbs of helper requests (decodeHelperRequest): a refused one is answered by its id. */
export const isHelperRequestVerb = (verb: string): boolean =>
  ['MOVE', 'DELETE', 'RESOLVE', 'PURGE', 'STAT', 'HASH', 'MARK', 'UNTEMP'].includes(verb);

/**
 * Encode a reply. `kind` is the request's: a STAT done carries the birth time
 * (`<birth>`), a HASH done its hash; without it only the common forms are
 * written.
 */
export function encodeHelperReply(reply: HelperReply, kind?: HelperRequestKind): { verb: string; args: string[] } {
  if (!reply.ok) return { verb: 'FAIL', args: [String(reply.id), reply.code, reply.message] };
  const extra =
    kind === 'stat'
      ? [encodeBirth(reply.stat.birthMs)]
      : reply.hash !== undefined
        ? [reply.hash]
        : reply.conflict === undefined
          ? []
          : [reply.conflict.copy, reply.conflict.kept];
  return { verb: 'DONE', args: [String(reply.id), ...encodeStat(reply.stat), ...extra] };
}

const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** How many arguments a DONE takes for each kind of request. */
const DONE_ARGS: Readonly<Record<HelperRequestKind, readonly number[]>> = {
  move: [6, 8],
  resolve: [6, 8],
  delete: [6],
  purge: [6],
  untemp: [6],
  mark: [6],
  stat: [7],
  hash: [7],
};

/**
 * Decode a helper's reply. With `kind` (the kind of the request its id
 * names), a DONE must have exactly that request's form: a HASH done without
 * a hash, or a DELETE done with a conflict, is a ProtocolError. Without it,
 * any well-formed DONE is read (a 7-argument one as a hash when it is 64 hex
 * digits, else as a birth time).
 */
export function decodeHelperReply<K extends HelperRequestKind>(frame: Frame, kind?: K): HelperReplyTo<K>;
export function decodeHelperReply(frame: Frame, kind?: HelperRequestKind): HelperReply {
  if (frame.verb === 'DONE') {
    const allowed = kind === undefined ? [6, 7, 8] : DONE_ARGS[kind];
    if (!allowed.includes(frame.args.length)) {
      throw new ProtocolError(`DONE${kind === undefined ? '' : ` of ${kind.toUpperCase()}`} takes ${allowed.join(' or ')} arguments, got ${frame.args.length}`);
    }
    const done = { id: decodeId(frame.args[0]), ok: true as const, stat: decodeStat(frame.args, 1) };
    if (frame.args.length === 6) return done;
    if (frame.args.length === 7) {
      const extra = frame.args[6]!;
      if (kind === 'hash' || (kind === undefined && SHA256_PATTERN.test(extra))) {
        if (!SHA256_PATTERN.test(extra)) throw new ProtocolError(`bad hash ${JSON.stringify(extra)}`);
        return { ...done, hash: extra };
      }
      return { ...done, stat: withBirth(done.stat, decodeBirth(extra)) };
    }
    const kept = frame.args[7];
    if (kept !== 'written' && kept !== 'replaced') throw new ProtocolError(`bad conflict outcome ${JSON.stringify(kept)}`);
    return { ...done, conflict: { copy: guardSyncedPath(frame.args[6]!), kept } };
  }
  if (frame.verb === 'FAIL') {
    expectArgs(frame, 3);
    const code = frame.args[1] as HelperFailure;
    if (!HELPER_FAILURES.includes(code)) throw new ProtocolError(`bad helper failure code ${JSON.stringify(code)}`);
    return { id: decodeId(frame.args[0]), ok: false, code, message: frame.args[2]! };
  }
  throw new ProtocolError(`unknown helper reply ${frame.verb}`);
}

/** Settings the brain sends a filter in its CONFIG frame. */
export interface FilterConfig {
  readonly root: string;
  readonly excludes: readonly string[];
  readonly tempfiles: readonly string[];
  readonly settleMs: number;
  readonly maxDelayMs: number;
  /** Re-read the whole tree against the index this often (0: never); catches what inotify missed. */
  readonly rescanMs: number;
  /** Hold `<root>/.psync/lock` so no second psync watches the same root (off for a dry run, which writes nothing). */
  readonly lock: boolean;
  /**
   * The psync that holds the lock, `<pid>@<host>` of the brain: what a
   * second psync's refusal names (the process to stop), beside the side
   * process's own pid, which the lock's staleness check uses.
   */
  readonly lockOwner?: string;
  readonly debug: number;
  /**
   * Send the start-up scan as ENTRY frames before READY (the archive's
   * three-way reconcile needs it). Absent or false: no ENTRY frames.
   */
  readonly reportScan?: boolean;
}

/** The kinds an ERROR before HELLO may carry after its message (see the header). */
export const START_ERROR_KIND = { rootUnusable: 'root', rootInUse: 'locked' } as const;

/** Settings the brain sends a helper in its CONFIG frame. */
export interface HelperConfig {
  readonly root: string;
  readonly force: boolean;
  readonly dryRun: boolean;
  /** Start the rsync relay (relay.ts) and announce it after HELLO; for a side reached over SSH. */
  readonly relay: boolean;
}
