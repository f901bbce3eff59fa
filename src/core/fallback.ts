/**
 * What the brain does when a target's helper refuses a MOVE or a DELETE
 * (`FAIL <id> <code>`, protocol.ts). The fallbacks move data with rsync, so
 * only a refusal that says what the target holds may start one:
 *
 * - DELETE `changed` / `notempty`: the target holds a version the source
 *   never had (edited there, or a directory that gained entries there):
 *   copy it back to the source rather than lose it.
 * - DELETE `missing`: already gone; nothing to do.
 * - DELETE `unsafe` (a symlinked parent, psync's own name, a path the
 *   helper will not touch) and every other code: nothing is sent anywhere.
 *   A refused path is exactly the one a copy-back must not follow: with
 *   `L/lnk -> /root`, copying `lnk/secret` back made rsync read through the
 *   link. The refusal is logged and counted.
 * - MOVE `unsafe`: no resend and no delete of the old name, for the same
 *   reason (the source's `to` or `from` may be reached through a link).
 * - MOVE `missing` / `changed` (the old name is gone, or was edited there):
 *   send the destination with rsync, and keep what the target holds under
 *   the old name; when it was edited there, send that back too: the
 *   target's own report of the edit may have lost a conflict to the moved
 *   file (both sides changed the name) and been dropped, and the edit
 *   would stay on the target alone.
 * - MOVE with any other code: send the destination, and delete the stale
 *   copy the target still holds under the old name (that DELETE is checked
 *   against the moved entry's stat like any other).
 */

import type { HelperFailure } from './protocol.js';

export type RefusalFallback =
  /** Nothing to do: the DELETE found the entry already gone. */
  | { readonly kind: 'done' }
  /** Nothing is sent: log the refusal and count it. */
  | { readonly kind: 'none' }
  /** DELETE: rsync the path from the target back to the source. */
  | { readonly kind: 'copyBack' }
  /**
   * MOVE: rsync the destination from the source; `deleteOld`: then DELETE
   * the old name on the target; `sendOldBack`: rsync the old name from the
   * target back to the source.
   */
  | { readonly kind: 'resend'; readonly deleteOld: boolean; readonly sendOldBack: boolean };

export function fallbackAfterRefusal(kind: 'move' | 'delete', code: HelperFailure): RefusalFallback {
  if (kind === 'delete') {
    if (code === 'missing') return { kind: 'done' };
    if (code === 'changed' || code === 'notempty') return { kind: 'copyBack' };
    return { kind: 'none' };
  }
  if (code === 'unsafe') return { kind: 'none' };
  return { kind: 'resend', deleteOld: code !== 'missing' && code !== 'changed', sendOldBack: code === 'changed' };
}
