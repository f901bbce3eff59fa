/**
 * Replacing a small file (a status file, a pid file) in a directory others
 * may write to, without ever writing through a symlink planted there.
 *
 * psync runs as root: a name it writes to that someone can guess is a name
 * they can plant a symlink at, and a write through it overwrites a
 * root-owned file. So each write goes to a fresh random name, created
 * exclusively and never through a symlink (O_CREAT | O_EXCL | O_NOFOLLOW),
 * and is then renamed over the file (rename replaces a symlink planted
 * there; it never follows it). Such a file is read back the same way:
 * never through a symlink (readNoFollow).
 */

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** The temp file is created with these flags: only a new, real file, never one reached through a symlink. */
export const ATOMIC_TEMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
/** A name that is taken (planted, or a crash's leftover) is skipped for another random one, this many times. */
const TEMP_ATTEMPTS = 5;

/** `.<name>.<24 random hex digits>.tmp` beside the file. */
export const randomTempName = (path: string): string => join(dirname(path), `.${basename(path)}.${randomBytes(12).toString('hex')}.tmp`);

/** Write `text` to a new temp file beside `path` (see the header), then rename it over `path`. */
export async function writeFileAtomically(path: string, text: string, mode: number, tempName: (path: string) => string = randomTempName): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const temp = tempName(path);
    let handle;
    try {
      handle = await open(temp, ATOMIC_TEMP_FLAGS, mode);
    } catch (error) {
      // EEXIST: something is there already (a symlink included, which O_EXCL never follows).
      if ((error as NodeJS.ErrnoException).code === 'EEXIST' && attempt < TEMP_ATTEMPTS) continue;
      throw error;
    }
    try {
      try {
        await handle.writeFile(text);
      } finally {
        await handle.close();
      }
      await rename(temp, path);
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
    return;
  }
}

/** The text of `path`, opened O_NOFOLLOW: a symlink planted at the name is an error (ELOOP), never followed. */
export async function readNoFollow(path: string): Promise<string> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}
