/**
 * The helper's side of the rsync relay (src/core/relay.ts): a TCP listener
 * on the loopback of the helper's host. Each connection proves itself with
 * the session token and names an `rsync --server ...` command line; when
 * relayCommand accepts it (only the `rsync` binary, with `--server`, every
 * transfer root under the helper's root, nothing that undoes the
 * confinement), that rsync is started here without a shell (argv, never a
 * command string) with `--confine-root=<the root's real path>` added, its
 * stdin and stdout joined to the connection. Its stderr goes to the
 * helper's log, as ssh would have shown it.
 *
 * The relay needs rsync 3.5.0 or newer here (it passes --confine-root):
 * with an older one it does not start, and the brain falls back to a remote
 * shell per run (and applies its own rule for old rsyncs, core/rsyncVersion.ts).
 */

import { spawn } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { MAX_STDERR_LINE_CHARS, readLines } from '../src/lineStream.js';
import { parseRelayHeader, PROBE_ANSWER, relayCommand, type RelayRoot } from '../src/core/relay.js';
import { compareRsyncVersions, formatRsyncVersion, MIN_RSYNC_VERSION, parseRsyncVersion } from '../src/core/rsyncVersion.js';

/** A connection that has not sent its whole header by then is dropped. */
const HEADER_TIMEOUT_MS = 10_000;

export interface Relay {
  readonly port: number;
  readonly token: string;
  close(): void;
}

/**
 * Start the relay for the helper whose root is `root` (as CONFIG gave it).
 * Throws (the helper then answers NORELAY) when no root is given, when the
 * root cannot be resolved, or when this host's rsync is older than 3.5.0.
 */
export async function startRelay(log: (line: string) => void, root: string): Promise<Relay> {
  const where: RelayRoot = { root, realRoot: await realpath(root), cwd: process.cwd() };
  await checkRsyncVersion();
  const token = randomBytes(24).toString('hex');
  const expected = Buffer.from(token, 'latin1');
  const server: Server = createServer((socket) => serve(socket, expected, where, log));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  server.unref(); // the frame channel decides when the helper ends
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the rsync relay has no TCP port');
  return { port: address.port, token, close: () => server.close() };
}

/** This host's `rsync --version` must be 3.5.0 or newer: the relay gives every run --confine-root. */
async function checkRsyncVersion(): Promise<void> {
  const child = spawn('rsync', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let output = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text: string) => {
    if (output.length < 4096) output += text;
  });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', () => resolve());
  });
  const version = parseRsyncVersion(output);
  if (version === undefined || compareRsyncVersions(version, MIN_RSYNC_VERSION) < 0) {
    const found = version === undefined ? 'no readable rsync version' : `rsync ${formatRsyncVersion(version)}`;
    throw new Error(`${found} here; the relay needs ${formatRsyncVersion(MIN_RSYNC_VERSION)} or newer (--confine-root)`);
  }
}

function serve(socket: Socket, token: Buffer, where: RelayRoot, log: (line: string) => void): void {
  let received = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), HEADER_TIMEOUT_MS);
  socket.on('error', () => socket.destroy());
  const onData = (chunk: Buffer): void => {
    received = Buffer.concat([received, chunk]);
    const header = parseRelayHeader(received);
    if (header.kind === 'incomplete') return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.pause();
    if (header.kind === 'bad') {
      log(`rsync relay: refused a connection: ${header.reason}`);
      socket.destroy();
      return;
    }
    const given = Buffer.from(header.token, 'latin1');
    if (given.length !== token.length || !timingSafeEqual(given, token)) {
      log('rsync relay: refused a connection with a wrong token');
      socket.destroy();
      return;
    }
    if (header.kind === 'probe') {
      socket.end(PROBE_ANSWER);
      return;
    }
    const command = relayCommand(header, where);
    if (!command.ok) {
      log(`rsync relay: refused a command: ${command.reason}`);
      socket.destroy();
      return;
    }
    run(socket, command.argv, header.rest, log);
  };
  socket.on('data', onData);
}

/** Start `rsync` with the rest of `argv` (no shell; relayCommand made argv[0] `rsync`) and join it to the socket. */
function run(socket: Socket, argv: readonly string[], rest: Buffer, log: (line: string) => void): void {
  const child = spawn('rsync', argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  child.on('error', (error) => {
    log(`rsync relay: cannot start rsync: ${error.message}`);
    socket.destroy();
  });
  child.stdin.on('error', () => undefined); // rsync exited first: the socket's close ends it all
  if (rest.length > 0) child.stdin.write(rest);
  socket.pipe(child.stdin);
  child.stdout.pipe(socket);
  void readLines(child.stderr, MAX_STDERR_LINE_CHARS, (line) => {
    if (line.text !== '') log(`rsync: ${line.text}${line.cut ? ' [line cut]' : ''}`);
  });
  socket.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.stdin.end();
  });
  child.on('exit', (code, signal) => {
    if (code !== 0) log(`rsync relay: rsync --server ended with ${signal ?? `exit ${String(code)}`}`);
  });
  // Close both ways once rsync is done: that ends the ssh forward, and the local rsync waits for it.
  child.on('close', () => socket.destroySoon());
  socket.resume();
}
