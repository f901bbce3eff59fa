/**
 * A private sshd on 127.0.0.1 for end-to-end tests: fresh host and user keys
 * in a temp dir, a client `ssh_config` naming it `psync-test`, and a
 * `known_hosts` that trusts exactly its host key. Each test file starts its
 * own, so files running in parallel never share a port or a key.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { processesUnder, signalQuietly, tcpPortsOf } from './procs.js';

/** Absolute: sshd re-executes itself and refuses to start from a relative path. */
const SSHD_PATH = '/usr/sbin/sshd';
const SSHD_START_DEADLINE_MS = 15_000;
const PORT_POLL_INTERVAL_MS = 25;
/** Another worker may grab the port between our probe and sshd's bind; try a few ports. */
const BIND_ATTEMPTS = 5;
const STDERR_KEEP_CHARS = 16_384;

export const TEST_HOST_ALIAS = 'psync-test';

export interface SshdFixture {
  /** The alias in `configFile` that reaches this sshd. */
  readonly host: string;
  readonly port: number;
  /** The daemon's pid: what a connection runs on the "remote host" runs below it. */
  readonly pid: number;
  readonly dir: string;
  /** A client config for `ssh -F` / `--ssh-config`. */
  readonly configFile: string;
  readonly knownHostsFile: string;
  readonly userKeyFile: string;
  /** The known_hosts line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`. */
  readonly hostPublicKey: string;
  readonly authorizedKeysFile: string;
  /** What sshd wrote to stderr so far (for failure messages). */
  stderr(): string;
  /**
   * kill -9 every per-connection process (with `clientPort`, only those
   * serving the client connected from that local port): each client's link
   * drops at once; the daemon keeps listening. Returns their pids.
   */
  dropConnections(clientPort?: number): Promise<number[]>;
  /** SIGSTOP the daemon: the kernel still completes new TCP connects, but no SSH banner ever comes (a hung server). */
  freeze(): void;
  /** SIGCONT the daemon: it serves what connected meanwhile. */
  thaw(): void;
  /** Stop the daemon (thawed first) and every connection, and remove its files. */
  stop(): Promise<void>;
}

/** `serverOptions`: extra sshd_config lines, e.g. `AllowTcpForwarding no`. */
export async function startSshd(serverOptions: readonly string[] = []): Promise<SshdFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'psync-sshd-'));
  try {
    return await startSshdIn(dir, serverOptions);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Replace known_hosts with a freshly generated key for the same `[127.0.0.1]:PORT`. */
export async function writeWrongKnownHosts(fixture: SshdFixture): Promise<void> {
  const otherKey = join(fixture.dir, `other_host_key_${randomBytes(6).toString('hex')}`);
  await generateKey(otherKey, 'wrong host key');
  const publicKey = await readPublicKey(otherKey);
  await writeFile(fixture.knownHostsFile, `[127.0.0.1]:${fixture.port} ${publicKey}\n`);
}

/** Make this server unknown: an empty known_hosts. */
export async function writeEmptyKnownHosts(fixture: SshdFixture): Promise<void> {
  await writeFile(fixture.knownHostsFile, '');
}

/** Put back the line that trusts this server. */
export async function writeCorrectKnownHosts(fixture: SshdFixture): Promise<void> {
  await writeFile(fixture.knownHostsFile, `${fixture.hostPublicKey}\n`);
}

/** Make the test user's key unknown to the server: every login is refused from now on. */
export async function revokeUserKey(fixture: SshdFixture): Promise<void> {
  await writeFile(fixture.authorizedKeysFile, '', { mode: 0o600 });
}

async function startSshdIn(dir: string, serverOptions: readonly string[]): Promise<SshdFixture> {
  const hostKeyFile = join(dir, 'ssh_host_ed25519_key');
  const userKeyFile = join(dir, 'id_ed25519');
  const authorizedKeysFile = join(dir, 'authorized_keys');
  const knownHostsFile = join(dir, 'known_hosts');
  const sshdConfigFile = join(dir, 'sshd_config');
  const configFile = join(dir, 'ssh_config');
  const pidFile = join(dir, 'sshd.pid');

  await Promise.all([generateKey(hostKeyFile, 'psync test host'), generateKey(userKeyFile, 'psync test user')]);
  await writeFile(authorizedKeysFile, `${await readPublicKey(userKeyFile)}\n`, { mode: 0o600 });
  // Root's sshd chroots its pre-auth child here; a fresh machine where sshd never ran lacks it.
  if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const extraServerOptions = (await sshdSupportsPerSourcePenalties())
    ? // OpenSSH >= 9.8 would otherwise ban 127.0.0.1 after the tests' deliberate failures.
      ['PerSourcePenalties no']
    : [];

  let lastError: Error | undefined;
  for (let attempt = 0; attempt < BIND_ATTEMPTS; attempt++) {
    const port = await findFreePort();
    await writeFile(
      sshdConfigFile,
      [
        'ListenAddress 127.0.0.1',
        `Port ${port}`,
        `HostKey ${hostKeyFile}`,
        `PidFile ${pidFile}`,
        `AuthorizedKeysFile ${authorizedKeysFile}`,
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        // authorized_keys lives under /tmp, which is world-writable: StrictModes would refuse it.
        'StrictModes no',
        'PermitRootLogin prohibit-password',
        'LogLevel ERROR',
        ...extraServerOptions,
        ...serverOptions,
        '',
      ].join('\n'),
    );
    await checkSshdConfig(sshdConfigFile);

    const sshd = execa(SSHD_PATH, ['-D', '-e', '-f', sshdConfigFile], {
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      cleanup: true,
    });
    let stderr = '';
    sshd.stderr.setEncoding('utf8');
    sshd.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_KEEP_CHARS);
    });
    const kill = (): void => {
      sshd.kill('SIGTERM');
    };
    let exited = false;
    const exitedPromise = sshd.then(() => {
      exited = true;
    });

    try {
      await waitForSshd(port, pidFile, sshd.pid, () => exited);
    } catch (error) {
      await stopProcess(kill, exitedPromise);
      lastError = new Error(`sshd did not start on 127.0.0.1:${port}: ${(error as Error).message}\n${stderr}`, {
        cause: error,
      });
      if (/Address already in use/i.test(stderr)) continue;
      throw lastError;
    }

    const hostPublicKey = `[127.0.0.1]:${port} ${await readPublicKey(hostKeyFile)}`;
    await writeFile(knownHostsFile, `${hostPublicKey}\n`);
    await writeFile(
      configFile,
      [
        `Host ${TEST_HOST_ALIAS}`,
        '  HostName 127.0.0.1',
        `  Port ${port}`,
        `  User ${userInfo().username}`,
        `  IdentityFile ${userKeyFile}`,
        '  IdentitiesOnly yes',
        `  UserKnownHostsFile ${knownHostsFile}`,
        // Keep the machine's own /etc/ssh/ssh_known_hosts out of the test.
        '  GlobalKnownHostsFile /dev/null',
        '  StrictHostKeyChecking yes',
        '  BatchMode yes',
        '',
      ].join('\n'),
    );

    const daemon = sshd.pid!;
    // The per-connection processes: sshd's children (and their privilege-separated children).
    const connectionPids = async (): Promise<number[]> =>
      (await processesUnder(daemon)).filter((p) => p.comm.startsWith('sshd')).map((p) => p.pid);
    const dropConnections = async (clientPort?: number): Promise<number[]> => {
      let pids = await connectionPids();
      if (clientPort !== undefined) {
        const serving = await Promise.all(pids.map(async (pid) => (await tcpPortsOf(pid)).some((ports) => ports.remote === clientPort)));
        pids = pids.filter((_, i) => serving[i]);
      }
      for (const pid of pids) signalQuietly(pid, 'SIGKILL');
      return pids;
    };
    let stopped: Promise<void> | undefined;
    return {
      host: TEST_HOST_ALIAS,
      port,
      pid: daemon,
      dir,
      configFile,
      knownHostsFile,
      userKeyFile,
      authorizedKeysFile,
      hostPublicKey,
      stderr: () => stderr,
      dropConnections,
      freeze: () => signalQuietly(daemon, 'SIGSTOP'),
      thaw: () => signalQuietly(daemon, 'SIGCONT'),
      stop: () =>
        (stopped ??= (async () => {
          // A frozen daemon would hold SIGTERM pending for ever, and a connection still open holds its
          // stderr, which execa waits for: thaw it, and end the connections found before it goes.
          signalQuietly(daemon, 'SIGCONT');
          const connections = await connectionPids();
          kill();
          for (const pid of connections) signalQuietly(pid, 'SIGKILL');
          await exitedPromise;
          await rm(dir, { recursive: true, force: true });
        })()),
    };
  }
  throw lastError ?? new Error('sshd did not start');
}

async function generateKey(file: string, comment: string): Promise<void> {
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { stdin: 'ignore' });
}

/** `ssh-ed25519 AAAA...` without the comment. */
async function readPublicKey(privateKeyFile: string): Promise<string> {
  const [type, base64] = (await readFile(`${privateKeyFile}.pub`, 'utf8')).trim().split(/\s+/);
  if (!type || !base64) throw new Error(`unreadable public key ${privateKeyFile}.pub`);
  return `${type} ${base64}`;
}

async function checkSshdConfig(configFile: string): Promise<void> {
  const result = await execa(SSHD_PATH, ['-t', '-f', configFile], { reject: false, stdin: 'ignore' });
  if (result.exitCode !== 0) {
    throw new Error(`sshd rejects its test config ${configFile} (exit ${result.exitCode}): ${result.stderr.trim()}`);
  }
}

async function sshdSupportsPerSourcePenalties(): Promise<boolean> {
  // `sshd -V` prints "OpenSSH_9.2, OpenSSL ..." on stderr (older versions print it with their usage).
  const result = await execa(SSHD_PATH, ['-V'], { reject: false, stdin: 'ignore' });
  const match = /OpenSSH_(\d+)\.(\d+)/.exec(`${result.stderr}${result.stdout}`);
  if (!match) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  return major > 9 || (major === 9 && minor >= 8);
}

function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port from a listening server'));
      });
    });
  });
}

/**
 * sshd writes its pid file only after it bound the port, so a pid file
 * naming our child tells us the port is ours and not a neighbour's that
 * happened to pick the same one.
 */
async function waitForSshd(
  port: number,
  pidFile: string,
  pid: number | undefined,
  hasExited: () => boolean,
): Promise<void> {
  const deadline = Date.now() + SSHD_START_DEADLINE_MS;
  for (;;) {
    if (hasExited()) throw new Error('sshd exited');
    const written = await readFile(pidFile, 'utf8').catch(() => '');
    if (Number(written.trim()) === pid && (await canConnect(port))) return;
    if (Date.now() > deadline) throw new Error(`port not accepting connections after ${SSHD_START_DEADLINE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, PORT_POLL_INTERVAL_MS));
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function stopProcess(kill: () => void, exited: Promise<void>): Promise<void> {
  kill();
  await exited;
}
