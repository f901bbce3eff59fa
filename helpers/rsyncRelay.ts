/**
 * The helper's side of the rsync relay (src/core/relay.ts): a TCP listener
 * on the loopback of the helper's host. Each connection proves itself with
 * the session token, names an `rsync --server ...` command line, and gets
 * that rsync started here without a shell (argv, never a command string),
 * its stdin and stdout joined to the connection. Its stderr goes to the
 * helper's log, as ssh would have shown it.
 */

import { spawn } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { parseRelayHeader, PROBE_ANSWER } from '../src/core/relay.js';

/** A connection that has not sent its whole header by then is dropped. */
const HEADER_TIMEOUT_MS = 10_000;

export interface Relay {
  readonly port: number;
  readonly token: string;
  close(): void;
}

export async function startRelay(log: (line: string) => void): Promise<Relay> {
  const token = randomBytes(24).toString('hex');
  const expected = Buffer.from(token, 'latin1');
  const server: Server = createServer((socket) => serve(socket, expected, log));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  server.unref(); // the frame channel decides when the helper ends
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the rsync relay has no TCP port');
  return { port: address.port, token, close: () => server.close() };
}

function serve(socket: Socket, token: Buffer, log: (line: string) => void): void {
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
    run(socket, header.args, header.rest, log);
  };
  socket.on('data', onData);
}

/** Start rsync with `args` (argv: no shell) and join it to the socket. */
function run(socket: Socket, args: readonly string[], rest: Buffer, log: (line: string) => void): void {
  const child = spawn(args[0]!, args.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  child.on('error', (error) => {
    log(`rsync relay: cannot start ${JSON.stringify(args[0])}: ${error.message}`);
    socket.destroy();
  });
  child.stdin.on('error', () => undefined); // rsync exited first: the socket's close ends it all
  if (rest.length > 0) child.stdin.write(rest);
  socket.pipe(child.stdin);
  child.stdout.pipe(socket);
  let pending = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    const lines = (pending + text).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line !== '') log(`rsync: ${line}`);
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
