/**
 * psync's exit codes, one table for the sync itself and for its other
 * commands (`psync status`, the service commands), and the one mapping of
 * psync's error classes onto them (exitCodeOf); the README lists them.
 * (`psync check` answers as `diff` does: core/treeCheck.ts CHECK_EXIT.)
 */

import { BannedError, ConfigError, ConnectionError, ProtocolError, RsyncError, SafetyError } from './core/errors.js';

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

/** The exit code for an error of one of psync's classes (core/errors.ts); anything else is a bug: 1. */
export function exitCodeOf(error: unknown): ExitCode {
  if (error instanceof ConfigError) return EXIT.usage;
  if (error instanceof ConnectionError) return EXIT.connection;
  if (error instanceof RsyncError) return EXIT.rsync;
  if (error instanceof ProtocolError) return EXIT.protocol;
  if (error instanceof BannedError) return EXIT.banned;
  if (error instanceof SafetyError) return EXIT.safety;
  return EXIT.internal;
}
