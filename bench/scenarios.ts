/**
 * The six scenarios of issue 4, and issue 9's start-up of an unchanged pair
 * with an archive. Each one prepares its data once, then runs every tool on
 * fresh copies of it: psync, the floor (plain `rsync -a` over one reused SSH
 * connection; for the start-up, `find` listing both trees), lsyncd and
 * unison. "Arrived" is always a poll of the other side with a deadline; the
 * only fixed waits are the idle window itself and the gaps between latency
 * samples, which are not measured.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Options } from './options.js';
import { nowMs, pollUntil, sleep } from './poll.js';
import { allProcs, cpuBetween, describeProcs, ownRssKb, sampleUsage, watchPeakRss, type ProcessSet, type Usage } from './procs.js';
import type { Unit } from './stats.js';
import {
  parseBytesSent,
  psyncLocalOnce,
  psyncOnce,
  unisonOnce,
  waitSshdQuiet,
  type BenchEnv,
  type PsyncStatus,
  type RsyncFloor,
  type Session,
  type SessionTool,
  type ToolName,
} from './tools.js';
import {
  copyTree,
  countFiles,
  content,
  diffTrees,
  dirName,
  evenlySpaced,
  fileName,
  fileSize,
  forEachLimited,
  removeTree,
  sampleInodes,
  visibleNames,
  writeSpreadTree,
} from './trees.js';

export const SCENARIO_NAMES = ['latency', 'burst', 'rename', 'merge', 'idle', 'scale', 'startup'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export interface MetricDef {
  readonly key: string;
  readonly label: string;
  readonly unit: Unit;
  /** Must come out finite for psync and the floor (checked by the smoke test). */
  readonly required: boolean;
  readonly p95?: boolean;
}

/** What one tool produced in one scenario. */
export interface ToolResult {
  /** metric key -> samples; a key left out is "not applicable" (see notes). */
  readonly values: Record<string, number[]>;
  readonly notes: string[];
  readonly details: Record<string, unknown>;
}

export interface Context {
  readonly env: BenchEnv;
  readonly options: Options;
  readonly floor: RsyncFloor;
  /** Scratch space for this scenario (removed afterwards). */
  readonly dir: string;
  log(message: string): void;
}

export interface Scenario {
  readonly name: ScenarioName;
  readonly title: string;
  readonly metrics: readonly MetricDef[];
  prepare(ctx: Context): Promise<void>;
  /** `session` is the tool to start (undefined for the floor). */
  run(ctx: Context, tool: ToolName, session: SessionTool | undefined): Promise<ToolResult>;
}

const LATENCY_POLL_MS = 5;
const BULK_POLL_MS = 20;
const LATENCY_SIZE = 1024;
/** Waits between latency samples (not measured): keeps samples apart and off the beat of unison's 1 s rescans. */
const LATENCY_GAP_MS = 100;
const LATENCY_GAP_JITTER_MS = 100;
const SAMPLE_DEADLINE_MS = 30_000;
const RENAME_INODE_SAMPLE = 100;

/** How long a tool may take to start on a tree of `files` files. */
function startDeadlineMs(files: number): number {
  return 60_000 + files * 3;
}

function result(): ToolResult {
  return { values: {}, notes: [], details: {} };
}

function push(out: ToolResult, key: string, value: number): void {
  (out.values[key] ??= []).push(value);
}

/** Fresh left and right roots for one tool; `template` (if given) copied into both. */
async function roots(ctx: Context, tool: ToolName, template?: string): Promise<{ left: string; right: string }> {
  const base = join(ctx.dir, `${tool}-${Date.now()}`);
  const left = join(base, 'left');
  const right = join(base, 'right');
  if (template === undefined) {
    await mkdir(left, { recursive: true });
    await mkdir(right, { recursive: true });
  } else {
    await Promise.all([copyTree(template, left), copyTree(template, right)]);
  }
  return { left, right };
}

async function withSession<T>(
  ctx: Context,
  tool: SessionTool,
  left: string,
  right: string,
  deadlineMs: number,
  body: (session: Session) => Promise<T>,
): Promise<T> {
  const started = nowMs();
  const session = await tool.start(left, right, deadlineMs);
  ctx.log(`  ${tool.name} ready after ${((nowMs() - started) / 1000).toFixed(2)} s`);
  try {
    return await body(session);
  } finally {
    const stopping = nowMs();
    await session.stop();
    ctx.log(`  ${tool.name} stopped in ${((nowMs() - stopping) / 1000).toFixed(2)} s`);
  }
}

async function withFloor<T>(ctx: Context, body: () => Promise<T>): Promise<T> {
  await ctx.floor.master.open();
  try {
    return await body();
  } finally {
    await ctx.floor.master.close();
    await waitSshdQuiet(ctx.env);
  }
}

/** Wait until `path` holds exactly `expected`. */
async function waitForContent(path: string, expected: Buffer): Promise<void> {
  await pollUntil(
    `${path} to arrive`,
    async () => {
      const info = await stat(path).catch(() => undefined);
      if (info?.size !== expected.length) return false;
      return (await readFile(path)).equals(expected);
    },
    SAMPLE_DEADLINE_MS,
    LATENCY_POLL_MS,
  );
}

// ---------------------------------------------------------------- 1. latency

const latency: Scenario = {
  name: 'latency',
  title: 'one 1 KB file written on one side, until it is complete on the other',
  metrics: [
    { key: 'leftToRight', label: 'left→right', unit: 'ms', required: true, p95: true },
    { key: 'rightToLeft', label: 'right→left', unit: 'ms', required: true, p95: true },
  ],
  prepare: async () => {},
  run: async (ctx, tool, session) => {
    const out = result();
    const { left, right } = await roots(ctx, tool);
    const samples = ctx.options.latencySamples;
    const directions = [
      { key: 'leftToRight', from: left, to: right },
      { key: 'rightToLeft', from: right, to: left },
    ] as const;
    const measure = async (key: string, from: string, to: string, transfer: (name: string) => Promise<void>): Promise<void> => {
      for (let i = 0; i < samples; i++) {
        const name = `lat-${key}-${i}.txt`;
        const data = randomBytes(LATENCY_SIZE);
        const started = nowMs();
        await writeFile(join(from, name), data);
        await transfer(name);
        await waitForContent(join(to, name), data);
        push(out, key, nowMs() - started);
        await sleep(LATENCY_GAP_MS + Math.random() * LATENCY_GAP_JITTER_MS);
      }
    };
    if (session === undefined) {
      await withFloor(ctx, async () => {
        await measure('leftToRight', left, right, async (name) => {
          await ctx.floor.run([join(left, name), ctx.floor.remote(join(right, name))]);
        });
        await measure('rightToLeft', right, left, async (name) => {
          await ctx.floor.run([ctx.floor.remote(join(right, name)), join(left, name)]);
        });
      });
      out.notes.push('one `rsync -a FILE host:FILE` per sample, timed from the write to rsync exiting');
    } else {
      await withSession(ctx, session, left, right, startDeadlineMs(0), async () => {
        for (const { key, from, to } of directions) {
          if (key === 'rightToLeft' && !session.twoWay) {
            out.notes.push('one-way tool: no right→left');
            continue;
          }
          await measure(key, from, to, async () => {});
        }
      });
    }
    await removeTree(join(left, '..'));
    return out;
  },
};

// ---------------------------------------------------------------- 2. burst

const burst: Scenario = {
  name: 'burst',
  title: 'many 1-4 KB files in many directories written at once on the left, until all are on the right',
  metrics: [
    { key: 'afterLastWrite', label: 'after last write', unit: 's', required: true },
  ],
  prepare: async () => {},
  run: async (ctx, tool, session) => {
    const out = result();
    const { burstFiles: files, burstDirs: dirs, runs } = ctx.options;
    const { left, right } = await roots(ctx, tool);
    const oneBurst = async (r: number, transfer: (dir: string) => Promise<void>): Promise<void> => {
      const dir = `burst${r}`;
      const started = nowMs();
      await writeSpreadTree(join(left, dir), files, dirs);
      const written = nowMs();
      await transfer(dir);
      const targets = Array.from({ length: dirs }, (_, d) => join(right, dir, dirName(d)));
      await pollUntil(`${files} files on the right`, async () => (await countFiles(targets)) === files, 60_000 + files * 20, BULK_POLL_MS);
      push(out, 'afterLastWrite', (nowMs() - written) / 1000);
      ((out.details.writingSeconds ??= []) as number[]).push((written - started) / 1000);
      const problems = await diffTrees(join(left, dir), join(right, dir));
      if (problems.length > 0) throw new Error(`trees differ after burst ${r}: ${problems.join('; ')}`);
    };
    if (session === undefined) {
      await withFloor(ctx, async () => {
        for (let r = 0; r < runs; r++) {
          await oneBurst(r, async (dir) => {
            await ctx.floor.run([join(left, dir), ctx.floor.remote(`${right}/`)]);
          });
        }
      });
      out.notes.push('one `rsync -a DIR host:` of the new directory, started after the last write');
    } else {
      await withSession(ctx, session, left, right, startDeadlineMs(0), async (s) => {
        for (let r = 0; r < runs; r++) {
          const before = await s.status?.();
          await oneBurst(r, async () => {});
          const after = await settledStatus(s);
          if (before && after) {
            (out.details.rsyncRuns ??= [] as number[]);
            (out.details.rsyncRuns as number[]).push(after.counters.rsyncRuns - before.counters.rsyncRuns);
          }
        }
      });
    }
    await removeTree(join(left, '..'));
    return out;
  },
};

/** psync's status once its queue is empty and the file has not changed for a moment. */
async function settledStatus(session: Session): Promise<PsyncStatus | undefined> {
  if (session.status === undefined) return undefined;
  let last = '';
  let since = nowMs();
  return pollUntil(
    'psync to settle',
    async () => {
      const status = await session.status?.();
      if (status === undefined) return false;
      const stamp = status.updatedAt ?? '';
      if (stamp !== last) {
        last = stamp;
        since = nowMs();
        return false;
      }
      return status.queued === 0 && nowMs() - since > 300 ? status : false;
    },
    10_000,
    50,
  ).catch(() => session.status?.());
}

// ---------------------------------------------------------------- 3. rename

async function writeFlat(dir: string, files: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  await forEachLimited(files, 64, (i) => writeFile(join(dir, fileName(i)), content(fileSize(i))));
}

const renameScenario: Scenario = {
  name: 'rename',
  title: 'a directory of many files renamed on the left, until renamed on the right',
  metrics: [
    { key: 'time', label: 'time', unit: 'ms', required: true },
    { key: 'bytes', label: 'file data re-sent', unit: 'bytes', required: false },
    { key: 'inodesKept', label: 'inodes kept', unit: 'fraction', required: true },
  ],
  prepare: async (ctx) => {
    await writeFlat(join(ctx.dir, 'template', 'moved0'), ctx.options.renameFiles);
  },
  run: async (ctx, tool, session) => {
    const out = result();
    const files = ctx.options.renameFiles;
    const { left, right } = await roots(ctx, tool, join(ctx.dir, 'template'));
    const names = evenlySpaced(
      Array.from({ length: files }, (_, i) => fileName(i)),
      RENAME_INODE_SAMPLE,
    );
    const oneRename = async (r: number, transfer: () => Promise<void>): Promise<void> => {
      const from = `moved${r}`;
      const to = `moved${r + 1}`;
      const before = await sampleInodes(join(right, from), names);
      const started = nowMs();
      await rename(join(left, from), join(left, to));
      await transfer();
      await pollUntil(
        `${to} renamed on the right`,
        async () => (await stat(join(right, from)).catch(() => undefined)) === undefined && (await visibleNames(join(right, to))).length === files,
        60_000 + files * 10,
        BULK_POLL_MS,
      );
      push(out, 'time', nowMs() - started);
      const after = await sampleInodes(join(right, to), names);
      const kept = names.filter((name) => before.get(name) !== undefined && before.get(name) === after.get(name)).length;
      push(out, 'inodesKept', kept / names.length);
    };
    if (session === undefined) {
      await withFloor(ctx, async () => {
        for (let r = 0; r < ctx.options.runs; r++) {
          await oneRename(r, async () => {
            const { stdout } = await ctx.floor.run(['--delete', '--stats', `${left}/`, ctx.floor.remote(`${right}/`)]);
            const bytes = parseBytesSent(stdout);
            if (bytes !== undefined) push(out, 'bytes', bytes);
          });
        }
      });
      out.notes.push('`rsync -a --delete --stats` of the whole tree after the rename; bytes are rsync\'s "Total bytes sent"');
    } else {
      await withSession(ctx, session, left, right, startDeadlineMs(files), async (s) => {
        for (let r = 0; r < ctx.options.runs; r++) {
          const before = await settledStatus(s);
          await oneRename(r, async () => {});
          const after = await settledStatus(s);
          if (before !== undefined && after !== undefined) {
            const rsyncRuns = after.counters.rsyncRuns - before.counters.rsyncRuns;
            const helperRuns = after.counters.helperRuns - before.counters.helperRuns;
            ((out.details.rsyncRuns ??= []) as number[]).push(rsyncRuns);
            ((out.details.helperRuns ??= []) as number[]).push(helperRuns);
            // No rsync run at all means no file data crossed; otherwise the amount is unknown.
            if (rsyncRuns === 0) push(out, 'bytes', 0);
            else out.notes.push(`run ${r}: ${rsyncRuns} rsync run(s) after the rename: bytes not measured`);
          }
        }
      });
      if (session.name !== 'psync') out.notes.push('bytes not measurable for this tool; see inodes kept');
    }
    await removeTree(join(left, '..'));
    return out;
  },
};

// ---------------------------------------------------------------- 4. merge

const merge: Scenario = {
  name: 'merge',
  title: 'initial merge of two trees that differ by ~10% on each side, until converged',
  metrics: [{ key: 'time', label: 'time to converge', unit: 's', required: true }],
  prepare: async (ctx) => {
    const files = ctx.options.mergeFiles;
    const dirs = Math.max(1, Math.ceil(files / 1000));
    const base = join(ctx.dir, 'base');
    await writeSpreadTree(base, files, dirs);
    // Each side: 5% of the files rewritten (newer) and 5% new files: 10% differences per side.
    for (const [side, offset] of [
      ['left', 0],
      ['right', 10],
    ] as const) {
      const root = join(ctx.dir, `template-${side}`);
      await copyTree(base, root);
      const changed = Array.from({ length: files }, (_, i) => i).filter((i) => i % 20 === offset);
      await forEachLimited(changed.length, 64, async (k) => {
        const i = changed[k] as number;
        await writeFile(join(root, dirName(i % dirs), fileName(i)), content(fileSize(i)));
      });
      await forEachLimited(changed.length, 64, async (k) => {
        await writeFile(join(root, dirName(k % dirs), `new-${side}-${k}.dat`), content(fileSize(k)));
      });
    }
    await removeTree(base);
  },
  run: async (ctx, tool, session) => {
    const out = result();
    if (tool !== 'rsync' && session?.twoWay !== true) {
      out.notes.push(`${tool} is one-way: no two-way merge`);
      return out;
    }
    for (let r = 0; r < ctx.options.runs; r++) {
      const base = join(ctx.dir, `${tool}-${r}`);
      const left = join(base, 'left');
      const right = join(base, 'right');
      await Promise.all([copyTree(join(ctx.dir, 'template-left'), left), copyTree(join(ctx.dir, 'template-right'), right)]);
      if (tool === 'rsync') {
        const ms = await withFloor(ctx, async () => (await ctx.floor.run(['--update', `${left}/`, ctx.floor.remote(`${right}/`)])).ms);
        push(out, 'time', ms / 1000);
      } else {
        const started = nowMs();
        const deadlineMs = startDeadlineMs(ctx.options.mergeFiles * 2);
        if (tool === 'psync') await psyncOnce(ctx.env, left, right, deadlineMs);
        else await unisonOnce(ctx.env, left, right, deadlineMs);
        push(out, 'time', (nowMs() - started) / 1000);
        const problems = await diffTrees(left, right);
        if (problems.length > 0) throw new Error(`not converged: ${problems.join('; ')}`);
      }
      await removeTree(base);
    }
    if (tool === 'rsync') out.notes.push('one one-way `rsync -a --update` left to right over the same diverged trees (psync runs two)');
    if (tool === 'psync') out.notes.push('`psync -s` from start (SSH, filters indexing both trees) to exit');
    if (tool === 'unison') out.notes.push('one `unison -batch -prefer newer` without archives, start to exit');
    return out;
  },
};

// ---------------------------------------------------------------- 5. idle

async function measureIdle(ctx: Context, processes: ProcessSet, out: ToolResult): Promise<void> {
  await sleep(ctx.options.idleWarmupSeconds * 1000);
  for (let r = 0; r < ctx.options.runs; r++) {
    const before = await sampleUsage(processes);
    const peak = watchPeakRss(processes, 1000);
    const started = nowMs();
    await sleep(ctx.options.idleSeconds * 1000);
    const after = await sampleUsage(processes);
    const seconds = (nowMs() - started) / 1000;
    const top = (await peak.stop()) ?? after;
    const highest = top.rssKb >= after.rssKb ? top : after;
    push(out, 'cpu', (cpuBetween(before, after) / seconds) * 100);
    push(out, 'rss', highest.rssKb / 1024);
    push(out, 'pss', highest.pssKb / 1024);
    push(out, 'rssOwn', ownRssKb(highest) / 1024);
    ((out.details.processes ??= []) as unknown[]).push(describeProcs(highest));
  }
}

const idle: Scenario = {
  name: 'idle',
  title: 'CPU and memory of all the tool\'s processes (local, remote, ssh) while watching an unchanging tree',
  metrics: [
    { key: 'cpu', label: 'CPU', unit: '% of a core', required: true },
    { key: 'rss', label: 'RSS, all processes', unit: 'MB', required: true },
    { key: 'pss', label: 'PSS, all processes', unit: 'MB', required: false },
    { key: 'rssOwn', label: 'RSS without ssh/sshd', unit: 'MB', required: false },
  ],
  prepare: async (ctx) => {
    await writeSpreadTree(join(ctx.dir, 'template'), ctx.options.idleFiles, Math.max(1, Math.ceil(ctx.options.idleFiles / 100)));
  },
  run: async (ctx, tool, session) => {
    const out = result();
    const { left, right } = await roots(ctx, tool, join(ctx.dir, 'template'));
    if (session === undefined) {
      await withFloor(ctx, () => measureIdle(ctx, ctx.floor.processes(), out));
      out.notes.push('what plain rsync keeps while nothing changes: the open ControlMaster and its sshd session');
    } else {
      await withSession(ctx, session, left, right, startDeadlineMs(ctx.options.idleFiles), (s) => measureIdle(ctx, s.processes, out));
    }
    await removeTree(join(left, '..'));
    return out;
  },
};

// ---------------------------------------------------------------- 6. scale

const scale: Scenario = {
  name: 'scale',
  title: 'start-up on a huge identical tree: time until watching, and memory',
  metrics: [
    { key: 'startup', label: 'start-up', unit: 's', required: true },
    { key: 'rssReady', label: 'RSS when ready', unit: 'MB', required: true },
    { key: 'rssPeak', label: 'peak RSS during start-up', unit: 'MB', required: false },
  ],
  prepare: async (ctx) => {
    ctx.log(`writing ${ctx.options.scaleFiles} files for the scale scenario`);
    await writeSpreadTree(join(ctx.dir, 'template'), ctx.options.scaleFiles, Math.max(1, Math.ceil(ctx.options.scaleFiles / 1000)));
  },
  run: async (ctx, tool, session) => {
    const out = result();
    const { left, right } = await roots(ctx, tool, join(ctx.dir, 'template'));
    for (let r = 0; r < ctx.options.runs; r++) {
      if (session === undefined) {
        await withFloor(ctx, async () => {
          const processes: ProcessSet = {
            roots: async () => [...(await ctx.floor.processes().roots()), ...(await ownChildren('rsync'))],
            parentsOnly: [ctx.env.sshdPid],
          };
          const peak = watchPeakRss(processes, 250);
          const { ms } = await ctx.floor.run([`${left}/`, ctx.floor.remote(`${right}/`)]);
          const top = await peak.stop();
          push(out, 'startup', ms / 1000);
          if (top !== undefined) push(out, 'rssPeak', top.rssKb / 1024);
          if (top !== undefined) push(out, 'rssReady', top.rssKb / 1024);
        });
        if (r === 0) out.notes.push('a no-op `rsync -a` of the identical trees; RSS is its peak (rsync on both ends, ssh, sshd)');
      } else {
        const started = nowMs();
        // Until the session is ready its pid is not known here: watch our own children running that program.
        const peak = watchPeakRss({ roots: () => ownChildren(session.name === 'psync' ? 'node' : session.name), parentsOnly: [ctx.env.sshdPid] }, 250);
        await withSession(ctx, session, left, right, startDeadlineMs(ctx.options.scaleFiles), async (s) => {
          push(out, 'startup', (nowMs() - started) / 1000);
          const ready = await sampleUsage(s.processes);
          push(out, 'rssReady', ready.rssKb / 1024);
          const top = await peak.stop();
          push(out, 'rssPeak', Math.max(top?.rssKb ?? 0, ready.rssKb) / 1024);
          ((out.details.processes ??= []) as unknown[]).push(describeProcs(ready));
        });
      }
    }
    await removeTree(join(left, '..'));
    return out;
  },
};

// ---------------------------------------------------------------- 7. startup

/** `start-up reconcile in 1.2 s: 0 to the right, ...`: what a start-up with nothing to do logs. */
const NOTHING_TO_DO = /start-up reconcile in [\d.]+ s: 0 to the right, 0 to the left, 0 deletes, 0 moves, 0 conflicts/;

/** The find(1) listing the floor runs on each side: what a scan has to learn about every entry. */
function listTree(root: string): Promise<unknown> {
  return execa('find', [root, '-printf', '%i %s %T@ %m %p\\n'], { stdin: 'ignore', stdout: 'ignore' });
}

/** Milliseconds since local midnight, as psync's log timestamps (`HH:mm:ss.SSS`) count them. */
function msOfDay(date: Date): number {
  return ((date.getHours() * 60 + date.getMinutes()) * 60 + date.getSeconds()) * 1000 + date.getMilliseconds();
}

/**
 * Where a start-up's time went, from psync's log timestamps, in seconds after
 * it was spawned: both sides watching (scanned, entries sent, archive
 * loaded), the start-up reconcile logged, and its exit.
 */
function startupPhases(log: string, spawned: Date, seconds: number): Record<string, number> {
  const at = (pattern: RegExp): number => {
    const stamps = [...log.matchAll(new RegExp(`^(\\d\\d):(\\d\\d):(\\d\\d)\\.(\\d{3}) \\w+ +${pattern.source}`, 'gm'))].map(
      (m) => ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000 + Number(m[4]),
    );
    const last = Math.max(...stamps);
    const ms = (last - msOfDay(spawned) + 86_400_000) % 86_400_000;
    return Math.round(ms) / 1000;
  };
  return { bothWatching: at(/(left|right): watching/), reconciled: at(/start-up reconcile in/), exited: Math.round(seconds * 1000) / 1000 };
}

/** Bytes of every file in `dir` (the archive: `<pairid>.sqlite` and any -wal/-shm), by name. */
async function filesSizes(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of await readdir(dir)) out[name] = (await stat(join(dir, name))).size;
  return out;
}

const startup: Scenario = {
  name: 'startup',
  title: 'start-up of an unchanged local pair with an archive (`psync -s`, nothing to do), against listing both trees',
  metrics: [
    { key: 'time', label: 'start-up with archive', unit: 's', required: true },
    { key: 'rssPeak', label: 'peak RSS', unit: 'MB', required: false },
    { key: 'archiveBytes', label: 'archive on disk', unit: 'bytes', required: false },
    { key: 'archivePerEntry', label: 'archive per entry', unit: 'bytes', required: false },
  ],
  prepare: async (ctx) => {
    await writeSpreadTree(join(ctx.dir, 'template'), ctx.options.startupFiles, Math.max(1, Math.ceil(ctx.options.startupFiles / 100)));
  },
  run: async (ctx, tool, session) => {
    const out = result();
    if (tool !== 'rsync' && tool !== 'psync') {
      out.notes.push(`${tool}: not run (psync's start-up against its own archive)`);
      return out;
    }
    const files = ctx.options.startupFiles;
    const { left, right } = await roots(ctx, tool, join(ctx.dir, 'template'));
    if (session === undefined) {
      // Untimed once, as psync's archive-building run: the page cache is as warm for both.
      await Promise.all([listTree(left), listTree(right)]);
      for (let r = 0; r < ctx.options.runs; r++) {
        const started = nowMs();
        await Promise.all([listTree(left), listTree(right)]);
        push(out, 'time', (nowMs() - started) / 1000);
        const sequential = nowMs();
        await listTree(left);
        await listTree(right);
        ((out.details.sequentialSeconds ??= []) as number[]).push((nowMs() - sequential) / 1000);
      }
      out.notes.push("`find ROOT -printf '%i %s %T@ %m %p\\n' > /dev/null` of both trees in parallel (as psync scans them); one after the other in the JSON (sequentialSeconds)");
    } else {
      const stateDir = join(left, '..', 'state');
      const deadlineMs = startDeadlineMs(files * 2);
      const building = nowMs();
      await psyncLocalOnce(ctx.env, left, right, stateDir, deadlineMs);
      out.details.archiveBuildSeconds = (nowMs() - building) / 1000;
      for (let r = 0; r < ctx.options.runs; r++) {
        // Until it runs its pid is not known here: watch our own node children (only psync).
        const peak = watchPeakRss({ roots: () => ownChildren('node'), parentsOnly: [] }, 250);
        const started = nowMs();
        const spawned = new Date();
        let log: string;
        let top: Usage | undefined;
        try {
          log = await psyncLocalOnce(ctx.env, left, right, stateDir, deadlineMs);
          push(out, 'time', (nowMs() - started) / 1000);
        } finally {
          top = await peak.stop();
        }
        if (top !== undefined) push(out, 'rssPeak', top.rssKb / 1024);
        if (top !== undefined) ((out.details.processes ??= []) as unknown[]).push(describeProcs(top));
        const reconcile = NOTHING_TO_DO.exec(log);
        if (reconcile === null) throw new Error(`run ${r}: no "0 to the right, ... 0 conflicts" start-up reconcile logged: ${log.slice(-1000)}`);
        ((out.details.reconcileLine ??= []) as string[]).push(reconcile[0]);
        ((out.details.phases ??= []) as unknown[]).push(startupPhases(log, spawned, (out.values.time?.[r] ?? NaN)));
        const entries = Number(/left: watching (\d+) entries/.exec(log)?.[1] ?? NaN);
        const sizes = await filesSizes(stateDir);
        const bytes = Object.values(sizes).reduce((a, b) => a + b, 0);
        push(out, 'archiveBytes', bytes);
        push(out, 'archivePerEntry', Math.round(bytes / entries));
        out.details.archiveFiles = sizes;
        out.details.entries = entries;
      }
      out.notes.push(
        '`psync -s --state-dir DIR L R` (local pair) from start to exit, after one untimed run built the archive; RSS: all its processes, sampled every 250 ms; archive: the .sqlite file and any -wal/-shm after each run, per entry psync watches',
      );
    }
    await removeTree(join(left, '..'));
    return out;
  },
};

/** Processes this benchmark started running `program` (their trees count). */
async function ownChildren(program: string): Promise<number[]> {
  return (await allProcs()).filter((proc) => proc.ppid === process.pid && proc.comm === program).map((proc) => proc.pid);
}

export const SCENARIOS: readonly Scenario[] = [latency, burst, renameScenario, merge, idle, scale, startup];
