/**
 * The settings as data: what a config file may hold (the schema's one-line
 * complaints), how the file's common settings, its pairs and the command
 * line combine into one Config per pair, and that config.example.ts names
 * every setting and is itself a valid config.
 */

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import example from '../../config.example.js';
import { configFileSchema, configSchema, DEFAULTS, derivedName, PAIR_SETTINGS, PROCESS_SETTINGS, remoteRootHint, resolvePairs, type CommandLine, type ConfigFile } from '../../src/config.js';
import { describeIssue, jsonErrorWhere, settingPath } from '../../src/configFile.js';
import { ConfigError } from '../../src/core/errors.js';
import { described } from '../support/table.js';

/** The one line a config file's first problem gives, or undefined when the file is valid. */
function complaint(value: unknown): string | undefined {
  const checked = configFileSchema.safeParse(value);
  return checked.success ? undefined : describeIssue(checked.error.issues[0]!, value);
}

const pair = (name: string, more: Record<string, unknown> = {}) => ({ name, srcRoot: `/l/${name}`, dstRoot: `/r/${name}`, ...more });

describe('a config file is checked against the schema: one line naming the setting and what it expects', () => {
  test.each(described<{ description: string; file: unknown; message: string | undefined }>([
    { description: 'an empty file is valid (everything has a default)', file: {}, message: undefined },
    { description: 'one pair at the top level is valid', file: { srcRoot: '/a', dstRoot: '/b', excludes: ['*.log'], force: true }, message: undefined },
    { description: 'pairs with common settings are valid', file: { remoteHost: 'h', debug: 2, pairs: [pair('a'), pair('b', { excludes: ['x'] })] }, message: undefined },
    { description: 'an unknown key (a typo) is named, with the setting it resembles', file: { remotehost: 'loop' }, message: 'unknown setting remotehost (did you mean remoteHost?)' },
    { description: 'an unknown key nowhere near a setting is named alone', file: { colour: 'red' }, message: 'unknown setting colour' },
    { description: "an unknown key in a pair is named with the pair's index", file: { pairs: [pair('a', { exclude: ['x'] })] }, message: 'unknown setting pairs[0].exclude' },
    { description: 'a string where a list is expected (it would be split into characters)', file: { excludes: '*.log' }, message: 'excludes: expected a list (["a", "b"]), got the string "*.log"' },
    { description: "a string for a list in the second pair names that pair's setting", file: { pairs: [pair('a'), pair('b', { excludes: '*.log' })] }, message: 'pairs[1].excludes: expected a list (["a", "b"]), got the string "*.log"' },
    { description: 'a number in a list', file: { rsyncExtra: ['--bwlimit=1', 5] }, message: 'rsyncExtra[1]: expected a string, got number 5' },
    { description: 'a string for a boolean', file: { force: 'no' }, message: 'force: expected true or false, got the string "no"' },
    { description: 'a string for a number', file: { intervalSeconds: '0.5' }, message: 'intervalSeconds: expected a number, got the string "0.5"' },
    { description: 'a value outside a choice', file: { logFormat: 'xml' }, message: 'logFormat: expected one of "text", "json", got the string "xml"' },
    { description: 'a progress mode outside the choice', file: { progress: 'yes' }, message: 'progress: expected one of "auto", "bar", "line", "off", got the string "yes"' },
    { description: 'a list where an object is expected', file: { pairs: [['a']] }, message: 'pairs[0]: expected an object ({ ... }), got a list' },
    { description: 'a pair without its roots', file: { pairs: [{ name: 'a', srcRoot: '/l' }] }, message: 'pairs[0].dstRoot is missing (a string)' },
    { description: 'a pair without a name', file: { pairs: [{ srcRoot: '/l', dstRoot: '/r' }] }, message: 'pairs[0].name is missing (a string)' },
    { description: 'a name that cannot be a file name', file: { pairs: [pair('a b')] }, message: expect.stringMatching(/^pairs\[0\]\.name: a name of letters/) as unknown as string },
    { description: 'two pairs of one name', file: { pairs: [pair('a'), pair('a')] }, message: 'pairs[1].name: another pair is named "a" already (names must be unique)' },
    { description: 'no pairs at all in "pairs"', file: { pairs: [] }, message: expect.stringMatching(/^pairs: /) as unknown as string },
    { description: 'roots at the top level beside pairs', file: { srcRoot: '/a', pairs: [pair('a')] }, message: 'srcRoot: belongs in each pair when the file has "pairs"' },
    { description: 'one status file for several pairs', file: { statusFile: '/run/s.json', pairs: [pair('a')] }, message: 'statusFile: belongs in each pair when the file has "pairs"' },
    { description: 'not an object at all', file: 'psync', message: 'the top level: expected an object ({ ... }), got the string "psync"' },
  ]))('%s', (_description, { file, message }) => {
    expect(complaint(file)).toEqual(message);
  });

  test.each([
    { path: [], shown: '' },
    { path: ['force'], shown: 'force' },
    { path: ['pairs', 1, 'excludes'], shown: 'pairs[1].excludes' },
    { path: ['pairs', 0, 'excludes', 2], shown: 'pairs[0].excludes[2]' },
  ])('settingPath $path is "$shown"', ({ path, shown }) => {
    expect(settingPath(path)).toBe(shown);
  });
});

describe('jsonErrorWhere: where a JSON syntax error is', () => {
  test.each(described<{ description: string; text: string; message: string; expected: string }>([
    { description: 'on the first line', text: '{ "a": 1, }', message: 'Expected double-quoted property name in JSON at position 10', expected: 'Expected double-quoted property name in JSON at position 10 (line 1, column 11)' },
    { description: 'on a later line', text: '{\n  "a": 1,\n}', message: 'Expected double-quoted property name in JSON at position 12', expected: 'Expected double-quoted property name in JSON at position 12 (line 3, column 1)' },
    { description: 'a message that already says the line (newer Node) is left alone', text: '{,}', message: 'Unexpected token , in JSON at position 1 (line 1 column 2)', expected: 'Unexpected token , in JSON at position 1 (line 1 column 2)' },
    { description: 'a message without a position is left alone', text: '', message: 'Unexpected end of JSON input', expected: 'Unexpected end of JSON input' },
  ]))('%s', (_description, { text, message, expected }) => {
    expect(jsonErrorWhere(text, message)).toBe(expected);
  });

  test("the message names the place of Node's own error", () => {
    const text = '{\n  "force": true,\n}';
    let message = '';
    try {
      JSON.parse(text);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(jsonErrorWhere(text, message)).toMatch(/line 3/);
  });
});

const noCommandLine: CommandLine = { settings: {}, added: {} };

describe('resolvePairs: defaults, then the common settings, then the pair, then the command line', () => {
  test.each(described<{ description: string; file: ConfigFile; commandLine?: CommandLine; expected: Array<Record<string, unknown>> }>([
    {
      description: 'roots from the command line, everything else the default, the name from the left root',
      file: {},
      commandLine: { settings: { srcRoot: '/srv/share', dstRoot: '/b' }, added: {} },
      expected: [{ name: 'share', srcRoot: '/srv/share', dstRoot: '/b', excludes: [], intervalSeconds: DEFAULTS.intervalSeconds, logFormat: 'text', progress: 'auto' }],
    },
    {
      description: 'a one-pair file: its name and settings',
      file: { name: 'web', srcRoot: '/a', dstRoot: '/b', force: true, excludes: ['*.o'] },
      expected: [{ name: 'web', force: true, excludes: ['*.o'] }],
    },
    {
      description: 'the command line wins over the file, and its list entries are added to the file\'s',
      file: { srcRoot: '/a', dstRoot: '/b', force: true, excludes: ['*.o'], intervalSeconds: 2 },
      commandLine: { settings: { force: false, dstRoot: '/c' }, added: { excludes: ['*.p'] } },
      expected: [{ dstRoot: '/c', force: false, excludes: ['*.o', '*.p'], intervalSeconds: 2 }],
    },
    {
      description: "each pair takes the common settings, and its own replace them (lists too, not added)",
      file: { remoteHost: 'replica', excludes: ['*.o'], debug: 2, pairs: [{ name: 'a', srcRoot: '/a', dstRoot: '/a' }, { name: 'b', srcRoot: '/b', dstRoot: '/b', remoteHost: 'other', excludes: ['x'] }] },
      expected: [
        { name: 'a', remoteHost: 'replica', excludes: ['*.o'], debug: 2 },
        { name: 'b', remoteHost: 'other', excludes: ['x'], debug: 2 },
      ],
    },
    {
      description: 'the command line wins over every pair',
      file: { pairs: [{ name: 'a', srcRoot: '/a', dstRoot: '/a', dryRun: false }, { name: 'b', srcRoot: '/b', dstRoot: '/b' }] },
      commandLine: { settings: { dryRun: true, debug: 3 }, added: { tempfiles: ['*.wip'] } },
      expected: [
        { name: 'a', dryRun: true, debug: 3, tempfiles: [...DEFAULTS.tempfiles, '*.wip'] },
        { name: 'b', dryRun: true, debug: 3, tempfiles: [...DEFAULTS.tempfiles, '*.wip'] },
      ],
    },
    {
      description: 'file names are made absolute; a value written undefined is not given',
      file: { srcRoot: '/a', dstRoot: '/b', statusFile: 'status.json', remoteHost: undefined },
      expected: [{ statusFile: `${process.cwd()}/status.json` }],
    },
  ]))('%s', (_description, { file, commandLine, expected }) => {
    const pairs = resolvePairs(file, commandLine ?? noCommandLine);
    expect(pairs).toHaveLength(expected.length);
    pairs.forEach((config, i) => expect(config).toMatchObject(expected[i]!));
    expect(pairs.every((config) => !('remoteHost' in config) || config.remoteHost !== undefined)).toBe(true);
  });

  test.each(described<{ description: string; file: ConfigFile; commandLine: CommandLine; message: RegExp }>([
    { description: 'no roots anywhere', file: {}, commandLine: noCommandLine, message: /SRCROOT is missing/ },
    { description: 'no DSTROOT', file: { srcRoot: '/a' }, commandLine: noCommandLine, message: /DSTROOT is missing/ },
    { description: 'roots on the command line and pairs in the file', file: { pairs: [pair('a')] }, commandLine: { settings: { srcRoot: '/x' }, added: {} }, message: /give no SRCROOT or DSTROOT/ },
    { description: '--status-file for several pairs', file: { pairs: [pair('a'), pair('b')] }, commandLine: { settings: { statusFile: '/s.json' }, added: {} }, message: /--status-file names the file of one pair/ },
  ]))('refused: %s', (_description, { file, commandLine, message }) => {
    expect(() => resolvePairs(file, commandLine)).toThrow(ConfigError);
    expect(() => resolvePairs(file, commandLine)).toThrow(message);
  });

  test.each([
    { srcRoot: '/srv/share', name: 'share' },
    { srcRoot: '/srv/my share/', name: 'my_share' },
    { srcRoot: '/data/.hidden', name: 'hidden' },
    { srcRoot: '/', name: 'pair' },
  ])('the name derived from $srcRoot is $name', ({ srcRoot, name }) => {
    expect(derivedName(srcRoot)).toBe(name);
  });
});

describe('remoteRootHint: a local DSTROOT spelled host:/path', () => {
  test.each([
    { root: 'replica:/srv/share', hint: '; to sync with /srv/share on replica, use -r replica SRCROOT /srv/share' },
    { root: 'user@replica:dir', hint: '; to sync with dir on user@replica, use -r user@replica SRCROOT dir' },
    { root: '/srv/share', hint: undefined },
    { root: './a:b', hint: undefined },
  ])('$root', ({ root, hint }) => {
    expect(remoteRootHint(root)).toBe(hint);
  });
});

describe('config.example.ts', () => {
  const text = readFileSync(new URL('../../config.example.ts', import.meta.url), 'utf8');

  test('is a valid config file', () => {
    expect(complaint(example)).toBeUndefined();
  });

  test.each([...PROCESS_SETTINGS, ...PAIR_SETTINGS, 'pairs'])('names and documents %s', (key) => {
    expect(text).toMatch(new RegExp(`\\*/\\n\\s*${key}: `));
  });

  test('the settings are split into process-wide and per-pair ones, with nothing left over', () => {
    expect(new Set([...PROCESS_SETTINGS, ...PAIR_SETTINGS])).toEqual(new Set(Object.keys(configSchema.shape)));
  });
});
