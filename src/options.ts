/** Small helpers shared by psync's command lines (main.ts, commands/). */

import { ConfigError } from './core/errors.js';

/**
 * A repeatable option's values. They are declared as plain strings, not yargs
 * arrays: an array option swallows the words after it, so `-e '*.o' SRC DST`
 * would read the roots as patterns. yargs gathers a repeated option itself.
 */
export function repeated(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** A required argument's value; ConfigError naming it and the command's usage when it is missing. */
export function required(value: string | undefined, name: string, usage: string): string {
  if (value === undefined) throw new ConfigError(`${name} is missing: ${usage}`);
  return value;
}
