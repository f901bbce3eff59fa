/** What psync says about a command line it cannot take (src/usage.ts). */

import { describe, expect, test } from 'vitest';
import { explainUsageError, extraArguments } from '../../src/usage.js';
import { described } from '../support/table.js';

describe('explainUsageError', () => {
  test.each(described<{ description: string; message: string; argv: string[]; expected: string }>([
    {
      description: '-x followed by an rsync option: the hint gives both spellings with "="',
      message: 'Unknown argument: bwlimit',
      argv: ['-x', '--bwlimit=1000', '/a', '/b'],
      expected: 'Unknown argument: bwlimit (an rsync option after -x needs "=": -x=--bwlimit=1000 or --extra=--bwlimit=1000)',
    },
    {
      description: '--extra followed by a short rsync option',
      message: 'Unknown argument: z',
      argv: ['/a', '/b', '--extra', '-z'],
      expected: 'Unknown argument: z (an rsync option after --extra needs "=": -x=-z or --extra=-z)',
    },
    { description: 'an unknown option without -x: no hint', message: 'Unknown argument: bogus', argv: ['--bogus', '/a', '/b'], expected: 'Unknown argument: bogus' },
    { description: '-x written with "=" is fine: no hint for another unknown option', message: 'Unknown argument: bogus', argv: ['-x=--bwlimit=1', '--bogus', '/a', '/b'], expected: 'Unknown argument: bogus' },
    { description: 'another complaint after -x -opt: left alone', message: 'Not enough arguments', argv: ['-x', '-z'], expected: 'Not enough arguments' },
    {
      description: "a complaint over several lines (yargs' choices) is made one line",
      message: 'Invalid values:\n  Argument: log-format, Given: "xml", Choices: "text", "json"',
      argv: ['--log-format', 'xml'],
      expected: 'Invalid values: Argument: log-format, Given: "xml", Choices: "text", "json"',
    },
  ]))('%s', (_description, { message, argv, expected }) => {
    expect(explainUsageError(message, argv)).toBe(expected);
  });
});

describe('extraArguments', () => {
  test.each(described<{ description: string; extra: Array<string | number>; expected: string | undefined }>([
    { description: 'none: nothing to say', extra: [], expected: undefined },
    { description: 'a third root', extra: ['/c'], expected: 'unexpected argument "/c": psync takes two roots (psync [options] SRCROOT DSTROOT)' },
    { description: 'several, numbers as written', extra: ['c', 4], expected: 'unexpected arguments "c" "4": psync takes two roots (psync [options] SRCROOT DSTROOT)' },
  ]))('%s', (_description, { extra, expected }) => {
    expect(extraArguments(extra)).toBe(expected);
  });
});
