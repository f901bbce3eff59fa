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
 * Protocol (src/core/protocol.ts): CONFIG <json HelperConfig> in, HELLO out,
 * then one DONE or FAIL per MOVE / DELETE request, in request order. A frame
 * that cannot be trusted is never acted on: a request with a readable id
 * gets `FAIL <id> unsafe`, anything else is logged on stderr and skipped.
 *
 * Invariants:
 * - The root itself is never renamed or removed (guardPath refuses "").
 * - A path is joined onto the root only after guardPath, and acted on only
 *   when no component between the root and it is a symlink: nothing
 *   outside the tree is ever reached through a link. lstat, never stat.
 * - Check, then act: an entry that differs from what the brain expects is
 *   left alone (`changed`), so an edit made on the target is never lost.
 * - Nothing is left under a `.psync.ignore` name: an interrupted dance puts
 *   the entry back under its own name before answering FAIL.
 * - Names are bytes: paths go to fs as Buffers made with pathToBytes.
 *
 * RACE: between the checks (lstat of each ancestor, of the entry) and the
 * renames, another process can still swap an ancestor for a symlink or edit
 * the entry. Node has no renameat/openat, so the window cannot be closed;
 * it is kept short, and the entry is re-checked once it sits under its
 * scratch name, where no other process looks for it.
 */

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Stats } from 'node:fs';
import { lstat, mkdir, opendir, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { ConfigError } from '../src/core/errors.js';
import { join, resolve } from 'node:path';
import { FrameReceiver, FrameWriter, type Frame, type Received } from '../src/core/frame.js';
import { isPsyncInternal, IGNORE_MARK } from '../src/core/patterns.js';
import { ancestorsOf, baseName, bytesToPath, isSameOrUnder, joinPath, parentOf, pathToBytes } from '../src/core/paths.js';
import { conflictName, judgeReplaced } from '../src/core/conflict.js';
import { startRelay } from './rsyncRelay.js';
import { sameAsWritten } from '../src/core/echo.js';
import {
  decodeHelperRequest,
  NO_STAT,
  REPLACED_DIR,
  type ConflictOutcome,
  encodeHelperReply,
  PROTOCOL_VERSION,
  type HelperConfig,
  type HelperFailure,
  type HelperReply,
  type HelperRequest,
} from '../src/core/protocol.js';
import type { Stat } from '../src/core/types.js';
import { entryTypeOf, toStat } from '../src/fsStat.js';

export interface HelperOptions {
  /** Where diagnostics go (never stdout, which carries frames); stderr by default. */
  readonly log?: (line: string) => void;
}

/** Exit codes of runHelper. */
export const HELPER_EXIT = { ok: 0, failed: 1, badConfig: 2 } as const;

/** Longest file name (bytes) on the usual Linux file systems. */
const NAME_MAX_BYTES = 255;

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
    const rootStats = await stat(config.root).catch((error: unknown) => {
      throw new ConfigError(`cannot use root ${show(config.root)}: ${errorMessage(error)}`);
    });
    if (!rootStats.isDirectory()) throw new ConfigError(`root ${show(config.root)} is not a directory`);
    await replies.send('HELLO', [String(PROTOCOL_VERSION), 'helper', String(process.pid)]);
    if (config.relay) await offerRelay(replies, log);
    await reportInterruptedRuns(config.root, log);
    return new Session(new Tree(config, log), replies, log);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    log(error.message);
    await replies.send('ERROR', [error.message]);
    return HELPER_EXIT.badConfig;
  }
}

/**
 * Start the rsync relay (rsyncRelay.ts) and tell the brain where it is:
 * `RELAY <port> <token>`, or `NORELAY <reason>` when it cannot listen (the
 * brain then keeps starting rsync through a remote shell).
 */
async function offerRelay(replies: ReplyChannel, log: (line: string) => void): Promise<void> {
  try {
    const relay = await startRelay(log);
    await replies.send('RELAY', [String(relay.port), relay.token]);
  } catch (error) {
    await replies.send('NORELAY', [errorMessage(error)]);
  }
}

/**
 * A psync killed between a transfer and its conflict check (kill -9, a
 * crash) leaves the versions that transfer replaced in
 * `.psync/replaced/<pid>-<n>`. They may hold an edit made on this side, so
 * they are never removed unread: say where they are.
 */
async function reportInterruptedRuns(root: string, log: (line: string) => void): Promise<void> {
  let runs: string[];
  try {
    runs = await readdir(join(root, REPLACED_DIR));
  } catch {
    return;
  }
  const dead = runs.filter((run) => {
    const pid = Number(run.split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0) return true;
    try {
      process.kill(pid, 0);
      return false;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code !== 'EPERM';
    }
  });
  if (dead.length > 0) {
    log(
      `an interrupted psync left the versions its last transfers replaced in ${join(root, REPLACED_DIR)}/` +
        `{${dead.join(',')}}: they may hold edits made here; compare them with the files and remove them`,
    );
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
    private readonly tree: Tree,
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
    await this.reply(await perform(this.tree, request));
  }

  /** An untrusted request is never acted on; it is answered only when its id is readable. */
  private async refuseFrame(frame: Frame, why: string): Promise<void> {
    const id = frame.args[0];
    if (['MOVE', 'DELETE', 'RESOLVE', 'PURGE'].includes(frame.verb) && id !== undefined && /^[0-9]{1,15}$/.test(id)) {
      await this.reply({ id: Number(id), ok: false, code: 'unsafe', message: why });
    } else {
      this.log(`skipping frame ${frame.seq} ${frame.verb}: ${why}`);
    }
  }

  private async reply(reply: HelperReply): Promise<void> {
    if (!reply.ok) this.log(`request ${reply.id} not done (${reply.code}): ${reply.message}`);
    const { verb, args } = encodeHelperReply(reply);
    await this.replies.send(verb, args);
  }
}

async function perform(tree: Tree, request: HelperRequest): Promise<HelperReply> {
  try {
    switch (request.kind) {
      case 'move':
        return { id: request.id, ok: true, ...(await moveEntry(tree, request)) };
      case 'delete':
        return { id: request.id, ok: true, stat: await deleteEntry(tree, request) };
      case 'resolve':
        return { id: request.id, ok: true, ...(await resolveReplaced(tree, request)) };
      case 'purge':
        return { id: request.id, ok: true, stat: await purgeReplaced(tree, request.dir) };
    }
  } catch (error) {
    const refusal = toRefusal(error);
    return { id: request.id, ok: false, code: refusal.code, message: refusal.message };
  }
}

/** Any error as a Refusal: the errno says what kind of failure it was. */
function toRefusal(error: unknown): Refusal {
  if (error instanceof Refusal) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = errorMessage(error);
  if (code === 'ENOENT') return new Refusal('missing', message);
  if (code === 'ENOTEMPTY') return new Refusal('notempty', message);
  return new Refusal('error', message);
}

// ---------------------------------------------------------------------------
// The tree: root-relative paths to Buffer paths, and the checks

class Tree {
  private readonly rootBytes: Buffer;
  private counter = 0;

  constructor(
    readonly config: HelperConfig,
    readonly log: (line: string) => void,
  ) {
    this.rootBytes = Buffer.from(pathToBytes(config.root.replace(/\/+$/, '')));
  }

  /** The absolute path as bytes. `path` has passed guardPath (decodeHelperRequest does it). */
  abs(path: string): Buffer {
    return Buffer.concat([this.rootBytes, SLASH, pathToBytes(path)]);
  }

  /** lstat, or undefined when nothing is there. */
  async lstat(path: string): Promise<Stats | undefined> {
    try {
      return await lstat(this.abs(path));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw error;
    }
  }

  /**
   * Check every ancestor of `path` inside the root, top down: none may be a
   * symlink (`unsafe`) or a non-directory (`notDir`). Returns the missing
   * ancestors, top first (everything below the first missing one is missing too).
   */
  async checkAncestors(path: string, notDir: HelperFailure = 'exists'): Promise<string[]> {
    const ancestors = ancestorsOf(path).reverse();
    for (const [index, dir] of ancestors.entries()) {
      const stats = await this.lstat(dir);
      if (stats === undefined) return ancestors.slice(index);
      if (stats.isSymbolicLink()) throw new Refusal('unsafe', `${show(dir)} is a symlink: refusing to act through it`);
      if (!stats.isDirectory()) throw new Refusal(notDir, `${show(dir)} is not a directory`);
    }
    return [];
  }

  /** Like checkAncestors, but every ancestor must exist. */
  async requireAncestors(path: string): Promise<void> {
    const missing = await this.checkAncestors(path, 'missing');
    if (missing.length > 0) throw new Refusal('missing', `${show(missing[0]!)} does not exist`);
  }

  /** Create missing directories (top first, each under a directory just checked). */
  async createDirs(dirs: readonly string[]): Promise<void> {
    for (const dir of dirs) {
      try {
        await mkdir(this.abs(dir));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        // RACE: someone created it meanwhile: fine if it is a real directory.
        const stats = await this.lstat(dir);
        if (stats === undefined || !stats.isDirectory()) throw new Refusal('exists', `${show(dir)} appeared and is not a directory`);
      }
    }
  }

  /**
   * A free scratch name beside `path`: `<name>.<id>.psync.ignore`, the name
   * cut (in bytes) so the whole stays within NAME_MAX.
   */
  async scratchFor(path: string): Promise<string> {
    for (;;) {
      this.counter += 1;
      const suffix = Buffer.from(`.${process.pid}-${this.counter}-${randomBytes(3).toString('hex')}${IGNORE_MARK}`);
      const name = Buffer.from(pathToBytes(baseName(path))).subarray(0, NAME_MAX_BYTES - suffix.length);
      const scratch = joinPath(parentOf(path), bytesToPath(Buffer.concat([name, suffix])));
      if ((await this.lstat(scratch)) === undefined) return scratch;
    }
  }

  async rename(from: string, to: string): Promise<void> {
    await rename(this.abs(from), this.abs(to));
  }

  /**
   * A name for the losing version `loser` of `path` (conflictName), free or
   * already holding that very version (both sides keep the same loser under
   * the same name, so one may arrive from the other side first).
   */
  async freeConflictName(path: string, loser: Stat): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      const name = conflictName(path, loser.mtimeMs, attempt);
      const there = await this.lstat(name);
      if (there === undefined || sameAsWritten(loser, toStat(there))) return name;
    }
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

  /**
   * Undo the first step of a dance. Never overwrites: if something new took
   * the original name meanwhile, the entry stays under the scratch name and
   * the message says where (RACE: the check and the rename are two calls).
   */
  async putBack(scratch: string, original: string): Promise<string> {
    if ((await this.lstat(scratch)) === undefined) return ''; // the first step never happened
    if ((await this.lstat(original)) !== undefined) {
      return `; ${show(original)} was re-created meanwhile, the old entry is kept as ${show(scratch)}`;
    }
    try {
      await this.rename(scratch, original);
      return '';
    } catch (error) {
      return `; could not put it back, it is kept as ${show(scratch)}: ${errorMessage(error)}`;
    }
  }

  async isEmptyDir(path: string): Promise<boolean> {
    const dir = await opendir(this.abs(path));
    try {
      return (await dir.read()) === null;
    } finally {
      await dir.close();
    }
  }

  /** Remove an entry; a directory only when empty unless `recursive`. Symlinks are unlinked, never followed. */
  async remove(path: string, recursive: boolean): Promise<void> {
    const target = this.abs(path);
    if (!(await lstat(target)).isDirectory()) await unlink(target);
    else if (recursive) await removeTree(target);
    else await rmdir(target);
  }
}

const SLASH = Buffer.from('/');

async function removeTree(path: Buffer): Promise<void> {
  if (!(await lstat(path)).isDirectory()) {
    await unlink(path);
    return;
  }
  for (const name of await readdir(path, { encoding: 'buffer' })) await removeTree(Buffer.concat([path, SLASH, name]));
  await rmdir(path);
}

// ---------------------------------------------------------------------------
// Check before act

/** The entry must still be what the brain expects (the inode is not comparable across hosts). */
function checkExpected(path: string, actual: Stats, expect: Stat): void {
  const type = entryTypeOf(actual);
  if (type !== expect.type) throw new Refusal('changed', `${show(path)} is a ${type} now, expected a ${expect.type}`);
  if (type !== 'file' && type !== 'symlink') return;
  // rsync preserves mtimes to the nanosecond; 1 ms absorbs float rounding.
  if (actual.size !== expect.size || Math.abs(actual.mtimeMs - expect.mtimeMs) >= 1) {
    throw new Refusal(
      'changed',
      `${show(path)} changed since (size ${actual.size}, mtime ${actual.mtimeMs}; expected size ${expect.size}, mtime ${expect.mtimeMs})`,
    );
  }
}

/** Under its scratch name the entry must be the one we checked: else someone swapped it in between. */
function isSameEntry(before: Stats, after: Stats | undefined): boolean {
  if (after === undefined || after.ino !== before.ino || after.dev !== before.dev) return false;
  return before.isDirectory() || (after.size === before.size && after.mtimeMs === before.mtimeMs);
}

const refuseInternal = (path: string): void => {
  if (isPsyncInternal(path)) throw new Refusal('unsafe', `${show(path)} is psync's own`);
};

/** Load the entry at `path`, checked against the request's expectation. */
async function checkedEntry(tree: Tree, path: string, expect: Stat): Promise<Stats> {
  refuseInternal(path);
  await tree.requireAncestors(path);
  const stats = await tree.lstat(path);
  if (stats === undefined) throw new Refusal('missing', `${show(path)} does not exist`);
  checkExpected(path, stats, expect);
  return stats;
}

/** First step of every dance: rename to a scratch name and make sure it is still the entry we checked. */
async function setAside(tree: Tree, path: string, before: Stats): Promise<string> {
  const scratch = await tree.scratchFor(path);
  await tree.rename(path, scratch);
  if (!isSameEntry(before, await tree.lstat(scratch))) {
    const note = await tree.putBack(scratch, path);
    throw new Refusal('changed', `${show(path)} changed while being set aside${note}`);
  }
  return scratch;
}

// ---------------------------------------------------------------------------
// DELETE: path -> scratch -> gone

async function deleteEntry(tree: Tree, request: Extract<HelperRequest, { kind: 'delete' }>): Promise<Stat> {
  const { force, dryRun } = tree.config;
  const before = await checkedEntry(tree, request.path, request.expect);
  if (before.isDirectory() && !force && !(await tree.isEmptyDir(request.path))) {
    throw new Refusal('notempty', `${show(request.path)} is a non-empty directory`);
  }
  if (dryRun) return toStat(before);
  const scratch = await setAside(tree, request.path, before);
  try {
    await tree.remove(scratch, force);
  } catch (error) {
    const refusal = toRefusal(error);
    const note = await tree.putBack(scratch, request.path);
    throw new Refusal(refusal.code, `${show(request.path)} not deleted: ${refusal.message}${note}`);
  }
  return toStat(before);
}

// ---------------------------------------------------------------------------
// MOVE: from -> scratch -> to

async function moveEntry(tree: Tree, request: Extract<HelperRequest, { kind: 'move' }>): Promise<{ stat: Stat; conflict?: ConflictOutcome }> {
  const { from, to } = request;
  refuseInternal(to);
  if (isSameOrUnder(to, from)) throw new Refusal('unsafe', `cannot move ${show(from)} into itself (${show(to)})`);
  if (isSameOrUnder(from, to)) throw new Refusal('unsafe', `cannot move ${show(from)} onto its own ancestor ${show(to)}`);
  const before = await checkedEntry(tree, from, request.expect);
  const missingDirs = await tree.checkAncestors(to);
  const existing = missingDirs.length === 0 ? await tree.lstat(to) : undefined;
  if (existing !== undefined) await checkReplaceable(tree, to, before, existing);
  if (tree.config.dryRun) return { stat: toStat(before) };

  // A file at `to` that the source never had there was changed on this side: keep it beside.
  let conflict: ConflictOutcome | undefined;
  if (existing !== undefined && !existing.isDirectory()) {
    const there = toStat(existing);
    const expected = [toStat(before), ...(request.replaces === undefined ? [] : [request.replaces])];
    if (!expected.some((stat) => sameAsWritten(stat, there))) {
      const copy = await tree.freeConflictName(to, there);
      await tree.rename(to, copy);
      conflict = { copy, kept: 'written' };
    }
  }

  await tree.createDirs(missingDirs);
  const scratch = await setAside(tree, from, before);
  const replaced = existing?.isDirectory() === true ? await tree.scratchFor(to) : undefined;
  try {
    // rename(2) replaces a file or symlink at `to` by itself; a directory is set aside first.
    if (replaced !== undefined) await tree.rename(to, replaced);
    await tree.rename(scratch, to);
  } catch (error) {
    const refusal = toRefusal(error);
    const notes = (replaced === undefined ? '' : await tree.putBack(replaced, to)) + (await tree.putBack(scratch, from));
    throw new Refusal(refusal.code === 'missing' ? 'error' : refusal.code, `${show(from)} not moved: ${refusal.message}${notes}`);
  }
  const after = await tree.lstat(to);
  if (after === undefined) throw new Refusal('error', `${show(to)} vanished right after the move`);
  await finishMove(tree, scratch, after, replaced);
  return conflict === undefined ? { stat: toStat(after) } : { stat: toStat(after), conflict };
}

/** What may stand at `to`: a file or symlink, or an empty directory (any directory with force). */
async function checkReplaceable(tree: Tree, to: string, moving: Stats, existing: Stats): Promise<void> {
  if (!existing.isDirectory()) {
    if (moving.isDirectory()) throw new Refusal('exists', `cannot move a directory onto the ${entryTypeOf(existing)} ${show(to)}`);
    return;
  }
  if (!tree.config.force && !(await tree.isEmptyDir(to))) throw new Refusal('notempty', `${show(to)} is a non-empty directory`);
}

/**
 * After the final rename: drop the scratch name if rename(2) left it (it
 * does nothing when both names are hard links of one file), and remove the
 * directory that stood at `to`. The move itself is done either way, so a
 * failure here is logged, not answered with FAIL.
 */
async function finishMove(tree: Tree, scratch: string, moved: Stats, replaced: string | undefined): Promise<void> {
  const leftover = await tree.lstat(scratch);
  if (leftover !== undefined && leftover.ino === moved.ino && leftover.dev === moved.dev && !leftover.isDirectory()) {
    await unlink(tree.abs(scratch));
  }
  if (replaced === undefined) return;
  try {
    await tree.remove(replaced, tree.config.force);
  } catch (error) {
    // RACE: something was created inside the replaced directory after our
    // check. Keep it (under the scratch name, never synced) rather than lose it.
    tree.log(`moved, but the directory it replaced is kept as ${show(replaced)}: ${errorMessage(error)}`);
  }
}

// ---------------------------------------------------------------------------
// RESOLVE: what rsync replaced, kept in a `.psync/replaced/<run>` directory

/**
 * Judge the version rsync replaced at `path` (conflict.ts). A conflict keeps
 * both: the loser is renamed to a conflict copy beside the file, and when
 * the replaced version is the newer one it is put back under the name.
 * Whatever is not a conflict stays in the run's directory until PURGE.
 */
async function resolveReplaced(
  tree: Tree,
  request: Extract<HelperRequest, { kind: 'resolve' }>,
): Promise<{ stat: Stat; conflict?: ConflictOutcome }> {
  const { path, dir } = request;
  refuseInternal(path);
  await tree.requireAncestors(path);
  const now = await tree.lstat(path);
  const written = now === undefined ? undefined : toStat(now);
  const nothing = { stat: written ?? NO_STAT };
  if (tree.replacedDirGone(dir)) return nothing;
  const kept = joinPath(dir, path);
  const old = await tree.lstat(kept);
  if (old === undefined) {
    if ((await tree.lstat(dir)) === undefined) tree.noteReplacedDirGone(dir);
    return nothing;
  }
  const replaced = toStat(old);
  const verdict = judgeReplaced(replaced, written, request.expected);
  if (verdict.kind !== 'conflict' || old.isDirectory()) return nothing;
  if (verdict.keep === 'written' || written === undefined) {
    const copy = await tree.freeConflictName(path, replaced);
    await tree.rename(kept, copy);
    return { ...nothing, conflict: { copy, kept: 'written' } };
  }
  // The replaced version is newer: the written one steps aside, the replaced one takes the name back.
  const copy = await tree.freeConflictName(path, written);
  await tree.rename(path, copy);
  await tree.rename(kept, path);
  return { stat: replaced, conflict: { copy, kept: 'replaced' } };
}

/** Remove a run's directory of replaced versions, and `.psync/replaced` once it is empty. */
async function purgeReplaced(tree: Tree, dir: string): Promise<Stat> {
  tree.forgetReplacedDir(dir);
  const stats = await tree.lstat(dir);
  if (stats === undefined) return NO_STAT;
  if (!stats.isDirectory()) throw new Refusal('unsafe', `${show(dir)} is not a directory`);
  await removeTree(tree.abs(dir));
  await rmdir(tree.abs(REPLACED_DIR)).catch(() => undefined); // others still running, or gone already
  return toStat(stats);
}
