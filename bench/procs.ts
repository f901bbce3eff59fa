/**
 * CPU and memory of a tool's processes, read from /proc.
 *
 * A tool is the process tree of its local pid(s) plus everything the private
 * sshd runs on its behalf (the remote filter and helper for psync, the
 * remote unison server, the sshd sessions themselves). Tools run one at a
 * time against the benchmark's own sshd, so every descendant of that sshd
 * belongs to the tool being measured.
 */

import { readdir, readFile } from 'node:fs/promises';

/** Linux USER_HZ: /proc/PID/stat counts CPU time in these ticks. */
const CLOCK_TICKS_PER_SECOND = 100;
const PAGE_KB = 4;

export interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  /** utime + stime + cutime + cstime, in seconds (waited-for children included). */
  readonly cpuSeconds: number;
}

export interface ProcUsage extends ProcInfo {
  /** comm, and for node the psync role (`node _filter`, `node _helper`; the brain is plain `node`). */
  readonly label: string;
  readonly rssKb: number;
  /** Proportional set size: shared pages (node's own code) split between the processes sharing them. */
  readonly pssKb: number;
}

async function readProc(pid: number): Promise<ProcInfo | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may itself contain spaces or parentheses.
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    // fields[0] is state (field 3 of proc(5)); field N is fields[N - 3].
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
    return { pid, ppid: Number(fields[1]), comm: stat.slice(open + 1, close), cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND };
  } catch {
    return undefined; // gone meanwhile
  }
}

/** Memory is read only for the processes we measure: smaps_rollup is not cheap. */
async function readMemory(proc: ProcInfo): Promise<ProcUsage | undefined> {
  try {
    const statm = await readFile(`/proc/${proc.pid}/statm`, 'utf8');
    const rssKb = Number(statm.split(' ')[1]) * PAGE_KB;
    const rollup = await readFile(`/proc/${proc.pid}/smaps_rollup`, 'utf8').catch(() => '');
    const pss = /^Pss:\s+(\d+) kB/m.exec(rollup);
    let label = proc.comm;
    if (proc.comm === 'node') {
      const argv = (await readFile(`/proc/${proc.pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
      const role = argv.find((arg) => /^_[a-z]+$/.test(arg));
      if (role !== undefined) label = `node ${role}`;
    }
    return { ...proc, label, rssKb, pssKb: pss ? Number(pss[1]) : rssKb };
  } catch {
    return undefined;
  }
}

export async function allProcs(): Promise<ProcInfo[]> {
  const names = await readdir('/proc');
  const infos = await Promise.all(names.filter((name) => /^\d+$/.test(name)).map((name) => readProc(Number(name))));
  return infos.filter((info): info is ProcInfo => info !== undefined);
}

/** The roots and all their descendants; a root listed in `excludeRoots` counts only its descendants. */
export function processTree(procs: readonly ProcInfo[], roots: readonly number[], excludeRoots: readonly number[] = []): ProcInfo[] {
  const children = new Map<number, ProcInfo[]>();
  for (const proc of procs) {
    const list = children.get(proc.ppid) ?? [];
    list.push(proc);
    children.set(proc.ppid, list);
  }
  const byPid = new Map(procs.map((proc) => [proc.pid, proc]));
  const out = new Map<number, ProcInfo>();
  const stack = [...roots, ...excludeRoots];
  const skip = new Set(excludeRoots);
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    const proc = byPid.get(pid);
    if (proc !== undefined && !skip.has(pid)) out.set(pid, proc);
    for (const child of children.get(pid) ?? []) if (!out.has(child.pid)) stack.push(child.pid);
  }
  return [...out.values()];
}

export interface Usage {
  readonly procs: readonly ProcUsage[];
  readonly rssKb: number;
  readonly pssKb: number;
}

/** Describes which processes make up a tool right now. */
export interface ProcessSet {
  /** Local pids whose whole tree counts. */
  roots(): Promise<number[]>;
  /** Pids whose descendants count but not themselves (the sshd listener). */
  readonly parentsOnly: readonly number[];
}

export async function sampleUsage(set: ProcessSet): Promise<Usage> {
  const tree = processTree(await allProcs(), await set.roots(), set.parentsOnly);
  const procs = (await Promise.all(tree.map(readMemory))).filter((proc): proc is ProcUsage => proc !== undefined);
  return {
    procs,
    rssKb: procs.reduce((sum, proc) => sum + proc.rssKb, 0),
    pssKb: procs.reduce((sum, proc) => sum + proc.pssKb, 0),
  };
}

/**
 * CPU seconds spent between two samples: per process alive at both ends the
 * difference, per process that appeared meanwhile all of it. (A process that
 * ended in between is counted in its parent's cutime once waited for.)
 */
export function cpuBetween(before: Usage, after: Usage): number {
  const start = new Map(before.procs.map((proc) => [proc.pid, proc.cpuSeconds]));
  let total = 0;
  for (const proc of after.procs) total += proc.cpuSeconds - (start.get(proc.pid) ?? 0);
  return Math.max(0, total);
}

/** Sample the set every `intervalMs` until `stop()`; keeps the highest RSS seen. */
export function watchPeakRss(set: ProcessSet, intervalMs: number): { stop(): Promise<Usage | undefined> } {
  let peak: Usage | undefined;
  let running = true;
  const loop = (async () => {
    while (running) {
      const usage = await sampleUsage(set).catch(() => undefined);
      if (usage !== undefined && (peak === undefined || usage.rssKb > peak.rssKb)) peak = usage;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** Programs that carry the SSH connection rather than do the syncing (`cat` is psync's master session). */
const TRANSPORT_PROGRAMS = new Set(['ssh', 'sshd', 'sshd-session', 'sshd-auth', 'cat', 'sh', 'bash']);

/** RSS of the tool's own processes, leaving out ssh, sshd and shells. */
export function ownRssKb(usage: Usage): number {
  return usage.procs.filter((proc) => !TRANSPORT_PROGRAMS.has(proc.comm)).reduce((sum, proc) => sum + proc.rssKb, 0);
}

/** `{ node: {count: 1, rssMb: 80}, ... }`: which programs (by label) a usage sample is made of. */
export function describeProcs(usage: Usage): Record<string, { count: number; rssMb: number }> {
  const kb: Record<string, { count: number; rssKb: number }> = {};
  for (const proc of usage.procs) {
    const entry = (kb[proc.label] ??= { count: 0, rssKb: 0 });
    entry.count += 1;
    entry.rssKb += proc.rssKb;
  }
  return Object.fromEntries(
    Object.entries(kb).map(([comm, { count, rssKb }]) => [comm, { count, rssMb: Math.round(rssKb / 102.4) / 10 }]),
  );
}
