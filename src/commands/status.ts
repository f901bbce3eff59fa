/**
 * `psync status [--json] [--status-file FILE]...`: what every pair on this
 * machine is doing, from the status files the pairs publish
 * (`<statusDir>/<pairId>.json`, brain/status.ts) and any named with
 * --status-file. A pair whose process is gone without writing `stopped` or
 * `failed`, or whose pid another program now holds, is shown `dead`
 * (`lastState`: what it said last).
 *
 * Exit codes: 0 pairs were listed and none is dead or failed; 1 no pair was
 * found, or one is dead or failed; 2 bad usage.
 */

import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import type { PairStatus } from '../brain/status.js';
import { ageSeconds, observedState } from '../core/health.js';
import { EXIT } from '../exitCodes.js';
import { statusDir } from '../service/paths.js';
import { readStatusFiles, statusFilesIn, type ReadStatus } from '../service/statusFiles.js';

const USAGE = 'usage: psync status [--json] [--status-file FILE]...';

/** A status as `psync status` shows it: its observed state, and the file it came from. */
export interface ShownStatus extends Omit<PairStatus, 'state'> {
  state: string;
  /** Its process is still running (a `stopped` or `failed` pair's process has usually exited). */
  running: boolean;
  /** The state the file says, when `state` is `dead`. */
  lastState?: string;
  /** Seconds since the last heartbeat. */
  heartbeatAgeSeconds?: number;
  file: string;
}

export async function runStatus(argv: readonly string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: { json: { type: 'boolean' }, 'status-file': { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    process.stderr.write(`psync status: ${(error as Error).message}\n${USAGE}\n`);
    return EXIT.usage;
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\nLists every pair on this machine from the status files in ${statusDir()}.\nExit 0: none dead or failed; 1: none found, or one dead or failed; 2: bad usage.\n`);
    return EXIT.ok;
  }
  const named = (values['status-file'] ?? []).map((file) => resolve(file));
  const found = await statusFilesIn(statusDir());
  const files = [...new Set([...found, ...named])];
  const now = Date.now();
  const shown = (await readStatusFiles(files)).map((read) => show(read, now));
  if (values.json === true) process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
  else process.stdout.write(shown.length === 0 ? `no psync pair found in ${statusDir()}\n` : shown.map(describe).join('\n'));
  const bad = shown.filter((s) => s.state === 'dead' || s.state === 'failed');
  return shown.length > 0 && bad.length === 0 ? EXIT.ok : EXIT.internal;
}

export function show({ file, status, alive }: ReadStatus, now: number): ShownStatus {
  const state = observedState(status, alive);
  const heartbeat = ageSeconds(status.heartbeatAt, now);
  return {
    ...status,
    state,
    running: alive,
    ...(state === status.state ? {} : { lastState: status.state }),
    ...(heartbeat === undefined ? {} : { heartbeatAgeSeconds: heartbeat }),
    file,
  };
}

/** A few readable lines for one pair. */
function describe(s: ShownStatus): string {
  const c = s.counters;
  const side = (which: 'left' | 'right'): string => `${which} ${s[which]}${s.connected?.[which] === true ? '' : ' (not connected)'}`;
  const direction = (d: 'leftToRight' | 'rightToLeft'): string => {
    const done = c.done?.[d];
    const arrow = d === 'leftToRight' ? 'left->right' : 'right->left';
    return done === undefined ? `${arrow} ${c.applied[d]}` : `${arrow} ${done.rsync} sent (${bytes(c.bytesSent[d])}), ${done.move} moved, ${done.delete} deleted`;
  };
  const running = s.state === 'dead' ? `dead (it said ${s.lastState ?? '?'}; pid ${s.pid} is gone)` : s.state;
  const lines = [
    `${s.name}: ${running}, pid ${s.pid}, up ${duration(s.uptimeSeconds)}, ${s.running ? 'heartbeat' : 'not running, last written'} ${s.heartbeatAgeSeconds === undefined ? '?' : `${s.heartbeatAgeSeconds} s`} ago`,
    `  ${side('left')}; ${side('right')}`,
    `  queue ${s.queued}; ${direction('leftToRight')}; ${direction('rightToLeft')}`,
    `  conflicts ${c.conflicts}${s.recentConflicts?.length ? ` (latest: ${s.recentConflicts.slice(-3).map((p) => JSON.stringify(p)).join(', ')})` : ''}; ` +
      `skipped ${s.skipped}${s.skippedPaths?.length ? ` (${s.skippedPaths.slice(0, 3).map((p) => `${p.side} ${JSON.stringify(p.path)}`).join(', ')})` : ''}; ` +
      `rejected frames ${c.rejected.left} left, ${c.rejected.right} right; reconnect attempts ${c.reconnectAttempts ?? 0}`,
  ];
  if (s.reconnect !== undefined) lines.push(`  reconnecting: attempt ${s.reconnect.attempt} since ${s.reconnect.since}`);
  if (s.lastEvent !== undefined) lines.push(`  last event ${s.lastEvent.at}: ${s.lastEvent.what}`);
  if (s.lastError !== undefined) lines.push(`  last error: ${s.lastError}`);
  lines.push(`  status file ${s.file}`);
  return `${lines.join('\n')}\n`;
}

function bytes(n: number | undefined): string {
  if (n === undefined) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function duration(seconds: number | undefined): string {
  if (seconds === undefined) return '?';
  const d = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3_600);
  const m = Math.floor((seconds % 3_600) / 60);
  const s = seconds % 60;
  return d > 0 ? `${d}d${h}h` : h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s).padStart(2, '0')}s` : `${s}s`;
}
