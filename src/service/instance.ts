/**
 * A psync instance run by the service commands (commands/service.ts): one
 * psync process, named the same way by `start`, `stop` and `check`:
 * - `--name NAME` when given;
 * - else the config file's name without its extension (`--config
 *   /etc/psync/web.json` is `web`);
 * - else `psync-` and a short hash of the psync arguments (the same
 *   arguments, in the same order, name the same instance).
 *
 * Its pid file, `<runtimeDir>/<name>.pid`, records the process (pid, start
 * time, boot id: service/proc.ts) and its argv. The instance runs when
 * that process is alive and its /proc cmdline is still that argv; a pid
 * file whose process is gone, or whose pid another program now holds, is
 * stale.
 */

import { createHash } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { readNoFollow, writeFileAtomically } from '../fs/atomicWrite.js';
import { argvOf, identityOf, isAlive, type ProcessIdentity } from './proc.js';

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/;
const PID_FILE_MODE = 0o644;

/** The instance's name (see the header); ConfigError for a --name that is not a plain file name. */
export function instanceName(psyncArgs: readonly string[], name: string | undefined): string {
  if (name !== undefined) {
    if (!NAME_PATTERN.test(name)) throw new ConfigError(`--name ${JSON.stringify(name)}: use letters, digits and . _ @ - (starting with a letter or digit)`);
    return name;
  }
  const config = psyncOption(psyncArgs, '--config', '-c');
  if (config !== undefined) {
    const stem = basename(config, extname(config));
    if (NAME_PATTERN.test(stem)) return stem;
  }
  return `psync-${createHash('sha256').update(JSON.stringify(psyncArgs)).digest('hex').slice(0, 12)}`;
}

/** The value of option `long` (or `short`) among psync's arguments, the last one given before a `--`. */
export function psyncOption(args: readonly string[], long: string, short?: string): string | undefined {
  let found: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') break;
    if (arg === long || arg === short) found = args[++i];
    else if (arg.startsWith(`${long}=`)) found = arg.slice(long.length + 1);
  }
  return found;
}

export interface PidRecord extends ProcessIdentity {
  readonly argv: readonly string[];
}

export const pidFileOf = (runtime: string, name: string): string => join(runtime, `${name}.pid`);

export type PidFileState = { kind: 'absent' } | { kind: 'stale'; record: PidRecord | undefined; why: string } | { kind: 'running'; record: PidRecord };

/** What the pid file says and whether its process is still that psync. */
export async function readPidFile(file: string): Promise<PidFileState> {
  let text: string;
  try {
    text = await readNoFollow(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'absent' };
    return { kind: 'stale', record: undefined, why: `it cannot be read (${(error as Error).message})` };
  }
  let record: PidRecord;
  try {
    record = JSON.parse(text) as PidRecord;
    if (typeof record.pid !== 'number' || !Array.isArray(record.argv)) throw new Error('not a psync pid file');
  } catch (error) {
    return { kind: 'stale', record: undefined, why: `it is not a psync pid file (${(error as Error).message})` };
  }
  if (identityOf(record.pid) === undefined) return { kind: 'stale', record, why: `pid ${record.pid} is gone` };
  const argv = argvOf(record.pid);
  if (!isAlive(record) || argv === undefined || JSON.stringify(argv) !== JSON.stringify(record.argv)) {
    return { kind: 'stale', record, why: `pid ${record.pid} is another program now` };
  }
  return { kind: 'running', record };
}

export const writePidFile = (file: string, record: PidRecord): Promise<void> => writeFileAtomically(file, `${JSON.stringify(record)}\n`, PID_FILE_MODE);

export async function removePidFile(file: string): Promise<void> {
  await unlink(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}
