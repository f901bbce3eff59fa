/**
 * psync's command line: `psync [options] SRCROOT DSTROOT` runs one pair,
 * `psync --config FILE` runs the pairs the file lists, all in this process:
 * one Supervisor per pair, each with its own log child ({ pair: name }),
 * each ending on its own (one pair that fails or halts does not stop the
 * others). psync exits once every pair has ended: 0 when all stopped
 * cleanly, else the code of the first pair that failed. (cli.ts starts the
 * children itself.) Only this module turns a sync's errors into exit codes
 * (through exitCodes.ts exitCodeOf, which the service commands share).
 * Importing it runs it.
 */

import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { Supervisor } from './brain/supervisor.js';
import { findBanned } from './banned.js';
import { DEFAULTS, resolvePairs, validateConfig, type CommandLine, type Config, type ConfigFile } from './config.js';
import { loadConfigFile } from './configFile.js';
import { BannedError, ConfigError } from './core/errors.js';
import type { Side } from './core/types.js';
import { defaultRemotePsync } from './install.js';
import { createLogger, flushLogger, LOG_FILE_KEEP, LOG_FILE_MAX_BYTES, type Logger } from './log.js';
import { repeated } from './options.js';
import { ProgressBoard, resolveProgress } from './progress.js';
import type { Endpoint } from './transport/endpoint.js';
import { LocalEndpoint } from './transport/local.js';
import { EXIT, exitCodeOf } from './exitCodes.js';
import { SshEndpoint } from './transport/ssh.js';
import { explainUsageError, extraArguments } from './usage.js';

/** The version of this install, from its package.json. */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** What to run: one Config per pair; `listed` when they come from a config file's `pairs`. */
interface Plan {
  readonly pairs: readonly Config[];
  readonly listed: boolean;
}

async function main(argv: string[]): Promise<number> {
  let plan: Plan;
  try {
    const parsed = await parseArgs(argv);
    if (parsed === 'answered') return EXIT.ok;
    // A pair given alone is checked before anything starts, as it always was; listed pairs are
    // checked one by one as they start, so that a broken one does not keep the others from running.
    plan = parsed.listed ? parsed : { ...parsed, pairs: [await validateConfig(parsed.pairs[0]!)] };
  } catch (error) {
    return report(error, undefined);
  }
  // The process-wide settings are the same in every pair's Config.
  const settings = plan.pairs[0]!;
  const board = new ProgressBoard(resolveProgress(settings.progress, process.stderr.isTTY === true));
  let log: Logger;
  try {
    log = createLogger({ debug: settings.debug, format: settings.logFormat, ...(settings.logFile === undefined ? {} : { file: settings.logFile }), stderr: (text) => board.write(text) });
  } catch (error) {
    return report(error, undefined);
  }
  let code: number;
  try {
    code = await runPsync(plan, log, board);
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

/** The pairs to run, or 'answered' when --help or --version already printed what was asked. */
async function parseArgs(argv: string[]): Promise<Plan | 'answered'> {
  const parsed = await yargs(argv)
    .scriptName('psync')
    .usage('$0 [options] SRCROOT DSTROOT\n$0 [options] --config FILE\n$0 status [--json]          what each running pair is doing\n$0 check [options] SRCROOT DSTROOT   compare two roots, change nothing (see psync check --help)\n\nKeeps SRCROOT (local, the left side) and DSTROOT (on --remote-host, or local) identical in near real time, both ways.')
    .command('$0 [srcroot] [dstroot]', false)
    .positional('srcroot', { type: 'string', describe: 'left root, on this machine' })
    .positional('dstroot', { type: 'string', describe: 'right root, on --remote-host (or local)' })
    .option('remote-host', { alias: 'r', type: 'string', describe: 'host (or ~/.ssh/config alias) of the right side; without it both roots are local' })
    .option('debug', { alias: 'd', type: 'number', describe: 'log level: 0 quiet (start, stop, a line per batch, warnings), 1 each action (default), 2 events, 3 everything' })
    .option('log-file', { type: 'string', describe: `also log to this file, rotated at ${LOG_FILE_MAX_BYTES / 1024 / 1024} MiB (${LOG_FILE_KEEP} old files kept); stderr then gets warnings and errors only` })
    .option('log-format', { type: 'string', choices: ['text', 'json'], describe: `text (dated lines) or json (one object a line) (default ${DEFAULTS.logFormat})` })
    .option('progress', { type: 'string', choices: ['auto', 'bar', 'line', 'off'], describe: `auto: a bar on a terminal, else a progress line every 10 s; bar, line or off (default ${DEFAULTS.progress})` })
    .option('tempfiles', { alias: 't', type: 'string', describe: 'temp-file glob, never synced under that name (repeatable; adds to the built-in editor/office list)' })
    .option('excludes', { alias: 'e', type: 'string', describe: 'exclude glob (repeatable): without a slash it matches the base name at any depth (*.skip matches a/b/c.skip); with a slash, the path from the root; a trailing / matches directories only' })
    .option('rsync-excludes', { type: 'string', describe: 'extra rsync --exclude pattern for every rsync run (repeatable)' })
    .option('extra', { alias: 'x', type: 'string', describe: 'extra rsync option, written with "=": -x=--bwlimit=1000 (repeatable)' })
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
    .option('status-file', { type: 'string', describe: 'keep a JSON status (state, counters, last error) in this file (one pair only)' })
    .option('state-dir', { type: 'string', describe: 'where the archive of each pair is kept (default $XDG_STATE_HOME/psync, else ~/.local/state/psync)' })
    .option('max-delete', { type: 'number', describe: `halt (exit 7) rather than let a start-up delete more than this percentage of the archived entries; 100 goes ahead (default ${DEFAULTS.maxDeletePercent})` })
    .option('reconnect-timeout', { type: 'number', describe: 'after a lost link or side, keep trying to reconnect for this many seconds, then exit 3; 0 exits at once (default: never give up)' })
    .option('reset', { type: 'boolean', describe: 'forget what this pair agreed on: start as a first run (the union of both trees, nothing deleted)' })
    .option('config', { alias: 'c', type: 'string', describe: 'settings file (.json, or .ts/.js/.mjs exporting them; see config.example.ts), possibly with several pairs; options on the command line win' })
    .strictOptions()
    .version(VERSION)
    .help()
    .alias('help', 'h')
    .epilogue(
      [
        'Without -r both roots are local: psync /tmp/a /tmp/b tries it out on one machine.',
        'Exit codes: 0 done (or stopped by SIGINT/SIGTERM/SIGHUP), 1 internal error, 2 bad usage or settings (a missing root included),',
        '3 cannot reach the remote host (refused host key included), or lost it for longer than --reconnect-timeout, 4 rsync failed,',
        '5 a filter or helper failed (a root vanished, a protocol error, the remote psync did not start), 6 --banned program running,',
        '7 refused as unsafe (another psync runs this pair or root; running as root with an rsync older than 3.5.0; a halt).',
        'With several pairs: 0 when every pair stopped cleanly, else the code of the first pair that failed.',
      ].join('\n'),
    )
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((message, error) => {
      throw error ?? new ConfigError(explainUsageError(message, argv));
    })
    .parseAsync();

  if (parsed.help === true || parsed.version === true) return 'answered';
  const extra = extraArguments(parsed._);
  if (extra !== undefined) throw new ConfigError(extra);
  if (parsed.translate !== undefined) {
    throw new ConfigError('-T/--translate is not supported: psync syncs roots with different paths directly (psync SRCROOT DSTROOT)');
  }
  const file: ConfigFile = parsed.config === undefined ? {} : await loadConfigFile(parsed.config);
  const settings: CommandLine['settings'] = {
    srcRoot: parsed.srcroot,
    dstRoot: parsed.dstroot,
    remoteHost: parsed['remote-host'],
    debug: numeric(parsed.debug, '--debug'),
    logFile: parsed['log-file'],
    logFormat: parsed['log-format'] as Config['logFormat'] | undefined,
    progress: parsed.progress as Config['progress'] | undefined,
    banned: parsed.banned,
    dryRun: parsed['dry-run'],
    syncOnly: parsed['sync-only'],
    skipInitialSync: parsed['skip-initial-sync'],
    force: parsed.force,
    preserveSuid: parsed['preserve-suid'],
    intervalSeconds: numeric(parsed.interval, '--interval'),
    maxDelaySeconds: numeric(parsed['max-delay'], '--max-delay'),
    rescanSeconds: numeric(parsed.rescan, '--rescan'),
    sshConfig: parsed['ssh-config'],
    remotePsync: parsed['remote-psync'],
    statusFile: parsed['status-file'],
    stateDir: parsed['state-dir'],
    maxDeletePercent: numeric(parsed['max-delete'], '--max-delete'),
    resetArchive: parsed.reset,
    reconnectTimeoutSeconds: numeric(parsed['reconnect-timeout'], '--reconnect-timeout'),
  };
  const added = {
    tempfiles: repeated(parsed.tempfiles),
    excludes: repeated(parsed.excludes),
    rsyncExcludes: repeated(parsed['rsync-excludes']),
    rsyncExtra: repeated(parsed.extra),
  };
  return { pairs: resolvePairs(file, { settings, added }), listed: file.pairs !== undefined };
}

/** A number option's value; yargs reads `-d abc` as NaN. */
function numeric(value: number | undefined, option: string): number | undefined {
  if (value !== undefined && Number.isNaN(value)) throw new ConfigError(`${option} takes a number`);
  return value;
}

/** A pair that ended with an error. */
interface Failure {
  readonly pair: string;
  readonly error: unknown;
}

/**
 * Run every pair of the plan at once until all have ended. The exit code is
 * 0 when every pair stopped cleanly, else that of the first pair to fail.
 */
async function runPsync(plan: Plan, log: Logger, board: ProgressBoard): Promise<number> {
  const { banned } = plan.pairs[0]!;
  if (banned !== undefined && (await findBanned(banned))) {
    return report(new BannedError(`${banned} is running: psync will not start (--banned)`), log);
  }
  const running = new Map<string, Supervisor>();
  const failures: Failure[] = [];
  let stopping: ((supervisor: Supervisor) => void) | undefined;
  // SIGHUP (the terminal closed, or `kill -HUP`) stops psync as cleanly as SIGINT and SIGTERM.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const stopAll = (how: (supervisor: Supervisor) => void): void => {
    stopping ??= how;
    for (const supervisor of running.values()) how(supervisor);
  };
  const onSignal = (): void => stopAll((supervisor) => supervisor.stop());
  for (const signal of signals) process.on(signal, onSignal);
  // Node exits (code 0) once nothing is left to wait for: while psync runs, that is a bug (a promise that
  // nothing will ever settle), never a clean end. Say so and fail instead of ending quietly.
  const onDrained = (): void => {
    const where = [...running].map(([name, supervisor]) => (plan.listed ? `pair ${name}: ${supervisor.describe()}` : supervisor.describe()));
    log.error(`internal error: psync had nothing left to wait for while ${where.join('; ')}; exiting`);
    void flushLogger(log).then(() => process.exit(EXIT.internal));
  };
  process.on('beforeExit', onDrained);
  const bannedCheck =
    banned === undefined
      ? undefined
      : setInterval(() => {
          void findBanned(banned).then((found) => {
            if (found) stopAll((supervisor) => supervisor.abortFor(new BannedError(`${banned} started: psync stops (--banned)`)));
          });
        }, 5_000);

  const runPair = async (config: Config): Promise<void> => {
    // Only pairs from a config's `pairs` are named in each line: a pair given on the command line is the only one.
    const pairLog = plan.listed ? log.child({ pair: config.name }) : log;
    const fail = (error: unknown, what: string): void => {
      failures.push({ pair: config.name, error });
      if (plan.listed) pairLog.error(`pair ${config.name} ${what}: ${error instanceof Error ? error.message : String(error)}`);
    };
    let valid: Config;
    try {
      valid = plan.listed ? await validateConfig(config) : config;
    } catch (error) {
      fail(error, 'not started');
      // Its status says why (psync status, scripts/check) while the other pairs run.
      await Supervisor.notStarted(config, error, pairLog);
      return;
    }
    const supervisor = new Supervisor(valid, () => connect(valid, pairLog), pairLog, board);
    running.set(config.name, supervisor);
    stopping?.(supervisor); // a signal that came while the pair was being checked
    try {
      const outcome = await supervisor.run();
      if (!outcome.ok) fail(outcome.error, 'stopped');
    } catch (error) {
      fail(error, 'stopped');
    }
  };
  try {
    await Promise.all(plan.pairs.map(runPair));
  } finally {
    clearInterval(bannedCheck);
    process.off('beforeExit', onDrained);
    for (const signal of signals) process.off(signal, onSignal);
  }
  const [first] = failures;
  return first === undefined ? EXIT.ok : report(first.error, log, plan.listed ? first.pair : undefined);
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

/** One clear line on stderr (naming the pair, with several) and the exit code for an error's class. */
function report(error: unknown, log: Logger | undefined, pair?: string): number {
  const err = error instanceof Error ? error : new Error(String(error));
  const code = exitCodeOf(err);
  // Always one plain line, whatever the log level and format, so scripts and people can rely on it.
  // Once a logger exists the line waits for it to flush (see main), so that it comes last.
  if (code === EXIT.internal && err.stack !== undefined) process.stderr.write(`${err.stack}\n`);
  const line = `psync: ${pair === undefined ? '' : `pair ${pair}: `}${err.message.split('\n')[0]}\n`;
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
