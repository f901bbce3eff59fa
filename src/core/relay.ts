/**
 * The rsync relay's header. Over SSH every rsync run used to start a remote
 * shell (`ssh host rsync --server ...`), and a login shell that reads a heavy
 * `~/.bashrc` costs 100+ ms per transfer. Instead the long-lived remote
 * helper starts `rsync --server` itself: the local rsync's `-e` program
 * reaches the helper through the ssh master's stdio forward (`ssh -W`) and
 * sends, before rsync's own stream:
 *
 *     <token>\n<arg>\0<arg>\0...\0\0
 *
 * The token (from the helper's RELAY frame) proves the connection comes from
 * this psync; the args are the command rsync wanted run remotely. The
 * special command `psync-probe` only asks the helper to answer PROBE_ANSWER.
 */

export const PROBE_COMMAND = 'psync-probe';
export const PROBE_ANSWER = 'psync relay ok\n';
/** More than any rsync server command line; a longer header is refused. */
export const MAX_HEADER_BYTES = 64 * 1024;

export type RelayHeader =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'bad'; readonly reason: string }
  | { readonly kind: 'probe'; readonly token: string; readonly rest: Buffer }
  | { readonly kind: 'command'; readonly token: string; readonly args: readonly string[]; readonly rest: Buffer };

/** Parse the header at the start of `data`; `rest` is what follows it (the start of rsync's stream). */
export function parseRelayHeader(data: Buffer): RelayHeader {
  const newline = data.indexOf(0x0a);
  if (newline < 0) return data.length > MAX_HEADER_BYTES ? { kind: 'bad', reason: 'header too long' } : { kind: 'incomplete' };
  const token = data.subarray(0, newline).toString('latin1');
  const args: string[] = [];
  let at = newline + 1;
  for (;;) {
    const nul = data.indexOf(0, at);
    if (nul < 0) return data.length > MAX_HEADER_BYTES ? { kind: 'bad', reason: 'header too long' } : { kind: 'incomplete' };
    if (nul > MAX_HEADER_BYTES) return { kind: 'bad', reason: 'header too long' };
    if (nul === at) break;
    args.push(data.subarray(at, nul).toString('utf8'));
    at = nul + 1;
  }
  const rest = data.subarray(at + 1);
  if (args.length === 1 && args[0] === PROBE_COMMAND) return { kind: 'probe', token, rest };
  if (args.length < 2 || args[1] !== '--server') return { kind: 'bad', reason: `not an rsync server command: ${JSON.stringify(args.slice(0, 2))}` };
  return { kind: 'command', token, args, rest };
}

/** The header for `args` (what the `-e` script writes, here for tests and symmetry). */
export function encodeRelayHeader(token: string, args: readonly string[]): Buffer {
  return Buffer.concat([Buffer.from(`${token}\n`, 'latin1'), ...args.map((a) => Buffer.from(`${a}\0`, 'utf8')), Buffer.from([0])]);
}

/**
 * The `-e` program for rsync: a bash script written per session (mode
 * 0700 in a private directory, as it holds the token). rsync runs it as
 * `script HOST COMMAND...`; it drops HOST, sends the header, then relays the
 * stream through the ssh master to the helper's port on the remote loopback.
 */
export function relayScript(token: string, ssh: { readonly argv: readonly string[]; readonly host: string; readonly port: number }, quote: (word: string) => string): string {
  if (!/^[A-Za-z0-9]+$/.test(token)) throw new Error('relay token must be alphanumeric');
  const command = [...ssh.argv, '-W', `127.0.0.1:${ssh.port}`, '--', ssh.host].map(quote).join(' ');
  return [
    '#!/bin/bash',
    '# psync: rsync runs this as `<script> HOST COMMAND...` (see src/core/relay.ts).',
    '# ssh is exec\'d, so when the helper closes the connection this process ends at',
    '# once (rsync waits for it); cat feeds ssh the header, then rsync\'s stream.',
    'shift',
    `exec ${command} < <(printf '%s\\n' ${token} && printf '%s\\0' "$@" && printf '\\0' && exec cat)`,
    '',
  ].join('\n');
}
