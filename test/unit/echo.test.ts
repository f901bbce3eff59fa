import { describe, expect, test } from 'vitest';
import { ECHO_TTL_MS, EchoLedger, sameAsWritten, type Expectation } from '../../src/core/echo.js';
import type { Action, Side, Stat } from '../../src/core/types.js';
import { described } from '../support/table.js';


const S: Stat = { type: 'file', ino: 10, size: 100, mtimeMs: 1_000.25, mode: 0o644 };
/** The same content as the other side reports it: another inode. */
const S_THERE: Stat = { ...S, ino: 777 };
const D: Stat = { type: 'dir', ino: 20, size: 4096, mtimeMs: 1_000, mode: 0o755 };
const L: Stat = { type: 'symlink', ino: 30, size: 5, mtimeMs: 1_000, mode: 0o777 };

const written = (path: string, stat: Stat = S): Expectation => ({ kind: 'written', path, stat });
const removed = (path: string): Expectation => ({ kind: 'removed', path });
const movedIn = (from: string, path: string, stat: Stat = S): Expectation => ({ kind: 'movedIn', path, from, stat });
const rsync = (path: string, stat: Stat = S_THERE): Action => ({ kind: 'rsync', path, stat });
const del = (path: string, stat: Stat = S_THERE): Action => ({ kind: 'delete', path, stat });
const move = (from: string, to: string, stat: Stat = S_THERE): Action => ({ kind: 'move', from, to, stat });

type Step =
  | { expect: Expectation; side?: Side; at: number }
  | { report: Action; side?: Side; at: number; echo: boolean }
  | { cancel: string; side?: Side }
  | { size: number };

describe('EchoLedger', () => {
  test.each(described<{ description: string; steps: Step[]; ttlMs?: number }>([
    {
      description: 'written then removed before the write was reported: both reports are echoes, in order',
      steps: [
        { expect: written('a'), at: 0 },
        { expect: removed('a'), at: 100 },
        { report: rsync('a'), at: 150, echo: true },
        { size: 2 },
        { report: del('a'), at: 200, echo: true },
        { size: 1 },
      ],
    },
    {
      description: 'written then removed, and only the delete is reported (the side saw both at once): the write expectation goes with it',
      steps: [
        { expect: written('a'), at: 0 },
        { expect: removed('a'), at: 100 },
        { report: del('a'), at: 200, echo: true },
        { size: 1 },
        { report: rsync('a'), at: 300, echo: false },
      ],
    },
    {
      description: 'a report that matches none of several expectations is a real change and retires them all',
      steps: [
        { expect: written('a'), at: 0 },
        { expect: removed('a'), at: 100 },
        { report: rsync('a', { ...S_THERE, size: 5 }), at: 150, echo: false },
        { size: 0 },
        { report: del('a'), at: 200, echo: false },
      ],
    },
    {
      description: 'cancel drops only the latest expectation of the path (the change that failed)',
      steps: [{ expect: written('a'), at: 0 }, { expect: removed('a'), at: 10 }, { cancel: 'a' }, { size: 1 }, { report: rsync('a'), at: 20, echo: true }],
    },
    {
      description: 'an rsync echo with the same stat is dropped',
      steps: [{ expect: written('a'), at: 0 }, { report: rsync('a'), at: 500, echo: true }],
    },
    {
      description: 'a sub-millisecond mtime difference (float rounding) is still the echo',
      steps: [{ expect: written('a'), at: 0 }, { report: rsync('a', { ...S, mtimeMs: S.mtimeMs + 0.0004 }), at: 500, echo: true }],
    },
    {
      description: 'a different mtime is not an echo and retires the expectation',
      steps: [
        { expect: written('a'), at: 0 },
        { report: rsync('a', { ...S, mtimeMs: 2_000 }), at: 500, echo: false },
        { report: rsync('a'), at: 600, echo: false },
        { size: 0 },
      ],
    },
    {
      description: 'a different size is not an echo and retires the expectation',
      steps: [
        { expect: written('a'), at: 0 },
        { report: rsync('a', { ...S, size: 101 }), at: 500, echo: false },
        { report: rsync('a'), at: 600, echo: false },
      ],
    },
    {
      description: 'a different mode is not an echo and retires the expectation',
      steps: [
        { expect: written('a'), at: 0 },
        { report: rsync('a', { ...S, mode: 0o600 }), at: 500, echo: false },
        { report: rsync('a'), at: 600, echo: false },
      ],
    },
    {
      description: 'a different type is not an echo',
      steps: [{ expect: written('a'), at: 0 }, { report: rsync('a', { ...S, type: 'symlink' }), at: 500, echo: false }],
    },
    {
      description: 'a genuine edit 1 s after the write (different mtime) is propagated',
      steps: [
        { expect: written('a'), at: 0 },
        { report: rsync('a'), at: 300, echo: true },
        { report: rsync('a', { ...S, mtimeMs: S.mtimeMs + 1_000 }), at: 1_300, echo: false },
      ],
    },
    {
      description: 'the echo is still recognised just before the TTL',
      steps: [{ expect: written('a'), at: 0 }, { report: rsync('a'), at: ECHO_TTL_MS - 1, echo: true }],
    },
    {
      description: 'the expectation expires after the TTL',
      steps: [{ expect: written('a'), at: 0 }, { report: rsync('a'), at: ECHO_TTL_MS, echo: false }, { size: 0 }],
    },
    {
      description: 'a custom TTL is honoured',
      ttlMs: 100,
      steps: [{ expect: written('a'), at: 0 }, { expect: written('b'), at: 0 }, { report: rsync('a'), at: 99, echo: true }, { report: rsync('b'), at: 100, echo: false }],
    },
    {
      description: 'an expectation renewed later lives from its renewal',
      ttlMs: 100,
      steps: [{ expect: written('a'), at: 0 }, { expect: written('a'), at: 80 }, { report: rsync('a'), at: 150, echo: true }],
    },
    {
      description: 'a report on another path is not an echo and leaves the expectation alone',
      steps: [{ expect: written('a'), at: 0 }, { report: rsync('b'), at: 100, echo: false }, { report: rsync('a'), at: 200, echo: true }],
    },
    {
      description: "the other side's table is separate",
      steps: [
        { expect: written('a'), side: 'left', at: 0 },
        { report: rsync('a'), side: 'right', at: 100, echo: false },
        { report: rsync('a'), side: 'left', at: 200, echo: true },
      ],
    },
    {
      description: 'a later expectation for the same path replaces the earlier one',
      steps: [
        { expect: written('a'), at: 0 },
        { expect: written('a', { ...S, size: 5 }), at: 10 },
        { report: rsync('a', { ...S, size: 5 }), at: 100, echo: true },
        { size: 1 },
      ],
    },
    {
      description: 'a cancelled expectation is gone',
      steps: [{ expect: written('a'), at: 0 }, { cancel: 'a' }, { size: 0 }, { report: rsync('a'), at: 100, echo: false }],
    },
    {
      description: 'a DELETE after a helper delete is the echo',
      steps: [{ expect: removed('a'), at: 0 }, { report: del('a'), at: 100, echo: true }],
    },
    {
      description: 'an RSYNC after a helper delete is a real re-creation, and retires the expectation',
      steps: [{ expect: removed('a'), at: 0 }, { report: rsync('a'), at: 100, echo: false }, { report: del('a'), at: 200, echo: false }],
    },
    {
      description: 'a DELETE where a write was expected is a real delete',
      steps: [{ expect: written('a'), at: 0 }, { report: del('a'), at: 100, echo: false }],
    },
    {
      description: 'a MOVE echo: moved in at the destination and removed at the origin',
      steps: [{ expect: movedIn('a', 'b'), at: 0 }, { expect: removed('a'), at: 0 }, { report: move('a', 'b'), at: 100, echo: true }],
    },
    {
      description: 'a MOVE echo reported as DELETE of the origin and RSYNC of the destination',
      steps: [
        { expect: movedIn('a', 'b'), at: 0 },
        { expect: removed('a'), at: 0 },
        { report: del('a'), at: 100, echo: true },
        { report: rsync('b'), at: 100, echo: true },
      ],
    },
    {
      description: 'a MOVE of a directory is an echo whatever its size and mtime',
      steps: [
        { expect: movedIn('d', 'e', D), at: 0 },
        { expect: removed('d'), at: 0 },
        { report: move('d', 'e', { ...D, ino: 5, size: 8192, mtimeMs: 9_999 }), at: 100, echo: true },
      ],
    },
    {
      description: 'a MOVE without the origin removed is not an echo',
      steps: [{ expect: movedIn('a', 'b'), at: 0 }, { report: move('a', 'b'), at: 100, echo: false }],
    },
    {
      description: 'a MOVE from another origin onto the expected destination is not an echo',
      steps: [{ expect: movedIn('a', 'b'), at: 0 }, { expect: removed('a'), at: 0 }, { report: move('c', 'b'), at: 100, echo: false }],
    },
    {
      description: 'a MOVE whose content changed since is not an echo (the edit must reach the other side)',
      steps: [
        { expect: movedIn('a', 'b'), at: 0 },
        { expect: removed('a'), at: 0 },
        { report: move('a', 'b', { ...S_THERE, size: 150, mtimeMs: 3_000 }), at: 100, echo: false },
      ],
    },
    {
      description: 'a MOVE onto a freshly written path with that content is an echo when the origin was removed',
      steps: [{ expect: written('b'), at: 0 }, { expect: removed('a'), at: 0 }, { report: move('a', 'b'), at: 100, echo: true }],
    },
    {
      description: 'a directory echo compares type and mode only',
      steps: [{ expect: written('d', D), at: 0 }, { report: rsync('d', { ...D, ino: 3, size: 8192, mtimeMs: 5 }), at: 100, echo: true }],
    },
    {
      description: 'a directory with another mode is not an echo',
      steps: [{ expect: written('d', D), at: 0 }, { report: rsync('d', { ...D, mode: 0o700 }), at: 100, echo: false }],
    },
    {
      description: 'a symlink echo ignores the mode',
      steps: [{ expect: written('l', L), at: 0 }, { report: rsync('l', { ...L, mode: 0o755 }), at: 100, echo: true }],
    },
    {
      description: 'a symlink with another target length is not an echo',
      steps: [{ expect: written('l', L), at: 0 }, { report: rsync('l', { ...L, size: 6 }), at: 100, echo: false }],
    },
    {
      description: 'size counts both sides',
      steps: [{ expect: written('a'), side: 'left', at: 0 }, { expect: written('a'), at: 0 }, { expect: removed('b'), at: 0 }, { size: 3 }],
    },
  ]))('%s', (_description, { steps, ttlMs }) => {
    const ledger = ttlMs === undefined ? new EchoLedger() : new EchoLedger(ttlMs);
    steps.forEach((step, i) => {
      if ('expect' in step) ledger.expect(step.side ?? 'right', step.expect, step.at);
      else if ('report' in step) expect(ledger.isEcho(step.side ?? 'right', step.report, step.at), `step ${i}`).toBe(step.echo);
      else if ('cancel' in step) ledger.cancel(step.side ?? 'right', step.cancel);
      else expect(ledger.size, `step ${i}`).toBe(step.size);
    });
  });
});

describe('sameAsWritten', () => {
  test.each(described<{ description: string; expected: Stat; actual: Stat; same: boolean }>([
    { description: 'identical but for the inode', expected: S, actual: S_THERE, same: true },
    { description: 'mtime within a millisecond', expected: S, actual: { ...S, mtimeMs: S.mtimeMs - 0.9 }, same: true },
    { description: 'mtime a millisecond off', expected: S, actual: { ...S, mtimeMs: S.mtimeMs + 1 }, same: false },
    { description: 'size', expected: S, actual: { ...S, size: 0 }, same: false },
    { description: 'mode of a file', expected: S, actual: { ...S, mode: 0o755 }, same: false },
    { description: 'type', expected: S, actual: { ...S, type: 'other' }, same: false },
    { description: 'directory size and mtime', expected: D, actual: { ...D, size: 0, mtimeMs: 0 }, same: true },
    { description: 'directory mode', expected: D, actual: { ...D, mode: 0o2755 }, same: false },
    { description: 'symlink mode', expected: L, actual: { ...L, mode: 0 }, same: true },
    { description: 'symlink mtime', expected: L, actual: { ...L, mtimeMs: 2_000 }, same: false },
  ]))('%s', (_description, { expected, actual, same }) => {
    expect(sameAsWritten(expected, actual)).toBe(same);
  });
});
