/**
 * A reconcile's plan (reconcile.ts) as the batches the brain applies, and
 * the line it logs for each decision (`-n` lists them all).
 *
 * Steps come ordered: the other side's renames carried over, then
 * conflicts' set-asides (named as paths are after those renames), then
 * deletes (deepest first), then copies (parents first). Each phase is cut into one batch per target side,
 * keeping the plan's order inside it: moves on one side do not depend on
 * moves on the other, and the same holds for deletes and copies.
 *
 * A move is either the other side's rename carried over, or a conflict's
 * loser set aside under its conflict name on its own side (`setAside`):
 * the archive records the first and not the second (the loser's copy and
 * the winner are recorded when their copies are confirmed).
 */

import type { Observed, Plan, Snapshot, Step } from './reconcile.js';
import { directionFrom, otherSide, targetOf, type Action, type ActionKind, type Direction, type Side, type Stat } from './types.js';

export interface PlannedBatch {
  readonly direction: Direction;
  readonly kind: ActionKind;
  readonly actions: Action[];
  /** Moves that set a conflict's loser aside on its own side. */
  readonly setAside: boolean;
}

export function statOf(entry: Observed): Stat {
  const stat = { type: entry.type, ino: entry.ino, size: entry.size, mtimeMs: entry.mtimeMs, mode: entry.mode };
  return entry.birthMs === undefined ? stat : { ...stat, birthMs: entry.birthMs };
}

/** The direction whose target is `side`. */
const towards = (side: Side): Direction => directionFrom(otherSide(side));

/**
 * The plan's steps as batches. `scans` are the snapshots the plan was made
 * from: a copy carries what its target held there (`prev`), the version a
 * transfer may replace without a conflict.
 */
export function batchesOf(plan: Plan, scans: Record<Side, Snapshot<Observed>>): PlannedBatch[] {
  const setAside = new Set(plan.steps.flatMap((step) => (step.kind === 'conflict' ? [`${step.loser}\0${step.copy}`] : [])));
  const phases: Record<'move' | 'moveAside' | 'delete' | 'rsync', Record<Direction, Action[]>> = {
    moveAside: { leftToRight: [], rightToLeft: [] },
    move: { leftToRight: [], rightToLeft: [] },
    delete: { leftToRight: [], rightToLeft: [] },
    rsync: { leftToRight: [], rightToLeft: [] },
  };
  for (const step of plan.steps) {
    switch (step.kind) {
      case 'move': {
        const phase = setAside.has(`${step.side}\0${step.to}`) ? 'moveAside' : 'move';
        phases[phase][towards(step.side)].push({ kind: 'move', from: step.from, to: step.to, stat: statOf(step.expect) });
        break;
      }
      case 'delete':
        phases.delete[towards(step.side)].push({ kind: 'delete', path: step.path, stat: statOf(step.expect) });
        break;
      case 'copy': {
        const target = scans[targetOf(step.direction)].get(step.path);
        const stat = statOf(step.version);
        phases.rsync[step.direction].push(target === undefined ? { kind: 'rsync', path: step.path, stat } : { kind: 'rsync', path: step.path, stat, prev: statOf(target) });
        break;
      }
      case 'conflict':
        break;
    }
  }
  const out: PlannedBatch[] = [];
  // The other side's renames first: a conflict's set-aside names paths as they are after them.
  for (const phase of ['move', 'moveAside', 'delete', 'rsync'] as const) {
    for (const direction of ['leftToRight', 'rightToLeft'] as const) {
      const actions = phases[phase][direction];
      if (actions.length === 0) continue;
      out.push({ direction, kind: phase === 'moveAside' ? 'move' : phase, actions, setAside: phase === 'moveAside' });
    }
  }
  return out;
}

/** One decision as a log line: `copy left->right "a/b"`, `move on right "a" -> "b"`, ... */
export function describeStep(step: Step): string {
  switch (step.kind) {
    case 'copy':
      return `copy ${step.direction === 'leftToRight' ? 'left->right' : 'right->left'} ${JSON.stringify(step.path)}`;
    case 'move':
      return `move on ${step.side} ${JSON.stringify(step.from)} -> ${JSON.stringify(step.to)}`;
    case 'delete':
      return `delete on ${step.side} ${JSON.stringify(step.path)}`;
    case 'conflict':
      return `conflict on ${JSON.stringify(step.path)}: both sides changed it; the ${step.loser} side's version is kept as ${JSON.stringify(step.copy)}`;
  }
}
