import { describe, expect, test } from 'vitest';
import { SafetyError } from '../../src/core/errors.js';
import { buildRsyncArgv, encodeFileList, rsyncExitMeaning, type RsyncArgvOptions } from '../../src/transfer/rsync.js';

const base: RsyncArgvOptions = {
  source: '/srv/a/',
  target: 'host:/srv/b/',
  transportArgs: [],
  extra: [],
  excludes: [],
  filesFrom: false,
};
/** Every run, unless said otherwise: never a setuid or setgid file (issue 8, attack 7). */
const COMMON = ['--archive', '--no-devices', '--protect-args', '--numeric-ids', '--modify-window=-1', '--chmod=Fug-s'];
const LIST = ['--files-from=-', '--from0', '--ignore-missing-args'];
const ROOTS = ['--', '/srv/a/', 'host:/srv/b/'];

describe('buildRsyncArgv', () => {
  test.each([
    { description: 'a full sync is archive mode between the two roots', options: {}, expected: [...COMMON, ...ROOTS] },
    { description: 'a file list reads NUL-separated names from stdin', options: { filesFrom: true }, expected: [...COMMON, ...LIST, ...ROOTS] },
    {
      description: 'a recursive file list descends into listed directories',
      options: { filesFrom: true, recursive: true },
      expected: [...COMMON, ...LIST, '--recursive', ...ROOTS],
    },
    { description: 'ignore-times forces a transfer the quick check would skip', options: { filesFrom: true, ignoreTimes: true }, expected: [...COMMON, ...LIST, '--ignore-times', ...ROOTS] },
    {
      description: 'recursive means nothing without a file list (archive recurses)',
      options: { recursive: true },
      expected: [...COMMON, ...ROOTS],
    },
    { description: 'update skips newer target files', options: { update: true }, expected: [...COMMON, '--update', ...ROOTS] },
    { description: 'dry run', options: { dryRun: true }, expected: [...COMMON, '--dry-run', ...ROOTS] },
    { description: 'false flags add nothing', options: { update: false, dryRun: false }, expected: [...COMMON, ...ROOTS] },
    {
      description: 'transport, excludes, then extras, before the roots',
      options: { transportArgs: ['-e', 'ssh -p 2222'], excludes: ['--exclude=/.psync/'], extra: ['-H', '--exclude=*.o'] },
      expected: [...COMMON, '-e', 'ssh -p 2222', '--exclude=/.psync/', '-H', '--exclude=*.o', ...ROOTS],
    },
    {
      description: 'a root that looks like an option stays a root after --',
      options: { source: '-rf/', target: '--delete/' },
      expected: [...COMMON, '--', '-rf/', '--delete/'],
    },
    {
      description: '--preserve-suid keeps setuid and setgid bits',
      options: { preserveSuid: true },
      expected: ['--archive', '--no-devices', '--protect-args', '--numeric-ids', '--modify-window=-1', ...ROOTS],
    },
    { description: 'preserveSuid false is the default', options: { preserveSuid: false }, expected: [...COMMON, ...ROOTS] },
    // A device node made from the other side's claim would open a whole disk to whoever may read it (issue 8).
    { description: 'device files are never made (--no-devices after --archive)', options: {}, expected: [...COMMON, ...ROOTS] },
    {
      description: 'the client is confined to its root (issue 8, attack 2: a listed path through a link out of the root)',
      options: { filesFrom: true, confineRoot: '/data/a' },
      expected: [...COMMON, '--confine-root=/data/a', ...LIST, ...ROOTS],
    },
    {
      description: 'the server gets its root inside rsync\'s protected args (-M), never through a shell',
      options: { confineRoot: '/data/a', serverConfineRoot: '/srv/b dir' },
      expected: [...COMMON, '--confine-root=/data/a', '--remote-option=--confine-root=/srv/b dir', ...ROOTS],
    },
  ] as Array<{ description: string; options: Partial<RsyncArgvOptions>; expected: string[] }>)('$description', ({ options, expected }) => {
    expect(buildRsyncArgv({ ...base, ...options })).toEqual(expected);
  });
});

describe('encodeFileList', () => {
  test.each([
    { description: 'nothing', files: [], expected: [] },
    { description: 'each name followed by NUL', files: ['a', 'b/c'], expected: [0x61, 0, 0x62, 0x2f, 0x63, 0] },
    { description: 'a newline inside a name stays a newline', files: ['a\nb'], expected: [0x61, 0x0a, 0x62, 0] },
    { description: 'UTF-8 names as UTF-8', files: ['é'], expected: [0xc3, 0xa9, 0] },
    { description: 'a non-UTF-8 byte as the byte itself', files: ['\udcff'], expected: [0xff, 0] },
  ])('$description', ({ files, expected }) => {
    expect([...encodeFileList(files)]).toEqual(expected);
  });

  test.each([
    { description: 'a parent reference', file: 'a/../../etc' },
    { description: 'an absolute path', file: '/etc/passwd' },
    { description: 'the root', file: '' },
  ])('refuses $description', ({ file }) => {
    expect(() => encodeFileList([file])).toThrow(SafetyError);
  });
});

describe('rsyncExitMeaning', () => {
  test.each([
    { code: 1, meaning: 'syntax or usage error' },
    { code: 23, meaning: 'partial transfer due to error' },
    { code: 24, meaning: 'partial transfer due to vanished source files' },
    { code: 255, meaning: 'the remote shell failed (ssh could not connect or authenticate)' },
    { code: 99, meaning: 'unknown error' },
  ])('$code: $meaning', ({ code, meaning }) => {
    expect(rsyncExitMeaning(code)).toBe(meaning);
  });
});
