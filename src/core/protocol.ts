/**
 * The psync wire protocol between the brain and the process it starts on
 * each side (src/side.ts: that side's filter and helper on one channel).
 * Every message is one frame (see frame.ts); every stream numbers its own
 * frames. The side passes the filter's and the helper's frames on in one
 * stream, and routes what the brain sends: PAUSE and RESUME to its filter,
 * every other frame after CONFIG to its helper.
 *
 * Start of every channel, protocol version 3 (PROTOCOL_VERSION):
 *   brain -> side    CONFIG <json>          the side's settings (SideConfig: a FilterConfig and a HelperConfig)
 *   side -> brain    HELLO <version> <role> <pid>
 *   A child that cannot start (missing root, bad config) sends
 *   `ERROR <message>` and exits non-zero.
 *
 * Filter -> brain, after HELLO:
 *   READY <entries>                         the tree is indexed and watched
 *   RSYNC <path> <stat...> [<prev...>]      a created or changed entry, settled; prev is what
 *                                           the path held before (absent for a new entry)
 *   MOVE <from> <to> <stat...> [<replaces...>]
 *                                           a rename inside the tree (same inode); replaces is the
 *                                           file it replaced at `to`, if any
 *   DELETE <path> <stat...>                 an entry confirmed gone; stat is what it was
 *   HEARTBEAT <n>                           every HEARTBEAT_INTERVAL_MS, so silence means trouble
 *   WARN <message>                          something the user should see; the filter goes on
 *   ERROR <message>                         the filter stops (its root vanished, the watcher died)
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
 * Helper -> brain:
 *   RELAY <port> <token>                    right after HELLO when CONFIG asked for the rsync relay
 *   NORELAY <reason>                        (relay.ts), or why there is none
 *   DONE <id> <stat...> [<copy> <kept>]     done; for MOVE and RESOLVE the stat of the path as it is now; for
 *                                           RESOLVE of a conflict, where the loser was kept and
 *                                           which version stayed under the name
 *   FAIL <id> <code> <message>              not done; code is one of HelperFailure
 *
 * `<stat...>` is five arguments: type ino size mtimeMs mode (mode in octal).
 *
 * Paths: every path in a frame passes the path guard (paths.ts), and none
 * may name psync's own entries (`.psync` at the root and below it, any
 * component holding `.psync.ignore`: patterns.ts isPsyncInternal), whatever
 * the entry's type; a frame that does is refused (SafetyError). The one
 * exception is the `<dir>` of RESOLVE and PURGE, which is by design a
 * `.psync/replaced/<run>` directory and matches nothing else.
 */

import { ProtocolError, SafetyError } from './errors.js';
import type { Frame } from './frame.js';
import { guardPath } from './paths.js';
import { isPsyncInternal } from './patterns.js';
import type { Action, EntryType, Stat } from './types.js';

export const PROTOCOL_VERSION = 3;
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
  | { readonly id: number; readonly kind: 'purge'; readonly dir: string };

/** How a RESOLVE conflict ended: where the losing version was kept, and which version kept the name. */
export interface ConflictOutcome {
  readonly copy: string;
  readonly kept: 'written' | 'replaced';
}

export type HelperReply =
  | { readonly id: number; readonly ok: true; readonly stat: Stat; readonly conflict?: ConflictOutcome }
  | { readonly id: number; readonly ok: false; readonly code: HelperFailure; readonly message: string };

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
  }
}

/** Where an rsync run keeps what it replaced: `.psync/replaced/<run>`, never anything else. */
export const REPLACED_DIR = '.psync/replaced';
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
  throw new ProtocolError(`unknown helper request ${frame.verb}`);
}

export function encodeHelperReply(reply: HelperReply): { verb: string; args: string[] } {
  if (!reply.ok) return { verb: 'FAIL', args: [String(reply.id), reply.code, reply.message] };
  const conflict = reply.conflict === undefined ? [] : [reply.conflict.copy, reply.conflict.kept];
  return { verb: 'DONE', args: [String(reply.id), ...encodeStat(reply.stat), ...conflict] };
}

export function decodeHelperReply(frame: Frame): HelperReply {
  if (frame.verb === 'DONE') {
    if (frame.args.length !== 6 && frame.args.length !== 8) throw new ProtocolError(`DONE takes 6 or 8 arguments, got ${frame.args.length}`);
    const done = { id: decodeId(frame.args[0]), ok: true as const, stat: decodeStat(frame.args, 1) };
    if (frame.args.length === 6) return done;
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
  readonly debug: number;
}

/** Settings the brain sends a helper in its CONFIG frame. */
export interface HelperConfig {
  readonly root: string;
  readonly force: boolean;
  readonly dryRun: boolean;
  /** Start the rsync relay (relay.ts) and announce it after HELLO; for a side reached over SSH. */
  readonly relay: boolean;
}
