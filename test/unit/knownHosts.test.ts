import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import {
  keyTypeOfBlob,
  knownHostsName,
  knownKeyTypes,
  matchesHost,
  parseKnownHosts,
  verifyHostKey,
  type HostKeyVerdict,
} from '../../src/transport/knownHosts.js';

/** A fake SSH public key blob: string type, then some key bytes. */
const blob = (type: string, fill: number): Buffer => {
  const name = Buffer.from(type, 'latin1');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(name.length);
  return Buffer.concat([length, name, Buffer.alloc(32, fill)]);
};
const ED_A = blob('ssh-ed25519', 1);
const ED_B = blob('ssh-ed25519', 2);
const ED_C = blob('ssh-ed25519', 4);
const RSA_A = blob('ssh-rsa', 3);
const b64 = (key: Buffer): string => key.toString('base64');

/** A hashed host field the way `ssh-keygen -H` writes it. */
const hashed = (name: string): string => {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
};

const FILE = [
  '# a comment, then a blank line',
  '',
  `plain.example.com,10.0.0.1 ssh-ed25519 ${b64(ED_A)} user@box`,
  `[port.example.com]:2222 ssh-ed25519 ${b64(ED_A)}`,
  `${hashed('hashed.example.com')} ssh-ed25519 ${b64(ED_A)}`,
  `${hashed('[hashed.example.com]:2200')} ssh-ed25519 ${b64(ED_B)}`,
  `*.wild.example.com,!secret.wild.example.com ssh-ed25519 ${b64(ED_A)}`,
  `node?.example.com ssh-ed25519 ${b64(ED_A)}`,
  `revoked.example.com ssh-ed25519 ${b64(ED_A)}`,
  `@revoked revoked.example.com ssh-ed25519 ${b64(ED_A)}`,
  `@revoked * ssh-ed25519 ${b64(ED_C)}`,
  `@cert-authority *.ca.example.com ssh-ed25519 ${b64(ED_A)}`,
  `rsa-only.example.com ssh-rsa ${b64(RSA_A)}`,
  'garbage line',
  `@unknown-marker plain.example.com ssh-ed25519 ${b64(ED_B)}`,
  `bad-base64.example.com ssh-ed25519 not*base64`,
].join('\n');

const entries = parseKnownHosts(FILE, '/home/u/.ssh/known_hosts');

describe('parseKnownHosts', () => {
  test('skips comments, blank and malformed lines, and records where each entry came from', () => {
    expect(entries).toHaveLength(11);
    expect(entries[0]?.source).toBe('/home/u/.ssh/known_hosts:3');
    expect(entries[0]?.keyType).toBe('ssh-ed25519');
    expect(entries.filter((entry) => entry.marker === 'revoked')).toHaveLength(2);
    expect(entries.filter((entry) => entry.marker === 'cert-authority')).toHaveLength(1);
  });
});

describe('verifyHostKey', () => {
  test.each<{ description: string; host: string; key: Buffer; verdict: HostKeyVerdict }>([
    { description: 'plain name, same key', host: 'plain.example.com', key: ED_A, verdict: 'match' },
    { description: 'second name of a comma list', host: '10.0.0.1', key: ED_A, verdict: 'match' },
    { description: 'names compare without case', host: 'PLAIN.example.COM', key: ED_A, verdict: 'match' },
    { description: 'plain name, other key of the same type', host: 'plain.example.com', key: ED_B, verdict: 'mismatch' },
    { description: 'known name, key type never seen', host: 'plain.example.com', key: RSA_A, verdict: 'unknown' },
    { description: 'name nobody listed', host: 'elsewhere.example.com', key: ED_A, verdict: 'unknown' },
    { description: 'port entry, right port', host: '[port.example.com]:2222', key: ED_A, verdict: 'match' },
    { description: 'port entry does not cover port 22', host: 'port.example.com', key: ED_A, verdict: 'unknown' },
    { description: 'port entry does not cover another port', host: '[port.example.com]:2223', key: ED_A, verdict: 'unknown' },
    { description: 'hashed entry', host: 'hashed.example.com', key: ED_A, verdict: 'match' },
    { description: 'hashed entry, other key', host: 'hashed.example.com', key: ED_B, verdict: 'mismatch' },
    { description: 'hashed port entry', host: '[hashed.example.com]:2200', key: ED_B, verdict: 'match' },
    { description: 'wildcard', host: 'a.wild.example.com', key: ED_A, verdict: 'match' },
    { description: 'negation vetoes a matching wildcard', host: 'secret.wild.example.com', key: ED_A, verdict: 'unknown' },
    { description: '? matches exactly one character', host: 'node1.example.com', key: ED_A, verdict: 'match' },
    { description: '? does not match two characters', host: 'node12.example.com', key: ED_A, verdict: 'unknown' },
    { description: 'revoked wins over a line that lists the key as good', host: 'revoked.example.com', key: ED_A, verdict: 'revoked' },
    { description: 'a key revoked for every host', host: 'plain.example.com', key: ED_C, verdict: 'revoked' },
    { description: 'cert-authority lines never match a host key', host: 'x.ca.example.com', key: ED_A, verdict: 'unknown' },
    { description: 'dots are literal, not regex wildcards', host: 'plainXexample.com', key: ED_A, verdict: 'unknown' },
  ])('$description', ({ host, key, verdict }) => {
    const type = keyTypeOfBlob(key) ?? '';
    expect(verifyHostKey(entries, host, type, key).verdict).toBe(verdict);
  });

  test('a mismatch names the line that disagreed', () => {
    const plainOnly = parseKnownHosts(`plain.example.com ssh-ed25519 ${b64(ED_A)}`, 'kh');
    expect(verifyHostKey(plainOnly, 'plain.example.com', 'ssh-ed25519', ED_B)).toEqual({
      verdict: 'mismatch',
      entry: plainOnly[0],
    });
  });
});

describe('helpers', () => {
  test.each([
    { description: 'port 22 is the bare name', host: 'Example.com', port: 22, name: 'example.com' },
    { description: 'another port is bracketed', host: '127.0.0.1', port: 2222, name: '[127.0.0.1]:2222' },
  ])('knownHostsName: $description', ({ host, port, name }) => {
    expect(knownHostsName(host, port)).toBe(name);
  });

  test('matchesHost on a hashed entry needs the exact name', () => {
    const [entry] = parseKnownHosts(`${hashed('exact.example.com')} ssh-ed25519 ${b64(ED_A)}`);
    expect(entry && matchesHost(entry.patterns, 'exact.example.com')).toBe(true);
    expect(entry && matchesHost(entry.patterns, 'exact.example.co')).toBe(false);
  });

  test('knownKeyTypes lists the types on file for a host, revoked lines aside', () => {
    expect(knownKeyTypes(entries, 'rsa-only.example.com')).toEqual(['ssh-rsa']);
    expect(knownKeyTypes(entries, 'revoked.example.com')).toEqual(['ssh-ed25519']);
  });

  test('keyTypeOfBlob reads the type and refuses a truncated blob', () => {
    expect(keyTypeOfBlob(ED_A)).toBe('ssh-ed25519');
    expect(keyTypeOfBlob(Buffer.from([0, 0, 0, 9, 0x61]))).toBeUndefined();
    expect(keyTypeOfBlob(Buffer.alloc(2))).toBeUndefined();
  });
});
