/**
 * A seeded randomized test that psync loses nothing and resurrects nothing.
 *
 * Each round plans, from the seed, operations on both sides at once (create,
 * overwrite, append, truncate, a file written continuously for seconds,
 * delete, renames of files and directories within and across directories,
 * rm -rf, mkdir -p, chmod, symlinks with relative targets), some of them
 * clashing on one path within microseconds (an edit racing a delete, a file
 * against a directory, ...), and a fault before, during or after them:
 * kill -9 of psync (and sometimes more changes on both sides while it is
 * down), or, over SSH, kill -9 of the sshd processes serving its
 * connections. Then it waits, with a deadline, until psync watches with
 * nothing queued and both trees are identical (and a barrier file went each
 * way), and checks the round's invariants (support/fuzz.ts `checkRound`):
 * identical trees, no version lost, nothing deleted come back, nothing
 * untouched changed.
 *
 * PSYNC_FUZZ_SEED fixes the seed (default: a random one, logged), and
 * PSYNC_FUZZ_ROUNDS the rounds per mode. The seed fixes what is planned,
 * not how psync's timing interleaves with it, so a failure may need a few
 * runs of its seed to show again. Every failure names the seed, the mode,
 * the round, the path and the token, the operations on that path, and the
 * end of psync's stderr.
 */

import { randomInt } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { isSameOrUnder, joinPath, parentOf } from '../../src/core/paths.js';
import {
  checkRound,
  childrenOf,
  commandOf,
  describeOp,
  descendantsOf,
  diffTrees,
  dumpTree,
  isAlive,
  killQuietly,
  opsAbout,
  otherSide,
  perform,
  performWriter,
  readTree,
  Rng,
  SIDES,
  type EntryType,
  type Op,
  type PlannedOp,
  type Side,
  type Tree,
} from '../support/fuzz.js';
import { PsyncProcess, waitFor } from '../support/psync.js';
import { startSshd, type SshdFixture } from '../support/sshd.js';
import { tempDir } from '../support/tmp.js';

/**
 * After a dropped connection psync stays alive, its status goes to
 * "reconnecting" and back to "watching" (automatic reconnect). Set to false
 * only against a build without reconnect, where psync exits 3 on a drop and
 * the test restarts it like after a kill -9.
 */
const EXPECT_RECONNECT = true;

type Mode = 'local' | 'remote';
const MODES: Mode[] = ['local', 'remote'];

const DEFAULT_ROUNDS = 5;
const SEED = seedFromEnv();
const ROUNDS = roundsFromEnv();
/**
 * PSYNC_FUZZ_MIX: `paced` (the default) has both sides change the tree at
 * once while psync runs, with every operation (continuous writers,
 * directory renames and `rm -rf` too) and every fault, the operations
 * 300-700 ms apart (each side's change has mostly reached the other before
 * the next; a writer runs on across many of them); while psync is down they
 * come back to back, with clashes on one path. `full` has them 0-60 ms
 * apart while psync runs too, with clashes on one path within
 * microseconds: a stress test that still finds realtime races (README,
 * Limits).
 */
const MIX = mixFromEnv();

/** A short settle delay, snapshots of a growing file every second, and no halt when the changes made while psync was down delete much. */
const PSYNC_ARGS = ['-i', '0.05', '--max-delay', '1', '--max-delete', '100', ...(process.env.PSYNC_FUZZ_DEBUG === undefined ? [] : ['-d', process.env.PSYNC_FUZZ_DEBUG])];
/** psync's exit code for a lost remote host (README, Exit codes). */
const EXIT_CONNECTION = 3;
/** Barrier files live here (support/steps.ts explains barriers); no operation touches it. */
const BARRIER_DIR = 'barrier';
const SETTLE_DEADLINE_MS = 20_000;
const FAILED_EXIT_DEADLINE_MS = 10_000;
const LEFTOVERS_DEADLINE_MS = 15_000;
const MAX_RESTARTS_PER_SETTLE = 3;
const FIRST_ROUND_STEPS = 30;
/** Above this many entries a side plans more deletes and fewer creates. */
const CROWDED_ENTRIES = 120;
const MODES_CHMOD = [0o600, 0o640, 0o644, 0o664, 0o700, 0o755];
const LOG_TAIL_CHARS = 8_000;

function seedFromEnv(): number {
  const text = process.env.PSYNC_FUZZ_SEED;
  if (text === undefined || text === '') return randomInt(2 ** 31);
  const seed = Number(text);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`PSYNC_FUZZ_SEED must be a non-negative integer, not ${JSON.stringify(text)}`);
  return seed;
}

function mixFromEnv(): 'paced' | 'full' {
  const text = process.env.PSYNC_FUZZ_MIX ?? 'paced';
  if (text !== 'paced' && text !== 'full') throw new Error(`PSYNC_FUZZ_MIX must be paced or full, not ${JSON.stringify(text)}`);
  return text;
}

function roundsFromEnv(): number {
  const text = process.env.PSYNC_FUZZ_ROUNDS;
  if (text === undefined || text === '') return DEFAULT_ROUNDS;
  const rounds = Number(text);
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error(`PSYNC_FUZZ_ROUNDS must be a positive integer, not ${JSON.stringify(text)}`);
  return rounds;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const hasExited = (psync: PsyncProcess): boolean => psync.child.exitCode !== null || psync.child.signalCode !== null;
const isOurs = (path: string): boolean => isSameOrUnder(path, BARRIER_DIR);

// ---------------------------------------------------------------------------
// A psync pair with faults

/** The pid in `<root>/.psync/lock`, if any. */
function lockHolder(root: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(join(root, '.psync', 'lock'), 'utf8'), 10);
    return Number.isSafeInteger(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

class FuzzPair {
  private psync: PsyncProcess | undefined;
  private readonly pastLogs: string[] = [];
  private starts = 0;
  private barriers = 0;
  /** The running psync was killed by the test, or lost a connection the test dropped. */
  private killed = false;
  private dropped = false;
  /** What ran below psync when it was killed: none may outlive it for long. */
  private killedPids: number[] = [];

  private constructor(
    readonly left: string,
    readonly right: string,
    private readonly args: readonly string[],
    private readonly sshd: SshdFixture | undefined,
  ) {}

  /** Two roots (the left holding the barrier directory) and, over SSH, a private sshd; psync not started. */
  static async create(mode: Mode): Promise<FuzzPair> {
    const base = tempDir('psync-fuzz-');
    const left = join(base, 'left');
    const right = join(base, 'right');
    mkdirSync(join(left, BARRIER_DIR), { recursive: true });
    mkdirSync(right);
    const sshd = mode === 'remote' ? await startSshd() : undefined;
    const remote = sshd === undefined ? [] : ['-r', sshd.host, '--ssh-config', sshd.configFile];
    return new FuzzPair(left, right, [...remote, ...PSYNC_ARGS, '--state-dir', join(base, 'state'), left, right], sshd);
  }

  root(side: Side): string {
    return side === 'left' ? this.left : this.right;
  }

  isDown(): boolean {
    return this.psync === undefined || hasExited(this.psync);
  }

  /** Start psync when it is not running: at first, and after a kill -9 (or an exit after a dropped connection, without EXPECT_RECONNECT). */
  async ensureRunning(): Promise<void> {
    const current = this.psync;
    if (current !== undefined && !hasExited(current)) return;
    if (current !== undefined) {
      const result = await current.child;
      const how = result.signal ?? `exit ${String(result.exitCode)}`;
      this.pastLogs.push(`--- psync #${this.starts} ended (${how}) ---\n${current.log()}`);
      if (!this.killed) {
        if (!this.dropped) throw new Error(`psync exited on its own (${how}) with no fault injected`);
        if (EXPECT_RECONNECT) throw new Error(`psync exited (${how}) after its connection was dropped; EXPECT_RECONNECT says it stays alive and reconnects`);
        if (result.exitCode !== EXIT_CONNECTION) throw new Error(`psync exited (${how}) after its connection was dropped, not with exit ${EXIT_CONNECTION}`);
      }
    }
    await this.waitForLeftovers();
    this.killed = false;
    this.dropped = false;
    this.killedPids = [];
    this.starts += 1;
    this.psync = await PsyncProcess.start([...this.args]);
  }

  /** kill -9 of psync: of its main process alone, or of its whole process tree at once (as systemd does). */
  async kill(wholeTree: boolean): Promise<void> {
    const psync = this.psync;
    if (psync === undefined || hasExited(psync) || psync.child.pid === undefined) return;
    const below = descendantsOf(psync.child.pid);
    killQuietly(psync.child.pid);
    if (wholeTree) for (const pid of below) killQuietly(pid);
    this.killed = true;
    this.killedPids = below;
    await psync.child;
  }

  /** kill -9 of the sshd processes serving psync's connections (all of them, or the `which`th). */
  drop(all: boolean, which: number): void {
    if (this.sshd === undefined || this.isDown()) return;
    const sessions = childrenOf(this.sshdPid());
    if (sessions.length === 0) return;
    const chosen = all ? sessions : [sessions[which % sessions.length]!];
    for (const session of chosen) {
      // The session's own sshd children go too (not what they run: that must notice on its own).
      const sshdBelow = descendantsOf(session).filter((pid) => commandOf(pid).startsWith('sshd'));
      killQuietly(session);
      for (const pid of sshdBelow) killQuietly(pid);
    }
    this.dropped = true;
  }

  private sshdPid(): number {
    return Number(readFileSync(join(this.sshd!.dir, 'sshd.pid'), 'utf8').trim());
  }

  /** Before a restart: what the last psync ran (here and behind sshd) has ended, and neither root's lock names a live process. */
  private async waitForLeftovers(): Promise<void> {
    const leftovers = (): number[] => [
      ...this.killedPids.filter(isAlive),
      ...(this.sshd === undefined ? [] : descendantsOf(this.sshdPid())),
      ...[this.left, this.right].flatMap((root) => {
        const pid = lockHolder(root);
        return pid !== undefined && isAlive(pid) ? [pid] : [];
      }),
    ];
    await waitFor('the last psync processes to end', () => leftovers().length === 0, LEFTOVERS_DEADLINE_MS).catch(() => {
      throw new Error(`psync's processes outlived it by ${LEFTOVERS_DEADLINE_MS} ms: ${leftovers().map((pid) => `${pid} ${commandOf(pid)}`).join('; ')}`);
    });
  }

  /** psync watching with nothing queued and both trees identical, then a barrier each way, then again: returns the tree. */
  async quiet(): Promise<Tree> {
    await this.settled('the trees to settle after the round');
    await this.barrier();
    return this.settled('the trees to settle after the barrier');
  }

  private async settled(what: string): Promise<Tree> {
    for (let restarts = 0; ; restarts++) {
      await this.ensureRunning();
      let state = '(no status yet)';
      let differences: string[] = [];
      const outcome = await waitFor(
        what,
        async () => {
          const health = await this.health();
          if (health !== 'running') return health;
          const status = await this.psync!.status();
          state = status === undefined ? '(no status)' : `${status.state}, ${status.queued} queued`;
          if (status?.state !== 'watching' || status.queued !== 0) return undefined;
          const [left, right] = await Promise.all([readTree(this.left), readTree(this.right)]);
          differences = diffTrees(left, right);
          return differences.length === 0 ? left : undefined;
        },
        SETTLE_DEADLINE_MS,
      ).catch((error: Error) => {
        throw new Error(`identical trees: ${error.message} (psync: ${state})\n${differences.slice(0, 40).join('\n')}`);
      });
      if (typeof outcome !== 'string') return outcome;
      if (restarts >= MAX_RESTARTS_PER_SETTLE) throw new Error(`psync went down ${restarts + 1} times while waiting for ${what}`);
      await this.exitOfFailed(outcome);
    }
  }

  /** A file written on the right arrives on the left, then one written on the left on the right: psync has dealt with everything before. */
  private async barrier(): Promise<void> {
    for (const from of ['right', 'left'] as const) {
      for (;;) {
        await this.ensureRunning();
        const text = `barrier ${++this.barriers}\n`;
        writeFileSync(join(this.root(from), BARRIER_DIR, from), text);
        const there = join(this.root(otherSide(from)), BARRIER_DIR, from);
        const outcome = await waitFor(
          `${text.trim()} to reach the ${otherSide(from)}`,
          async () => {
            const health = await this.health();
            if (health !== 'running') return health;
            return (await readFile(there, 'utf8').catch(() => '')) === text ? 'arrived' : undefined;
          },
          SETTLE_DEADLINE_MS,
        );
        if (outcome === 'arrived') break;
        await this.exitOfFailed(outcome);
      }
    }
  }

  /** `down`: the process has exited; `failed`: its status says so (it is about to exit). */
  private async health(): Promise<'down' | 'failed' | 'running'> {
    if (this.isDown()) return 'down';
    return (await this.psync!.status())?.state === 'failed' ? 'failed' : 'running';
  }

  /** A psync whose status says failed exits soon (and ensureRunning judges why); one that does not is stuck. */
  private async exitOfFailed(health: 'down' | 'failed'): Promise<void> {
    if (health === 'down') return;
    await waitFor('psync to exit after its status said failed', () => this.isDown(), FAILED_EXIT_DEADLINE_MS).catch(async () => {
      const status = await this.psync!.status();
      const pid = this.psync!.child.pid ?? 0;
      const below = descendantsOf(pid).map((p) => `${p} ${commandOf(p)}`);
      throw new Error(
        `psync's status has said "failed" (${status?.lastError ?? 'no lastError'}) for ${FAILED_EXIT_DEADLINE_MS} ms, but it has not exited; ` +
          `its processes: ${pid} ${commandOf(pid)}${below.map((line) => `; ${line}`).join('')}`,
      );
    });
  }

  /** The end of what every psync of this pair wrote to stderr. */
  logTail(): string {
    const all = [...this.pastLogs, `--- psync #${this.starts}${this.psync === undefined ? '' : ` (pid ${String(this.psync.child.pid)})`} ---\n${this.psync?.log() ?? ''}`].join('\n');
    return all.slice(-LOG_TAIL_CHARS);
  }

  /** SIGTERM psync (resolving with its exit code, undefined when it was not running) and stop the sshd. */
  async stop(): Promise<number | undefined> {
    const code = this.psync !== undefined && !hasExited(this.psync) ? await this.psync.stop() : undefined;
    await this.sshd?.stop();
    return code;
  }
}

// ---------------------------------------------------------------------------
// Planning a round from the seed

/** What one side holds, as far as its own operations (and the clashes' halves on it) tell: what it plans against. */
class SideModel {
  private readonly entries = new Map<string, EntryType>();

  constructor(tree: Tree) {
    for (const [path, e] of tree) if (!isOurs(path)) this.entries.set(path, e.type);
  }

  get size(): number {
    return this.entries.size;
  }

  typeOf(path: string): EntryType | undefined {
    return this.entries.get(path);
  }

  /** Paths of that type, sorted (the plan must not depend on insertion order). */
  list(type: EntryType): string[] {
    return [...this.entries].filter(([, t]) => t === type).map(([p]) => p).sort();
  }

  /** Directories, the root ('') first. */
  dirs(): string[] {
    return ['', ...this.list('dir')];
  }

  apply(op: PlannedOp): void {
    switch (op.kind) {
      case 'create':
      case 'overwrite':
      case 'append':
      case 'truncate':
      case 'writer':
        this.entries.set(op.path, 'file');
        break;
      case 'symlink':
        this.entries.set(op.path, 'symlink');
        break;
      case 'delete':
      case 'rmrf':
        this.removeTree(op.path);
        break;
      case 'rename': {
        const moved = [...this.entries].filter(([p]) => isSameOrUnder(p, op.path));
        this.removeTree(op.path);
        this.removeTree(op.to);
        for (const [p, t] of moved) this.entries.set(op.to + p.slice(op.path.length), t);
        break;
      }
      case 'mkdir':
        for (let p = op.path; p !== '' && this.entries.get(p) === undefined; p = parentOf(p)) this.entries.set(p, 'dir');
        break;
      case 'chmod':
        break;
    }
  }

  private removeTree(path: string): void {
    for (const p of [...this.entries.keys()]) if (isSameOrUnder(p, path)) this.entries.delete(p);
  }
}

/** Steps run one after another, `gapMs` apart; the operations of one step run back to back, within microseconds (a clash). */
interface Step {
  readonly gapMs: number;
  readonly ops: readonly Exclude<PlannedOp, { kind: 'writer' }>[];
}

type Fault =
  | { readonly kind: 'none' }
  | { readonly kind: 'kill'; readonly when: 'before' | 'during' | 'after'; readonly atMs: number; readonly wholeTree: boolean; readonly moreWhileDown: boolean }
  | { readonly kind: 'drop'; readonly when: 'before' | 'during' | 'after'; readonly atMs: number; readonly all: boolean; readonly which: number; readonly moreWhileDown: boolean };

interface RoundPlan {
  readonly fault: Fault;
  readonly steps: readonly Step[];
  readonly writers: ReadonlyArray<{ readonly delayMs: number; readonly op: Extract<PlannedOp, { kind: 'writer' }> }>;
  /** Run after the steps when psync is down by then. */
  readonly whileDown: readonly Step[];
}

const describeFault = (fault: Fault): string =>
  fault.kind === 'none'
    ? 'no fault'
    : fault.kind === 'kill'
      ? `kill -9 of psync${fault.wholeTree ? ' and everything below it' : ''} ${fault.when === 'during' ? `${fault.atMs} ms into` : fault.when} the round`
      : `dropped ${fault.all ? 'connections' : 'connection'} ${fault.when === 'during' ? `${fault.atMs} ms into` : fault.when} the round`;

class Planner {
  private n = 0;
  private round = 0;
  private models: Record<Side, SideModel> = { left: new SideModel(new Map()), right: new SideModel(new Map()) };

  constructor(
    private readonly rng: Rng,
    private readonly mode: Mode,
  ) {}

  /** The plan of round `round`, starting from `tree` (identical on both sides). */
  plan(round: number, tree: Tree): RoundPlan {
    this.round = round;
    this.models = { left: new SideModel(tree), right: new SideModel(tree) };
    const { rng } = this;
    if (round === 0) return { fault: { kind: 'none' }, steps: this.steps(FIRST_ROUND_STEPS, 0, false), writers: [], whileDown: [] };
    const fault = this.fault();
    const writers = SIDES.flatMap((side) => {
      if (!rng.chance(0.35)) return [];
      const m = this.models[side];
      const files = m.list('file');
      const path = files.length > 0 && rng.chance(0.5) ? rng.pick(files) : joinPath(rng.pick(m.dirs()), this.fresh('w'));
      const op = { kind: 'writer', side, path, token: this.token(side), forMs: rng.int(1_000, 3_000), everyMs: rng.int(15, 60) } as const;
      m.apply(op);
      return [{ delayMs: rng.int(0, 500), op }];
    });
    const steps = this.steps(rng.int(8, 24), MIX === 'full' ? 0.15 : 0, MIX === 'paced');
    const whileDown = fault.kind !== 'none' && fault.moreWhileDown ? this.steps(rng.int(4, 12), 0.15, false) : [];
    return { fault, steps, writers, whileDown };
  }

  private fault(): Fault {
    const { rng } = this;
    const kind = rng.weighted<Fault['kind']>(this.mode === 'local' ? [['none', 55], ['kill', 45]] : [['none', 40], ['kill', 25], ['drop', 35]])!;
    const when = rng.pick(['before', 'during', 'after'] as const);
    const atMs = rng.int(0, 1_500);
    const moreWhileDown = rng.chance(0.5);
    if (kind === 'kill') return { kind, when, atMs, wholeTree: rng.chance(0.5), moreWhileDown };
    if (kind === 'drop') return { kind, when, atMs, all: rng.chance(0.5), which: rng.int(0, 7), moreWhileDown };
    return { kind: 'none' };
  }

  /** Operations on either side, `paced` (300-700 ms apart) or back to back (0-60 ms), a share of them clashes. */
  private steps(count: number, clashChance: number, paced: boolean): Step[] {
    const out: Step[] = [];
    for (let i = 0; i < count; i++) {
      const gapMs = paced ? this.rng.int(300, 700) : this.rng.int(0, 60);
      const ops = this.rng.chance(clashChance) ? this.clash() : undefined;
      if (ops !== undefined) {
        out.push({ gapMs, ops });
        continue;
      }
      const op = this.op(this.rng.pick(SIDES));
      if (op !== undefined) out.push({ gapMs, ops: [op] });
    }
    return out;
  }

  private token(side: Side): string {
    this.n += 1;
    return `${SEED}:${this.mode}:r${this.round}:${side}:${this.n}`;
  }

  /** A name no operation used before (from the counter the last token took). */
  private fresh(prefix: string): string {
    return `${prefix}${this.n + 1}${this.rng.chance(0.3) ? '.txt' : ''}`;
  }

  private size(): number {
    const { rng } = this;
    return rng.chance(0.75) ? rng.int(0, 200) : rng.chance(0.8) ? rng.int(1_000, 30_000) : rng.int(100_000, 300_000);
  }

  /** A relative target: a sibling, the directory the link is in (through `..`), or nothing (dangling). */
  private linkTarget(m: SideModel, dir: string): string {
    const siblings = [...m.list('file'), ...m.list('dir')].filter((p) => parentOf(p) === dir);
    const choice = this.rng.int(0, 2);
    if (choice === 0 && siblings.length > 0) return this.rng.pick(siblings).slice(dir === '' ? 0 : dir.length + 1);
    if (choice === 1 && dir !== '') return `../${dir.slice(parentOf(dir) === '' ? 0 : parentOf(dir).length + 1)}`;
    return `missing-${this.n + 1}`;
  }

  /** One random operation on `side`, applied to its model; undefined when none is possible. */
  private op(side: Side): Exclude<PlannedOp, { kind: 'writer' }> | undefined {
    const { rng } = this;
    const m = this.models[side];
    const files = m.list('file');
    const named = [...files, ...m.list('symlink')].sort();
    const dirs = m.dirs();
    const subdirs = dirs.filter((d) => d !== '');
    const crowded = m.size > CROWDED_ENTRIES;
    const some = (list: readonly string[], weight: number): number => (list.length > 0 ? weight : 0);
    const kind = rng.weighted([
      ['create', crowded ? 2 : 14],
      ['overwrite', some(files, 10)],
      ['append', some(files, 7)],
      ['truncate', some(files, 3)],
      ['delete', some(named, crowded ? 20 : 7)],
      ['rename', some(named, 7)],
      ['renameDir', some(subdirs, 4)],
      ['rmrf', some(subdirs, crowded ? 8 : 2)],
      ['mkdir', crowded ? 1 : 5],
      ['chmod', some(files, 5)],
      ['symlink', crowded ? 1 : 4],
    ] as const);
    let op: Exclude<PlannedOp, { kind: 'writer' }>;
    switch (kind) {
      case undefined:
        return undefined;
      case 'create': {
        const path = joinPath(rng.pick(dirs), this.fresh('f'));
        op = { kind, side, path, token: this.token(side), size: this.size() };
        break;
      }
      case 'overwrite':
      case 'append':
        op = { kind, side, path: rng.pick(files), token: this.token(side), size: this.size() };
        break;
      case 'truncate':
        op = { kind, side, path: rng.pick(files), token: this.token(side), keep: rng.int(0, 3) / 4 };
        break;
      case 'delete':
        op = { kind, side, path: rng.pick(named), token: this.token(side) };
        break;
      case 'rename': {
        const path = rng.pick(named);
        const onto = files.filter((p) => p !== path);
        // A quarter of the renames replace an existing file (a safe save, `mv a b`).
        const to = onto.length > 0 && rng.chance(0.25) ? rng.pick(onto) : joinPath(rng.pick(dirs), this.fresh(m.typeOf(path) === 'symlink' ? 'l' : 'f'));
        op = { kind, side, path, to, token: this.token(side) };
        break;
      }
      case 'renameDir': {
        const path = rng.pick(subdirs);
        const to = joinPath(rng.pick(dirs.filter((d) => !isSameOrUnder(d, path))), this.fresh('d'));
        op = { kind: 'rename', side, path, to, token: this.token(side) };
        break;
      }
      case 'rmrf':
        op = { kind, side, path: rng.pick(subdirs), token: this.token(side) };
        break;
      case 'mkdir': {
        const base = rng.pick(dirs);
        const name = this.fresh('m').replace('.txt', '');
        const parts = [name, `${name}b`, `${name}c`].slice(0, rng.int(1, 3));
        op = { kind, side, path: joinPath(base, parts.join('/')), token: this.token(side) };
        break;
      }
      case 'chmod':
        op = { kind, side, path: rng.pick(files), token: this.token(side), mode: rng.pick(MODES_CHMOD) };
        break;
      case 'symlink': {
        const dir = rng.pick(dirs);
        const path = joinPath(dir, this.fresh('l'));
        op = { kind, side, path, target: this.linkTarget(m, dir), token: this.token(side) };
        break;
      }
    }
    m.apply(op);
    return op;
  }

  /**
   * Two sides acting on one path within microseconds (one step, no await
   * between): neither can have seen the other's change, so psync must keep
   * both or merge them without loss. Undefined when the trees lack a target.
   */
  private clash(): Array<Exclude<PlannedOp, { kind: 'writer' }>> | undefined {
    const { rng } = this;
    const { left, right } = this.models;
    const inBoth = (type: EntryType): string[] => left.list(type).filter((p) => right.typeOf(p) === type);
    const files = inBoth('file');
    const dirs = inBoth('dir');
    const filesIn = (dir: string): string[] => files.filter((f) => isSameOrUnder(f, dir) && f !== dir);
    const kind = rng.weighted([
      ['edit/edit', files.length > 0 ? 3 : 0],
      ['edit/delete', files.length > 0 ? 4 : 0],
      ['edit/rename', files.length > 0 ? 2 : 0],
      ['edit/chmod', files.length > 0 ? 1 : 0],
      ['chmod/chmod', files.length > 0 ? 1 : 0],
      ['delete/delete', files.length > 0 ? 1 : 0],
      ['delete/rename', files.length > 0 ? 2 : 0],
      ['rename/rename', files.length > 0 ? 1 : 0],
      ['create/create', 2],
      ['file/dir', 2],
      ['file/symlink', 1],
      ['rmrf/create-inside', dirs.length > 0 ? 2 : 0],
      ['rmrf/edit-inside', dirs.some((d) => filesIn(d).length > 0) ? 2 : 0],
      ['renamedir/edit-inside', dirs.some((d) => filesIn(d).length > 0) ? 2 : 0],
    ] as const);
    if (kind === undefined) return undefined;
    const a = rng.pick(SIDES);
    const b = otherSide(a);
    const edit = (side: Side, path: string): Exclude<PlannedOp, { kind: 'writer' }> => {
      const which = rng.pick(['overwrite', 'append', 'truncate'] as const);
      return which === 'truncate'
        ? { kind: which, side, path, token: this.token(side), keep: rng.int(0, 3) / 4 }
        : { kind: which, side, path, token: this.token(side), size: this.size() };
    };
    const renamed = (side: Side, path: string): Exclude<PlannedOp, { kind: 'writer' }> => {
      const to = joinPath(rng.chance(0.5) ? parentOf(path) : rng.pick(this.models[side].dirs().filter((d) => !isSameOrUnder(d, path))), this.fresh('r'));
      return { kind: 'rename', side, path, to, token: this.token(side) };
    };
    let opsA: Array<Exclude<PlannedOp, { kind: 'writer' }>>;
    let opsB: Array<Exclude<PlannedOp, { kind: 'writer' }>>;
    switch (kind) {
      case 'edit/edit': {
        const path = rng.pick(files);
        opsA = [edit(a, path)];
        opsB = [edit(b, path)];
        break;
      }
      case 'edit/delete': {
        const path = rng.pick(files);
        opsA = [edit(a, path)];
        opsB = [{ kind: 'delete', side: b, path, token: this.token(b) }];
        break;
      }
      case 'edit/rename': {
        const path = rng.pick(files);
        opsA = [edit(a, path)];
        opsB = [renamed(b, path)];
        break;
      }
      case 'edit/chmod': {
        const path = rng.pick(files);
        opsA = [edit(a, path)];
        opsB = [{ kind: 'chmod', side: b, path, token: this.token(b), mode: rng.pick(MODES_CHMOD) }];
        break;
      }
      case 'chmod/chmod': {
        const path = rng.pick(files);
        opsA = [{ kind: 'chmod', side: a, path, token: this.token(a), mode: rng.pick(MODES_CHMOD) }];
        opsB = [{ kind: 'chmod', side: b, path, token: this.token(b), mode: rng.pick(MODES_CHMOD) }];
        break;
      }
      case 'delete/delete': {
        const path = rng.pick(files);
        opsA = [{ kind: 'delete', side: a, path, token: this.token(a) }];
        opsB = [{ kind: 'delete', side: b, path, token: this.token(b) }];
        break;
      }
      case 'delete/rename': {
        const path = rng.pick(files);
        opsA = [{ kind: 'delete', side: a, path, token: this.token(a) }];
        opsB = [renamed(b, path)];
        break;
      }
      case 'rename/rename': {
        const path = rng.pick(files);
        opsA = [renamed(a, path)];
        opsB = [renamed(b, path)];
        break;
      }
      case 'create/create':
      case 'file/dir':
      case 'file/symlink': {
        const dir = rng.pick(left.dirs().filter((d) => d === '' || right.typeOf(d) === 'dir'));
        const path = joinPath(dir, this.fresh('c').replace('.txt', ''));
        opsA = [{ kind: 'create', side: a, path, token: this.token(a), size: this.size() }];
        opsB =
          kind === 'create/create'
            ? [{ kind: 'create', side: b, path, token: this.token(b), size: this.size() }]
            : kind === 'file/dir'
              ? [
                  { kind: 'mkdir', side: b, path, token: this.token(b) },
                  { kind: 'create', side: b, path: joinPath(path, this.fresh('f')), token: this.token(b), size: this.size() },
                ]
              : [{ kind: 'symlink', side: b, path, target: `missing-${this.n + 1}`, token: this.token(b) }];
        break;
      }
      case 'rmrf/create-inside': {
        const dir = rng.pick(dirs);
        opsA = [{ kind: 'rmrf', side: a, path: dir, token: this.token(a) }];
        opsB = [{ kind: 'create', side: b, path: joinPath(dir, this.fresh('f')), token: this.token(b), size: this.size() }];
        break;
      }
      case 'rmrf/edit-inside':
      case 'renamedir/edit-inside': {
        const dir = rng.pick(dirs.filter((d) => filesIn(d).length > 0));
        opsA = [kind === 'rmrf/edit-inside' ? { kind: 'rmrf', side: a, path: dir, token: this.token(a) } : renamed(a, dir)];
        opsB = [edit(b, rng.pick(filesIn(dir)))];
        break;
      }
    }
    const ops = rng.chance(0.5) ? [...opsA, ...opsB] : [...opsB, ...opsA];
    for (const op of ops) this.models[op.side].apply(op);
    return ops;
  }
}

// ---------------------------------------------------------------------------
// Running a round

/** Run `steps` on both roots, recording every operation in `ops`. */
async function runSteps(pair: FuzzPair, steps: readonly Step[], ops: Op[]): Promise<void> {
  for (const step of steps) {
    if (step.gapMs > 0) await sleep(step.gapMs);
    const down = pair.isDown();
    for (const plan of step.ops) ops.push(perform(pair.root(plan.side), plan, down));
  }
}

async function inject(pair: FuzzPair, fault: Fault): Promise<void> {
  if (fault.kind === 'kill') await pair.kill(fault.wholeTree);
  else if (fault.kind === 'drop') pair.drop(fault.all, fault.which);
}

interface RoundOutcome {
  readonly ops: readonly Op[];
  readonly after: Tree;
  readonly summary: string;
}

async function runRound(pair: FuzzPair, plan: RoundPlan, before: Tree, round: number, report: (problems: string) => never): Promise<RoundOutcome> {
  const started = Date.now();
  const ops: Op[] = [];
  const { fault } = plan;
  if (round === 0) {
    // The first round builds both trees before psync ever ran: its start-up takes their union.
    await runSteps(pair, plan.steps, ops);
  } else {
    if (fault.kind !== 'none' && fault.when === 'before') await inject(pair, fault);
    await Promise.all([
      runSteps(pair, plan.steps, ops),
      ...plan.writers.map(async ({ delayMs, op }) => {
        await sleep(delayMs);
        ops.push(await performWriter(pair.root(op.side), op, () => pair.isDown()));
      }),
      fault.kind !== 'none' && fault.when === 'during' ? sleep(fault.atMs).then(() => inject(pair, fault)) : undefined,
    ]);
    if (fault.kind !== 'none' && fault.when === 'after') await inject(pair, fault);
    if (pair.isDown()) await runSteps(pair, plan.whileDown, ops);
  }
  let after: Tree;
  try {
    after = await pair.quiet();
  } catch (error) {
    report(`${(error as Error).message}\n--- the round's operations ---\n${ops.map(describeOp).join('\n')}`);
  }
  // The first round ran before psync started: as after a fault, nothing of it was agreed yet.
  const problems = checkRound({ before, ops, after, faulted: fault.kind !== 'none' || round === 0, ignored: isOurs });
  if (problems.length > 0) {
    const details = problems.slice(0, 10).map((p) => `${p.message}\n  [path ${p.path}, token ${p.token}]\n${opsAbout(ops, p.path) || '  (no operation named it)'}`);
    report(
      `${problems.length} problem(s) after the round:\n${details.join('\n')}\n--- tree after the round ---\n${dumpTree(after)}` +
        `\n--- the round's operations ---\n${ops.map(describeOp).join('\n')}`,
    );
  }
  const failed = ops.filter((op) => !op.ok).length;
  return { ops, after, summary: `round ${round}: ${ops.length} operations (${failed} failed), ${describeFault(fault)}, ${after.size} entries, ${Date.now() - started} ms` };
}

// ---------------------------------------------------------------------------

const seedOf = (mode: Mode): number => (SEED ^ (mode === 'remote' ? 0x5bd1e995 : 0)) >>> 0;

/** A failure already described with the seed, the round and psync's log. */
class FuzzFailure extends Error {
  override readonly name = 'FuzzFailure';
}

describe.each(MODES)('%s', (mode) => {
  test(`${ROUNDS} random rounds with faults lose nothing and resurrect nothing (seed ${SEED})`, { timeout: 60_000 + ROUNDS * 30_000 }, async () => {
    console.log(`psync fuzz, ${mode} mode, ${MIX} mix: seed ${SEED}, ${ROUNDS} rounds (rerun with PSYNC_FUZZ_SEED=${SEED} PSYNC_FUZZ_ROUNDS=${ROUNDS} PSYNC_FUZZ_MIX=${MIX})`);
    const pair = await FuzzPair.create(mode);
    const planner = new Planner(new Rng(seedOf(mode)), mode);
    const history: string[] = [];
    let round = 0;
    const report = (problems: string): never => {
      throw new FuzzFailure(
        `psync fuzz failed: seed ${SEED}, ${mode} mode, ${MIX} mix, round ${round} (rerun with PSYNC_FUZZ_SEED=${SEED} PSYNC_FUZZ_ROUNDS=${ROUNDS} PSYNC_FUZZ_MIX=${MIX})\n` +
          `${problems}\n--- rounds so far ---\n${history.join('\n')}\n--- psync stderr (tail) ---\n${pair.logTail()}`,
      );
    };
    let passed = false;
    try {
      let tree: Tree = new Map();
      for (; round <= ROUNDS; round++) {
        const plan = planner.plan(round, tree);
        history.push(`round ${round}: ${describeFault(plan.fault)}`);
        const outcome = await runRound(pair, plan, tree, round, report).catch((error: Error) => (error instanceof FuzzFailure ? Promise.reject(error) : report(error.message)));
        history[history.length - 1] = outcome.summary;
        tree = outcome.after;
      }
      passed = true;
    } finally {
      const code = await pair.stop();
      if (passed) expect(code, `psync should stop cleanly (seed ${SEED}, ${mode} mode)\n${pair.logTail()}`).toBe(0);
    }
  });
});
