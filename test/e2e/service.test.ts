/**
 * Running psync as a service, end to end with real processes: scripts/start,
 * stop and check (the `_start`, `_stop`, `_check` commands behind them),
 * their pid files (a stale one from a killed instance, one whose pid another
 * program holds), two instances side by side, one instance running the two
 * pairs of a config (both up; one broken at start; one halting while the
 * other syncs on), and `psync status --json`
 * while watching, reconnecting (a remote pair whose sshd connections die)
 * and failed (a root removed), with a heartbeat that moves while idle and a
 * killed psync shown dead. Each test has a runtime directory of its own
 * (XDG_RUNTIME_DIR), so that `psync status` sees only its pairs.
 */

import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, test } from 'vitest';
import { processesUnder } from '../support/procs.js';
import { CLI, waitFor, waitForSameTrees } from '../support/psync.js';
import { startSshd, type SshdFixture } from '../support/sshd.js';
import { tempDir } from '../support/tmp.js';

const SCRIPTS = new URL('../../scripts/', import.meta.url).pathname;

interface Shown {
  name: string;
  pairId: string;
  state: string;
  running: boolean;
  lastState?: string;
  left: string;
  right: string;
  connected: { left: boolean; right: boolean };
  queued: number;
  pid: number;
  startTime: number;
  heartbeatAt: string;
  heartbeatAgeSeconds?: number;
  updatedAt: string;
  startedAt: string;
  uptimeSeconds: number;
  lastEvent?: { at: string; what: string };
  lastError?: string;
  reconnect?: { attempt: number; since: string; lastError: string };
  recentConflicts: string[];
  skipped: number;
  skippedPaths: { side: string; path: string }[];
  counters: {
    done: Record<'leftToRight' | 'rightToLeft', Record<'rsync' | 'move' | 'delete', number>>;
    bytesSent: Record<'leftToRight' | 'rightToLeft', number>;
    rejected: Record<'left' | 'right', number>;
    conflicts: number;
    reconnectAttempts: number;
  };
}

/** One test's world: its own runtime directory, and the instances it started (stopped after it, whatever happens). */
class World {
  readonly env = { XDG_RUNTIME_DIR: tempDir('psync-service-run-') };
  private readonly started: string[][] = [];

  /** Run a script of scripts/ (start, stop, check) or the CLI (`status`...). */
  async run(command: 'start' | 'stop' | 'check' | 'status', args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    if (command === 'start' || command === 'check') this.started.push([...args].filter((a) => a !== '--restart'));
    const [file, argv] = command === 'status' ? [process.execPath, [CLI, 'status', ...args]] : [join(SCRIPTS, command), [...args]];
    const result = await execa(file, argv, { reject: false, stdin: 'ignore', env: this.env, timeout: 120_000 });
    return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  async status(): Promise<Shown[]> {
    const result = await this.run('status', ['--json']);
    return JSON.parse(result.stdout) as Shown[];
  }

  pidFile(name: string): string {
    return join(this.env.XDG_RUNTIME_DIR, 'psync', `${name}.pid`);
  }

  async stopAll(): Promise<void> {
    for (const args of this.started) await this.run('stop', args);
  }
}

let world: World | undefined;
afterEach(async () => {
  await world?.stopAll();
  world = undefined;
});

async function localPair(): Promise<{ left: string; right: string; args: string[] }> {
  const base = tempDir('psync-service-');
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right)]);
  return { left, right, args: [left, right] };
}

/** The instance name `start` printed (`started psync NAME (pid N): P pair(s) watching`) and the pid. */
function started(stdout: string, pairs = 1): { name: string; pid: number } {
  const match = new RegExp(`^started psync (\\S+) \\(pid (\\d+)\\): ${pairs} pair\\(s\\) watching`, 'm').exec(stdout);
  if (match === null) throw new Error(`start said: ${stdout}`);
  return { name: match[1]!, pid: Number(match[2]) };
}

/** Alive and not a zombie (a psync that start started is reparented, and its parent may never reap it). */
const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !['Z', 'X'].includes(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!);
  } catch {
    return false;
  }
};

/** Processes in session `sid` (psync started by start is a session leader: its sides are in its session). */
async function sessionOf(sid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (stat !== '' && Number(fields[3]) === sid && fields[0] !== 'Z') out.push(Number(name));
  }
  return out;
}

describe('start, status, check, stop of one local pair', () => {
  test('start waits until watching; status shows the pair and what it did; check is healthy; a second start is refused; stop leaves nothing', async () => {
    world = new World();
    const { left, right, args } = await localPair();
    const start = await world.run('start', args);
    expect(start.exitCode, start.stderr).toBe(0);
    const { name, pid } = started(start.stdout);
    expect(name).toMatch(/^psync-[0-9a-f]{12}$/);
    // Its log goes to a rotated --log-file; its stdout and stderr to NAME.err.
    const logs = join(process.env.XDG_STATE_HOME!, 'psync', 'log');
    expect(JSON.parse(await readFile(world.pidFile(name), 'utf8'))).toMatchObject({
      pid,
      argv: [process.execPath, expect.stringMatching(/dist\/src\/cli\.js$/), '--log-file', join(logs, `${name}.log`), left, right],
    });
    expect(await readFile(join(logs, `${name}.log`), 'utf8')).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} info  watching /m);
    expect(await readFile(join(logs, `${name}.err`), 'utf8')).not.toMatch(/ info /);

    await writeFile(join(left, 'hello.txt'), 'x'.repeat(1000));
    await waitForSameTrees(left, right);
    const [shown] = await waitFor('the send to be counted', async () => {
      const all = await world!.status();
      return (all[0]?.counters.done.leftToRight.rsync ?? 0) >= 1 && all[0]?.queued === 0 ? all : undefined;
    });
    expect(shown).toMatchObject({ state: 'watching', running: true, pid, left, right, connected: { left: true, right: true }, queued: 0, name: 'left' });
    // Sent once, as a rule; an editor-like second write would send it again, whole.
    expect(shown!.counters.bytesSent.leftToRight).toBe(1000 * shown!.counters.done.leftToRight.rsync);
    expect(shown!.counters.done.rightToLeft).toEqual({ rsync: 0, move: 0, delete: 0 });
    expect(shown!.lastEvent?.what).toContain('hello.txt');
    expect(shown!.pairId).toMatch(/^[0-9a-f]{32}$/);

    const readable = await world.run('status', []);
    expect(readable.exitCode).toBe(0);
    expect(readable.stdout).toMatch(/^left: watching, pid \d+/);
    expect(readable.stdout).toMatch(/left->right \d+ sent \(\d+(\.\d)? (B|KiB)\), 0 moved, 0 deleted; right->left 0 sent \(0 B\)/);

    // A rename and a delete are counted by kind.
    await rename(join(left, 'hello.txt'), join(left, 'moved.txt'));
    await waitFor('the move to be counted', async () => (await world!.status())[0]?.counters.done.leftToRight.move === 1);
    await rm(join(left, 'moved.txt'));
    await waitFor('the delete to be counted', async () => (await world!.status())[0]?.counters.done.leftToRight.delete === 1);
    await waitForSameTrees(left, right);

    const check = await world.run('check', args);
    expect(check.exitCode, check.stdout).toBe(0);
    expect(check.stdout).toMatch(/is healthy: pid \d+, 1 pair\(s\) watching/);

    const again = await world.run('start', args);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain(`psync ${name} already runs (pid ${pid})`);

    const session = await sessionOf(pid);
    expect(session.length, 'psync and its two sides').toBeGreaterThanOrEqual(3);
    const stop = await world.run('stop', args);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(stop.stdout).toContain(`stopped psync ${name} (pid ${pid})`);
    expect(session.filter(alive), 'processes left running').toEqual([]);
    await expect(readFile(world.pidFile(name))).rejects.toThrow(/ENOENT/);

    // Stopped cleanly: the status says so, and it is no death.
    const [after] = await world.status();
    expect(after).toMatchObject({ state: 'stopped', running: false });
    expect((await world.run('status', [])).exitCode).toBe(0);
    const dead = await world.run('check', args);
    expect(dead.exitCode).toBe(1);
    expect(dead.stdout).toBe(`psync ${name} is not running`);
    expect((await world.run('stop', args)).exitCode, 'stop when not running').toBe(0);
  });

  test('the heartbeat moves while psync is idle; what it says does not', async () => {
    world = new World();
    const { args } = await localPair();
    expect((await world.run('start', args)).exitCode).toBe(0);
    const [first] = await world.status();
    const later = await waitFor('another heartbeat', async () => {
      const [now] = await world!.status();
      return now !== undefined && now.heartbeatAt !== first!.heartbeatAt ? now : undefined;
    }, 5_000);
    expect(Date.parse(later.heartbeatAt)).toBeGreaterThan(Date.parse(first!.heartbeatAt));
    expect(later.updatedAt).toBe(first!.updatedAt);
    expect(later.state).toBe('watching');
  });

  test('--config names the instance after the file; --name overrides it; a bad --name is refused', async () => {
    world = new World();
    const { left, right } = await localPair();
    const config = join(tempDir('psync-service-conf-'), 'web.json');
    await writeFile(config, JSON.stringify({ srcRoot: left, dstRoot: right }));
    const start = await world.run('start', ['--config', config]);
    expect(start.exitCode, start.stderr).toBe(0);
    expect(started(start.stdout).name).toBe('web');
    expect((await world.run('check', ['--name', 'web', '--config', config])).exitCode).toBe(0);
    const bad = await world.run('check', ['--name', '../x', '--config', config]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/^psync check: --name "\.\.\/x": use letters/);
  });
});

describe('pid files that lie', () => {
  test('a stale pid file from a SIGKILLed psync: status shows it dead, check says so, check --restart starts it again', async () => {
    world = new World();
    const { left, right, args } = await localPair();
    const { name, pid } = started((await world.run('start', args)).stdout);
    const session = await sessionOf(pid);
    process.kill(pid, 'SIGKILL');
    // Its sides end when their input does (they hold the roots' locks until then).
    await waitFor('the killed psync and its sides to end', () => session.every((p) => !alive(p)), 15_000);

    const status = await world.run('status', ['--json']);
    expect(status.exitCode, 'a dead pair').toBe(1);
    const [shown] = JSON.parse(status.stdout) as Shown[];
    expect(shown).toMatchObject({ state: 'dead', lastState: 'watching', running: false, pid });
    expect((await world.run('status', [])).stdout).toMatch(/^left: dead \(it said watching; pid \d+ is gone\)/);

    const check = await world.run('check', args);
    expect(check.exitCode).toBe(1);
    expect(check.stdout).toBe(`psync ${name} is not running (pid ${pid} is gone)`);

    const restart = await world.run('check', ['--restart', ...args]);
    expect(restart.exitCode, restart.stderr).toBe(0);
    expect(restart.stdout).toContain(`psync ${name} is not running (pid ${pid} is gone): restarting it`);
    const again = started(restart.stdout);
    expect(again.pid).not.toBe(pid);
    await writeFile(join(left, 'after-restart'), 'syncs');
    await waitForSameTrees(left, right);
    expect((await world.run('check', args)).exitCode).toBe(0);
  });

  test('a pid file whose pid another program holds: stop leaves that program alone, start replaces the file', async () => {
    world = new World();
    const { args } = await localPair();
    const other = execa('sleep', ['600'], { reject: false, stdin: 'ignore' });
    try {
      const stat = await readFile(`/proc/${other.pid!}/stat`, 'utf8');
      const startTime = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
      const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
      await mkdir(join(world.env.XDG_RUNTIME_DIR, 'psync'), { recursive: true, mode: 0o700 });
      // Two lies: the psync that had the pid started at another time; or the same start time, but that process is `sleep`.
      for (const recorded of [startTime + 1, startTime]) {
        await writeFile(world.pidFile('victim'), JSON.stringify({ pid: other.pid, startTime: recorded, bootId, argv: [process.execPath, CLI, ...args] }));
        const stop = await world.run('stop', ['--name', 'victim', ...args]);
        expect(stop.exitCode).toBe(0);
        expect(stop.stdout).toBe(`psync victim is not running (removed its stale pid file: pid ${other.pid!} is another program now)`);
        expect(alive(other.pid!), 'sleep still runs').toBe(true);
      }
      await writeFile(world.pidFile('victim'), JSON.stringify({ pid: other.pid, startTime, bootId, argv: [process.execPath, CLI, ...args] }));
      const start = await world.run('start', ['--name', 'victim', ...args]);
      expect(start.exitCode, start.stderr).toBe(0);
      expect(start.stdout).toContain(`replacing the stale pid file ${world.pidFile('victim')}: pid ${other.pid!} is another program now`);
      expect(started(start.stdout).pid).not.toBe(other.pid);
      expect((await world.run('stop', ['--name', 'victim', ...args])).exitCode).toBe(0);
      expect(alive(other.pid!), 'sleep still runs').toBe(true);
    } finally {
      other.kill('SIGKILL');
      await other;
    }
  });
});

test('two instances side by side: each is started, checked and stopped on its own', async () => {
  world = new World();
  const [one, two] = [await localPair(), await localPair()];
  const a = started((await world.run('start', one.args)).stdout);
  const b = started((await world.run('start', two.args)).stdout);
  expect(a.name).not.toBe(b.name);
  const shown = await world.status();
  expect(shown.map((s) => s.pid).sort()).toEqual([a.pid, b.pid].sort());
  expect(shown.every((s) => s.state === 'watching')).toBe(true);
  expect((await world.run('stop', one.args)).exitCode).toBe(0);
  expect(alive(a.pid)).toBe(false);
  expect((await world.run('check', two.args)).exitCode).toBe(0);
  await writeFile(join(two.left, 'still'), 'syncs');
  await waitForSameTrees(two.left, two.right);
});

describe('one instance running two pairs (a config with "pairs")', () => {
  interface Roots {
    readonly left: string;
    readonly right: string;
  }

  /** Two local pairs, alpha and beta, and the config `duo.json` that lists them; with `brokenAlpha`, alpha's left root does not exist. */
  async function twoPairs(options: { brokenAlpha?: boolean } = {}): Promise<{ alpha: Roots; beta: Roots; args: string[] }> {
    const base = tempDir('psync-service-pairs-');
    const [alpha, beta] = ['alpha', 'beta'].map((name) => ({ left: join(base, `${name}-left`), right: join(base, `${name}-right`) })) as [Roots, Roots];
    await Promise.all([...(options.brokenAlpha === true ? [] : [alpha.left]), alpha.right, beta.left, beta.right].map((dir) => mkdir(dir)));
    const config = join(base, 'duo.json');
    const pair = (name: string, roots: Roots): object => ({ name, srcRoot: roots.left, dstRoot: roots.right });
    await writeFile(config, JSON.stringify({ intervalSeconds: 0.05, pairs: [pair('alpha', alpha), pair('beta', beta)] }));
    return { alpha, beta, args: ['--config', config] };
  }

  /** The pairs `psync status --json` lists, by name. */
  const byName = (shown: readonly Shown[]): Record<string, Shown> => Object.fromEntries(shown.map((s) => [s.name, s]));

  /** A new file in the pair's left root arrives whole on its right root. */
  async function syncs(roots: Roots, file: string): Promise<void> {
    await writeFile(join(roots.left, file), `${file} content`);
    await waitFor(`${file} to arrive`, async () => (await readFile(join(roots.right, file), 'utf8').catch(() => '')) === `${file} content`);
  }

  /** The instance's pid, from its pid file. */
  const pidOf = async (name: string): Promise<number> => (JSON.parse(await readFile(world!.pidFile(name), 'utf8')) as { pid: number }).pid;

  /** Stop the instance: exit 0, nothing of its session left, no pid file. */
  async function stopAndCheckGone(args: readonly string[], name: string, pid: number): Promise<void> {
    const session = await sessionOf(pid);
    const stop = await world!.run('stop', args);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(stop.stdout).toContain(`stopped psync ${name} (pid ${pid})`);
    expect(session.filter(alive), 'processes left running').toEqual([]);
    await expect(readFile(world!.pidFile(name))).rejects.toThrow(/ENOENT/);
  }

  test('start waits until both watch; status lists both in one process; check is healthy; each syncs; stop leaves nothing, both stopped', async () => {
    world = new World();
    const { alpha, beta, args } = await twoPairs();
    const start = await world.run('start', args);
    expect(start.exitCode, start.stderr).toBe(0);
    const { name, pid } = started(start.stdout, 2);
    expect(name).toBe('duo');

    const shown = byName(await world.status());
    expect(Object.keys(shown).sort()).toEqual(['alpha', 'beta']);
    expect(shown['alpha']).toMatchObject({ state: 'watching', running: true, pid, left: alpha.left, right: alpha.right, connected: { left: true, right: true } });
    expect(shown['beta']).toMatchObject({ state: 'watching', running: true, pid, left: beta.left, right: beta.right, connected: { left: true, right: true } });
    expect(shown['alpha']!.pairId).not.toBe(shown['beta']!.pairId);

    const check = await world.run('check', args);
    expect(check.exitCode, check.stdout).toBe(0);
    expect(check.stdout).toBe(`psync duo is healthy: pid ${pid}, 2 pair(s) watching`);

    await Promise.all([syncs(alpha, 'to-alpha.txt'), syncs(beta, 'to-beta.txt')]);
    expect((await readdir(alpha.right)).filter((n) => n !== '.psync'), 'each pair keeps to its own roots').toEqual(['to-alpha.txt']);

    const session = await sessionOf(pid);
    expect(session.length, 'psync and the two sides of each pair').toBeGreaterThanOrEqual(5);
    await stopAndCheckGone(args, name, pid);
    const after = await world.status();
    expect(after.map((s) => [s.name, s.state, s.running]).sort()).toEqual([
      ['alpha', 'stopped', false],
      ['beta', 'stopped', false],
    ]);
  });

  test('one pair broken at start (its left root missing): start names it and exits 1, psync runs on; check names it; the other syncs; stop cleans up', async () => {
    world = new World();
    const { alpha, beta, args } = await twoPairs({ brokenAlpha: true });
    const start = await world.run('start', args);
    expect(start.exitCode, start.stdout).toBe(1);
    const pid = await pidOf('duo');
    expect(alive(pid), 'psync runs the good pair').toBe(true);
    expect(start.stderr).toContain(`psync duo runs (pid ${pid}) with 1 of 2 pair(s) watching: pair alpha failed: SRCROOT ${alpha.left} does not exist (create it first)`);
    expect(start.stderr).not.toContain('pair beta');

    const status = await world.run('status', ['--json']);
    expect(status.exitCode, 'a failed pair').toBe(1);
    const shown = byName(JSON.parse(status.stdout) as Shown[]);
    expect(shown['alpha']).toMatchObject({ state: 'failed', running: true, pid, left: alpha.left, right: alpha.right, lastError: `SRCROOT ${alpha.left} does not exist (create it first)` });
    expect(shown['beta']).toMatchObject({ state: 'watching', running: true, pid });

    const check = await world.run('check', args);
    expect(check.exitCode).toBe(1);
    expect(check.stdout).toBe(`psync duo (pid ${pid}) is not healthy: pair alpha failed: SRCROOT ${alpha.left} does not exist (create it first)`);

    const again = await world.run('start', args);
    expect(again.exitCode, 'it runs: a second start is refused').toBe(2);

    await syncs(beta, 'still.txt');
    await stopAndCheckGone(args, 'duo', pid);
    const after = byName(await world.status());
    expect(after['beta']).toMatchObject({ state: 'stopped', running: false });
    expect(after['alpha']).toMatchObject({ state: 'failed', running: false });
    await expect(readdir(alpha.left), 'nothing made the missing root').rejects.toThrow(/ENOENT/);
  });

  test('one pair halting while running (its right root removed): status shows it failed, check names it, the other goes on syncing', async () => {
    world = new World();
    const { alpha, beta, args } = await twoPairs();
    const kept = ['a.txt', 'b.txt', 'c.txt'];
    await Promise.all(kept.map((file) => writeFile(join(alpha.left, file), file)));
    const { name, pid } = started((await world.run('start', args)).stdout, 2);
    await waitForSameTrees(alpha.left, alpha.right);

    await rm(alpha.right, { recursive: true });
    const failed = await waitFor('alpha to fail', async () => {
      const shown = byName(await world!.status());
      return shown['alpha']?.state === 'failed' ? shown : undefined;
    });
    expect(failed['alpha']).toMatchObject({ running: true, pid, connected: { left: false, right: false } });
    expect(failed['alpha']!.lastError).toMatch(/disappeared or was replaced/);
    expect(failed['beta']).toMatchObject({ state: 'watching', running: true, pid });
    expect(alive(pid), 'psync runs on for beta').toBe(true);

    // A halted pair's status is final and its heartbeat stops: long after, check still says why it failed.
    const staleAfter = 3;
    await waitFor('the failed pair to be written no more', async () => {
      const shown = byName(await world!.status());
      return (shown['alpha']?.heartbeatAgeSeconds ?? 0) > staleAfter;
    }, 15_000);
    const check = await world.run('check', ['--stale-after', String(staleAfter), ...args]);
    expect(check.exitCode).toBe(1);
    expect(check.stdout, 'alpha named with its error, beta not named').toBe(`psync ${name} (pid ${pid}) is not healthy: pair alpha failed: ${failed['alpha']!.lastError!}`);

    await syncs(beta, 'after-the-halt.txt');
    expect((await readdir(alpha.left)).filter((n) => n !== '.psync').sort(), 'nothing deleted on the side that stayed').toEqual(kept);
    await stopAndCheckGone(args, name, pid);
    expect(byName(await world.status())['beta']).toMatchObject({ state: 'stopped', running: false });
  });
});

test('a root removed: the pair fails, psync exits 5, status shows failed with the error', async () => {
  world = new World();
  const { left, args } = await localPair();
  const { name, pid } = started((await world.run('start', args)).stdout);
  await rm(left, { recursive: true });
  await waitFor('psync to exit', () => !alive(pid), 20_000);
  const status = await world.run('status', ['--json']);
  expect(status.exitCode).toBe(1);
  const [shown] = JSON.parse(status.stdout) as Shown[];
  expect(shown).toMatchObject({ state: 'failed', running: false, connected: { left: false, right: false } });
  expect(shown!.lastError).toMatch(/disappeared or was replaced/);
  const check = await world.run('check', args);
  expect(check.stdout).toBe(`psync ${name} is not running (pid ${pid} is gone)`);
  expect(check.exitCode).toBe(1);
});

test('a start that fails: psync exits during start-up, start prints its last log lines and its exit code', async () => {
  world = new World();
  const { left } = await localPair();
  const start = await world.run('start', [left, join(left, 'inside')]);
  expect(start.exitCode).toBe(2);
  expect(start.stderr).toMatch(/exited \(2\) during start-up; its stderr .*\.err ends:\npsync: /);
});

describe('a remote pair', () => {
  let sshd: SshdFixture | undefined;
  afterEach(async () => {
    await world?.stopAll();
    await sshd?.stop();
    sshd = undefined;
  });

  test('sshd connections killed: status shows reconnecting and check says why; stop leaves nothing on either host', async () => {
    world = new World();
    sshd = await startSshd();
    const { left, right } = await localPair();
    const args = ['-r', sshd.host, '--ssh-config', sshd.configFile, left, right];
    const { name, pid } = started((await world.run('start', args)).stdout);
    const remoteSide = async (): Promise<number[]> => (await processesUnder(sshd!.pid)).filter((p) => !p.comm.startsWith('sshd')).map((p) => p.pid);
    expect((await remoteSide()).length, 'the remote side runs under sshd').toBeGreaterThan(0);

    sshd.freeze();
    try {
      expect(await sshd.dropConnections()).not.toHaveLength(0);
      const shown = await waitFor('reconnecting', async () => {
        const [s] = await world!.status();
        return s?.state === 'reconnecting' && s.reconnect !== undefined && s.reconnect.attempt >= 1 ? s : undefined;
      }, 30_000);
      expect(shown.connected.right).toBe(false);
      expect(shown.counters.reconnectAttempts).toBeGreaterThanOrEqual(1);
      expect(shown.running).toBe(true);
      const check = await world.run('check', args);
      expect(check.exitCode).toBe(1);
      expect(check.stdout).toMatch(new RegExp(`^psync ${name} \\(pid ${pid}\\) is not healthy: pair left is reconnecting \\(attempt \\d+`));
    } finally {
      sshd.thaw();
    }
    await waitFor('watching again', async () => (await world!.status())[0]?.state === 'watching', 60_000);
    expect((await world.run('check', args)).exitCode).toBe(0);
    const session = await sessionOf(pid);
    expect((await world.run('stop', args)).exitCode).toBe(0);
    expect(session.filter(alive), 'left running here').toEqual([]);
    await waitFor('the remote side to end', async () => (await remoteSide()).length === 0, 15_000);
  }, 120_000);
});

test('a conflict (both sides changed a file while psync was stopped) is counted with its path', async () => {
  world = new World();
  const { left, right, args } = await localPair();
  await writeFile(join(left, 'shared.txt'), 'agreed');
  expect((await world.run('start', args)).exitCode).toBe(0);
  await waitForSameTrees(left, right);
  await waitFor('the send to be recorded', async () => (await world!.status())[0]?.counters.done.leftToRight.rsync === 1);
  expect((await world.run('stop', args)).exitCode).toBe(0);
  await writeFile(join(left, 'shared.txt'), 'changed on the left');
  await writeFile(join(right, 'shared.txt'), 'changed on the right, longer');
  expect((await world.run('start', args)).exitCode).toBe(0);
  const [shown] = await world.status();
  expect(shown!.counters.conflicts).toBe(1);
  expect(shown!.recentConflicts).toEqual(['shared.txt']);
  expect((await world.run('status', [])).stdout).toContain('conflicts 1 (latest: "shared.txt")');
});

describe('a runtime directory planted as a symlink is refused, never written through', () => {
  test.each([
    ['scripts/start, at <runtime>/psync', 'psync', 'start'],
    ['psync itself, at <runtime>/psync/status', 'psync/status', 'psync'],
  ] as const)('%s: exit 7', async (_, planted, how) => {
    world = new World();
    const { symlink } = await import('node:fs/promises');
    const { args } = await localPair();
    const elsewhere = tempDir('psync-service-elsewhere-');
    if (planted === 'psync/status') await mkdir(join(world.env.XDG_RUNTIME_DIR, 'psync'), { mode: 0o700 });
    await symlink(elsewhere, join(world.env.XDG_RUNTIME_DIR, planted));
    const result =
      how === 'start'
        ? await world.run('start', args)
        : await execa(process.execPath, [CLI, '-s', ...args], { reject: false, stdin: 'ignore', env: world.env });
    expect(result.exitCode).toBe(7);
    expect(String(result.stderr)).toMatch(new RegExp(`${join(world.env.XDG_RUNTIME_DIR, planted)} is a symlink: psync does not write its runtime files through one`));
    expect(await readdir(elsewhere)).toEqual([]);
  });
});
