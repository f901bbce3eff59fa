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
 * Paths whose equality size and mtime cannot settle (core hashesNeeded) are
 * hashed by their side's helper first. `-n` lists every decision and
 * changes nothing; `-k` applies none of the transfers but still records the
 * entries both sides already agree on.
 */

import { SafetyError } from '../core/errors.js';
import { hashesNeeded, reconcile, type Agreed, type Observed, type Plan, type Snapshot } from '../core/reconcile.js';
import { markerVerdict, tooManyDeletes } from '../core/safety.js';
import { sameVersion, versionOf } from '../core/version.js';
import { batchesOf, describeStep, type PlannedBatch } from '../core/steps.js';
import type { Side } from '../core/types.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Archive } from '../state/archive.js';
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
  /** Apply one planned batch and record what the target confirmed (the brain's appliers). */
  apply(batch: PlannedBatch): Promise<void>;
  /** psync is stopping (or the session faulted): apply nothing more, mark nothing. */
  stopped(): boolean;
}

export async function reconcileAtStart(ctx: StartupContext): Promise<void> {
  const { config, log, archive } = ctx;
  const started = performance.now();
  const agreed: Snapshot<Agreed> = config.resetArchive ? new Map() : archive.all();
  if (config.resetArchive && archive.size > 0) log.warn(`--reset: forgetting what this pair agreed on (${archive.size} entries); this start is a first run`);
  const verdict = markerVerdict(agreed.size, ctx.markers, ctx.pairId);
  if (verdict.kind === 'halt') {
    throw new SafetyError(
      `halted: ${verdict.reason}; nothing was changed. If that root is the right one, run psync once with --reset (a first run: the union of both trees, nothing deleted)`,
    );
  }
  if (agreed.size === 0) log.info('no archive for this pair yet: a first run (the union of both trees; nothing is deleted)');
  await addHashes(ctx, hashesNeeded(agreed, ctx.scans.left, ctx.scans.right));
  const plan = reconcile(agreed, ctx.scans.left, ctx.scans.right);
  const excess = tooManyDeletes(plan, agreed.size, config.maxDeletePercent);
  if (excess !== undefined) {
    throw new SafetyError(
      `halted: the start-up would delete ${excess.deletes} of the ${agreed.size} archived entries, more than --max-delete ${config.maxDeletePercent}% (${excess.limit}); ` +
        'nothing was changed. Check both roots; to go ahead, run once with --max-delete 100',
    );
  }
  const listing = config.dryRun ? 'would ' : '';
  for (const step of plan.steps) log.log(config.dryRun ? 'info' : 'verbose', `${listing}${describeStep(step)}`);
  log.info(summary(plan, (performance.now() - started) / 1000, config.dryRun));
  if (config.dryRun) return;
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
    for (const batch of batchesOf(plan, ctx.scans)) {
      if (ctx.stopped()) return;
      await ctx.apply(batch);
    }
  }
  if (ctx.stopped()) return;
  await markRoots(ctx);
}

function summary(plan: Plan, seconds: number, dryRun: boolean): string {
  const s = plan.summary;
  return (
    `start-up reconcile${dryRun ? ' (dry run, nothing changed)' : ''} in ${seconds.toFixed(1)} s: ` +
    `${s.toRight} to the right, ${s.toLeft} to the left, ${s.deletes} deletes, ${s.moves} moves, ${s.conflicts} conflicts`
  );
}

/** Ask each side's helper for the digests the reconcile needs; a path whose stat moved on since the scan keeps none. */
async function addHashes(ctx: StartupContext, needed: Record<Side, string[]>): Promise<void> {
  await Promise.all(
    (['left', 'right'] as const).map(async (side) => {
      const paths = needed[side];
      if (paths.length === 0) return;
      ctx.log.verbose(`${side}: hashing ${paths.length} entries whose size and mtime cannot tell`);
      const replies = await ctx.helpers[side].request(paths.map((path) => ({ kind: 'hash' as const, path })));
      const scan = ctx.scans[side];
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

/** Write the pair's id into each root's `.psync/id` (once the first reconcile went through). */
async function markRoots(ctx: StartupContext): Promise<void> {
  for (const side of ['left', 'right'] as const) {
    if (ctx.markers[side]?.includes(ctx.pairId) === true) continue;
    const [reply] = await ctx.helpers[side].request([{ kind: 'mark', pairId: ctx.pairId }]);
    if (reply !== undefined && !reply.ok) ctx.log.warn(`${side}: could not write the pair's marker .psync/id (${reply.message}); the next start will halt`);
  }
}
