/**
 * Safety halts: small pure predicates the brain asks before it applies a
 * plan, so that a catastrophe on one side (a root replaced, emptied or not
 * mounted, a mass delete) is not carried to the other. Mutagen's
 * `safety.go` (`oneEndpointEmptiedRoot`) and rclone bisync's `--max-delete`
 * are the models. A halt touches nothing; the caller says how to go ahead.
 */

import type { Plan } from './reconcile.js';
import type { Side } from './types.js';

/**
 * Would `plan` delete more than `maxDeletePercent` of the archive's
 * entries? Every delete step counts: a deleted directory's contents are
 * their own steps (the plan lists each entry it removes), and an entry
 * replaced by one of another type (a delete, then a copy) counts too,
 * which errs on the side of halting. The limit is the share of the archive
 * rounded down, so with the default 50% removing 1 of 1 entry halts;
 * 100 turns the check off (a plan deletes only archived paths). Undefined
 * when within the limit or when the archive is empty (a first run deletes
 * nothing).
 */
export function tooManyDeletes(plan: Plan, archiveSize: number, maxDeletePercent: number): { deletes: number; limit: number } | undefined {
  if (archiveSize <= 0) return undefined;
  let deletes = 0;
  for (const step of plan.steps) if (step.kind === 'delete') deletes += 1;
  const limit = Math.floor((archiveSize * maxDeletePercent) / 100);
  return deletes > limit ? { deletes, limit } : undefined;
}

export type MarkerVerdict = { kind: 'ok' } | { kind: 'firstRun' } | { kind: 'halt'; side: Side; reason: string };

/**
 * Does each root still carry this pair's marker (`.psync/id`, like
 * Syncthing's `.stfolder`)? `markers` are the pair ids found in each root's
 * marker file (a root synced with several others holds several), undefined
 * when it has none.
 * - An empty archive has nothing a missing root could make look deleted:
 *   `ok` when both roots already carry the id (a pair of empty trees),
 *   else `firstRun` (the brain writes the markers once it has reconciled).
 * - An archive with entries and a root without this pair's id: that root
 *   was replaced, emptied or is not mounted, and reconciling would delete
 *   everything on the other side: `halt` (the left side is judged first).
 */
export function markerVerdict(archiveSize: number, markers: Record<Side, readonly string[] | undefined>, pairId: string): MarkerVerdict {
  const sides = ['left', 'right'] as const;
  if (archiveSize <= 0) return sides.every((side) => markers[side]?.includes(pairId) === true) ? { kind: 'ok' } : { kind: 'firstRun' };
  for (const side of sides) {
    const ids = markers[side];
    const entries = `${archiveSize} agreed ${archiveSize === 1 ? 'entry' : 'entries'}`;
    if (ids === undefined) {
      return { kind: 'halt', side, reason: `the ${side} root has no .psync/id marker while this pair's archive holds ${entries}: was it replaced, emptied or not mounted?` };
    }
    if (!ids.includes(pairId)) {
      return {
        kind: 'halt',
        side,
        reason: `the ${side} root's .psync/id marker does not name this pair (${pairId}) while its archive holds ${entries}: was the root replaced by another tree?`,
      };
    }
  }
  return { kind: 'ok' };
}
