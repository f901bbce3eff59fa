/**
 * The few error classes psync throws. Only the CLI entry turns them into a
 * message and an exit code; everything else lets them travel with `cause` set.
 */

/** Bad options, a missing root, roots that overlap: the user must change something. */
export class ConfigError extends Error {
  override readonly name: string = 'ConfigError';
}

/**
 * A side could not use its root when it started (missing, not a directory):
 * bad settings at the first start (exit 2), like a missing local root; a
 * root that is not there yet (not mounted) while psync reconnects.
 */
export class RootUnusableError extends ConfigError {
  override readonly name = 'RootUnusableError';
}

/** A malformed, forged or out-of-order frame, or a peer that speaks another protocol. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

/** A path or an operation that would leave the root, delete the root, or lose data. */
export class SafetyError extends Error {
  override readonly name: string = 'SafetyError';
}

/**
 * Another psync holds a side's root (its lock): refused as unsafe at the
 * first start (exit 7); while psync reconnects, that is often its own old
 * side process, still on its way out.
 */
export class RootInUseError extends SafetyError {
  override readonly name = 'RootInUseError';
}

/** The remote host could not be reached, refused us, or showed a host key we do not trust. */
export class ConnectionError extends Error {
  override readonly name: string = 'ConnectionError';
}

/** rsync failed; `exitCode` is rsync's own exit status. */
export class RsyncError extends Error {
  override readonly name = 'RsyncError';
  constructor(
    message: string,
    readonly exitCode: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * The remote host refused us (authentication failed, no usable key) or we
 * refused it (a host key that is unknown, changed or revoked): a person
 * must act, so psync never retries it (core/faults.ts).
 */
export class RefusedError extends ConnectionError {
  override readonly name = 'RefusedError';
}

/** A --banned program runs on this machine. */
export class BannedError extends Error {
  override readonly name = 'BannedError';
}
