/**
 * The process tree from /proc, for tests that kill, stop or wait for a
 * particular process psync or sshd started. Processes are always found
 * below a pid the test knows (never by name alone), so tests running side
 * by side never touch each other's processes.
 */

import { readdir, readFile, readlink } from 'node:fs/promises';

export interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  /** The kernel's short name (15 characters at most). */
  readonly comm: string;
  /** R, S, D, T (stopped), Z (zombie)... */
  readonly state: string;
  readonly argv: readonly string[];
}

async function readProc(pid: number): Promise<ProcInfo | undefined> {
  try {
    const [stat, cmdline] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/cmdline`, 'latin1')]);
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split at the last ')'.
    const close = stat.lastIndexOf(')');
    const [state = '?', ppid = '0'] = stat.slice(close + 2).split(' ');
    return { pid, ppid: Number(ppid), comm: stat.slice(stat.indexOf('(') + 1, close), state, argv: cmdline.split('\0').filter((a) => a !== '') };
  } catch {
    return undefined; // gone meanwhile
  }
}

/** Every live process below `root`, parents before their children. */
export async function processesUnder(root: number): Promise<ProcInfo[]> {
  const all = (await Promise.all((await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map((name) => readProc(Number(name))))).filter(
    (p): p is ProcInfo => p !== undefined && p.state !== 'Z',
  );
  const out: ProcInfo[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        out.push(p);
        grew = true;
      }
    }
  }
  return out;
}

/** Is `pid` alive (not gone, not a zombie)? */
export async function isAlive(pid: number): Promise<boolean> {
  const info = await readProc(pid);
  return info !== undefined && info.state !== 'Z' && info.state !== 'X';
}

/** Send `signal` to `pid` unless it is gone already. */
export function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** The local and remote ports of the IPv4 TCP sockets `pid` holds open (from /proc/<pid>/fd and /proc/net/tcp). */
export async function tcpPortsOf(pid: number): Promise<{ local: number; remote: number }[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match) inodes.add(match[1]!);
  }
  const table = await readFile(`/proc/${pid}/net/tcp`, 'utf8').catch(() => '');
  const ports: { local: number; remote: number }[] = [];
  for (const line of table.split('\n').slice(1)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    const fields = line.trim().split(/\s+/);
    const [local, remote, inode] = [fields[1], fields[2], fields[9]];
    if (local === undefined || remote === undefined || inode === undefined || !inodes.has(inode)) continue;
    ports.push({ local: Number.parseInt(local.split(':')[1]!, 16), remote: Number.parseInt(remote.split(':')[1]!, 16) });
  }
  return ports;
}
