/**
 * The SSH endpoint: one ssh2 connection carries the side's exec channel
 * (its filter and helper) and the one command that tells which rsync the
 * remote host has (inspectRsync), and one OpenSSH ControlMaster carries
 * every rsync, so no transfer pays for an SSH handshake.
 *
 * Host keys are always checked against known_hosts, by us for ssh2 and by
 * OpenSSH (StrictHostKeyChecking=yes) for the master. An unknown key is
 * never accepted: psync runs unattended and cannot ask, and silently
 * trusting a first key is exactly the window a man in the middle wants. So
 * `StrictHostKeyChecking accept-new|no|ask` in the user's config is treated
 * as `yes`.
 */

import { createHash } from 'node:crypto';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import ssh2 from 'ssh2';
import type {
  AnyAuthMethod,
  Client as SshClient,
  ClientChannel,
  IdentityCallback,
  ParsedKey,
  ServerHostKeyAlgorithm,
} from 'ssh2';
import { ConfigError, ConnectionError, RefusedError } from '../core/errors.js';
import type { Role } from '../core/protocol.js';
import type { Side } from '../core/types.js';
import { ROLE_COMMAND } from '../install.js';
import { shellQuote, type Channel, type Endpoint, type RsyncHost } from './endpoint.js';
import { PROBE_ANSWER, PROBE_COMMAND, relayScript } from '../core/relay.js';
import {
  keyTypeOfBlob,
  knownHostsName,
  knownKeyTypes,
  parseKnownHosts,
  verifyHostKey,
  type KnownHostEntry,
} from './knownHosts.js';
import { loadSshTarget, type SshTarget } from './sshConfig.js';

const { Client, OpenSSHAgent, utils } = ssh2;

export const KEEPALIVE_INTERVAL_MS = 15_000;
export const KEEPALIVE_COUNT_MAX = 3;
const MASTER_POLL_INTERVAL_MS = 50;
/** The master gets the connect timeout plus this for authentication and mux setup. */
const MASTER_EXTRA_MS = 10_000;
const CLOSE_GRACE_MS = 2_000;
const STDERR_KEEP_CHARS = 8_192;
/** The relay probe is one round trip through the master. */
const PROBE_TIMEOUT_MS = 10_000;
/** inspectRsync runs one remote shell; it answers a few hundred bytes. */
const INSPECT_TIMEOUT_MS = 30_000;
const INSPECT_KEEP_BYTES = 16_384;

/** ssh2's default host key algorithms (Node 20 always has Ed25519), reordered per host below. */
const HOST_KEY_ALGORITHMS: readonly ServerHostKeyAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

export type SshLogLevel = 'debug' | 'verbose' | 'info' | 'warn' | 'error';
export type SshLog = (level: SshLogLevel, message: string) => void;

export interface SshConnectOptions {
  readonly side: Side;
  /** "host" or "user@host", an alias resolved through the ssh config. */
  readonly host: string;
  readonly root: string;
  readonly sshConfigFile?: string;
  /** The remote command that starts psync, already quoted for the remote shell. */
  readonly remotePsync: string;
  readonly log?: SshLog;
}

export class SshEndpoint implements Endpoint {
  readonly #client: SshClient;
  readonly #clientClosed: Promise<Error | undefined>;
  readonly #master: Master;
  readonly #dir: string;
  readonly #options: SshConnectOptions;
  readonly #disconnectListeners = new Set<(error: ConnectionError) => void>();
  #disconnectError: ConnectionError | undefined;
  #closing: Promise<void> | undefined;
  /** The `-e` program once the helper's rsync relay works (see useRelay). */
  #relayScript: string | undefined;

  private constructor(options: SshConnectOptions, connection: Connection, master: Master, dir: string) {
    this.#options = options;
    this.#client = connection.client;
    this.#clientClosed = connection.closed;
    this.#master = master;
    this.#dir = dir;
    void connection.closed.then((error) =>
      this.#disconnected(`ssh connection to ${options.host} closed${error ? `: ${error.message}` : ''}`, error),
    );
    void master.exited.then(() =>
      this.#disconnected(`ssh master connection to ${options.host} exited: ${master.stderr().trim() || 'no message'}`),
    );
  }

  static async connect(options: SshConnectOptions): Promise<SshEndpoint> {
    const log = options.log ?? (() => {});
    const target = await loadSshTarget(options.host, options.sshConfigFile);
    if (target.proxy !== undefined) {
      throw new ConfigError(`${options.host}: psync cannot connect through ${target.proxy} (not supported yet)`);
    }
    if (!['yes', 'ask'].includes(target.strictHostKeyChecking)) {
      log('verbose', `StrictHostKeyChecking ${target.strictHostKeyChecking} for ${target.host} is treated as yes`);
    }
    const knownHostsFiles = [...target.userKnownHostsFiles, ...target.globalKnownHostsFiles];
    const knownHosts = await readKnownHosts(knownHostsFiles);
    const auth = await loadAuthMethods(target, log);
    const connection = await openConnection(target, knownHosts, knownHostsFiles, auth);

    let dir: string | undefined;
    try {
      dir = await mkdtemp(join(tmpdir(), 'psync-ssh-'));
      const master = await startMaster(options, target, join(dir, 'cm'));
      return new SshEndpoint(options, connection, master, dir);
    } catch (error) {
      connection.client.end();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  get side(): Side {
    return this.#options.side;
  }

  get root(): string {
    return this.#options.root;
  }

  get description(): string {
    return `${this.#options.host}:${this.#options.root}`;
  }

  start(role: Role): Promise<Channel> {
    return this.exec(`${this.#options.remotePsync} ${ROLE_COMMAND[role]}`);
  }

  /**
   * Run `command` through the remote user's shell on a new exec channel.
   * start() uses it; public for tests and for `psync check`'s `test -d`.
   */
  exec(command: string): Promise<Channel> {
    return new Promise((resolve, reject) => {
      const fail = (error: Error): void =>
        reject(
          new ConnectionError(`cannot start "${command}" on ${this.#options.host}: ${error.message}`, { cause: error }),
        );
      try {
        this.#client.exec(command, (error, stream) => {
          if (error) fail(error);
          else resolve(toChannel(stream, this.#clientClosed));
        });
      } catch (error) {
        fail(error as Error);
      }
    });
  }

  rsyncLocation(): string {
    return `${this.#options.host}:${this.#options.root.replace(/\/+$/, '')}/`;
  }

  rsyncArgs(): string[] {
    if (this.#relayScript !== undefined) return ['-e', rsyncQuote(this.#relayScript)];
    return ['-e', this.#sshThroughMaster().map(rsyncQuote).join(' ')];
  }

  /**
   * One command on the remote host (through the user's shell, as the side
   * is started): the root's real path, the effective uid, `rsync --version`,
   * separated by NUL bytes. A root that does not resolve is given as it is.
   */
  async inspectRsync(): Promise<RsyncHost> {
    const script = 'cd -P -- "$1" 2>/dev/null && pwd -P; printf "\\000"; id -u; printf "\\000"; exec rsync --version 2>/dev/null';
    const channel = await this.exec(`sh -c ${shellQuote(script)} psync ${shellQuote(this.#options.root)}`);
    const chunks: Buffer[] = [];
    let kept = 0;
    channel.stdout.on('data', (chunk: Buffer) => {
      if (kept >= INSPECT_KEEP_BYTES) return;
      chunks.push(chunk);
      kept += chunk.length;
    });
    // The exit status can arrive before the last of the output: wait for the output's end too.
    const read = new Promise<void>((resolve) => {
      channel.stdout.once('end', () => resolve());
      channel.stdout.once('close', () => resolve());
    });
    channel.stderr.resume();
    channel.stdin.end();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), INSPECT_TIMEOUT_MS)));
    const ended = await Promise.race([Promise.all([channel.exited, read]), timeout]);
    clearTimeout(timer);
    if (ended === 'timeout') {
      channel.kill();
      throw new ConnectionError(`${this.#options.host} did not answer within ${INSPECT_TIMEOUT_MS / 1000} s which rsync it has`);
    }
    const [real = '', uid = '', version = ''] = Buffer.concat(chunks).toString('utf8').split('\0');
    const realRoot = real.replace(/\n$/, '');
    return {
      where: this.#options.host,
      realRoot: realRoot.startsWith('/') && !realRoot.includes('\n') ? realRoot : this.#options.root,
      versionOutput: version,
      euid: /^\d+\n?$/.test(uid) ? Number(uid.trim()) : -1,
    };
  }

  /** ssh through our master: no handshake, and no prompt ever. */
  #sshThroughMaster(): string[] {
    return [
      'ssh',
      ...configArgs(this.#options.sshConfigFile),
      '-S',
      this.#master.controlPath,
      '-o',
      'ControlMaster=no',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=yes',
    ];
  }

  async useRelay(relay: { readonly port: number; readonly token: string }): Promise<string | undefined> {
    const script = join(this.#dir, 'rsh');
    const text = relayScript(relay.token, { argv: this.#sshThroughMaster(), host: this.#options.host, port: relay.port }, shellQuote);
    await writeFile(script, text, { mode: 0o700 });
    // The ssh server may refuse forwarding (AllowTcpForwarding no): try it once before relying on it.
    const probe = await execa(script, [this.#options.host, PROBE_COMMAND], { reject: false, stdin: 'ignore', timeout: PROBE_TIMEOUT_MS });
    if (probe.stdout !== PROBE_ANSWER.trimEnd()) {
      return `the relay probe failed (${probe.exitCode ?? probe.signal ?? 'timeout'}): ${probe.stderr.trim().split('\n').pop() ?? ''}`;
    }
    this.#relayScript = script;
    return undefined;
  }

  /** Called once if the ssh2 connection or the master drops while we did not ask it to. */
  onDisconnect(listener: (error: ConnectionError) => void): () => void {
    const error = this.#disconnectError;
    if (error) queueMicrotask(() => listener(error));
    else this.#disconnectListeners.add(listener);
    return () => this.#disconnectListeners.delete(listener);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#client.end();
      await stopMaster(this.#options, this.#master);
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_GRACE_MS);
      });
      // A dead network can keep a polite end() waiting for TCP; don't let close() hang on it.
      await Promise.race([this.#clientClosed, graceOver]);
      clearTimeout(timer);
      this.#client.destroy();
      await rm(this.#dir, { recursive: true, force: true });
    })();
    return this.#closing;
  }

  #disconnected(message: string, cause?: Error): void {
    if (this.#closing || this.#disconnectError) return;
    const error = new ConnectionError(message, cause ? { cause } : undefined);
    this.#disconnectError = error;
    for (const listener of this.#disconnectListeners) listener(error);
    this.#disconnectListeners.clear();
  }
}

/** rsync splits `-e` on spaces and honours quotes, doubling a quote inside quotes (not backslashes). */
export const rsyncQuote = (word: string): string => (/^[^\s'"]+$/.test(word) ? word : `'${word.replace(/'/g, "''")}'`);

const configArgs = (configFile: string | undefined): string[] => (configFile === undefined ? [] : ['-F', configFile]);

/**
 * `exited` settles on the exit status, or on the channel's close, or with
 * null when the whole connection goes. ssh2 emits a channel's close only
 * once stdout has been read to its end: kill() drains so it can.
 */
function toChannel(stream: ClientChannel, connectionClosed: Promise<unknown>): Channel {
  const exited = new Promise<number | null>((resolve) => {
    stream.once('exit', (code: number | null) => resolve(typeof code === 'number' ? code : null));
    stream.once('close', (code: unknown) => resolve(typeof code === 'number' ? code : null));
    void connectionClosed.then(() => resolve(null));
  });
  return {
    stdin: stream,
    stdout: stream,
    stderr: stream.stderr,
    exited,
    kill: () => {
      // Closing a channel does not stop the remote process: sshd keeps the
      // session until the child exits. psync's children exit when their
      // stdin ends, so EOF is what stops them; TERM helps only where sshd
      // honours signal requests (not for root logins, which it refuses
      // with "session signalling requires privilege separation").
      if (!stream.writableEnded) stream.end();
      stream.signal('TERM');
      stream.close();
      stream.resume();
      stream.stderr.resume();
    },
  };
}

interface Connection {
  readonly client: SshClient;
  /** Settles when the connection is gone, with the last error seen on it. */
  readonly closed: Promise<Error | undefined>;
}

/** How the server is named in messages: "alias (hostname:port)" or "hostname:port". */
const describeTarget = (target: SshTarget): string =>
  target.host === target.hostName
    ? `${target.hostName}:${target.port}`
    : `${target.host} (${target.hostName}:${target.port})`;

async function openConnection(
  target: SshTarget,
  knownHosts: readonly KnownHostEntry[],
  knownHostsFiles: readonly string[],
  auth: readonly AuthAttempt[],
): Promise<Connection> {
  const where = describeTarget(target);
  // HostKeyAlias replaces the name (port and all) under which the key is looked up, as in ssh.
  const lookupName = target.hostKeyAlias ?? knownHostsName(target.hostName, target.port);
  let hostKeyProblem: string | undefined;

  const hostVerifier = (blob: Buffer): boolean => {
    const keyType = keyTypeOfBlob(blob);
    if (keyType === undefined) {
      hostKeyProblem = `${where} sent an unreadable host key`;
      return false;
    }
    const shown = `${keyType} SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
    const { verdict, entry } = verifyHostKey(knownHosts, lookupName, keyType, blob);
    if (verdict === 'match') return true;
    hostKeyProblem =
      verdict === 'revoked'
        ? `host key for ${where} (${shown}) is marked @revoked in ${entry?.source}: refusing to connect`
        : verdict === 'mismatch'
          ? `host key for ${where} (${shown}) does not match known_hosts (${entry?.source}): refusing to connect; ` +
            `if the server's key really changed, remove the old one with ssh-keygen -R '${lookupName}'`
          : `host key for ${where} (${shown}) is not in known_hosts (${knownHostsFiles.join(', ')}); ` +
            `add it with ssh-keyscan or connect once with ssh`;
    return false;
  };

  const client = new Client();
  return new Promise((resolve, reject) => {
    let ready = false;
    let lastError: Error | undefined;
    const closed = new Promise<Error | undefined>((resolveClosed) => {
      client.once('close', () => resolveClosed(lastError));
    });
    client.on('error', (error: Error) => {
      lastError = error;
      if (!ready) {
        client.end();
        // A host key we refuse, or credentials the host refuses, will not change by trying again.
        const refused = hostKeyProblem !== undefined || (error as { level?: string }).level === 'client-authentication';
        const message = describeConnectError(error, target, hostKeyProblem, auth);
        reject(refused ? new RefusedError(message, { cause: error }) : new ConnectionError(message, { cause: error }));
      }
    });
    client.once('ready', () => {
      ready = true;
      resolve({ client, closed });
    });
    // Without an error event (e.g. the server hung up after the banner), 'close' ends the attempt.
    void closed.then(() => {
      if (!ready) reject(new ConnectionError(`ssh connection to ${where} closed during the handshake`));
    });

    const preferred = new Set(knownKeyTypes(knownHosts, lookupName).flatMap(algorithmsForKeyType));
    try {
      client.connect({
        host: target.hostName,
        port: target.port,
        username: target.user,
        hostVerifier,
        authHandler: auth.map((attempt) => attempt.method),
        readyTimeout: target.connectTimeoutMs,
        keepaliveInterval: KEEPALIVE_INTERVAL_MS,
        keepaliveCountMax: KEEPALIVE_COUNT_MAX,
        // Offer the key types known_hosts has for this host first, as OpenSSH does, so a
        // server with several host keys shows one we can check.
        algorithms: {
          serverHostKey: [
            ...HOST_KEY_ALGORITHMS.filter((name) => preferred.has(name)),
            ...HOST_KEY_ALGORITHMS.filter((name) => !preferred.has(name)),
          ],
        },
      });
    } catch (error) {
      reject(new ConnectionError(`cannot connect to ${where}: ${(error as Error).message}`, { cause: error }));
    }
  });
}

const algorithmsForKeyType = (keyType: string): ServerHostKeyAlgorithm[] =>
  keyType === 'ssh-rsa'
    ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']
    : HOST_KEY_ALGORITHMS.filter((name) => name === keyType);

function describeConnectError(
  error: Error & { code?: string; level?: string },
  target: SshTarget,
  hostKeyProblem: string | undefined,
  auth: readonly AuthAttempt[],
): string {
  const where = describeTarget(target);
  if (hostKeyProblem !== undefined) return hostKeyProblem;
  switch (error.code) {
    case 'ECONNREFUSED':
      return `connection to ${where} refused`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot resolve host name "${target.hostName}" (for ${target.host})`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `cannot reach ${where} (${error.code})`;
  }
  if (error.level === 'client-timeout') return `timed out after ${target.connectTimeoutMs} ms connecting to ${where}`;
  if (error.level === 'client-authentication') {
    return `authentication as ${target.user} to ${where} failed (tried ${auth.map((attempt) => attempt.label).join(', ')})`;
  }
  return `ssh connection to ${where} failed: ${error.message}`;
}

async function readKnownHosts(files: readonly string[]): Promise<KnownHostEntry[]> {
  const texts = await Promise.all(
    files.map(async (file) => {
      try {
        return parseKnownHosts(await readFile(file, 'utf8'), file);
      } catch (error) {
        // A missing known_hosts file just knows no hosts, as for ssh.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw new ConfigError(`cannot read known hosts file ${file}: ${(error as Error).message}`, { cause: error });
      }
    }),
  );
  return texts.flat();
}

interface AuthAttempt {
  readonly method: AnyAuthMethod;
  /** For the "authentication failed" message. */
  readonly label: string;
}

/**
 * The agent first, then the identity files, as ssh orders them. With
 * IdentitiesOnly only agent keys matching an identity file are offered,
 * which is why the agent is wrapped rather than given by path.
 */
async function loadAuthMethods(target: SshTarget, log: SshLog): Promise<AuthAttempt[]> {
  const username = target.user;
  const fileAttempts: AuthAttempt[] = [];
  const identityBlobs: Buffer[] = [];
  for (const file of target.identityFiles) {
    const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      log(error.code === 'ENOENT' ? 'debug' : 'warn', `skipping identity ${file}: ${error.message}`);
      return undefined;
    });
    if (text === undefined) continue;
    const publicKey = await readPublicKey(`${file}.pub`);
    if (publicKey) identityBlobs.push(publicKey.getPublicSSH());
    const key = utils.parseKey(text);
    if (key instanceof Error) {
      // psync cannot ask for a passphrase; an agent holding the key still works.
      log('warn', `skipping identity ${file}: ${/passphrase|encrypted/i.test(key.message) ? 'encrypted' : key.message}`);
      continue;
    }
    identityBlobs.push(key.getPublicSSH());
    fileAttempts.push({ method: { type: 'publickey', username, key }, label: file });
  }
  const attempts: AuthAttempt[] = [];
  if (target.identityAgent !== undefined) {
    const agent = target.identitiesOnly ? new IdentityFilesAgent(target.identityAgent, identityBlobs) : target.identityAgent;
    attempts.push({ method: { type: 'agent', username, agent }, label: `agent ${target.identityAgent}` });
  }
  attempts.push(...fileAttempts);
  if (attempts.length === 0) {
    throw new RefusedError(
      `no usable ssh key for ${target.user}@${describeTarget(target)}: no agent and no readable unencrypted IdentityFile`,
    );
  }
  return attempts;
}

async function readPublicKey(file: string): Promise<ParsedKey | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  const key = text === undefined ? undefined : utils.parseKey(text);
  return key instanceof Error ? undefined : key;
}

class IdentityFilesAgent extends OpenSSHAgent {
  constructor(
    socketPath: string,
    private readonly allowed: readonly Buffer[],
  ) {
    super(socketPath);
  }

  override getIdentities(callback: IdentityCallback<ParsedKey>): void {
    super.getIdentities((error, keys) => {
      const blobs = this.allowed;
      // OpenSSHAgent hands out parsed keys; anything else cannot be matched and is left out.
      const matches = (key: unknown): boolean =>
        typeof key === 'object' &&
        key !== null &&
        'getPublicSSH' in key &&
        blobs.some((blob) => blob.equals((key as ParsedKey).getPublicSSH()));
      callback(error, keys?.filter(matches));
    });
  }
}

interface Master {
  readonly controlPath: string;
  kill(): void;
  /** Settles when the master process is gone. */
  readonly exited: Promise<void>;
  stderr(): string;
}

async function startMaster(options: SshConnectOptions, target: SshTarget, controlPath: string): Promise<Master> {
  const master = execa(
    'ssh',
    [
      ...configArgs(options.sshConfigFile),
      '-M',
      '-o',
      `ControlPath=${controlPath}`,
      '-o',
      'ControlPersist=no',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      `ServerAliveInterval=${KEEPALIVE_INTERVAL_MS / 1000}`,
      '--',
      options.host,
      // Not -N: the master's own session reads our pipe, so when psync dies (even
      // killed with SIGKILL) the pipe closes, the session ends and the master exits
      // instead of holding the connection open forever.
      'exec cat >/dev/null',
    ],
    { stdin: 'pipe', stdout: 'ignore', stderr: 'pipe', buffer: false, reject: false },
  );
  let stderr = '';
  master.stderr.setEncoding('utf8');
  master.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_KEEP_CHARS);
  });
  let gone = false;
  const exited = master.then(() => {
    gone = true;
  });
  const result: Master = { controlPath, kill: () => master.kill('SIGTERM'), exited, stderr: () => stderr };

  const where = describeTarget(target);
  const deadline = Date.now() + target.connectTimeoutMs + MASTER_EXTRA_MS;
  for (;;) {
    if (gone) {
      const message = stderr.trim() || 'ssh exited without a message';
      throw new ConnectionError(`ssh master connection to ${where} failed: ${message}`);
    }
    const check = await execa('ssh', controlArgs(options, controlPath, 'check'), { reject: false, stdin: 'ignore' });
    if (check.exitCode === 0) return result;
    if (Date.now() > deadline) {
      await stopMaster(options, result);
      const waitedMs = target.connectTimeoutMs + MASTER_EXTRA_MS;
      throw new ConnectionError(`ssh master connection to ${where} not ready after ${waitedMs} ms: ${stderr.trim()}`);
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, MASTER_POLL_INTERVAL_MS))]);
  }
}

async function stopMaster(options: SshConnectOptions, master: Master): Promise<void> {
  await execa('ssh', controlArgs(options, master.controlPath, 'exit'), {
    reject: false,
    stdin: 'ignore',
    timeout: CLOSE_GRACE_MS,
  });
  master.kill();
  await master.exited;
}

/** `ssh -O check|exit`: talk to the master through its socket. */
const controlArgs = (options: SshConnectOptions, controlPath: string, command: 'check' | 'exit'): string[] => [
  ...configArgs(options.sshConfigFile),
  '-S',
  controlPath,
  '-O',
  command,
  '--',
  options.host,
];
