/**
 * psync's settings: the typed Config (what config.example.ts is checked
 * against), its defaults, and the checks that run before anything starts.
 */

import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from './core/errors.js';
import { DEFAULT_TEMPFILES, validatePattern } from './core/patterns.js';
import type { LogFormat } from './log.js';
import type { ProgressSetting } from './progress.js';

export interface Config {
  /** The left root, on this machine. */
  srcRoot: string;
  /** The right root: on `remoteHost` when set, else on this machine too. */
  dstRoot: string;
  /** Host (or ~/.ssh/config alias) of the right side; unset for two local roots. */
  remoteHost?: string;
  /** 0 warnings only, 1 what psync does (default), 2 every event, 3 everything. */
  debug: number;
  /** Temp-file globs: never synced (an editor's temp renamed onto a real name syncs the real name). */
  tempfiles: string[];
  /** Excluded globs: never synced, in either direction. */
  excludes: string[];
  /** Extra `--exclude` patterns for rsync runs only (rsync's own pattern syntax). */
  rsyncExcludes: string[];
  /** Extra rsync options, one per element (e.g. "--bwlimit=1000"). */
  rsyncExtra: string[];
  /** Refuse to run, and stop, while a program of this name runs on this machine. */
  banned?: string;
  /** Log what would be done; change nothing. */
  dryRun: boolean;
  /** Reconcile both trees once (the start-up reconcile), then exit. */
  syncOnly: boolean;
  /** Start watching without the start-up reconcile (the trees are known to be identical). */
  skipInitialSync: boolean;
  /** Let the helper delete non-empty directories and move onto them. */
  force: boolean;
  /**
   * Keep setuid and setgid bits on the files rsync makes. Off by default:
   * psync runs as root and keeps owners, so a user's setuid file on one side
   * would become a setuid file of that owner on the other.
   */
  preserveSuid: boolean;
  /** Settle delay: a path must be quiet this long before it is sent. */
  intervalSeconds: number;
  /** A path that never goes quiet is sent at least this often. */
  maxDelaySeconds: number;
  /**
   * Each side re-reads its whole tree against its index this often (0: never),
   * and sends what changed unseen: inotify misses writes made through a hard
   * link outside the tree and everything after a kernel queue overflow.
   */
  rescanSeconds: number;
  /** ssh client config file instead of ~/.ssh/config. */
  sshConfig?: string;
  /** Command that starts psync on the remote host (default: this node binary and install path). */
  remotePsync?: string;
  /** Keep a JSON status (state, counters, last error) in this file. */
  statusFile?: string;
  /**
   * Where the archive of each pair lives (what both sides last agreed on,
   * src/state/archive.ts); default `$XDG_STATE_HOME/psync`, else
   * `~/.local/state/psync`.
   */
  stateDir?: string;
  /**
   * A start-up reconcile that would delete more than this share (percent) of
   * the archive's entries halts the pair instead (exit 7); 100 lets it go ahead.
   */
  maxDeletePercent: number;
  /**
   * Forget what this pair agreed on: the start-up is a first run again (the
   * union of both trees; nothing is deleted). The way past a halt for a root
   * that lost its marker.
   */
  resetArchive: boolean;
  /**
   * After a fault worth retrying (a lost link, a side that died or stopped
   * answering), psync reconnects with backoff for at most this many seconds,
   * then exits 3; 0 exits at once; unset: it never gives up.
   */
  reconnectTimeoutSeconds?: number;
  /**
   * Also write the log to this file, rotated by size (log.ts); stderr then
   * gets warnings and errors only. Opened without following a symlink.
   */
  logFile?: string;
  /** `text` (dated lines) or `json` (one object a line, for log shippers). */
  logFormat: LogFormat;
  /** `auto`: a progress bar when stderr is a terminal, else a periodic progress line; `bar`, `line`, `off` (progress.ts). */
  progress: ProgressSetting;
}

export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];
export const PROGRESS_SETTINGS: readonly ProgressSetting[] = ['auto', 'bar', 'line', 'off'];

export const DEFAULTS = {
  debug: 1,
  tempfiles: [...DEFAULT_TEMPFILES],
  excludes: [] as string[],
  rsyncExcludes: [] as string[],
  rsyncExtra: [] as string[],
  dryRun: false,
  syncOnly: false,
  skipInitialSync: false,
  force: false,
  preserveSuid: false,
  intervalSeconds: 0.1,
  maxDelaySeconds: 5,
  rescanSeconds: 600,
  maxDeletePercent: 50,
  resetArchive: false,
  logFormat: 'text' as LogFormat,
  progress: 'auto' as ProgressSetting,
} satisfies Partial<Config>;

/** Check a Config and resolve its local roots; throws ConfigError with one clear line. */
export async function validateConfig(config: Config): Promise<Config> {
  if (config.syncOnly && config.skipInitialSync) throw new ConfigError('--sync-only and --skip-initial-sync exclude each other');
  if (!(config.intervalSeconds > 0 && config.intervalSeconds <= 60)) {
    throw new ConfigError(`--interval must be more than 0 and at most 60 seconds, got ${config.intervalSeconds}`);
  }
  if (!(config.maxDelaySeconds >= config.intervalSeconds)) {
    throw new ConfigError(`--max-delay (${config.maxDelaySeconds}) must be at least --interval (${config.intervalSeconds})`);
  }
  if (!(config.maxDeletePercent >= 0 && config.maxDeletePercent <= 100)) {
    throw new ConfigError(`--max-delete takes a percentage from 0 to 100, got ${config.maxDeletePercent}`);
  }
  if (config.reconnectTimeoutSeconds !== undefined && !(config.reconnectTimeoutSeconds >= 0)) {
    throw new ConfigError(`--reconnect-timeout must be 0 (exit at once) or more seconds, got ${config.reconnectTimeoutSeconds}`);
  }
  if (!(config.rescanSeconds >= 0)) throw new ConfigError(`--rescan must be 0 (off) or more seconds, got ${config.rescanSeconds}`);
  if (!Number.isInteger(config.debug) || config.debug < 0 || config.debug > 3) {
    throw new ConfigError(`--debug takes 0, 1, 2 or 3, got ${config.debug}`);
  }
  if (!LOG_FORMATS.includes(config.logFormat)) throw new ConfigError(`--log-format takes ${LOG_FORMATS.join(' or ')}, got ${JSON.stringify(config.logFormat)}`);
  if (!PROGRESS_SETTINGS.includes(config.progress)) {
    throw new ConfigError(`--progress takes ${PROGRESS_SETTINGS.join(', ')}, got ${JSON.stringify(config.progress)}`);
  }
  if (config.logFile === '') throw new ConfigError('--log-file is empty');
  for (const [option, patterns] of [['--excludes', config.excludes], ['--tempfiles', config.tempfiles]] as const) {
    for (const pattern of patterns) {
      const problem = validatePattern(pattern);
      if (problem !== undefined) throw new ConfigError(`${option} ${JSON.stringify(pattern)}: ${problem}`);
    }
  }
  const srcRoot = await checkLocalRoot(config.srcRoot, 'SRCROOT');
  let dstRoot: string;
  if (config.remoteHost === undefined) {
    dstRoot = await checkLocalRoot(config.dstRoot, 'DSTROOT');
    const [a, b] = [await realpath(srcRoot), await realpath(dstRoot)];
    if (a === b) throw new ConfigError(`SRCROOT and DSTROOT are the same directory: ${a}`);
    if (b.startsWith(`${a}/`) || a.startsWith(`${b}/`)) {
      throw new ConfigError(`one root is inside the other (${a} and ${b}); psync would sync its own writes`);
    }
  } else {
    if (config.remoteHost === '' || config.remoteHost.startsWith('-')) throw new ConfigError(`bad remote host ${JSON.stringify(config.remoteHost)}`);
    dstRoot = config.dstRoot;
    if (dstRoot === '' || resolve('/', dstRoot) === '/') throw new ConfigError('refusing / (or an empty path) as DSTROOT');
  }
  return { ...config, srcRoot, dstRoot };
}

async function checkLocalRoot(root: string, name: string): Promise<string> {
  if (root === '') throw new ConfigError(`${name} is empty`);
  const absolute = resolve(root);
  if (absolute === '/') throw new ConfigError(`refusing / as ${name}`);
  let info;
  try {
    info = await stat(absolute);
  } catch {
    throw new ConfigError(`${name} ${absolute} does not exist (create it first)`);
  }
  if (!info.isDirectory()) throw new ConfigError(`${name} ${absolute} is not a directory`);
  return isAbsolute(absolute) ? absolute.replace(/\/+$/, '') : absolute;
}
