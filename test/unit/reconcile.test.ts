import { describe, expect, test } from 'vitest';
import { CONFLICT_MARK, conflictName } from '../../src/core/conflict.js';
import { ancestorsOf, isSameOrUnder, parentOf, rebase } from '../../src/core/paths.js';
import {
  hashesNeeded,
  reconcile,
  sameVersion,
  type Agreed,
  type Observed,
  type Plan,
  type Record as ArchiveRecord,
  type Snapshot,
  type Step,
  type Version,
} from '../../src/core/reconcile.js';
import { sourceOf, targetOf, type Side } from '../../src/core/types.js';
import { described } from '../support/table.js';

// ---------------------------------------------------------------------------
// Tree fixtures. A tree is `{ path: spec }`; a trailing "/" marks a
// directory for the reader and is dropped. Each entry has an identity `id`
// (its path unless given): the same id on a side is the same inode there, so
// an entry renamed on a side keeps the id of its old path. Inodes differ
// between the sides, as they do on two hosts. An mtime is T0 plus `at`
// seconds, by default a number derived from the content, so `v2` is newer
// than `v1` and `v3` newer than `v2`.

type Kind = 'file' | 'dir' | 'symlink';
interface Spec {
  readonly kind: Kind;
  /** A file's bytes, a symlink's target. */
  readonly content: string;
  readonly at?: number;
  readonly mode?: number;
  readonly id?: string;
  /** The snapshot carries the content's digest. */
  readonly hash?: boolean;
  /** The digest of other bytes than `content` (same size and mtime, other content). */
  readonly hashOf?: string;
  /** An explicit inode (0: unknown). */
  readonly ino?: number;
  readonly birth?: number;
}
type Tree = Readonly<{ [path: string]: Spec }>;

const T0 = Date.UTC(2024, 0, 1);
const file = (content: string, more: Omit<Partial<Spec>, 'kind' | 'content'> = {}): Spec => ({ kind: 'file', content, ...more });
const dir = (more: Omit<Partial<Spec>, 'kind' | 'content'> = {}): Spec => ({ kind: 'dir', content: '', ...more });
const link = (target: string, more: Omit<Partial<Spec>, 'kind' | 'content'> = {}): Spec => ({ kind: 'symlink', content: target, ...more });

const secondsOf = (content: string): number => [...content].reduce((sum, ch) => sum + ch.charCodeAt(0), 0);
const mtimeOf = (spec: Spec): number => T0 + (spec.at ?? (spec.kind === 'dir' ? 0 : secondsOf(spec.content))) * 1000;
/** The conflict copy of `path` for a loser written with `content` (or at `at` seconds). */
const cc = (path: string, loser: string | number, attempt = 0): string =>
  conflictName(path, T0 + (typeof loser === 'number' ? loser : secondsOf(loser)) * 1000, attempt);

const inodes = new Map<string, number>();
function inoOf(side: Side, id: string): number {
  const key = `${side}:${id}`;
  let ino = inodes.get(key);
  if (ino === undefined) {
    ino = 100 + inodes.size;
    inodes.set(key, ino);
  }
  return ino;
}

const normal = (path: string): string => (path.endsWith('/') ? path.slice(0, -1) : path);

function versionOf(spec: Spec): Version {
  const size = spec.kind === 'dir' ? 4096 : spec.content.length;
  const mode = spec.mode ?? (spec.kind === 'file' ? 0o644 : spec.kind === 'dir' ? 0o755 : 0o777);
  const version = { type: spec.kind, size, mtimeMs: mtimeOf(spec), mode };
  if (spec.hashOf !== undefined) return { ...version, hash: `h:${spec.hashOf}` };
  return spec.hash === true ? { ...version, hash: `h:${spec.content}` } : version;
}

function identity(spec: Spec, side: Side, path: string): { ino: number; birthMs?: number } {
  const ino = spec.ino ?? inoOf(side, spec.id ?? path);
  return spec.birth === undefined ? { ino } : { ino, birthMs: spec.birth };
}

function observed(tree: Tree, side: Side): Map<string, Observed> {
  return new Map(Object.entries(tree).map(([p, spec]) => [normal(p), { ...versionOf(spec), ...identity(spec, side, normal(p)) }]));
}

function agreed(tree: Tree): Map<string, Agreed> {
  return new Map(
    Object.entries(tree).map(([p, spec]) => [normal(p), { ...versionOf(spec), left: identity(spec, 'left', normal(p)), right: identity(spec, 'right', normal(p)) }]),
  );
}

/** `tree` without `paths` and what is below them. */
function omit(tree: Tree, ...paths: string[]): Tree {
  return Object.fromEntries(Object.entries(tree).filter(([p]) => !paths.some((gone) => isSameOrUnder(normal(p), normal(gone)))));
}

/** `tree` after `mv from to` on a side: the entries keep their identities; what stood at `to` goes. */
function ren(tree: Tree, from: string, to: string): Tree {
  const out: { [path: string]: Spec } = {};
  const moved: { [path: string]: Spec } = {};
  for (const [p, spec] of Object.entries(tree)) {
    const path = normal(p);
    if (isSameOrUnder(path, from)) moved[rebase(path, from, to)] = { ...spec, id: spec.id ?? path };
    else if (!isSameOrUnder(path, to)) out[path] = spec;
  }
  return { ...out, ...moved };
}

// ---------------------------------------------------------------------------
// Plans in one line per step.

const letter = (side: Side): string => (side === 'left' ? 'L' : 'R');
function show(step: Step): string {
  switch (step.kind) {
    case 'copy':
      return `copy ${step.direction === 'leftToRight' ? 'L->R' : 'R->L'} ${step.path}`;
    case 'move':
      return `move on ${letter(step.side)} ${step.from} -> ${step.to}`;
    case 'delete':
      return `delete on ${letter(step.side)} ${step.path}`;
    case 'conflict':
      return `conflict ${step.path}: ${letter(step.loser)} kept as ${step.copy}`;
  }
}
const showRecord = (record: ArchiveRecord): string => `${record.kind} ${record.path}`;

// ---------------------------------------------------------------------------
// A model of both trees the plan is applied to, the way the helper and
// rsync would: each move and delete checks that its target still holds what
// it expects, a delete refuses a directory that is not empty, a move refuses
// an occupied destination and makes missing parents, a copy needs its parent
// and must not meet an entry of another type (that one is deleted first).

interface Held {
  readonly v: Observed;
  /** What the entry holds: a file's bytes, a symlink's target ('' for a directory). */
  readonly content: string;
}
type Model = Map<string, Held>;

const sameObserved = (a: Observed, b: Observed): boolean =>
  a.type === b.type && a.size === b.size && a.mtimeMs === b.mtimeMs && a.mode === b.mode && a.hash === b.hash && a.ino === b.ino && a.birthMs === b.birthMs;

const hasChildren = (model: Model, path: string): boolean => {
  for (const p of model.keys()) if (p.startsWith(`${path}/`)) return true;
  return false;
};

let madeInodes = 1_000_000;

function applyPlan(plan: Plan, trees: { left: Model; right: Model }): void {
  for (const step of plan.steps) {
    const what = show(step);
    switch (step.kind) {
      case 'move': {
        const tree = trees[step.side];
        const held = tree.get(step.from);
        if (held === undefined || !sameObserved(held.v, step.expect)) throw new Error(`${what}: the source is not what the step expects`);
        if (tree.has(step.to)) throw new Error(`${what}: the destination is taken`);
        for (const dirPath of ancestorsOf(step.to).reverse()) {
          const there = tree.get(dirPath);
          if (there === undefined) tree.set(dirPath, { v: { type: 'dir', size: 4096, mtimeMs: 0, mode: 0o700, ino: madeInodes++ }, content: '' });
          else if (there.v.type !== 'dir') throw new Error(`${what}: ${dirPath} is not a directory`);
        }
        const moving = [...tree].filter(([p]) => isSameOrUnder(p, step.from));
        for (const [p] of moving) tree.delete(p);
        for (const [p, h] of moving) tree.set(rebase(p, step.from, step.to), h);
        break;
      }
      case 'delete': {
        const tree = trees[step.side];
        const held = tree.get(step.path);
        if (held === undefined || !sameObserved(held.v, step.expect)) throw new Error(`${what}: the target is not what the step expects`);
        if (held.v.type === 'dir' && hasChildren(tree, step.path)) throw new Error(`${what}: the directory is not empty`);
        tree.delete(step.path);
        break;
      }
      case 'copy': {
        const source = trees[sourceOf(step.direction)];
        const target = trees[targetOf(step.direction)];
        const held = source.get(step.path);
        if (held === undefined || !sameObserved(held.v, step.version)) throw new Error(`${what}: the source is not the version planned`);
        const parent = parentOf(step.path);
        if (parent !== '' && target.get(parent)?.v.type !== 'dir') throw new Error(`${what}: no parent directory on the target`);
        const there = target.get(step.path);
        if (there !== undefined && there.v.type !== held.v.type) throw new Error(`${what}: meets a ${there.v.type} on the target`);
        target.set(step.path, { v: { ...held.v, ino: there?.v.ino ?? madeInodes++ }, content: held.content });
        break;
      }
      case 'conflict':
        break;
    }
  }
}

/** What a reader of the tree sees at a path: type, content and the metadata rsync keeps. */
const look = (h: Held): string =>
  h.v.type === 'dir'
    ? `dir ${h.v.mode.toString(8)}`
    : `${h.v.type} ${JSON.stringify(h.content)} ${h.v.size} ${Math.floor(h.v.mtimeMs * 1000) / 1000}${h.v.type === 'file' ? ` ${h.v.mode.toString(8)}` : ''}`;
const contentKey = (h: { v: { type: string }; content: string }): string => `${h.v.type}:${h.content}`;

const listing = (model: Model): string[] => [...model].map(([p, h]) => `${p}: ${look(h)}`).sort();

interface Case {
  readonly archive: Snapshot<Agreed>;
  /** Each archived path's content (the archive holds no content; the model needs it). */
  readonly archived: ReadonlyMap<string, string>;
  readonly left: Model;
  readonly right: Model;
}

/**
 * Reconcile, apply, and check what must hold for every input: both trees
 * end identical, every version last written on either side still exists
 * (at its path or elsewhere: a conflict copy, a new name), nothing appears
 * that neither side held, an entry deleted on one side and unchanged on the
 * other stays deleted, and a change meeting an unchanged side wins its path.
 */
function checkConvergence(c: Case): Plan {
  const snapshot = (model: Model): Map<string, Observed> => new Map([...model].map(([p, h]) => [p, h.v]));
  const plan = reconcile(c.archive, snapshot(c.left), snapshot(c.right));
  const trees = { left: new Map(c.left), right: new Map(c.right) };
  applyPlan(plan, trees);
  expect(listing(trees.right)).toEqual(listing(trees.left));

  // Records name archive paths before the moves: carried along by the renames, they describe the result.
  const asides = new Set(plan.steps.flatMap((s) => (s.kind === 'conflict' ? [`${s.loser}:${s.copy}`] : [])));
  const renames = plan.steps.filter((s): s is Extract<Step, { kind: 'move' }> => s.kind === 'move' && !asides.has(`${s.side}:${s.to}`));
  const afterRenames = (path: string): string => renames.reduce((p, m) => (isSameOrUnder(p, m.from) ? rebase(p, m.from, m.to) : p), path);
  for (const record of plan.records) {
    const path = afterRenames(record.path);
    if (record.kind === 'forget') {
      expect(trees.left.has(path) || trees.right.has(path), `forgotten ${record.path} is gone`).toBe(false);
      continue;
    }
    const l = trees.left.get(path)?.v;
    const r = trees.right.get(path)?.v;
    expect(l !== undefined && r !== undefined && sameVersion(record.entry, l) && sameVersion(record.entry, r), `agreed ${record.path} is what both hold`).toBe(true);
    expect([record.entry.left.ino, record.entry.right.ino], `agreed ${record.path} names both inodes`).toEqual([l!.ino, r!.ino]);
  }

  const final = trees.left;
  const finalContents = new Set([...final.values()].map(contentKey));
  const held = new Set([...c.left.values(), ...c.right.values()].map(contentKey));
  for (const h of final.values()) expect(held, `nothing invented: ${contentKey(h)}`).toContain(contentKey(h));

  const archivedKey = (path: string): string | undefined => {
    const a = c.archive.get(path);
    return a === undefined ? undefined : `${a.type}:${c.archived.get(path) ?? ''}`;
  };
  const unchanged = (side: Side, path: string): boolean => {
    const a = c.archive.get(path);
    const h = (side === 'left' ? c.left : c.right).get(path);
    if (a === undefined || h === undefined) return a === undefined && h === undefined;
    return archivedKey(path) === contentKey(h) && sameVersion(a, h.v) && a.mtimeMs === h.v.mtimeMs && (a[side].ino === 0 || a[side].ino === h.v.ino);
  };
  // Contents the archive held somewhere: an entry holding one (renamed, restored with `cp -p`) is no new write.
  const archivedContents = new Set([...c.archive.keys()].map((p) => archivedKey(p)!));
  const keptAsConflictCopy = (path: string, h: Held): boolean =>
    [...final].some(([p, there]) => p.includes(CONFLICT_MARK) && parentOf(p) === parentOf(path) && contentKey(there) === contentKey(h));
  for (const side of ['left', 'right'] as const) {
    const mine = side === 'left' ? c.left : c.right;
    const theirs = side === 'left' ? c.right : c.left;
    const other: Side = side === 'left' ? 'right' : 'left';
    for (const [path, h] of mine) {
      const written = h.v.type === 'dir' ? !unchanged(side, path) && c.archive.get(path)?.[side].ino === h.v.ino : !archivedContents.has(contentKey(h));
      if (!written) continue;
      if (h.v.type !== 'dir') expect(finalContents, `${side}'s last write at ${path} survives`).toContain(contentKey(h));
      // Where the other side left the path and every directory above it as archived, the change keeps its place.
      const placeKept = ancestorsOf(path).every((dirPath) => (c.archive.has(dirPath) ? unchanged(other, dirPath) : !theirs.has(dirPath)));
      if (unchanged(other, path) && placeKept) {
        const there = final.get(path);
        const wins = there !== undefined && contentKey(there) === contentKey(h) && (h.v.type === 'symlink' || there.v.mode === h.v.mode);
        expect(wins || keptAsConflictCopy(path, h), `${side}'s change at ${path} wins against the unchanged ${other}`).toBe(true);
      }
    }
    for (const path of c.archive.keys()) {
      if (mine.has(path)) continue;
      const below = [...theirs.keys()].filter((p) => isSameOrUnder(p, path));
      const untouched = below.length > 0 && below.every((p) => unchanged(other, p));
      if (untouched) expect(final.has(path), `${path}, deleted on the ${side} and unchanged on the ${other}, stays deleted`).toBe(false);
    }
  }
  return plan;
}

function modelOf(tree: Tree, side: Side): Model {
  const versions = observed(tree, side);
  return new Map(Object.entries(tree).map(([p, spec]) => [normal(p), { v: versions.get(normal(p))!, content: spec.hashOf ?? spec.content }]));
}

const caseOf = (archive: Tree, left: Tree, right: Tree): Case => ({
  archive: agreed(archive),
  archived: new Map(Object.entries(archive).map(([p, spec]) => [normal(p), spec.content])),
  left: modelOf(left, 'left'),
  right: modelOf(right, 'right'),
});

// ---------------------------------------------------------------------------
// The table.

const F: Tree = { f: file('v1') };
const D: Tree = { 'd/': dir(), 'd/x': file('x1'), 'd/y': file('y1') };
const S: Tree = { s: link('t1') };
/** For the renames. */
const M: Tree = { a: file('a1'), b: file('b1'), 'd/': dir(), 'd/x': file('x1'), 'd/y': file('y1'), 'sub/': dir() };
const NESTED: Tree = { 'd/': dir(), 'd/s/': dir(), 'd/s/y': file('y1'), 'd/z': file('z1') };

interface Row {
  readonly description: string;
  readonly archive: Tree;
  readonly left: Tree;
  readonly right: Tree;
  readonly steps: readonly string[];
  readonly records?: readonly string[];
}

const conflict = (path: string, loser: 'L' | 'R', copy: string): string => `conflict ${path}: ${loser} kept as ${copy}`;

const rows: Row[] = [
  // A file at an archived path: each side unchanged, changed or deleted.
  { description: 'file: unchanged on both sides: nothing', archive: F, left: F, right: F, steps: [] },
  { description: 'file: changed on the left: copied to the right', archive: F, left: { f: file('v2') }, right: F, steps: ['copy L->R f'] },
  { description: 'file: changed on the right: copied to the left', archive: F, left: F, right: { f: file('v2') }, steps: ['copy R->L f'] },
  { description: 'file: deleted on the left, unchanged on the right: deleted on the right', archive: F, left: {}, right: F, steps: ['delete on R f'] },
  { description: 'file: deleted on the right, unchanged on the left: deleted on the left', archive: F, left: F, right: {}, steps: ['delete on L f'] },
  { description: 'file: deleted on both sides: forgotten', archive: F, left: {}, right: {}, steps: [], records: ['forget f'] },
  { description: 'file: changed on the left, deleted on the right: the change is restored on the right', archive: F, left: { f: file('v2') }, right: {}, steps: ['copy L->R f'] },
  { description: 'file: deleted on the left, changed on the right: the change is restored on the left', archive: F, left: {}, right: { f: file('v2') }, steps: ['copy R->L f'] },
  {
    description: 'file: changed differently on both sides: a conflict, the newer (right) keeps the name, the left version is kept as a copy on both sides',
    archive: F,
    left: { f: file('v2') },
    right: { f: file('v3') },
    steps: [`move on L f -> ${cc('f', 'v2')}`, 'copy R->L f', `copy L->R ${cc('f', 'v2')}`, conflict('f', 'L', cc('f', 'v2'))],
  },
  {
    description: 'file: changed differently on both sides, the left newer: the right version is set aside',
    archive: F,
    left: { f: file('v3') },
    right: { f: file('v2') },
    steps: [`move on R f -> ${cc('f', 'v2')}`, 'copy L->R f', `copy R->L ${cc('f', 'v2')}`, conflict('f', 'R', cc('f', 'v2'))],
  },
  { description: 'file: changed the same way on both sides: agreed, nothing sent', archive: F, left: { f: file('v2') }, right: { f: file('v2') }, steps: [], records: ['agree f'] },
  { description: 'file: only the mode changed on the left: copied', archive: F, left: { f: file('v1', { mode: 0o600 }) }, right: F, steps: ['copy L->R f'] },
  {
    description: 'file: the mode changed differently on both sides, content and mtime unchanged: the tie goes to the left, no conflict',
    archive: F,
    left: { f: file('v1', { mode: 0o600 }) },
    right: { f: file('v1', { mode: 0o640 }) },
    steps: ['copy L->R f'],
  },
  { description: 'file: replaced on the left by a new inode (an atomic save) with new content: copied', archive: F, left: { f: file('v2', { id: 'saved' }) }, right: F, steps: ['copy L->R f'] },

  // A file at a path the archive does not hold (a first run, or new since).
  { description: 'new file on the left: copied to the right', archive: {}, left: F, right: {}, steps: ['copy L->R f'] },
  { description: 'new file on the right: copied to the left', archive: {}, left: {}, right: F, steps: ['copy R->L f'] },
  { description: 'new file on both sides, the same version: agreed without a transfer', archive: {}, left: F, right: F, steps: [], records: ['agree f'] },
  {
    description: 'new file on both sides, other content: a conflict, both kept',
    archive: {},
    left: { f: file('v2') },
    right: { f: file('v3') },
    steps: [`move on L f -> ${cc('f', 'v2')}`, 'copy R->L f', `copy L->R ${cc('f', 'v2')}`, conflict('f', 'L', cc('f', 'v2'))],
  },
  {
    description: 'new file on both sides, equal content by digest at other mtimes: the newer mtime is copied, no conflict',
    archive: {},
    left: { f: file('v1', { hash: true, at: 10 }) },
    right: { f: file('v1', { hash: true, at: 20 }) },
    steps: ['copy R->L f'],
  },
  {
    description: 'bug 7: both sides write the same path within a microsecond with the same size and other bytes (digests differ): a conflict, the tie to the left',
    archive: {},
    left: { f: file('v2', { hash: true, at: 5 }) },
    right: { f: file('v3', { hash: true, at: 5.0000004 }) },
    steps: [`move on R f -> ${cc('f', 5)}`, 'copy L->R f', `copy R->L ${cc('f', 5)}`, conflict('f', 'R', cc('f', 5))],
  },
  {
    description: 'new file on both sides with equal size and mtime and no digests: counted as the same (hashesNeeded asks for the digests)',
    archive: {},
    left: { f: file('v2', { at: 5 }) },
    right: { f: file('v3', { at: 5 }) },
    steps: [],
    records: ['agree f'],
  },

  // A directory (with two files) at an archived path.
  { description: 'dir: unchanged on both sides: nothing', archive: D, left: D, right: D, steps: [] },
  { description: 'dir: mode changed on the left: copied', archive: D, left: { ...D, 'd/': dir({ mode: 0o700 }) }, right: D, steps: ['copy L->R d'] },
  { description: 'dir: mode changed on the right: copied', archive: D, left: D, right: { ...D, 'd/': dir({ mode: 0o700 }) }, steps: ['copy R->L d'] },
  {
    description: 'dir: deleted with its contents on the left: deleted on the right, deepest first',
    archive: D,
    left: {},
    right: D,
    steps: ['delete on R d/y', 'delete on R d/x', 'delete on R d'],
  },
  { description: 'dir: deleted with its contents on the right: deleted on the left', archive: D, left: D, right: {}, steps: ['delete on L d/y', 'delete on L d/x', 'delete on L d'] },
  { description: 'dir: deleted on both sides: forgotten once, at the top', archive: D, left: {}, right: {}, steps: [], records: ['forget d'] },
  {
    description: 'dir: mode changed on the left, deleted on the right: the directory is restored, its unchanged contents stay deleted',
    archive: D,
    left: { ...D, 'd/': dir({ mode: 0o700 }) },
    right: {},
    steps: ['delete on L d/y', 'delete on L d/x', 'copy L->R d'],
  },
  {
    description: 'dir: deleted on the left, mode changed on the right: restored on the left, its unchanged contents deleted on the right',
    archive: D,
    left: {},
    right: { ...D, 'd/': dir({ mode: 0o700 }) },
    steps: ['delete on R d/y', 'delete on R d/x', 'copy R->L d'],
  },
  {
    description: 'dir: mode changed differently on both sides: the newer directory mtime keeps its mode, no conflict',
    archive: D,
    left: { ...D, 'd/': dir({ mode: 0o700, at: 5 }) },
    right: { ...D, 'd/': dir({ mode: 0o750, at: 9 }) },
    steps: ['copy R->L d'],
  },
  { description: 'dir: mode changed the same way on both sides: agreed', archive: D, left: { ...D, 'd/': dir({ mode: 0o700 }) }, right: { ...D, 'd/': dir({ mode: 0o700 }) }, steps: [], records: ['agree d'] },

  // A directory the archive does not hold.
  { description: 'new dir on the left with a file: the dir is copied before the file', archive: {}, left: { 'n/': dir(), 'n/f': file('v1') }, right: {}, steps: ['copy L->R n', 'copy L->R n/f'] },
  { description: 'new dir on the right with a file: copied to the left', archive: {}, left: {}, right: { 'n/': dir(), 'n/f': file('v1') }, steps: ['copy R->L n', 'copy R->L n/f'] },
  {
    description: 'new dir on both sides with other files: the dir is agreed, the files cross',
    archive: {},
    left: { 'n/': dir(), 'n/a': file('a1') },
    right: { 'n/': dir(), 'n/b': file('b1') },
    steps: ['copy L->R n/a', 'copy R->L n/b'],
    records: ['agree n'],
  },
  {
    description: 'new dir on both sides with other modes: the newer mode wins, no conflict',
    archive: {},
    left: { 'n/': dir({ mode: 0o700, at: 3 }) },
    right: { 'n/': dir({ at: 1 }) },
    steps: ['copy L->R n'],
  },

  // A symlink at an archived path.
  { description: 'symlink: unchanged on both sides: nothing', archive: S, left: S, right: S, steps: [] },
  { description: 'symlink: retargeted on the left: copied', archive: S, left: { s: link('t2') }, right: S, steps: ['copy L->R s'] },
  { description: 'symlink: retargeted on the right: copied', archive: S, left: S, right: { s: link('t2') }, steps: ['copy R->L s'] },
  { description: 'symlink: deleted on the left: deleted on the right', archive: S, left: {}, right: S, steps: ['delete on R s'] },
  { description: 'symlink: deleted on the right: deleted on the left', archive: S, left: S, right: {}, steps: ['delete on L s'] },
  { description: 'symlink: deleted on both sides: forgotten', archive: S, left: {}, right: {}, steps: [], records: ['forget s'] },
  { description: 'symlink: retargeted on the left, deleted on the right: restored', archive: S, left: { s: link('t2') }, right: {}, steps: ['copy L->R s'] },
  { description: 'symlink: deleted on the left, retargeted on the right: restored', archive: S, left: {}, right: { s: link('t2') }, steps: ['copy R->L s'] },
  {
    description: 'symlink: retargeted differently on both sides: a conflict, both kept',
    archive: S,
    left: { s: link('t2') },
    right: { s: link('t3') },
    steps: [`move on L s -> ${cc('s', 't2')}`, 'copy R->L s', `copy L->R ${cc('s', 't2')}`, conflict('s', 'L', cc('s', 't2'))],
  },
  {
    description: 'symlink: retargeted the same on both sides at other mtimes (equal digests): the newer is copied, no conflict',
    archive: S,
    left: { s: link('t2', { hash: true, at: 3 }) },
    right: { s: link('t2', { hash: true, at: 4 }) },
    steps: ['copy R->L s'],
  },

  // A symlink the archive does not hold.
  { description: 'new symlink on the left: copied', archive: {}, left: S, right: {}, steps: ['copy L->R s'] },
  { description: 'new symlink on the right: copied', archive: {}, left: {}, right: S, steps: ['copy R->L s'] },
  { description: 'new symlink on both sides, same target and mtime: agreed', archive: {}, left: S, right: S, steps: [], records: ['agree s'] },
  {
    description: 'new symlink on both sides, other targets: a conflict',
    archive: {},
    left: { s: link('t2') },
    right: { s: link('t3') },
    steps: [`move on L s -> ${cc('s', 't2')}`, 'copy R->L s', `copy L->R ${cc('s', 't2')}`, conflict('s', 'L', cc('s', 't2'))],
  },

  // Type changes on one side, the other unchanged.
  {
    description: 'type: file replaced by a dir on the left: the right file is deleted, then the dir and its contents copied',
    archive: F,
    left: { 'f/': dir(), 'f/a': file('a1') },
    right: F,
    steps: ['delete on R f', 'copy L->R f', 'copy L->R f/a'],
  },
  {
    description: 'type: file replaced by a dir on the right',
    archive: F,
    left: F,
    right: { 'f/': dir(), 'f/a': file('a1') },
    steps: ['delete on L f', 'copy R->L f', 'copy R->L f/a'],
  },
  {
    description: 'type: dir replaced by a file on the left: the right dir is emptied deepest first and deleted, then the file copied',
    archive: D,
    left: { d: file('v1') },
    right: D,
    steps: ['delete on R d/y', 'delete on R d/x', 'delete on R d', 'copy L->R d'],
  },
  { description: 'type: dir replaced by a file on the right', archive: D, left: D, right: { d: file('v1') }, steps: ['delete on L d/y', 'delete on L d/x', 'delete on L d', 'copy R->L d'] },
  { description: 'type: file replaced by a symlink on the left', archive: F, left: { f: link('t1') }, right: F, steps: ['delete on R f', 'copy L->R f'] },
  { description: 'type: symlink replaced by a file on the right', archive: S, left: S, right: { s: file('v1') }, steps: ['delete on L s', 'copy R->L s'] },
  { description: 'type: dir replaced by a symlink on the left', archive: D, left: { d: link('t1') }, right: D, steps: ['delete on R d/y', 'delete on R d/x', 'delete on R d', 'copy L->R d'] },
  {
    description: 'type: symlink replaced by a dir on the right',
    archive: S,
    left: S,
    right: { 's/': dir(), 's/a': file('a1') },
    steps: ['delete on L s', 'copy R->L s', 'copy R->L s/a'],
  },

  // Type changes meeting a change on the other side.
  {
    description: 'type: file replaced by a dir on the left, edited on the right: the dir keeps the name, the right file is set aside',
    archive: F,
    left: { 'f/': dir(), 'f/a': file('a1') },
    right: { f: file('v3') },
    steps: [`move on R f -> ${cc('f', 'v3')}`, 'copy L->R f', `copy R->L ${cc('f', 'v3')}`, 'copy L->R f/a', conflict('f', 'R', cc('f', 'v3'))],
  },
  {
    description: 'type: dir replaced by a file on the left while the right edited a file in it: the dir stays, the left file is set aside',
    archive: D,
    left: { d: file('v2') },
    right: { ...D, 'd/x': file('x2') },
    steps: [`move on L d -> ${cc('d', 'v2')}`, 'delete on R d/y', 'copy R->L d', `copy L->R ${cc('d', 'v2')}`, 'copy R->L d/x', conflict('d', 'L', cc('d', 'v2'))],
  },
  {
    description: 'type: dir replaced by a file on the left while the right added a file in it: the dir stays with the new file only',
    archive: D,
    left: { d: file('v2') },
    right: { ...D, 'd/n': file('n1') },
    steps: [
      `move on L d -> ${cc('d', 'v2')}`,
      'delete on R d/y',
      'delete on R d/x',
      'copy R->L d',
      `copy L->R ${cc('d', 'v2')}`,
      'copy R->L d/n',
      conflict('d', 'L', cc('d', 'v2')),
    ],
  },
  {
    description: 'type: file replaced by a dir on both sides: the dir is agreed, the contents merged',
    archive: F,
    left: { 'f/': dir(), 'f/a': file('a1') },
    right: { 'f/': dir(), 'f/b': file('b1') },
    steps: ['copy L->R f/a', 'copy R->L f/b'],
    records: ['agree f'],
  },
  {
    description: 'type: file replaced by a symlink on the left and by a dir on the right: the dir keeps the name',
    archive: F,
    left: { f: link('t1') },
    right: { 'f/': dir() },
    steps: [`move on L f -> ${cc('f', 't1')}`, 'copy R->L f', `copy L->R ${cc('f', 't1')}`, conflict('f', 'L', cc('f', 't1'))],
  },
  {
    description: 'type: file replaced by a symlink on the left, edited on the right: the newer keeps the name',
    archive: F,
    left: { f: link('t1') },
    right: { f: file('v3') },
    steps: [`move on L f -> ${cc('f', 't1')}`, 'copy R->L f', `copy L->R ${cc('f', 't1')}`, conflict('f', 'L', cc('f', 't1'))],
  },
  {
    description: 'type: file deleted on the left, replaced by a dir on the right: the dir is restored to the left',
    archive: F,
    left: {},
    right: { 'f/': dir(), 'f/a': file('a1') },
    steps: ['copy R->L f', 'copy R->L f/a'],
  },
  {
    description: 'type: first run with a file on the left and a dir on the right at one path: the dir keeps the name',
    archive: {},
    left: { x: file('v1') },
    right: { 'x/': dir(), 'x/a': file('a1') },
    steps: [`move on L x -> ${cc('x', 'v1')}`, 'copy R->L x', `copy L->R ${cc('x', 'v1')}`, 'copy R->L x/a', conflict('x', 'L', cc('x', 'v1'))],
  },

  // A directory deleted on one side while something inside changed on the other.
  {
    description: 'dir deleted on the left while the right edited a file in it: the dir and the edit are restored, the unchanged file is deleted',
    archive: D,
    left: {},
    right: { ...D, 'd/x': file('x2') },
    steps: ['delete on R d/y', 'copy R->L d', 'copy R->L d/x'],
  },
  {
    description: 'dir deleted on the left while the right added a file in it: only the new file survives',
    archive: D,
    left: {},
    right: { ...D, 'd/n': file('n1') },
    steps: ['delete on R d/y', 'delete on R d/x', 'copy R->L d', 'copy R->L d/n'],
  },
  {
    description: 'dir deleted on the right while the left edited a nested file: every directory above it is restored',
    archive: NESTED,
    left: { ...NESTED, 'd/s/y': file('y2') },
    right: {},
    steps: ['delete on L d/z', 'copy L->R d', 'copy L->R d/s', 'copy L->R d/s/y'],
  },
  {
    description: 'dir deleted on the left while the right changed the mode of a file in it: the file is restored',
    archive: D,
    left: {},
    right: { ...D, 'd/x': file('x1', { mode: 0o600 }) },
    steps: ['delete on R d/y', 'copy R->L d', 'copy R->L d/x'],
  },
  {
    description: 'dir deleted on the left, one file in it deleted on the right too: the rest is deleted, the gone file forgotten',
    archive: D,
    left: {},
    right: omit(D, 'd/x'),
    steps: ['delete on R d/y', 'delete on R d'],
    records: ['forget d/x'],
  },
  {
    description: 'dir deleted on the left while the right renamed a file out of it: the renamed file survives',
    archive: D,
    left: {},
    right: { 'd/': dir(), 'd/y': file('y1'), z: file('x1', { id: 'd/x' }) },
    steps: ['delete on R d/y', 'delete on R d', 'copy R->L z'],
    records: ['forget d/x'],
  },
  {
    description: 'dir deleted on the left while the right replaced a file in it by a dir: the new dir is restored',
    archive: D,
    left: {},
    right: { 'd/': dir(), 'd/y': file('y1'), 'd/x/': dir(), 'd/x/q': file('q1') },
    steps: ['delete on R d/y', 'copy R->L d', 'copy R->L d/x', 'copy R->L d/x/q'],
  },

  // Renames, also made while psync was stopped.
  { description: 'rename: a file renamed on the left: renamed on the right', archive: M, left: ren(M, 'a', 'g'), right: M, steps: ['move on R a -> g'] },
  { description: 'rename: a file renamed on the right: renamed on the left', archive: M, left: M, right: ren(M, 'a', 'g'), steps: ['move on L a -> g'] },
  { description: 'rename: a dir renamed on the left: one move, not one per entry', archive: M, left: ren(M, 'd', 'e'), right: M, steps: ['move on R d -> e'] },
  {
    description: 'rename: a file renamed and edited on the left: moved, then the edit copied',
    archive: M,
    left: { ...ren(M, 'a', 'g'), g: file('a2', { id: 'a' }) },
    right: M,
    steps: ['move on R a -> g', 'copy L->R g'],
  },
  { description: 'rename: a file moved into an existing dir', archive: M, left: ren(M, 'a', 'sub/a'), right: M, steps: ['move on R a -> sub/a'] },
  {
    description: 'rename: a file moved into a new dir: moved (the helper makes the parent), then the dir copied for its metadata',
    archive: M,
    left: { ...ren(M, 'a', 'n/a'), 'n/': dir() },
    right: M,
    steps: ['move on R a -> n/a', 'copy L->R n'],
  },
  {
    description: 'bug 5: the left renames d to e while the right edits d/x: moved on the right, then the edit copied to the left as e/x',
    archive: M,
    left: ren(M, 'd', 'e'),
    right: { ...M, 'd/x': file('x2') },
    steps: ['move on R d -> e', 'copy R->L e/x'],
  },
  {
    description: 'rename: the left renames d to e while the right adds d/n: moved, then the new file arrives as e/n',
    archive: M,
    left: ren(M, 'd', 'e'),
    right: { ...M, 'd/n': file('n1') },
    steps: ['move on R d -> e', 'copy R->L e/n'],
  },
  {
    description: 'rename: the left renames d to e while the right deletes d/x: moved, then e/x deleted on the left',
    archive: M,
    left: ren(M, 'd', 'e'),
    right: omit(M, 'd/x'),
    steps: ['move on R d -> e', 'delete on L e/x'],
  },
  {
    description: 'rename: renamed on the left, edited on the right: no move, both names kept',
    archive: M,
    left: ren(M, 'a', 'g'),
    right: { ...M, a: file('a2') },
    steps: ['copy R->L a', 'copy L->R g'],
  },
  {
    description: 'rename: renamed on the left, deleted on the right: the new name is copied',
    archive: M,
    left: ren(M, 'a', 'g'),
    right: omit(M, 'a'),
    steps: ['copy L->R g'],
    records: ['forget a'],
  },
  {
    description: 'bug 6: the left renames a onto an existing b while the right deletes a: b holds the content of a on both sides, nothing lost',
    archive: M,
    left: ren(M, 'a', 'b'),
    right: omit(M, 'a'),
    steps: ['copy L->R b'],
    records: ['forget a'],
  },
  {
    description: 'rename: the left renames a onto an existing b, the right unchanged: no move onto the right b, b copied and a deleted',
    archive: M,
    left: ren(M, 'a', 'b'),
    right: M,
    steps: ['delete on R a', 'copy L->R b'],
  },
  { description: 'rename: both sides rename a to g: agreed', archive: M, left: ren(M, 'a', 'g'), right: ren(M, 'a', 'g'), steps: [], records: ['agree g', 'forget a'] },
  {
    description: 'rename: both sides rename a to different names: both names kept',
    archive: M,
    left: ren(M, 'a', 'g'),
    right: ren(M, 'a', 'h'),
    steps: ['copy L->R g', 'copy R->L h'],
    records: ['forget a'],
  },
  {
    description: 'rename: a chain (b -> c, then a -> b): the rename that frees b runs first',
    archive: M,
    left: ren(ren(M, 'b', 'c'), 'a', 'b'),
    right: M,
    steps: ['move on R b -> c', 'move on R a -> b'],
  },
  {
    description: 'rename: a swap (a <-> b through a temp name) is no move: both copied',
    archive: M,
    left: ren(ren(ren(M, 'a', 't'), 'b', 'a'), 't', 'b'),
    right: M,
    steps: ['copy L->R a', 'copy L->R b'],
  },
  {
    description: 'rename: a file renamed out of a renamed dir: the dir first, then the file from its new place',
    archive: M,
    left: ren(ren(M, 'd', 'e'), 'e/x', 'z'),
    right: M,
    steps: ['move on R d -> e', 'move on R e/x -> z'],
  },
  {
    description: 'rename: a file moved into a dir renamed at the same time: the dir first',
    archive: M,
    left: ren(ren(M, 'd', 'e'), 'a', 'e/a'),
    right: M,
    steps: ['move on R d -> e', 'move on R a -> e/a'],
  },
  {
    description: 'rename: a dir renamed and a file in it renamed too: both moves, the dir first',
    archive: M,
    left: ren(ren(M, 'd', 'e'), 'e/x', 'e/x2'),
    right: M,
    steps: ['move on R d -> e', 'move on R e/x -> e/x2'],
  },
  {
    description: 'rename: renames on both sides at once: each carried to the other',
    archive: M,
    left: ren(M, 'a', 'g'),
    right: ren(M, 'b', 'h'),
    steps: ['move on R a -> g', 'move on L b -> h'],
  },
  {
    description: 'rename: renames on both sides that touch (the left renames d, the right renames d/x out): no move, nothing lost',
    archive: M,
    left: ren(M, 'd', 'e'),
    right: ren(M, 'd/x', 'z'),
    steps: ['delete on R d/y', 'delete on R d', 'copy L->R e', 'copy L->R e/x', 'copy L->R e/y', 'copy R->L z'],
    records: ['forget d/x'],
  },
  {
    description: 'rename: onto a name the right created meanwhile: no move, the two versions of g conflict',
    archive: M,
    left: ren(M, 'a', 'g'),
    right: { ...M, g: file('g1') },
    steps: [`move on L g -> ${cc('g', 'a1')}`, 'delete on R a', 'copy R->L g', `copy L->R ${cc('g', 'a1')}`, conflict('g', 'L', cc('g', 'a1'))],
  },
  {
    description: 'rename: a file moved into a dir the right deleted: moved there, the dir restored for it, its other contents deleted on the left',
    archive: M,
    left: ren(M, 'a', 'd/a'),
    right: omit(M, 'd'),
    steps: ['move on R a -> d/a', 'delete on L d/y', 'delete on L d/x', 'copy L->R d'],
  },
  {
    description: 'rename: a move whose destination parent is a file on the right: no move; the dir keeps the name, the right file is set aside',
    archive: M,
    left: { ...ren(M, 'a', 'n/a'), 'n/': dir() },
    right: { ...M, n: file('n1') },
    steps: [`move on R n -> ${cc('n', 'n1')}`, 'delete on R a', 'copy L->R n', `copy R->L ${cc('n', 'n1')}`, 'copy L->R n/a', conflict('n', 'R', cc('n', 'n1'))],
  },
  {
    description: 'rename: an inode reused for a new file (another birth time) is no rename',
    archive: { f: file('v1', { birth: 1 }) },
    left: { g: file('v2', { id: 'f', birth: 2 }) },
    right: { f: file('v1', { birth: 1 }) },
    steps: ['delete on R f', 'copy L->R g'],
  },
  { description: 'rename: a hard link (one inode at two paths) is no rename', archive: F, left: { f: file('v1'), g: file('v1', { id: 'f' }) }, right: F, steps: ['copy L->R g'] },
  {
    description: 'bug 2: a delete and a rename made while psync was stopped are carried, not undone',
    archive: { x: file('x1'), y: file('y1') },
    left: { z: file('y1', { id: 'y' }) },
    right: { x: file('x1'), y: file('y1') },
    steps: ['move on R y -> z', 'delete on R x'],
  },
  { description: 'bug 8: a dir renamed on the right after the first merge is renamed on the left', archive: M, left: M, right: ren(M, 'd', 'e'), steps: ['move on L d -> e'] },
  {
    description: 'rename: records name archive paths before the moves (a digest learned under a renamed dir)',
    archive: M,
    left: { ...ren(M, 'd', 'e'), 'e/x': file('x1', { id: 'd/x', hash: true }) },
    right: { ...M, 'd/x': file('x1', { hash: true }) },
    steps: ['move on R d -> e'],
    records: ['agree d/x'],
  },
  {
    description: 'rename: a file gone on both sides below a renamed dir is forgotten at its archive path',
    archive: M,
    left: omit(ren(M, 'd', 'e'), 'e/x'),
    right: omit(M, 'd/x'),
    steps: ['move on R d -> e'],
    records: ['forget d/x'],
  },

  // Identities and digests.
  {
    description: 'identity: the same size, mtime and mode but another inode on the left, no digest in the archive: copied (only a digest could tell)',
    archive: F,
    left: { f: file('v1', { id: 'restored' }) },
    right: F,
    steps: ['copy L->R f'],
  },
  {
    description: 'identity: another inode with the archive digest: unchanged, the new identity agreed',
    archive: { f: file('v1', { hash: true }) },
    left: { f: file('v1', { id: 'restored', hash: true }) },
    right: F,
    steps: [],
    records: ['agree f'],
  },
  {
    description: 'identity: another inode with the archive stat but another digest: copied',
    archive: { f: file('v1', { hash: true }) },
    left: { f: file('v1', { id: 'restored', hashOf: 'w1' }) },
    right: F,
    steps: ['copy L->R f'],
  },
  {
    description: 'identity: both edited to equal bytes (digests) at other mtimes: the newer copied, no conflict',
    archive: F,
    left: { f: file('v2', { hash: true, at: 300 }) },
    right: { f: file('v2', { hash: true, at: 200 }) },
    steps: ['copy L->R f'],
  },
  {
    description: 'bug 3: both sides keep the archive stat but their digests differ: a conflict (the tie to the left)',
    archive: F,
    left: { f: file('v1', { hashOf: 'w1' }) },
    right: { f: file('v1', { hashOf: 'w2' }) },
    steps: [`move on R f -> ${cc('f', 'v1')}`, 'copy L->R f', `copy R->L ${cc('f', 'v1')}`, conflict('f', 'R', cc('f', 'v1'))],
  },
  {
    description: 'bug 3: both edited while stopped, a millisecond apart: a conflict, the newer keeps the name',
    archive: F,
    left: { f: file('v2', { at: 500 }) },
    right: { f: file('v3', { at: 500.001 }) },
    steps: [`move on L f -> ${cc('f', 500)}`, 'copy R->L f', `copy L->R ${cc('f', 500)}`, conflict('f', 'L', cc('f', 500))],
  },
  { description: 'identity: an archive without inodes learns them', archive: { f: file('v1', { ino: 0 }) }, left: F, right: F, steps: [], records: ['agree f'] },
  {
    description: 'identity: an archive without a digest learns the one both sides hold',
    archive: F,
    left: { f: file('v1', { hash: true }) },
    right: { f: file('v1', { hash: true }) },
    steps: [],
    records: ['agree f'],
  },
  {
    description: 'identity: an mtime less than a microsecond off is the same',
    archive: F,
    left: { f: file('v1', { at: secondsOf('v1') + 0.0000005 }) },
    right: F,
    steps: [],
  },
  { description: 'identity: a new inode for a directory is no change, only agreed', archive: D, left: { ...D, 'd/': dir({ id: 'again' }) }, right: D, steps: [], records: ['agree d'] },

  // Conflict names.
  {
    description: 'conflict: a copy name already taken is numbered',
    archive: F,
    left: { f: file('v2') },
    right: { f: file('v3'), [cc('f', 'v2')]: file('o1') },
    steps: [`move on L f -> ${cc('f', 'v2', 1)}`, 'copy R->L f', `copy R->L ${cc('f', 'v2')}`, `copy L->R ${cc('f', 'v2', 1)}`, conflict('f', 'L', cc('f', 'v2', 1))],
  },
  {
    description: 'conflict: a tie in mtime goes to the left',
    archive: F,
    left: { f: file('v2', { at: 50, hash: true }) },
    right: { f: file('v3', { at: 50, hash: true }) },
    steps: [`move on R f -> ${cc('f', 50)}`, 'copy L->R f', `copy R->L ${cc('f', 50)}`, conflict('f', 'R', cc('f', 50))],
  },
  {
    description: 'conflict: the copy keeps the extension and is named by the loser mtime',
    archive: { 'doc.txt': file('v1') },
    left: { 'doc.txt': file('v2') },
    right: { 'doc.txt': file('v3') },
    steps: [
      `move on L doc.txt -> ${cc('doc.txt', 'v2')}`,
      `copy L->R ${cc('doc.txt', 'v2')}`,
      'copy R->L doc.txt',
      conflict('doc.txt', 'L', cc('doc.txt', 'v2')),
    ],
  },
  {
    description: 'conflict: inside a dir the left renamed: the set-aside runs after the move, at the new place',
    archive: M,
    left: { ...ren(M, 'd', 'e'), 'e/x': file('x2', { id: 'd/x' }) },
    right: { ...M, 'd/x': file('x3') },
    steps: ['move on R d -> e', `move on L e/x -> ${cc('e/x', 'x2')}`, 'copy R->L e/x', `copy L->R ${cc('e/x', 'x2')}`, conflict('e/x', 'L', cc('e/x', 'x2'))],
  },

  // Order of steps.
  {
    description: 'order: renames, set-asides, deletes deepest first, copies parents first, conflict notes last',
    archive: { a: file('a1'), c: file('c1'), 'k/': dir(), 'k/q': file('q1'), f: file('v1') },
    left: { b: file('a1', { id: 'a' }), c: file('c1'), f: file('v2'), 'n/': dir(), 'n/m/': dir(), 'n/m/f': file('m1') },
    right: { a: file('a1'), c: file('c1'), 'k/': dir(), 'k/q': file('q1'), f: file('v3') },
    steps: [
      'move on R a -> b',
      `move on L f -> ${cc('f', 'v2')}`,
      'delete on R k/q',
      'delete on R k',
      'copy R->L f',
      `copy L->R ${cc('f', 'v2')}`,
      'copy L->R n',
      'copy L->R n/m',
      'copy L->R n/m/f',
      conflict('f', 'L', cc('f', 'v2')),
    ],
  },

  // First runs: the union.
  {
    description: 'first run: the union of both trees, shared dirs agreed',
    archive: {},
    left: { a: file('a1'), 'd/': dir(), 'd/x': file('x1') },
    right: { b: file('b1'), 'd/': dir(), 'd/y': file('y1') },
    steps: ['copy L->R a', 'copy R->L b', 'copy L->R d/x', 'copy R->L d/y'],
    records: ['agree d'],
  },
  { description: 'first run: identical trees are agreed without a transfer', archive: {}, left: D, right: D, steps: [], records: ['agree d', 'agree d/x', 'agree d/y'] },
  { description: 'first run: an empty right side gets everything, nothing is deleted', archive: {}, left: D, right: {}, steps: ['copy L->R d', 'copy L->R d/x', 'copy L->R d/y'] },
  { description: 'bug 1: a file deleted on the left after both agreed on it is deleted on the right, not brought back', archive: { x: file('x1') }, left: {}, right: { x: file('x1') }, steps: ['delete on R x'] },
];

describe('reconcile', () => {
  test('the table has at least 90 rows', () => {
    expect(rows.length).toBeGreaterThanOrEqual(90);
  });

  test.each(described(rows))('%s', (_description, row) => {
    const plan = reconcile(agreed(row.archive), observed(row.left, 'left'), observed(row.right, 'right'));
    expect(plan.steps.map(show)).toEqual(row.steps);
    expect(plan.records.map(showRecord).sort()).toEqual([...(row.records ?? [])].sort());
    const counted = (kind: Step['kind']): number => plan.steps.filter((s) => s.kind === kind).length;
    expect(plan.summary.toRight + plan.summary.toLeft).toBe(counted('copy'));
    expect(plan.summary.deletes).toBe(counted('delete'));
    expect(plan.summary.conflicts).toBe(counted('conflict'));
    expect(plan.summary.moves).toBe(counted('move') - counted('conflict'));
  });

  test.each(described(rows))('converges: %s', (_description, row) => {
    checkConvergence(withHashes({ ...caseOf(row.archive, row.left, row.right), hashes: { left: false, right: false } }));
  });

  test('a move step expects what the target holds, a copy carries the source version', () => {
    const plan = reconcile(agreed(M), observed(ren(M, 'd', 'e'), 'left'), observed({ ...M, 'd/x': file('x2') }, 'right'));
    expect(plan.steps[0]).toEqual({ kind: 'move', side: 'right', from: 'd', to: 'e', expect: observed(M, 'right').get('d') });
    expect(plan.steps[1]).toEqual({ kind: 'copy', direction: 'rightToLeft', path: 'e/x', version: observed({ 'd/x': file('x2') }, 'right').get('d/x') });
  });

  test('an agreed entry carries both identities and the digest', () => {
    const left = observed({ f: file('v2', { hash: true }) }, 'left');
    const right = observed({ f: file('v2') }, 'right');
    const plan = reconcile(agreed(F), left, right);
    expect(plan.records).toEqual([
      { kind: 'agree', path: 'f', entry: { ...versionOf(file('v2')), hash: 'h:v2', left: { ino: left.get('f')!.ino }, right: { ino: right.get('f')!.ino } } },
    ]);
  });
});

describe('sameVersion', () => {
  const v = (more: Partial<Version> = {}): Version => ({ type: 'file', size: 3, mtimeMs: 1_000.25, mode: 0o644, ...more });
  test.each(described<{ description: string; a: Version; b: Version; same: boolean }>([
    { description: 'equal files', a: v(), b: v(), same: true },
    { description: 'mtimes 0.9 µs apart are the same', a: v(), b: v({ mtimeMs: 1_000.2509 }), same: true },
    { description: 'mtimes 2 µs apart differ', a: v(), b: v({ mtimeMs: 1_000.252 }), same: false },
    { description: 'sizes differ', a: v(), b: v({ size: 4 }), same: false },
    { description: 'modes differ for files', a: v(), b: v({ mode: 0o600 }), same: false },
    { description: 'modes do not count for symlinks', a: v({ type: 'symlink' }), b: v({ type: 'symlink', mode: 0o755 }), same: true },
    { description: 'digests differ', a: v({ hash: 'x' }), b: v({ hash: 'y' }), same: false },
    { description: 'one digest unknown', a: v({ hash: 'x' }), b: v(), same: true },
    { description: 'equal digests but other mtimes: other metadata, not the same version', a: v({ hash: 'x' }), b: v({ hash: 'x', mtimeMs: 5 }), same: false },
    { description: 'directories: the mode only', a: v({ type: 'dir', size: 4096, mtimeMs: 1 }), b: v({ type: 'dir', size: 0, mtimeMs: 2 }), same: true },
    { description: 'directories with other modes', a: v({ type: 'dir' }), b: v({ type: 'dir', mode: 0o700 }), same: false },
    { description: 'another type', a: v(), b: v({ type: 'symlink' }), same: false },
  ]))('%s', (_description, { a, b, same }) => {
    expect(sameVersion(a, b)).toBe(same);
    expect(sameVersion(b, a)).toBe(same);
  });
});

describe('hashesNeeded', () => {
  test.each(described<{ description: string; archive: Tree; left: Tree; right: Tree; needed: { left: string[]; right: string[] } }>([
    { description: 'nothing changed: nothing', archive: F, left: F, right: F, needed: { left: [], right: [] } },
    { description: 'first run, equal sizes on both sides: both', archive: {}, left: { f: file('v1') }, right: { f: file('v2') }, needed: { left: ['f'], right: ['f'] } },
    { description: 'first run, equal size and mtime: both (two writes in one microsecond)', archive: {}, left: F, right: F, needed: { left: ['f'], right: ['f'] } },
    { description: 'first run, other sizes: none', archive: {}, left: { f: file('v1') }, right: { f: file('v10') }, needed: { left: [], right: [] } },
    { description: 'both changed, equal sizes: both', archive: F, left: { f: file('v2') }, right: { f: file('v3') }, needed: { left: ['f'], right: ['f'] } },
    { description: 'one side changed: none', archive: F, left: { f: file('v2') }, right: F, needed: { left: [], right: [] } },
    { description: 'a digest already known is not asked for', archive: {}, left: { f: file('v1', { hash: true }) }, right: { f: file('v2') }, needed: { left: [], right: ['f'] } },
    { description: 'both digests known: none', archive: {}, left: { f: file('v1', { hash: true }) }, right: { f: file('v2', { hash: true }) }, needed: { left: [], right: [] } },
    {
      description: 'another inode with the archive stat, the archive has a digest: that side',
      archive: { f: file('v1', { hash: true }) },
      left: { f: file('v1', { id: 'new' }) },
      right: F,
      needed: { left: ['f'], right: [] },
    },
    { description: 'another inode, the archive has no digest: none (it counts as changed)', archive: F, left: { f: file('v1', { id: 'new' }) }, right: F, needed: { left: [], right: [] } },
    { description: 'directories: never', archive: {}, left: { 'd/': dir() }, right: { 'd/': dir({ mode: 0o700 }) }, needed: { left: [], right: [] } },
    { description: 'symlinks with targets of equal length: both', archive: {}, left: { s: link('t1') }, right: { s: link('t2') }, needed: { left: ['s'], right: ['s'] } },
    { description: 'a file against a symlink: none', archive: {}, left: { x: file('ab') }, right: { x: link('ab') }, needed: { left: [], right: [] } },
    {
      description: 'after a rename each side is asked in its own paths',
      archive: M,
      left: { ...ren(M, 'd', 'e'), 'e/x': file('x2', { id: 'd/x' }) },
      right: { ...M, 'd/x': file('x3') },
      needed: { left: ['e/x'], right: ['d/x'] },
    },
  ]))('%s', (_description, { archive, left, right, needed }) => {
    expect(hashesNeeded(agreed(archive), observed(left, 'left'), observed(right, 'right'))).toEqual(needed);
  });
});

// ---------------------------------------------------------------------------
// Random cases: an archive, both sides changed from it by random operations
// (edits in place and by a new inode, touches, chmods, deletes, creates,
// renames of files and dirs, renames over a file, type changes, restores
// with the same stat), sometimes the same or a racing write on both sides,
// sometimes a first run. The brain's part is played too: the digests
// hashesNeeded asks for are added before reconciling.

/** mulberry32 */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Gen {
  readonly rnd: () => number;
  pick<T>(items: readonly T[]): T;
  content(): string;
  mtime(): number;
  ino(): number;
}

function gen(seed: number): Gen {
  const rnd = prng(seed);
  let counter = 0;
  return {
    rnd,
    pick: <T,>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!,
    content: () => `c${String(++counter).padStart(4, '0')}`,
    mtime: () => T0 + ++counter * 1000,
    ino: () => 10_000 + ++counter,
  };
}

const NAMES = ['a', 'b', 'c', 'd.txt'];

function node(g: Gen, kind: Kind): Held {
  const content = kind === 'dir' ? '' : g.content();
  const v: Observed = {
    type: kind,
    size: kind === 'dir' ? 4096 : content.length,
    mtimeMs: g.mtime(),
    mode: kind === 'file' ? 0o644 : kind === 'dir' ? 0o755 : 0o777,
    ino: g.ino(),
  };
  return { v, content };
}

function randomTree(g: Gen, into: Model, parent = '', depth = 0): void {
  for (const name of NAMES) {
    if (g.rnd() < 0.45) continue;
    const path = parent === '' ? name : `${parent}/${name}`;
    const r = g.rnd();
    const kind: Kind = depth < 2 && r < 0.35 ? 'dir' : r < 0.85 ? 'file' : 'symlink';
    into.set(path, node(g, kind));
    if (kind === 'dir') randomTree(g, into, path, depth + 1);
  }
}

/** The same tree on another side: equal versions, that side's own inodes. */
const onOtherSide = (g: Gen, model: Model): Model => new Map([...model].map(([p, h]) => [p, { v: { ...h.v, ino: g.ino() }, content: h.content }]));

function removeTree(model: Model, path: string): void {
  for (const p of [...model.keys()]) if (isSameOrUnder(p, path)) model.delete(p);
}

function freePath(g: Gen, model: Model, notUnder?: string): string | undefined {
  const dirs = ['', ...[...model].filter(([, h]) => h.v.type === 'dir').map(([p]) => p)].filter((d) => notUnder === undefined || !isSameOrUnder(d, notUnder));
  const parent = g.pick(dirs);
  const path = parent === '' ? g.pick(NAMES) : `${parent}/${g.pick(NAMES)}`;
  return model.has(path) ? undefined : path;
}

/** `blindRewrites`: the archive knows no inodes, so a rewrite keeping the stat (`cp -p` of other bytes) cannot be seen; none is made. */
function mutate(g: Gen, model: Model, blindRewrites: boolean): void {
  const ops = Math.floor(g.rnd() * 5);
  for (let i = 0; i < ops; i++) {
    const paths = [...model.keys()];
    const any = paths.length > 0 ? g.pick(paths) : undefined;
    const held = any === undefined ? undefined : model.get(any)!;
    const op = g.pick(['edit', 'save', 'touch', 'chmod', 'delete', 'create', 'create', 'rename', 'rename', 'retype', 'restore', 'link']);
    if (op === 'create' || any === undefined || held === undefined) {
      const path = freePath(g, model);
      if (path !== undefined) model.set(path, node(g, g.pick(['file', 'file', 'dir', 'symlink'] as const)));
      continue;
    }
    const kind = held.v.type;
    switch (op) {
      case 'edit':
      case 'save':
        if (kind === 'dir') break;
        model.set(any, { v: { ...held.v, mtimeMs: g.mtime(), ino: op === 'save' ? g.ino() : held.v.ino, size: 5 }, content: g.content() });
        break;
      case 'touch':
        if (kind !== 'dir') model.set(any, { v: { ...held.v, mtimeMs: g.mtime() }, content: held.content });
        break;
      case 'chmod':
        if (kind === 'file') model.set(any, { v: { ...held.v, mode: held.v.mode === 0o644 ? 0o600 : 0o644 }, content: held.content });
        if (kind === 'dir') model.set(any, { v: { ...held.v, mode: held.v.mode === 0o755 ? 0o700 : 0o755, mtimeMs: g.mtime() }, content: '' });
        break;
      case 'delete':
        removeTree(model, any);
        break;
      case 'rename': {
        const to = freePath(g, model, any) ?? (g.rnd() < 0.5 ? g.pick(paths) : undefined);
        if (to === undefined || isSameOrUnder(to, any) || isSameOrUnder(any, to)) break;
        const there = model.get(to);
        if (there !== undefined && (there.v.type === 'dir' || kind === 'dir')) break;
        const moving = [...model].filter(([p]) => isSameOrUnder(p, any));
        removeTree(model, any);
        if (there !== undefined) model.delete(to);
        for (const [p, h] of moving) model.set(rebase(p, any, to), h);
        break;
      }
      case 'retype': {
        removeTree(model, any);
        model.set(any, node(g, g.pick((['file', 'dir', 'symlink'] as const).filter((k) => k !== kind))));
        break;
      }
      case 'link': {
        // A hard link: one inode at two paths, which no rename can be told from.
        const to = freePath(g, model);
        if (kind === 'file' && to !== undefined) model.set(to, held);
        break;
      }
      case 'restore':
        // `cp -p` of other bytes (same length) or of the same bytes: a new inode with the same stat.
        if (kind === 'file') model.set(any, { v: { ...held.v, ino: g.ino() }, content: blindRewrites || g.rnd() < 0.5 ? held.content : `r${held.content.slice(1)}` });
        break;
    }
  }
}

function randomCase(seed: number): Case & { hashes: { left: boolean; right: boolean } } {
  const g = gen(seed);
  const firstRun = g.rnd() < 0.15;
  const base: Model = new Map();
  randomTree(g, base);
  const left = new Map(base);
  const right = onOtherSide(g, base);
  const archive = new Map<string, Agreed>();
  const archived = new Map<string, string>();
  const knowsInodes = firstRun || g.rnd() < 0.9;
  if (!firstRun) {
    const withHash = g.rnd() < 0.4;
    for (const [path, h] of base) {
      const { ino, ...version } = h.v;
      const entry: Agreed = knowsInodes ? { ...version, left: { ino }, right: { ino: right.get(path)!.v.ino } } : { ...version, left: { ino: 0 }, right: { ino: 0 } };
      archive.set(path, withHash && h.v.type !== 'dir' ? { ...entry, hash: `h:${h.content}` } : entry);
      archived.set(path, h.content);
    }
  }
  mutate(g, left, !knowsInodes);
  mutate(g, right, !knowsInodes);
  // Both sides write one file: the same version, or other bytes in the same microsecond (bug 7).
  const shared = [...left.keys()].filter((p) => left.get(p)!.v.type === 'file' && right.get(p)?.v.type === 'file');
  if (shared.length > 0 && g.rnd() < 0.2) {
    const path = g.pick(shared);
    const mtimeMs = g.mtime();
    const content = g.content();
    const raced = g.rnd() < 0.5;
    left.set(path, { v: { ...left.get(path)!.v, mtimeMs, size: 5 }, content });
    right.set(path, { v: { ...right.get(path)!.v, mtimeMs, size: 5 }, content: raced ? `x${content.slice(1)}` : content });
  }
  return { archive, archived, left, right, hashes: { left: g.rnd() < 0.3, right: g.rnd() < 0.3 } };
}

/** The brain's part: the digests hashesNeeded asks for (or all of them), from the model's content. */
function withHashes(c: Case & { hashes: { left: boolean; right: boolean } }): Case {
  const snapshot = (model: Model): Map<string, Observed> => new Map([...model].map(([p, h]) => [p, h.v]));
  const needed = hashesNeeded(c.archive, snapshot(c.left), snapshot(c.right));
  const add = (model: Model, paths: readonly string[], all: boolean): Model => {
    const out = new Map(model);
    for (const [p, h] of model) {
      if (h.v.type !== 'dir' && h.v.hash === undefined && (all || paths.includes(p))) out.set(p, { v: { ...h.v, hash: `h:${h.content}` }, content: h.content });
    }
    return out;
  };
  return { ...c, left: add(c.left, needed.left, c.hashes.left), right: add(c.right, needed.right, c.hashes.right) };
}

/** A case and its plan, to read when a seed fails. */
function dump(c: Case): string {
  const snapshot = (model: Model): Map<string, Observed> => new Map([...model].map(([p, h]) => [p, h.v]));
  const archive = [...c.archive].map(([p, a]) => `${p}: ${a.type} ${JSON.stringify(c.archived.get(p))} ${a.mtimeMs - T0} ino ${a.left.ino}/${a.right.ino}`).sort();
  const side = (model: Model): string[] => [...model].map(([p, h]) => `${p}: ${h.v.type} ${JSON.stringify(h.content)} ${h.v.mtimeMs - T0} ino ${h.v.ino}${h.v.hash === undefined ? '' : ' #'}`).sort();
  let steps: string[];
  try {
    steps = reconcile(c.archive, snapshot(c.left), snapshot(c.right)).steps.map(show);
  } catch (error) {
    steps = [String(error)];
  }
  return [['archive', archive], ['left', side(c.left)], ['right', side(c.right)], ['plan', steps]].map(([title, lines]) => `${String(title)}:\n  ${(lines as string[]).join('\n  ')}`).join('\n');
}

describe('reconcile converges on random cases', () => {
  /** RECONCILE_SEEDS=100000 for a longer hunt; a failure names its seed. */
  const SEEDS = Number(process.env.RECONCILE_SEEDS ?? 3000);
  test(`${SEEDS} seeded cases`, () => {
    let failures = 0;
    const seen = new Map<string, number>();
    const count = (what: string): void => {
      seen.set(what, (seen.get(what) ?? 0) + 1);
    };
    for (let seed = 1; seed <= SEEDS; seed++) {
      try {
        const c = withHashes(randomCase(seed));
        const plan = checkConvergence(c);
        if (c.archive.size === 0) count('first run');
        for (const step of plan.steps) count(step.kind);
        for (const step of plan.steps) if (step.kind === 'move' && step.expect.type === 'dir') count('dir move');
        if (plan.steps.some((s) => s.kind === 'conflict' && c.left.get(s.path)?.v.type !== c.right.get(s.path)?.v.type)) count('conflict of types');
        if (plan.steps.some((s) => s.kind === 'copy' && s.version.type === 'dir' && c.archive.has(s.path) && !(sourceOf(s.direction) === 'left' ? c.right : c.left).has(s.path))) count('dir restored');
        for (const record of plan.records) count(record.kind);
      } catch (error) {
        failures += 1;
        throw new Error(`seed ${seed}: ${error instanceof Error ? error.message : String(error)}\n${dump(withHashes(randomCase(seed)))}`, { cause: error });
      }
    }
    expect(failures).toBe(0);
    // The generator reaches every kind of decision (a guard against a vacuous property).
    for (const what of ['move', 'dir move', 'copy', 'delete', 'conflict', 'conflict of types', 'dir restored', 'first run', 'agree', 'forget']) {
      expect(seen.get(what) ?? 0, what).toBeGreaterThan(SEEDS / 100);
    }
  }, Math.max(60_000, SEEDS * 10));
});

describe('reconcile at scale', () => {
  test('100,000 entries per side, a few changes and a renamed dir, finish (no timing asserted)', () => {
    const archive = new Map<string, Agreed>();
    const left = new Map<string, Observed>();
    const right = new Map<string, Observed>();
    let ino = 1;
    const add = (path: string, version: Version): void => {
      const l = ino++;
      const r = ino++;
      archive.set(path, { ...version, left: { ino: l }, right: { ino: r } });
      left.set(path, { ...version, ino: l });
      right.set(path, { ...version, ino: r });
    };
    for (let d = 0; d < 1_000; d++) {
      add(`dir${d}`, { type: 'dir', size: 4096, mtimeMs: T0, mode: 0o755 });
      for (let f = 0; f < 99; f++) add(`dir${d}/file${f}`, { type: 'file', size: f, mtimeMs: T0 + f, mode: 0o644 });
    }
    expect(left.size).toBe(100_000);
    left.set('dir1/file1', { ...left.get('dir1/file1')!, size: 1234, mtimeMs: T0 + 99_999 });
    right.delete('dir2/file2');
    for (const [path, o] of [...left]) {
      if (!isSameOrUnder(path, 'dir3')) continue;
      left.delete(path);
      left.set(rebase(path, 'dir3', 'moved3'), o);
    }
    const plan = reconcile(archive, left, right);
    expect(plan.steps.map(show)).toEqual(['move on R dir3 -> moved3', 'delete on L dir2/file2', 'copy L->R dir1/file1']);
    expect(hashesNeeded(archive, left, right)).toEqual({ left: [], right: [] });
  });

  test('20,000 files each renamed into another dir on the left finish as 20,000 moves', () => {
    const archive = new Map<string, Agreed>([['to', { type: 'dir', size: 4096, mtimeMs: T0, mode: 0o755, left: { ino: 1 }, right: { ino: 2 } }]]);
    const left = new Map<string, Observed>([['to', { type: 'dir', size: 4096, mtimeMs: T0, mode: 0o755, ino: 1 }]]);
    const right = new Map<string, Observed>([['to', { type: 'dir', size: 4096, mtimeMs: T0, mode: 0o755, ino: 2 }]]);
    for (let f = 0; f < 20_000; f++) {
      const version: Version = { type: 'file', size: f % 7, mtimeMs: T0 + f, mode: 0o644 };
      archive.set(`f${f}`, { ...version, left: { ino: 10 + 2 * f }, right: { ino: 11 + 2 * f } });
      left.set(`to/f${f}`, { ...version, ino: 10 + 2 * f });
      right.set(`f${f}`, { ...version, ino: 11 + 2 * f });
    }
    const plan = reconcile(archive, left, right);
    expect(plan.summary).toEqual({ toRight: 0, toLeft: 0, deletes: 0, moves: 20_000, conflicts: 0 });
  });

  test('a first run of 100,000 entries on each side finishes', () => {
    const left = new Map<string, Observed>();
    const right = new Map<string, Observed>();
    for (let d = 0; d < 1_000; d++) {
      left.set(`dir${d}`, { type: 'dir', size: 4096, mtimeMs: T0, mode: 0o755, ino: d + 1 });
      right.set(`dir${d}`, { type: 'dir', size: 4096, mtimeMs: T0, mode: 0o755, ino: d + 1 });
      for (let f = 0; f < 99; f++) {
        left.set(`dir${d}/file${f}`, { type: 'file', size: f, mtimeMs: T0 + f, mode: 0o644, ino: 2_000 + d * 100 + f });
        right.set(`dir${d}/other${f}`, { type: 'file', size: f, mtimeMs: T0 + f, mode: 0o644, ino: 2_000 + d * 100 + f });
      }
    }
    const plan = reconcile(new Map(), left, right);
    expect(plan.summary).toEqual({ toRight: 99_000, toLeft: 99_000, deletes: 0, moves: 0, conflicts: 0 });
  });
});
