/**
 * Which process a pid is, from /proc: a pid is reused once its process is
 * gone, so psync records a process as its identity (pid, start time in
 * clock ticks after boot, /proc/<pid>/stat field 22, and the boot's id)
 * and a reader compares all three. Never by name through `ps`.
 */

import { readdirSync, readFileSync } from 'node:fs';

export interface ProcessIdentity {
  readonly pid: number;
  /** Clock ticks after boot when it started (/proc/<pid>/stat field 22). */
  readonly startTime: number;
  /** /proc/sys/kernel/random/boot_id: the same pid and start time after a reboot is another process. */
  readonly bootId: string;
}

/** Field 22 (starttime) of a /proc/<pid>/stat line; its comm (field 2) may hold spaces and parentheses. */
export function parseStartTime(stat: string): number | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  // Fields from 3 (state) on: starttime is field 22, the 20th of them.
  const value = fieldsAfterComm(stat)[19];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** Fields 3 on (state, ppid, pgrp, session...) of a /proc/<pid>/stat line. */
const fieldsAfterComm = (stat: string): string[] => stat.slice(stat.lastIndexOf(')') + 2).split(' ');

/** State letter (field 3): Z and X are processes that are gone but for their entry. */
const parseState = (stat: string): string | undefined => fieldsAfterComm(stat)[0];

function readOr(path: string, encoding: BufferEncoding): string | undefined {
  try {
    return readFileSync(path, encoding);
  } catch {
    return undefined;
  }
}

export const bootId = (): string => (readOr('/proc/sys/kernel/random/boot_id', 'utf8') ?? '').trim();

/** The identity of the live process `pid`, or undefined when there is none (gone, or a zombie). */
export function identityOf(pid: number): ProcessIdentity | undefined {
  const stat = readOr(`/proc/${pid}/stat`, 'utf8');
  if (stat === undefined) return undefined;
  const state = parseState(stat);
  const startTime = parseStartTime(stat);
  if (state === 'Z' || state === 'X' || startTime === undefined) return undefined;
  return { pid, startTime, bootId: bootId() };
}

export function selfIdentity(): ProcessIdentity {
  const self = identityOf(process.pid);
  if (self === undefined) throw new Error('cannot read /proc/self/stat');
  return self;
}

/** Is the process `recorded` still alive (the same pid, start time and boot)? */
export function isAlive(recorded: ProcessIdentity): boolean {
  const now = identityOf(recorded.pid);
  return now !== undefined && now.startTime === recorded.startTime && now.bootId === recorded.bootId;
}

/** The argv of process `pid` (/proc/<pid>/cmdline), or undefined when it is gone. */
export function argvOf(pid: number): string[] | undefined {
  const cmdline = readOr(`/proc/${pid}/cmdline`, 'utf8');
  return cmdline?.split('\0').slice(0, -1);
}

/** The live processes of session `sid` (field 6 of their stat): what a daemon started with setsid left running. */
export function sessionMembers(sid: number): number[] {
  const members: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readOr(`/proc/${name}/stat`, 'utf8');
    if (stat === undefined) continue;
    const fields = fieldsAfterComm(stat);
    if (Number(fields[3]) === sid && fields[0] !== 'Z' && fields[0] !== 'X') members.push(Number(name));
  }
  return members;
}
