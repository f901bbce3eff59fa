/**
 * The start-up reconcile: both filters' scans (their index, sent as ENTRY
 * frames before READY) against the pair's archive, through the one pure
 * decision function (core/reconcile.ts), then applied batch by batch.
 *
 * Before anything is applied, two safety halts (core/safety.ts), each a
 * SafetyError (exit 7) that changes nothing: a root whose `.psync/id`
 * marker is gone while the archive holds entries (replaced, emptied,
 * unmounted), and a plan that would delete more than --max-delete of the
 * archive's entries. Without an archive (a first run, or --reset) the plan
 * is the union of both trees: nothing is deleted, and a path that holds
 * different content on each side keeps both versions.
 *
 * Before the plan, what an earlier session left is dealt with: transfers
 * the archive journaled and never recorded as over (cut off by a kill or a
 * lost link) have what they wrote whole agreed (core adoptCutOff), their
 * temp files removed and the versions they replaced judged; archived
 * entries below a directory a side cannot read count as unchanged there
 * (core/skipped.ts).
 *
 * Paths whose equality size and mtime cannot settle (core hashesNeeded) are
 * hashed by their side's helper first. `-n` lists every decision and
 * changes nothing; `-k` applies none of the transfers but still records the
 * entries both sides already agree on. The batches applied share one
 * progress task (progress.ts): entries and bytes done of the plan's.
 */

import { SafetyError } from '../core/errors.js';
import { hashesNeeded, reconcile, type Agreed, type Observed, type Plan, type Snapshot } from '../core/reconcile.js';
import { markerVerdict, tooManyDeletes } from '../core/safety.js';
import { unknownAsAgreed } from '../core/skipped.js';
import { sameVersion, versionOf } from '../core/version.js';
import { batchesOf, describeStep, type PlannedBatch } from '../core/steps.js';
import type { Side, Stat } from '../core/types.js';
import { adoptCutOff, agreedStat, identityOf } from '../core/agreed.js';
import { expectedVersions } from '../core/conflict.js';
import { REPLACED_DIR } from '../core/protocol.js';
import type { Leftover } from '../fs/psyncDir.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { describeTransfer, isBigTransfer, type Counts, type ProgressBoard, type ProgressTask } from '../progress.js';
import type { Archive, UnfinishedTransfer } from '../state/archive.js';
import type { HelperClient } from './helperClient.js';

export interface StartupContext {
  readonly config: Config;
  readonly log: Logger;
  readonly archive: Archive;
  readonly pairId: string;
  /** Each side's scan: every entry its filter indexed. */
  readonly scans: Record<Side, Map<string, Observed>>;
  /** The pair ids in each root's `.psync/id`; undefined when there is none. */
  readonly markers: Record<Side, readonly string[] | undefined>;
  readonly helpers: Record<Side, HelperClient>;
  /** Directories each side cannot read (SKIPPED): what is in them is unknown, not gone (core/skipped.ts). */
  readonly skipped: Record<Side, ReadonlySet<string>>;
  /** The versions killed transfers kept under `.psync/replaced` on each side (LEFTOVER frames). */
  readonly leftovers: Record<Side, readonly Leftover[]>;
  /** A conflict (both sides changed the path; a leftover that was a change of its own side): counted, its path listed. */
  noteConflict(path: string): void;
  /** Where the start-up shows its progress. */
  readonly progress: ProgressBoard;
  /** Apply one planned batch and record what the target confirmed (the brain's appliers); it adds what it did to `task`. */
  apply(batch: PlannedBatch, task: ProgressTask): Promise<void>;
  /** psync is stopping (or the session faulted): apply nothing more, mark nothing. */
  stopped(): boolean;
}

export async function reconcileAtStart(ctx: StartupContext): Promise<void> {
  const { config, log, archive } = ctx;
  const started = performance.now();
  // The journal before its entries go: judging what those transfers replaced needs what they expected.
  const journal = archive.unfinishedTransfers();
  let agreed: Snapshot<Agreed> = config.resetArchive ? new Map() : archive.all();
  if (config.resetArchive && archive.size > 0) log.warn(`--reset: forgetting what this pair agreed on (${archive.size} entries); this start is a first run`);
  const verdict = markerVerdict(agreed.size, ctx.markers, ctx.pairId);
  if (verdict.kind === 'halt') {
    throw new SafetyError(
      `halted: ${verdict.reason}; nothing was changed. If that root is the right one, run psync once with --reset (a first run: the union of both trees, nothing deleted)`,
    );
  }
  if (!config.dryRun && !config.resetArchive && adoptCutOffTransfers(ctx, journal)) agreed = archive.all();
  if (!config.dryRun) await cleanUnfinishedTransfers(ctx, journal);
  if (agreed.size === 0) log.info('no archive for this pair yet: a first run (the union of both trees; nothing is deleted)');
  const scans: Record<Side, Map<string, Observed>> = {
    left: unknownAsAgreed(agreed, ctx.scans.left, ctx.skipped.left, 'left'),
    right: unknownAsAgreed(agreed, ctx.scans.right, ctx.skipped.right, 'right'),
  };
  await judgeLeftovers(ctx, scans, journal);
  await addHashes(ctx, scans, hashesNeeded(agreed, scans.left, scans.right));
  const plan = reconcile(agreed, scans.left, scans.right);
  const excess = tooManyDeletes(plan, agreed.size, config.maxDeletePercent);
  if (excess !== undefined) {
    throw new SafetyError(
      `halted: the start-up would delete ${excess.deletes} of the ${agreed.size} archived entries, more than --max-delete ${config.maxDeletePercent}% (${excess.limit}); ` +
        'nothing was changed. Check both roots; to go ahead, run once with --max-delete 100',
    );
  }
  const listing = config.dryRun ? 'would ' : '';
  // -n lists every decision at -d 0 already (what it was asked for); a real start-up at -d 2.
  for (const step of plan.steps) log.log(config.dryRun ? 'info' : 'debug', `${listing}${describeStep(step)}`);
  log.info(summary(plan, (performance.now() - started) / 1000, config.dryRun));
  if (config.dryRun) return;
  for (const step of plan.steps) if (step.kind === 'conflict') ctx.noteConflict(step.path);
  archive.transaction((w) => {
    if (config.resetArchive) w.clear();
    for (const record of plan.records) {
      if (record.kind === 'agree') w.put(record.path, record.entry);
      else w.deleteTree(record.path);
    }
  });
  if (config.skipInitialSync) {
    if (plan.steps.length > 0) log.info(`-k: not applying the ${plan.steps.length} step(s) above; each path is sent when it changes next`);
  } else {
    const batches = batchesOf(plan, scans);
    const task = ctx.progress.start('start-up reconcile', log, planTotals(batches));
    try {
      for (const batch of batches) {
        if (ctx.stopped()) return;
        await ctx.apply(batch, task);
      }
    } finally {
      const { done, durationMs } = task.end();
      if (isBigTransfer(done.bytes, durationMs)) log.info(`start-up reconcile applied: ${describeTransfer(done, durationMs)}`);
    }
  }
  if (ctx.stopped()) return;
  await markRoots(ctx);
}

/** What the plan's batches carry: its entries but the directories sent (a move or delete counts as one), and the bytes of the files sent. */
function planTotals(batches: readonly PlannedBatch[]): Counts {
  let [files, bytes] = [0, 0];
  for (const batch of batches) {
    for (const action of batch.actions) {
      if (action.kind === 'rsync' && action.stat.type === 'dir') continue; // rsync's list counts no directory as done
      files += 1;
      if (action.kind === 'rsync' && action.stat.type === 'file') bytes += action.stat.size;
    }
  }
  return { files, bytes };
}

function summary(plan: Plan, seconds: number, dryRun: boolean): string {
  const s = plan.summary;
  return (
    `start-up reconcile${dryRun ? ' (dry run, nothing changed)' : ''} in ${seconds.toFixed(1)} s: ` +
    `${s.toRight} to the right, ${s.toLeft} to the left, ${s.deletes} deletes, ${s.moves} moves, ${s.conflicts} conflicts`
  );
}

/** Ask each side's helper for the digests the reconcile needs; a path whose stat moved on since the scan keeps none. */
async function addHashes(ctx: StartupContext, scans: Record<Side, Map<string, Observed>>, needed: Record<Side, string[]>): Promise<void> {
  await Promise.all(
    (['left', 'right'] as const).map(async (side) => {
      const paths = needed[side];
      if (paths.length === 0) return;
      ctx.log.debug(`${side}: hashing ${paths.length} entries whose size and mtime cannot tell`);
      const replies = await ctx.helpers[side].request(paths.map((path) => ({ kind: 'hash' as const, path })));
      const scan = scans[side];
      for (const [i, reply] of replies.entries()) {
        const path = paths[i]!;
        const seen = scan.get(path);
        if (seen === undefined || !reply.ok || !('hash' in reply)) continue;
        const now = reply.stat;
        // What was hashed must be what was scanned, the same file object.
        if (now.ino === seen.ino && sameVersion(versionOf(now), seen)) {
          scan.set(path, { ...seen, hash: reply.hash });
        }
      }
    }),
  );
}

/** What cut-off transfers sent and their target now holds is agreed (core/agreed.ts adoptCutOff); true when anything was. */
function adoptCutOffTransfers(ctx: StartupContext, journal: readonly UnfinishedTransfer[]): boolean {
  const adopted = journal.flatMap((transfer) => [...adoptCutOff(transfer.sent, transfer.target, ctx.scans)]);
  if (adopted.length === 0) return false;
  ctx.log.debug(`${adopted.length} path(s) a cut-off transfer had written whole: agreed`);
  ctx.archive.transaction((w) => {
    for (const [path, entry] of adopted) w.put(path, entry);
  });
  return true;
}

/**
 * Transfers the archive journaled and never recorded as over were cut off
 * (psync or its rsync killed, the link lost): rsync may have left its temp
 * files (`.name.XXXXXX`) beside the paths it was writing. They are removed,
 * and the journal entry with them once every path was done.
 */
async function cleanUnfinishedTransfers(ctx: StartupContext, journal: readonly UnfinishedTransfer[]): Promise<void> {
  for (const transfer of journal) {
    ctx.log.debug(`${transfer.target}: removing what the cut-off transfer ${transfer.run} may have left (${transfer.paths.length} paths)`);
    if (await removeTransferTemps(ctx.helpers[transfer.target], transfer.paths)) ctx.archive.transaction((w) => w.endTransfer(transfer.run));
  }
}

/** Have the target's helper remove rsync's temp files beside each path (UNTEMP); true when every request was done. */
export async function removeTransferTemps(helper: HelperClient, paths: readonly string[]): Promise<boolean> {
  if (paths.length === 0) return true;
  const replies = await helper.request(paths.map((path) => ({ kind: 'untemp' as const, path })));
  return replies.every((reply) => reply.ok || reply.code === 'missing');
}

/**
 * A psync killed between a transfer and its conflict check left the
 * versions that transfer replaced under `.psync/replaced/<run>`. Each is
 * judged as the check would have (helper RESOLVE, core/conflict.ts) against
 * what the journal says the target held as agreed before that run, and what
 * the archive holds now (a cut-off run's list may have been agreed since):
 * such a version, or the same bytes as the file now there, is dropped
 * with its run; anything else was a change made on that side, and is kept
 * as a conflict copy beside the file (or takes the name back when it is the
 * newer). Such a path and its copy are looked at again (STAT) and the
 * side's scan updated, so that this reconcile carries them over.
 * Runs whose every version was judged are removed; -n judges nothing.
 */
async function judgeLeftovers(ctx: StartupContext, scans: Record<Side, Map<string, Observed>>, journal: readonly UnfinishedTransfer[]): Promise<void> {
  const expectedBefore = new Map(journal.map((transfer) => [transfer.run, transfer.expected]));
  await Promise.all(
    (['left', 'right'] as const).map(async (side) => {
      const leftovers = ctx.leftovers[side];
      if (leftovers.length === 0) return;
      const where = `${side}: ${leftovers.length} version(s) a killed transfer kept under ${REPLACED_DIR}`;
      if (ctx.config.dryRun) {
        ctx.log.info(`${where} would be judged (dry run: left as they are)`);
        return;
      }
      ctx.log.verbose(`${where}: judging them against what was agreed`);
      const agreedThere = (path: string): Stat | undefined => {
        const entry = ctx.archive.get(path);
        return entry === undefined ? undefined : agreedStat(entry, side);
      };
      const replies = await ctx.helpers[side].request(
        // What the journal says the target held before that run (its list may have been agreed since), and what is agreed now.
        leftovers.map(({ run, path }) => ({ kind: 'resolve' as const, dir: run, path, expected: expectedVersions(expectedBefore.get(run)?.get(path), agreedThere(path)) })),
      );
      const unfinished = new Set<string>();
      const changed: string[] = [];
      for (const [i, reply] of replies.entries()) {
        const { run, path } = leftovers[i]!;
        if (!reply.ok) {
          unfinished.add(run);
          ctx.log.warn(`${side}: could not judge the version of ${JSON.stringify(path)} kept in ${run} (${reply.code}: ${reply.message}); it stays there`);
        } else if (reply.conflict !== undefined) {
          changed.push(path, reply.conflict.copy);
          ctx.noteConflict(path);
          ctx.log.warn(
            `conflict on ${JSON.stringify(path)}: a killed transfer had replaced a change made on the ${side} side; ` +
              `${reply.conflict.kept === 'replaced' ? 'that (newer) change has the name back, the transferred version is' : 'it is'} kept as ${JSON.stringify(reply.conflict.copy)}`,
          );
        }
      }
      await rescanPaths(ctx.helpers[side], scans[side], changed);
      for (const run of new Set(leftovers.map((leftover) => leftover.run))) {
        if (unfinished.has(run)) continue;
        const [purged] = await ctx.helpers[side].request([{ kind: 'purge', dir: run }]);
        if (purged !== undefined && !purged.ok) ctx.log.warn(`${side}: could not remove ${run}: ${purged.message}`);
      }
    }),
  );
}

/** What `paths` hold now on a side (its helper's STAT), into that side's scan; a path that is gone leaves it. */
async function rescanPaths(helper: HelperClient, scan: Map<string, Observed>, paths: readonly string[]): Promise<void> {
  if (paths.length === 0) return;
  const replies = await helper.request(paths.map((path) => ({ kind: 'stat' as const, path })));
  for (const [i, reply] of replies.entries()) {
    if (reply.ok) scan.set(paths[i]!, { ...versionOf(reply.stat), ...identityOf(reply.stat) });
    else if (reply.code === 'missing') scan.delete(paths[i]!);
  }
}

/** Write the pair's id into each root's `.psync/id` (once the first reconcile went through). */
async function markRoots(ctx: StartupContext): Promise<void> {
  for (const side of ['left', 'right'] as const) {
    if (ctx.markers[side]?.includes(ctx.pairId) === true) continue;
    const [reply] = await ctx.helpers[side].request([{ kind: 'mark', pairId: ctx.pairId }]);
    if (reply !== undefined && !reply.ok) ctx.log.warn(`${side}: could not write the pair's marker .psync/id (${reply.message}); the next start will halt`);
  }
}
