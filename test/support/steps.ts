/**
 * One change at a time, with its cost: run a change on one side of a
 * running pair, wait until it settled, then close it with a barrier in each
 * direction and return what the brain did for it.
 *
 * The forward barrier (written on the source, then removed) proves every
 * action the source reported for the change has been applied and counted:
 * the source's filter reports in order and the brain applies in order. The
 * reverse barrier (written on the target) proves any echo of the change
 * would have been dispatched by then. Each barrier costs two actions in its
 * direction, one rsync run and one helper run; they are subtracted.
 */

import { lstat, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { waitFor, waitForSameTrees, type PsyncProcess, type Status } from './psync.js';

export type Dir = 'leftToRight' | 'rightToLeft';
export const DIRECTIONS = ['leftToRight', 'rightToLeft'] as const;
export const reverse = (d: Dir): Dir => (d === 'leftToRight' ? 'rightToLeft' : 'leftToRight');

export interface StepCounts {
  /** Actions applied from source to target for the change. */
  forward: number;
  /** Actions applied back from target to source: echoes, 0 when all is well. */
  reverse: number;
  rsyncRuns: number;
  helperRuns: number;
}

export const gone = (path: string): Promise<boolean> => lstat(path).then(
  () => false,
  () => true,
);
export const ino = async (path: string): Promise<number> => (await lstat(path)).ino;

export class Stepper {
  private barriers = 0;

  constructor(
    readonly psync: PsyncProcess,
    readonly left: string,
    readonly right: string,
  ) {}

  async status(): Promise<Status> {
    const s = await this.psync.status();
    if (s === undefined) throw new Error('no status');
    return s;
  }

  /** Write a barrier on the source of `direction`, wait for it, remove it, wait for that and for both to be counted. */
  async barrier(direction: Dir): Promise<void> {
    const before = await this.status();
    const [from, to] = direction === 'leftToRight' ? [this.left, this.right] : [this.right, this.left];
    const name = `barrier-${++this.barriers}`;
    await writeFile(join(from, name), 'b');
    await waitFor(`barrier ${name} to arrive`, () => stat(join(to, name)).then(() => true));
    await rm(join(from, name));
    await waitFor(`barrier ${name} to be removed`, () => gone(join(to, name)));
    await waitFor(
      `barrier ${name} to be counted`,
      async () => (await this.status()).counters.applied[direction] >= before.counters.applied[direction] + 2,
    );
  }

  /**
   * Run `change`, wait for `settled` (by default: identical `scope` subtrees
   * on both sides, so one failed test does not fail the next), close with
   * both barriers and return the change's own counts. With `settled` given
   * the trees are not compared (the change may leave an excluded or temp
   * file on the source).
   */
  async step(direction: Dir, scope: string, change: () => Promise<unknown>, settled?: () => Promise<unknown>, deadlineMs = 20_000): Promise<StepCounts> {
    const before = await this.status();
    await change();
    const same = (): Promise<void> => waitForSameTrees(join(this.left, scope), join(this.right, scope), deadlineMs);
    await (settled ?? same)().catch((error: Error) => {
      throw new Error(`${error.message}\n--- psync log ---\n${this.psync.log().slice(-8000)}`);
    });
    await this.barrier(direction);
    await this.barrier(reverse(direction));
    if (settled === undefined) await same();
    const after = await this.status();
    expect(after.counters.failures, this.psync.log().slice(-4000)).toBe(before.counters.failures);
    const c = (s: Status) => s.counters;
    const counts = {
      forward: c(after).applied[direction] - c(before).applied[direction] - 2,
      reverse: c(after).applied[reverse(direction)] - c(before).applied[reverse(direction)] - 2,
      rsyncRuns: c(after).rsyncRuns - c(before).rsyncRuns - 2,
      helperRuns: c(after).helperRuns - c(before).helperRuns - 2,
    };
    // Nothing ever comes back: an echo taken for a change would be sent back to where it came from.
    expect(counts.reverse, `an echo came back\n${this.psync.log().slice(-8000)}`).toBe(0);
    return counts;
  }
}
