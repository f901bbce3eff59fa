/**
 * `psync check [options] SRCROOT DSTROOT`: compare the two roots of a pair
 * without changing anything (the original psync's rcheck), print one line
 * per difference and a summary, and exit 0 (identical), 1 (differences) or
 * 2 (error: nothing or not everything was compared). cli.ts starts it
 * without loading the brain.
 *
 * The engine is two rsync dry runs (what they mean: core/treeCheck.ts),
 * through psync's own transport (transport/): both roots local, or the
 * right one on `-r HOST` over psync's ssh connection and its OpenSSH
 * master, so host keys, `~/.ssh/config` and `--ssh-config` are psync's.
 * The remote helper's rsync relay is not used: it saves a remote shell per
 * transfer, check makes one or two, and the helper would have to be started
 * with the brain's link and protocol. So no psync is started on the remote
 * host, and check takes no `--remote-psync`.
 *
 * Left out of the comparison, as psync never syncs them: psync's own names,
 * `-e` excludes, `-t` temp files (and the built-in list), `--rsync-excludes`.
 */

import yargs from 'yargs';
import { resolvePairs, validateConfig, type Config } from '../config.js';
import { loadConfigFile } from '../configFile.js';
import { ConfigError, ConnectionError, ProtocolError, RsyncError, SafetyError } from '../core/errors.js';
import { isRsyncNotice, ITEMIZE_ARGS, parseItemizedLine, type ItemizedChange } from '../core/rsyncOutput.js';
import { CHECK_EXIT, checkExitCode, describeDifference, summarize, treeDifferences, typeProbePaths, type Difference } from '../core/treeCheck.js';
import type { Side } from '../core/types.js';
import { defaultRemotePsync } from '../install.js';
import { repeated, required } from '../options.js';
import { confineRoots } from '../transfer/confine.js';
import { buildRsyncArgv, rsyncExcludeArgs, rsyncExitMeaning, runRsync } from '../transfer/rsync.js';
import { shellQuote, type Endpoint } from '../transport/endpoint.js';
import { LocalEndpoint } from '../transport/local.js';
import type { SshEndpoint } from '../transport/ssh.js';

/** What check needs of a pair's settings. */
type CheckSettings = Pick<Config, 'srcRoot' | 'dstRoot' | 'remoteHost' | 'excludes' | 'tempfiles' | 'rsyncExcludes' | 'sshConfig'>;

/** Run `psync check` with the words after `check`; resolves with the exit code. */
export async function runCheck(argv: readonly string[]): Promise<number> {
  try {
    const parsed = await parseArgs(argv);
    if (parsed === 'answered') return CHECK_EXIT.identical;
    const { differences, incomplete } = await compareRoots(parsed.settings, parsed.checksum);
    // An incomplete comparison still lists what it found; its error takes the summary's place.
    const lines = [...differences.map(describeDifference), ...(incomplete === undefined ? [summarize(differences)] : [])];
    if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
    if (incomplete !== undefined) throw incomplete;
    return checkExitCode(differences);
  } catch (error) {
    const err = error instanceof Error ? error : new Error(String(error));
    // psync's own errors are one line; anything else is a bug, shown with its stack.
    if (!PSYNC_ERRORS.some((kind) => err instanceof kind) && err.stack !== undefined) process.stderr.write(`${err.stack}\n`);
    process.stderr.write(`psync: ${err.message.split('\n')[0]}\n`);
    return CHECK_EXIT.error;
  }
}

const PSYNC_ERRORS = [ConfigError, ConnectionError, ProtocolError, RsyncError, SafetyError];

/** For a missing root. */
const USAGE = 'psync check [options] SRCROOT DSTROOT (see psync check --help)';

async function parseArgs(argv: readonly string[]): Promise<{ settings: CheckSettings; checksum: boolean } | 'answered'> {
  const parsed = await yargs([...argv])
    .scriptName('psync check')
    .usage(
      '$0 [options] SRCROOT DSTROOT\n\nCompares SRCROOT (local, the left side) with DSTROOT (on --remote-host, or local) and changes nothing. ' +
        "Directory mtimes, psync's own files, excludes and temp files are not compared.",
    )
    .command('$0 [srcroot] [dstroot]', false)
    .positional('srcroot', { type: 'string', describe: 'left root, on this machine' })
    .positional('dstroot', { type: 'string', describe: 'right root, on --remote-host (or local)' })
    .option('remote-host', { alias: 'r', type: 'string', describe: 'host (or ~/.ssh/config alias) of the right side; without it both roots are local' })
    .option('checksum', { type: 'boolean', describe: "compare files' contents (reads every file on both sides), not only their size and mtime" })
    .option('excludes', { alias: 'e', type: 'string', describe: 'exclude glob, not compared (repeatable; as psync -e)' })
    .option('tempfiles', { alias: 't', type: 'string', describe: 'temp-file glob, not compared (repeatable; adds to the built-in list, as psync -t)' })
    .option('rsync-excludes', { type: 'string', describe: 'extra rsync --exclude pattern, not compared (repeatable; as psync --rsync-excludes)' })
    .option('config', { alias: 'c', type: 'string', describe: "the pair's settings file (roots, host, patterns, ssh config); options on the command line win" })
    .option('pair', { type: 'string', describe: 'with a config file that lists several pairs: the name of the one to compare' })
    .option('ssh-config', { type: 'string', describe: 'ssh client config file instead of ~/.ssh/config' })
    .strict()
    .version(false)
    .help()
    .alias('help', 'h')
    .epilogue('Exit codes: 0 identical, 1 differences (listed), 2 error (bad usage, a missing root, an unreachable host, rsync failed).')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((message, error) => {
      throw error ?? new ConfigError(`${message} (see psync check --help)`);
    })
    .parseAsync();
  if (parsed.help === true) return 'answered';
  const file = parsed.config === undefined ? {} : await loadConfigFile(parsed.config);
  if (file.pairs === undefined) {
    required(parsed.srcroot ?? file.srcRoot, 'SRCROOT', USAGE);
    required(parsed.dstroot ?? file.dstRoot, 'DSTROOT', USAGE);
  }
  // The pairs as psync itself would run them: the file's settings, under the command line's.
  const pairs = resolvePairs(file, {
    settings: { srcRoot: parsed.srcroot, dstRoot: parsed.dstroot, remoteHost: parsed['remote-host'], sshConfig: parsed['ssh-config'] },
    added: { excludes: repeated(parsed.excludes), tempfiles: repeated(parsed.tempfiles), rsyncExcludes: repeated(parsed['rsync-excludes']) },
  });
  const config = pickPair(pairs, parsed.pair);
  // psync's own checks: the roots (local ones must be directories, and distinct), the host, the patterns.
  return { settings: await validateConfig(config), checksum: parsed.checksum === true };
}

/** The pair to compare: the only one, or the one `--pair` names. */
function pickPair(pairs: readonly Config[], name: string | undefined): Config {
  const names = pairs.map((pair) => pair.name).join(', ');
  if (name === undefined) {
    if (pairs.length === 1) return pairs[0]!;
    throw new ConfigError(`the config file lists ${pairs.length} pairs (${names}): name one with --pair`);
  }
  const pair = pairs.find((candidate) => candidate.name === name);
  if (pair === undefined) throw new ConfigError(`no pair named ${JSON.stringify(name)} in the config file (it lists ${names})`);
  return pair;
}

/** Both dry runs, from the right root to the left one, then back over the paths whose type may differ. */
async function compareRoots(settings: CheckSettings, checksum: boolean): Promise<{ differences: Difference[]; incomplete: RsyncError | undefined }> {
  const excludes = rsyncExcludeArgs(settings);
  const endpoints = await connect(settings);
  try {
    const confine = await confineRoots(endpoints, { warn: warning, debug: () => {} });
    const run = (from: Side, files: readonly string[] | undefined, extra: readonly string[]): Promise<DryRunResult> =>
      dryRun({ endpoints, from, confine, excludes, files, extra });
    const rightToLeft = await run('right', undefined, ['--delete', ...(checksum ? ['--checksum'] : [])]);
    const probe = typeProbePaths(rightToLeft.changes);
    // --force: a dry run refuses to replace a non-empty directory without it (exit 23), as a real run would.
    const leftToRight = probe.length === 0 ? { changes: [], incomplete: undefined } : await run('left', probe, ['--force']);
    return {
      differences: treeDifferences(rightToLeft.changes, leftToRight.changes),
      incomplete: rightToLeft.incomplete ?? leftToRight.incomplete,
    };
  } finally {
    await endpoints.right.close();
  }
}

/** The left root here; the right one here too, or on the remote host, where it must be a directory. */
async function connect(settings: CheckSettings): Promise<Record<Side, Endpoint>> {
  const left = new LocalEndpoint('left', settings.srcRoot);
  if (settings.remoteHost === undefined) return { left, right: new LocalEndpoint('right', settings.dstRoot, { separateRsync: true }) };
  // Loaded only for a remote root: ssh2 is most of what check would load.
  const { SshEndpoint } = await import('../transport/ssh.js');
  const right = await SshEndpoint.connect({
    side: 'right',
    host: settings.remoteHost,
    root: settings.dstRoot,
    // Never started (see the header), but the endpoint is psync's.
    remotePsync: defaultRemotePsync(),
    ...(settings.sshConfig === undefined ? {} : { sshConfigFile: settings.sshConfig }),
    log: (level, message) => {
      if (level === 'warn' || level === 'error') warning(message);
    },
  });
  try {
    if (!(await isRemoteDirectory(right, settings.dstRoot))) {
      throw new ConfigError(`DSTROOT ${settings.dstRoot} on ${settings.remoteHost} does not exist or is not a directory`);
    }
  } catch (error) {
    await right.close();
    throw error;
  }
  return { left, right };
}

/**
 * `test -d` there. Without this a missing root would be a sender's rsync
 * error among others (exit 23), or with a root that rsync creates, every
 * entry "only on left".
 */
async function isRemoteDirectory(endpoint: SshEndpoint, root: string): Promise<boolean> {
  const channel = await endpoint.exec(`test -d ${shellQuote(root)}`);
  channel.stdin.end();
  channel.stdout.resume();
  channel.stderr.resume();
  return (await channel.exited) === 0;
}

const warning = (message: string): void => {
  process.stderr.write(`warning: ${message}\n`);
};

interface DryRun {
  readonly endpoints: Record<Side, Endpoint>;
  /** The sender; the other side receives. rsync itself runs here, on the left, in both directions. */
  readonly from: Side;
  readonly confine: Partial<Record<Side, string>>;
  readonly excludes: readonly string[];
  /** Only these root-relative paths (`--files-from`), else the whole tree. */
  readonly files: readonly string[] | undefined;
  readonly extra: readonly string[];
}

interface DryRunResult {
  readonly changes: ItemizedChange[];
  /** Set when rsync could not read everything (exit 23, 24): the changes are what it found. */
  readonly incomplete: RsyncError | undefined;
}

/**
 * One `rsync --dry-run` with itemized output: its changes. rsync's stderr
 * goes to ours as it comes (what it could not read). A line that is not an
 * itemized change is an error (ProtocolError): what it meant is unknown.
 */
async function dryRun(options: DryRun): Promise<DryRunResult> {
  const { endpoints, from, confine } = options;
  const to: Side = from === 'left' ? 'right' : 'left';
  const argv = buildRsyncArgv({
    source: endpoints[from].rsyncLocation(),
    target: endpoints[to].rsyncLocation(),
    transportArgs: [...endpoints.left.rsyncArgs(), ...endpoints.right.rsyncArgs()],
    dryRun: true,
    // Modes as they are: a setuid bit psync dropped is a difference (buildRsyncArgv's --chmod would hide it).
    preserveSuid: true,
    extra: [...ITEMIZE_ARGS, ...options.extra],
    excludes: options.excludes,
    filesFrom: options.files !== undefined,
    ...(confine.left === undefined ? {} : { confineRoot: confine.left }),
    ...(confine.right === undefined ? {} : { serverConfineRoot: confine.right }),
  });
  const changes: ItemizedChange[] = [];
  let unexpected: string | undefined;
  const result = await runRsync({
    argv,
    ...(options.files === undefined ? {} : { files: options.files }),
    log: (line) => process.stderr.write(`${line}\n`),
    onOutputLine: (line) => {
      const change = parseItemizedLine(line);
      if (change !== undefined) changes.push(change);
      else if (!isRsyncNotice(line)) unexpected ??= line;
    },
  });
  if (unexpected !== undefined) throw new ProtocolError(`unexpected rsync output: ${JSON.stringify(unexpected)}`);
  const incomplete =
    result.status === 'partial'
      ? new RsyncError(`rsync could not read everything (exit ${result.exitCode}: ${rsyncExitMeaning(result.exitCode)}); the comparison is incomplete`, result.exitCode)
      : undefined;
  return { changes, incomplete };
}
