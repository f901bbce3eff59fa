/**
 * psync's exit codes, one table for the sync itself and for its other
 * commands (`psync status`, the service commands); the README lists them.
 * Only main.ts turns a sync's errors into these codes.
 */
export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  connection: 3,
  rsync: 4,
  protocol: 5,
  banned: 6,
  safety: 7,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
