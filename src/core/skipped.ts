/**
 * Directories a side cannot read (its filter's SKIPPED frames): what is in
 * them is unknown, never gone. For the start-up reconcile, every archived
 * entry below such a directory that the side's scan lacks is taken as
 * unchanged there (the agreed version, with that side's identity), so the
 * reconcile neither deletes it on the other side nor copies it back.
 */

import { ancestorsOf } from './paths.js';
import type { Side } from './types.js';
import type { Agreed, Observed } from './version.js';

export function unknownAsAgreed(
  agreed: ReadonlyMap<string, Agreed>,
  scan: ReadonlyMap<string, Observed>,
  skipped: ReadonlySet<string>,
  side: Side,
): Map<string, Observed> {
  const out = new Map(scan);
  if (skipped.size === 0) return out;
  for (const [path, entry] of agreed) {
    if (out.has(path) || !ancestorsOf(path).some((dir) => skipped.has(dir))) continue;
    const { left, right, ...version } = entry;
    out.set(path, { ...version, ...(side === 'left' ? left : right) });
  }
  return out;
}
