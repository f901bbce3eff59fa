/**
 * known_hosts parsing and host key matching, the way OpenSSH reads the file
 * (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"). Pure: the caller reads the files.
 *
 * One line: `[@marker] patterns keytype base64key [comment]`. Patterns are a
 * comma list with `*`/`?` wildcards and `!negation`, or one hashed name
 * `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`. A server on a port other
 * than 22 is recorded as `[host]:port`. Malformed lines are skipped, as
 * OpenSSH does.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';

export type KnownHostMarker = 'revoked' | 'cert-authority';

export interface KnownHostEntry {
  readonly marker: KnownHostMarker | null;
  readonly patterns: HostPatterns;
  readonly keyType: string;
  readonly key: Buffer;
  /** "file:line", for messages. */
  readonly source: string;
}

export type HostPatterns =
  | { readonly kind: 'hashed'; readonly salt: Buffer; readonly hash: Buffer }
  | { readonly kind: 'list'; readonly patterns: readonly string[] };

export type HostKeyVerdict = 'match' | 'mismatch' | 'unknown' | 'revoked';

export interface HostKeyCheck {
  readonly verdict: HostKeyVerdict;
  /** The entry that decided a match, a mismatch or a revocation. */
  readonly entry?: KnownHostEntry;
}

/** The name OpenSSH looks a server up by: `host` on port 22, else `[host]:port`. */
export const knownHostsName = (host: string, port: number): string =>
  port === 22 ? host.toLowerCase() : `[${host.toLowerCase()}]:${port}`;

export function parseKnownHosts(text: string, fileName = 'known_hosts'): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const entry = parseLine(line, `${fileName}:${index + 1}`);
    if (entry) entries.push(entry);
  });
  return entries;
}

function parseLine(line: string, source: string): KnownHostEntry | undefined {
  const fields = line.trim().split(/\s+/);
  if (fields[0] === undefined || fields[0] === '' || fields[0].startsWith('#')) return undefined;
  let marker: KnownHostMarker | null = null;
  if (fields[0].startsWith('@')) {
    const name = fields.shift();
    if (name !== '@revoked' && name !== '@cert-authority') return undefined;
    marker = name === '@revoked' ? 'revoked' : 'cert-authority';
  }
  const [hostField, keyType, keyBase64] = fields;
  if (!hostField || !keyType || !keyBase64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(keyBase64)) return undefined;
  const patterns = parsePatterns(hostField);
  if (!patterns) return undefined;
  return { marker, patterns, keyType, key: Buffer.from(keyBase64, 'base64'), source };
}

function parsePatterns(field: string): HostPatterns | undefined {
  if (!field.startsWith('|')) return { kind: 'list', patterns: field.split(',').filter((p) => p !== '') };
  const [, magic, salt, hash] = field.split('|');
  if (magic !== '1' || !salt || !hash) return undefined;
  return { kind: 'hashed', salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') };
}

/** Does this entry name `hostName` (already in `knownHostsName` form)? */
export function matchesHost(patterns: HostPatterns, hostName: string): boolean {
  const name = hostName.toLowerCase();
  if (patterns.kind === 'hashed') {
    const digest = createHmac('sha1', patterns.salt).update(name).digest();
    return digest.length === patterns.hash.length && timingSafeEqual(digest, patterns.hash);
  }
  // A matching negation vetoes the whole line, whatever else matches.
  let matched = false;
  for (const pattern of patterns.patterns) {
    const negated = pattern.startsWith('!');
    if (wildcardMatch(negated ? pattern.slice(1) : pattern, name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

function wildcardMatch(pattern: string, text: string): boolean {
  const source = pattern
    .toLowerCase()
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${source}$`).test(text);
}

/**
 * Judge the key a server showed. Invariant, as in OpenSSH's hostfile.c: a
 * revoked key is refused even when another line lists it as good; a line
 * for the same host and key type with another key is a mismatch (possible
 * man in the middle); lines of other key types only make it "unknown".
 * `@cert-authority` lines never match a plain host key.
 */
export function verifyHostKey(
  entries: readonly KnownHostEntry[],
  hostName: string,
  keyType: string,
  key: Buffer,
): HostKeyCheck {
  const forHost = entries.filter((entry) => entry.marker !== 'cert-authority' && matchesHost(entry.patterns, hostName));
  const revoked = forHost.find((entry) => entry.marker === 'revoked' && entry.key.equals(key));
  if (revoked) return { verdict: 'revoked', entry: revoked };
  const plain = forHost.filter((entry) => entry.marker === null);
  const good = plain.find((entry) => entry.key.equals(key));
  if (good) return { verdict: 'match', entry: good };
  const other = plain.find((entry) => entry.keyType === keyType);
  if (other) return { verdict: 'mismatch', entry: other };
  return { verdict: 'unknown' };
}

/** Key types known_hosts lists for this host, in file order: to offer them first, as OpenSSH does. */
export function knownKeyTypes(entries: readonly KnownHostEntry[], hostName: string): string[] {
  const types = entries
    .filter((entry) => entry.marker === null && matchesHost(entry.patterns, hostName))
    .map((entry) => entry.keyType);
  return [...new Set(types)];
}

/** The key type named inside an SSH public key blob (its first length-prefixed string). */
export function keyTypeOfBlob(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  return blob.length >= 4 + length ? blob.subarray(4, 4 + length).toString('latin1') : undefined;
}
