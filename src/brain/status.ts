/**
 * `--status-file`: a small JSON document an operator, a check script or a
 * test can read to see what psync is doing without reading logs. Written
 * atomically (temp file and rename), at most every STATUS_WRITE_INTERVAL_MS.
 *
 * psync runs as root and the status file's directory may be writable by
 * others (/tmp, a shared /run directory): a name psync would write to that
 * someone can guess is a name they can plant a symlink at, and a write
 * through it overwrote a root-owned file. So each write goes to a fresh
 * random name, created exclusively and never through a symlink
 * (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0640), and is then renamed over the
 * status file (rename replaces a symlink planted there; it never follows it).
 */

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export const STATUS_WRITE_INTERVAL_MS = 100;
/** The temp file is created with these flags: only a new, real file, never one reached through a symlink. */
export const STATUS_TEMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
export const STATUS_FILE_MODE = 0o640;
/** A name that is taken (planted, or a crash's leftover) is skipped for another random one, this many times. */
const TEMP_ATTEMPTS = 5;

export type BrainState = 'starting' | 'reconciling' | 'watching' | 'reconnecting' | 'stopping' | 'stopped' | 'failed';

/** `.status.json.<24 random hex digits>.tmp` beside the status file. */
const randomTempName = (path: string): string => join(dirname(path), `.${basename(path)}.${randomBytes(12).toString('hex')}.tmp`);

export class StatusWriter {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string | undefined,
    private readonly snapshot: () => object,
    /** The temp name for each attempt (tests pin it to plant something there first). */
    private readonly tempName: (path: string) => string = randomTempName,
  ) {}

  /** Something changed: write soon. */
  touch(): void {
    if (this.path === undefined || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, STATUS_WRITE_INTERVAL_MS);
  }

  /** Write now and wait for it (at exit). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.write();
  }

  private write(): Promise<void> {
    const path = this.path;
    if (path === undefined) return Promise.resolve();
    this.writing = this.writing.then(async () => {
      const text = `${JSON.stringify({ ...this.snapshot(), pid: process.pid, updatedAt: new Date().toISOString() }, null, 2)}\n`;
      try {
        await writeAtomically(path, text, this.tempName);
      } catch {
        // A status file that cannot be written must not stop the sync.
      }
    });
    return this.writing;
  }
}

/** Write `text` to a new temp file beside `path` (see the header), then rename it over `path`. */
async function writeAtomically(path: string, text: string, tempName: (path: string) => string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const temp = tempName(path);
    let handle;
    try {
      handle = await open(temp, STATUS_TEMP_FLAGS, STATUS_FILE_MODE);
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
