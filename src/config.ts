/**
 * psync's settings: the schema every setting is checked against (zod), the
 * `Config` of one pair inferred from it (what the Supervisor runs and
 * config.example.ts is checked against), the defaults, how a config file's
 * common settings, its pairs and the command line combine into one Config
 * per pair (`resolvePairs`), and the checks that run before a pair starts
 * (`validateConfig`).
 *
 * A setting is either process-wide (one psync process: its log, its
 * progress output, --banned, where archives live) or per pair (everything
 * else). A config file holds process-wide settings, per-pair settings that
 * every pair takes unless it sets its own, and optionally `pairs`.
 */

import { realpath, stat } from 'node:fs/promises';
import { basename, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from './core/errors.js';
import { DEFAULT_TEMPFILES, validatePattern } from './core/patterns.js';
import { required } from './options.js';

/** For a missing root. */
const USAGE = 'psync [options] SRCROOT DSTROOT, or --config FILE (see --help)';

const strings = z.array(z.string());

/** A pair's name: it shows in every log line of the pair, and in file names. */
export const PAIR_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const pairName = z.string().regex(PAIR_NAME, 'a name of letters, digits, ".", "_" and "-" (at most 64, not starting with "." or "-")');

/** Settings of the whole process: the same for every pair it runs. */
const processShape = {
  /** 0 quiet (start, stop, a line per batch, warnings, errors), 1 each action (default), 2 every event, 3 everything. */
  debug: z.number(),
  /**
   * Also write the log to this file, rotated by size (log.ts); stderr then
   * gets warnings and errors only. Opened without following a symlink.
   */
  logFile: z.string().optional(),
  /** `text` (a line per event) or `json` (an object per line, for log shippers). */
  logFormat: z.enum(['text', 'json']),
  /** `auto`: a bar on a TTY stderr, a periodic line otherwise; `bar`, `line`, or `off`. */
  progress: z.enum(['auto', 'bar', 'line', 'off']),
  /** Refuse to run, and stop, while a program of this name runs on this machine. */
  banned: z.string().optional(),
  /**
   * Where the archive of each pair lives (what both sides last agreed on,
   * src/state/archive.ts); default `$XDG_STATE_HOME/psync`, else
   * `~/.local/state/psync`.
   */
  stateDir: z.string().optional(),
};

/** Settings of one pair. */
const pairShape = {
  /** The pair's name, in its log lines (default: the left root's base name). */
  name: pairName,
  /** The left root, on this machine. */
  srcRoot: z.string(),
  /** The right root: on `remoteHost` when set, else on this machine too. */
  dstRoot: z.string(),
  /** Host (or ~/.ssh/config alias) of the right side; unset for two local roots. */
  remoteHost: z.string().optional(),
  /** Temp-file globs: never synced (an editor's temp renamed onto a real name syncs the real name). */
  tempfiles: strings,
  /** Excluded globs: never synced, in either direction. */
  excludes: strings,
  /** Extra `--exclude` patterns for rsync runs only (rsync's own pattern syntax). */
  rsyncExcludes: strings,
  /** Extra rsync options, one per element (e.g. "--bwlimit=1000"). */
  rsyncExtra: strings,
  /** Log what would be done; change nothing. */
  dryRun: z.boolean(),
  /** Reconcile both trees once (the start-up reconcile), then exit. */
  syncOnly: z.boolean(),
  /** Start watching without the start-up reconcile (the trees are known to be identical). */
  skipInitialSync: z.boolean(),
  /** Let the helper delete non-empty directories and move onto them. */
  force: z.boolean(),
  /**
   * Keep setuid and setgid bits on the files rsync makes. Off by default:
   * psync runs as root and keeps owners, so a user's setuid file on one side
   * would become a setuid file of that owner on the other.
   */
  preserveSuid: z.boolean(),
  /** Settle delay: a path must be quiet this long before it is sent. */
  intervalSeconds: z.number(),
  /** A path that never goes quiet is sent at least this often. */
  maxDelaySeconds: z.number(),
  /**
   * Each side re-reads its whole tree against its index this often (0: never),
   * and sends what changed unseen: inotify misses writes made through a hard
   * link outside the tree and everything after a kernel queue overflow.
   */
  rescanSeconds: z.number(),
  /** ssh client config file instead of ~/.ssh/config. */
  sshConfig: z.string().optional(),
  /** Command that starts psync on the remote host (default: this node binary and install path). */
  remotePsync: z.string().optional(),
  /** Keep this pair's JSON status in this file instead of `<statusDir>/<pairId>.json` (src/brain/status.ts). */
  statusFile: z.string().optional(),
  /**
   * A start-up reconcile that would delete more than this share (percent) of
   * the archive's entries halts the pair instead (exit 7); 100 lets it go ahead.
   */
  maxDeletePercent: z.number(),
  /**
   * Forget what this pair agreed on: the start-up is a first run again (the
   * union of both trees; nothing is deleted). The way past a halt for a root
   * that lost its marker.
   */
  resetArchive: z.boolean(),
  /**
   * After a fault worth retrying (a lost link, a side that died or stopped
   * answering), psync reconnects with backoff for at most this many seconds,
   * then exits 3; 0 exits at once; unset: it never gives up.
   */
  reconnectTimeoutSeconds: z.number().optional(),
};

/** Everything one pair runs with: its own settings and the process-wide ones. */
export const configSchema = z.strictObject({ ...processShape, ...pairShape });
export type Config = z.infer<typeof configSchema>;

/** Names of the process-wide settings (the same for every pair of a process). */
export const PROCESS_SETTINGS = Object.keys(processShape) as Array<keyof typeof processShape>;
/** Names of the per-pair settings. */
export const PAIR_SETTINGS = Object.keys(pairShape) as Array<keyof typeof pairShape>;

const pairEntrySchema = z.strictObject(pairShape).partial().extend({ name: pairShape.name, srcRoot: pairShape.srcRoot, dstRoot: pairShape.dstRoot });

/**
 * A config file: process-wide settings, per-pair settings (the pairs'
 * common ones, or the one pair's when there is no `pairs`), and `pairs`.
 */
export const configFileSchema = z
  .strictObject({ ...processShape, ...pairShape, pairs: z.array(pairEntrySchema).min(1) })
  .partial()
  .superRefine((file, context) => {
    if (file.pairs === undefined) return;
    for (const key of ['srcRoot', 'dstRoot', 'name', 'statusFile'] as const) {
      if (file[key] !== undefined) context.addIssue({ code: 'custom', path: [key], message: `belongs in each pair when the file has "pairs"` });
    }
    const seen = new Set<string>();
    file.pairs.forEach((pair, index) => {
      if (seen.has(pair.name)) context.addIssue({ code: 'custom', path: ['pairs', index, 'name'], message: `another pair is named ${JSON.stringify(pair.name)} already (names must be unique)` });
      seen.add(pair.name);
    });
  });
export type ConfigFile = z.input<typeof configFileSchema>;

export const DEFAULTS = {
  debug: 1,
  logFormat: 'text',
  progress: 'auto',
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
} as const satisfies Partial<Config>;

/** The list settings: on the command line each repeated option adds to the file's list. */
const LIST_SETTINGS = ['tempfiles', 'excludes', 'rsyncExcludes', 'rsyncExtra'] as const;
type ListSetting = (typeof LIST_SETTINGS)[number];

/** What the command line says: settings it replaces, entries it adds to lists, and the roots it names. */
export interface CommandLine {
  /** A setting left undefined is not given (the file's or the default holds). */
  readonly settings: { readonly [K in Exclude<keyof Config, ListSetting>]?: Config[K] | undefined };
  readonly added: Partial<Record<ListSetting, readonly string[]>>;
}

/** Settings that name files: relative ones are taken from the working directory. */
const PATH_SETTINGS = ['sshConfig', 'statusFile', 'stateDir', 'logFile'] as const;

/**
 * One Config per pair: the defaults, then the file's common settings, then
 * the pair's own, then the command line (which wins; its list entries are
 * added to the file's lists). Throws ConfigError when the roots or the pairs
 * cannot be told, or a setting cannot be shared by several pairs.
 */
export function resolvePairs(file: ConfigFile, commandLine: CommandLine): Config[] {
  const { pairs, ...common } = file;
  const cli = commandLine.settings;
  if (pairs !== undefined) {
    if (cli.srcRoot !== undefined || cli.dstRoot !== undefined) {
      throw new ConfigError('the config file lists its pairs: give no SRCROOT or DSTROOT on the command line (or use a config without "pairs")');
    }
    if (pairs.length > 1 && cli.statusFile !== undefined) throw new ConfigError('--status-file names the file of one pair: set "statusFile" in each pair instead');
  }
  const entries = pairs ?? [{ ...common, ...defined({ srcRoot: cli.srcRoot, dstRoot: cli.dstRoot }) }];
  return entries.map((entry) => {
    const merged = { ...DEFAULTS, ...defined(common), ...defined(entry), ...defined(cli) };
    const srcRoot = required(merged.srcRoot, 'SRCROOT', USAGE);
    const config: Record<string, unknown> = { ...merged, srcRoot, dstRoot: required(merged.dstRoot, 'DSTROOT', USAGE) };
    config['name'] ??= derivedName(srcRoot);
    for (const list of LIST_SETTINGS) config[list] = [...(entry[list] ?? common[list] ?? DEFAULTS[list]), ...(commandLine.added[list] ?? [])];
    for (const key of PATH_SETTINGS) if (typeof config[key] === 'string') config[key] = resolve(config[key]);
    const checked = configSchema.safeParse(config);
    if (!checked.success) {
      const [issue] = checked.error.issues;
      throw new ConfigError(`${issue!.path.join('.')}: ${issue!.message}`);
    }
    return checked.data;
  });
}

/** The name of a pair given without one: the left root's base name, made safe. */
export function derivedName(srcRoot: string): string {
  const name = basename(resolve(srcRoot)).replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[._-]+/, '').slice(0, 64);
  return name === '' ? 'pair' : name;
}

/** The object without its undefined values (a .ts config may write `remoteHost: undefined`). */
function defined<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as Partial<T>;
}

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

/**
 * `host:/path` given as a local DSTROOT that does not exist: the user most
 * likely meant the remote form, which psync spells `-r host /path`.
 */
export function remoteRootHint(root: string): string | undefined {
  const match = /^([^/:\s]+):(.+)$/.exec(root);
  return match === null ? undefined : `; to sync with ${match[2]} on ${match[1]}, use -r ${match[1]} SRCROOT ${match[2]}`;
}

async function checkLocalRoot(root: string, name: 'SRCROOT' | 'DSTROOT'): Promise<string> {
  if (root === '') throw new ConfigError(`${name} is empty`);
  const absolute = resolve(root);
  if (absolute === '/') throw new ConfigError(`refusing / as ${name}`);
  let info;
  try {
    info = await stat(absolute);
  } catch {
    const hint = name === 'DSTROOT' ? (remoteRootHint(root) ?? '') : '';
    throw new ConfigError(`${name} ${absolute} does not exist (create it first)${hint}`);
  }
  if (!info.isDirectory()) throw new ConfigError(`${name} ${absolute} is not a directory`);
  return isAbsolute(absolute) ? absolute.replace(/\/+$/, '') : absolute;
}
