/**
 * A pair's status file: a small JSON document (PairStatus) that `psync
 * status`, the service commands, an operator or a test reads to see what
 * the pair is doing without reading logs. By default it is
 * `<statusDir>/<pairId>.json` (service/paths.ts); `--status-file` puts it
 * elsewhere.
 *
 * Written atomically (fs/atomicWrite.ts: a fresh random temp name created
 * O_EXCL|O_NOFOLLOW, mode 0640, renamed over the file, so its directory
 * may be writable by others), at most every STATUS_WRITE_INTERVAL_MS after
 * a change, and every HEARTBEAT_WRITE_INTERVAL_MS in any case: `heartbeatAt`
 * keeps moving while psync lives, idle or not, so a reader tells a hung or
 * killed psync from an idle one. It also names the process (pid, start
 * time, boot id: service/proc.ts) so that a reader tells a dead or reused
 * pid. After a clean stop the file stays, with state `stopped`.
 */

import type { Direction, Side } from '../core/types.js';
import { ATOMIC_TEMP_FLAGS, randomTempName, writeFileAtomically } from '../fs/atomicWrite.js';
import { selfIdentity, type ProcessIdentity } from '../service/proc.js';

export const STATUS_WRITE_INTERVAL_MS = 100;
/** The status file is rewritten this often even when nothing changed (its `heartbeatAt`). */
export const HEARTBEAT_WRITE_INTERVAL_MS = 1_000;
/** The temp file is created with these flags: only a new, real file, never one reached through a symlink. */
export const STATUS_TEMP_FLAGS = ATOMIC_TEMP_FLAGS;
export const STATUS_FILE_MODE = 0o640;
/** How many of the newest conflict paths and skipped paths the status lists. */
export const STATUS_PATHS_LISTED = 20;

export type BrainState = 'starting' | 'reconciling' | 'watching' | 'reconnecting' | 'stopping' | 'stopped' | 'failed';
export type ActionKind = 'rsync' | 'move' | 'delete';

export interface StatusCounters {
  /** Reports each side's filter sent. */
  reported: Record<Side, number>;
  /** Reports of psync's own writes, dropped. */
  echoes: Record<Side, number>;
  /** Forged or malformed frames and helper replies, per side. */
  rejected: Record<Side, number>;
  /** Actions applied, per direction (all kinds). */
  applied: Record<Direction, number>;
  /** Actions applied, per direction and kind (`rsync`: files and directories sent). */
  done: Record<Direction, Record<ActionKind, number>>;
  /** Bytes of the files rsync sent (their sizes), per direction. */
  bytesSent: Record<Direction, number>;
  rsyncRuns: number;
  helperRuns: number;
  /** Batches given up on after their retries. */
  failures: number;
  conflicts: number;
  /** MOVEs and DELETEs a helper refused after which nothing was sent in their place (an `unsafe` refusal, say). */
  refused: number;
  /** Reconnect attempts in this run, all outages together. */
  reconnectAttempts: number;
}

/** What the pair publishes; the writer adds the process's identity and the times. */
export interface PairSnapshot {
  pairId: string;
  /** The pair's `name` in the config, else one made of its roots. */
  name: string;
  state: BrainState;
  left: string;
  right: string;
  /** Each side's process is up (started, watching, its link open). */
  connected: Record<Side, boolean>;
  /** Actions waiting to be applied. */
  queued: number;
  /** The last time the queue was empty or a batch was applied: a queue that stays non-empty without it moving is stuck. */
  progressAt: string;
  /** How many paths are left out for now (directories a side cannot read, files rsync could not send)... */
  skipped: number;
  /** ...and the first STATUS_PATHS_LISTED of them. */
  skippedPaths: { side: Side; path: string }[];
  /** The newest STATUS_PATHS_LISTED paths that had a conflict (oldest first). */
  recentConflicts: string[];
  lastEvent?: { at: string; what: string };
  lastError?: string;
  /** While reconnecting: this outage's attempts so far, since when, and why. */
  reconnect?: { attempt: number; since: string; lastError: string };
  startedAt: string;
  uptimeSeconds: number;
  counters: StatusCounters;
}

export interface PairStatus extends PairSnapshot, ProcessIdentity {
  /** Format of this document. */
  version: 1;
  /** When what it says last changed. */
  updatedAt: string;
  /** When it was last written: at most HEARTBEAT_WRITE_INTERVAL_MS ago while psync lives. */
  heartbeatAt: string;
}

let self: ProcessIdentity | undefined;

export class StatusWriter {
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private updatedAt = new Date();

  constructor(
    private readonly path: string | undefined,
    private readonly snapshot: () => object,
    /** The temp name for each attempt (tests pin it to plant something there first). */
    private readonly tempName: (path: string) => string = randomTempName,
  ) {}

  /** Write now and then every HEARTBEAT_WRITE_INTERVAL_MS until close(); the timer never holds psync up. */
  start(): void {
    if (this.path === undefined || this.heartbeat !== undefined) return;
    this.heartbeat = setInterval(() => void this.write(), HEARTBEAT_WRITE_INTERVAL_MS);
    this.heartbeat.unref();
    this.touch();
  }

  /** Something changed: write soon. */
  touch(): void {
    this.updatedAt = new Date();
    if (this.path === undefined || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, STATUS_WRITE_INTERVAL_MS);
  }

  /** Write now and wait for it. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.write();
  }

  /** The last write (at exit): the heartbeat stops. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    await this.flush();
  }

  private write(): Promise<void> {
    const path = this.path;
    if (path === undefined) return Promise.resolve();
    this.writing = this.writing.then(async () => {
      try {
        self ??= selfIdentity();
        const document = { version: 1, ...this.snapshot(), ...self, updatedAt: this.updatedAt.toISOString(), heartbeatAt: new Date().toISOString() };
        await writeFileAtomically(path, `${JSON.stringify(document, null, 2)}\n`, STATUS_FILE_MODE, this.tempName);
      } catch {
        // A status file that cannot be written must not stop the sync.
      }
    });
    return this.writing;
  }
}
