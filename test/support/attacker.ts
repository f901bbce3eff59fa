/**
 * The attacker's side of the issue 8 tests ("Nothing escapes the root").
 *
 * psync runs as root (the test process is root); the attacker is `nobody`,
 * a user who can write into part of a tree (`<root>/w`, owned by nobody)
 * and nothing else. Every attacker step runs as nobody through `setpriv`
 * with an argv array: no shell ever sees a file name.
 *
 * What an attack must not reach is a canary directory: root-owned, mode
 * 0700, outside both roots. After an attack a test checks that every canary
 * is byte for byte what was planted (same inode, mode, owner and mtime), that
 * nothing new appeared there and nothing was created, renamed, written or
 * removed there even for a moment (an inotify tripwire), and that no canary's
 * content turned up anywhere in either tree (walked with lstat, links never
 * followed).
 *
 * Also here: a pair of roots set up for the attacker (local, or over the
 * tests' private sshd), an "evil right side" that forges frames into the
 * real side's stream on cue, and a renameat2(RENAME_EXCHANGE) loop that swaps
 * a directory for a symlink while psync works on it.
 */

import { randomBytes } from 'node:crypto';
import { watch, type FSWatcher, type Stats } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { expect } from 'vitest';
import { CLI, PsyncProcess, waitFor, type Status } from './psync.js';
import { startSshd, type SshdFixture } from './sshd.js';

// ---------------------------------------------------------------------------
// The attacker: nobody, through setpriv

const SETPRIV_NOBODY = ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--'] as const;
/** nobody:nogroup on Debian; checked once by `nobodyIds`. */
let ids: Promise<{ uid: number; gid: number }> | undefined;

export function nobodyIds(): Promise<{ uid: number; gid: number }> {
  ids ??= (async () => {
    const [uid, gid] = await Promise.all([execa('id', ['-u', 'nobody']), execa('getent', ['group', 'nogroup'])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.split(':')[2]) };
  })();
  return ids;
}

/** Run `argv` as nobody (cwd `/`, where nobody may look); throws with its stderr when it fails. */
export async function asNobody(argv: readonly string[], input?: string): Promise<string> {
  const result = await execa('setpriv', [...SETPRIV_NOBODY, ...argv], { cwd: '/', reject: false, ...(input === undefined ? { stdin: 'ignore' } : { input }) });
  if (result.exitCode !== 0) throw new Error(`as nobody, ${JSON.stringify(argv)} exited ${String(result.exitCode)}: ${result.stderr}`);
  return result.stdout;
}

/** The attacker's steps, each one coreutils command run as nobody. */
export const attacker = {
  symlink: (target: string, path: string) => asNobody(['ln', '-s', '--', target, path]),
  mkdir: (path: string) => asNobody(['mkdir', '--', path]),
  write: (path: string, content: string) => asNobody(['tee', '--', path], content),
  remove: (path: string) => asNobody(['rm', '-rf', '--', path]),
  rename: (from: string, to: string) => asNobody(['mv', '-T', '--', from, to]),
  copyTree: (from: string, to: string) => asNobody(['cp', '-r', '--', from, to]),
  chmod: (mode: string, path: string) => asNobody(['chmod', mode, '--', path]),
  /** Set the mtime (whole seconds) of a file, not following a link. */
  touch: (path: string, mtimeSeconds: number) => asNobody(['touch', '-h', '-d', `@${mtimeSeconds}`, '--', path]),
};

// ---------------------------------------------------------------------------
// Walking a tree without following links

/** Every entry below `root` (not `root` itself), lstat'ed; entries that vanish meanwhile are skipped. */
export async function walkTree(root: string, visit: (path: string, info: Stats) => Promise<void> | void): Promise<void> {
  const names = await readdir(root).catch(() => [] as string[]);
  for (const name of names) {
    const path = join(root, name);
    const info = await lstat(path).catch(() => undefined);
    if (info === undefined) continue;
    await visit(path, info);
    if (info.isDirectory()) await walkTree(path, visit);
  }
}

// ---------------------------------------------------------------------------
// Canaries

interface Planted {
  readonly content: Buffer;
  readonly ino: number;
  readonly mode: number;
  readonly uid: number;
  readonly mtimeMs: number;
}

/**
 * Root-only files outside both roots that no attack may read, change, move
 * or remove. Names may hold a slash (`replaced/keep.txt`): the directories
 * are made too, mode 0700.
 */
export class Canaries {
  private readonly events: string[] = [];
  private readonly watchers: FSWatcher[] = [];

  private constructor(
    readonly dir: string,
    private readonly planted: ReadonlyMap<string, Planted>,
    private readonly dirs: readonly string[],
  ) {
    // A tripwire: inotify sees a file created and removed again, which a final comparison would miss.
    for (const sub of ['', ...dirs]) {
      const watcher = watch(join(dir, sub), (event, name) => this.events.push(`${event} ${join(sub, String(name))}`));
      watcher.on('error', (error) => this.events.push(`the watch on ${sub || '.'} failed: ${error.message}`));
      this.watchers.push(watcher);
    }
  }

  static async plant(names: readonly string[]): Promise<Canaries> {
    const dir = await mkdtemp(join(tmpdir(), 'psync-canary-'));
    const planted = new Map<string, Planted>();
    const dirs = new Set<string>();
    for (const name of names) {
      for (let sub = dirname(name); sub !== '.'; sub = dirname(sub)) dirs.add(sub);
      await mkdir(join(dir, dirname(name)), { recursive: true, mode: 0o700 });
      const content = Buffer.from(`psync canary ${name} ${randomBytes(16).toString('hex')}\n`);
      await writeFile(join(dir, name), content, { mode: 0o600 });
      const info = await lstat(join(dir, name));
      planted.set(name, { content, ino: info.ino, mode: info.mode, uid: info.uid, mtimeMs: info.mtimeMs });
    }
    return new Canaries(dir, planted, [...dirs].sort());
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  content(name: string): Buffer {
    const planted = this.planted.get(name);
    if (planted === undefined) throw new Error(`no canary ${name}`);
    return planted.content;
  }

  /** What an attack did to the canaries, or to the trees with them; empty when nothing. */
  async problems(trees: readonly string[]): Promise<string[]> {
    return [...(await this.damage()), ...this.events.map((event) => `the canary dir was touched: ${event}`), ...(await this.leaks(trees))];
  }

  /** Fails the test with every problem found, and `context` (the psync log) to explain it. */
  async expectSafe(trees: readonly string[], context: () => string): Promise<void> {
    const problems = await this.problems(trees);
    expect(problems, `${problems.join('\n')}\n--- psync log ---\n${context().slice(-8000)}`).toEqual([]);
  }

  async remove(): Promise<void> {
    for (const watcher of this.watchers.splice(0)) watcher.close();
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Canaries missing or changed, and entries that were not planted. */
  private async damage(): Promise<string[]> {
    const out: string[] = [];
    for (const [name, planted] of this.planted) {
      const info = await lstat(this.path(name)).catch(() => undefined);
      if (info === undefined) out.push(`canary ${name} is gone`);
      else if (!info.isFile() || info.ino !== planted.ino) out.push(`canary ${name} was replaced`);
      else if (!(await readFile(this.path(name))).equals(planted.content)) out.push(`canary ${name} was written`);
      else if (info.mode !== planted.mode || info.uid !== planted.uid || info.mtimeMs !== planted.mtimeMs) {
        out.push(`canary ${name} changed: mode ${info.mode.toString(8)} uid ${info.uid} mtime ${info.mtimeMs}`);
      }
    }
    const known = new Set([...this.planted.keys(), ...this.dirs].map((name) => this.path(name)));
    await walkTree(this.dir, (path) => {
      if (!known.has(path)) out.push(`new entry in the canary dir: ${path.slice(this.dir.length + 1)}`);
    });
    return out;
  }

  /** Regular files in `trees` that hold a canary's content. */
  private async leaks(trees: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const tree of trees) {
      await walkTree(tree, async (path, info) => {
        if (!info.isFile()) return;
        const data = await readFile(path).catch(() => Buffer.alloc(0));
        for (const [name, planted] of this.planted) {
          if (data.includes(planted.content)) out.push(`canary ${name}'s content is in ${path}`);
        }
      });
    }
    return out;
  }
}

// ---------------------------------------------------------------------------
// A pair of roots the attacker can write into

/** psync stopped while a test waited for it (which, after an attack, may be the safe outcome). */
export class PsyncExited extends Error {
  override readonly name = 'PsyncExited';
}

export type Mode = 'local' | 'remote';
export const MODES: readonly Mode[] = ['local', 'remote'];

/** The part of each tree nobody owns (0755): the attacker's playground. */
export const ATTACKER_DIR = 'w';

/**
 * Two roots, `left/` and `right/`, in a temp dir only root can list but
 * anyone can cross (0711), each with `w/` owned by nobody; and `work/`
 * (0755) for the tools the attacker runs. With mode `remote`, psync reaches
 * the right root over the tests' private sshd (as root on 127.0.0.1).
 */
export class AttackPair {
  psync: PsyncProcess | undefined;
  /** psync's exit code once it has exited (-1 for a signal). */
  exitCode: number | undefined;
  private barriers = 0;
  private forges = 0;
  private pings = 0;

  private constructor(
    readonly mode: Mode,
    readonly base: string,
    private readonly sshd: SshdFixture | undefined,
  ) {}

  get left(): string {
    return join(this.base, 'left');
  }

  get right(): string {
    return join(this.base, 'right');
  }

  get work(): string {
    return join(this.base, 'work');
  }

  /** `w/<path>` under the left root. */
  l(path = ''): string {
    return join(this.left, ATTACKER_DIR, path);
  }

  /** `w/<path>` under the right root. */
  r(path = ''): string {
    return join(this.right, ATTACKER_DIR, path);
  }

  static async make(mode: Mode): Promise<AttackPair> {
    const sshd = mode === 'remote' ? await startSshd() : undefined;
    const base = await mkdtemp(join(tmpdir(), 'psync-attack-'));
    await chmod(base, 0o711);
    const pair = new AttackPair(mode, base, sshd);
    const { uid, gid } = await nobodyIds();
    for (const dir of [pair.left, pair.right, pair.work]) await mkdir(dir, { mode: 0o755 });
    for (const dir of [pair.l(), pair.r()]) {
      await mkdir(dir, { mode: 0o755 });
      await chown(dir, uid, gid);
    }
    await chmod(pair.work, 0o755);
    return pair;
  }

  /** psync's arguments for this pair: the remote host settings, `extra`, the two roots. */
  args(extra: readonly string[] = []): string[] {
    const remote = this.sshd === undefined ? [] : ['-r', this.sshd.host, '--ssh-config', this.sshd.configFile];
    return [...remote, ...extra, this.left, this.right];
  }

  /** Start psync on the pair and wait until it watches. */
  async start(extra: readonly string[] = []): Promise<PsyncProcess> {
    return this.adopt(await PsyncProcess.start(this.args(extra)));
  }

  /**
   * Start psync where it may refuse to run (an unsafe tree): resolves once
   * it watches (true) or has exited (false), whichever comes first.
   */
  async startOrRefuse(extra: readonly string[] = []): Promise<boolean> {
    const psync = this.adopt(await PsyncProcess.start(this.args(extra), { waitWatching: false }));
    return this.until('psync to watch', async () => (await psync.status())?.state === 'watching', 30_000).then(
      () => true,
      (error: unknown) => {
        if (error instanceof PsyncExited) return false;
        throw error;
      },
    );
  }

  private adopt(psync: PsyncProcess): PsyncProcess {
    this.psync = psync;
    void psync.child.then((result) => (this.exitCode = result.exitCode ?? -1));
    return psync;
  }

  /** `psync -s`: the start-up reconcile alone; resolves with its exit code and output. */
  async syncOnly(extra: readonly string[] = []): Promise<{ exitCode: number | undefined; output: string }> {
    const result = await execa(process.execPath, [CLI, '-s', ...this.args(extra)], { reject: false, stdin: 'ignore' });
    return { exitCode: result.exitCode, output: `${result.stdout}\n${result.stderr}` };
  }

  log(): string {
    return this.psync?.log() ?? '';
  }

  /**
   * waitFor, with the end of psync's log in the error when it times out;
   * rejects with PsyncExited at once when psync has exited meanwhile.
   */
  async until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, deadlineMs?: number): Promise<T> {
    const exited = Symbol('exited');
    const result = await waitFor<T | typeof exited>(what, () => (this.exitCode !== undefined ? exited : probe()), deadlineMs).catch((error: Error) => {
      throw new Error(`${error.message}\n--- psync log ---\n${this.log().slice(-6000)}`);
    });
    if (result === exited) throw new PsyncExited(`psync exited (${String(this.exitCode)}) while waiting for ${what}\n${this.log().slice(-6000)}`);
    return result;
  }

  /**
   * Write a new file in `w/` on the source side and wait until it arrived
   * on the other side. A filter reports in order and the brain applies in
   * order, so everything reported on that side before it has been applied.
   */
  async barrier(direction: 'leftToRight' | 'rightToLeft'): Promise<void> {
    const name = `barrier-${++this.barriers}`;
    const [from, to] = direction === 'leftToRight' ? [this.l(name), this.r(name)] : [this.r(name), this.l(name)];
    await writeFile(from, name);
    await this.until(`${name} to arrive (${direction})`, async () => (await readFile(to, 'utf8').catch(() => '')) === name);
  }

  /** Barriers both ways: what either side reported so far, and what that caused, is done. */
  async settle(): Promise<void> {
    await this.barrier('rightToLeft');
    await this.barrier('leftToRight');
  }

  /**
   * How many actions from the left the brain has applied, counting every
   * one it applied before this call. The status file is written up to
   * STATUS_WRITE_INTERVAL_MS late; a file written on the right now makes
   * the brain write it again, and a status stamped after this call is
   * current.
   */
  async appliedFromLeft(): Promise<number> {
    const since = Date.now();
    await writeFile(join(this.right, `ping-${++this.pings}`), 'ping');
    const status = await this.until('a status written after the ping', async () => {
      const status = (await this.psync?.status()) as (Status & { updatedAt?: string }) | undefined;
      return status !== undefined && Date.parse(status.updatedAt ?? '') >= since ? status : undefined;
    });
    return status.counters.applied.leftToRight;
  }

  /**
   * Run `change` on the left and wait until the right shows it was acted on
   * (`actedOn`), or the brain has applied more than `before` actions from
   * the left (see appliedFromLeft; the helper refused it, say). Then it has
   * been carried out, as far as it will be.
   */
  async leftChange(before: number, change: () => Promise<unknown>, actedOn: () => Promise<boolean> | boolean): Promise<void> {
    await change();
    await this.until('the change to be acted on', async () => (await actedOn()) || ((await this.psync?.status())?.counters.applied.leftToRight ?? 0) > before);
  }

  /** Stop psync, if it runs (SIGTERM); resolves with its exit code. The trees stay for a look. */
  async stopPsync(): Promise<number | undefined> {
    return this.psync?.stop();
  }

  /** Stop psync (if it runs) and the sshd, and remove every temp dir the pair made. */
  async cleanup(): Promise<number | undefined> {
    let code: number | undefined;
    if (this.psync !== undefined) {
      code = await this.psync.stop();
      await rm(dirname(this.psync.statusFile), { recursive: true, force: true });
    }
    await this.sshd?.stop();
    await rm(this.base, { recursive: true, force: true });
    return code;
  }

  // -------------------------------------------------------------------------
  // An evil right side

  /**
   * `--remote-psync` for a right side that is the real `psync _side` with
   * frames forged into its stream (see `forge`): what a compromised remote
   * host, or a remote root, can send. Remote mode only.
   */
  async evilRightSide(): Promise<string[]> {
    if (this.mode !== 'remote') throw new Error('an evil right side needs the remote mode');
    const script = join(this.work, 'evil-side.mjs');
    await mkdir(join(this.work, 'forge'));
    await writeFile(script, evilSideScript());
    return ['--remote-psync', `${process.execPath} ${script} ${join(this.work, 'forge')}`];
  }

  /**
   * Have the evil right side send `frames` (verb and arguments, as a filter
   * sends them): they follow the report of a new file `forge-<n>` at the
   * right root, in that order. Resolves once a barrier written after them
   * arrived on the left: the brain has acted on them by then.
   */
  async forge(frames: ReadonlyArray<{ verb: string; args: readonly string[] }>): Promise<void> {
    const name = `forge-${++this.forges}`;
    await writeFile(join(this.work, 'forge', name), JSON.stringify(frames.map((f) => [f.verb, f.args])));
    await writeFile(join(this.right, name), 'trigger');
    await this.until(`${name} to arrive`, () => lstat(join(this.left, name)).then(() => true));
    await this.settle();
  }
}

/**
 * Plant canaries, make a pair, run the attack, stop psync, check the
 * canaries against both trees; always clean up.
 */
export async function attack(mode: Mode, canaryNames: readonly string[], run: (pair: AttackPair, canaries: Canaries) => Promise<void>): Promise<void> {
  const canaries = await Canaries.plant(canaryNames);
  const pair = await AttackPair.make(mode);
  try {
    await run(pair, canaries);
    // psync writes on its way out too (it releases its lock): look only once it has stopped.
    await pair.stopPsync();
    await canaries.expectSafe([pair.left, pair.right], () => pair.log());
  } finally {
    await pair.cleanup();
    await canaries.remove();
  }
}

/**
 * The evil side: starts the real `_side` and passes its frames on,
 * renumbered in its own stream; after the report of `forge-<n>` it sends the
 * frames listed in `<forgeDir>/forge-<n>` as if its filter had sent them.
 */
function evilSideScript(): string {
  const frameModule = pathToFileURL(join(dirname(CLI), 'core', 'frame.js')).href;
  return `
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { FrameReceiver, FrameWriter } from ${JSON.stringify(frameModule)};
const [forgeDir, ...role] = process.argv.slice(2);
const side = spawn(process.execPath, [${JSON.stringify(CLI)}, ...role], { stdio: ['pipe', 'pipe', 'inherit'] });
process.stdin.pipe(side.stdin);
const writer = new FrameWriter();
const receiver = new FrameReceiver();
const send = (verb, args) => process.stdout.write(writer.encode(verb, args));
const forged = new Set();
side.stdout.on('data', (chunk) => {
  for (const received of receiver.push(chunk.toString('latin1'))) {
    if (!received.ok) continue;
    const { verb, args } = received.frame;
    send(verb, args);
    const cue = verb === 'RSYNC' && /^forge-[0-9]+$/.test(args[0]) ? args[0] : undefined;
    if (cue === undefined || forged.has(cue)) continue;
    forged.add(cue);
    for (const [v, a] of JSON.parse(readFileSync(forgeDir + '/' + cue, 'utf8'))) send(v, a);
  }
});
side.on('exit', (code) => process.stdout.write('', () => process.exit(code ?? 1)));
`;
}

// ---------------------------------------------------------------------------
// The exchange loop

/**
 * renameat2(RENAME_EXCHANGE) of two names in one directory, in a loop until
 * SIGTERM (or once). The directory is held open, so the loop follows it
 * when psync renames it (a delete's or a move's first step) and goes on
 * swapping there. It prints `swapping` after its first exchange and the
 * number of exchanges when it ends; it ends early, quietly, when an
 * exchange fails after the first (psync removed one of the names).
 *
 * It pauses PAUSE_US between exchanges. Without a pause, on a two-core
 * machine, the loop starved psync's right side for seconds at a time (its
 * filter rescans after the inotify queue overflows, and every lookup in the
 * directory contends with the renames), so that it answered nothing while
 * the loop ran. Some 10,000 exchanges a second still flip the directory
 * within each of psync's check-then-act gaps (tens of microseconds or more):
 * the old helper lost canaries within a few rounds.
 */
const PAUSE_US = 50;
const EXCHANGE_C = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#define PAUSE_US ${PAUSE_US}
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
static volatile sig_atomic_t stopped;
static void on_term(int sig) { (void)sig; stopped = 1; }
int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: exchange loop|once DIR A B\\n"); return 2; }
  int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
  if (dir < 0) { perror(argv[2]); return 2; }
  signal(SIGTERM, on_term);
  int once = strcmp(argv[1], "once") == 0;
  unsigned long swaps = 0;
  while (!stopped) {
    if (syscall(SYS_renameat2, dir, argv[3], dir, argv[4], RENAME_EXCHANGE) != 0) {
      if (swaps == 0) { perror("renameat2"); return 1; }
      break;
    }
    if (++swaps == 1) { printf("swapping\\n"); fflush(stdout); }
    if (once) break;
    usleep(PAUSE_US);
  }
  printf("%lu\\n", swaps);
  return 0;
}
`;

const LOOP_OPTIONS = { reject: false, stdin: 'ignore', cwd: '/' } as const;

/** A running exchange loop (as nobody). */
export class ExchangeLoop {
  private done = false;

  constructor(private readonly child: ResultPromise<typeof LOOP_OPTIONS>) {
    void child.then(() => (this.done = true));
  }

  /** The loop ended by itself: psync removed one of the names. */
  get ended(): boolean {
    return this.done;
  }

  /** Stop it (SIGTERM to the one process it is) and resolve with how many exchanges it made. */
  async stop(): Promise<number> {
    this.child.kill('SIGTERM');
    const result = await this.child;
    return Number(String(result.stdout).trim().split('\n').pop());
  }
}

export class Exchanger {
  private constructor(private readonly program: string) {}

  /** Compile the program into `dir` (which nobody must be able to reach). */
  static async build(dir: string): Promise<Exchanger> {
    const source = join(dir, 'exchange.c');
    const program = join(dir, 'exchange');
    await writeFile(source, EXCHANGE_C);
    await execa('cc', ['-O2', '-o', program, source]);
    await chmod(program, 0o755);
    return new Exchanger(program);
  }

  /** Swap `dir/a` and `dir/b` in a loop, as nobody; resolves once the first exchange is done. */
  async loop(dir: string, a: string, b: string): Promise<ExchangeLoop> {
    const child = execa('setpriv', [...SETPRIV_NOBODY, this.program, 'loop', dir, a, b], LOOP_OPTIONS);
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let ended: string | undefined;
    void child.then((result) => (ended = `exited ${String(result.exitCode)}: ${String(result.stderr)}`));
    const started = await waitFor(`the exchange loop on ${a} and ${b} to start`, () =>
      output.startsWith('swapping') ? 'started' : ended === undefined ? undefined : 'ended',
    );
    if (started === 'ended') throw new Error(`the exchange loop on ${a} and ${b} ${String(ended)}`);
    return new ExchangeLoop(child);
  }

  /** One exchange of `dir/a` and `dir/b`, as nobody. */
  async once(dir: string, a: string, b: string): Promise<void> {
    await asNobody([this.program, 'once', dir, a, b]);
  }

  /** After a loop: if `dir/a` is the symlink now, swap once more so that `a` is the directory again. */
  async restore(dir: string, a: string, b: string): Promise<void> {
    const [infoA, infoB] = await Promise.all([lstat(join(dir, a)).catch(() => undefined), lstat(join(dir, b)).catch(() => undefined)]);
    if (infoA?.isSymbolicLink() === true && infoB !== undefined) await this.once(dir, a, b);
  }
}
