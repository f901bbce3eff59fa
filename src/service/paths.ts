/**
 * Where psync keeps what a running instance publishes, for `psync status`,
 * the service commands and an operator:
 * - runtimeDir(): pid files; `$XDG_RUNTIME_DIR/psync` when that is set, else
 *   `/run/psync` as root, else `<tmpdir>/psync-<uid>`;
 * - statusDir(): one status file per pair, `<runtimeDir>/status/<pairId>.json`;
 * - logDir(): the service commands' logs, `$XDG_STATE_HOME/psync/log`, else
 *   `~/.local/state/psync/log`.
 * The path functions are pure (they take the environment and uid);
 * ensurePrivateDir creates one of them safely. A directory found there
 * already must be a real directory (never a symlink: /tmp is writable by
 * everyone, and psync runs as root) owned by this user; it is made 0700
 * (its existing parents are left as they are).
 */

import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { SafetyError } from '../core/errors.js';

export const PRIVATE_DIR_MODE = 0o700;

const uid = (): number => process.getuid?.() ?? 0;

export function runtimeDir(env: NodeJS.ProcessEnv = process.env, user: number = uid()): string {
  const xdg = env['XDG_RUNTIME_DIR'];
  if (xdg !== undefined && isAbsolute(xdg)) return join(xdg, 'psync');
  return user === 0 ? '/run/psync' : join(tmpdir(), `psync-${user}`);
}

export const statusDir = (env: NodeJS.ProcessEnv = process.env, user: number = uid()): string => join(runtimeDir(env, user), 'status');

export function logDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env['XDG_STATE_HOME'];
  const state = xdg !== undefined && isAbsolute(xdg) ? join(xdg, 'psync') : join(env['HOME'] || homedir(), '.local', 'state', 'psync');
  return join(state, 'log');
}

/**
 * Make `dir` (and its missing parents, 0700) and check it: a real
 * directory owned by this user. Throws SafetyError otherwise. Returns `dir`.
 */
export function ensurePrivateDir(dir: string): string {
  const parent = dirname(dir);
  if (parent !== dir && !exists(parent)) ensurePrivateDir(parent);
  try {
    mkdirSync(dir, { mode: PRIVATE_DIR_MODE });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const info = lstatSync(dir);
  if (info.isSymbolicLink()) throw new SafetyError(`${dir} is a symlink: psync does not write its runtime files through one (remove it)`);
  if (!info.isDirectory()) throw new SafetyError(`${dir} is not a directory: psync keeps its runtime files there (remove it)`);
  if (info.uid !== uid()) throw new SafetyError(`${dir} belongs to uid ${info.uid}, not to this user (${uid()}): psync does not keep its runtime files there`);
  // Ours, and not a symlink (in a sticky /tmp nobody else can swap it now): others keep out.
  if ((info.mode & 0o777) !== PRIVATE_DIR_MODE) chmodSync(dir, PRIVATE_DIR_MODE);
  return dir;
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
