/**
 * `--status-file`: a small JSON document an operator, a check script or a
 * test can read to see what psync is doing without reading logs. Written
 * atomically (temp file and rename), at most every STATUS_WRITE_INTERVAL_MS.
 */

import { rename, writeFile } from 'node:fs/promises';

export const STATUS_WRITE_INTERVAL_MS = 100;

export type BrainState = 'starting' | 'merging' | 'watching' | 'stopping' | 'stopped' | 'failed';

export class StatusWriter {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string | undefined,
    private readonly snapshot: () => object,
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
      const temp = `${path}.${process.pid}.tmp`;
      try {
        await writeFile(temp, `${JSON.stringify({ ...this.snapshot(), pid: process.pid, updatedAt: new Date().toISOString() }, null, 2)}\n`);
        await rename(temp, path);
      } catch {
        // A status file that cannot be written must not stop the sync.
      }
    });
    return this.writing;
  }
}
