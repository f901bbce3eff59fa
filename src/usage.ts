/**
 * What psync says about a command line it cannot take: pure functions from
 * the arguments (and yargs' complaint) to one line, so that a table test
 * names every case.
 */

/** The options whose value is itself an rsync option (`-x=--bwlimit=1000`). */
const EXTRA_OPTIONS = new Set(['-x', '--extra']);

/**
 * yargs' complaint in one line (its "Invalid values:" spans several), with
 * a hint when an unknown option was meant for rsync: `-x --bwlimit=1000`
 * gives -x an empty value and takes `--bwlimit=1000` for an option of
 * psync's ("Unknown argument: bwlimit").
 */
export function explainUsageError(complaint: string, argv: readonly string[]): string {
  const message = complaint.trim().replace(/\s*\n\s*/g, ' ');
  const index = argv.findIndex((arg, i) => EXTRA_OPTIONS.has(arg) && argv[i + 1]?.startsWith('-') === true);
  if (index < 0 || !/^Unknown arguments?:/.test(message)) return message;
  const meant = argv[index + 1]!;
  return `${message} (an rsync option after ${argv[index]} needs "=": -x=${meant} or --extra=${meant})`;
}

/** The complaint about positional arguments after SRCROOT and DSTROOT, or undefined when there are none. */
export function extraArguments(extra: ReadonlyArray<string | number>): string | undefined {
  if (extra.length === 0) return undefined;
  const shown = extra.map((arg) => JSON.stringify(String(arg))).join(' ');
  return `unexpected argument${extra.length > 1 ? 's' : ''} ${shown}: psync takes two roots (psync [options] SRCROOT DSTROOT)`;
}
