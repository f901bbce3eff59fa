/**
 * The rsync relay over a real sshd: rsync reaches the remote side through
 * the helper (no remote shell per transfer), and where the server forbids
 * forwarding psync says so and goes on through a shell per run.
 */

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { startRemotePair, waitFor } from '../support/psync.js';

async function syncsBothWays(left: string, right: string): Promise<void> {
  await writeFile(join(left, 'from-left'), 'L');
  await waitFor('from-left on the right', async () => (await readFile(join(right, 'from-left'), 'utf8')) === 'L');
  await writeFile(join(right, 'from-right'), 'R');
  await waitFor('from-right on the left', async () => (await readFile(join(left, 'from-right'), 'utf8')) === 'R');
}

test('rsync runs through the helper relay: its -e program is the relay script, both directions work', async () => {
  const pair = await startRemotePair(['-d', '2']);
  try {
    await syncsBothWays(pair.left, pair.right);
    const log = pair.psync.log();
    expect(log).toContain("right: rsync runs through the helper's relay");
    const runs = log.split('\n').filter((line) => line.includes('debug rsync --archive'));
    expect(runs.length).toBeGreaterThan(0);
    for (const run of runs) expect(run).toMatch(/ -e \S*\/rsh /);
  } finally {
    expect(await pair.stop()).toBe(0);
  }
}, 60_000);

test('a server that forbids forwarding: psync warns once and syncs through a remote shell', async () => {
  const pair = await startRemotePair(['-d', '2'], 'right', ['AllowTcpForwarding no']);
  try {
    await syncsBothWays(pair.left, pair.right);
    const log = pair.psync.log();
    expect(log).toMatch(/right: every rsync run starts a remote shell \(no relay: the relay probe failed/);
    const runs = log.split('\n').filter((line) => line.includes('debug rsync --archive'));
    expect(runs.length).toBeGreaterThan(0);
    for (const run of runs) expect(run).toContain(' -e ssh ');
  } finally {
    expect(await pair.stop()).toBe(0);
  }
}, 60_000);
