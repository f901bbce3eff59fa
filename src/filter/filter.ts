/**
 * The filter process: watches one root and reports settled actions to the
 * brain as frames on stdout (protocol in src/core/protocol.ts).
 *
 * Why not @parcel/watcher: its inotify backend keeps the old path of a
 * renamed directory (events inside `d2` after `mv d d2` are lost or reported
 * under `d`), does not watch the subdirectories of a directory moved into
 * the tree, and misses what `mkdir -p a/b/c` creates below `a`. Losing those
 * would lose changes. Instead each indexed directory has its own inotify
 * watch (src/filter/watcher.ts: the native addon, fs.watch as the fallback),
 * bound to its index node rather than to a path: when the
 * directory is renamed the node moves and its watch keeps reporting under
 * the new name. A directory that appears is watched first and listed second,
 * so nothing created in between is missed.
 *
 * The tree is read only through the file layer (src/fs): listings and stats
 * are made on directories held open from the root component by component,
 * and each watch is added on the held directory (`/proc/self/fd/N`), so a
 * directory swapped for a symlink never makes the filter read, watch or
 * report anything outside the root.
 *
 * Start-up: the tree is watched and indexed (scanTree 'index'), then, when
 * the brain asked for it (FilterConfig.reportScan), the index is sent as
 * ENTRY frames, parents first, one frame per write and waiting for the
 * output to drain when it is full (100,000 entries are 100,000 frames, never
 * one string); then READY with the pair ids of the root's `.psync/id`.
 * Changes seen meanwhile stay pending and are decided after READY, against
 * the index the ENTRY frames described.
 */

import { once } from 'node:events';
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { FilterState, hasChanged, isSameEntry, noteDance, reconcile, splitByAncestry, type Observation } from '../core/filterRules.js';
import { FrameReceiver, FrameWriter, type Frame } from '../core/frame.js';
import { compilePathClassifier } from '../core/patterns.js';
import { bytesToPath, joinPath } from '../core/paths.js';
import {
  encodeAction,
  encodeEntry,
  encodeLeftover,
  encodeReady,
  encodeSkipped,
  HEARTBEAT_INTERVAL_MS,
  MARKER_FILE_MAX_BYTES,
  MARKER_FILE_NAME,
  parsePairIds,
  PROTOCOL_VERSION,
  REPLACED_DIR,
  START_ERROR_KIND,
  type FilterConfig,
} from '../core/protocol.js';
import { Settler } from '../core/settle.js';
import { TreeIndex, type TreeNode } from '../core/tree.js';
import type { Stat } from '../core/types.js';
import { coreStat, DirCache, DT_DIR, requireFileLayer, Tree, using, type Directory } from '../fs/directory.js';
import { collectLeftovers, openPsyncDir, type Leftover } from '../fs/psyncDir.js';
import { lockRoot } from './rootLock.js';
import { openWatchBackend, type DirWatch, type WatchBackend } from './watcher.js';
import { readConfigFrame } from '../childConfig.js';

/** At most this many versions kept by killed transfers are listed at a start (LEFTOVER); the rest at the next. */
const MAX_LEFTOVERS = 100_000;

/** Events this close together are decided in one round (both halves of a rename). */
const GROUP_MS = 20;

/** Exit codes of the filter process. */
export const FILTER_EXIT = { ok: 0, badConfig: 2, rootLost: 3, watchFailed: 4, rootLocked: 5, markerUnreadable: 6 } as const;

/** Writes one frame; false when the output is full and the writer should wait for `drained`. */
type Send = (verb: string, args?: string[]) => boolean;
/** Resolves once the output has room again: true, or false when it closed or failed instead. */
type Drained = () => Promise<boolean>;

export async function runFilter(input: Readable, output: Writable): Promise<number> {
  const writer = new FrameWriter();
  const send: Send = (verb, args = []) => output.write(writer.encode(verb, args));
  const drained: Drained = async () => {
    if (!output.writableNeedDrain) return true;
    try {
      return await Promise.race([once(output, 'drain').then(() => true), once(output, 'close').then(() => false)]);
    } catch {
      return false; // the output failed
    }
  };
  const receiver = new FrameReceiver();
  let config: FilterConfig;
  // Flow control after CONFIG (PAUSE, RESUME) goes to the watcher once it exists.
  let control: (frame: Frame) => void = () => {};
  try {
    config = await readConfigFrame<FilterConfig>(input, receiver, (frame) => control(frame));
  } catch (error) {
    send('ERROR', [(error as Error).message]);
    return FILTER_EXIT.badConfig;
  }
  send('HELLO', [String(PROTOCOL_VERSION), 'filter', String(process.pid)]);

  let rootStat: Stat;
  try {
    requireFileLayer();
  } catch (error) {
    send('ERROR', [(error as Error).message]);
    return FILTER_EXIT.badConfig;
  }
  try {
    // A root given through a symlink (/data -> /mnt/data) is watched where it really is;
    // a relative root is relative to where the filter starts (the remote home over SSH).
    config = { ...config, root: realpathSync(resolve(config.root)) };
    const root = new Tree(config.root).lstat('');
    if (root?.type !== 'dir') throw new Error('not a directory');
    rootStat = coreStat(root);
  } catch (error) {
    send('ERROR', [`root ${config.root} is not a readable directory: ${(error as Error).message}`, START_ERROR_KIND.rootUnusable]);
    return FILTER_EXIT.badConfig;
  }

  let unlock: () => void = () => {};
  try {
    if (config.lock) unlock = lockRoot(config.root, config.lockOwner);
  } catch (error) {
    send('ERROR', [(error as Error).message, START_ERROR_KIND.rootInUse]);
    return FILTER_EXIT.rootLocked;
  }
  try {
    const watcher = new TreeWatcher(config, new FilterState(new TreeIndex(rootStat)), send, drained);
    control = (frame) => watcher.control(frame);
    return await watcher.run(input);
  } finally {
    unlock();
  }
}

class TreeWatcher {
  private readonly classify;
  private readonly settler;
  private timer: NodeJS.Timeout | undefined;
  /**
   * Where each pending path came from: the directory node whose watch saw
   * it and the name. A directory renamed before the round that pairs its
   * rename still reports under its old path; after the round the path is
   * resolved again through the node.
   */
  private readonly origins = new Map<string, { node: TreeNode; name: string }>();
  /** Directories that cannot be read or watched (EACCES): said once (SKIPPED), tried again at each rescan. */
  private readonly skipped = new Set<string>();
  private heartbeat: NodeJS.Timeout | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  private beats = 0;
  private finish: (code: number) => void = () => {};
  private readonly watcher: WatchBackend;
  /** Why overflow detection is off (fs.watch fallback), reported once at start. */
  private readonly watcherFallback: string | undefined;
  private overflowRescan: NodeJS.Immediate | undefined;
  /** The tree, reached only through the file layer: nothing behind a symlink is read, listed or watched. */
  private readonly tree: Tree;

  constructor(
    private readonly config: FilterConfig,
    private readonly state: FilterState,
    private readonly send: Send,
    private readonly drained: Drained,
  ) {
    this.tree = new Tree(config.root);
    this.classify = compilePathClassifier({ excludes: config.excludes, tempfiles: config.tempfiles });
    this.settler = new Settler(config.settleMs, config.maxDelayMs, Math.min(GROUP_MS, config.settleMs / 2));
    const { backend, fallback } = openWatchBackend((reason) => this.onOverflow(reason));
    this.watcher = backend;
    this.watcherFallback = fallback;
  }

  /**
   * The brain asked to hold reports (its queue is full): changed paths stay
   * pending in the settler, where repeated changes of one path merge, and
   * are decided and reported once RESUME comes. Watching, heartbeats and
   * rescans (which only mark paths) go on.
   */
  private paused = false;

  control(frame: Frame): void {
    if (frame.verb === 'PAUSE') {
      this.paused = true;
      clearTimeout(this.timer);
      this.timer = undefined;
    } else if (frame.verb === 'RESUME') {
      this.paused = false;
      this.schedule();
    } else {
      this.send('WARN', [`ignoring an unexpected ${frame.verb} from the brain`]);
    }
  }

  private get index(): TreeIndex {
    return this.state.index;
  }

  /** False until READY is sent: changes seen before stay pending, so no report comes before READY. */
  private started = false;
  private stopped = false;

  async run(input: Readable): Promise<number> {
    const done = new Promise<number>((resolve) => (this.finish = resolve));
    // Listened for before the scan's report, which may wait for the brain to read.
    input.on('end', () => this.stop(0));
    input.on('error', () => this.stop(0));
    input.resume();
    process.once('SIGTERM', () => this.stop(0));
    process.once('SIGINT', () => this.stop(0));
    if (this.watcherFallback !== undefined) {
      const net = this.config.rescanMs > 0 ? `the rescan every ${this.config.rescanMs / 1000} s` : 'nothing (--rescan is off)';
      this.send('WARN', [`watching with fs.watch: ${this.watcherFallback}; a kernel event queue overflow goes unseen and only ${net} catches what it loses`]);
    }
    try {
      this.scanTree('', 'index');
    } catch (error) {
      return this.fail(error);
    }
    void this.announce();
    return done;
  }

  /** The start-up report (ENTRY frames when asked for), READY, then watching as usual. */
  private async announce(): Promise<void> {
    let markers: string[] | undefined;
    try {
      markers = this.readMarkers();
    } catch (error) {
      this.send('ERROR', [`cannot read the pair marker ${this.config.root}/.psync/${MARKER_FILE_NAME}: ${(error as Error).message}`]);
      this.stop(FILTER_EXIT.markerUnreadable);
      return;
    }
    if (this.config.reportScan === true) {
      for (const leftover of this.leftovers()) {
        const { verb, args } = encodeLeftover(leftover);
        this.send(verb, args);
      }
      for (const node of this.index.walk(this.index.root)) {
        if (this.stopped) return;
        if (node === this.index.root) continue;
        const { verb, args } = encodeEntry({ path: this.index.pathOf(node), stat: node.stat });
        if (!this.send(verb, args) && !(await this.drained())) {
          this.stop(FILTER_EXIT.ok); // the brain is gone
          return;
        }
      }
    }
    if (this.stopped) return;
    const ready = encodeReady({ entries: this.index.size, markers });
    this.send(ready.verb, ready.args);
    this.started = true;
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_INTERVAL_MS);
    if (this.config.rescanMs > 0) this.rescanTimer = setInterval(() => this.rescan(), this.config.rescanMs);
    this.schedule();
  }

  /** What killed transfers kept under `.psync/replaced` (only when this filter holds the root's lock: no transfer runs). */
  private leftovers(): Leftover[] {
    if (!this.config.lock) return [];
    try {
      return collectLeftovers(this.tree, MAX_LEFTOVERS);
    } catch (error) {
      this.send('WARN', [`cannot list ${this.config.root}/${REPLACED_DIR}: ${(error as Error).message}`]);
      return [];
    }
  }

  /**
   * The pair ids in the root's `.psync/id`, or undefined when there is no
   * such file. A `.psync` that is not psync's own (psyncDir.ts), an `id`
   * that is a symlink, not a regular file or over MARKER_FILE_MAX_BYTES
   * throws: the brain must not take it for a missing marker.
   */
  private readMarkers(): string[] | undefined {
    const psync = openPsyncDir(this.tree, false);
    if (psync === undefined) return undefined;
    const text = using(psync, (dir) => dir.readFile(MARKER_FILE_NAME, MARKER_FILE_MAX_BYTES));
    return text === undefined ? undefined : parsePairIds(text.toString('latin1'));
  }

  private stop(code: number): void {
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearInterval(this.rescanTimer);
    clearTimeout(this.timer);
    clearImmediate(this.overflowRescan);
    this.unwatch(this.index.root);
    this.watcher.close();
    this.finish(code);
  }

  private fail(error: unknown): number {
    const message = (error as Error).message;
    this.send('ERROR', [message]);
    this.stop(FILTER_EXIT.watchFailed);
    return FILTER_EXIT.watchFailed;
  }

  private beat(): void {
    this.beats += 1;
    if (this.rootLost()) return;
    this.send('HEARTBEAT', [String(this.beats)]);
  }

  /**
   * Never report a vanished root as "everything was deleted": `rm -rf ROOT`
   * deletes the children first, and an unmount swaps the directory. Checked
   * before every round of actions and at every heartbeat; stops the filter.
   */
  private rootLost(): boolean {
    const root = this.lstat('');
    if (root !== null && root.type === 'dir' && root.ino === this.index.root.stat.ino) return false;
    this.send('ERROR', [`root ${this.config.root} disappeared or was replaced; stopping without sending its deletes`]);
    this.stop(FILTER_EXIT.rootLost);
    return true;
  }

  /**
   * Watch the directory at `path`, then list it. In 'index' mode (start-up)
   * entries are indexed silently, recursively. In 'dirty' mode (a directory
   * that appeared while running) its files are marked dirty, so they are
   * reported once they settle, and its subdirectories are decided at once
   * (a directory has no content to wait for): a new tree `a/b/c/d` is watched
   * and announced in one go instead of one settle delay per level.
   */
  private scanTree(path: string, mode: 'index' | 'dirty'): void {
    const stack = [path];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      const node = this.index.get(dir);
      if (node === undefined || node.stat.type !== 'dir') continue;
      this.watchNode(node, dir);
      const held = this.openDir(dir);
      if (held === undefined) continue; // gone already (or now a symlink): its own event reports that
      const now = performance.now();
      const subdirs: string[] = [];
      using(held, (handle) => {
        const listed = this.list(handle, dir);
        if (listed === undefined) return;
        const { names, types } = listed;
        for (const [i, name] of names.entries()) {
          const child = joinPath(dir, name);
          if (mode === 'dirty') {
            if (types[i] === DT_DIR) subdirs.push(child);
            else this.touch(child, now);
            continue;
          }
          const stat = handle.stat(name);
          if (stat === undefined || this.classify(child, stat.type === 'dir') !== 'sync') continue;
          this.index.set(child, coreStat(stat));
          if (stat.type === 'dir') stack.push(child);
        }
      });
      if (subdirs.length > 0) this.settle(subdirs, now);
    }
  }

  /**
   * Walk the tree (or the subtree at `from`) against the index and mark
   * dirty every path that differs (new, changed, gone); the normal rules then
   * decide what to send. This is the net under inotify: it misses a write
   * made through a hard link outside the tree, and a queue overflow loses
   * events (the native watcher reports it and the whole tree is rescanned at
   * once; with the fs.watch fallback only the periodic rescan finds it). A
   * directory whose watch died is watched again.
   */
  private rescan(from = ''): void {
    const now = performance.now();
    let marked = 0;
    const mark = (path: string): void => {
      if (this.touch(path, now)) marked += 1;
    };
    const stack = [from];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      const node = this.index.get(dir);
      if (node === undefined || node.stat.type !== 'dir') continue;
      try {
        this.watchNode(node, dir);
      } catch (error) {
        this.fail(error);
        return;
      }
      const held = this.openDir(dir);
      if (held === undefined) {
        if (dir !== '') mark(dir);
        continue;
      }
      const seen = new Set<string>();
      let listed = true;
      using(held, (handle) => {
        const names = this.list(handle, dir)?.names;
        if (names === undefined) {
          listed = false;
          return;
        }
        for (const name of names) {
          const path = joinPath(dir, name);
          const found = handle.stat(name);
          if (found === undefined || this.classify(path, found.type === 'dir') !== 'sync') continue;
          const stat = coreStat(found);
          seen.add(name);
          const known = node.children.get(name);
          if (known === undefined || !isSameEntry(known.stat, stat) || hasChanged(known.stat, stat)) mark(path);
          else if (stat.type === 'dir') stack.push(path);
        }
      });
      // A directory that cannot be listed is not emptied: what it held is unknown, not gone.
      if (!listed) continue;
      for (const name of node.children.keys()) if (!seen.has(name)) mark(joinPath(dir, name));
    }
    if (marked > 0) this.send('WARN', [`rescan found ${marked} change(s) the watcher missed; sending them`]);
  }

  /** The kernel dropped events: rescan the whole tree (coalesced, once per burst of overflows). */
  private onOverflow(reason: string): void {
    if (this.overflowRescan !== undefined) return;
    this.send('WARN', [`${reason}; rescanning ${this.config.root} to find what changed`]);
    this.overflowRescan = setImmediate(() => {
      this.overflowRescan = undefined;
      this.rescan();
    });
  }

  private watchNode(node: TreeNode, dir: string): void {
    if (node.watch !== undefined) return;
    const held = this.openDir(dir);
    if (held === undefined) return; // gone, or a symlink now: never watched through it
    let handle: DirWatch;
    try {
      // The watch goes on the held directory itself (its /proc/self/fd link), not on a path
      // that a directory swapped for a symlink could redirect out of the tree.
      handle = this.watcher.watchDir(
        Buffer.from(`/proc/self/fd/${held.fd}`),
        (name) => this.onEvent(node, name),
        () => this.onWatchError(node, handle),
      );
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      if (code === 'EACCES' || code === 'EPERM') {
        this.skip(dir, `cannot watch it (${code})`);
        return;
      }
      if (code === 'ENOSPC') {
        throw new Error(
          `the inotify watch limit (fs.inotify.max_user_watches) is too low for ${this.config.root}: ` +
            `psync needs one watch per directory (at least ${this.countDirs()}); raise it with ` +
            `'sysctl fs.inotify.max_user_watches=${Math.max(524288, this.countDirs() * 2)}'`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      held.close();
    }
    node.watch = handle;
  }

  /** A directory's watch died (unmounted, watcher error): mark it dirty and rescan it, which watches it again. */
  private onWatchError(node: TreeNode, handle: DirWatch): void {
    handle.close();
    if (node.watch !== handle) return;
    node.watch = undefined;
    if (!this.index.isAttached(node)) return;
    const dir = this.index.pathOf(node);
    this.touch(dir, performance.now());
    this.rescan(dir);
  }

  private countDirs(): number {
    let dirs = 0;
    for (const node of this.index.walk(this.index.root)) if (node.stat.type === 'dir') dirs += 1;
    return dirs;
  }

  private onEvent(node: TreeNode, name: Buffer | null): void {
    if (!this.index.isAttached(node)) return; // a stale watch of a directory that left the tree
    const dir = this.index.pathOf(node);
    if (name === null) {
      this.touch(dir, performance.now());
      return;
    }
    const base = bytesToPath(name);
    const path = joinPath(dir, base);
    // Remember the origin only of a path that will fall due (and so be looked up again):
    // temp files and excluded names never do, and would pile up here.
    if (this.touch(path, performance.now()) && node !== this.index.root) this.origins.set(path, { node, name: base });
  }

  /** Mark `path` dirty; false when it is never synced (temp, excluded, psync's own). */
  private touch(path: string, now: number): boolean {
    const kind = path === '' ? 'sync' : this.classify(path);
    if (kind === 'internal') noteDance(this.state, path, now);
    if (kind !== 'sync') return false;
    this.settler.touch(path, now);
    this.schedule();
    return true;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.paused || !this.started) return;
    const next = this.settler.nextDueAt();
    if (next === undefined) return;
    this.timer = setTimeout(() => this.tick(), Math.max(1, next - performance.now()));
  }

  private tick(): void {
    this.timer = undefined;
    const now = performance.now();
    const due = this.settler.takeDue(now);
    if (due.length > 0) this.settle(due, now);
    this.schedule();
  }

  /** Decide the paths that fell due, with one cache of held directories for the whole round. */
  private settle(all: string[], now: number): void {
    const outer = this.round;
    this.round = new DirCache(this.tree);
    try {
      this.settleRound(all, now);
    } finally {
      this.round.close();
      this.round = outer;
    }
  }

  private settleRound(all: string[], now: number): void {
    if (this.rootLost()) return;
    // A path below a directory that was renamed, removed or replaced waits for that directory's round.
    const ancestry = splitByAncestry(this.index, all, (path) => this.lstat(path));
    for (const ancestor of ancestry.changedAncestors) this.touch(ancestor, now);
    for (const path of ancestry.later) this.touch(path, now);
    const due = [...ancestry.ready, ...ancestry.gone];
    const gone = new Set(ancestry.gone);
    const observations: Observation[] = due.map((path) => ({
      path,
      stat: path === '' || gone.has(path) ? null : this.lstat(path),
    }));
    // A path that reappeared with an inode the index holds elsewhere may be a move whose other half
    // is not due yet (or never reported): look at that other name now.
    const seen = new Set(due);
    for (const { stat } of [...observations]) {
      if (stat === null) continue;
      for (const node of this.index.nodesWithInode(stat.ino)) {
        const other = this.index.pathOf(node);
        if (seen.has(other) || !this.index.isAttached(node)) continue;
        seen.add(other);
        const otherStat = this.lstat(other);
        if (otherStat === null || otherStat.ino !== stat.ino) observations.push({ path: other, stat: otherStat });
      }
    }
    const decision = reconcile(this.state, observations.filter((o) => o.path !== ''), this.classify, now);
    for (const node of decision.dropped) this.unwatch(node);
    for (const action of decision.actions) {
      const { verb, args } = encodeAction(action);
      this.send(verb, args);
    }
    this.followRenamedParents(due, now);
    for (const dir of decision.scan) {
      try {
        this.scanTree(dir, 'dirty');
      } catch (error) {
        this.fail(error);
        return;
      }
    }
  }

  /** Paths reported through a directory that has been renamed meanwhile: look again under the new name. */
  private followRenamedParents(due: readonly string[], now: number): void {
    for (const path of due) {
      const origin = this.origins.get(path);
      if (origin === undefined) continue;
      this.origins.delete(path);
      if (!this.index.isAttached(origin.node)) continue;
      const current = joinPath(this.index.pathOf(origin.node), origin.name);
      if (current !== path) this.touch(current, now - this.config.settleMs);
    }
  }

  /** Close the watches of a node and everything below it. */
  private unwatch(node: TreeNode): void {
    for (const n of this.index.walk(node)) {
      (n.watch as DirWatch | undefined)?.close();
      n.watch = undefined;
    }
  }

  /** The held directories of the settle round under way (DirCache); undefined between rounds. */
  private round: DirCache | undefined;

  /** lstat through the file layer; null when the path is not in the tree (missing, or behind a symlink). */
  private lstat(path: string): Stat | null {
    try {
      const stat = this.round === undefined ? this.tree.lstat(path) : this.round.lstat(path);
      return stat === undefined ? null : coreStat(stat);
    } catch {
      return null;
    }
  }

  /** The held directory at `path`, or undefined when it is gone, not a directory, or behind a symlink. */
  /** Open a directory of the tree; undefined when it is gone, a symlink now, or cannot be read (skipped, said once). */
  private openDir(path: string): Directory | undefined {
    try {
      return this.tree.openDir(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') this.skip(path, `cannot open it (${code})`);
      return undefined;
    }
  }

  /** The names in a held directory; undefined when it cannot be read (skipped, said once). */
  private list(handle: Directory, path: string): { names: string[]; types: number[] } | undefined {
    try {
      const listed = handle.listTyped();
      this.unskip(path);
      return listed;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EACCES' && code !== 'EPERM') throw error;
      this.skip(path, `cannot list it (${code})`);
      return undefined;
    }
  }

  /**
   * Leave out a directory psync cannot read or watch: what is in it is
   * neither sent nor taken for deleted. The brain is told once (SKIPPED);
   * each rescan tries it again. The root itself cannot be skipped: a root
   * psync cannot read stops the filter.
   */
  private skip(path: string, why: string): void {
    if (path === '') throw new Error(`cannot read the root ${this.config.root}: ${why}`);
    if (this.skipped.has(path)) return;
    this.skipped.add(path);
    const { verb, args } = encodeSkipped(path, why);
    this.send(verb, args);
  }

  private unskip(path: string): void {
    if (!this.skipped.delete(path)) return;
    const { verb, args } = encodeSkipped(path, '');
    this.send(verb, args);
  }
}

