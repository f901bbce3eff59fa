/**
 * The pieces of the seeded fuzz test (test/e2e/fuzz.test.ts): a small PRNG,
 * the operations a user makes on one side's tree, each recorded with when
 * it ran, a tree reader that keeps what the invariants need, the invariants
 * themselves, and the process tree of a psync or an sshd (for kill -9 and
 * dropped connections).
 *
 * Every operation is one synchronous call or a few, bracketed by
 * `performance.now()`: an operation that ended before another one started
 * cannot have seen its result, whichever side each ran on. That is what
 * makes the invariants well defined under concurrency without knowing when
 * psync carried what across: a version must survive unless something that
 * could have seen it (started after it was written) overwrote, deleted or
 * replaced it; a path deleted must stay deleted unless something else
 * touched it.
 *
 * Every write puts a unique token in the file's last line (`seed:mode:round:
 * side:n`), so a version is known by its content wherever it ends up: at
 * its path, where a rename took it, or in a conflict copy beside either.
 */

import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CONFLICT_MARK, conflictName } from '../../src/core/conflict.js';
import { baseName, isSameOrUnder, parentOf, rebase } from '../../src/core/paths.js';

export type Side = 'left' | 'right';
export const SIDES = ['left', 'right'] as const;
export const otherSide = (side: Side): Side => (side === 'left' ? 'right' : 'left');

// ---------------------------------------------------------------------------
// PRNG

/** mulberry32: a 32-bit seed, a full-period generator of floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export class Rng {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick from nothing');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** One of the choices, with probability proportional to its weight (choices of weight 0 never). */
  weighted<T>(choices: ReadonlyArray<readonly [T, number]>): T | undefined {
    const total = choices.reduce((sum, [, weight]) => sum + weight, 0);
    if (total <= 0) return undefined;
    let at = this.next() * total;
    for (const [choice, weight] of choices) {
      if (at < weight) return choice;
      at -= weight;
    }
    return choices.at(-1)?.[0];
  }
}

// ---------------------------------------------------------------------------
// Trees

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface FuzzEntry {
  readonly type: EntryType;
  /** Permission bits (files and directories; 0 for symlinks). */
  readonly mode: number;
  /** sha1 of a file's content. */
  readonly hash?: string;
  /** The first word of a file's last line: the token of the write that made this version. */
  readonly token?: string;
  readonly size?: number;
  /** A symlink's target. */
  readonly target?: string;
}

/** Root-relative POSIX path -> entry, psync's own names left out. */
export type Tree = ReadonlyMap<string, FuzzEntry>;

/** psync's own names, never synced: `.psync` at the root, and any name containing `.psync.ignore`. */
export const isPsyncOwn = (path: string): boolean => path === '.psync' || path.startsWith('.psync/') || path.includes('.psync.ignore');

const sha1 = (content: Uint8Array): string => createHash('sha1').update(content).digest('hex');

/** The token a version carries: the first word of its last line. */
export function lastToken(content: Buffer): string | undefined {
  const text = content.toString('latin1').replace(/\n+$/, '');
  const line = text.slice(text.lastIndexOf('\n') + 1);
  const token = line.split(' ')[0];
  return token === '' ? undefined : token;
}

/** Everything sync should make equal: type, mode, content, symlink target. Throws when the tree changes under it (the caller polls). */
export async function readTree(root: string): Promise<Tree> {
  const out = new Map<string, FuzzEntry>();
  const visit = async (dir: string, rel: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const path = rel === '' ? name : `${rel}/${name}`;
      if (isPsyncOwn(path)) continue;
      const abs = join(dir, name);
      const info = await lstat(abs);
      const mode = info.mode & 0o7777;
      if (info.isDirectory()) {
        out.set(path, { type: 'dir', mode });
        await visit(abs, path);
      } else if (info.isSymbolicLink()) {
        out.set(path, { type: 'symlink', mode: 0, target: await readlink(abs) });
      } else if (info.isFile()) {
        const content = await readFile(abs);
        const token = lastToken(content);
        out.set(path, { type: 'file', mode, hash: sha1(content), size: content.length, ...(token === undefined ? {} : { token }) });
      } else {
        out.set(path, { type: 'other', mode });
      }
    }
  };
  await visit(root, '');
  return out;
}

const describeEntry = (e: FuzzEntry): string =>
  e.type === 'file'
    ? `file mode ${e.mode.toString(8)} ${e.size ?? 0} bytes token ${e.token ?? '(none)'}`
    : e.type === 'symlink'
      ? `symlink -> ${e.target ?? ''}`
      : `${e.type} mode ${e.mode.toString(8)}`;

const sameEntry = (a: FuzzEntry, b: FuzzEntry): boolean => a.type === b.type && a.mode === b.mode && a.hash === b.hash && a.target === b.target;

/** A readable list of differences; empty when identical. */
export function diffTrees(left: Tree, right: Tree): string[] {
  const problems: string[] = [];
  for (const [path, l] of left) {
    const r = right.get(path);
    if (r === undefined) problems.push(`only on the left: ${path} (${describeEntry(l)})`);
    else if (!sameEntry(l, r)) problems.push(`differs: ${path}: left ${describeEntry(l)}, right ${describeEntry(r)}`);
  }
  for (const [path, r] of right) if (!left.has(path)) problems.push(`only on the right: ${path} (${describeEntry(r)})`);
  return problems;
}

/** One line per entry, for failure messages. */
export const dumpTree = (tree: Tree): string => [...tree].map(([path, e]) => `  ${path}: ${describeEntry(e)}`).join('\n');

/** Whether `path` is a conflict copy of `original` (`stem.psync-conflict-YYYYMMDD-HHMMSS[-n].ext` beside it, conflict.ts). */
export function isConflictCopyOf(path: string, original: string): boolean {
  if (parentOf(path) !== parentOf(original)) return false;
  const sample = baseName(conflictName(original, 0)); // stem.psync-conflict-19700101-000000.ext
  const at = sample.lastIndexOf(CONFLICT_MARK) + CONFLICT_MARK.length;
  const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^${escape(sample.slice(0, at))}\\d{8}-\\d{6}(-\\d+)?${escape(sample.slice(at + '19700101-000000'.length))}$`);
  return pattern.test(baseName(path));
}

// ---------------------------------------------------------------------------
// Operations

/** What a side's user does, planned ahead from the seed; `token` is unique to the operation. */
export type PlannedOp =
  | { readonly kind: 'create' | 'overwrite' | 'append'; readonly side: Side; readonly path: string; readonly token: string; readonly size: number }
  /** Keep the first `keep` (a fraction) of the lines, then append one. */
  | { readonly kind: 'truncate'; readonly side: Side; readonly path: string; readonly token: string; readonly keep: number }
  /** Append a line every `everyMs` for `forMs`, on one open descriptor, while other operations run. */
  | { readonly kind: 'writer'; readonly side: Side; readonly path: string; readonly token: string; readonly forMs: number; readonly everyMs: number }
  /** `delete`: a file or symlink; `rmrf`: `rm -rf` of a directory. */
  | { readonly kind: 'delete' | 'rmrf'; readonly side: Side; readonly path: string; readonly token: string }
  | { readonly kind: 'rename'; readonly side: Side; readonly path: string; readonly to: string; readonly token: string }
  /** `mkdir -p` of `path`. */
  | { readonly kind: 'mkdir'; readonly side: Side; readonly path: string; readonly token: string }
  | { readonly kind: 'chmod'; readonly side: Side; readonly path: string; readonly token: string; readonly mode: number }
  | { readonly kind: 'symlink'; readonly side: Side; readonly path: string; readonly token: string; readonly target: string };

export type OpKind = PlannedOp['kind'];

/** A version some operation left at its path (or one the round started with). */
export interface Version {
  readonly type: 'file' | 'symlink';
  readonly path: string;
  /** Files: sha1 of the content. */
  readonly hash?: string;
  readonly target?: string;
  /** The token of the file's last line (files), for messages and searches. */
  readonly id: string;
  /** When the write that made it started (-Infinity: it was there when the round started). */
  readonly start: number;
  /** The operation that wrote it; undefined when the round started with it. */
  readonly by?: string;
}

/** An operation as it ran. */
export type Op = PlannedOp & {
  readonly start: number;
  readonly end: number;
  readonly ok: boolean;
  readonly error?: string;
  /** What a successful write or symlink left; undefined when it went to a file no longer linked anywhere (nlink 0). */
  readonly version?: Version;
  /** psync was down (killed, or exited after a dropped connection) when it ran. */
  readonly down?: boolean;
};

const WRITE_FLAGS = {
  create: constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
  overwrite: constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
  append: constants.O_RDWR | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW,
  truncate: constants.O_RDWR | constants.O_NOFOLLOW,
} as const;
const FILE_MODE = 0o644;
const FILLER = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(64);

/** One line of a version: its token, then `size` bytes of filler. */
export function lineOf(token: string, size: number): string {
  let filler = '';
  while (filler.length < size) filler += FILLER;
  return `${token} ${filler.slice(0, size)}\n`;
}

/** The whole content of an open file. */
function readAll(fd: number): Buffer {
  const size = fstatSync(fd).size;
  const buffer = Buffer.alloc(size);
  let done = 0;
  while (done < size) {
    const n = readSync(fd, buffer, done, size - done, done);
    if (n === 0) break;
    done += n;
  }
  return buffer.subarray(0, done);
}

/** The version left in an open file, unless nothing links to it any more (psync replaced or removed it meanwhile). */
function versionIn(fd: number, path: string, start: number, by: string, content: Buffer): Version | undefined {
  if (fstatSync(fd).nlink === 0) return undefined;
  return { type: 'file', path, hash: sha1(content), id: lastToken(content) ?? '(none)', start, by };
}

/** Run one planned operation on `root` now, synchronously, and record it. */
export function perform(root: string, plan: Exclude<PlannedOp, { kind: 'writer' }>, down: boolean): Op {
  const abs = join(root, plan.path);
  const start = performance.now();
  let version: Version | undefined;
  try {
    switch (plan.kind) {
      case 'create':
      case 'overwrite':
      case 'append': {
        const fd = openSync(abs, WRITE_FLAGS[plan.kind], FILE_MODE);
        try {
          writeSync(fd, lineOf(plan.token, plan.size));
          version = versionIn(fd, plan.path, start, plan.token, readAllOrLine(fd, plan));
        } finally {
          closeSync(fd);
        }
        break;
      }
      case 'truncate': {
        const fd = openSync(abs, WRITE_FLAGS.truncate);
        try {
          const old = readAll(fd).toString('latin1');
          const lines = old.split('\n').filter((line) => line !== '');
          const kept = lines.slice(0, Math.floor(lines.length * plan.keep)).map((line) => `${line}\n`).join('');
          const keptBytes = Buffer.byteLength(kept, 'latin1');
          ftruncateSync(fd, keptBytes);
          writeSync(fd, lineOf(plan.token, 8), keptBytes);
          version = versionIn(fd, plan.path, start, plan.token, readAll(fd));
        } finally {
          closeSync(fd);
        }
        break;
      }
      case 'delete':
        unlinkSync(abs);
        break;
      case 'rmrf':
        rmSync(abs, { recursive: true });
        break;
      case 'rename':
        renameSync(abs, join(root, plan.to));
        break;
      case 'mkdir':
        mkdirSync(abs, { recursive: true });
        break;
      case 'chmod': {
        // Through a descriptor opened O_NOFOLLOW: chmod(2) would follow a symlink that replaced the file.
        const fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
        try {
          fchmodSync(fd, plan.mode);
        } finally {
          closeSync(fd);
        }
        break;
      }
      case 'symlink':
        symlinkSync(plan.target, abs);
        version = { type: 'symlink', path: plan.path, target: plan.target, id: plan.target, start, by: plan.token };
        break;
    }
  } catch (error) {
    return { ...plan, start, end: performance.now(), ok: false, error: (error as NodeJS.ErrnoException).code ?? String(error), down };
  }
  return { ...plan, start, end: performance.now(), ok: true, ...(version === undefined ? {} : { version }), down };
}

/** A create or overwrite wrote exactly one line; an append's version is the whole file. */
function readAllOrLine(fd: number, plan: { kind: 'create' | 'overwrite' | 'append'; token: string; size: number }): Buffer {
  return plan.kind === 'append' ? readAll(fd) : Buffer.from(lineOf(plan.token, plan.size), 'latin1');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A file written continuously: one descriptor, a line every `everyMs` for
 * `forMs` (each line its own token), like a growing log. Its version is what
 * the descriptor holds after the last line, written when that line started.
 */
export async function performWriter(root: string, plan: Extract<PlannedOp, { kind: 'writer' }>, isDown: () => boolean): Promise<Op> {
  const start = performance.now();
  let fd: number;
  try {
    fd = openSync(join(root, plan.path), WRITE_FLAGS.append, FILE_MODE);
  } catch (error) {
    return { ...plan, start, end: performance.now(), ok: false, error: (error as NodeJS.ErrnoException).code ?? String(error) };
  }
  let lastStart = start;
  try {
    for (let k = 0; performance.now() - start < plan.forMs; k++) {
      lastStart = performance.now();
      writeSync(fd, lineOf(`${plan.token}.${k}`, (k * 7919) % 1500));
      await sleep(plan.everyMs);
    }
    const version = versionIn(fd, plan.path, lastStart, plan.token, readAll(fd));
    return { ...plan, start, end: performance.now(), ok: true, ...(version === undefined ? {} : { version }), down: isDown() };
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------
// Invariants

export interface RoundRecord {
  /** The synced tree the round started from (both sides identical). */
  readonly before: Tree;
  readonly ops: readonly Op[];
  /** The synced tree after the round (both sides identical). */
  readonly after: Tree;
  /** psync was killed or lost its connection during the round: what it had done but not yet recorded may be redone. */
  readonly faulted: boolean;
  /** Paths the test keeps for itself (the barrier files). */
  readonly ignored: (path: string) => boolean;
}

const WRITES: ReadonlySet<OpKind> = new Set(['create', 'overwrite', 'append', 'truncate', 'writer']);
const DELETES: ReadonlySet<OpKind> = new Set(['delete', 'rmrf']);
const MAX_LOCATIONS = 1_000;

/** Every path an operation names. */
export const pathsOf = (op: PlannedOp): string[] => (op.kind === 'rename' ? [op.path, op.to] : [op.path]);

/** Whether `a` and `b` are the same path or one lies below the other. */
export const related = (a: string, b: string): boolean => isSameOrUnder(a, b) || isSameOrUnder(b, a);

/** Whether `op` replaces or removes whatever stands at `location` (a rename only moves it: see locationsOf). */
function destroys(op: PlannedOp, location: string): boolean {
  if (WRITES.has(op.kind)) return op.path === location;
  if (DELETES.has(op.kind)) return isSameOrUnder(location, op.path);
  if (op.kind === 'rename') return isSameOrUnder(location, op.to);
  return false;
}

/**
 * Everywhere an entry at `path` may legitimately stand after the round:
 * its path, and wherever any rename of it or of a directory above it (on
 * either side, in any order) may have taken it.
 */
export function locationsOf(path: string, ops: readonly Op[]): string[] {
  const seen = new Set([path]);
  const queue = [path];
  while (queue.length > 0 && seen.size < MAX_LOCATIONS) {
    const location = queue.pop()!;
    for (const op of ops) {
      if (op.kind !== 'rename' || !isSameOrUnder(location, op.path)) continue;
      const moved = rebase(location, op.path, op.to);
      if (!seen.has(moved)) {
        seen.add(moved);
        queue.push(moved);
      }
    }
  }
  return [...seen];
}

const holds = (entry: FuzzEntry, version: Version): boolean =>
  version.type === 'file' ? entry.type === 'file' && entry.hash === version.hash : entry.type === 'symlink' && entry.target === version.target;

export interface Problem {
  readonly invariant: 'lost' | 'resurrected' | 'changed';
  readonly path: string;
  readonly token: string;
  readonly message: string;
}

/**
 * The invariants of a round (beyond identical trees, which the caller
 * checks while it waits for psync to be quiet):
 *
 * - lost: every version the round started with, and every version an
 *   operation wrote, still exists (at its path, where a rename took it, or
 *   in a conflict copy beside either), unless an operation that could have
 *   seen it replaced or removed it: one that ended after the version's write
 *   started, on either side. An edit racing a delete on the other side is
 *   kept by that rule (the delete ended before the edit started).
 * - resurrected: an entry the round started with that a delete or rm -rf
 *   removed, and that no other operation touched (no write, rename, mkdir,
 *   chmod or symlink at it, above it or below it, on the other side at any
 *   time, on the same side after the delete, or on the same side before it
 *   when psync was killed or lost its link in the round or when it renamed
 *   the entry or a directory above it out of the delete's way), is gone, and a
 *   deleted file's token is nowhere.
 * - changed: an entry the round started with that no operation named at,
 *   above or below it is unchanged (type, mode, content, target); one that
 *   only chmods touched keeps its content and gets one of their modes.
 */
export function checkRound(round: RoundRecord): Problem[] {
  const { before, ops, after, ignored } = round;
  const problems: Problem[] = [];

  const versions: Version[] = [];
  for (const [path, e] of before) {
    if (ignored(path)) continue;
    if (e.type === 'file' && e.hash !== undefined) versions.push({ type: 'file', path, hash: e.hash, id: e.token ?? '(none)', start: -Infinity });
    if (e.type === 'symlink' && e.target !== undefined) versions.push({ type: 'symlink', path, target: e.target, id: e.target, start: -Infinity });
  }
  for (const op of ops) if (op.version !== undefined) versions.push(op.version);

  for (const version of versions) {
    const locations = locationsOf(version.path, ops);
    const destroyedBy = ops.find((op) => op.token !== version.by && op.end > version.start && locations.some((l) => destroys(op, l)));
    if (destroyedBy !== undefined) continue;
    const at = (path: string): boolean => locations.some((l) => path === l || isConflictCopyOf(path, l));
    const found = [...after].filter(([, e]) => holds(e, version)).map(([path]) => path);
    if (found.some(at)) continue;
    problems.push({
      invariant: 'lost',
      path: version.path,
      token: version.id,
      message:
        `lost: ${version.path}: the ${version.type} version ${version.id} (${version.by === undefined ? 'there when the round started' : `written by operation ${version.by}`}) ` +
        `is neither at ${locations.join(', ')} nor in a conflict copy beside ${locations.length > 1 ? 'one' : 'it'}` +
        (found.length > 0 ? `; it is only at ${found.join(', ')}` : '; it is nowhere'),
    });
  }

  const tokenCount = new Map<string, number>();
  for (const e of before.values()) if (e.token !== undefined) tokenCount.set(e.token, (tokenCount.get(e.token) ?? 0) + 1);
  for (const del of ops) {
    if (!DELETES.has(del.kind) || !del.ok) continue;
    for (const [path, e] of before) {
      if (ignored(path) || !isSameOrUnder(path, del.path)) continue;
      const touched = ops.some(
        (op) =>
          op !== del &&
          !DELETES.has(op.kind) &&
          // A rename on the delete's side before it took the entry out of its way: the delete never saw it.
          (op.side !== del.side || op.start > del.end || round.faulted || (op.kind === 'rename' && isSameOrUnder(path, op.path))) &&
          pathsOf(op).some((p) => related(p, path)),
      );
      if (touched) continue;
      const what = `${e.type} ${path}${e.token === undefined ? '' : ` (token ${e.token})`}, deleted by ${del.token} (${del.kind} of ${del.path} on the ${del.side}) and touched by nothing else`;
      if (after.has(path)) {
        problems.push({ invariant: 'resurrected', path, token: e.token ?? del.token, message: `resurrected: ${what}, exists again` });
      } else if (e.type === 'file' && e.token !== undefined && tokenCount.get(e.token) === 1) {
        const copies = [...after].filter(([, x]) => x.token === e.token).map(([p]) => p);
        if (copies.length > 0) problems.push({ invariant: 'resurrected', path, token: e.token, message: `resurrected: ${what}, is back at ${copies.join(', ')}` });
      }
    }
  }

  for (const [path, e] of before) {
    if (ignored(path)) continue;
    const touching = ops.filter((op) => pathsOf(op).some((p) => related(p, path)));
    const now = after.get(path);
    const token = e.token ?? e.target ?? '(none)';
    if (touching.length === 0) {
      if (now === undefined || !sameEntry(now, e)) {
        problems.push({ invariant: 'changed', path, token, message: `changed: ${path}, touched by no operation, was ${describeEntry(e)}, is ${now === undefined ? 'gone' : describeEntry(now)}` });
      }
    } else if (touching.every((op) => op.kind === 'chmod' && op.path === path)) {
      // Each side's last chmod may stand (when both sides chmodded, either one); when none worked, the mode stays.
      const lastModes = SIDES.flatMap((side) => {
        const last = touching.filter((op) => op.side === side && op.ok).at(-1);
        return last?.kind === 'chmod' ? [last.mode] : [];
      });
      const allowed = lastModes.length > 0 ? lastModes : [e.mode];
      if (now === undefined || now.type !== e.type || now.hash !== e.hash || !allowed.includes(now.mode)) {
        problems.push({
          invariant: 'changed',
          path,
          token,
          message: `changed: ${path}, only chmodded (to ${allowed.map((m) => m.toString(8)).join(' or ')}), was ${describeEntry(e)}, is ${now === undefined ? 'gone' : describeEntry(now)}`,
        });
      }
    }
  }
  return problems;
}

/** The operations that name `path`, at it, above it or below it, one line each. */
export function opsAbout(ops: readonly Op[], path: string): string {
  return ops
    .filter((op) => pathsOf(op).some((p) => related(p, path)))
    .map(describeOp)
    .join('\n');
}

/** A `performance.now()` time as the wall clock's HH:MM:SS.mmm, as psync's log shows it. */
function clock(at: number): string {
  const date = new Date(performance.timeOrigin + at);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

export function describeOp(op: Op): string {
  const target = op.kind === 'rename' ? ` -> ${op.to}` : op.kind === 'symlink' ? ` -> ${op.target}` : op.kind === 'chmod' ? ` ${op.mode.toString(8)}` : '';
  const outcome = op.ok ? (WRITES.has(op.kind) && op.version === undefined ? 'ok (the file was unlinked under it)' : 'ok') : `failed ${op.error ?? ''}`;
  return `  ${clock(op.start)} (${(op.end - op.start).toFixed(1)} ms) ${op.side} ${op.kind} ${op.path}${target} [${op.token}]${op.down === true ? ' (psync down)' : ''}: ${outcome}`;
}

// ---------------------------------------------------------------------------
// Processes

/** The direct children of `pid` (all of its threads'). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
      for (const word of text.split(' ')) if (word.trim() !== '') out.push(Number(word));
    }
  } catch {
    // gone
  }
  return out;
}

export function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  for (let queue = childrenOf(pid); queue.length > 0; ) {
    const next = queue.shift()!;
    out.push(next);
    queue = [...queue, ...childrenOf(next)];
  }
  return out;
}

/** Alive and not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '(gone)';
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}
