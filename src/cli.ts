#!/usr/bin/env node
/**
 * The `psync` executable. `psync [options] SRCROOT DSTROOT` runs the brain
 * (main.ts); `_side` is the child the brain starts on each side (side.ts:
 * its filter and helper, also runnable alone as `_filter` and `_helper`),
 * never typed by a person. A child loads only its own modules: the brain's
 * (yargs, ssh2, winston, execa) would add some 20 MB to each.
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

if (child === undefined) {
  await import('./main.js');
} else {
  const code = await child(process.stdin, process.stdout);
  process.exitCode = code;
  // Exit even if a watch or a timer lingers, once what was written has reached the pipe.
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}
