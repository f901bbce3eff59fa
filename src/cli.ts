#!/usr/bin/env node
/**
 * The `psync` executable. `psync [options] SRCROOT DSTROOT` runs the brain
 * (main.ts); `_side` is the child the brain starts on each side (side.ts:
 * its filter and helper, also runnable alone as `_filter` and `_helper`),
 * never typed by a person. A child loads only its own modules: the brain's
 * (yargs, ssh2, winston, execa) would add some 20 MB to each.
 * `psync check` (commands/check.ts) compares two roots, without the brain.
 */

import { ROLE_COMMAND } from './install.js';

const role = process.argv[2];
const child =
  role === ROLE_COMMAND.side
    ? (await import('./side.js')).runSide
    : role === ROLE_COMMAND.filter
      ? (await import('./filter/filter.js')).runFilter
      : role === ROLE_COMMAND.helper
        ? (await import('../helpers/helper.js')).runHelper
        : undefined;

/** Subcommands a person types, each in its own module under commands/. */
const subcommand = role === 'check' ? (await import('./commands/check.js')).runCheck : undefined;

if (subcommand !== undefined) {
  exitOnceWritten(await subcommand(process.argv.slice(3)));
} else if (child === undefined) {
  await import('./main.js');
} else {
  exitOnceWritten(await child(process.stdin, process.stdout));
}

function exitOnceWritten(code: number): void {
  process.exitCode = code;
  // Exit even if a watch or a timer lingers, once what was written has reached the pipe.
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}
