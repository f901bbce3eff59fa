/**
 * One psync run: the pair's archive (opened and locked once, for the whole
 * run), the status file, and the sessions. A session (brain.ts) connects
 * both sides, reconciles them against the archive and syncs in realtime
 * until it is stopped or a fault ends it. After a fault worth retrying
 * (core/faults.ts: a dropped link, a side that died or stalled) the next
 * session starts after a backoff (1 s doubling to 30 s, with jitter), and
 * its start-up reconcile carries over what changed on either side during
 * the outage: changes, deletes, renames and conflicts, as after a restart.
 * psync gives up (exit 3) only after --reconnect-timeout.
 *
 * The pair's status file (status.ts) is written from the start of the run
 * to its end, heartbeat included, and keeps what the sessions did. A pair
 * of several that cannot start (its settings or roots are wrong) publishes
 * one `failed` status with the reason (`Supervisor.notStarted`), so that
 * `psync status` and the service commands see it while the others run.
 *
 * Nothing of a session outlives it but the archive (written only for what a
 * target confirmed, and the journal of transfers under way) and the
 * counters: a session cut off mid-batch leaves its work for the next
 * reconcile to find on both sides (what it wrote whole, its temp files,
 * what it replaced: startup.ts).
 */

import { renameSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConnectionError, SafetyError } from '../core/errors.js';
import { backoffMs, faultVerdict, reconnectExpired, type FaultPhase } from '../core/faults.js';
import type { Side } from '../core/types.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { ProgressBoard } from '../progress.js';
import { Archive, ArchiveLockedError, archiveFile, defaultStateDir, pairId } from '../state/archive.js';
import type { Endpoint } from '../transport/endpoint.js';
import { ensurePrivateDir, statusDir } from '../service/paths.js';
import { Brain, newCounters, type BrainOutcome } from './brain.js';
import { STATUS_PATHS_LISTED, StatusWriter, type BrainState, type PairSnapshot } from './status.js';

/** Connects both sides for a session; what it throws ends the attempt (its class decides whether psync tries again). */
export type Connect = () => Promise<Record<Side, Endpoint>>;

interface Outage {
  /** When the pair was lost (Date.now()). */
  readonly startedAt: number;
  attempt: number;
  lastError: string;
}

export class Supervisor {
  readonly counters = newCounters();
  private readonly status: StatusWriter;
  private brain: Brain | undefined;
  private outage: Outage | undefined;
  private stopped = false;
  /** Why psync stops from outside (a --banned program), if it does. */
  private abortError: Error | undefined;
  private cancelWait: () => void = () => {};
  /** Where the run is: nothing was ever up, or reconnecting (core/faults.ts). */
  private phase: FaultPhase = 'firstStart';
  private readonly where: Record<Side, string>;
  /** How the run ended, once it has: the status then says `stopped` or `failed`, whatever else was going on. */
  private outcome: BrainOutcome | undefined;
  readonly pairId: string;
  readonly name: string;
  /** Where the status file is: --status-file, else `<statusDir>/<pairId>.json`. */
  readonly statusFile: string;
  private readonly startedAt = Date.now();
  private lastEvent: { at: number; what: string } | undefined;
  /** The newest STATUS_PATHS_LISTED paths that had a conflict. */
  private readonly recentConflicts: string[] = [];

  constructor(
    private readonly config: Config,
    private readonly connect: Connect,
    private readonly log: Logger,
    /** Where long operations show their progress (the process's one board, shared by its pairs). */
    private readonly progress: ProgressBoard,
  ) {
    this.where = { left: config.srcRoot, right: config.remoteHost === undefined ? config.dstRoot : `${config.remoteHost}:${config.dstRoot}` };
    this.pairId = pairId(config.srcRoot, config.remoteHost, config.dstRoot);
    this.name = config.name;
    this.statusFile = config.statusFile ?? join(statusDir(), `${this.pairId}.json`);
    this.status = new StatusWriter(this.statusFile, () => this.snapshot());
  }

  /**
   * Publish the status of a pair that could not start (`config` did not
   * pass validateConfig): `failed`, with `error`; nothing runs. Like any
   * status write, a failure to write it is not psync's end (the pairs that
   * run meet the same status directory and say what is wrong with it).
   */
  static async notStarted(config: Config, error: unknown, log: Logger): Promise<void> {
    // Its local roots made absolute as validateConfig makes them: the file is the one the pair writes once it starts.
    const roots = { srcRoot: resolve(config.srcRoot), dstRoot: config.remoteHost === undefined ? resolve(config.dstRoot) : config.dstRoot };
    const supervisor = new Supervisor({ ...config, ...roots }, () => Promise.reject(new Error('a pair that did not start connects nothing')), log, new ProgressBoard('off'));
    supervisor.outcome = { ok: false, error: error instanceof Error ? error : new Error(String(error)) };
    try {
      supervisor.prepareStatusDir();
    } catch {
      return;
    }
    await supervisor.status.close();
  }

  /** The default status directory is psync's own (0700); one named with --status-file is the operator's. */
  private prepareStatusDir(): void {
    if (this.config.statusFile === undefined) ensurePrivateDir(dirname(this.statusFile));
  }

  /** Run sessions until stopped (ok) or until a fault psync does not retry, or retried too long. */
  async run(): Promise<BrainOutcome> {
    this.prepareStatusDir();
    this.status.start();
    this.log.info(`starting: ${this.where.left} <-> ${this.where.right}${this.config.dryRun ? ' (dry run: nothing is changed)' : ''}`);
    const id = this.pairId;
    let archive: Archive;
    try {
      archive = this.openArchive(id);
    } catch (error) {
      this.outcome = { ok: false, error: error as Error };
      await this.status.close();
      throw error;
    }
    try {
      this.outcome = await this.sessions(archive, id);
      return this.outcome;
    } finally {
      archive.close();
      await this.status.close();
      const c = this.counters;
      this.log.info(
        `applied ${c.applied.leftToRight} left->right and ${c.applied.rightToLeft} right->left in ${c.rsyncRuns} rsync and ${c.helperRuns} helper runs; ` +
          `dropped ${c.echoes.left + c.echoes.right} echoes; ${c.failures} failures`,
      );
    }
  }

  /** Where the run is, for a diagnostic: the session's state, or the outage. */
  describe(): string {
    const session = this.brain?.statusFields().state;
    const outage = this.outage === undefined ? '' : `, reconnecting (attempt ${this.outage.attempt})`;
    return `${session === undefined ? 'between sessions' : `a session was ${session}`}${outage}${this.stopped ? ', stopping' : ''}`;
  }

  /** Stop cleanly (SIGINT, SIGTERM, SIGHUP): the running session finishes its transfer; a reconnect wait ends. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.brain === undefined) this.log.info('stopping');
    this.brain?.stop();
    this.cancelWait();
  }

  /** Stop because of something outside psync (a --banned program started): exits with its error. */
  abortFor(error: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    this.abortError = error;
    this.brain?.abortFor(error);
    this.cancelWait();
  }

  private async sessions(archive: Archive, id: string): Promise<BrainOutcome> {
    for (;;) {
      const { outcome, wasUp } = await this.session(archive, id);
      if (this.stopped) return this.abortError === undefined ? { ok: true } : { ok: false, error: this.abortError };
      if (outcome.ok) return outcome;
      if (!this.willRetry(outcome.error, wasUp)) return outcome;
      // One outage lasts until a session is watching again (a session that came up and failed in its
      // start-up reconcile does not start a new one: the backoff and --reconnect-timeout go on).
      if (this.outage === undefined) {
        this.outage = { startedAt: Date.now(), attempt: 0, lastError: outcome.error.message };
        this.log.warn(`lost the pair: ${outcome.error.message}; reconnecting (a start-up reconcile then carries over what changed meanwhile)`);
      }
      const outage = this.outage;
      outage.lastError = outcome.error.message;
      if (reconnectExpired(outage.startedAt, Date.now(), this.config.reconnectTimeoutSeconds)) {
        const error = new ConnectionError(
          `gave up reconnecting after ${this.config.reconnectTimeoutSeconds} s (--reconnect-timeout) and ${outage.attempt} attempt(s): ${outcome.error.message}`,
          { cause: outcome.error },
        );
        return { ok: false, error };
      }
      this.phase = 'reconnecting';
      outage.attempt += 1;
      this.counters.reconnectAttempts += 1;
      this.noteEvent(`reconnect attempt ${outage.attempt}`);
      this.status.touch();
      const delay = backoffMs(outage.attempt, Math.random());
      this.log.debug(`reconnect attempt ${outage.attempt} in ${(delay / 1000).toFixed(1)} s (last error: ${outage.lastError})`);
      await this.wait(delay);
      if (this.stopped) return this.abortError === undefined ? { ok: true } : { ok: false, error: this.abortError };
    }
  }

  /** Connect, run one session to its end, and let go of its connections. */
  private async session(archive: Archive, id: string): Promise<{ outcome: BrainOutcome; wasUp: boolean }> {
    let endpoints: Record<Side, Endpoint>;
    try {
      endpoints = await this.connectWithin(this.timeLeft());
    } catch (error) {
      return { outcome: { ok: false, error: error as Error }, wasUp: false };
    }
    try {
      if (this.stopped) return { outcome: { ok: true }, wasUp: false };
      const brain = new Brain(this.config, endpoints, this.log, {
        archive,
        pairId: id,
        counters: this.counters,
        status: this.status,
        progress: this.progress,
        onWatching: () => this.reconnected(),
        noteEvent: (what) => this.noteEvent(what),
        noteConflict: (path) => this.noteConflict(path),
      });
      this.brain = brain;
      const outcome = await brain.run();
      this.brain = undefined;
      return { outcome, wasUp: brain.wasUp };
    } finally {
      await Promise.all([endpoints.left.close(), endpoints.right.close()]);
    }
  }

  /** While reconnecting with a --reconnect-timeout: how long is left of it (ms); else undefined. */
  private timeLeft(): number | undefined {
    const timeout = this.config.reconnectTimeoutSeconds;
    if (this.outage === undefined || timeout === undefined) return undefined;
    return Math.max(0, this.outage.startedAt + timeout * 1000 - Date.now());
  }

  /**
   * Connect, giving up after `ms` (a host that does not answer would hold
   * an attempt for the whole connect timeout, past --reconnect-timeout).
   * Endpoints that come up too late are closed.
   */
  private async connectWithin(ms: number | undefined): Promise<Record<Side, Endpoint>> {
    const connecting = this.connect();
    if (ms === undefined) return connecting;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ConnectionError(`no connection within the ${this.config.reconnectTimeoutSeconds} s of --reconnect-timeout`)), ms);
    });
    try {
      return await Promise.race([connecting, late]);
    } catch (error) {
      void connecting.then((endpoints) => Promise.all([endpoints.left.close(), endpoints.right.close()]), () => undefined);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Will a session that ended with `error` be followed by another (rather than psync exiting)? */
  private willRetry(error: Error, wasUp: boolean): boolean {
    if (this.config.reconnectTimeoutSeconds === 0) return false;
    return faultVerdict(error, wasUp ? 'running' : this.phase) === 'retry';
  }

  private reconnected(): void {
    const outage = this.outage;
    if (outage === undefined) return;
    this.outage = undefined;
    this.log.info(`reconnected after ${((Date.now() - outage.startedAt) / 1000).toFixed(1)} s and ${outage.attempt} attempt(s)`);
    this.status.touch();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.cancelWait = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private noteEvent(what: string): void {
    this.lastEvent = { at: Date.now(), what };
    this.status.touch();
  }

  private noteConflict(path: string): void {
    this.counters.conflicts += 1;
    this.recentConflicts.push(path);
    if (this.recentConflicts.length > STATUS_PATHS_LISTED) this.recentConflicts.shift();
    this.noteEvent(`conflict on ${JSON.stringify(path)}`);
  }

  private snapshot(): PairSnapshot {
    const now = Date.now();
    const session = this.brain?.statusFields();
    const ended = this.outcome;
    const common = {
      name: this.name,
      pairId: this.pairId,
      left: this.where.left,
      right: this.where.right,
      recentConflicts: [...this.recentConflicts],
      startedAt: new Date(this.startedAt).toISOString(),
      uptimeSeconds: Math.round((now - this.startedAt) / 1000),
      counters: this.counters,
      ...(this.lastEvent === undefined ? {} : { lastEvent: { at: new Date(this.lastEvent.at).toISOString(), what: this.lastEvent.what } }),
    };
    const idle = { connected: { left: false, right: false }, queued: 0, progressAt: new Date(now).toISOString(), skipped: 0, skippedPaths: [] };
    if (ended !== undefined) {
      return { state: ended.ok ? 'stopped' : 'failed', ...common, ...idle, ...(ended.ok ? {} : { lastError: ended.error.message }) };
    }
    // A session that failed is shown as `reconnecting` from the moment it fails when another one follows:
    // `failed` means psync is about to exit.
    const failure = this.brain?.failure;
    const retrying = failure !== undefined && !this.stopped && this.willRetry(failure, this.brain!.wasUp);
    const state: BrainState = (this.outage !== undefined || retrying) && !this.stopped ? 'reconnecting' : (session?.state ?? (this.stopped ? 'stopped' : 'starting'));
    const lastError = this.outage?.lastError ?? session?.lastError;
    // The failed session is still shutting down: the outage it starts is not recorded yet.
    const reconnect =
      this.outage !== undefined
        ? { attempt: this.outage.attempt, since: new Date(this.outage.startedAt).toISOString(), lastError: this.outage.lastError }
        : retrying
          ? { attempt: 0, since: new Date(this.brain?.failedAt ?? now).toISOString(), lastError: failure.message }
          : undefined;
    // The session's fields, but not its state: a session that failed while another follows is `reconnecting`.
    return {
      ...common,
      ...idle,
      ...session,
      state,
      ...(lastError === undefined ? {} : { lastError }),
      ...(reconnect === undefined || this.stopped ? {} : { reconnect }),
    };
  }

  /**
   * The pair's archive, locked against a second psync on the same pair. One
   * that cannot be read is set aside and the start is a first run (with a
   * warning), never "everything was deleted".
   */
  private openArchive(id: string): Archive {
    const file = archiveFile(this.config.stateDir ?? defaultStateDir(), id);
    let archive: Archive;
    try {
      archive = Archive.open(file);
    } catch (error) {
      if (error instanceof ArchiveLockedError) throw new SafetyError(error.message, { cause: error });
      const aside = `${file}.unreadable-${Date.now()}`;
      this.log.warn(`the archive ${file} cannot be read (${(error as Error).message}); it is kept as ${aside} and this start is a first run`);
      renameSync(file, aside);
      archive = Archive.open(file);
    }
    this.log.debug(`archive ${file}: ${archive.size} entries`);
    return archive;
  }
}
