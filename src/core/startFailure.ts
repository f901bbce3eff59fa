/**
 * The one line that says why a side process died before it started: its
 * stderr can be a whole stack trace (node's "Cannot find module" for a
 * wrong --remote-psync is 13 lines), of which a person needs the line
 * naming the error. Pure, for a table test.
 */

/** Lines that name what went wrong, as a shell, node or psync writes them. */
const CAUSE = [/^(?:[A-Za-z]*Error|Error \[[A-Z_]+\]):/, /command not found|: not found$|No such file or directory|Permission denied/i, /^psync[\w ]*: /];

/** The line to show from what a side wrote on stderr before it died, or undefined when it wrote nothing. */
export function startFailureLine(lines: readonly string[]): string | undefined {
  const written = lines.map((line) => line.trim()).filter((line) => line !== '');
  for (const cause of CAUSE) {
    const found = written.find((line) => cause.test(line));
    if (found !== undefined) return found;
  }
  return written.at(-1);
}
