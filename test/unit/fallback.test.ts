import { describe, expect, test } from 'vitest';
import { fallbackAfterRefusal, type RefusalFallback } from '../../src/core/fallback.js';
import type { HelperFailure } from '../../src/core/protocol.js';
import { described } from '../support/table.js';

describe('fallbackAfterRefusal', () => {
  test.each(described<{ description: string; kind: 'move' | 'delete'; code: HelperFailure; fallback: RefusalFallback }>([
    { description: 'DELETE changed on the target: copy the target version back', kind: 'delete', code: 'changed', fallback: { kind: 'copyBack' } },
    { description: 'DELETE of a directory that gained entries there: copy it back', kind: 'delete', code: 'notempty', fallback: { kind: 'copyBack' } },
    { description: 'DELETE already gone: done', kind: 'delete', code: 'missing', fallback: { kind: 'done' } },
    // Issue 8, attack 2: `DELETE lnk2/secret` with `lnk2 -> /root` was refused as unsafe, then copied back through the link.
    { description: 'DELETE refused as unsafe: nothing is copied back', kind: 'delete', code: 'unsafe', fallback: { kind: 'none' } },
    { description: 'DELETE that failed (EIO, EACCES): nothing is copied back', kind: 'delete', code: 'error', fallback: { kind: 'none' } },
    { description: 'DELETE refused because something exists: nothing is copied back', kind: 'delete', code: 'exists', fallback: { kind: 'none' } },
    { description: 'MOVE refused as unsafe: no resend, no delete', kind: 'move', code: 'unsafe', fallback: { kind: 'none' } },
    { description: 'MOVE whose source is gone there: send the destination, nothing to delete', kind: 'move', code: 'missing', fallback: { kind: 'resend', deleteOld: false, sendOldBack: false } },
    // Fuzz (full mix), seed 505 remote round 2: both sides made c, the right's won and was renamed; the left's c, its report dropped as the loser, stayed on the left alone.
    { description: 'MOVE whose source was edited there: send the destination, keep the edit and send it back', kind: 'move', code: 'changed', fallback: { kind: 'resend', deleteOld: false, sendOldBack: true } },
    { description: 'MOVE onto an existing entry: send the destination, delete the stale old name', kind: 'move', code: 'exists', fallback: { kind: 'resend', deleteOld: true, sendOldBack: false } },
    { description: 'MOVE onto a non-empty directory: send the destination, delete the stale old name', kind: 'move', code: 'notempty', fallback: { kind: 'resend', deleteOld: true, sendOldBack: false } },
    { description: 'MOVE that failed: send the destination, delete the stale old name', kind: 'move', code: 'error', fallback: { kind: 'resend', deleteOld: true, sendOldBack: false } },
  ]))('%s', (_description, { kind, code, fallback }) => {
    expect(fallbackAfterRefusal(kind, code)).toEqual(fallback);
  });
});
