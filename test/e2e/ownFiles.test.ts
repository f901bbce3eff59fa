/**
 * What psync leaves on a host for others to see: its own files have narrow
 * modes, and the rsync relay's token (which lets a connection start rsync
 * as psync's user on the right host) is never in a command line that `ps`
 * shows, nor in the log, even at -d 3.
 */

import { lstat, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startRemotePair, waitFor, type RemotePair } from '../support/psync.js';

let pair: RemotePair;

beforeAll(async () => {
  // A slow link keeps a transfer, and so the relay's ssh and rsync processes, alive while we look.
  pair = await startRemotePair(['-d', '3', '-x=--bwlimit=2000']);
  await waitFor('the relay', () => pair.psync.log().includes("right: rsync runs through the helper's relay"));
}, 60_000);

afterAll(async () => {
  expect(await pair?.stop()).toBe(0);
});

/** The relay script rsync runs as its remote shell: `-e <script>` in the rsync argv the log shows at -d 3. */
async function relayScript(): Promise<string> {
  await writeFile(join(pair.left, 'first.txt'), 'x');
  const line = await waitFor('an rsync argv in the log', () => pair.psync.log().split('\n').find((l) => /rsync .* -e \/\S+/.test(l)));
  return /-e (\/\S+)/.exec(line)![1]!;
}

const mode = async (path: string): Promise<number> => (await lstat(path)).mode & 0o7777;

async function commandLines(): Promise<string[]> {
  const lines: string[] = [];
  for (const pid of (await readdir('/proc')).filter((name) => /^\d+$/.test(name))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => '');
    if (cmdline !== '') lines.push(cmdline.split('\0').join(' '));
  }
  return lines;
}

test('the relay token is in a 0700 script in a 0700 directory, and in no command line or log line', async () => {
  const script = await relayScript();
  expect(await mode(script)).toBe(0o700);
  expect(await mode(dirname(script))).toBe(0o700);
  const token = /printf '%s\\n' ([A-Za-z0-9]+) /.exec(await readFile(script, 'utf8'))?.[1];
  expect(token).toMatch(/^[0-9a-f]{48}$/);
  // While a transfer runs through the relay (its ssh -W and rsync processes alive), look at every command line.
  await writeFile(join(pair.left, 'big.bin'), Buffer.alloc(1_000_000, 7));
  const during = await waitFor('a transfer through the relay', async () => {
    const lines = await commandLines();
    return lines.some((line) => line.includes(script)) && lines;
  });
  expect(during.filter((line) => line.includes(token!))).toEqual([]);
  await waitFor('big.bin to arrive', async () => (await stat(join(pair.right, 'big.bin')).catch(() => undefined))?.size === 1_000_000, 30_000);
  expect(pair.psync.log()).not.toContain(token!);
});

test('psync\'s own directory is 0700 and its lock 0600 on both sides', async () => {
  for (const root of [pair.left, pair.right]) {
    expect(await mode(join(root, '.psync'))).toBe(0o700);
    expect(await mode(join(root, '.psync', 'lock'))).toBe(0o600);
  }
});
