import { describe, expect, test } from 'vitest';
import {
  DANCE_TTL_MS,
  FilterState,
  TreeIndex,
  dancedOriginal,
  hasChanged,
  noteDance,
  reconcile,
  splitByAncestry,
  type Decision,
  type Observation,
} from '../../src/core/filterRules.js';
import { DEFAULT_TEMPFILES, compilePathClassifier } from '../../src/core/patterns.js';
import { ancestorsOf, guardPath, isSameOrUnder, parentOf } from '../../src/core/paths.js';
import type { TreeNode } from '../../src/core/tree.js';
import type { Action, Stat } from '../../src/core/types.js';
import { FIXTURE, described, dir, file, fixtureIndex } from '../support/table.js';

const classify = compilePathClassifier({ excludes: ['*.skip', 'node_modules'], tempfiles: [...DEFAULT_TEMPFILES] });

function fixtureState(): FilterState {
  return new FilterState(fixtureIndex());
}

// ---------------------------------------------------------------------------
// A tiny model of a tree (path -> stat, the root left out), used both as the
// source side the user changes and as the target the actions are applied to.

type Fs = Map<string, Stat>;

const mv = (fs: Fs, from: string, to: string): void => {
  const moving = [...fs].filter(([p]) => isSameOrUnder(p, from));
  for (const [p] of moving) fs.delete(p);
  for (const p of [...fs.keys()]) if (isSameOrUnder(p, to)) fs.delete(p);
  for (const [p, s] of moving) fs.set(p === from ? to : `${to}${p.slice(from.length)}`, s);
};
const rm = (fs: Fs, path: string): void => {
  for (const p of [...fs.keys()]) if (isSameOrUnder(p, path)) fs.delete(p);
};
const put = (fs: Fs, path: string, stat: Stat): void => {
  if (stat.type !== 'dir') rm(fs, path);
  fs.set(path, stat);
};

const contentOf = (stat: Stat): string =>
  stat.type === 'dir' ? `dir ${stat.mode.toString(8)}` : `${stat.type} ${stat.size} ${stat.mtimeMs} ${stat.mode.toString(8)}`;
const hasChildren = (fs: Fs, path: string): boolean => [...fs.keys()].some((p) => p.startsWith(`${path}/`));
/** The helper's check before it acts: type, and size and mtime for a file (inodes differ across sides). */
const stillAsExpected = (actual: Stat | undefined, expected: Stat): boolean =>
  actual !== undefined &&
  actual.type === expected.type &&
  (actual.type === 'dir' || (actual.size === expected.size && actual.mtimeMs === expected.mtimeMs));

/**
 * Apply actions to `target` the way the helper and rsync would: MOVE and
 * DELETE refuse when the entry is not what the action expects, DELETE refuses
 * a non-empty directory, MOVE creates missing parents and may replace a file
 * or an empty directory, RSYNC copies what the source holds now and needs the
 * parent to exist.
 */
function applyActions(target: Fs, source: Fs, actions: readonly Action[]): void {
  for (const action of actions) {
    const what = `${action.kind.toUpperCase()} ${action.kind === 'move' ? `${action.from} -> ${action.to}` : action.path}`;
    switch (action.kind) {
      case 'move': {
        if (!stillAsExpected(target.get(action.from), action.stat)) throw new Error(`helper refuses ${what}: source changed or missing`);
        const existing = target.get(action.to);
        if (existing?.type === 'dir' && hasChildren(target, action.to)) throw new Error(`helper refuses ${what}: non-empty directory`);
        if (existing !== undefined && existing.type !== 'dir' && action.stat.type === 'dir') throw new Error(`helper refuses ${what}: dir onto a file`);
        // The helper keeps a file it finds at `to` as a conflict copy unless it is what the move says it replaces.
        if (existing !== undefined && existing.type !== 'dir' && (action.replaces === undefined || !stillAsExpected(existing, action.replaces))) {
          throw new Error(`${what} would keep the target's ${contentOf(existing)} as a conflict copy: replaces is ${action.replaces === undefined ? 'none' : contentOf(action.replaces)}`);
        }
        for (const a of ancestorsOf(action.to).reverse()) if (!target.has(a)) target.set(a, dir(0));
        mv(target, action.from, action.to);
        break;
      }
      case 'delete':
        // A delete of an entry the filter never indexed (unknown stat): the brain drops it unless it agreed on that path.
        if (action.stat.type === 'other' && action.stat.ino === 0 && !target.has(action.path)) break;
        if (!stillAsExpected(target.get(action.path), action.stat)) throw new Error(`helper refuses ${what}: changed or missing`);
        if (hasChildren(target, action.path)) throw new Error(`helper refuses ${what}: non-empty directory`);
        target.delete(action.path);
        break;
      case 'rsync': {
        const parent = parentOf(action.path);
        if (parent !== '' && target.get(parent)?.type !== 'dir') throw new Error(`rsync fails ${what}: no parent directory`);
        const now = source.get(action.path);
        if (now === undefined) break; // --ignore-missing-args
        if (now.type !== 'dir' && hasChildren(target, action.path)) throw new Error(`rsync fails ${what}: non-empty directory in the way`);
        // The conflict check after the transfer: a file the target held must be the version the source had before.
        const held = target.get(action.path);
        if (held !== undefined && held.type !== 'dir' && (action.prev === undefined || !stillAsExpected(held, action.prev))) {
          throw new Error(`${what} would be judged a conflict: the target holds ${contentOf(held)}, prev is ${action.prev === undefined ? 'none' : contentOf(action.prev)}`);
        }
        if (now.type !== 'dir') rm(target, action.path);
        target.set(action.path, now);
        break;
      }
    }
  }
}

/**
 * After the actions the target holds what the source holds, except below a
 * directory the shell is told to scan: its entries are reported later, so
 * they may be missing on the target yet, but nothing stale may remain there.
 */
function expectConverged(target: Fs, source: Fs, scan: readonly string[]): void {
  const synced = (fs: Fs): Map<string, string> =>
    new Map([...fs].filter(([p]) => classify(p) === 'sync').map(([p, s]) => [p, contentOf(s)]));
  const underScan = (p: string): boolean => scan.some((d) => p.startsWith(`${d}/`));
  const want = synced(source);
  const got = synced(target);
  for (const [p, content] of got) {
    if (underScan(p)) expect(want.has(p), `stale ${p} below a scanned directory on the target`).toBe(true);
    else expect(content, `target ${p}`).toBe(want.get(p));
  }
  for (const [p, content] of want) if (!underScan(p)) expect(got.get(p), `target ${p}`).toBe(content);
}

const show = (action: Action): string =>
  action.kind === 'move' ? `MOVE ${action.from} ${action.to}` : `${action.kind.toUpperCase()} ${action.path}`;

/** Invariants from the module header, checked on every row. */
function expectWellFormed(decision: Decision, index: TreeIndex): void {
  const rank = { move: 0, delete: 1, rsync: 2 } as const;
  decision.actions.forEach((action, i) => {
    for (const path of action.kind === 'move' ? [action.from, action.to] : [action.path]) {
      expect(guardPath(path)).toBe(path);
      // The one exception: a move cycle passes through a temp name of its own (asideName).
      if (action.kind === 'move' && /\.psync-swap-[0-9]+~$/.test(path)) continue;
      expect(classify(path, action.stat.type === 'dir'), path).toBe('sync');
    }
    const next = decision.actions[i + 1];
    if (next !== undefined) expect(rank[action.kind] <= rank[next.kind], `${show(action)} before ${show(next)}`).toBe(true);
    for (const later of decision.actions.slice(i + 1)) {
      // children are deleted before their directory, parents are sent before their children
      if (action.kind === 'delete' && later.kind === 'delete') expect(later.path.startsWith(`${action.path}/`), `${show(later)} after ${show(action)}`).toBe(false);
      if (action.kind === 'rsync' && later.kind === 'rsync') expect(action.path.startsWith(`${later.path}/`), `${show(action)} before ${show(later)}`).toBe(false);
    }
  });
  for (const node of index.walk(index.root)) {
    const path = index.pathOf(node);
    if (path !== '') expect(classify(path, node.stat.type === 'dir'), `indexed ${path}`).toBe('sync');
  }
}

interface Row {
  description: string;
  /** What the user (or the helper) did to the source tree. */
  ops?: (fs: Fs) => void;
  /** Settled paths the shell lstat()s, in this order. */
  observe: string[];
  /** Before the observations (e.g. the shell saw a `.psync.ignore` name). */
  before?: (state: FilterState) => void;
  now?: number;
  /** `KIND path [to]`; stats are checked against the source (RSYNC, MOVE) or the fixture (DELETE). */
  actions?: string[];
  anyOrder?: boolean;
  scan?: string[];
  /** Path -> inode in the index afterwards, or null for not indexed. */
  index?: Record<string, number | null>;
  /** [path before, path after]: the very same index node. */
  kept?: Array<[string, string]>;
  /** Fixture paths whose nodes must be reported as dropped. */
  dropped?: string[];
  /** Apply the actions to a copy of the fixture and compare with the source. */
  simulate?: boolean;
}

function runRow(row: Row): void {
  const state = fixtureState();
  const beforeNodes = new Map<string, TreeNode>(FIXTURE.map(([p]) => [p, state.index.get(p)!]));
  const original: Fs = new Map(FIXTURE);
  const source: Fs = new Map(FIXTURE);
  row.ops?.(source);
  row.before?.(state);
  const observations: Observation[] = row.observe.map((path) => ({ path, stat: source.get(path) ?? null }));
  const decision = reconcile(state, observations, classify, row.now ?? 1_000);

  expectWellFormed(decision, state.index);
  // Data first: what the target ends up holding.
  if (row.simulate) {
    const target: Fs = new Map(original);
    applyActions(target, source, decision.actions);
    expectConverged(target, source, decision.scan);
  }
  if (row.actions !== undefined) {
    const shown = decision.actions.map(show);
    if (row.anyOrder) expect([...shown].sort()).toEqual([...row.actions].sort());
    else expect(shown).toEqual(row.actions);
  }
  for (const action of decision.actions) {
    // DELETE and MOVE carry what the other side still has (the helper checks it); RSYNC what is there now.
    if (action.kind === 'delete') expect(action.stat, show(action)).toEqual(original.get(action.path) ?? { type: 'other', ino: 0, size: 0, mtimeMs: 0, mode: 0 });
    else if (action.kind === 'move' && /\.psync-swap-[0-9]+~$/.test(action.to)) expect(action.stat.ino, show(action)).toBe(original.get(action.from)?.ino);
    else if (action.kind === 'move') expect(action.stat.ino, show(action)).toBe(source.get(action.to)?.ino);
    else expect(action.stat, show(action)).toEqual(source.get(action.path));
  }
  if (row.scan !== undefined) expect(decision.scan).toEqual(row.scan);
  for (const [path, ino] of Object.entries(row.index ?? {})) {
    expect(state.index.get(path)?.stat.ino ?? null, `index ${path}`).toBe(ino);
    if (ino !== null) expect(state.index.get(path)?.stat, `index ${path}`).toEqual(source.get(path));
  }
  for (const [from, to] of row.kept ?? []) expect(state.index.get(to), `node of ${from} now at ${to}`).toBe(beforeNodes.get(from));
  for (const path of row.dropped ?? []) expect(decision.dropped, `dropped ${path}`).toContain(beforeNodes.get(path));
}

describe('reconcile', () => {
  test.each(described<Row>([
    // --- content
    {
      description: 'a new file is sent',
      ops: (fs) => put(fs, 'c.txt', file(40)),
      observe: ['c.txt'],
      actions: ['RSYNC c.txt'],
      scan: [],
      index: { 'c.txt': 40 },
      simulate: true,
    },
    {
      description: 'a new file in a subdirectory is sent',
      ops: (fs) => put(fs, 'd/sub/n', file(41)),
      observe: ['d/sub/n'],
      actions: ['RSYNC d/sub/n'],
      index: { 'd/sub/n': 41 },
      simulate: true,
    },
    {
      description: 'a file whose size changed is sent',
      ops: (fs) => put(fs, 'a.txt', file(10, { size: 5 })),
      observe: ['a.txt'],
      actions: ['RSYNC a.txt'],
      index: { 'a.txt': 10 },
      kept: [['a.txt', 'a.txt']],
      simulate: true,
    },
    {
      description: 'a file whose mtime changed is sent',
      ops: (fs) => put(fs, 'a.txt', file(10, { mtimeMs: 5000.5 })),
      observe: ['a.txt'],
      actions: ['RSYNC a.txt'],
      index: { 'a.txt': 10 },
      simulate: true,
    },
    {
      description: 'a file whose mode changed is sent',
      ops: (fs) => put(fs, 'd/x', file(21, { mode: 0o600 })),
      observe: ['d/x'],
      actions: ['RSYNC d/x'],
      index: { 'd/x': 21 },
      simulate: true,
    },
    { description: 'an unchanged file is not sent', observe: ['a.txt', 'd/x'], actions: [], index: { 'a.txt': 10 } },
    {
      description: "a directory's mtime-only change is not sent",
      ops: (fs) => put(fs, 'd', dir(20, { mtimeMs: 9999, size: 8192 })),
      observe: ['d'],
      actions: [],
      index: { d: 20 },
    },
    {
      description: "a directory's mode change is sent",
      ops: (fs) => put(fs, 'd', dir(20, { mode: 0o700 })),
      observe: ['d'],
      actions: ['RSYNC d'],
      scan: [],
      kept: [['d', 'd'], ['d/sub/y', 'd/sub/y']],
      simulate: true,
    },
    { description: 'the root itself is never an action', observe: [''], actions: [] },
    { description: 'a gone path that was never indexed is nothing', observe: ['never/was'], actions: [] },
    {
      description: 'a new file whose parent is not indexed waits for the parent',
      ops: (fs) => {
        put(fs, 'n', dir(50));
        put(fs, 'n/f', file(51));
      },
      observe: ['n/f'],
      actions: [],
      index: { 'n/f': null },
    },

    // --- moves
    {
      description: 'a file rename is a MOVE of the same node',
      ops: (fs) => mv(fs, 'a.txt', 'c.txt'),
      observe: ['a.txt', 'c.txt'],
      actions: ['MOVE a.txt c.txt'],
      index: { 'a.txt': null, 'c.txt': 10 },
      kept: [['a.txt', 'c.txt']],
      dropped: [],
      simulate: true,
    },
    {
      description: 'a file rename observed new name first',
      ops: (fs) => mv(fs, 'a.txt', 'c.txt'),
      observe: ['c.txt', 'a.txt'],
      actions: ['MOVE a.txt c.txt'],
      kept: [['a.txt', 'c.txt']],
      simulate: true,
    },
    {
      description: 'a file moved into another directory',
      ops: (fs) => mv(fs, 'a.txt', 'd/sub/a.txt'),
      observe: ['a.txt', 'd/sub/a.txt'],
      actions: ['MOVE a.txt d/sub/a.txt'],
      kept: [['a.txt', 'd/sub/a.txt']],
      simulate: true,
    },
    {
      description: 'a directory rename is one MOVE and every child keeps its node',
      ops: (fs) => mv(fs, 'd', 'f'),
      observe: ['d', 'f'],
      actions: ['MOVE d f'],
      scan: [],
      index: { d: null, 'd/x': null, f: 20, 'f/x': 21, 'f/sub/y': 23 },
      kept: [['d', 'f'], ['d/x', 'f/x'], ['d/sub', 'f/sub'], ['d/sub/y', 'f/sub/y']],
      simulate: true,
    },
    {
      description: 'a directory rename with its unchanged children observed too is still one MOVE',
      ops: (fs) => mv(fs, 'd', 'f'),
      observe: ['d', 'f', 'f/x', 'f/sub', 'f/sub/y'],
      actions: ['MOVE d f'],
      scan: [],
      kept: [['d', 'f'], ['d/x', 'f/x'], ['d/sub', 'f/sub'], ['d/sub/y', 'f/sub/y']],
      simulate: true,
    },
    {
      description: 'a chained rename a -> m -> c is one MOVE a -> c',
      ops: (fs) => {
        mv(fs, 'a.txt', 'm.txt');
        mv(fs, 'm.txt', 'c.txt');
      },
      observe: ['a.txt', 'm.txt', 'c.txt'],
      // The name it passed through was never indexed: reported gone, with nothing known of it (the brain drops it).
      actions: ['MOVE a.txt c.txt', 'DELETE m.txt'],
      index: { 'm.txt': null, 'c.txt': 10 },
      kept: [['a.txt', 'c.txt']],
      simulate: true,
    },
    {
      description: 'a rename onto an existing file replaces it',
      ops: (fs) => mv(fs, 'a.txt', 'd/x'),
      observe: ['a.txt', 'd/x'],
      actions: ['MOVE a.txt d/x'],
      index: { 'a.txt': null, 'd/x': 10 },
      kept: [['a.txt', 'd/x']],
      simulate: true,
    },
    {
      description: 'a directory renamed onto an empty directory: the replaced one is dropped',
      ops: (fs) => mv(fs, 'd', 'e'),
      observe: ['d', 'e'],
      actions: ['MOVE d e'],
      kept: [['d', 'e'], ['d/sub/y', 'e/sub/y']],
      dropped: ['e'],
      simulate: true,
    },
    {
      description: 'a rename chain into an occupied name: d/x -> c.txt, then a.txt -> d/x',
      ops: (fs) => {
        mv(fs, 'd/x', 'c.txt');
        mv(fs, 'a.txt', 'd/x');
      },
      observe: ['a.txt', 'd/x', 'c.txt'],
      index: { 'a.txt': null, 'd/x': 10, 'c.txt': 21 },
      simulate: true,
    },
    {
      description: 'a swap of two files through a third name loses nothing',
      ops: (fs) => {
        mv(fs, 'a.txt', 't');
        mv(fs, 'd/x', 'a.txt');
        mv(fs, 't', 'd/x');
      },
      observe: ['a.txt', 'd/x', 't'],
      actions: ['MOVE d/x d/x.psync-swap-21~', 'MOVE a.txt d/x', 'MOVE d/x.psync-swap-21~ a.txt', 'DELETE t'],
      index: { 'a.txt': 21, 'd/x': 10, t: null },
      kept: [['a.txt', 'd/x'], ['d/x', 'a.txt']],
      simulate: true,
    },
    {
      description: 'a swap of two directories through a third name loses nothing',
      ops: (fs) => {
        mv(fs, 'd', 't');
        mv(fs, 'e', 'd');
        mv(fs, 't', 'e');
      },
      observe: ['d', 'e', 't'],
      actions: ['MOVE e e.psync-swap-30~', 'MOVE d e', 'MOVE e.psync-swap-30~ d', 'DELETE t'],
      index: { d: 30, e: 20, t: null, 'e/sub/y': 23 },
      kept: [['d', 'e'], ['e', 'd'], ['d/sub/y', 'e/sub/y']],
      simulate: true,
    },
    {
      description: 'a file renamed and a new file copied under its old name (mv f g; cp other f): a move and a new file',
      ops: (fs) => {
        mv(fs, 'd/x', 'd/g');
        put(fs, 'd/x', file(70, { size: 5 }));
      },
      observe: ['d/x', 'd/g'],
      actions: ['MOVE d/x d/g', 'RSYNC d/x'],
      index: { 'd/g': 21, 'd/x': 70 },
      kept: [['d/x', 'd/g']],
      simulate: true,
    },
    {
      description: 'a directory replaced by a symlink to a sibling (rm -r d/sub; ln -s .. d/sub): its old children are deleted, not read through the link',
      ops: (fs) => {
        rm(fs, 'd/sub');
        put(fs, 'd/sub', { type: 'symlink', ino: 71, size: 2, mtimeMs: 5000, mode: 0o777 });
        // lstat of d/sub/y now resolves the link: it finds a.txt's sibling entry, another inode.
        fs.set('d/sub/y', file(10));
      },
      observe: ['d/sub/y', 'd/sub'],
      actions: ['DELETE d/sub/y', 'DELETE d/sub', 'RSYNC d/sub'],
      index: { 'd/sub': 71, 'd/sub/y': null },
    },
    {
      description: 'a directory removed and made again (rm -rf d; mkdir d): its children are deleted, the name is kept and re-sent',
      ops: (fs) => {
        rm(fs, 'd');
        put(fs, 'd', dir(72));
      },
      observe: ['d/x', 'd/sub/y', 'd/sub', 'd'],
      actions: ['DELETE d/x', 'DELETE d/sub/y', 'DELETE d/sub', 'RSYNC d'],
      anyOrder: true,
      scan: ['d'],
      index: { d: 72, 'd/x': null },
      simulate: true,
    },
    {
      description: 'the helper deleted a directory and rsync made it again (its own DELETE d, RSYNC d): only the RSYNC, an echo, is reported',
      ops: (fs) => {
        rm(fs, 'e');
        put(fs, 'e', dir(73));
      },
      before: (state) => noteDance(state, 'e.1-1-abc.psync.ignore', 1_000),
      observe: ['e'],
      actions: ['RSYNC e'],
      index: { e: 73 },
    },
    {
      description: 'a write through one of two hard links sends both names (the other side holds two files)',
      ops: (fs) => {
        put(fs, 'e/h', file(10));
        put(fs, 'a.txt', file(10, { size: 7, mtimeMs: 9000 }));
        put(fs, 'e/h', file(10, { size: 7, mtimeMs: 9000 }));
      },
      before: (state) => state.index.set('e/h', file(10)),
      observe: ['a.txt'],
      actions: ['RSYNC a.txt', 'RSYNC e/h'],
      index: { 'a.txt': 10, 'e/h': 10 },
    },
    {
      description: 'a child moved out of a directory renamed in the same batch',
      ops: (fs) => {
        mv(fs, 'd/x', 'x2');
        mv(fs, 'd', 'f');
      },
      observe: ['d', 'f', 'd/x', 'x2'],
      actions: ['MOVE d f', 'MOVE f/x x2'],
      kept: [['d/x', 'x2'], ['d', 'f'], ['d/sub/y', 'f/sub/y']],
      simulate: true,
    },
    {
      description: 'a child moved out of a directory renamed in the same batch, observed in another order',
      ops: (fs) => {
        mv(fs, 'd', 'f');
        mv(fs, 'f/x', 'x2');
      },
      observe: ['x2', 'f', 'd', 'd/x'],
      kept: [['d/x', 'x2'], ['d', 'f']],
      simulate: true,
    },
    {
      description: 'a child moved within a directory renamed in the same batch',
      ops: (fs) => {
        mv(fs, 'd', 'f');
        mv(fs, 'f/sub/y', 'f/y');
      },
      observe: ['d', 'f', 'f/y', 'f/sub/y'],
      kept: [['d', 'f'], ['d/sub/y', 'f/y']],
      simulate: true,
    },
    {
      description: 'a file moved into a directory renamed in the same batch (directory observed first)',
      ops: (fs) => {
        mv(fs, 'a.txt', 'd/a.txt');
        mv(fs, 'd', 'f');
      },
      observe: ['d', 'f', 'a.txt', 'f/a.txt'],
      kept: [['a.txt', 'f/a.txt'], ['d', 'f']],
      simulate: true,
    },
    {
      description: 'a file moved into a directory renamed in the same batch (file observed first)',
      ops: (fs) => {
        mv(fs, 'a.txt', 'd/a.txt');
        mv(fs, 'd', 'f');
      },
      observe: ['f/a.txt', 'a.txt', 'd', 'f'],
      kept: [['a.txt', 'f/a.txt'], ['d', 'f']],
      simulate: true,
    },
    {
      description: 'a file moved into a new directory in the same batch',
      ops: (fs) => {
        put(fs, 'n', dir(50));
        mv(fs, 'a.txt', 'n/a.txt');
      },
      observe: ['n', 'a.txt', 'n/a.txt'],
      index: { 'a.txt': null, n: 50 },
      simulate: true,
    },
    {
      description: 'a file renamed and changed in the same batch: the new content is sent',
      ops: (fs) => {
        mv(fs, 'a.txt', 'c.txt');
        put(fs, 'c.txt', file(10, { size: 7, mtimeMs: 5000 }));
      },
      observe: ['a.txt', 'c.txt'],
      index: { 'a.txt': null, 'c.txt': 10 },
      simulate: true,
    },

    // --- deletes
    {
      description: 'a deleted file is a DELETE with the stat it had',
      ops: (fs) => rm(fs, 'a.txt'),
      observe: ['a.txt'],
      actions: ['DELETE a.txt'],
      index: { 'a.txt': null },
      dropped: ['a.txt'],
      simulate: true,
    },
    {
      description: 'rm -rf of a directory deletes the children first, then the directory',
      ops: (fs) => rm(fs, 'd'),
      observe: ['d'],
      actions: ['DELETE d/x', 'DELETE d/sub/y', 'DELETE d/sub', 'DELETE d'],
      anyOrder: true,
      index: { d: null, 'd/sub/y': null },
      dropped: ['d'],
      simulate: true,
    },
    {
      description: 'rm -rf with every child observed gone deletes each once',
      ops: (fs) => rm(fs, 'd'),
      observe: ['d/sub/y', 'd/x', 'd', 'd/sub'],
      actions: ['DELETE d/x', 'DELETE d/sub/y', 'DELETE d/sub', 'DELETE d'],
      anyOrder: true,
      simulate: true,
    },
    {
      description: 'the directory is the last DELETE',
      ops: (fs) => rm(fs, 'd'),
      observe: ['d'],
      actions: ['DELETE d/x', 'DELETE d/sub/y', 'DELETE d/sub', 'DELETE d'],
    },

    // --- new directories
    {
      description: 'a new directory is sent and scanned',
      ops: (fs) => put(fs, 'n', dir(50)),
      observe: ['n'],
      actions: ['RSYNC n'],
      scan: ['n'],
      index: { n: 50 },
      simulate: true,
    },
    {
      description: 'a new tree observed deepest first is sent parents first',
      ops: (fs) => {
        put(fs, 'n', dir(50));
        put(fs, 'n/m', dir(51));
        put(fs, 'n/m/f', file(52));
      },
      observe: ['n/m/f', 'n/m', 'n'],
      actions: ['RSYNC n', 'RSYNC n/m', 'RSYNC n/m/f'],
      scan: ['n', 'n/m'],
      index: { 'n/m/f': 52 },
      simulate: true,
    },

    // --- temp files and replacements
    {
      description: 'a temp file is never indexed nor sent',
      ops: (fs) => put(fs, '.a.txt.swp', file(60)),
      observe: ['.a.txt.swp'],
      actions: [],
      index: { '.a.txt.swp': null },
    },
    {
      description: 'a temp file renamed onto a new real name sends the real name',
      ops: (fs) => {
        put(fs, 'c.txt.tmp', file(61));
        mv(fs, 'c.txt.tmp', 'c.txt');
      },
      observe: ['c.txt.tmp', 'c.txt'],
      actions: ['RSYNC c.txt'],
      index: { 'c.txt.tmp': null, 'c.txt': 61 },
      simulate: true,
    },
    {
      description: 'safe save: an rsync temp file renamed over a real file sends it, no DELETE',
      ops: (fs) => {
        put(fs, '.a.txt.Ab12Cd', file(62, { size: 3 }));
        mv(fs, '.a.txt.Ab12Cd', 'a.txt');
      },
      observe: ['.a.txt.Ab12Cd', 'a.txt'],
      actions: ['RSYNC a.txt'],
      index: { 'a.txt': 62, '.a.txt.Ab12Cd': null },
      simulate: true,
    },
    {
      description: 'a file replaced by a new inode (cp over) is RSYNC only, no DELETE',
      ops: (fs) => put(fs, 'a.txt', file(63, { size: 9 })),
      observe: ['a.txt'],
      actions: ['RSYNC a.txt'],
      index: { 'a.txt': 63 },
      simulate: true,
    },
    {
      description: 'a file replaced by a directory sends the directory and scans it',
      ops: (fs) => {
        rm(fs, 'a.txt');
        put(fs, 'a.txt', dir(64));
      },
      observe: ['a.txt'],
      actions: ['RSYNC a.txt'],
      scan: ['a.txt'],
      index: { 'a.txt': 64 },
      simulate: true,
    },
    {
      description: 'a directory replaced by a file deletes the old subtree, then sends the file',
      ops: (fs) => put(fs, 'd', file(65)),
      observe: ['d'],
      actions: ['DELETE d/x', 'DELETE d/sub/y', 'DELETE d/sub', 'DELETE d', 'RSYNC d'],
      anyOrder: true,
      scan: [],
      index: { d: 65, 'd/x': null },
      dropped: ['d'],
      simulate: true,
    },
    {
      description: 'a hard link to an indexed file that is still there is a new file',
      ops: (fs) => put(fs, 'e/h', file(10)),
      observe: ['e/h'],
      actions: ['RSYNC e/h'],
      index: { 'a.txt': 10, 'e/h': 10 },
      simulate: true,
    },

    // --- excludes
    {
      description: 'a move into an excluded name is a DELETE',
      ops: (fs) => mv(fs, 'a.txt', 'a.skip'),
      observe: ['a.txt', 'a.skip'],
      actions: ['DELETE a.txt'],
      index: { 'a.txt': null, 'a.skip': null },
      simulate: true,
    },
    {
      description: 'a directory moved into an excluded name deletes its subtree',
      ops: (fs) => mv(fs, 'd', 'node_modules'),
      observe: ['d', 'node_modules'],
      actions: ['DELETE d/x', 'DELETE d/sub/y', 'DELETE d/sub', 'DELETE d'],
      anyOrder: true,
      index: { node_modules: null },
      simulate: true,
    },
    {
      description: 'a move from an excluded name into the tree is an RSYNC',
      ops: (fs) => {
        put(fs, 'x.skip', file(70));
        mv(fs, 'x.skip', 'c.txt');
      },
      observe: ['x.skip', 'c.txt'],
      actions: ['RSYNC c.txt'],
      index: { 'c.txt': 70 },
      simulate: true,
    },
    {
      description: 'a move inside excluded names is nothing',
      ops: (fs) => {
        put(fs, 'x.skip', file(71));
        mv(fs, 'x.skip', 'y.skip');
      },
      observe: ['x.skip', 'y.skip'],
      actions: [],
    },

    // --- the helper's rename dance
    {
      description: 'psync dance: a move the helper made is not reported back, the index follows',
      before: (state) => noteDance(state, 'a.txt.123.psync.ignore', 900),
      ops: (fs) => mv(fs, 'a.txt', 'c.txt'),
      observe: ['a.txt.123.psync.ignore', 'a.txt', 'c.txt'],
      actions: [],
      index: { 'a.txt': null, 'c.txt': 10 },
      kept: [['a.txt', 'c.txt']],
    },
    {
      description: 'psync dance: a file the helper moved and the user then edited in the same batch: the edit is sent',
      before: (state) => noteDance(state, 'a.txt.123.psync.ignore', 900),
      ops: (fs) => {
        mv(fs, 'a.txt', 'c.txt');
        put(fs, 'c.txt', file(10, { size: 7, mtimeMs: 5000 }));
      },
      observe: ['a.txt', 'c.txt'],
      actions: ['RSYNC c.txt'],
      index: { 'a.txt': null, 'c.txt': 10 },
      kept: [['a.txt', 'c.txt']],
    },
    {
      description: 'psync dance: a directory move the helper made is not reported back',
      before: (state) => noteDance(state, 'd.4711-1-abcdef.psync.ignore', 900),
      ops: (fs) => mv(fs, 'd', 'e/d'),
      observe: ['d', 'e/d'],
      actions: [],
      index: { 'e/d/sub/y': 23 },
      kept: [['d', 'e/d'], ['d/sub/y', 'e/d/sub/y']],
    },
    {
      description: 'psync dance: a delete the helper made is not reported back',
      before: (state) => noteDance(state, 'a.txt.7.psync.ignore', 900),
      ops: (fs) => rm(fs, 'a.txt'),
      observe: ['a.txt'],
      actions: [],
      index: { 'a.txt': null },
    },
    {
      description: 'psync dance: a directory delete the helper made is not reported back, children neither',
      before: (state) => noteDance(state, 'd.9.psync.ignore', 900),
      ops: (fs) => rm(fs, 'd'),
      observe: ['d'],
      actions: [],
      index: { d: null },
    },
    {
      description: 'psync dance of another entry does not hide a user rename',
      before: (state) => noteDance(state, 'd/x.1.psync.ignore', 900),
      ops: (fs) => mv(fs, 'a.txt', 'c.txt'),
      observe: ['a.txt', 'c.txt'],
      actions: ['MOVE a.txt c.txt'],
    },
    {
      description: 'psync dance noted longer ago than DANCE_TTL_MS does not hide a user rename',
      before: (state) => noteDance(state, 'a.txt.123.psync.ignore', 0),
      now: DANCE_TTL_MS + 1,
      ops: (fs) => mv(fs, 'a.txt', 'c.txt'),
      observe: ['a.txt', 'c.txt'],
      actions: ['MOVE a.txt c.txt'],
    },
  ]))('%s', (_description, row) => runRow(row));

  test('a dance is consumed by its move: a later user rename of the same file is reported', () => {
    const state = fixtureState();
    noteDance(state, 'a.txt.1.psync.ignore', 0);
    expect(reconcile(state, [{ path: 'a.txt', stat: null }, { path: 'c.txt', stat: file(10) }], classify, 10).actions).toEqual([]);
    expect(state.danced.size).toBe(0);
    const second = reconcile(state, [{ path: 'c.txt', stat: null }, { path: 'g.txt', stat: file(10) }], classify, 20);
    expect(second.actions).toEqual([{ kind: 'move', from: 'c.txt', to: 'g.txt', stat: file(10) }]);
  });

  test('noteDance forgets dances older than DANCE_TTL_MS', () => {
    const state = fixtureState();
    noteDance(state, 'a.txt.1.psync.ignore', 0);
    noteDance(state, 'd/x.2.psync.ignore', DANCE_TTL_MS);
    const inodes = (): number[] => [...state.danced.keys()].map((node) => node.stat.ino).sort();
    expect(inodes()).toEqual([10, 21]);
    noteDance(state, 'd/sub/y.3.psync.ignore', DANCE_TTL_MS + 1);
    expect(inodes()).toEqual([21, 23]);
  });

  test('noteDance of a name the index does not hold remembers nothing', () => {
    const state = fixtureState();
    noteDance(state, 'nope.1.psync.ignore', 0);
    noteDance(state, '.psync/state.json', 0);
    expect(state.danced.size).toBe(0);
  });
});

describe('hasChanged', () => {
  const f = file(10);
  const d = dir(20);
  test.each(described<{ description: string; before: Stat; after: Stat; expected: boolean }>([
    { description: 'the same file', before: f, after: { ...f }, expected: false },
    { description: 'a file with another inode but the same content metadata', before: f, after: { ...f, ino: 99 }, expected: false },
    { description: 'file size', before: f, after: { ...f, size: 2 }, expected: true },
    { description: 'file mtime', before: f, after: { ...f, mtimeMs: f.mtimeMs + 1 }, expected: true },
    { description: 'file sub-millisecond mtime', before: f, after: { ...f, mtimeMs: f.mtimeMs + 0.001 }, expected: true },
    { description: 'file mode', before: f, after: { ...f, mode: 0o755 }, expected: true },
    { description: 'file to symlink', before: f, after: { ...f, type: 'symlink' }, expected: true },
    { description: 'symlink mtime', before: { ...f, type: 'symlink' }, after: { ...f, type: 'symlink', mtimeMs: 1 }, expected: true },
    { description: 'directory mtime is noise', before: d, after: { ...d, mtimeMs: 5 }, expected: false },
    { description: 'directory size is noise', before: d, after: { ...d, size: 8192 }, expected: false },
    { description: 'directory mode', before: d, after: { ...d, mode: 0o700 }, expected: true },
    { description: 'directory to file', before: d, after: { ...d, type: 'file' }, expected: true },
    { description: 'file to directory', before: f, after: { ...f, type: 'dir' }, expected: true },
  ]))('%s', (_description, { before, after, expected }) => {
    expect(hasChanged(before, after)).toBe(expected);
  });
});

describe('dancedOriginal', () => {
  test.each(described<{ description: string; path: string; expected: string | undefined }>([
    { description: 'a top-level name', path: 'a.txt.123.psync.ignore', expected: 'a.txt' },
    { description: "the helper's pid-counter-hex id", path: 'd/a.txt.4711-3-a1b2c3.psync.ignore', expected: 'd/a.txt' },
    { description: 'a deep name', path: 'd/sub/y.1.psync.ignore', expected: 'd/sub/y' },
    { description: 'a name with spaces', path: 'my file.1.psync.ignore', expected: 'my file' },
    { description: 'a dot file', path: '.bashrc.1.psync.ignore', expected: '.bashrc' },
    { description: 'a non-UTF-8 name', path: '\udcff.1.psync.ignore', expected: '\udcff' },
    { description: 'no name before the id', path: '.123.psync.ignore', expected: undefined },
    { description: 'an ordinary name', path: 'a.txt', expected: undefined },
    { description: 'the mark not at the end', path: 'a.txt.1.psync.ignore.bak', expected: undefined },
    { description: 'an entry below a scratch directory', path: 'd.1.psync.ignore/x', expected: undefined },
    { description: 'an id with characters the helper never uses', path: 'a.txt.1 2.psync.ignore', expected: undefined },
  ]))('%s', (_description, { path, expected }) => {
    expect(dancedOriginal(path)).toBe(expected);
  });
});

describe('inode reuse: a new entry that gets a just-freed inode number is not a rename', () => {
  const born = (stat: Stat, birthMs: number): Stat => ({ ...stat, birthMs });
  const build = (): FilterState => {
    const state = new FilterState(new TreeIndex(dir(1)));
    state.index.set('d', born(dir(20), 500));
    state.index.set('d/x', born(file(21), 500));
    return state;
  };
  const shown = (decision: Decision): string[] =>
    decision.actions.map((a) => (a.kind === 'move' ? `MOVE ${a.from} ${a.to}` : `${a.kind.toUpperCase()} ${a.path}`));

  test.each(
    described([
      {
        description: 'same inode, same birth: a rename',
        birth: 500,
        actions: ['MOVE d n'],
      },
      {
        description: 'same inode, another birth: the old one was deleted and a new one made',
        birth: 900,
        actions: ['DELETE d/x', 'DELETE d', 'RSYNC n'],
      },
      {
        description: 'same inode, no birth time known on one side: taken as a rename',
        birth: undefined,
        actions: ['MOVE d n'],
      },
    ]),
  )('%s', (_, row) => {
    const state = build();
    const stat = row.birth === undefined ? dir(20) : born(dir(20), row.birth);
    const decision = reconcile(state, [{ path: 'd', stat: null }, { path: 'd/x', stat: null }, { path: 'n', stat }], classify, 1000);
    expect(shown(decision)).toEqual(row.actions);
  });

  test('an entry the helper deleted (parked) is not revived by a new entry reusing its inode', () => {
    const state = build();
    noteDance(state, 'd.7.psync.ignore', 900);
    expect(shown(reconcile(state, [{ path: 'd', stat: null }], classify, 1000))).toEqual([]);
    const decision = reconcile(state, [{ path: 'n', stat: born(dir(20), 1200) }], classify, 1200);
    expect(shown(decision)).toEqual(['RSYNC n']);
    expect(decision.scan).toEqual(['n']);
    expect(state.index.get('n')?.children.size).toBe(0);
  });

  test('an entry the helper moved whose new name shows up in a later round is re-attached silently', () => {
    const state = build();
    noteDance(state, 'd.7.psync.ignore', 900);
    expect(shown(reconcile(state, [{ path: 'd', stat: null }], classify, 1000))).toEqual([]);
    const node = state.parked.get(20)?.node;
    const decision = reconcile(state, [{ path: 'n', stat: born(dir(20), 500) }], classify, 1100);
    expect(shown(decision)).toEqual([]);
    expect(state.index.get('n')).toBe(node);
    expect(state.index.get('n/x')?.stat.ino).toBe(21);
  });

  test('a parked entry nobody claims is forgotten after DANCE_TTL_MS and its watches dropped', () => {
    const state = build();
    noteDance(state, 'd.7.psync.ignore', 900);
    reconcile(state, [{ path: 'd', stat: null }], classify, 1000);
    const node = state.parked.get(20)?.node;
    const later = reconcile(state, [], classify, 1000 + DANCE_TTL_MS + 1);
    expect(later.dropped).toContain(node);
    expect(state.parked.size).toBe(0);
  });
});

test('a dance mark belongs to the entry, not to its inode number: a later entry reusing the number is reported', () => {
  const state = new FilterState(new TreeIndex(dir(1)));
  state.index.set('old', { ...dir(20), birthMs: 500 });
  noteDance(state, 'old.7.psync.ignore', 900);
  reconcile(state, [{ path: 'old', stat: null }], classify, 1000);
  // A new directory gets the freed inode number, then the user deletes it: that delete is real.
  const created = reconcile(state, [{ path: 'new', stat: { ...dir(20), birthMs: 1100 } }], classify, 1100);
  expect(created.actions.map((a) => a.kind)).toEqual(['rsync']);
  const deleted = reconcile(state, [{ path: 'new', stat: null }], classify, 1200);
  expect(deleted.actions).toEqual([{ kind: 'delete', path: 'new', stat: { ...dir(20), birthMs: 1100 } }]);
});

// Issue 10 (concurrent.test.ts, fuzz races with renames): psync wrote d/f on this side and the user ran
// `mv d e; rm e/f` before the filter's own round for d/f came: d/f was never indexed, and its delete was never reported.
describe('a gone path the index never held', () => {
  const show = (decision: Decision): string[] => decision.actions.map((a) => (a.kind === 'move' ? `MOVE ${a.from} ${a.to}` : `${a.kind.toUpperCase()} ${a.path}`));

  test('in a directory that is still there: a DELETE with nothing known of it', () => {
    const state = fixtureState();
    const decision = reconcile(state, [{ path: 'd/new', stat: null }], classify, 1000);
    expect(show(decision)).toEqual(['DELETE d/new']);
    expect(decision.actions[0]).toMatchObject({ stat: { type: 'other', ino: 0 } });
  });

  test('below a directory this round renamed: nothing, until it is looked at under the new name', () => {
    const state = fixtureState();
    const first = reconcile(state, [{ path: 'd', stat: null }, { path: 'f', stat: dir(20) }, { path: 'd/new', stat: null }], classify, 1000);
    expect(show(first)).toEqual(['MOVE d f']);
    expect(show(reconcile(state, [{ path: 'f/new', stat: null }], classify, 1010))).toEqual(['DELETE f/new']);
  });

  test('below a directory that is gone too: only the indexed entries are deleted', () => {
    const state = fixtureState();
    const decision = reconcile(state, [{ path: 'e', stat: null }, { path: 'e/new', stat: null }], classify, 1000);
    expect(show(decision)).toEqual(['DELETE e']);
  });
});

describe('splitByAncestry: a path waits for its renamed, removed or replaced ancestor', () => {
  // The fixture on disk, as lstat sees it, with `changes` applied (path -> stat or null).
  const disk = (changes: Record<string, Stat | null>) => (path: string): Stat | null =>
    path in changes ? changes[path]! : (new Map(FIXTURE).get(path) ?? null);

  test.each(described<{ description: string; due: string[]; changes: Record<string, Stat | null>; ready: string[]; gone?: string[]; later?: string[]; ancestors?: string[] }>([
    { description: 'nothing changed above: decided now', due: ['d/sub/y', 'a.txt'], changes: {}, ready: ['d/sub/y', 'a.txt'] },
    { description: 'the parent was renamed away: wait for its round', due: ['d/x'], changes: { d: null }, ready: [], later: ['d/x'], ancestors: ['d'] },
    { description: 'the parent is in this round too: decided together', due: ['d/x', 'd'], changes: { d: null }, ready: ['d/x', 'd'] },
    { description: 'the grandparent changed: wait, and touch the highest changed one', due: ['d/sub/y'], changes: { d: dir(99) }, ready: [], later: ['d/sub/y'], ancestors: ['d'] },
    { description: 'the parent is a symlink now: wait (lstat would follow it)', due: ['d/sub/y'], changes: { 'd/sub': { type: 'symlink', ino: 77, size: 3, mtimeMs: 1, mode: 0o777 } }, ready: [], later: ['d/sub/y'], ancestors: ['d/sub'] },
    { description: 'one changed ancestor is touched once for all its waiting children', due: ['d/x', 'd/sub/y'], changes: { d: null }, ready: [], later: ['d/x', 'd/sub/y'], ancestors: ['d'] },
    { description: 'a path below a new directory is decided now', due: ['n/new'], changes: {}, ready: ['n/new'] },
  ]))('%s', (_description, { due, changes, ready, gone = [], later = [], ancestors = [] }) => {
    expect(splitByAncestry(fixtureIndex(), due, disk(changes))).toEqual({ ready, gone, later, changedAncestors: ancestors });
  });

  test('below a name the index holds as a link: gone, whatever lstat says', () => {
    const index = fixtureIndex();
    index.set('d/sub', { type: 'symlink', ino: 78, size: 5, mtimeMs: 1, mode: 0o777 });
    expect(splitByAncestry(index, ['d/sub/y'], disk({}))).toEqual({ ready: [], gone: ['d/sub/y'], later: [], changedAncestors: [] });
  });
});

describe('a move onto an existing file names what it replaces', () => {
  test('mv a.txt d/x: the MOVE carries d/x as it was, so the target can tell its own edit of d/x from it', () => {
    const state = fixtureState();
    const decision = reconcile(state, [{ path: 'a.txt', stat: null }, { path: 'd/x', stat: file(10) }], classify, 10);
    expect(decision.actions).toEqual([{ kind: 'move', from: 'a.txt', to: 'd/x', stat: file(10), replaces: file(21) }]);
  });

  test('a move to a free name replaces nothing', () => {
    const state = fixtureState();
    const decision = reconcile(state, [{ path: 'a.txt', stat: null }, { path: 'd/new', stat: file(10) }], classify, 10);
    expect(decision.actions).toEqual([{ kind: 'move', from: 'a.txt', to: 'd/new', stat: file(10) }]);
  });
});
