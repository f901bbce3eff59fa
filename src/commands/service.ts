/**
 * The service commands behind scripts/start, scripts/stop and scripts/check
 * (`psync _start|_stop|_check [options] (--config FILE | psync arguments)`):
 * run one psync instance (service/instance.ts names it) in the background
 * with a pid file and a log file, stop it, and say whether it is healthy.
 *
 * - start: refuses when the instance runs (exit 2); a stale pid file is
 *   replaced. Starts psync in a session of its own (setsid), stdin from
 *   /dev/null, its log in `<logDir>/<name>.log` (psync's --log-file:
 *   rotated by size; unless its settings name a log file), stdout and
 *   stderr appended to `<logDir>/<name>.err` (opened O_APPEND|O_NOFOLLOW:
 *   warnings, errors, its last line, a crash's trace), and waits (--wait, default 300 s) until every
 *   pair it runs (each of a config file's `pairs`, else one) has published
 *   a status that says `watching` (exit 0) or that it ended. psync exiting
 *   meanwhile: its last log lines and its exit code. A pair failed (one of
 *   several that could not start included: psync runs the others), or not
 *   watching in time: exit 1 naming it, psync left running.
 * - stop: SIGTERM, waits for the exit (--timeout, default 30 s), then
 *   SIGKILL for psync's whole session; processes left in that session (a
 *   side, ssh) go too. Removes the pid file. Exit 0 once nothing runs
 *   (not running at all included), 1 when something could not be stopped.
 * - check: exit 0 when the instance runs and every pair is healthy
 *   (core/health.ts: watching, both sides connected, heartbeat within
 *   --stale-after, default 10 s, queue moving within --stuck-after, default
 *   600 s; each of a config file's `pairs` has published a status); else 1
 *   and one line naming each pair that is not. `--restart` starts a dead
 *   instance again (start's exit code).
 * Exit 2: bad usage (an unknown option of these commands goes to psync);
 * 7: the runtime or log directory is a symlink or another user's.
 */

import { spawn } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { ConfigFile } from '../config.js';
import { loadConfigFile } from '../configFile.js';
import { ConfigError } from '../core/errors.js';
import { instanceProblems, isSettled, type HealthLimits } from '../core/health.js';
import { EXIT, exitCodeOf } from '../exitCodes.js';
import { CLI_PATH, SERVICE_COMMAND } from '../install.js';
import { openLogFile } from '../log.js';
import { instanceName, pidFileOf, psyncOption, readPidFile, removePidFile, writePidFile, type PidRecord } from '../service/instance.js';
import { ensurePrivateDir, logDir, runtimeDir, statusDir } from '../service/paths.js';
import { identityOf, isAlive, sessionMembers, type ProcessIdentity } from '../service/proc.js';
import { readStatusFiles, statusFilesIn, type ReadStatus } from '../service/statusFiles.js';

type Command = keyof typeof SERVICE_COMMAND;

const POLL_MS = 100;
/** After SIGKILL, how long to wait for the processes to be gone. */
const KILL_WAIT_MS = 5_000;
/** How many of the log's last lines start shows when psync exits during start-up. */
const LOG_TAIL_LINES = 20;

/** The options of each command: a flag, or one that takes a number of seconds. */
const OPTIONS: Record<Command, Record<string, 'flag' | 'seconds'>> = {
  start: { '--wait': 'seconds' },
  stop: { '--timeout': 'seconds' },
  check: { '--restart': 'flag', '--stale-after': 'seconds', '--stuck-after': 'seconds', '--wait': 'seconds' },
};
const DEFAULT_SECONDS: Record<string, number> = { '--wait': 300, '--timeout': 30, '--stale-after': 10, '--stuck-after': 600 };

interface Invocation {
  readonly name: string;
  readonly psyncArgs: readonly string[];
  readonly flags: ReadonlySet<string>;
  seconds(option: string): number;
}

/** Run `_start`, `_stop` or `_check` with its arguments; resolves with the exit code. */
export async function runService(command: string, argv: readonly string[]): Promise<number> {
  const which = (Object.keys(SERVICE_COMMAND) as Command[]).find((c) => SERVICE_COMMAND[c] === command);
  if (which === undefined) throw new Error(`not a service command: ${command}`);
  try {
    const invocation = parseInvocation(which, argv);
    return await (which === 'start' ? start(invocation) : which === 'stop' ? stop(invocation) : check(invocation));
  } catch (error) {
    process.stderr.write(`psync ${which}: ${(error as Error).message}\n`);
    // A runtime or log directory that is a symlink or another user's (service/paths.ts) is a SafetyError.
    return exitCodeOf(error);
  }
}

/**
 * Split the command's own options (anywhere before a `--`; `--opt value` or
 * `--opt=value`) from psync's arguments, and name the instance.
 */
export function parseInvocation(command: Command, argv: readonly string[]): Invocation {
  const known: Record<string, 'flag' | 'seconds' | 'name'> = { ...OPTIONS[command], '--name': 'name' };
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const psyncArgs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      psyncArgs.push(...argv.slice(i));
      break;
    }
    const eq = arg.indexOf('=');
    const option = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const kind = known[option];
    if (kind === undefined) {
      psyncArgs.push(arg);
    } else if (kind === 'flag') {
      if (option !== arg) throw new ConfigError(`${option} takes no value`);
      flags.add(option);
    } else {
      const value = option !== arg ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new ConfigError(`${option} needs a value`);
      if (kind === 'seconds' && !(Number(value) >= 0)) throw new ConfigError(`${option} takes a number of seconds, got ${JSON.stringify(value)}`);
      values.set(option, value);
    }
  }
  if (psyncArgs.length === 0) throw new ConfigError(`which psync? give --config FILE or psync's arguments (README: "Running as a service")`);
  return {
    name: instanceName(psyncArgs, values.get('--name')),
    psyncArgs,
    flags,
    seconds: (option) => Number(values.get(option) ?? DEFAULT_SECONDS[option]),
  };
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const complain = (line: string): void => void process.stderr.write(`${line}\n`);

async function start(run: Invocation): Promise<number> {
  const pidFile = pidFileOf(ensurePrivateDir(runtimeDir()), run.name);
  const found = await readPidFile(pidFile);
  if (found.kind === 'running') {
    complain(`psync ${run.name} already runs (pid ${found.record.pid}): stop it first (scripts/stop with the same arguments)`);
    return EXIT.usage;
  }
  if (found.kind === 'stale') say(`replacing the stale pid file ${pidFile}: ${found.why}`);
  const logs = ensurePrivateDir(logDir());
  // psync's own log, rotated by size (--log-file), unless its settings name one; its stdout and stderr
  // (warnings, errors, its last line, a crash's trace) go to a file of their own.
  const named = await namedLogFile(run.psyncArgs);
  const logFile = named ?? join(logs, `${run.name}.log`);
  const errFile = join(logs, `${run.name}.err`);
  // Opened as psync opens its own log file: never through a symlink, only a regular file of ours.
  const { fd: err, size: errStart } = openLogFile(errFile);
  const argv = [process.execPath, CLI_PATH, ...(named === undefined ? ['--log-file', logFile] : []), ...run.psyncArgs];
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', err, err] });
  closeSync(err);
  const exited = new Promise<number>((resolve) => {
    child.on('error', () => resolve(EXIT.internal));
    child.on('exit', (code) => resolve(code ?? EXIT.internal));
  });
  const identity = child.pid === undefined ? undefined : identityOf(child.pid);
  if (identity !== undefined) await writePidFile(pidFile, { ...identity, argv });
  const expected = await listedPairs(run.psyncArgs);
  const deadline = Date.now() + run.seconds('--wait') * 1000;
  let pairs: ReadStatus[] = [];
  let settled = false;
  for (;;) {
    const code = await Promise.race([exited, new Promise<undefined>((resolve) => setTimeout(resolve, POLL_MS))]);
    if (code !== undefined || identity === undefined) {
      const exitCode = code ?? (await exited);
      await removePidFile(pidFile);
      complain(`psync ${run.name} exited (${exitCode}) during start-up; its stderr ${errFile} ends:\n${logTail(errFile, errStart)}`);
      return exitCode === EXIT.ok ? EXIT.internal : exitCode;
    }
    pairs = await statusesOf(identity, run.psyncArgs);
    const published = new Set(pairs.map((p) => p.status.name));
    const everyPair = expected === undefined ? pairs.length > 0 : expected.every((name) => published.has(name));
    settled = everyPair && pairs.every((p) => isSettled(p.status));
    if (settled || Date.now() > deadline) break;
  }
  child.unref();
  const problems = instanceProblems(pairs.map((p) => p.status), expected, Date.now(), healthLimits(run));
  const watching = pairs.filter((p) => p.status.state === 'watching').length;
  if (problems.length > 0) {
    const late = settled ? '' : ` after ${run.seconds('--wait')} s (--wait)`;
    complain(`psync ${run.name} runs (pid ${identity.pid}) with ${watching} of ${expected?.length ?? 1} pair(s) watching${late}: ${problems.join('; ')}; see psync status and ${logFile}`);
    return EXIT.internal;
  }
  say(`started psync ${run.name} (pid ${identity.pid}): ${watching} pair(s) watching; log ${logFile}`);
  return EXIT.ok;
}

async function stop(run: Invocation): Promise<number> {
  const pidFile = pidFileOf(runtimeDir(), run.name);
  const found = await readPidFile(pidFile);
  if (found.kind !== 'running') {
    if (found.kind === 'stale') await removePidFile(pidFile);
    say(`psync ${run.name} is not running${found.kind === 'stale' ? ` (removed its stale pid file: ${found.why})` : ''}`);
    return EXIT.ok;
  }
  const { pid } = found.record;
  signal(pid, 'SIGTERM');
  const timeout = run.seconds('--timeout');
  let stopped = await waitGone(found.record, timeout * 1000);
  if (!stopped) {
    complain(`psync ${run.name} (pid ${pid}) did not stop within ${timeout} s (--timeout): killing it`);
    signal(pid, 'SIGKILL');
    stopped = await waitGone(found.record, KILL_WAIT_MS);
  }
  // What psync started and left behind (it had no time to close a side, or was killed): its session.
  const left = sessionMembers(pid);
  for (const member of left) signal(member, 'SIGKILL');
  const leftover = left.filter((member) => identityOf(member) !== undefined);
  if (!stopped || leftover.length > 0) {
    complain(`psync ${run.name}: could not stop pid ${[...(stopped ? [] : [pid]), ...leftover].join(', ')}`);
    return EXIT.internal;
  }
  await removePidFile(pidFile);
  say(`stopped psync ${run.name} (pid ${pid})${left.length > 0 ? `; killed ${left.length} process(es) it left` : ''}`);
  return EXIT.ok;
}

async function check(run: Invocation): Promise<number> {
  const pidFile = pidFileOf(runtimeDir(), run.name);
  const found = await readPidFile(pidFile);
  if (found.kind !== 'running') {
    const why = `psync ${run.name} is not running${found.kind === 'stale' ? ` (${found.why})` : ''}`;
    if (!run.flags.has('--restart')) {
      say(why);
      return EXIT.internal;
    }
    say(`${why}: restarting it`);
    return start(run);
  }
  const { pid } = found.record;
  const pairs = await statusesOf(found.record, run.psyncArgs);
  const problems = instanceProblems(pairs.map((p) => p.status), await listedPairs(run.psyncArgs), Date.now(), healthLimits(run));
  if (problems.length > 0) {
    say(`psync ${run.name} (pid ${pid}) is not healthy: ${problems.join('; ')}`);
    return EXIT.internal;
  }
  say(`psync ${run.name} is healthy: pid ${pid}, ${pairs.length} pair(s) watching`);
  return EXIT.ok;
}

const healthLimits = (run: Invocation): HealthLimits => ({ heartbeatStaleMs: run.seconds('--stale-after') * 1000, queueStuckMs: run.seconds('--stuck-after') * 1000 });

/**
 * The names of the pairs psync runs when its config file lists them
 * (`pairs`); undefined when it runs one pair. The file is read as psync
 * reads it; a file that cannot be read is left to psync, which exits saying
 * why (start reports that).
 */
async function listedPairs(psyncArgs: readonly string[]): Promise<string[] | undefined> {
  return (await configFileOf(psyncArgs))?.pairs?.map((pair) => pair.name);
}

/** The log file psync's arguments or config file name, if they do. */
async function namedLogFile(psyncArgs: readonly string[]): Promise<string | undefined> {
  return psyncOption(psyncArgs, '--log-file') ?? (await configFileOf(psyncArgs))?.logFile;
}

/** The config file psync's arguments name, as read (undefined when none, or unreadable: psync itself says why). */
async function configFileOf(psyncArgs: readonly string[]): Promise<ConfigFile | undefined> {
  const file = psyncOption(psyncArgs, '--config', '-c');
  if (file === undefined) return undefined;
  try {
    return await loadConfigFile(file);
  } catch {
    return undefined;
  }
}

/** The status files written by `owner` (the status directory's, and a --status-file among its arguments). */
async function statusesOf(owner: ProcessIdentity, psyncArgs: readonly string[]): Promise<ReadStatus[]> {
  const named = psyncOption(psyncArgs, '--status-file');
  const files = [...(await statusFilesIn(statusDir())), ...(named === undefined ? [] : [named])];
  return (await readStatusFiles(files)).filter(({ status }) => status.pid === owner.pid && status.startTime === owner.startTime);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone already
  }
}

async function waitGone(record: PidRecord, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (isAlive(record)) {
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  return true;
}

/** The last lines written to the log since `from` (its size before this start). */
function logTail(file: string, from: number): string {
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    const size = fstatSync(fd).size;
    const start = Math.max(from, size - 64 * 1024);
    const buffer = Buffer.alloc(size - start);
    readSync(fd, buffer, 0, buffer.length, start);
    return buffer.toString('utf8').trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n');
  } catch (error) {
    return `(cannot read it: ${(error as Error).message})`;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
