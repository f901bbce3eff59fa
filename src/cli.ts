#!/usr/bin/env node
/**
 * The `psync` executable. `psync [options] SRCROOT DSTROOT` runs the brain
 * (main.ts); `_side` is the child the brain starts on each side (side.ts:
 * its filter and helper, also runnable alone as `_filter` and `_helper`),
 * never typed by a person. A child loads only its own modules: the brain's
 * (yargs, ssh2, winston, execa) would add some 20 MB to each.
 * `psync status` (commands/status.ts) and the service commands behind
 * scripts/start, stop and check (`_start`, `_stop`, `_check`:
 * commands/service.ts) do not load the brain either, nor does `psync check`
 * (commands/check.ts), which compares two roots.
 */

import { ROLE_COMMAND, SERVICE_COMMAND } from './install.js';

const role = process.argv[2];
const args = process.argv.slice(3);
const command =
  role === 'status'
    ? (await import('./commands/status.js')).runStatus
    : role === 'check'
      ? (await import('./commands/check.js')).runCheck
      : role !== undefined && (Object.values(SERVICE_COMMAND) as string[]).includes(role)
        ? (argv: readonly string[]) => import('./commands/service.js').then(({ runService }) => runService(role, argv))
        : undefined;
const child =
  role === ROLE_COMMAND.side
    ? (await import('./side.js')).runSide
    : role === ROLE_COMMAND.filter
      ? (await import('./filter/filter.js')).runFilter
      : role === ROLE_COMMAND.helper
        ? (await import('../helpers/helper.js')).runHelper
        : undefined;

if (command !== undefined) {
  exitWith(await command(args));
} else if (child === undefined) {
  await import('./main.js');
} else {
  exitWith(await child(process.stdin, process.stdout));
}

function exitWith(code: number): void {
  process.exitCode = code;
  // Exit even if a watch or a timer lingers, once what was written has reached the pipe.
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}
