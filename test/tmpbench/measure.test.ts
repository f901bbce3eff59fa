import { test } from 'vitest';
import { mkdir, mkdtemp, writeFile, stat, rename, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd } from '../support/sshd.js';
import { PsyncProcess, waitFor } from '../support/psync.js';

test('measure', async () => {
  const sshd = await startSshd();
  const base = await mkdtemp(join(tmpdir(), 'psync-measure-'));
  const left = join(base, 'left'), right = join(base, 'right');
  await mkdir(left); await mkdir(right);
  const p = await PsyncProcess.start(['-r', sshd.host, '--ssh-config', sshd.configFile, left, right]);
  const lat: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    await writeFile(join(left, `lat${i}`), 'x'.repeat(1024));
    await waitFor('arrive', () => stat(join(right, `lat${i}`)).then((s) => s.size === 1024), 10000);
    lat.push(performance.now() - t0);
  }
  lat.sort((a, b) => a - b);
  console.log('latency L->R p50', lat[10]!.toFixed(0), 'p95', lat[18]!.toFixed(0));
  const lat2: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    await writeFile(join(right, `rlat${i}`), 'x'.repeat(1024));
    await waitFor('arrive', () => stat(join(left, `rlat${i}`)).then((s) => s.size === 1024), 10000);
    lat2.push(performance.now() - t0);
  }
  lat2.sort((a, b) => a - b);
  console.log('latency R->L p50', lat2[10]!.toFixed(0), 'p95', lat2[18]!.toFixed(0));
  // burst 10k in 100 dirs
  const t1 = performance.now();
  await mkdir(join(left, 'burst'));
  for (let d = 0; d < 100; d++) {
    await mkdir(join(left, 'burst', `d${d}`));
    for (let f = 0; f < 100; f++) await writeFile(join(left, 'burst', `d${d}`, `f${f}`), 'y'.repeat(1000 + f * 30));
  }
  const wrote = performance.now();
  await waitFor('burst', async () => {
    let n = 0;
    for (let d = 0; d < 100; d++) n += (await readdir(join(right, 'burst', `d${d}`)).catch(() => [])).length;
    return n === 10000;
  }, 120000);
  console.log('burst 10k: writing took', (wrote - t1).toFixed(0), 'ms; complete', (performance.now() - wrote).toFixed(0), 'ms after the last write');
  const s0 = await p.status();
  const t2 = performance.now();
  await rename(join(left, 'burst'), join(left, 'burst2'));
  await waitFor('rename', () => stat(join(right, 'burst2', 'd99', 'f99')).then(() => true), 60000);
  const s1 = await p.status();
  console.log('dir rename 10k:', (performance.now() - t2).toFixed(0), 'ms; rsync runs during', s1!.counters.rsyncRuns - s0!.counters.rsyncRuns);
  console.log('status', JSON.stringify((await p.status())?.counters));
  await p.stop();
  await sshd.stop();
}, 300000);
