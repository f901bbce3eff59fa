/**
 * psync's command line: `psync [options] SRCROOT DSTROOT` runs the brain
 * (cli.ts starts the children itself). Only this module turns errors into
 * exit codes. Importing it runs it.
 */

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { Supervisor } from './brain/supervisor.js';
import { findBanned } from './banned.js';
import { DEFAULTS, validateConfig, type Config } from './config.js';
import { BannedError, ConfigError, ConnectionError, ProtocolError, RsyncError, SafetyError } from './core/errors.js';
import type { Side } from './core/types.js';
import { defaultRemotePsync } from './install.js';
import { createLogger, flushLogger, LOG_FILE_KEEP, LOG_FILE_MAX_BYTES, type LogFormat, type Logger } from './log.js';
import { ProgressBoard, resolveProgress, type ProgressSetting } from './progress.js';
import type { Endpoint } from './transport/endpoint.js';
import { LocalEndpoint } from './transport/local.js';
import { SshEndpoint } from './transport/ssh.js';

/** Exit codes; the README lists them. */
export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  connection: 3,
  rsync: 4,
  protocol: 5,
  banned: 6,
  safety: 7,
} as const;

/** The version of this install, from its package.json. */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

async function main(argv: string[]): Promise<number> {
  let config: Config;
  try {
    const parsed = await parseArgs(argv);
    if (parsed === 'answered') return EXIT.ok;
    config = await validateConfig(parsed);
  } catch (error) {
    return report(error, undefined);
  }
  const board = new ProgressBoard(resolveProgress(config.progress, process.stderr.isTTY === true));
  let log: Logger;
  try {
    log = createLogger({ debug: config.debug, format: config.logFormat, ...(config.logFile === undefined ? {} : { file: config.logFile }), stderr: (text) => board.write(text) });
  } catch (error) {
    return report(error, undefined);
  }
  let code: number;
  try {
    code = await runPsync(config, log, board);
  } catch (error) {
    code = report(error, log);
  }
  // The one-line report must come after every log line, and winston writes asynchronously.
  board.close();
  await flushLogger(log);
  flushReport();
  return code;
}

let pendingReport: string | undefined;

/** Write the report line held back by `report` (after the log is flushed). */
function flushReport(): void {
  if (pendingReport !== undefined) process.stderr.write(pendingReport);
  pendingReport = undefined;
}

/** The parsed settings, or 'answered' when --help or --version already printed what was asked. */
async function parseArgs(argv: string[]): Promise<Config | 'answered'> {
  const parsed = await yargs(argv)
    .scriptName('psync')
    .usage('$0 [options] SRCROOT DSTROOT\n\nKeeps SRCROOT (local, the left side) and DSTROOT (on --remote-host, or local) identical in near real time, both ways.')
    .command('$0 [srcroot] [dstroot]', false)
    .positional('srcroot', { type: 'string', describe: 'left root, on this machine' })
    .positional('dstroot', { type: 'string', describe: 'right root, on --remote-host (or local)' })
    .option('remote-host', { alias: 'r', type: 'string', describe: 'host (or ~/.ssh/config alias) of the right side; without it both roots are local' })
    .option('debug', { alias: 'd', type: 'number', describe: 'log level: 0 quiet (start, stop, a line per batch, warnings), 1 each action (default), 2 events, 3 everything' })
    .option('tempfiles', { alias: 't', type: 'string', describe: 'temp-file glob, never synced under that name (repeatable; adds to the built-in editor/office list)' })
    .option('excludes', { alias: 'e', type: 'string', describe: 'exclude glob (repeatable): without a slash it matches the base name at any depth (*.skip matches a/b/c.skip); with a slash, the path from the root; a trailing / matches directories only' })
    .option('rsync-excludes', { type: 'string', describe: 'extra rsync --exclude pattern for every rsync run (repeatable)' })
    .option('extra', { alias: 'x', type: 'string', describe: 'extra rsync option, e.g. -x=--bwlimit=1000 (repeatable)' })
    .option('banned', { alias: 'b', type: 'string', describe: 'refuse to run, and stop, while a program of this name runs here' })
    .option('translate', { alias: 'T', type: 'string', describe: 'FROM:TO path translation (not supported: give different SRCROOT and DSTROOT)' })
    .option('dry-run', { alias: 'n', type: 'boolean', describe: 'log what would be done, change nothing' })
    .option('sync-only', { alias: 's', type: 'boolean', describe: 'reconcile both trees once (with -n: list what it would do), then exit' })
    .option('skip-initial-sync', { alias: 'k', type: 'boolean', describe: 'start watching without the start-up reconcile (entries equal on both sides are still taken as agreed)' })
    .option('force', { alias: 'f', type: 'boolean', describe: 'let deletes and moves replace non-empty directories' })
    .option('preserve-suid', { type: 'boolean', describe: 'keep setuid/setgid bits on synced files (by default they are dropped: psync runs as root and keeps owners)' })
    .option('interval', { alias: 'i', type: 'number', describe: `settle delay in seconds: a path must be quiet this long before it is sent (default ${DEFAULTS.intervalSeconds})` })
    .option('max-delay', { type: 'number', describe: `a path that never goes quiet is sent at least every this many seconds (default ${DEFAULTS.maxDelaySeconds})` })
    .option('rescan', { type: 'number', describe: `re-read both trees against the index every this many seconds and send what inotify missed; 0 turns it off (default ${DEFAULTS.rescanSeconds})` })
    .option('ssh-config', { type: 'string', describe: 'ssh client config file instead of ~/.ssh/config' })
    .option('remote-psync', { type: 'string', describe: 'command that starts psync on the remote host (default: this node and install path)' })
    .option('status-file', { type: 'string', describe: 'keep a JSON status (state, counters, last error) in this file' })
    .option('state-dir', { type: 'string', describe: 'where the archive of each pair is kept (default $XDG_STATE_HOME/psync, else ~/.local/state/psync)' })
    .option('max-delete', { type: 'number', describe: `halt (exit 7) rather than let a start-up delete more than this percentage of the archived entries; 100 goes ahead (default ${DEFAULTS.maxDeletePercent})` })
    .option('reconnect-timeout', { type: 'number', describe: 'after a lost link or side, keep trying to reconnect for this many seconds, then exit 3; 0 exits at once (default: never give up)' })
    .option('reset', { type: 'boolean', describe: 'forget what this pair agreed on: start as a first run (the union of both trees, nothing deleted)' })
    .option('log-file', { type: 'string', describe: `also log to this file, rotated at ${LOG_FILE_MAX_BYTES / 1024 / 1024} MiB (${LOG_FILE_KEEP} old files kept); stderr then gets warnings and errors only` })
    .option('log-format', { type: 'string', describe: 'text (dated lines, the default) or json (one object a line)' })
    .option('progress', { type: 'string', describe: 'auto (default): a bar on a terminal, else a progress line every 10 s; bar, line or off' })
    .option('config', { alias: 'c', type: 'string', describe: 'settings file (.json, or .js/.mjs exporting a Config); options on the command line win' })
    .strictOptions()
    .version(VERSION)
    .help()
    .alias('help', 'h')
    .epilogue(
      [
        'Without -r both roots are local: psync /tmp/a /tmp/b tries it out on one machine.',
        'Exit codes: 0 done (or stopped by SIGINT/SIGTERM/SIGHUP), 1 internal error, 2 bad usage or settings,',
        '3 cannot reach the remote host (refused host key included), or lost it for longer than --reconnect-timeout, 4 rsync failed,',
        '5 a filter or helper failed (a root vanished, a protocol error), 6 --banned program running,',
        '7 refused as unsafe (running as root with an rsync older than 3.5.0 included).',
      ].join('\n'),
    )
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((message, error) => {
      throw error ?? new ConfigError(message);
    })
    .parseAsync();

  if (parsed.help === true || parsed.version === true) return 'answered';
  if (parsed.translate !== undefined) {
    throw new ConfigError('-T/--translate is not supported: psync syncs roots with different paths directly (psync SRCROOT DSTROOT)');
  }
  const file = parsed.config === undefined ? {} : await loadConfigFile(parsed.config);
  const given = <T>(value: T | undefined, fallback: T): T => (value === undefined ? fallback : value);
  const config: Config = {
    ...DEFAULTS,
    ...file,
    srcRoot: required(parsed.srcroot ?? file.srcRoot, 'SRCROOT'),
    dstRoot: required(parsed.dstroot ?? file.dstRoot, 'DSTROOT'),
    debug: given(parsed.debug, file.debug ?? DEFAULTS.debug),
    tempfiles: [...(file.tempfiles ?? DEFAULTS.tempfiles), ...repeated(parsed.tempfiles)],
    excludes: [...(file.excludes ?? []), ...repeated(parsed.excludes)],
    rsyncExcludes: [...(file.rsyncExcludes ?? []), ...repeated(parsed['rsync-excludes'])],
    rsyncExtra: [...(file.rsyncExtra ?? []), ...repeated(parsed.extra)],
    dryRun: given(parsed['dry-run'], file.dryRun ?? false),
    syncOnly: given(parsed['sync-only'], file.syncOnly ?? false),
    skipInitialSync: given(parsed['skip-initial-sync'], file.skipInitialSync ?? false),
    force: given(parsed.force, file.force ?? false),
    preserveSuid: given(parsed['preserve-suid'], file.preserveSuid ?? false),
    intervalSeconds: given(parsed.interval, file.intervalSeconds ?? DEFAULTS.intervalSeconds),
    maxDelaySeconds: given(parsed['max-delay'], file.maxDelaySeconds ?? DEFAULTS.maxDelaySeconds),
    rescanSeconds: given(parsed.rescan, file.rescanSeconds ?? DEFAULTS.rescanSeconds),
    maxDeletePercent: given(parsed['max-delete'], file.maxDeletePercent ?? DEFAULTS.maxDeletePercent),
    resetArchive: given(parsed.reset, file.resetArchive ?? false),
    logFormat: given(parsed['log-format'] as LogFormat | undefined, file.logFormat ?? DEFAULTS.logFormat),
    progress: given(parsed.progress as ProgressSetting | undefined, file.progress ?? DEFAULTS.progress),
  };
  const logFile = parsed['log-file'] ?? file.logFile;
  if (logFile !== undefined) config.logFile = resolve(logFile);
  const reconnectTimeout = parsed['reconnect-timeout'] ?? file.reconnectTimeoutSeconds;
  if (reconnectTimeout !== undefined) config.reconnectTimeoutSeconds = reconnectTimeout;
  const remoteHost = parsed['remote-host'] ?? file.remoteHost;
  if (remoteHost !== undefined) config.remoteHost = remoteHost;
  const banned = parsed.banned ?? file.banned;
  if (banned !== undefined) config.banned = banned;
  const sshConfig = parsed['ssh-config'] ?? file.sshConfig;
  if (sshConfig !== undefined) config.sshConfig = resolve(sshConfig);
  const statusFile = parsed['status-file'] ?? file.statusFile;
  if (statusFile !== undefined) config.statusFile = resolve(statusFile);
  const stateDir = parsed['state-dir'] ?? file.stateDir;
  if (stateDir !== undefined) config.stateDir = resolve(stateDir);
  const remotePsync = parsed['remote-psync'] ?? file.remotePsync;
  if (remotePsync !== undefined) config.remotePsync = remotePsync;
  return config;
}

/**
 * A repeatable option's values. They are declared as plain strings, not yargs
 * arrays: an array option swallows the words after it, so `-e '*.o' SRC DST`
 * would read the roots as patterns. yargs gathers a repeated option itself.
 */
function repeated(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function required(value: string | undefined, name: string): string {
  if (value === undefined) throw new ConfigError(`${name} is missing: psync [options] SRCROOT DSTROOT (see --help)`);
  return value;
}

async function loadConfigFile(path: string): Promise<Partial<Config>> {
  const absolute = resolve(path);
  try {
    if (extname(absolute) === '.json') return JSON.parse(await readFile(absolute, 'utf8')) as Partial<Config>;
    const module = (await import(pathToFileURL(absolute).href)) as { default?: Partial<Config> };
    return module.default ?? {};
  } catch (error) {
    throw new ConfigError(`cannot read the config file ${absolute}: ${(error as Error).message}`, { cause: error });
  }
}

async function runPsync(config: Config, log: Logger, board: ProgressBoard): Promise<number> {
  if (config.banned !== undefined && (await findBanned(config.banned))) {
    return report(new BannedError(`${config.banned} is running: psync will not start (--banned)`), log);
  }
  const supervisor = new Supervisor(config, () => connect(config, log), log, board);
  // SIGHUP (the terminal closed, or `kill -HUP`) stops psync as cleanly as SIGINT and SIGTERM.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const onSignal = (): void => supervisor.stop();
  for (const signal of signals) process.on(signal, onSignal);
  // Node exits (code 0) once nothing is left to wait for: while psync runs, that is a bug (a promise that
  // nothing will ever settle), never a clean end. Say so and fail instead of ending quietly.
  const onDrained = (): void => {
    log.error(`internal error: psync had nothing left to wait for while ${supervisor.describe()}; exiting`);
    void flushLogger(log).then(() => process.exit(EXIT.internal));
  };
  process.on('beforeExit', onDrained);
  const bannedCheck =
    config.banned === undefined
      ? undefined
      : setInterval(() => {
          void findBanned(config.banned!).then((found) => {
            if (found) supervisor.abortFor(new BannedError(`${config.banned} started: psync stops (--banned)`));
          });
        }, 5_000);
  try {
    const outcome = await supervisor.run();
    if (!outcome.ok) return report(outcome.error, log);
    return EXIT.ok;
  } finally {
    clearInterval(bannedCheck);
    process.off('beforeExit', onDrained);
    for (const signal of signals) process.off(signal, onSignal);
  }
}

/** Both sides' endpoints for one session: the left root here, the right one here too or over SSH. */
async function connect(config: Config, log: Logger): Promise<Record<Side, Endpoint>> {
  const left = new LocalEndpoint('left', config.srcRoot);
  if (config.remoteHost === undefined) return { left, right: new LocalEndpoint('right', config.dstRoot, { separateRsync: true }) };
  log.verbose(`connecting to ${config.remoteHost}`);
  const right = await SshEndpoint.connect({
    side: 'right',
    host: config.remoteHost,
    root: config.dstRoot,
    remotePsync: config.remotePsync ?? defaultRemotePsync(),
    ...(config.sshConfig === undefined ? {} : { sshConfigFile: config.sshConfig }),
    log: (level, message) => log.log(level, message),
  });
  return { left, right };
}

/** One clear line on stderr and the exit code for an error's class. */
function report(error: unknown, log: Logger | undefined): number {
  const err = error instanceof Error ? error : new Error(String(error));
  const code =
    err instanceof ConfigError
      ? EXIT.usage
      : err instanceof ConnectionError
        ? EXIT.connection
        : err instanceof RsyncError
          ? EXIT.rsync
          : err instanceof ProtocolError
            ? EXIT.protocol
            : err instanceof BannedError
              ? EXIT.banned
              : err instanceof SafetyError
                ? EXIT.safety
                : EXIT.internal;
  // Always one plain line, whatever the log level and format, so scripts and people can rely on it.
  // Once a logger exists the line waits for it to flush (see main), so that it comes last.
  if (code === EXIT.internal && err.stack !== undefined) process.stderr.write(`${err.stack}\n`);
  const line = `psync: ${err.message.split('\n')[0]}\n`;
  if (log === undefined) process.stderr.write(line);
  else pendingReport = line;
  return code;
}

main(hideBin(process.argv)).then(
  (code) => {
    process.exitCode = code;
    // Done means done: exit even if a watch, a timer or a child lingers (a service manager
    // waits for the exit), once what was written has reached the pipes.
    process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
  },
  (error: unknown) => {
    process.stderr.write(`psync: internal error: ${String(error)}\n`);
    process.exitCode = EXIT.internal;
  },
);
