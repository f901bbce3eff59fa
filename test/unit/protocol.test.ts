import { describe, expect, test } from 'vitest';
import { ProtocolError, SafetyError } from '../../src/core/errors.js';
import { decodeFrame, encodeFrame, type Frame } from '../../src/core/frame.js';
import {
  decodeAction,
  decodeBirth,
  decodeEntry,
  decodeLeftover,
  decodeSkipped,
  decodeHelperReply,
  decodeHelperRequest,
  decodeReady,
  decodeStat,
  encodeAction,
  encodeBirth,
  encodeEntry,
  encodeLeftover,
  encodeSkipped,
  encodeHelperReply,
  encodeHelperRequest,
  encodeReady,
  encodeStat,
  isActionVerb,
  isHelperRequestVerb,
  NO_STAT,
  parsePairIds,
  type HelperReply,
  type HelperRequest,
  type HelperRequestKind,
  type ReadyReport,
  type ScanEntry,
} from '../../src/core/protocol.js';
import type { Action, Stat } from '../../src/core/types.js';
import { described } from '../support/table.js';


const file: Stat = { type: 'file', ino: 1234, size: 42, mtimeMs: 1_700_000_000_123.25, mode: 0o644 };
const dir: Stat = { type: 'dir', ino: 99, size: 4096, mtimeMs: 1_700_000_000_000, mode: 0o2775 };
const link: Stat = { type: 'symlink', ino: 7, size: 11, mtimeMs: 0, mode: 0o777 };
const statArgs = ['file', '1234', '42', '1700000000123.25', '644'];

/** Through the whole wire: encode, frame, unframe, decode. */
const overTheWire = ({ verb, args }: { verb: string; args: string[] }): Frame =>
  decodeFrame(encodeFrame({ seq: 1, verb, args }).slice(0, -1));
const frame = (verb: string, args: string[]): Frame => ({ seq: 1, verb, args });

describe('actions round trip', () => {
  test.each(described<{ description: string; action: Action; verb: string }>([
    { description: 'RSYNC of a file', action: { kind: 'rsync', path: 'a/b.txt', stat: file }, verb: 'RSYNC' },
    { description: 'RSYNC of a directory with setgid', action: { kind: 'rsync', path: 'd', stat: dir }, verb: 'RSYNC' },
    { description: 'RSYNC of a symlink', action: { kind: 'rsync', path: 'l', stat: link }, verb: 'RSYNC' },
    { description: 'RSYNC of a name with spaces and a newline', action: { kind: 'rsync', path: 'a b/c\nd', stat: file }, verb: 'RSYNC' },
    { description: 'RSYNC of a non-UTF-8 name', action: { kind: 'rsync', path: 'x/\udcff\udcfe', stat: file }, verb: 'RSYNC' },
    { description: 'RSYNC of a name with a leading dash', action: { kind: 'rsync', path: '-rf', stat: file }, verb: 'RSYNC' },
    { description: 'MOVE', action: { kind: 'move', from: 'a', to: 'd/b', stat: file }, verb: 'MOVE' },
    { description: 'MOVE onto a file it replaces', action: { kind: 'move', from: 'a', to: 'b', stat: file, replaces: { ...file, size: 1 } }, verb: 'MOVE' },
    { description: 'MOVE of a directory to a name with %', action: { kind: 'move', from: 'd', to: '100%', stat: dir }, verb: 'MOVE' },
    { description: 'RSYNC keeps every digit of a sub-millisecond mtime', action: { kind: 'rsync', path: 'm', stat: { ...file, mtimeMs: 1_700_000_000_123.4567 } }, verb: 'RSYNC' },
    { description: 'DELETE', action: { kind: 'delete', path: 'a/b.txt', stat: file }, verb: 'DELETE' },
    { description: 'RSYNC with the previous version', action: { kind: 'rsync', path: 'a', stat: file, prev: { ...file, size: 3, mtimeMs: 17.5 } }, verb: 'RSYNC' },
    { description: 'DELETE with a zero stat', action: { kind: 'delete', path: 'z', stat: { type: 'other', ino: 0, size: 0, mtimeMs: 0, mode: 0 } }, verb: 'DELETE' },
  ]))('%s', (_description, { action, verb }) => {
    const encoded = encodeAction(action);
    expect(encoded.verb).toBe(verb);
    expect(isActionVerb(encoded.verb)).toBe(true);
    expect(decodeAction(overTheWire(encoded))).toEqual(action);
  });

  test('the stat is five arguments with the mode in octal', () => {
    expect(encodeStat(file)).toEqual(statArgs);
    expect(encodeStat(dir)).toEqual(['dir', '99', '4096', '1700000000000', '2775']);
    expect(decodeStat(['x', ...statArgs], 1)).toEqual(file);
  });

  test.each(described<{ description: string; verb: string; expected: boolean }>([
    { description: 'RSYNC is an action', verb: 'RSYNC', expected: true },
    { description: 'HEARTBEAT is not', verb: 'HEARTBEAT', expected: false },
    { description: 'lower-case is not', verb: 'move', expected: false },
  ]))('isActionVerb: %s', (_description, { verb, expected }) => {
    expect(isActionVerb(verb)).toBe(expected);
  });
});

describe('decodeAction rejects', () => {
  const withStat = (type: string, ino: string, size: string, mtime: string, mode: string): string[] => [type, ino, size, mtime, mode];

  test.each(described<{ description: string; verb: string; args: string[]; error: typeof ProtocolError | typeof SafetyError }>([
    { description: 'RSYNC with too few arguments', verb: 'RSYNC', args: ['a', ...statArgs.slice(0, 4)], error: ProtocolError },
    { description: 'RSYNC with too many arguments', verb: 'RSYNC', args: ['a', ...statArgs, 'x'], error: ProtocolError },
    { description: 'RSYNC with half a previous version', verb: 'RSYNC', args: ['a', ...statArgs, 'file', '1', '2'], error: ProtocolError },
    { description: 'RSYNC with a bad previous version', verb: 'RSYNC', args: ['a', ...statArgs, ...withStat('file', '1', '-2', '3', '644')], error: ProtocolError },
    { description: 'RSYNC of a name with a raw space (split in two)', verb: 'RSYNC', args: ['my', 'file', ...statArgs], error: ProtocolError },
    { description: 'RSYNC without arguments', verb: 'RSYNC', args: [], error: ProtocolError },
    { description: 'MOVE with one path', verb: 'MOVE', args: ['a', ...statArgs], error: ProtocolError },
    { description: 'DELETE with two paths', verb: 'DELETE', args: ['a', 'b', ...statArgs], error: ProtocolError },
    { description: 'an unknown entry type', verb: 'RSYNC', args: ['a', ...withStat('fifo', '1', '2', '3', '644')], error: ProtocolError },
    { description: 'an upper-case entry type', verb: 'RSYNC', args: ['a', ...withStat('FILE', '1', '2', '3', '644')], error: ProtocolError },
    { description: 'a negative inode', verb: 'RSYNC', args: ['a', ...withStat('file', '-1', '2', '3', '644')], error: ProtocolError },
    { description: 'a non-numeric inode', verb: 'RSYNC', args: ['a', ...withStat('file', 'abc', '2', '3', '644')], error: ProtocolError },
    { description: 'an empty size', verb: 'RSYNC', args: ['a', ...withStat('file', '1', '', '3', '644')], error: ProtocolError },
    { description: 'a negative size', verb: 'RSYNC', args: ['a', ...withStat('file', '1', '-5', '3', '644')], error: ProtocolError },
    { description: 'an infinite mtime', verb: 'RSYNC', args: ['a', ...withStat('file', '1', '2', 'Infinity', '644')], error: ProtocolError },
    { description: 'a NaN mtime', verb: 'RSYNC', args: ['a', ...withStat('file', '1', '2', 'NaN', '644')], error: ProtocolError },
    { description: 'a mode with the digit 8', verb: 'RSYNC', args: ['a', ...withStat('file', '1', '2', '3', '648')], error: ProtocolError },
    { description: 'an empty mode', verb: 'RSYNC', args: ['a', ...withStat('file', '1', '2', '3', '')], error: ProtocolError },
    { description: 'a mode with a 0o prefix', verb: 'RSYNC', args: ['a', ...withStat('file', '1', '2', '3', '0o644')], error: ProtocolError },
    { description: 'a negative mode', verb: 'RSYNC', args: ['a', ...withStat('file', '1', '2', '3', '-644')], error: ProtocolError },
    { description: 'a mode of seven digits', verb: 'RSYNC', args: ['a', ...withStat('file', '1', '2', '3', '1000644')], error: ProtocolError },
    { description: 'an unknown verb', verb: 'COPY', args: ['a', ...statArgs], error: ProtocolError },
    { description: 'a non-action verb', verb: 'HEARTBEAT', args: ['1'], error: ProtocolError },
    { description: 'a lower-case verb', verb: 'rsync', args: ['a', ...statArgs], error: ProtocolError },
    { description: 'RSYNC of ../x', verb: 'RSYNC', args: ['../x', ...statArgs], error: SafetyError },
    { description: 'RSYNC of /etc/passwd', verb: 'RSYNC', args: ['/etc/passwd', ...statArgs], error: SafetyError },
    { description: 'RSYNC of a/../../b', verb: 'RSYNC', args: ['a/../../b', ...statArgs], error: SafetyError },
    { description: 'RSYNC of the root', verb: 'RSYNC', args: ['', ...statArgs], error: SafetyError },
    { description: 'RSYNC of a path with NUL', verb: 'RSYNC', args: ['a\0b', ...statArgs], error: SafetyError },
    { description: 'DELETE of ..', verb: 'DELETE', args: ['..', ...statArgs], error: SafetyError },
    { description: 'DELETE of the root', verb: 'DELETE', args: ['', ...statArgs], error: SafetyError },
    { description: 'DELETE of ./a', verb: 'DELETE', args: ['./a', ...statArgs], error: SafetyError },
    { description: 'MOVE from outside', verb: 'MOVE', args: ['../x', 'a', ...statArgs], error: SafetyError },
    { description: 'MOVE to outside', verb: 'MOVE', args: ['a', '/etc/passwd', ...statArgs], error: SafetyError },
    { description: 'MOVE to a/../../b', verb: 'MOVE', args: ['a', 'a/../../b', ...statArgs], error: SafetyError },
    { description: 'MOVE to the root', verb: 'MOVE', args: ['a', '', ...statArgs], error: SafetyError },
    { description: 'MOVE onto itself', verb: 'MOVE', args: ['a/b', 'a/b', ...statArgs], error: ProtocolError },
    // psync's own names, whatever the entry's type (issue 8, attack 6).
    { description: 'RSYNC of .psync as a directory', verb: 'RSYNC', args: ['.psync', ...withStat('dir', '1', '2', '3', '755')], error: SafetyError },
    { description: 'RSYNC of .psync as a symlink', verb: 'RSYNC', args: ['.psync', ...withStat('symlink', '1', '2', '3', '777')], error: SafetyError },
    { description: 'RSYNC of .psync as a file', verb: 'RSYNC', args: ['.psync', ...statArgs], error: SafetyError },
    { description: 'RSYNC of .psync/lock', verb: 'RSYNC', args: ['.psync/lock', ...statArgs], error: SafetyError },
    { description: 'RSYNC of a scratch name', verb: 'RSYNC', args: ['w/x.1-1-abcdef.psync.ignore', ...statArgs], error: SafetyError },
    { description: 'RSYNC below a scratch directory', verb: 'RSYNC', args: ['d.1-2-abcdef.psync.ignore/f', ...statArgs], error: SafetyError },
    { description: 'MOVE into .psync', verb: 'MOVE', args: ['w/victim', '.psync/victim', ...statArgs], error: SafetyError },
    { description: 'MOVE out of .psync', verb: 'MOVE', args: ['.psync/lock', 'w/stolen', ...statArgs], error: SafetyError },
    { description: 'MOVE onto .psync itself', verb: 'MOVE', args: ['a', '.psync', ...statArgs], error: SafetyError },
    { description: 'MOVE to a scratch name', verb: 'MOVE', args: ['a', 'b.psync.ignore', ...statArgs], error: SafetyError },
    { description: 'DELETE of .psync/lock', verb: 'DELETE', args: ['.psync/lock', ...statArgs], error: SafetyError },
    { description: 'DELETE of .psync as a directory', verb: 'DELETE', args: ['.psync', ...withStat('dir', '1', '2', '3', '755')], error: SafetyError },
    { description: 'DELETE of .psync as a symlink', verb: 'DELETE', args: ['.psync', ...withStat('symlink', '1', '2', '3', '777')], error: SafetyError },
  ]))('%s', (_description, { verb, args, error }) => {
    expect(() => decodeAction(frame(verb, args))).toThrow(error);
  });

  test.each(described<{ description: string; path: string }>([
    { description: 'a .psync below the root is an ordinary name', path: 'a/.psync' },
    { description: 'a name that starts with .psync', path: '.psyncrc' },
    { description: 'a conflict copy', path: 'a.psync-conflict-20260101-000000.txt' },
  ]))('accepts %s', (_description, { path }) => {
    expect(decodeAction(frame('RSYNC', [path, ...statArgs]))).toMatchObject({ kind: 'rsync', path });
  });
});

describe('helper requests', () => {
  test.each(described<{ description: string; request: HelperRequest }>([
    { description: 'MOVE', request: { id: 1, kind: 'move', from: 'a b', to: 'd/\udcff', expect: file } },
    { description: 'MOVE with the file it replaces', request: { id: 1, kind: 'move', from: 'a', to: 'b', expect: file, replaces: link } },
    { description: 'MOVE of a directory', request: { id: 0, kind: 'move', from: 'd', to: 'e/f', expect: dir } },
    { description: 'DELETE', request: { id: 123_456_789_012_345, kind: 'delete', path: 'x\ny', expect: file } },
    { description: 'RESOLVE with nothing expected', request: { id: 2, kind: 'resolve', dir: '.psync/replaced/12-3', path: 'n\u00e9w', expected: [] } },
    { description: 'RESOLVE with two expected versions', request: { id: 3, kind: 'resolve', dir: '.psync/replaced/12-4', path: 'a/b', expected: [file, link] } },
    { description: 'PURGE', request: { id: 4, kind: 'purge', dir: '.psync/replaced/12-4' } },
    { description: 'STAT', request: { id: 5, kind: 'stat', path: 'a b/c\nd' } },
    { description: 'STAT of a non-UTF-8 name', request: { id: 6, kind: 'stat', path: 'x/\udcff' } },
    { description: 'HASH', request: { id: 7, kind: 'hash', path: 'd/-rf' } },
    { description: 'UNTEMP', request: { id: 10, kind: 'untemp', path: 'd/big.bin' } },
    { description: 'MARK with the shortest pair id', request: { id: 8, kind: 'mark', pairId: '0123abcd' } },
    { description: 'MARK with the longest pair id', request: { id: 9, kind: 'mark', pairId: 'f'.repeat(64) } },
  ]))('round trip: %s', (_description, { request }) => {
    const encoded = encodeHelperRequest(request);
    expect(encoded.verb).toBe(request.kind.toUpperCase());
    expect(isHelperRequestVerb(encoded.verb)).toBe(true);
    expect(decodeHelperRequest(overTheWire(encoded))).toEqual(request);
  });

  test.each(described<{ description: string; verb: string; args: string[]; error: typeof ProtocolError | typeof SafetyError }>([
    { description: 'a negative id', verb: 'DELETE', args: ['-1', 'a', ...statArgs], error: ProtocolError },
    { description: 'a non-numeric id', verb: 'DELETE', args: ['x', 'a', ...statArgs], error: ProtocolError },
    { description: 'an empty id', verb: 'DELETE', args: ['', 'a', ...statArgs], error: ProtocolError },
    { description: 'an id of 16 digits', verb: 'DELETE', args: ['1234567890123456', 'a', ...statArgs], error: ProtocolError },
    { description: 'MOVE without its id', verb: 'MOVE', args: ['a', 'b', ...statArgs], error: ProtocolError },
    { description: 'DELETE with an extra argument', verb: 'DELETE', args: ['1', 'a', ...statArgs, 'x'], error: ProtocolError },
    { description: 'a bad stat', verb: 'DELETE', args: ['1', 'a', 'file', '1', '2', '3', '9'], error: ProtocolError },
    { description: 'an action verb helpers do not take', verb: 'RSYNC', args: ['1', 'a', ...statArgs], error: ProtocolError },
    { description: 'DELETE of /etc', verb: 'DELETE', args: ['1', '/etc', ...statArgs], error: SafetyError },
    { description: 'DELETE of the root', verb: 'DELETE', args: ['1', '', ...statArgs], error: SafetyError },
    { description: 'MOVE from ..', verb: 'MOVE', args: ['1', '..', 'a', ...statArgs], error: SafetyError },
    { description: 'MOVE to a/../../b', verb: 'MOVE', args: ['1', 'a', 'a/../../b', ...statArgs], error: SafetyError },
    { description: 'RESOLVE in a directory outside .psync/replaced', verb: 'RESOLVE', args: ['1', 'etc', 'a', '0'], error: ProtocolError },
    { description: 'RESOLVE in .psync/replaced/../..', verb: 'RESOLVE', args: ['1', '.psync/replaced/../..', 'a', '0'], error: ProtocolError },
    { description: 'RESOLVE of ../x', verb: 'RESOLVE', args: ['1', '.psync/replaced/1-1', '../x', '0'], error: SafetyError },
    { description: 'RESOLVE whose count disagrees with its stats', verb: 'RESOLVE', args: ['1', '.psync/replaced/1-1', 'a', '2', ...statArgs], error: ProtocolError },
    { description: 'RESOLVE with a count of 01', verb: 'RESOLVE', args: ['1', '.psync/replaced/1-1', 'a', '01', ...statArgs], error: ProtocolError },
    { description: 'RESOLVE with too many expected versions', verb: 'RESOLVE', args: ['1', '.psync/replaced/1-1', 'a', '5', ...Array<string[]>(5).fill(statArgs).flat()], error: ProtocolError },
    { description: 'PURGE of the replaced directory itself', verb: 'PURGE', args: ['1', '.psync/replaced'], error: ProtocolError },
    { description: 'PURGE of the root', verb: 'PURGE', args: ['1', ''], error: ProtocolError },
    { description: 'DELETE of .psync/lock', verb: 'DELETE', args: ['1', '.psync/lock', ...statArgs], error: SafetyError },
    { description: 'DELETE of .psync', verb: 'DELETE', args: ['1', '.psync', ...statArgs], error: SafetyError },
    { description: 'MOVE from .psync/lock', verb: 'MOVE', args: ['1', '.psync/lock', 'stolen', ...statArgs], error: SafetyError },
    { description: 'MOVE to .psync/planted', verb: 'MOVE', args: ['1', 'a', '.psync/planted', ...statArgs], error: SafetyError },
    { description: 'MOVE onto .psync', verb: 'MOVE', args: ['1', 'a', '.psync', ...statArgs], error: SafetyError },
    { description: 'MOVE of a scratch name', verb: 'MOVE', args: ['1', 'a.1-1-abc.psync.ignore', 'b', ...statArgs], error: SafetyError },
    { description: 'RESOLVE of a path under .psync', verb: 'RESOLVE', args: ['1', '.psync/replaced/1-1', '.psync/lock', '0'], error: SafetyError },
    { description: 'RESOLVE of a scratch name', verb: 'RESOLVE', args: ['1', '.psync/replaced/1-1', 'a.psync.ignore', '0'], error: SafetyError },
    { description: 'STAT without a path', verb: 'STAT', args: ['1'], error: ProtocolError },
    { description: 'STAT with two paths', verb: 'STAT', args: ['1', 'a', 'b'], error: ProtocolError },
    { description: 'STAT without an id', verb: 'STAT', args: ['a'], error: ProtocolError },
    { description: 'STAT of ..', verb: 'STAT', args: ['1', '..'], error: SafetyError },
    { description: 'STAT of a/../../b', verb: 'STAT', args: ['1', 'a/../../b'], error: SafetyError },
    { description: 'STAT of /etc/shadow', verb: 'STAT', args: ['1', '/etc/shadow'], error: SafetyError },
    { description: 'STAT of the root', verb: 'STAT', args: ['1', ''], error: SafetyError },
    { description: 'STAT of .psync/id', verb: 'STAT', args: ['1', '.psync/id'], error: SafetyError },
    { description: 'HASH of ../x', verb: 'HASH', args: ['1', '../x'], error: SafetyError },
    { description: 'HASH of .psync/lock', verb: 'HASH', args: ['1', '.psync/lock'], error: SafetyError },
    { description: 'HASH of a scratch name', verb: 'HASH', args: ['1', 'a.1-1-abc.psync.ignore'], error: SafetyError },
    { description: 'HASH with a stat', verb: 'HASH', args: ['1', 'a', ...statArgs], error: ProtocolError },
    { description: 'MARK with an upper-case pair id', verb: 'MARK', args: ['1', 'ABCDEF12'], error: ProtocolError },
    { description: 'MARK with a pair id of 7 digits', verb: 'MARK', args: ['1', 'abcdef1'], error: ProtocolError },
    { description: 'MARK with a pair id of 65 digits', verb: 'MARK', args: ['1', 'a'.repeat(65)], error: ProtocolError },
    { description: 'MARK with a path for a pair id', verb: 'MARK', args: ['1', '../../etc/passwd'], error: ProtocolError },
    { description: 'MARK with a newline in its pair id', verb: 'MARK', args: ['1', 'abcdef12\nabcdef13'], error: ProtocolError },
    { description: 'MARK without a pair id', verb: 'MARK', args: ['1'], error: ProtocolError },
    { description: 'UNTEMP of ../x', verb: 'UNTEMP', args: ['1', '../x'], error: SafetyError },
    { description: 'UNTEMP of .psync/lock', verb: 'UNTEMP', args: ['1', '.psync/lock'], error: SafetyError },
    { description: 'UNTEMP without a path', verb: 'UNTEMP', args: ['1'], error: ProtocolError },
  ]))('rejects %s', (_description, { verb, args, error }) => {
    expect(() => decodeHelperRequest(frame(verb, args))).toThrow(error);
  });
});

describe('helper replies', () => {
  test.each(described<{ description: string; reply: HelperReply; verb: string }>([
    { description: 'DONE', reply: { id: 5, ok: true, stat: file }, verb: 'DONE' },
    { description: 'DONE of a conflict', reply: { id: 5, ok: true, stat: file, conflict: { copy: 'a.psync-conflict-20260101-000000.txt', kept: 'replaced' } }, verb: 'DONE' },
    { description: 'FAIL changed', reply: { id: 6, ok: false, code: 'changed', message: 'a b changed since' }, verb: 'FAIL' },
    { description: 'FAIL with a multi-line message', reply: { id: 7, ok: false, code: 'error', message: 'EIO\nat line 2' }, verb: 'FAIL' },
    { description: 'FAIL with an empty message', reply: { id: 8, ok: false, code: 'notempty', message: '' }, verb: 'FAIL' },
    { description: 'FAIL unsafe', reply: { id: 9, ok: false, code: 'unsafe', message: '"../x"' }, verb: 'FAIL' },
  ]))('round trip: %s', (_description, { reply, verb }) => {
    const encoded = encodeHelperReply(reply);
    expect(encoded.verb).toBe(verb);
    expect(decodeHelperReply(overTheWire(encoded))).toEqual(reply);
  });

  const born: Stat = { ...file, birthMs: 1_700_000_000_001.5 };
  const sha = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

  test.each(described<{ description: string; kind: HelperRequestKind; reply: HelperReply; args: string[] }>([
    { description: 'STAT with a birth time', kind: 'stat', reply: { id: 1, ok: true, stat: born }, args: ['1', ...statArgs, '1700000000001.5'] },
    { description: 'STAT without one', kind: 'stat', reply: { id: 2, ok: true, stat: file }, args: ['2', ...statArgs, '-'] },
    { description: 'STAT of a symlink', kind: 'stat', reply: { id: 3, ok: true, stat: { ...link, birthMs: 5 } }, args: ['3', 'symlink', '7', '11', '0', '777', '5'] },
    { description: 'HASH', kind: 'hash', reply: { id: 4, ok: true, stat: file, hash: sha }, args: ['4', ...statArgs, sha] },
    { description: 'MARK', kind: 'mark', reply: { id: 5, ok: true, stat: NO_STAT }, args: ['5', 'other', '0', '0', '0', '0'] },
    { description: 'MOVE with a conflict', kind: 'move', reply: { id: 6, ok: true, stat: file, conflict: { copy: 'c', kept: 'written' } }, args: ['6', ...statArgs, 'c', 'written'] },
    { description: 'FAIL of a HASH', kind: 'hash', reply: { id: 7, ok: false, code: 'missing', message: 'gone' }, args: ['7', 'missing', 'gone'] },
  ]))('by kind, round trip: %s', (_description, { kind, reply, args }) => {
    const encoded = encodeHelperReply(reply, kind);
    expect(encoded.args).toEqual(args);
    expect(decodeHelperReply(overTheWire(encoded), kind)).toEqual(reply);
  });

  test.each(described<{ description: string; kind?: HelperRequestKind; args: string[]; error?: typeof ProtocolError | typeof SafetyError }>([
    { description: 'a HASH done without its hash', kind: 'hash', args: ['1', ...statArgs] },
    { description: 'a HASH done with a birth time for a hash', kind: 'hash', args: ['1', ...statArgs, '1700000000000'] },
    { description: 'a HASH done with an upper-case hash', kind: 'hash', args: ['1', ...statArgs, sha.toUpperCase()] },
    { description: 'a HASH done with a hash of 63 digits', kind: 'hash', args: ['1', ...statArgs, sha.slice(1)] },
    { description: 'a HASH done with a conflict', kind: 'hash', args: ['1', ...statArgs, 'c', 'written'] },
    { description: 'a STAT done without its birth time', kind: 'stat', args: ['1', ...statArgs] },
    { description: 'a STAT done with a hash', kind: 'stat', args: ['1', ...statArgs, sha] },
    { description: 'a STAT done with a negative birth time', kind: 'stat', args: ['1', ...statArgs, '-5'] },
    { description: 'a STAT done with a zero birth time', kind: 'stat', args: ['1', ...statArgs, '0'] },
    { description: 'a STAT done with an empty birth time', kind: 'stat', args: ['1', ...statArgs, ''] },
    { description: 'a STAT done with an exponent birth time', kind: 'stat', args: ['1', ...statArgs, '1e12'] },
    { description: 'a STAT done with an infinite birth time', kind: 'stat', args: ['1', ...statArgs, 'Infinity'] },
    { description: 'a STAT done with a hex birth time', kind: 'stat', args: ['1', ...statArgs, '0x10'] },
    { description: 'a DELETE done with a conflict', kind: 'delete', args: ['1', ...statArgs, 'c', 'written'] },
    { description: 'a MARK done with a birth time', kind: 'mark', args: ['1', ...statArgs, '-'] },
    { description: 'a MOVE done with a hash', kind: 'move', args: ['1', ...statArgs, sha] },
    { description: 'any DONE with a 7th argument that is neither', args: ['1', ...statArgs, 'xyz'] },
  ]))('by kind, rejects %s', (_description, { kind, args }) => {
    expect(() => decodeHelperReply(frame('DONE', args), kind)).toThrow(ProtocolError);
  });

  test('without a kind, a 7th argument of 64 hex digits is a hash, anything else a birth time', () => {
    expect(decodeHelperReply(frame('DONE', ['1', ...statArgs, sha]))).toEqual({ id: 1, ok: true, stat: file, hash: sha });
    expect(decodeHelperReply(frame('DONE', ['1', ...statArgs, '-']))).toEqual({ id: 1, ok: true, stat: file });
    expect(decodeHelperReply(frame('DONE', ['1', ...statArgs, '12.5']))).toEqual({ id: 1, ok: true, stat: { ...file, birthMs: 12.5 } });
  });

  test.each(described<{ description: string; verb: string; args: string[] }>([
    { description: 'an unknown failure code', verb: 'FAIL', args: ['1', 'oops', 'message'] },
    { description: 'an upper-case failure code', verb: 'FAIL', args: ['1', 'CHANGED', 'message'] },
    { description: 'FAIL without a message', verb: 'FAIL', args: ['1', 'changed'] },
    { description: 'FAIL with a bad id', verb: 'FAIL', args: ['one', 'changed', 'm'] },
    { description: 'DONE without a stat', verb: 'DONE', args: ['1'] },
    { description: 'DONE with a bad stat', verb: 'DONE', args: ['1', 'file', 'x', '2', '3', '644'] },
    { description: 'DONE with a bad id', verb: 'DONE', args: ['-1', ...statArgs] },
    { description: 'DONE with a conflict copy but no outcome', verb: 'DONE', args: ['1', ...statArgs, 'copy'] },
    { description: 'DONE with an unknown conflict outcome', verb: 'DONE', args: ['1', ...statArgs, 'copy', 'both'] },
    { description: 'an unknown verb', verb: 'OK', args: ['1', ...statArgs] },
  ]))('rejects %s', (_description, { verb, args }) => {
    expect(() => decodeHelperReply(frame(verb, args))).toThrow(ProtocolError);
  });

  test.each(described<{ description: string; copy: string }>([
    { description: 'a conflict copy under .psync', copy: '.psync/lock' },
    { description: 'a conflict copy named as a scratch name', copy: 'a.1-1-abc.psync.ignore' },
    { description: 'a conflict copy outside the root', copy: '../x' },
  ]))('rejects DONE with %s', (_description, { copy }) => {
    expect(() => decodeHelperReply(frame('DONE', ['1', ...statArgs, copy, 'written']))).toThrow(SafetyError);
  });
});

describe('the start-up scan: ENTRY and READY', () => {
  const born: Stat = { ...file, birthMs: 1_700_000_000_123.75 };

  test.each(described<{ description: string; entry: ScanEntry; birth: string }>([
    { description: 'a file with a birth time', entry: { path: 'a/b.txt', stat: born }, birth: '1700000000123.75' },
    { description: 'a file without one', entry: { path: 'a', stat: file }, birth: '-' },
    { description: 'a directory', entry: { path: 'd', stat: { ...dir, birthMs: 1 } }, birth: '1' },
    { description: 'a symlink', entry: { path: 'l', stat: link }, birth: '-' },
    { description: 'a non-UTF-8 name with a space and a newline', entry: { path: 'x y/\udcff\n', stat: born }, birth: '1700000000123.75' },
    { description: 'a .psync below the root (an ordinary name)', entry: { path: 'a/.psync', stat: file }, birth: '-' },
  ]))('ENTRY round trip: %s', (_description, { entry, birth }) => {
    const encoded = encodeEntry(entry);
    expect(encoded.verb).toBe('ENTRY');
    expect(encoded.args).toEqual([entry.path, ...encodeStat(entry.stat), birth]);
    expect(decodeEntry(overTheWire(encoded))).toEqual(entry);
  });

  test('a birth time of 0 (the file system keeps none) is sent as -', () => {
    expect(encodeBirth(0)).toBe('-');
    expect(encodeBirth(undefined)).toBe('-');
    expect(decodeBirth('-')).toBeUndefined();
    expect(decodeEntry(overTheWire(encodeEntry({ path: 'a', stat: { ...file, birthMs: 0 } })))).toEqual({ path: 'a', stat: file });
  });

  test.each(described<{ description: string; args: string[]; error: typeof ProtocolError | typeof SafetyError }>([
    { description: 'no birth time', args: ['a', ...statArgs], error: ProtocolError },
    { description: 'an extra argument', args: ['a', ...statArgs, '-', 'x'], error: ProtocolError },
    { description: 'an empty birth time', args: ['a', ...statArgs, ''], error: ProtocolError },
    { description: 'a negative birth time', args: ['a', ...statArgs, '-1'], error: ProtocolError },
    { description: 'a zero birth time', args: ['a', ...statArgs, '0'], error: ProtocolError },
    { description: 'a birth time with a leading zero', args: ['a', ...statArgs, '01'], error: ProtocolError },
    { description: 'a birth time in exponent form', args: ['a', ...statArgs, '1e3'], error: ProtocolError },
    { description: 'a NaN birth time', args: ['a', ...statArgs, 'NaN'], error: ProtocolError },
    { description: 'a birth time with a blank', args: ['a', ...statArgs, ' 1'], error: ProtocolError },
    { description: 'a birth time of 17 digits', args: ['a', ...statArgs, '12345678901234567'], error: ProtocolError },
    { description: 'a bad stat', args: ['a', 'file', '1', '2', '3', '9', '-'], error: ProtocolError },
    { description: 'a path with ..', args: ['..', ...statArgs, '-'], error: SafetyError },
    { description: 'a path a/../../x', args: ['a/../../x', ...statArgs, '-'], error: SafetyError },
    { description: 'an absolute path', args: ['/etc/passwd', ...statArgs, '-'], error: SafetyError },
    { description: 'the root', args: ['', ...statArgs, '-'], error: SafetyError },
    { description: '.psync', args: ['.psync', 'dir', '1', '2', '3', '700', '-'], error: SafetyError },
    { description: '.psync/id', args: ['.psync/id', ...statArgs, '-'], error: SafetyError },
    { description: 'a scratch name', args: ['a.1-1-abc.psync.ignore', ...statArgs, '-'], error: SafetyError },
  ]))('ENTRY rejects %s', (_description, { args, error }) => {
    expect(() => decodeEntry(frame('ENTRY', args))).toThrow(error);
  });

  test('decodeEntry takes nothing but ENTRY', () => {
    expect(() => decodeEntry(frame('RSYNC', ['a', ...statArgs, '-']))).toThrow(ProtocolError);
  });

  const ids = ['0123abcd', 'f'.repeat(64)];

  test.each(described<{ description: string; ready: ReadyReport; args: string[] }>([
    { description: 'no marker file', ready: { entries: 0, markers: undefined }, args: ['0', '-'] },
    { description: 'a marker file without ids', ready: { entries: 3, markers: [] }, args: ['3', ''] },
    { description: 'one id', ready: { entries: 100_000, markers: [ids[0]!] }, args: ['100000', ids[0]!] },
    { description: 'two ids', ready: { entries: 1, markers: ids }, args: ['1', ids.join(',')] },
  ]))('READY round trip: %s', (_description, { ready, args }) => {
    const encoded = encodeReady(ready);
    expect(encoded).toEqual({ verb: 'READY', args });
    expect(decodeReady(overTheWire(encoded))).toEqual(ready);
  });

  test.each(described<{ description: string; verb?: string; args: string[] }>([
    { description: 'the version 3 form without markers', args: ['5'] },
    { description: 'an extra argument', args: ['5', '-', 'x'] },
    { description: 'a negative count', args: ['-1', '-'] },
    { description: 'a count with a leading zero', args: ['05', '-'] },
    { description: 'a fractional count', args: ['1.5', '-'] },
    { description: 'an empty count', args: ['', '-'] },
    { description: 'a count past 2^53', args: ['9007199254740993', '-'] },
    { description: 'an upper-case marker', args: ['1', 'ABCDEF12'] },
    { description: 'a short marker', args: ['1', 'abc'] },
    { description: 'a marker of 65 digits', args: ['1', 'a'.repeat(65)] },
    { description: 'an empty marker between commas', args: ['1', `${ids[0]!},,${ids[1]!}`] },
    { description: 'a trailing comma', args: ['1', `${ids[0]!},`] },
    { description: 'a marker with a blank', args: ['1', ` ${ids[0]!}`] },
    { description: 'a repeated marker', args: ['1', `${ids[0]!},${ids[0]!}`] },
    { description: '- among markers', args: ['1', `-,${ids[0]!}`] },
    { description: 'another verb', verb: 'HEARTBEAT', args: ['1', '-'] },
  ]))('READY rejects %s', (_description, { verb, args }) => {
    expect(() => decodeReady(frame(verb ?? 'READY', args))).toThrow(ProtocolError);
  });

  test.each(described<{ description: string; text: string; ids: string[] }>([
    { description: 'an empty file', text: '', ids: [] },
    { description: 'one id with its newline', text: '0123abcd\n', ids: ['0123abcd'] },
    { description: 'ids in file order, each once', text: 'ffffffff\n0123abcd\nffffffff\n', ids: ['ffffffff', '0123abcd'] },
    { description: 'blanks and a CR around an id', text: '  0123abcd \r\n', ids: ['0123abcd'] },
    { description: 'other lines ignored', text: '# psync pair ids\nABCDEF12\nabc\n0123abcd x\n' + 'a'.repeat(65) + '\n0123abcd', ids: ['0123abcd'] },
  ]))('parsePairIds: %s', (_description, { text, ids: expected }) => {
    expect(parsePairIds(text)).toEqual(expected);
  });
});

describe('LEFTOVER and SKIPPED', () => {
  test('round trips', () => {
    const leftover = { run: '.psync/replaced/123-2-7', path: 'd/\udcff x' };
    expect(decodeLeftover(overTheWire(encodeLeftover(leftover)))).toEqual(leftover);
    expect(decodeSkipped(overTheWire(encodeSkipped('a/locked', 'cannot list it (EACCES)')))).toEqual({ path: 'a/locked', why: 'cannot list it (EACCES)' });
    expect(decodeSkipped(overTheWire(encodeSkipped('a/locked', '')))).toEqual({ path: 'a/locked', why: '' });
  });

  test.each(described<{ description: string; verb: 'LEFTOVER' | 'SKIPPED'; args: string[]; error: typeof ProtocolError | typeof SafetyError }>([
    { description: 'a LEFTOVER run outside .psync/replaced', verb: 'LEFTOVER', args: ['etc', 'a'], error: ProtocolError },
    { description: 'a LEFTOVER run .psync/replaced/..', verb: 'LEFTOVER', args: ['.psync/replaced/..', 'a'], error: ProtocolError },
    { description: 'a LEFTOVER path ../x', verb: 'LEFTOVER', args: ['.psync/replaced/1-1-1', '../x'], error: SafetyError },
    { description: 'a LEFTOVER path under .psync', verb: 'LEFTOVER', args: ['.psync/replaced/1-1-1', '.psync/lock'], error: SafetyError },
    { description: 'a LEFTOVER without its path', verb: 'LEFTOVER', args: ['.psync/replaced/1-1-1'], error: ProtocolError },
    { description: 'a SKIPPED of the root', verb: 'SKIPPED', args: ['', 'x'], error: SafetyError },
    { description: 'a SKIPPED of /etc', verb: 'SKIPPED', args: ['/etc', 'x'], error: SafetyError },
    { description: 'a SKIPPED without its reason', verb: 'SKIPPED', args: ['a'], error: ProtocolError },
  ]))('rejects %s', (_description, { verb, args, error }) => {
    const decode = verb === 'LEFTOVER' ? decodeLeftover : decodeSkipped;
    expect(() => decode(frame(verb, args))).toThrow(error);
  });
});
