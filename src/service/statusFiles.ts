/**
 * Reading the status files that running pairs publish (brain/status.ts):
 * every `<pairId>.json` in the status directory, or named files. Each one
 * read is checked against its process (service/proc.ts): `alive` says
 * whether the pid it names is still that psync.
 */

import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { PairStatus } from '../brain/status.js';
import { readNoFollow } from '../fs/atomicWrite.js';
import { isAlive } from './proc.js';

export interface ReadStatus {
  readonly file: string;
  readonly status: PairStatus;
  /** Its process is still running (same pid, start time and boot). */
  readonly alive: boolean;
}

/** The status files in `dir` (not the writer's `.<name>.tmp` temp files); none when it does not exist. */
export async function statusFilesIn(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  return names.filter((name) => name.endsWith('.json') && !name.startsWith('.')).sort().map((name) => join(dir, name));
}

/** Read one status file (never through a symlink); undefined when it is gone or is not a status file. */
export async function readStatusFile(file: string): Promise<ReadStatus | undefined> {
  let text: string;
  try {
    text = await readNoFollow(file);
  } catch {
    return undefined;
  }
  let status: PairStatus;
  try {
    status = JSON.parse(text) as PairStatus;
  } catch {
    return undefined;
  }
  if (typeof status !== 'object' || status === null || typeof status.state !== 'string' || typeof status.pid !== 'number') return undefined;
  return { file, status, alive: isAlive(status) };
}

/** The readable status files among `files`, in that order. */
export async function readStatusFiles(files: readonly string[]): Promise<ReadStatus[]> {
  return (await Promise.all(files.map(readStatusFile))).filter((read): read is ReadStatus => read !== undefined);
}
