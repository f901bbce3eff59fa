/**
 * The rsync relay's header, and what the relay will run. Over SSH every
 * rsync run used to start a remote shell (`ssh host rsync --server ...`),
 * and a login shell that reads a heavy `~/.bashrc` costs 100+ ms per
 * transfer. Instead the long-lived remote helper starts `rsync --server`
 * itself: the local rsync's `-e` program reaches the helper through the ssh
 * master's stdio forward (`ssh -W`) and sends, before rsync's own stream:
 *
 *     <token>\n<arg>\0<arg>\0...\0\0
 *
 * The token (from the helper's RELAY frame) proves the connection comes from
 * this psync; the args are the command rsync wanted run remotely. The
 * special command `psync-probe` only asks the helper to answer PROBE_ANSWER.
 *
 * What psync's rsync sends (it always runs with `--protect-args`): the
 * command line is only `rsync --server [--sender] -s<flags>[e.<caps>]`
 * (e.g. `-slogDtpIRe.LsfxCIvu`), and rsync's stream then starts with the
 * "protected args", in the same form: `rsync\0<option>\0...\0.\0<root>\0\0`,
 * where every option that is not a single letter (`--backup-dir`,
 * `--files-from=-`, `-M` remote options...) and the root path travel. The
 * relay reads both (they are in `rest` too, for rsync) and runs rsync only
 * when relayCommand accepts them:
 * - argv[0] is exactly `rsync` (found on the helper's PATH) and argv[1]
 *   `--server`: nothing else is ever started;
 * - `--protect-args` (`-s`), so the protected args are all there is;
 * - no option that would undo the confinement or follow links out of the
 *   tree (`--confine-root`, `--insecure-links`, `-L`/`--copy-links`,
 *   `--copy-unsafe-links`, `-k`, `-K`, `--files-from` other than `-`...);
 * - every transfer root (the paths after the `.` separator) is the helper's
 *   root or below it: `--confine-root` does not confine an explicit root;
 * and the relay appends `--confine-root=<the root's real path>` itself.
 */

import { bytesToPath } from './paths.js';

export const PROBE_COMMAND = 'psync-probe';
export const PROBE_ANSWER = 'psync relay ok\n';
/** More than any rsync server command line and its protected args; a longer header is refused. */
export const MAX_HEADER_BYTES = 64 * 1024;

export type RelayHeader =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'bad'; readonly reason: string }
  | { readonly kind: 'probe'; readonly token: string; readonly rest: Buffer }
  | {
      readonly kind: 'command';
      readonly token: string;
      /** The server command line: `rsync --server [--sender] -s...`. */
      readonly args: readonly string[];
      /** The protected args at the start of rsync's stream (still in `rest`). */
      readonly protectedArgs: readonly string[];
      /** Everything after the header, protected args included: what rsync --server reads. */
      readonly rest: Buffer;
    };

/** The NUL-terminated strings from `at` up to an empty one; undefined while the empty one has not arrived. */
function readList(data: Buffer, at: number, decode: (bytes: Buffer) => string): { items: string[]; end: number } | undefined {
  const items: string[] = [];
  for (;;) {
    const nul = data.indexOf(0, at);
    if (nul < 0) return undefined;
    if (nul === at) return { items, end: at + 1 };
    items.push(decode(data.subarray(at, nul)));
    at = nul + 1;
  }
}

/** The server command line's flag group: `-s<letters>` then rsync's `e.<capabilities>`. */
const SERVER_FLAGS = /^-(s[A-Za-df-z]*)(?:e\.[A-Za-z]*)?$/;
/** Flags that follow symlinks out of the tree: -L (copy links), -k (copy dirlinks), -K (keep dirlinks). */
const LINK_FOLLOWING_FLAGS = /[LkK]/;

/** Why a server command line is not one psync's rsync sends, or undefined when it is. */
function badServerCommand(args: readonly string[]): string | undefined {
  if (args[0] !== 'rsync' || args[1] !== '--server') return `not an rsync server command: ${JSON.stringify(args.slice(0, 2))}`;
  const rest = args.slice(2);
  if (rest[0] === '--sender') rest.shift();
  const flags = rest.length === 1 ? SERVER_FLAGS.exec(rest[0]!) : null;
  if (flags === null) return `not the server command line of rsync --protect-args: ${JSON.stringify(args.slice(2))}`;
  if (LINK_FOLLOWING_FLAGS.test(flags[1]!)) return `refusing a link-following flag in ${JSON.stringify(rest[0])}`;
  return undefined;
}

/** Parse the header at the start of `data`; `rest` is what follows it (the start of rsync's stream). */
export function parseRelayHeader(data: Buffer): RelayHeader {
  const tooLong = { kind: 'bad', reason: 'header too long' } as const;
  const newline = data.indexOf(0x0a);
  if (newline < 0) return data.length > MAX_HEADER_BYTES ? tooLong : { kind: 'incomplete' };
  const token = data.subarray(0, newline).toString('latin1');
  const command = readList(data, newline + 1, (bytes) => bytes.toString('utf8'));
  if (command === undefined) return data.length > MAX_HEADER_BYTES ? tooLong : { kind: 'incomplete' };
  if (command.end > MAX_HEADER_BYTES) return tooLong;
  const { items: args, end } = command;
  const rest = data.subarray(end);
  if (args.length === 1 && args[0] === PROBE_COMMAND) return { kind: 'probe', token, rest };
  const bad = badServerCommand(args);
  if (bad !== undefined) return { kind: 'bad', reason: bad };
  // Names are bytes: keep them lossless (paths.ts) to compare them with the root.
  const guarded = readList(data, end, (bytes) => bytesToPath(bytes));
  if (guarded === undefined) return data.length > MAX_HEADER_BYTES ? tooLong : { kind: 'incomplete' };
  if (guarded.end > MAX_HEADER_BYTES) return tooLong;
  return { kind: 'command', token, args, protectedArgs: guarded.items, rest };
}

/** Where the relay runs rsync: the helper's root as psync names it, its real path, and the relay's working directory. */
export interface RelayRoot {
  /** As CONFIG gave it (absolute, or relative to `cwd`). */
  readonly root: string;
  /** With every symlink resolved: rsync's --confine-root takes a real path. */
  readonly realRoot: string;
  /** Where a relative path in the protected args is resolved from (the rsync server's working directory). */
  readonly cwd: string;
}

/** Long options that undo the confinement or follow symlinks out of the tree. */
const REFUSED_OPTIONS = new Set([
  '--confine-root',
  '--insecure-links',
  '--copy-links',
  '--copy-unsafe-links',
  '--copy-dirlinks',
  '--keep-dirlinks',
  '--daemon',
  '--config',
  '--log-file',
  '--write-batch',
  '--only-write-batch',
  '--read-batch',
]);
/** Options rsync sends with their value as the next protected arg. */
const SEPARATE_VALUE_OPTIONS = new Set(['--backup-dir', '--temp-dir', '--partial-dir', '--compare-dest', '--copy-dest', '--link-dest', '--suffix']);
/** The short options rsync sends as protected args (never a cluster): `-@<n>` (--modify-window), `-B<n>` (--block-size). */
const SHORT_OPTION = /^-[@B]-?[0-9]+$/;

/** `path` resolved against `cwd`, as components, without `.`; undefined when it holds `..`. */
function components(path: string, cwd: string): string[] | undefined {
  const out: string[] = [];
  for (const part of `${path.startsWith('/') ? '' : `${cwd}/`}${path}`.split('/')) {
    if (part === '..') return undefined;
    if (part !== '' && part !== '.') out.push(part);
  }
  return out;
}

function isUnder(path: string, where: RelayRoot): boolean {
  const own = components(path, where.cwd);
  if (own === undefined) return false;
  return [where.root, where.realRoot].some((root) => {
    const base = components(root, where.cwd);
    return base !== undefined && base.length > 0 && base.every((part, i) => own[i] === part);
  });
}

export type RelayCommand = { readonly ok: true; readonly argv: readonly string[] } | { readonly ok: false; readonly reason: string };

/**
 * The argv the relay runs for a client's command (argv[0] is `rsync`, to be
 * found on PATH; no shell), or why it refuses: see the header for the rules.
 */
export function relayCommand(header: Extract<RelayHeader, { kind: 'command' }>, where: RelayRoot): RelayCommand {
  const bad = badServerCommand(header.args);
  if (bad !== undefined) return { ok: false, reason: bad };
  if (!where.realRoot.startsWith('/')) return { ok: false, reason: `the root's real path is not absolute: ${JSON.stringify(where.realRoot)}` };
  const [first, ...options] = header.protectedArgs;
  if (first !== 'rsync') return { ok: false, reason: `protected args that do not start with rsync: ${JSON.stringify(first)}` };
  let separator = -1;
  for (let i = 0; i < options.length; i++) {
    const arg = options[i]!;
    if (arg === '.') {
      separator = i;
      break;
    }
    if (arg.startsWith('--')) {
      const name = arg.split('=', 1)[0]!;
      if (REFUSED_OPTIONS.has(name)) return { ok: false, reason: `refusing ${name}` };
      if (name === '--files-from' && arg !== '--files-from=-') return { ok: false, reason: `refusing ${JSON.stringify(arg)}: a file list comes over the connection only` };
      if (SEPARATE_VALUE_OPTIONS.has(arg)) i += 1;
      continue;
    }
    if (SHORT_OPTION.test(arg)) continue;
    return { ok: false, reason: `unexpected argument ${JSON.stringify(arg)}` };
  }
  const paths = separator < 0 ? [] : options.slice(separator + 1);
  if (paths.length === 0) return { ok: false, reason: 'no transfer root' };
  for (const path of paths) {
    if (!isUnder(path, where)) return { ok: false, reason: `refusing a transfer root outside ${JSON.stringify(where.root)}: ${JSON.stringify(path)}` };
  }
  return { ok: true, argv: [...header.args, `--confine-root=${where.realRoot}`] };
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
