/**
 * Running the built psync CLI in end-to-end tests: start it, read its
 * status file, wait for conditions with a deadline (never a fixed sleep),
 * compare trees, stop it.
 */

import { chown, lstat, mkdir, readdir, readFile, readlink } from 'node:fs/promises';
import { nobodyIds } from './attacker.js';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SshdFixture } from './sshd.js';
import { tempDir } from './tmp.js';
import { execa, type ResultPromise } from 'execa';

export const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));
const POLL_MS = 20;

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, deadlineMs = 20_000): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

export interface Status {
  state: string;
  queued: number;
  /** Paths left out for now: directories a side cannot read, files rsync could not send. */
  skipped: number;
  counters: {
    reported: Record<'left' | 'right', number>;
    echoes: Record<'left' | 'right', number>;
    rejected: Record<'left' | 'right', number>;
    applied: Record<'leftToRight' | 'rightToLeft', number>;
    rsyncRuns: number;
    helperRuns: number;
    failures: number;
    conflicts: number;
  };
  lastError?: string;
  /** While psync reconnects after losing the pair. */
  reconnect?: { attempt: number; since: string; lastError: string };
}

const CHILD_OPTIONS = { reject: false, stdin: 'ignore', buffer: false } as const;
type Child = ResultPromise<typeof CHILD_OPTIONS>;

export class PsyncProcess {
  readonly output: string[] = [];

  private constructor(
    readonly child: Child,
    readonly statusFile: string,
  ) {
    child.stderr?.on('data', (chunk: Buffer) => this.output.push(chunk.toString()));
  }

  /** Start psync with `args` and wait until it watches (or until it exits). */
  static async start(args: string[], options: { waitWatching?: boolean; asNobody?: boolean; env?: Record<string, string> } = {}): Promise<PsyncProcess> {
    const statusDir = tempDir('psync-status-');
    const statusFile = join(statusDir, 'status.json');
    const argv = [CLI, '--status-file', statusFile, ...args];
    let child: Child;
    if (options.asNobody === true) {
      // An ordinary user's psync: its status and state directories must be its own.
      const { uid, gid } = await nobodyIds();
      const stateHome = tempDir('psync-nobody-state-');
      await Promise.all([chown(statusDir, uid, gid), chown(stateHome, uid, gid)]);
      const as = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', 'env', `XDG_STATE_HOME=${stateHome}`];
      child = execa(as[0]!, [...as.slice(1), process.execPath, ...argv], CHILD_OPTIONS);
    } else {
      // Extra environment through env(1), which execs node: the child is psync itself.
      const assignments = Object.entries(options.env ?? {}).map(([name, value]) => `${name}=${value}`);
      child = assignments.length === 0 ? execa(process.execPath, argv, CHILD_OPTIONS) : execa('env', [...assignments, process.execPath, ...argv], CHILD_OPTIONS);
    }
    const proc = new PsyncProcess(child, statusFile);
    if (options.waitWatching !== false) {
      const exitedEarly = child.then((result) => {
        throw new Error(`psync exited early (${String(result.exitCode)}): ${proc.log()}`);
      });
      await Promise.race([
        waitFor(
          'psync to start watching',
          async () => {
            const status = await proc.status();
            return status?.state === 'watching' ? status : undefined;
          },
          30_000,
        ),
        exitedEarly,
      ]);
      exitedEarly.catch(() => {}); // it exits later, when the test stops it
    }
    return proc;
  }

  log(): string {
    return this.output.join('');
  }

  /** The exit code once psync exited (a signal's death included, as null), else undefined. */
  get exited(): number | null | undefined {
    const child = this.child;
    if (child.exitCode !== null) return child.exitCode;
    return child.signalCode !== null ? null : undefined;
  }

  /** Wait (with a deadline) for psync to exit on its own; resolves with its exit code. */
  async waitExit(deadlineMs: number): Promise<number | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`psync did not exit within ${deadlineMs} ms:\n${this.log().slice(-4000)}`)), deadlineMs);
    });
    try {
      return (await Promise.race([this.child, timeout])).exitCode;
    } finally {
      clearTimeout(timer);
    }
  }

  async status(): Promise<Status | undefined> {
    try {
      return JSON.parse(await readFile(this.statusFile, 'utf8')) as Status;
    } catch {
      return undefined;
    }
  }

  /** SIGTERM, then resolve with the exit code. */
  async stop(): Promise<number | undefined> {
    this.child.kill('SIGTERM');
    const result = await this.child;
    return result.exitCode;
  }
}

export interface EntryInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  mtimeMs?: number;
  content?: string;
}

/** Everything that sync should make equal, keyed by relative path (ignoring `.psync`). */
export async function snapshotTree(root: string): Promise<Map<string, EntryInfo>> {
  const out = new Map<string, EntryInfo>();
  const visit = async (dir: string, rel: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      if (rel === '' && name === '.psync') continue;
      const abs = join(dir, name);
      const path = rel === '' ? name : `${rel}/${name}`;
      const info = await lstat(abs);
      if (info.isDirectory()) {
        out.set(path, { type: 'dir', mode: info.mode & 0o7777 });
        await visit(abs, path);
      } else if (info.isSymbolicLink()) {
        out.set(path, { type: 'symlink', mode: 0, content: await readlink(abs) });
      } else if (info.isFile()) {
        const hash = createHash('sha1').update(await readFile(abs)).digest('hex');
        out.set(path, { type: 'file', mode: info.mode & 0o7777, mtimeMs: Math.floor(info.mtimeMs), content: hash });
      } else {
        out.set(path, { type: 'other', mode: info.mode & 0o7777 });
      }
    }
  };
  await visit(root, '');
  return out;
}

/** A readable list of differences between two trees; empty when identical. */
export async function diffTrees(a: string, b: string): Promise<string[]> {
  const [left, right] = await Promise.all([snapshotTree(a), snapshotTree(b)]);
  const problems: string[] = [];
  for (const [path, info] of left) {
    const other = right.get(path);
    if (other === undefined) problems.push(`only in ${a}: ${path}`);
    else if (JSON.stringify(info) !== JSON.stringify(other)) problems.push(`differs: ${path} ${JSON.stringify(info)} vs ${JSON.stringify(other)}`);
  }
  for (const path of right.keys()) if (!left.has(path)) problems.push(`only in ${b}: ${path}`);
  return problems;
}

/** Wait until both trees are identical. */
export async function waitForSameTrees(a: string, b: string, deadlineMs = 20_000): Promise<void> {
  let problems: string[] = [];
  await waitFor(
    'identical trees',
    async () => {
      problems = await diffTrees(a, b);
      return problems.length === 0;
    },
    deadlineMs,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n${problems.slice(0, 20).join('\n')}`);
  });
}

/** A running psync over a private sshd between two fresh temp roots. */
export interface RemotePair {
  readonly psync: PsyncProcess;
  readonly left: string;
  readonly right: string;
  readonly sshd: SshdFixture;
  /** Stop psync (expecting exit 0) and the sshd. */
  stop(): Promise<number | undefined>;
}

/**
 * Start a private sshd and `psync -r` between two new roots (`rightName`
 * lets a test put awkward characters in the right root's path).
 */
export async function startRemotePair(extraArgs: string[] = [], rightName = 'right', sshdOptions: readonly string[] = []): Promise<RemotePair> {
  const { startSshd } = await import('./sshd.js');
  const sshd = await startSshd(sshdOptions);
  const base = tempDir('psync-e2e-');
  const left = join(base, 'left');
  const right = join(base, rightName);
  await mkdir(left);
  await mkdir(right);
  const psync = await PsyncProcess.start(['-r', sshd.host, '--ssh-config', sshd.configFile, ...extraArgs, left, right]);
  return {
    psync,
    left,
    right,
    sshd,
    stop: async () => {
      const code = await psync.stop();
      await sshd.stop();
      return code;
    },
  };
}
