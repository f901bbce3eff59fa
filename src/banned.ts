/** `--banned PROGRAM`: is a program of that name running on this machine? (Linux /proc) */

import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';

export async function findBanned(program: string): Promise<boolean> {
  const want = basename(program);
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      // comm holds at most 15 characters; argv[0] holds the full name.
      const comm = (await readFile(`/proc/${entry}/comm`, 'utf8')).trim();
      const argv0 = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0')[0] ?? '';
      if (comm === want.slice(0, 15) && (want.length <= 15 || basename(argv0) === want)) return true;
      if (basename(argv0) === want) return true;
    } catch {
      // the process ended while we looked
    }
  }
  return false;
}
