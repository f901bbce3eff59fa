/**
 * The helper: the long-lived process on a target side that moves and
 * deletes entries for the brain, with the rename dance that keeps the
 * target's own filter from reporting them back:
 *
 *     MOVE:   from -> <from>.<id>.psync.ignore -> to
 *     DELETE: path -> <path>.<id>.psync.ignore -> unlink / rmdir
 *
 * The scratch name sits in the source's own directory (a rename never
 * crosses a directory or a file system there), and every path with a
 * `.psync.ignore` component is dropped by the filter.
 *
 * Protocol (src/core/protocol.ts): CONFIG <json HelperConfig> in, HELLO out
 * (then RELAY or NORELAY when CONFIG asked for the rsync relay), then one
 * DONE or FAIL per MOVE / DELETE / RESOLVE / PURGE / STAT / HASH / MARK
 * request, in request order (one at a time: a HASH of a big file holds the
 * requests after it). A frame that cannot be trusted is never acted on: a
 * request with a readable id gets `FAIL <id> unsafe`, anything else is
 * logged on stderr and skipped.
 *
 * STAT and HASH only read: STAT is an lstat, HASH reads a file through a
 * descriptor opened O_NOFOLLOW | O_NONBLOCK (the stat it answers is that
 * descriptor's) or a symlink's target (readlinkat), never what it points to.
 * MARK writes the root's pair marker `.psync/id` (psyncDir.ts checks
 * `.psync` itself): a new version is written to an O_EXCL temp file in
 * `.psync` and renamed over it, so a reader never sees half of it.
 *
 * Invariants:
 * - The root itself is never renamed or removed (guardPath refuses "").
 * - Every path is reached through the file layer (src/fs): held directories
 *   opened component by component from the root, never through a symlink.
 *   A check and the act that follows it use the same held directory, so a
 *   directory swapped for a symlink in between changes nothing outside the
 *   tree; an ancestor that is a symlink is answered `unsafe`.
 * - psync's own names (`.psync`, `*.psync.ignore*`) are never acted on for
 *   a request: decodeHelperRequest refuses them (guardSyncedPath), and the
 *   request is answered `unsafe`.
 * - Check, then act: an entry that differs from what the brain expects is
 *   left alone (`changed`), so an edit made on the target is never lost.
 *   Renames onto a name that should be free are RENAME_NOREPLACE.
 * - Nothing is left under a `.psync.ignore` name: an interrupted dance puts
 *   the entry back under its own name before answering FAIL.
 * - Names are bytes: paths go to the file layer as core paths (paths.ts).
 *
 * RACE: a user who moves a held directory out of the tree between its open
 * and the act makes the act happen in that directory where it now is; it
 * held only tree entries, and nothing else outside the root is reached.
 */

import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, constants, fsyncSync, read, readSync, writeSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { resolve } from 'node:path';
import { ConfigError, RootUnusableError, SafetyError } from '../src/core/errors.js';
import { FrameReceiver, FrameWriter, type Frame, type Received } from '../src/core/frame.js';
import { IGNORE_MARK, isRsyncTempOf, PSYNC_DIR } from '../src/core/patterns.js';
import { baseName, bytesToPath, isSameOrUnder, joinPath, parentOf, pathToBytes } from '../src/core/paths.js';
import { conflictName, judgeReplaced } from '../src/core/conflict.js';
import { startRelay } from './rsyncRelay.js';
import { sameStat } from '../src/core/version.js';
import {
  decodeHelperRequest,
  isHelperRequestVerb,
  isPairId,
  MARKER_FILE_MAX_BYTES,
  MARKER_FILE_NAME,
  NO_STAT,
  parsePairIds,
  type ConflictOutcome,
  encodeHelperReply,
  PROTOCOL_VERSION,
  START_ERROR_KIND,
  type HelperConfig,
  type HelperFailure,
  type HelperReply,
  type HelperRequest,
} from '../src/core/protocol.js';
import type { Stat } from '../src/core/types.js';
import {
  coreStat,
  descend,
  Directory,
  removeTree,
  requireFileLayer,
  sameInode,
  statFd,
  Tree,
  UnsafePathError,
  using,
  type EntryStat,
} from '../src/fs/directory.js';
import { openPsyncDir } from '../src/fs/psyncDir.js';

export interface HelperOptions {
  /** Where diagnostics go (never stdout, which carries frames); stderr by default. */
  readonly log?: (line: string) => void;
}

/** Exit codes of runHelper. */
export const HELPER_EXIT = { ok: 0, failed: 1, badConfig: 2 } as const;

/** A refusal or failure that becomes `FAIL <id> <code> <message>`. */
class Refusal extends Error {
  constructor(
    readonly code: HelperFailure,
    message: string,
  ) {
    super(message);
  }
}

const show = (path: string): string => JSON.stringify(path);

// ---------------------------------------------------------------------------
// The channel loop

/**
 * Serve one brain on `input` / `output` until `input` ends. Resolves with the
 * process exit code: 0 after a clean end, 2 when the CONFIG was missing or
 * bad (an `ERROR` frame says why), 1 when the channel broke.
 */
export async function runHelper(input: Readable, output: Writable, options: HelperOptions = {}): Promise<number> {
  const log = options.log ?? ((line: string) => void process.stderr.write(`psync helper: ${line}\n`));
  const replies = new ReplyChannel(output);
  const receiver = new FrameReceiver();
  let session: Session | undefined;
  try {
    for await (const chunk of input) {
      for (const received of receiver.push(toLatin1(chunk))) {
        if (session !== undefined) {
          await session.handle(received);
          continue;
        }
        const started = await startSession(received, replies, log);
        if (typeof started === 'number') return started;
        session = started;
      }
    }
  } catch (error) {
    log(`stopping: ${errorMessage(error)}`);
    return HELPER_EXIT.failed;
  }
  if (session === undefined) {
    log('input ended before CONFIG');
    return HELPER_EXIT.badConfig;
  }
  return HELPER_EXIT.ok;
}

/** Bytes as one char each, as FrameReceiver wants them. */
const toLatin1 = (chunk: unknown): string =>
  typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('latin1');

const errorMessage = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** Numbered frames out, honouring back pressure; a broken output ends the helper. */
class ReplyChannel {
  private readonly writer = new FrameWriter();
  private broken: Error | undefined;

  constructor(private readonly output: Writable) {
    output.on('error', (error: Error) => {
      this.broken = error;
    });
  }

  async send(verb: string, args: readonly string[]): Promise<void> {
    if (this.broken !== undefined) throw this.broken;
    if (!this.output.write(this.writer.encode(verb, args))) await once(this.output, 'drain');
  }
}

/** Read CONFIG, check the root, answer HELLO; or answer ERROR and return the exit code. */
async function startSession(received: Received, replies: ReplyChannel, log: (line: string) => void): Promise<Session | number> {
  try {
    if (!received.ok) throw new ConfigError(`expected CONFIG, got a malformed frame: ${received.error.message}`);
    const config = parseConfig(received.frame);
    try {
      requireFileLayer();
    } catch (error) {
      throw new ConfigError(errorMessage(error));
    }
    const tree = new HelperTree(config, log);
    const root = rootStat(tree);
    if (root?.type !== 'dir') throw new RootUnusableError(`cannot use root ${show(config.root)}: it is not a directory`);
    await replies.send('HELLO', [String(PROTOCOL_VERSION), 'helper', String(process.pid)]);
    if (config.relay) await offerRelay(replies, config.root, log);
    return new Session(tree, replies, log);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    log(error.message);
    await replies.send('ERROR', error instanceof RootUnusableError ? [error.message, START_ERROR_KIND.rootUnusable] : [error.message]);
    return HELPER_EXIT.badConfig;
  }
}

/**
 * Start the rsync relay (rsyncRelay.ts) and tell the brain where it is:
 * `RELAY <port> <token>`, or `NORELAY <reason>` when it cannot listen (the
 * brain then keeps starting rsync through a remote shell).
 */
async function offerRelay(replies: ReplyChannel, root: string, log: (line: string) => void): Promise<void> {
  try {
    const relay = await startRelay(log, root);
    await replies.send('RELAY', [String(relay.port), relay.token]);
  } catch (error) {
    await replies.send('NORELAY', [errorMessage(error)]);
  }
}

/** The root's own stat; a root that cannot be opened is a RootUnusableError. */
function rootStat(tree: HelperTree): EntryStat | undefined {
  try {
    return tree.fs.lstat('');
  } catch (error) {
    throw new RootUnusableError(`cannot use root ${show(tree.config.root)}: ${errorMessage(error)}`);
  }
}

function parseConfig(frame: Frame): HelperConfig {
  if (frame.verb !== 'CONFIG' || frame.args.length !== 1) throw new ConfigError(`expected CONFIG <json>, got ${frame.verb}`);
  let value: unknown;
  try {
    value = JSON.parse(frame.args[0]!);
  } catch (error) {
    throw new ConfigError(`CONFIG is not JSON: ${errorMessage(error)}`);
  }
  if (typeof value !== 'object' || value === null) throw new ConfigError('CONFIG is not an object');
  const { root, force, dryRun, relay = false } = value as Record<string, unknown>;
  if (typeof root !== 'string' || root === '') throw new ConfigError(`CONFIG root must be a path, got ${JSON.stringify(root)}`);
  if (typeof force !== 'boolean' || typeof dryRun !== 'boolean' || typeof relay !== 'boolean') {
    throw new ConfigError('CONFIG force, dryRun and relay must be booleans');
  }
  // A relative root is relative to where the helper starts: the remote user's home over SSH,
  // the same place rsync and the filter resolve it from.
  return { root: resolve(root), force, dryRun, relay };
}

class Session {
  constructor(
    private readonly tree: HelperTree,
    private readonly replies: ReplyChannel,
    private readonly log: (line: string) => void,
  ) {}

  async handle(received: Received): Promise<void> {
    if (!received.ok) {
      this.log(`skipping a malformed frame: ${received.error.message}`);
      return;
    }
    const { frame, missed } = received;
    if (missed < 0) {
      this.log(`dropping replayed frame ${frame.seq}`);
      return;
    }
    if (missed > 0) this.log(`${missed} frame(s) lost before frame ${frame.seq}`);
    let request: HelperRequest;
    try {
      request = decodeHelperRequest(frame);
    } catch (error) {
      await this.refuseFrame(frame, errorMessage(error));
      return;
    }
    await this.reply(await perform(this.tree, request), request.kind);
  }

  /** An untrusted request is never acted on; it is answered only when its id is readable. */
  private async refuseFrame(frame: Frame, why: string): Promise<void> {
    const id = frame.args[0];
    if (isHelperRequestVerb(frame.verb) && id !== undefined && /^[0-9]{1,15}$/.test(id)) {
      await this.reply({ id: Number(id), ok: false, code: 'unsafe', message: why });
    } else {
      this.log(`skipping frame ${frame.seq} ${frame.verb}: ${why}`);
    }
  }

  private async reply(reply: HelperReply, kind?: HelperRequest['kind']): Promise<void> {
    // A refusal is not logged here: the brain, which knows what it asked for, says what it means
    // (a DELETE of a path already gone is no problem at all; a refused move is a warning).
    const { verb, args } = encodeHelperReply(reply, kind);
    await this.replies.send(verb, args);
  }
}

async function perform(tree: HelperTree, request: HelperRequest): Promise<HelperReply> {
  try {
    switch (request.kind) {
      case 'move':
        return { id: request.id, ok: true, ...moveEntry(tree, request) };
      case 'delete':
        return { id: request.id, ok: true, stat: deleteEntry(tree, request) };
      case 'resolve':
        return { id: request.id, ok: true, ...resolveReplaced(tree, request) };
      case 'purge':
        return { id: request.id, ok: true, stat: purgeReplaced(tree, request.dir) };
      case 'stat':
        return { id: request.id, ok: true, stat: statEntry(tree, request.path) };
      case 'untemp':
        return { id: request.id, ok: true, stat: removeRsyncTemps(tree, request.path) };
      case 'hash':
        return { id: request.id, ok: true, ...(await hashEntry(tree, request.path)) };
      case 'mark':
        return { id: request.id, ok: true, stat: markRoot(tree, request.pairId) };
    }
  } catch (error) {
    const refusal = toRefusal(error);
    return { id: request.id, ok: false, code: refusal.code, message: refusal.message };
  }
}

/** Any error as a Refusal: the errno says what kind of failure it was. */
function toRefusal(error: unknown): Refusal {
  if (error instanceof Refusal) return error;
  if (error instanceof SafetyError) return new Refusal('unsafe', error.message);
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = errorMessage(error);
  if (code === 'ENOENT') return new Refusal('missing', message);
  if (code === 'ENOTEMPTY') return new Refusal('notempty', message);
  if (code === 'EEXIST') return new Refusal('exists', message);
  return new Refusal('error', message);
}

// ---------------------------------------------------------------------------
// The helper's tree: the file layer (src/fs) plus the dance's names

/** Longest file name (bytes) on the usual Linux file systems. */
const NAME_MAX_BYTES = 255;

class HelperTree {
  readonly fs: Tree;
  private counter = 0;

  constructor(
    readonly config: HelperConfig,
    readonly log: (line: string) => void,
  ) {
    this.fs = new Tree(config.root);
  }

  /**
   * The held parent directory of `path`, which must exist: an ancestor that
   * is a symlink is `unsafe`, one that is missing or not a directory `missing`.
   */
  parentOf(path: string): Directory {
    try {
      return this.fs.openDir(parentOf(path));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new Refusal('missing', `an ancestor of ${show(path)} does not exist or is not a directory`);
      throw error;
    }
  }

  /**
   * The held parent directory of `path`, created (mkdirat, top first) where
   * missing. An ancestor that is not a directory is `exists`.
   */
  makeParentOf(path: string): Directory {
    try {
      return this.fs.makeDir(parentOf(path));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') throw new Refusal('exists', `an ancestor of ${show(path)} is not a directory`);
      throw error;
    }
  }

  /**
   * A free scratch name beside `name` in `dir`: `<name>.<id>.psync.ignore`,
   * cut (in bytes) so the whole stays within NAME_MAX. Free when checked;
   * every rename onto it is RENAME_NOREPLACE, so a name taken meanwhile
   * fails instead of replacing.
   */
  scratchFor(dir: Directory, name: string): string {
    for (;;) {
      this.counter += 1;
      const suffix = Buffer.from(`.${process.pid}-${this.counter}-${randomBytes(3).toString('hex')}${IGNORE_MARK}`);
      const cut = Buffer.from(pathToBytes(name)).subarray(0, NAME_MAX_BYTES - suffix.length);
      const scratch = bytesToPath(Buffer.concat([cut, suffix]));
      if (dir.stat(scratch) === undefined) return scratch;
    }
  }

  /**
   * A name in `dir` for the losing version `loser` of `path` (conflictName):
   * free, or `taken` by that very version already (both sides keep the same
   * loser under the same name, so one may arrive from the other side first).
   */
  conflictNameFor(dir: Directory, path: string, loser: Stat): { name: string; taken: boolean } {
    for (let attempt = 0; ; attempt++) {
      const name = baseName(conflictName(path, loser.mtimeMs, attempt));
      const there = dir.stat(name);
      if (there === undefined) return { name, taken: false };
      if (sameStat(loser, there)) return { name, taken: true };
    }
  }

  /**
   * Keep the losing version `loser`, which stands at `fromName` in
   * `fromDir`, as the conflict copy of `path` in `dir`; returns the copy's
   * path. When the copy is there already (from the other side), the loser is
   * a duplicate of it and goes. Never overwrites (RENAME_NOREPLACE).
   */
  keepConflictCopy(fromDir: Directory, fromName: string, dir: Directory, path: string, loser: EntryStat): string {
    const { name, taken } = this.conflictNameFor(dir, path, loser);
    if (taken) remove(fromDir, setAside(this, fromDir, fromName, loser), false);
    else fromDir.rename(fromName, dir, name, 'noReplace');
    return joinPath(parentOf(path), name);
  }

  /**
   * Runs whose directory of replaced versions does not exist (rsync replaced
   * nothing): their RESOLVEs need one lstat in all, not one per path.
   */
  private readonly emptyRuns = new Set<string>();

  replacedDirGone(dir: string): boolean {
    return this.emptyRuns.has(dir);
  }

  noteReplacedDirGone(dir: string): void {
    this.emptyRuns.add(dir);
  }

  forgetReplacedDir(dir: string): void {
    this.emptyRuns.delete(dir);
  }
}

/**
 * Undo the first step of a dance. Never overwrites (RENAME_NOREPLACE): if
 * something new took the original name meanwhile, the entry stays under the
 * scratch name and the message says where.
 */
function putBack(dir: Directory, scratch: string, original: string): string {
  if (dir.stat(scratch) === undefined) return ''; // the first step never happened
  const where = show(joinPath(dir.path, scratch));
  try {
    dir.rename(scratch, dir, original, 'noReplace');
    return '';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      return `; ${show(joinPath(dir.path, original))} was re-created meanwhile, the old entry is kept as ${where}`;
    }
    return `; could not put it back, it is kept as ${where}: ${errorMessage(error)}`;
  }
}

const isEmptyDir = (dir: Directory, name: string): boolean => using(dir.openDir(name), (held) => held.list().length === 0);

/** Remove `name` of `dir`; a directory only when empty unless `recursive`. Symlinks are unlinked, never followed. */
function remove(dir: Directory, name: string, recursive: boolean): void {
  const stats = dir.stat(name);
  if (stats === undefined) throw new Refusal('missing', `${show(joinPath(dir.path, name))} does not exist`);
  if (stats.type !== 'dir') dir.unlink(name);
  else if (recursive) removeTree(dir, name);
  else dir.rmdir(name);
}

// ---------------------------------------------------------------------------
// Check before act

/** The entry must still be what the brain expects (the inode is not comparable across hosts). */
function checkExpected(path: string, actual: EntryStat, expect: Stat): void {
  if (actual.type !== expect.type) throw new Refusal('changed', `${show(path)} is a ${actual.type} now, expected a ${expect.type}`);
  if (actual.type !== 'file' && actual.type !== 'symlink') return;
  // rsync preserves mtimes to the nanosecond; 1 ms absorbs float rounding.
  if (actual.size !== expect.size || Math.abs(actual.mtimeMs - expect.mtimeMs) >= 1) {
    throw new Refusal(
      'changed',
      `${show(path)} changed since (size ${actual.size}, mtime ${actual.mtimeMs}; expected size ${expect.size}, mtime ${expect.mtimeMs})`,
    );
  }
}

/** Under its scratch name the entry must be the one we checked: else someone swapped it in between. */
function isSameEntry(before: EntryStat, after: EntryStat | undefined): boolean {
  if (after === undefined || !sameInode(before, after)) return false;
  return before.type === 'dir' || (after.size === before.size && after.mtimeMs === before.mtimeMs);
}

/** The entry `name` in the held `dir`, checked against the request's expectation. */
function checkedEntry(dir: Directory, path: string, expect: Stat): EntryStat {
  const stats = dir.stat(baseName(path));
  if (stats === undefined) throw new Refusal('missing', `${show(path)} does not exist`);
  checkExpected(path, stats, expect);
  return stats;
}

/** First step of every dance: rename to a scratch name and make sure it is still the entry we checked. */
function setAside(tree: HelperTree, dir: Directory, name: string, before: EntryStat): string {
  const scratch = tree.scratchFor(dir, name);
  dir.rename(name, dir, scratch, 'noReplace');
  if (!isSameEntry(before, dir.stat(scratch))) {
    const note = putBack(dir, scratch, name);
    throw new Refusal('changed', `${show(joinPath(dir.path, name))} changed while being set aside${note}`);
  }
  return scratch;
}

// ---------------------------------------------------------------------------
// DELETE: path -> scratch -> gone

function deleteEntry(tree: HelperTree, request: Extract<HelperRequest, { kind: 'delete' }>): Stat {
  const { force, dryRun } = tree.config;
  const { path } = request;
  return using(tree.parentOf(path), (dir) => {
    const name = baseName(path);
    const before = checkedEntry(dir, path, request.expect);
    if (before.type === 'dir' && !force && !isEmptyDir(dir, name)) throw new Refusal('notempty', `${show(path)} is a non-empty directory`);
    if (dryRun) return coreStat(before);
    const scratch = setAside(tree, dir, name, before);
    try {
      remove(dir, scratch, force);
    } catch (error) {
      const refusal = toRefusal(error);
      const note = putBack(dir, scratch, name);
      throw new Refusal(refusal.code, `${show(path)} not deleted: ${refusal.message}${note}`);
    }
    return coreStat(before);
  });
}

// ---------------------------------------------------------------------------
// MOVE: from -> scratch -> to

/**
 * Both parents are held from the check to the last rename, so neither can
 * be redirected by a directory swapped for a symlink. What stood at `to` is
 * set aside first (when the source had it there) or kept as a conflict copy
 * (when it was changed here), and the final rename is RENAME_NOREPLACE: an
 * entry created at `to` meanwhile makes the move fail, never vanish.
 */
function moveEntry(tree: HelperTree, request: Extract<HelperRequest, { kind: 'move' }>): { stat: Stat; conflict?: ConflictOutcome } {
  const { from, to } = request;
  if (isSameOrUnder(to, from)) throw new Refusal('unsafe', `cannot move ${show(from)} into itself (${show(to)})`);
  if (isSameOrUnder(from, to)) throw new Refusal('unsafe', `cannot move ${show(from)} onto its own ancestor ${show(to)}`);
  return using(tree.parentOf(from), (fromDir) => {
    const before = checkedEntry(fromDir, from, request.expect);
    if (tree.config.dryRun) {
      checkDestination(tree, to, before);
      return { stat: coreStat(before) };
    }
    return using(tree.makeParentOf(to), (toDir) => moveInto(tree, request, fromDir, before, toDir));
  });
}

/** A dry run's check of `to`, creating nothing. */
function checkDestination(tree: HelperTree, to: string, moving: EntryStat): void {
  let toDir: Directory;
  try {
    toDir = tree.parentOf(to);
  } catch (error) {
    if (error instanceof Refusal && error.code === 'missing') return; // would be created
    throw error;
  }
  using(toDir, (dir) => {
    const existing = dir.stat(baseName(to));
    if (existing !== undefined) checkReplaceable(tree, dir, to, moving, existing);
  });
}

function moveInto(
  tree: HelperTree,
  request: Extract<HelperRequest, { kind: 'move' }>,
  fromDir: Directory,
  before: EntryStat,
  toDir: Directory,
): { stat: Stat; conflict?: ConflictOutcome } {
  const { from, to } = request;
  const fromName = baseName(from);
  const toName = baseName(to);
  const existing = toDir.stat(toName);
  if (existing !== undefined) checkReplaceable(tree, toDir, to, before, existing);

  // A file at `to` that the source never had there was changed on this side: keep it beside.
  let conflict: ConflictOutcome | undefined;
  let replaced: string | undefined;
  if (existing !== undefined && existing.type !== 'dir') {
    const expected = [coreStat(before), ...(request.replaces === undefined ? [] : [request.replaces])];
    if (!expected.some((stat) => sameStat(stat, existing))) {
      conflict = { copy: tree.keepConflictCopy(toDir, toName, toDir, to, existing), kept: 'written' };
    } else {
      replaced = setAside(tree, toDir, toName, existing);
    }
  } else if (existing !== undefined) {
    replaced = setAside(tree, toDir, toName, existing);
  }

  let scratch: string;
  try {
    scratch = setAside(tree, fromDir, fromName, before);
  } catch (error) {
    // `from` vanished or changed after the check: what was set aside at `to` goes back to its name.
    const refusal = toRefusal(error);
    const note = replaced === undefined ? '' : putBack(toDir, replaced, toName);
    throw new Refusal(refusal.code, `${show(from)} not moved: ${refusal.message}${note}`);
  }
  try {
    fromDir.rename(scratch, toDir, toName, 'noReplace');
  } catch (error) {
    const refusal = toRefusal(error);
    const notes = (replaced === undefined ? '' : putBack(toDir, replaced, toName)) + putBack(fromDir, scratch, fromName);
    const code = refusal.code === 'exists' ? 'changed' : refusal.code === 'missing' ? 'error' : refusal.code;
    throw new Refusal(code, `${show(from)} not moved: ${refusal.message}${notes}`);
  }
  const after = toDir.stat(toName);
  if (after === undefined) throw new Refusal('error', `${show(to)} vanished right after the move`);
  if (replaced !== undefined) dropReplaced(tree, toDir, replaced);
  return conflict === undefined ? { stat: coreStat(after) } : { stat: coreStat(after), conflict };
}

/** What may stand at `to`: a file or symlink, or an empty directory (any directory with force). */
function checkReplaceable(tree: HelperTree, dir: Directory, to: string, moving: EntryStat, existing: EntryStat): void {
  if (existing.type !== 'dir') {
    if (moving.type === 'dir') throw new Refusal('exists', `cannot move a directory onto the ${existing.type} ${show(to)}`);
    return;
  }
  if (!tree.config.force && !isEmptyDir(dir, baseName(to))) throw new Refusal('notempty', `${show(to)} is a non-empty directory`);
}

/**
 * Remove what stood at `to` before the move. The move itself is done, so a
 * failure here is logged, not answered with FAIL.
 */
function dropReplaced(tree: HelperTree, dir: Directory, replaced: string): void {
  try {
    remove(dir, replaced, tree.config.force);
  } catch (error) {
    // RACE: something was created inside the replaced directory after our
    // check. Keep it (under the scratch name, never synced) rather than lose it.
    tree.log(`moved, but what it replaced is kept as ${show(joinPath(dir.path, replaced))}: ${errorMessage(error)}`);
  }
}

// ---------------------------------------------------------------------------
// RESOLVE: what rsync replaced, kept in a `.psync/replaced/<run>` directory

/**
 * The held directory of the replaced version of `path` in the run's
 * directory `run` (`.psync/replaced/<run>/<parent of path>`), or undefined
 * when there is none. Every component is opened O_NOFOLLOW: a component
 * that is a symlink (a link rsync replaced and kept) holds no version of
 * anything below it.
 */
function openReplacedParent(tree: HelperTree, run: string, path: string): Directory | undefined {
  const psync = openPsyncDir(tree.fs, false);
  if (psync === undefined) return undefined;
  try {
    return descend(psync, [...run.split('/').slice(1), ...parentOf(path).split('/').filter((part) => part !== '')]);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (error instanceof UnsafePathError || code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

/**
 * Judge the version rsync replaced at `path` (conflict.ts). A conflict keeps
 * both: the loser is renamed to a conflict copy beside the file, and when
 * the replaced version is the newer one it is put back under the name.
 * Whatever is not a conflict stays in the run's directory until PURGE.
 */
function resolveReplaced(tree: HelperTree, request: Extract<HelperRequest, { kind: 'resolve' }>): { stat: Stat; conflict?: ConflictOutcome } {
  const { path, dir: run } = request;
  return using(tree.parentOf(path), (dir) => {
    const name = baseName(path);
    const now = dir.stat(name);
    const written = now === undefined ? undefined : coreStat(now);
    const nothing = { stat: written ?? NO_STAT };
    if (tree.replacedDirGone(run)) return nothing;
    const keptDir = openReplacedParent(tree, run, path);
    if (keptDir === undefined) {
      if (tree.fs.lstat(run) === undefined) tree.noteReplacedDirGone(run);
      return nothing;
    }
    return using(keptDir, (kept) => {
      const old = kept.stat(name);
      if (old === undefined || old.type === 'dir') return nothing;
      const verdict = judgeReplaced(old, written, request.expected, () => sameBytes(kept, name, dir, name));
      if (verdict.kind !== 'conflict') return nothing;
      if (verdict.keep === 'written' || now === undefined) {
        return { ...nothing, conflict: { copy: tree.keepConflictCopy(kept, name, dir, path, old), kept: 'written' as const } };
      }
      // The replaced version is newer: the written one steps aside, the replaced one takes the name back.
      const copy = tree.keepConflictCopy(dir, name, dir, path, now);
      kept.rename(name, dir, name, 'noReplace');
      return { stat: coreStat(old), conflict: { copy, kept: 'replaced' as const } };
    });
  });
}

/** Bytes compared per step by sameBytes. */
const COMPARE_CHUNK_BYTES = 256 * 1024;

/**
 * Do the regular files `a/aName` and `b/bName` hold the same bytes? Each
 * is read through its own descriptor (O_NOFOLLOW: never through a symlink);
 * anything that cannot be read counts as different (a conflict keeps both).
 */
function sameBytes(a: Directory, aName: string, b: Directory, bName: string): boolean {
  let fa: number | undefined;
  let fb: number | undefined;
  try {
    fa = a.openFile(aName, constants.O_RDONLY | constants.O_NONBLOCK);
    fb = b.openFile(bName, constants.O_RDONLY | constants.O_NONBLOCK);
    if (statFd(fa).type !== 'file' || statFd(fb).type !== 'file') return false;
    const [ba, bb] = [Buffer.allocUnsafe(COMPARE_CHUNK_BYTES), Buffer.allocUnsafe(COMPARE_CHUNK_BYTES)];
    for (;;) {
      const na = readFull(fa, ba);
      const nb = readFull(fb, bb);
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
      if (na === 0) return true;
    }
  } catch {
    return false;
  } finally {
    if (fa !== undefined) closeSync(fa);
    if (fb !== undefined) closeSync(fb);
  }
}

/** Fill `buffer` from `fd` as far as the file goes; the bytes read. */
function readFull(fd: number, buffer: Buffer): number {
  let length = 0;
  while (length < buffer.length) {
    const read = readSync(fd, buffer, length, buffer.length - length, null);
    if (read === 0) break;
    length += read;
  }
  return length;
}

/** Remove a run's directory of replaced versions, and `.psync/replaced` once it is empty. */
function purgeReplaced(tree: HelperTree, run: string): Stat {
  tree.forgetReplacedDir(run);
  const psync = openPsyncDir(tree.fs, false);
  if (psync === undefined) return NO_STAT;
  return using(psync, (held) => {
    const [replacedName, runName] = run.split('/').slice(1) as [string, string];
    let replaced: Directory;
    try {
      replaced = held.openDir(replacedName);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return NO_STAT;
      throw error;
    }
    return using(replaced, (dir) => {
      const stats = dir.stat(runName);
      if (stats === undefined) return NO_STAT;
      if (stats.type !== 'dir') throw new Refusal('unsafe', `${show(run)} is not a directory`);
      removeTree(dir, runName);
      try {
        held.rmdir(replacedName);
      } catch {
        // others still running, or gone already
      }
      return coreStat(stats);
    });
  });
}

// ---------------------------------------------------------------------------
// STAT and HASH: what an entry is now, for the brain's three-way reconcile

/** lstat of `path` (birth time included where the file system keeps one); `missing` when there is nothing. */
function statEntry(tree: HelperTree, path: string): Stat {
  const found = tree.fs.lstat(path);
  if (found === undefined) throw new Refusal('missing', `${show(path)} does not exist`);
  return coreStat(found);
}

/**
 * Remove the temp files a killed rsync left beside `path` (rsync writes
 * `.<name>.XXXXXX` in the file's directory and renames it over the name
 * when done; isRsyncTempOf). Only regular files, unlinked by name through
 * the held parent (never through a symlink). The brain asks only for paths
 * a journaled transfer was writing when it was cut off.
 */
function removeRsyncTemps(tree: HelperTree, path: string): Stat {
  let dir: Directory;
  try {
    dir = tree.parentOf(path);
  } catch (error) {
    if (error instanceof Refusal && error.code === 'missing') return NO_STAT;
    throw error;
  }
  return using(dir, (held) => {
    const name = baseName(path);
    for (const entry of held.list()) {
      if (isRsyncTempOf(entry, name) && held.stat(entry)?.type === 'file') held.unlink(entry);
    }
    const now = held.stat(name);
    return now === undefined ? NO_STAT : coreStat(now);
  });
}

/** Bytes read per step of a HASH: its memory, whatever the file's size. */
const HASH_CHUNK_BYTES = 1024 * 1024;

const readAt = (fd: number, buffer: Buffer, position: number): Promise<number> =>
  new Promise((resolve, reject) => read(fd, buffer, 0, buffer.length, position, (error, bytes) => (error === null ? resolve(bytes) : reject(error))));

/** The same content as far as a stat can tell: type, inode, size and mtime. */
const sameVersion = (a: EntryStat, b: EntryStat | undefined): boolean =>
  b !== undefined && a.type === b.type && sameInode(a, b) && a.size === b.size && a.mtimeMs === b.mtimeMs;

/**
 * SHA-256 of the file or symlink at `path`, with the stat of what was hashed.
 * A file is read through its own descriptor (never through a symlink), in
 * HASH_CHUNK_BYTES steps with async reads; its fstat before the first read
 * and after the last must agree, else it is `changed` (being written).
 * RACE: a write that keeps both size and mtime (within the file system's
 * timestamp granularity) while the file is read goes unseen.
 */
async function hashEntry(tree: HelperTree, path: string): Promise<{ stat: Stat; hash: string }> {
  const dir = tree.parentOf(path);
  try {
    const name = baseName(path);
    const found = dir.stat(name);
    if (found === undefined) throw new Refusal('missing', `${show(path)} does not exist`);
    if (found.type === 'symlink') {
      const target = dir.readlink(name);
      if (!sameVersion(found, dir.stat(name))) throw new Refusal('changed', `${show(path)} changed while its target was read`);
      return { stat: coreStat(found), hash: createHash('sha256').update(target).digest('hex') };
    }
    if (found.type !== 'file') throw new Refusal('error', `${show(path)} is a ${found.type}: only files and symlinks have a hash`);
    let fd: number;
    try {
      fd = dir.openFile(name, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new Refusal('changed', `${show(path)} is a symlink now`);
      if (code === 'ENOENT') throw new Refusal('missing', `${show(path)} vanished before it was read`);
      throw error;
    }
    try {
      return await hashOpenFile(fd, path);
    } finally {
      closeSync(fd);
    }
  } finally {
    dir.close();
  }
}

async function hashOpenFile(fd: number, path: string): Promise<{ stat: Stat; hash: string }> {
  const before = statFd(fd);
  if (before.type !== 'file') throw new Refusal('changed', `${show(path)} is a ${before.type} now`);
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
  for (let position = 0; ; ) {
    const bytes = await readAt(fd, buffer, position);
    if (bytes === 0) break;
    hash.update(buffer.subarray(0, bytes));
    position += bytes;
  }
  const after = statFd(fd);
  if (!sameVersion(before, after)) throw new Refusal('changed', `${show(path)} changed while it was read`);
  return { stat: coreStat(after), hash: hash.digest('hex') };
}

// ---------------------------------------------------------------------------
// MARK: the pair's id in the root's `.psync/id`

/**
 * Add `pairId` to `.psync/id` unless it is there: the new content goes to
 * an O_EXCL | O_NOFOLLOW temp file in `.psync` (mode 0600), then renameat
 * over `id`. A `.psync` that is not psync's own, or an `id` that is a
 * symlink or not a regular file, is `unsafe`: nothing is written.
 * RACE: two helpers marking one root at once could each write the file
 * without the other's line; one root has one psync (its lock).
 */
function markRoot(tree: HelperTree, pairId: string): Stat {
  if (!isPairId(pairId)) throw new Refusal('error', `bad pair id ${show(pairId)}`);
  if (tree.config.dryRun) return NO_STAT;
  const psync = openPsyncDir(tree.fs, true);
  if (psync === undefined) throw new Refusal('error', `could not create ${show(PSYNC_ID_PATH)}`);
  return using(psync, (dir) => {
    let old: Buffer | undefined;
    try {
      old = dir.readFile(MARKER_FILE_NAME, MARKER_FILE_MAX_BYTES);
    } catch (error) {
      if (error instanceof UnsafePathError) throw new Refusal('unsafe', `${show(PSYNC_ID_PATH)} is a symlink: not written`);
      if ((error as NodeJS.ErrnoException).code === 'EINVAL') throw new Refusal('unsafe', `${errorMessage(error)}: not written`);
      throw error;
    }
    const text = old?.toString('latin1') ?? '';
    if (parsePairIds(text).includes(pairId)) return NO_STAT;
    const content = Buffer.from(`${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${pairId}\n`, 'latin1');
    if (content.length > MARKER_FILE_MAX_BYTES) throw new Refusal('error', `${show(PSYNC_ID_PATH)} would grow past ${MARKER_FILE_MAX_BYTES} bytes`);
    replaceFile(tree, dir, MARKER_FILE_NAME, content);
    return NO_STAT;
  });
}

const PSYNC_ID_PATH = `${PSYNC_DIR}/${MARKER_FILE_NAME}`;

/** Write `content` to a new temp file beside `name` in `dir`, then rename it over `name`. */
function replaceFile(tree: HelperTree, dir: Directory, name: string, content: Buffer): void {
  const temp = tree.scratchFor(dir, name);
  const fd = dir.openFile(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  let placed = false;
  try {
    try {
      for (let done = 0; done < content.length; ) done += writeSync(fd, content, done, content.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    dir.rename(temp, dir, name);
    placed = true;
    fsyncSync(dir.fd);
  } finally {
    if (!placed) {
      try {
        dir.unlink(temp);
      } catch {
        // never created, or gone already
      }
    }
  }
}
