/** The one line that says why a side died before it started (src/core/startFailure.ts). */

import { expect, test } from 'vitest';
import { startFailureLine } from '../../src/core/startFailure.js';
import { described } from '../support/table.js';

/** What node writes when --remote-psync names a script that is not there. */
const NODE_MISSING_MODULE = `node:internal/modules/cjs/loader:1228
  throw err;
  ^

Error: Cannot find module '/opt/nowhere/cli.js'
    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)
    at Module._load (node:internal/modules/cjs/loader:1051:27)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:174:12)
    at node:internal/main/run_main_module:28:49 {
  code: 'MODULE_NOT_FOUND',
  requireStack: []
}

Node.js v20.19.0`.split('\n');

test.each(described<{ description: string; lines: string[]; expected: string | undefined }>([
  { description: "node's stack trace for a missing script: the Error line", lines: NODE_MISSING_MODULE, expected: "Error: Cannot find module '/opt/nowhere/cli.js'" },
  { description: "dash's command not found", lines: ['sh: 1: nodejs: not found'], expected: 'sh: 1: nodejs: not found' },
  { description: "bash's command not found, after a motd line", lines: ['Welcome!', 'bash: line 1: nodejs: command not found'], expected: 'bash: line 1: nodejs: command not found' },
  { description: 'a psync line', lines: ['', 'psync: could not build the native addons'], expected: 'psync: could not build the native addons' },
  { description: 'nothing recognised: the last line written', lines: ['one', 'two', '  '], expected: 'two' },
  { description: 'nothing written', lines: ['', ' '], expected: undefined },
]))('%s', (_description, { lines, expected }) => {
  expect(startFailureLine(lines)).toBe(expected);
});
