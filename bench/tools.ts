/**
 * The tools under test, each behind the same small interface: start a sync
 * session between a left root and a right root over the private sshd, tell
 * which processes make it up, stop it. The floor (plain rsync) has no
 * session; it is a command per transfer over an OpenSSH ControlMaster.
 *
 * Paths and arguments always travel as argv arrays; the only strings parsed
 * by something else are rsync's `-e` command and lsyncd's Lua config, and
 * both refuse anything but plain path characters (see `plainPath`).
 */

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { pollUntil } from './poll.js';
import { allProcs, processTree, type ProcessSet } from './procs.js';

export const TOOL_NAMES = ['psync', 'rsync', 'lsyncd', 'unison'] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

export const DEFAULT_PSYNC_CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));

const STOP_DEADLINE_MS = 10_000;
const SSHD_QUIET_DEADLINE_MS = 15_000;

/** What every tool needs to reach the right side. */
export interface BenchEnv {
  /** Host alias in `sshConfig`. */
  readonly host: string;
  readonly sshConfig: string;
  /** The private sshd's listener: its descendants are the remote side of whatever runs. */
  readonly sshdPid: number;
  /** Scratch directory for logs, control sockets and configs. */
  readonly work: string;
  /** The psync CLI to run (this checkout's dist/src/cli.js unless --psync-cli). */
  readonly psyncCli: string;
}

/** A path that can go inside a space-separated command string or a Lua string unquoted-safe. */
export function plainPath(path: string): string {
  if (!/^[A-Za-z0-9_./-]+$/.test(path)) throw new Error(`benchmark paths must be plain (got ${JSON.stringify(path)})`);
  return path;
}

/** Masters that may be running: they daemonise, so nothing else would stop them on an abort. */
const openMasters = new Set<ControlMaster>();

export async function closeAllMasters(): Promise<void> {
  await Promise.all([...openMasters].map((master) => master.close()));
}

/** One OpenSSH ControlMaster (`ControlMaster=auto`, `ControlPersist`), as rsync and lsyncd use it. */
export class ControlMaster {
  readonly controlPath: string;

  constructor(
    private readonly env: BenchEnv,
    name: string,
  ) {
    this.controlPath = plainPath(join(env.work, `${name}.cm`));
  }

  /** Options for `ssh` that reuse (or create) the master. */
  sshOptions(): string[] {
    return [
      '-F',
      plainPath(this.env.sshConfig),
      '-o',
      `ControlPath=${this.controlPath}`,
      '-o',
      'ControlMaster=auto',
      '-o',
      'ControlPersist=60',
    ];
  }

  /** The `-e` / `--rsh` string for rsync. */
  rsh(): string {
    return ['ssh', ...this.sshOptions()].join(' ');
  }

  /** Open the master now, so no measured transfer pays for the handshake. */
  async open(): Promise<void> {
    openMasters.add(this);
    await execa('ssh', [...this.sshOptions(), this.env.host, 'true'], { stdin: 'ignore' });
  }

  /** The daemonised master's pid, if it runs. */
  async pid(): Promise<number | undefined> {
    const check = await execa('ssh', ['-F', this.env.sshConfig, '-o', `ControlPath=${this.controlPath}`, '-O', 'check', this.env.host], {
      reject: false,
      stdin: 'ignore',
    });
    const match = /pid=(\d+)/.exec(`${check.stderr}${check.stdout}`);
    return match ? Number(match[1]) : undefined;
  }

  async close(): Promise<void> {
    const pid = await this.pid();
    await execa('ssh', ['-F', this.env.sshConfig, '-o', `ControlPath=${this.controlPath}`, '-O', 'exit', this.env.host], {
      reject: false,
      stdin: 'ignore',
    });
    if (pid !== undefined) await waitGone([pid]);
    openMasters.delete(this);
  }
}

/** The floor: plain `rsync -a` over the same sshd, reusing one SSH connection. */
export class RsyncFloor {
  readonly master: ControlMaster;

  constructor(private readonly env: BenchEnv) {
    this.master = new ControlMaster(env, 'rsync');
  }

  remote(path: string): string {
    return `${this.env.host}:${path}`;
  }

  /** Run `rsync -a -e SSH ...args`; returns its wall time and output. */
  async run(args: readonly string[]): Promise<{ ms: number; stdout: string }> {
    const started = performance.now();
    const result = await execa('rsync', ['-a', '-e', this.master.rsh(), ...args], { stdin: 'ignore' });
    return { ms: performance.now() - started, stdout: result.stdout };
  }

  processes(): ProcessSet {
    return {
      roots: async () => {
        const pid = await this.master.pid();
        return pid === undefined ? [] : [pid];
      },
      parentsOnly: [this.env.sshdPid],
    };
  }
}

/** `Total bytes sent: 1,234` from `rsync --stats`. */
export function parseBytesSent(stats: string): number | undefined {
  const match = /Total bytes sent:\s*([\d,.]+)/.exec(stats);
  return match ? Number((match[1] as string).replace(/[,.]/g, '')) : undefined;
}

/** A running two-way (or one-way) sync between two roots. */
export interface Session {
  readonly tool: ToolName;
  readonly processes: ProcessSet;
  /** psync's status file, parsed (psync only). */
  status?(): Promise<PsyncStatus | undefined>;
  stop(): Promise<void>;
}

export interface SessionTool {
  readonly name: Exclude<ToolName, 'rsync'>;
  /** Whether it propagates right-to-left too. */
  readonly twoWay: boolean;
  /** undefined when usable, else why not (shown in the output). */
  unavailable(): Promise<string | undefined>;
  /** Free-form notes for the report (how it is configured). */
  readonly note: string;
  /** Start watching `left` and `right` (which may hold a tree); resolve once its first sync is done. */
  start(left: string, right: string, deadlineMs: number): Promise<Session>;
}

export interface PsyncStatus {
  state: string;
  queued: number;
  counters: {
    applied: Record<'leftToRight' | 'rightToLeft', number>;
    rsyncRuns: number;
    helperRuns: number;
    failures: number;
  };
  updatedAt?: string;
  lastError?: string;
}

interface LogOptions {
  readonly reject: false;
  readonly stdin: 'ignore';
  readonly stdout: { readonly file: string; readonly append: true };
  readonly stderr: { readonly file: string; readonly append: true };
  readonly env: Record<string, string>;
  readonly cleanup: true;
  /** 0: no limit (a watching session runs until stopped). */
  readonly timeout: number;
}
type Child = ResultPromise<LogOptions>;

/** Start a tool with stdout and stderr appended to one log file in the scratch dir. */
function spawnLogged(
  env: BenchEnv,
  name: string,
  file: string,
  args: readonly string[],
  extraEnv: Record<string, string> = {},
  timeoutMs = 0,
): { child: Child; logFile: string } {
  const logFile = join(env.work, `${name}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.log`);
  const options: LogOptions = {
    reject: false,
    stdin: 'ignore',
    stdout: { file: logFile, append: true },
    stderr: { file: logFile, append: true },
    env: extraEnv,
    cleanup: true,
    timeout: timeoutMs,
  };
  return { child: execa(file, args, options), logFile };
}

async function tail(file: string, chars = 2_000): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.slice(-chars).trim();
}

/** SIGTERM, then SIGKILL if it does not go within the deadline. */
async function stopChild(child: Child): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) {
    await child;
    return;
  }
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS);
  await child;
  clearTimeout(timer);
}

export async function waitGone(pids: readonly number[]): Promise<void> {
  await pollUntil(
    `processes ${pids.join(', ')} to exit`,
    async () => {
      const alive = new Set((await allProcs()).map((proc) => proc.pid));
      return pids.every((pid) => !alive.has(pid));
    },
    STOP_DEADLINE_MS,
    50,
  ).catch(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/**
 * Wait until the sshd serves nobody any more (the last tool's sessions and
 * remote processes are gone), so the next tool's figures start clean. Any
 * straggler after the deadline is killed: they are ours (children of our sshd).
 */
export async function waitSshdQuiet(env: BenchEnv): Promise<void> {
  const descendants = async (): Promise<number[]> =>
    processTree(await allProcs(), [], [env.sshdPid]).map((proc) => proc.pid);
  try {
    await pollUntil('the sshd sessions to end', async () => (await descendants()).length === 0, SSHD_QUIET_DEADLINE_MS, 50);
  } catch {
    const left = await descendants();
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    await waitGone(left);
  }
}

function childProcesses(env: BenchEnv, child: Child, extra: () => Promise<number[]> = async () => []): ProcessSet {
  return {
    roots: async () => [...(child.pid === undefined ? [] : [child.pid]), ...(await extra())],
    parentsOnly: [env.sshdPid],
  };
}

/** Fail fast with the tool's log when it exits before it is ready. */
async function untilReady(what: string, child: Child, logFile: string, ready: () => Promise<boolean>, deadlineMs: number): Promise<void> {
  let exited = false;
  void child.then(() => {
    exited = true;
  });
  await pollUntil(
    what,
    async () => {
      if (exited) throw new Error(`exited (${String(child.exitCode)}): ${await tail(logFile)}`);
      return ready();
    },
    deadlineMs,
    20,
  ).catch(async (error: Error) => {
    await stopChild(child);
    throw new Error(`${error.message}\n${await tail(logFile)}`, { cause: error });
  });
}

export function psyncTool(env: BenchEnv): SessionTool {
  return {
    name: 'psync',
    twoWay: true,
    note: 'default settings (settle 0.1 s), one ssh2 connection + ControlMaster for rsync',
    unavailable: async () => {
      const ok = await readFile(env.psyncCli).then(
        () => true,
        () => false,
      );
      return ok ? undefined : `${env.psyncCli} missing: run npm run build`;
    },
    start: async (left, right, deadlineMs) => {
      const statusFile = join(env.work, `psync-status-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.json`);
      const { child, logFile } = spawnLogged(env, 'psync', process.execPath, [
        env.psyncCli,
        '--status-file',
        statusFile,
        '--state-dir',
        scratchStateDir(env),
        '-r',
        env.host,
        '--ssh-config',
        env.sshConfig,
        left,
        right,
      ]);
      const status = async (): Promise<PsyncStatus | undefined> => {
        try {
          return JSON.parse(await readFile(statusFile, 'utf8')) as PsyncStatus;
        } catch {
          return undefined;
        }
      };
      await untilReady('psync to start watching', child, logFile, async () => (await status())?.state === 'watching', deadlineMs);
      return {
        tool: 'psync',
        processes: childProcesses(env, child),
        status,
        stop: async () => {
          await stopChild(child);
          await waitSshdQuiet(env);
        },
      };
    },
  };
}

export function lsyncdTool(env: BenchEnv): SessionTool {
  return {
    name: 'lsyncd',
    twoWay: false,
    note: 'default.rsyncssh, delay 0, one-way (left to right), ssh and rsync over one ControlMaster',
    unavailable: async () => ((await which('lsyncd')) ? undefined : 'lsyncd not installed (apt-get install lsyncd)'),
    start: async (left, right, deadlineMs) => {
      const master = new ControlMaster(env, `lsyncd-${Date.now()}`);
      const base = join(env.work, `lsyncd-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`);
      const configFile = `${base}.lua`;
      const lsyncdLog = `${base}.lsyncd.log`;
      const lua = (text: string): string => JSON.stringify(plainPath(text));
      const luaList = (items: readonly string[]): string => `{ ${items.map((item) => JSON.stringify(item)).join(', ')} }`;
      for (const option of master.sshOptions()) if (!/^[A-Za-z0-9_./=-]+$/.test(option)) throw new Error(`odd ssh option ${option}`);
      await writeFile(
        configFile,
        [
          'settings {',
          `  logfile = ${lua(lsyncdLog)},`,
          '  nodaemon = true,',
          '  insist = false,',
          '}',
          'sync {',
          '  default.rsyncssh,',
          `  source = ${lua(left)},`,
          `  host = ${lua(env.host)},`,
          `  targetdir = ${lua(right)},`,
          '  delay = 0,',
          `  rsync = { archive = true, rsh = ${JSON.stringify(master.rsh())} },`,
          `  ssh = { _extra = ${luaList(master.sshOptions())} },`,
          '}',
          '',
        ].join('\n'),
      );
      await master.open();
      const { child, logFile } = spawnLogged(env, 'lsyncd', 'lsyncd', [configFile]);
      await untilReady(
        'lsyncd to finish its startup sync',
        child,
        logFile,
        async () => /Startup of .* finished/.test(await readFile(lsyncdLog, 'utf8').catch(() => '')),
        deadlineMs,
      ).catch(async (error: Error) => {
        await master.close();
        throw new Error(`${error.message}\n${await tail(lsyncdLog)}`, { cause: error });
      });
      return {
        tool: 'lsyncd',
        processes: childProcesses(env, child, async () => {
          const pid = await master.pid();
          return pid === undefined ? [] : [pid];
        }),
        stop: async () => {
          await stopChild(child);
          await master.close();
          await waitSshdQuiet(env);
        },
      };
    },
  };
}

/** Unison options shared by the watching session and the one-shot merge. */
function unisonArgs(env: BenchEnv, left: string, right: string, archiveDir: string): string[] {
  return [
    left,
    `ssh://${env.host}/${right}`,
    '-batch',
    '-auto',
    '-times',
    '-prefer',
    'newer',
    '-confirmbigdel=false',
    '-ui',
    'text',
    '-sshargs',
    `-F ${plainPath(env.sshConfig)}`,
    // The remote unison keeps its archive in our scratch dir too, not in ~/.unison.
    '-servercmd',
    `env UNISON=${plainPath(archiveDir)}-remote unison`,
  ];
}

export function unisonTool(env: BenchEnv): SessionTool {
  return {
    name: 'unison',
    twoWay: true,
    note: '-repeat 1 (Debian has no unison-fsmonitor, so no -repeat watch), -batch -times -prefer newer, one ssh connection',
    unavailable: async () => ((await which('unison')) ? undefined : 'unison not installed (apt-get install unison)'),
    start: async (left, right, deadlineMs) => {
      const archiveDir = join(env.work, `unison-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`);
      const { child, logFile } = spawnLogged(env, 'unison', 'unison', [...unisonArgs(env, left, right, archiveDir), '-repeat', '1'], {
        UNISON: archiveDir,
      });
      await untilReady(
        'unison to finish its first sync',
        child,
        logFile,
        async () => /Synchronization complete|Nothing to do/.test(await readFile(logFile, 'utf8').catch(() => '')),
        deadlineMs,
      );
      return {
        tool: 'unison',
        processes: childProcesses(env, child),
        stop: async () => {
          await stopChild(child);
          await waitSshdQuiet(env);
        },
      };
    },
  };
}

/** One unison run without -repeat (the two-way merge scenario); resolves when it exits. */
export async function unisonOnce(env: BenchEnv, left: string, right: string, deadlineMs: number): Promise<void> {
  const archiveDir = join(env.work, `unison-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`);
  const { child, logFile } = spawnLogged(env, 'unison-once', 'unison', unisonArgs(env, left, right, archiveDir), { UNISON: archiveDir }, deadlineMs);
  const result = await child;
  // 0: all synced, 1: some files skipped, 2: failures, 3: fatal.
  if (result.exitCode !== 0) throw new Error(`unison exited ${String(result.exitCode)}${result.timedOut ? ' (deadline)' : ''}: ${await tail(logFile)}`);
  await waitSshdQuiet(env);
}

/**
 * A fresh archive directory in the scratch dir for one psync run, so the
 * benchmark never reads or leaves archives in the user's state dir.
 */
function scratchStateDir(env: BenchEnv): string {
  return join(env.work, `psync-state-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`);
}

/** `psync -s` (the initial merge, then exit). */
export async function psyncOnce(env: BenchEnv, left: string, right: string, deadlineMs: number): Promise<void> {
  const { child, logFile } = spawnLogged(env, 'psync-once', process.execPath, [
    env.psyncCli,
    '-s',
    '--state-dir',
    scratchStateDir(env),
    '-r',
    env.host,
    '--ssh-config',
    env.sshConfig,
    left,
    right,
  ], {}, deadlineMs);
  const result = await child;
  if (result.exitCode !== 0) throw new Error(`psync -s exited ${String(result.exitCode)}${result.timedOut ? ' (deadline)' : ''}: ${await tail(logFile)}`);
  await waitSshdQuiet(env);
}

/**
 * `psync -s --state-dir STATEDIR LEFT RIGHT` on a local pair (no -r): the
 * start-up reconcile against the archive kept in `stateDir`, then exit.
 * Resolves with its log (stdout and stderr) once it has exited 0.
 */
export async function psyncLocalOnce(env: BenchEnv, left: string, right: string, stateDir: string, deadlineMs: number): Promise<string> {
  const { child, logFile } = spawnLogged(env, 'psync-local', process.execPath, [env.psyncCli, '-s', '--state-dir', stateDir, left, right], {}, deadlineMs);
  const result = await child;
  if (result.exitCode !== 0) throw new Error(`psync -s exited ${String(result.exitCode)}${result.timedOut ? ' (deadline)' : ''}: ${await tail(logFile)}`);
  return readFile(logFile, 'utf8');
}

async function which(program: string): Promise<boolean> {
  const result = await execa('which', [program], { reject: false, stdin: 'ignore' });
  return result.exitCode === 0;
}
