/**
 * Issue 8, races 4 and 5: a directory swapped for a symlink to a root-only
 * directory, again and again (renameat2 RENAME_EXCHANGE in a tight loop, as
 * nobody), while psync's helper on the right removes a tree or moves an
 * entry into it. A check made through a path and an act made through the
 * same path string may each see the other one; psync must act through held
 * directories, so that whatever the loop does, nothing outside the root is
 * removed, written or created. Each race is run many times; the canaries
 * (named like the decoys inside the swapped directory) are checked after
 * every round.
 *
 * The attacker's swapped entries are named `x-*`, which psync excludes
 * (`-e x-*`): the right's filter never reports them, so the left never
 * holds them and a delete from the left meets a non-empty directory on the
 * right, which `-f` lets the helper remove with everything in it.
 */

import { lstat, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'vitest';
import { attack, attacker, Exchanger, MODES, type AttackPair, type Canaries, type ExchangeLoop, type Mode } from '../support/attacker.js';
import { gone } from '../support/steps.js';

/** Rounds per race: a remote round costs twice a local one (rsync and the helper over ssh). */
const ROUNDS: Record<Mode, number> = { local: 20, remote: 12 };
/** The decoys in the swapped directory, and the canaries, share these names. */
const NAMES = Array.from({ length: 20 }, (_, i) => `f${String(i).padStart(2, '0')}`);
const PSYNC_ARGS = ['-f', '-e', 'x-*'];

interface Race {
  readonly pair: AttackPair;
  readonly canaries: Canaries;
  readonly exchanger: Exchanger;
  /** A directory of decoy files (readable by nobody) to copy into the tree. */
  readonly decoys: string;
}

/** A pair running psync, with the exchange program and the decoys; `round` run ROUNDS[mode] times, the canaries checked after each. */
function race(mode: Mode, round: (race: Race, n: number) => Promise<void>): Promise<void> {
  return attack(mode, NAMES, async (pair, canaries) => {
    const exchanger = await Exchanger.build(pair.work);
    const decoys = join(pair.work, 'decoys');
    await mkdir(decoys, { mode: 0o755 });
    for (const name of NAMES) await writeFile(join(decoys, name), `decoy ${name}\n`, { mode: 0o644 });
    await pair.start(PSYNC_ARGS);
    for (let n = 1; n <= ROUNDS[mode]; n++) {
      await round({ pair, canaries, exchanger, decoys }, n);
      // Cheap enough to look after every round, and the first round that does harm says so.
      await canaries.expectSafe([pair.left, pair.right], () => `round ${n}\n${pair.log()}`);
    }
  });
}

/** Make each `w/<path>` on the left, as nobody (a directory, or a file with the content given), and wait until all are on the right. */
async function synced(pair: AttackPair, entries: ReadonlyArray<[path: string, content?: string]>): Promise<void> {
  for (const [path, content] of entries) await (content === undefined ? attacker.mkdir(pair.l(path)) : attacker.write(pair.l(path), content));
  for (const [path] of entries) await pair.until(`${path} on the right`, () => lstat(pair.r(path)).then(() => true));
}

/**
 * On the right only, the attacker fills `w/<dir>` with `x-sub/` (decoys
 * named like the canaries) and `x-lnk` (a link to the canaries' dir), and
 * starts swapping the two. Resolves with the running loop.
 */
async function swapInside({ pair, canaries, exchanger, decoys }: Race, dir: string): Promise<ExchangeLoop> {
  await attacker.copyTree(decoys, pair.r(`${dir}/x-sub`));
  await attacker.symlink(canaries.dir, pair.r(`${dir}/x-lnk`));
  return exchanger.loop(pair.r(dir), 'x-sub', 'x-lnk');
}

/**
 * While the loop swaps inside `w/<dir>` on the right, make `change` on the
 * left, until the helper has removed what it removes (the loop ends when
 * one of its names is gone) or the brain counts the change applied.
 */
async function duringSwap(r: Race, dir: string, change: () => Promise<unknown>): Promise<void> {
  const before = await r.pair.appliedFromLeft();
  const loop = await swapInside(r, dir);
  try {
    await r.pair.leftChange(before, change, () => loop.ended);
  } finally {
    await loop.stop();
  }
  await r.pair.barrier('leftToRight');
}

describe.each(MODES)('%s', (mode) => {
  test(`4: rm -rf of a directory whose subdirectory is swapped for a link to a root-only dir removes nothing there (${ROUNDS[mode]} rounds)`, () =>
    race(mode, async (r, n) => {
      await synced(r.pair, [[`d${n}`]]);
      await duringSwap(r, `d${n}`, () => rm(r.pair.l(`d${n}`), { recursive: true }));
    }));

  test(`4: a move over a directory whose subdirectory is swapped for a link to a root-only dir removes nothing there (${ROUNDS[mode]} rounds)`, () =>
    race(mode, async (r, n) => {
      await synced(r.pair, [[`a${n}`], [`a${n}/moved`, 'moved'], [`d${n}`]]);
      // rename(2) of a directory onto an empty one; on the right the target is not empty.
      await duringSwap(r, `d${n}`, () => rename(r.pair.l(`a${n}`), r.pair.l(`d${n}`)));
    }));

  test(`5: a move into a directory swapped for a link to a root-only dir puts nothing there (${ROUNDS[mode]} rounds)`, () =>
    race(mode, async ({ pair, canaries, exchanger }, n) => {
      const [file, dir, link] = [`a${n}`, `d${n}`, `x-lnk${n}`];
      await synced(pair, [[file, `moved ${n}`], [dir]]);
      const before = await pair.appliedFromLeft();
      await attacker.symlink(canaries.dir, pair.r(link));
      const loop = await exchanger.loop(pair.r(), dir, link);
      try {
        await pair.leftChange(before, () => rename(pair.l(file), pair.l(`${dir}/b`)), () => gone(pair.r(file)));
      } finally {
        // The loop holds the lock of w/ on the right most of the time: everything there waits until it stops.
        await loop.stop();
        await exchanger.restore(pair.r(), dir, link);
      }
      await pair.barrier('leftToRight');
    }));
});
