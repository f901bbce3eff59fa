/**
 * An Endpoint is one side of a pair as the brain sees it: a root on some
 * host where psync can start its filter and helper and which rsync can
 * reach. Local and SSH endpoints look the same to the brain.
 */

import type { Readable, Writable } from 'node:stream';
import type { Role } from '../core/protocol.js';
import type { Side } from '../core/types.js';

/** A running child (a local process or an SSH exec channel) spoken to with frames. */
export interface Channel {
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Settles when the child is gone: its exit code, or null when it was killed or the link dropped. */
  readonly exited: Promise<number | null>;
  /** Ask the child to stop (SIGTERM locally, closing the channel remotely). */
  kill(): void;
}

export interface Endpoint {
  readonly side: Side;
  /** The absolute root on the endpoint's host. */
  readonly root: string;
  /** For messages: "/srv/a" or "host:/srv/a". */
  readonly description: string;
  /** Start `psync _filter` or `psync _helper` on this side. */
  start(role: Role): Promise<Channel>;
  /** The root as rsync names it, with a trailing slash: "/srv/a/" or "host:/srv/a/". */
  rsyncLocation(): string;
  /** Extra rsync arguments to reach this side (`-e ...` for SSH); empty for the left root, where rsync itself runs. */
  rsyncArgs(): string[];
  /**
   * What confining rsync to this side needs (transfer/rsync.ts
   * `--confine-root`), asked once before the first transfer.
   */
  inspectRsync(): Promise<RsyncHost>;
  /**
   * For a side reached over SSH: from now on reach rsync through the
   * helper's relay (src/core/relay.ts) instead of a remote shell per run.
   * Resolves with why it cannot (the relay is then not used), or undefined.
   */
  useRelay?(relay: { readonly port: number; readonly token: string }): Promise<string | undefined>;
  /** Release what the endpoint holds (SSH connection, control socket). Idempotent. */
  close(): Promise<void>;
}

/** This side's host as rsync's confinement sees it (Endpoint.inspectRsync). */
export interface RsyncHost {
  /** The host, for messages: "this host" for a local root, else its name. */
  readonly where: string;
  /**
   * The root with every symlink resolved: `--confine-root` takes a real path.
   * A root that cannot be resolved (not there yet) is given as it is.
   */
  readonly realRoot: string;
  /** The output of `rsync --version` there ('' when rsync could not be run). */
  readonly versionOutput: string;
  /** The effective uid psync runs as there. */
  readonly euid: number;
}

/** Quote one word for a POSIX shell (used only for the remote psync command, never for file names). */
export const shellQuote = (word: string): string =>
  /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
