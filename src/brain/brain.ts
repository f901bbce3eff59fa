/**
 * One session of the brain (supervisor.ts runs them, on the pair's archive
 * of what both sides last agreed on, src/state/archive.ts): starts a side
 * (its filter and helper) on each root, checks each host's rsync,
 * reconciles both trees against the archive (startup.ts), then turns the
 * filters' reports into transfers until it is stopped or a fault (a lost
 * link, a stalled side) ends it. Decisions
 * live in src/core (the reconcile, echoes judged against the archive, queue
 * and its bound, batches, the fallback after a helper's refusal, which rsync
 * may run); this loop only wires them to the sides, to rsync and to the
 * archive.
 *
 * The archive is written only after a target confirmed what it holds (the
 * transfer list and the helper's stat), in one transaction per batch. A
 * report on a path the running batch carries (from either side), or on a
 * directory above one that an rsync batch writes into (core footprintOf), waits
 * until the batch is recorded, and is then judged against the archive
 * (core/agreed.ts): psync's own work is an echo, a late report of what
 * psync agreed before is an echo too (tombstones), anything else is a
 * change. Sends whose parent is gone on the target wait for that side's
 * report (dropOrphans); a reported rename whose new name psync wrote since
 * becomes a delete of its old name (moveStillValid).
 *
 * Every transfer is journaled in the archive before it runs and recorded
 * as over with what it agreed; one that fails is cleaned up at once (what
 * it replaced judged, its temp files removed), one cut off by the end of
 * the session at the next start. Paths a side cannot read are skipped
 * (SKIPPED directories, files rsync could not send: retryUnsent) and tried
 * again at each rescan.
 *
 * rsync's client always runs here, on the left; the right is its server
 * (over SSH, through the right helper's relay or a remote shell, or a
 * separate local process: transport/local.ts). Each end is confined to its
 * own root (`--confine-root`, transfer/rsync.ts).
 */

import { hostname } from 'node:os';
import { decodeAction, decodeEntry, decodeLeftover, decodeReady, decodeSkipped, HEARTBEAT_TIMEOUT_MS, isActionVerb, NO_STAT, REPLACED_DIR, type FlowControlVerb } from '../core/protocol.js';
import type { SideConfig } from '../side.js';
import { expectedVersions } from '../core/conflict.js';
import { VanishedSends, type Resend } from '../core/vanished.js';
import { ActionQueue, footprintOf, HARD_MAX_QUEUED_ACTIONS, QueueBound, waitsForBatch, type Batch, type Footprint } from '../core/batch.js';
import { agreedAfterMove, agreedAfterSend, agreedImpliedDir, agreedStat, asReported, deleteExpectation, holdsAgreed, identityOf, isEcho, moveStillValid, movePlan, Recent, remadeBelow, sentAs, type Listed } from '../core/agreed.js';
import { versionOf } from '../core/version.js';
import type { Agreed, Observed } from '../core/reconcile.js';
import type { PlannedBatch } from '../core/steps.js';
import { ancestorsOf, depthOf, isSameOrUnder, parentOf, rebase } from '../core/paths.js';
import { ConnectionError, ProtocolError, RsyncError, SafetyError } from '../core/errors.js';
import type { Archive } from '../state/archive.js';
import type { Leftover } from '../fs/psyncDir.js';
import { reconcileAtStart, removeTransferTemps } from './startup.js';
import { fallbackAfterRefusal } from '../core/fallback.js';
import { directionFrom, otherSide, sourceOf, targetOf, type Action, type Direction, type Side, type Stat } from '../core/types.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { describeTransfer, type Counts, type ProgressBoard, type ProgressTask } from '../progress.js';
import { buildRsyncArgv, isVanishedNotice, rsyncExcludeArgs, runRsync, TRANSFER_LIST_ARGS, type TransferredEntry } from '../transfer/rsync.js';
import type { Endpoint } from '../transport/endpoint.js';
import { confineRoots } from '../transfer/confine.js';
import { ChildLink, startError } from './childLink.js';
import { HelperClient } from './helperClient.js';
import { STATUS_PATHS_LISTED, type ActionKind, type BrainState, type PairSnapshot, type StatusCounters, type StatusWriter } from './status.js';


/** Why the brain stopped: a clean stop, or a failure the CLI turns into an exit code. */
export type BrainOutcome = { ok: true } | { ok: false; error: Error };

const WATCHDOG_INTERVAL_MS = 1_000;
/** A failing batch is tried this many times in all before psync gives up on it. */
const MAX_ATTEMPTS = 3;
/** A side's start-up scan may hold at most this many entries (a bound on what a side can make the brain keep). */
const MAX_SCAN_ENTRIES = 50_000_000;
/** A send whose parent is gone on the target waits this long for that side's report of why (retryOrphans). */
const ORPHAN_RETRY_MS = 1_000;
const ORPHAN_ATTEMPTS = 3;
const LAST_WRITTEN_PATHS = 100_000;
const RETRY_DELAY_MS = 1_000;
/** A file rsync could not send (exit 23, 24) though its source holds it is tried this many times before it is skipped. */
const UNSENT_ATTEMPTS = 2;
/** On stop, children get this long to exit before psync exits without them. */
const CHILD_EXIT_GRACE_MS = 3_000;
/**
 * On a failure while a side is still starting, psync waits this long for it
 * to come up, be closed and exit (releasing its root lock). Under load a
 * side's HELLO can come seconds after the other side failed; the child
 * grace alone then let psync exit before that side had let go of its root.
 */
const START_ABORT_GRACE_MS = 10_000;
/** On stop, a running transfer may finish for this long before it is aborted. */
const STOP_GRACE_MS = 10_000;

/** Counters for the status file, kept across the sessions of one psync run (supervisor.ts). */
export function newCounters(): StatusCounters {
  const kinds = (): Record<ActionKind, number> => ({ rsync: 0, move: 0, delete: 0 });
  return {
    reported: { left: 0, right: 0 },
    echoes: { left: 0, right: 0 },
    rejected: { left: 0, right: 0 },
    applied: { leftToRight: 0, rightToLeft: 0 },
    done: { leftToRight: kinds(), rightToLeft: kinds() },
    bytesSent: { leftToRight: 0, rightToLeft: 0 },
    rsyncRuns: 0,
    helperRuns: 0,
    failures: 0,
    conflicts: 0,
    refused: 0,
    reconnectAttempts: 0,
  };
}

/** What a session shares with the run around it (supervisor.ts): the open archive, the counters, the status file. */
export interface SessionShared {
  readonly archive: Archive;
  readonly pairId: string;
  readonly counters: StatusCounters;
  readonly status: StatusWriter;
  /** Where the start-up and long transfers show their progress. */
  readonly progress: ProgressBoard;
  /** The session went live (start-up reconciled, watching). */
  onWatching(): void;
  /** For the status: something happened (a batch applied, a state reached)... */
  noteEvent(what: string): void;
  /** ...a conflict on this path (both versions kept). */
  noteConflict(path: string): void;
}

/** Sessions started in this process (each names its own runs of replaced versions). */
let sessionsStarted = 0;

export class Brain {
  private readonly queue = new ActionQueue();
  private readonly queueBound = new QueueBound();
  /** Each end's `--confine-root` (its root's real path), once prepareRsync checked its rsync; unset for an rsync too old to take it. */
  private readonly confine: Partial<Record<Side, string>> = {};
  /** Sides whose rsync server the helper's relay starts (it adds --confine-root itself). */
  private readonly relayed = new Set<Side>();
  private readonly links = new Map<Side, ChildLink>();
  private readonly helpers = new Map<Side, HelperClient>();
  private readonly lastBeat: Record<Side, number> = { left: 0, right: 0 };
  /** The pair's archive of agreed state, open (and locked) for the whole run (supervisor.ts). */
  private readonly archive: Archive;
  private readonly pairId: string;
  readonly counters: StatusCounters;
  /** Sides whose process is up (ready, its link open). */
  private readonly connected = new Set<Side>();
  /** When the queue was last seen empty or a batch was applied (Date.now()). */
  private progressAt = Date.now();
  /** Each side's start-up scan (its ENTRY frames), until the start-up reconcile has used it. */
  private readonly scans: Record<Side, Map<string, Observed>> = { left: new Map(), right: new Map() };
  private readonly markers: Record<Side, readonly string[] | undefined> = { left: undefined, right: undefined };
  /** Files rsync could not send though their source holds them (retryUnsent), by direction and path: how often so far. */
  private readonly unsentAttempts = new Map<string, number>();
  /** Those given up on until the next rescan (retrySkipped), by direction and path. */
  private readonly skippedFiles = new Map<string, { direction: Direction; send: Extract<Action, { kind: 'rsync' }> }>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private rescanTimer: NodeJS.Timeout | undefined;
  /** Directories each side's filter cannot read (SKIPPED frames): left out until they can be. */
  private readonly skippedDirs: Record<Side, Set<string>> = { left: new Set(), right: new Set() };
  /** What killed transfers kept on each side (LEFTOVER frames), for the start-up reconcile to judge. */
  private readonly leftovers: Record<Side, Leftover[]> = { left: [], right: [] };
  /** Start-up reconciled: reports are judged as they come. Until then they wait in `held`. */
  private live = false;
  /**
   * Reports that wait: all of them until the start-up reconcile is done,
   * then those on a path the running batch is carrying over (they are judged
   * once the batch is recorded: the target's report of psync's own work is
   * then an echo, and the source's next change of that path, a delete say,
   * is judged against what the batch agreed).
   */
  private held: { side: Side; action: Action }[] = [];
  /** How many of `held` came from each side. */
  private heldFrom: Record<Side, number> = { left: 0, right: 0 };
  /** What was agreed at paths psync just deleted or renamed away: a late report of its own write there is an echo. */
  private readonly tombstones = new Recent<Agreed>();
  /** Sends not made because their parent was gone on the target, by direction and path: how often (retryOrphans). */
  private readonly orphans = new Map<string, number>();
  /** Those waiting to be queued again; a rename reported or applied meanwhile renames them (rebaseOrphans). */
  private readonly orphanWait = new Map<{ path: string }, NodeJS.Timeout>();
  /**
   * When psync last agreed on each path after a transfer (a count of
   * transfers, the newest LAST_WRITTEN_PATHS paths), and the count when
   * each MOVE report came: a move whose new name psync wrote since is
   * checked against what it wrote there (moveStillValid).
   */
  private transfers = 0;
  private readonly lastWritten = new Recent<number>(LAST_WRITTEN_PATHS);
  private readonly reportedAt = new WeakMap<Action, number>();
  /** What the running batch changes, on either side. */
  private inflight: Footprint | undefined;
  private stopping = false;
  private wake: () => void = () => {};
  private finish: (outcome: BrainOutcome) => void = () => {};
  private readonly abort = new AbortController();
  private watchdog: NodeJS.Timeout | undefined;
  private lastCheck = 0;
  private state: BrainState = 'starting';
  private lastError: string | undefined;
  private failedWith: Error | undefined;
  private failedTime: number | undefined;
  /** The last failure psync gave up on after its retries (a -s run then fails with it). */
  private gaveUp: Error | undefined;
  private readonly status: StatusWriter;
  /** Both sides started once (HELLO and READY): a later fault is a lost link, worth reconnecting (core/faults.ts). */
  private pairUp = false;
  /** The exclude arguments every rsync run gets: the filters' patterns in rsync's spelling, then --rsync-excludes. */
  private readonly rsyncExcludes: readonly string[];
  private readonly vanished = new VanishedSends();
  /** Names this session's directories of replaced versions: `<pid>-<session>-<n>`. */
  private readonly runTag = `${process.pid}-${++sessionsStarted}`;
  private rsyncSerial = 0;
  /** Both sides' start-up scans, counted as their entries come. */
  private scanProgress: ProgressTask | undefined;

  constructor(
    private readonly config: Config,
    private readonly endpoints: Record<Side, Endpoint>,
    private readonly log: Logger,
    private readonly shared: SessionShared,
  ) {
    this.archive = shared.archive;
    this.pairId = shared.pairId;
    this.counters = shared.counters;
    this.status = shared.status;
    this.rsyncExcludes = rsyncExcludeArgs(config);
  }

  /** This session's part of the status file. */
  statusFields(): Pick<PairSnapshot, 'state' | 'connected' | 'queued' | 'progressAt' | 'skipped' | 'skippedPaths' | 'lastError'> {
    const queued = this.queue.length + this.held.length;
    if (queued === 0) this.progressAt = Date.now();
    const skippedPaths = [
      ...(['left', 'right'] as const).flatMap((side) => [...this.skippedDirs[side]].map((path) => ({ side, path }))),
      ...[...this.skippedFiles.values()].map(({ direction, send }) => ({ side: sourceOf(direction), path: send.path })),
    ];
    return {
      state: this.state,
      connected: { left: this.connected.has('left'), right: this.connected.has('right') },
      queued,
      progressAt: new Date(this.progressAt).toISOString(),
      skipped: skippedPaths.length,
      skippedPaths: skippedPaths.slice(0, STATUS_PATHS_LISTED),
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    };
  }

  /** What ended this session, when a fault did, and when (Date.now()). */
  get failure(): Error | undefined {
    return this.failedWith;
  }

  get failedAt(): number | undefined {
    return this.failedTime;
  }

  /** Did both sides start (HELLO, READY) in this session? */
  get wasUp(): boolean {
    return this.pairUp;
  }

  private setState(state: BrainState): void {
    this.state = state;
    this.shared.noteEvent(state);
    this.status.touch();
  }

  /** Run until stopped (resolves ok) or until something fails that psync cannot carry on through. */
  async run(): Promise<BrainOutcome> {
    const done = new Promise<BrainOutcome>((resolve) => (this.finish = resolve));
    const starting = this.start().catch((error: unknown) => this.fail(error as Error));
    const outcome = await done;
    await this.shutdown();
    // A side still starting when the other failed closes what it started; wait for that too.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([starting, new Promise((resolve) => (timer = setTimeout(resolve, START_ABORT_GRACE_MS)))]);
    clearTimeout(timer);
    return outcome;
  }

  private async start(): Promise<void> {
    this.scanProgress = this.shared.progress.start('start-up scan', this.log);
    try {
      await Promise.all([this.prepareRsync(), this.startSide('left'), this.startSide('right')]);
    } finally {
      this.scanProgress.end();
    }
    if (this.stopping) return;
    this.pairUp = true;
    // From here a side that stops answering ends the session, in the start-up reconcile too.
    this.lastCheck = performance.now();
    this.watchdog = setInterval(() => this.checkHeartbeats(), WATCHDOG_INTERVAL_MS);
    await this.reconcileAtStart();
    if (this.stopping) return;
    if (this.config.syncOnly) {
      // -s: a batch given up on is a failed run (its error's exit code), not a quiet success.
      if (this.gaveUp !== undefined) {
        this.fail(this.gaveUp);
        return;
      }
      this.setState('stopped');
      this.finish({ ok: true });
      return;
    }
    this.live = true;
    this.releaseHeld();
    this.setState('watching');
    this.shared.onWatching();
    this.log.info(`watching ${this.endpoints.left.description} <-> ${this.endpoints.right.description}`);
    if (this.config.rescanSeconds > 0) this.rescanTimer = setInterval(() => this.retrySkipped(), this.config.rescanSeconds * 1000);
    void this.dispatchLoop();
  }

  private async reconcileAtStart(): Promise<void> {
    this.setState('reconciling');
    const helper = (side: Side): HelperClient => this.helpers.get(side)!;
    await reconcileAtStart({
      config: this.config,
      log: this.log,
      archive: this.archive,
      pairId: this.pairId,
      scans: this.scans,
      markers: this.markers,
      leftovers: this.leftovers,
      skipped: this.skippedDirs,
      noteConflict: (path) => this.shared.noteConflict(path),
      helpers: { left: helper('left'), right: helper('right') },
      progress: this.shared.progress,
      apply: (batch, task) => this.applyWithRetries({ direction: batch.direction, kind: batch.kind, actions: batch.actions }, batch, task),
      stopped: () => this.stopping,
    });
    // The scans were the start-up's alone: realtime reads the archive.
    this.scans.left.clear();
    this.scans.right.clear();
  }

  /** Before the first transfer: each side's --confine-root (transfer/confine.ts; SafetyError as root with an old rsync). */
  private async prepareRsync(): Promise<void> {
    Object.assign(this.confine, await confineRoots(this.endpoints, this.log));
  }

  /** Stop cleanly: let the running transfer finish (or abort it after a grace period). */
  stop(): void {
    if (this.stopping) return;
    this.log.info('stopping');
    this.stopping = true;
    this.setState('stopping');
    this.wake();
    this.finish({ ok: true });
  }

  /** Stop because of something outside psync (a banned program started). */
  abortFor(error: Error): void {
    this.fail(error);
  }

  private fail(error: Error): void {
    if (this.stopping) return;
    this.stopping = true;
    this.failedWith = error;
    this.failedTime = Date.now();
    this.lastError = error.message;
    this.setState('failed');
    this.wake();
    this.finish({ ok: false, error });
  }

  private async shutdown(): Promise<void> {
    this.scanProgress?.end();
    clearInterval(this.watchdog);
    clearInterval(this.rescanTimer);
    for (const timer of this.orphanWait.values()) clearTimeout(timer);
    for (const timer of this.retryTimers) clearTimeout(timer);
    // The start-up reconcile can take hours: abort it at once. A realtime batch gets a grace period,
    // unless a fault ends the session: then its link is gone or stalled, and every request to a side
    // fails at once (an unanswered one would hold the shutdown for ever). What a cut-off batch did is
    // not recorded; the next start-up reconcile finds it on both sides.
    const faulted = this.state === 'failed';
    if (faulted) for (const helper of this.helpers.values()) helper.close();
    const grace = setTimeout(() => this.abort.abort(new Error('psync is stopping')), this.live && !faulted ? STOP_GRACE_MS : 0);
    await this.idle;
    clearTimeout(grace);
    for (const helper of this.helpers.values()) helper.close();
    for (const link of this.links.values()) link.close();
    // Let the children finish (a filter releases its root lock on the way out), but not for ever.
    const children = [...this.links.values()].map((link) => link.exited);
    await Promise.race([Promise.all(children), new Promise((resolve) => setTimeout(resolve, CHILD_EXIT_GRACE_MS))]);
    if (this.state === 'stopping') this.state = 'stopped';
  }

  /**
   * Start a side (src/side.ts: its filter and helper in one process, on one
   * channel) and wait until its filter watches. The helper's replies go to
   * its client; everything else is the filter's.
   */
  private async startSide(side: Side): Promise<void> {
    const endpoint = this.endpoints[side];
    const relay = endpoint.useRelay !== undefined;
    const config: SideConfig = {
      filter: {
        root: endpoint.root,
        excludes: this.config.excludes,
        tempfiles: this.config.tempfiles,
        settleMs: Math.round(this.config.intervalSeconds * 1000),
        maxDelayMs: Math.round(this.config.maxDelaySeconds * 1000),
        rescanMs: Math.round(this.config.rescanSeconds * 1000),
        lock: !this.config.dryRun,
        lockOwner: `${process.pid}@${hostname()}`,
        debug: this.config.debug,
        reportScan: true,
      },
      helper: { root: endpoint.root, force: this.config.force, dryRun: this.config.dryRun, relay },
    };
    const link = await ChildLink.open(endpoint, 'side', config, this.log, () => {
      this.counters.rejected[side] += 1;
      this.status.touch();
    });
    if (this.stopping) {
      // The other side failed while this one was starting: shutdown has already run.
      link.close();
      await Promise.race([link.exited, new Promise((resolve) => setTimeout(resolve, CHILD_EXIT_GRACE_MS))]);
      return;
    }
    const helper = new HelperClient(link, relay, (why) => {
      this.counters.rejected[side] += 1;
      this.status.touch();
      this.log.warn(`${side} helper: rejected a reply: ${why}`);
    });
    this.links.set(side, link);
    this.helpers.set(side, helper);
    let ready: () => void = () => {};
    const isReady = new Promise<void>((resolve) => (ready = resolve));
    this.lastBeat[side] = performance.now();
    link.listen((frame) => {
      this.lastBeat[side] = performance.now();
      if (helper.receive(frame)) return;
      if (isActionVerb(frame.verb)) {
        this.onReport(side, frame);
      } else if (frame.verb === 'ENTRY') {
        this.onEntry(side, frame);
      } else if (frame.verb === 'LEFTOVER') {
        this.onLeftover(side, frame);
      } else if (frame.verb === 'SKIPPED') {
        this.onSkipped(side, frame);
      } else if (frame.verb === 'READY') {
        try {
          const { entries, markers } = decodeReady(frame);
          this.markers[side] = markers;
          this.log.verbose(`${side}: watching ${entries} entries in ${endpoint.description}`);
          this.connected.add(side);
          this.status.touch();
          ready();
        } catch (error) {
          this.fail(new ProtocolError(`${side} filter: ${(error as Error).message}`, { cause: error }));
        }
      } else if (frame.verb === 'WARN') {
        this.log.warn(`${side} filter: ${frame.args[0] ?? ''}`);
      } else if (frame.verb === 'ERROR') {
        // The filter says HELLO before it locks its root: a held lock comes as a start error after it.
        this.fail(startError(`${side} filter: ${frame.args[0] ?? 'unknown error'}`, frame.args[1]));
      } else if (frame.verb !== 'HEARTBEAT') {
        this.counters.rejected[side] += 1;
        this.log.warn(`${side} filter: ignoring unexpected ${frame.verb}`);
      }
    });
    void link.exited.then((code) => {
      this.connected.delete(side);
      this.status.touch();
      if (!this.stopping) this.fail(new ConnectionError(`the ${side} side stopped unexpectedly (${code ?? 'connection lost'})`));
    });
    await Promise.race([isReady, link.exited.then(() => Promise.reject(new ConnectionError(`the ${side} side stopped before it was ready`)))]);
    if (relay) {
      const offer = await helper.relay;
      const problem = offer.ok ? await endpoint.useRelay!(offer) : offer.reason;
      if (problem === undefined) {
        this.relayed.add(side);
        this.log.verbose(`${side}: rsync runs through the helper's relay`);
      } else {
        this.log.warn(`${side}: every rsync run starts a remote shell (no relay: ${problem})`);
      }
    }
  }

  private checkHeartbeats(): void {
    const now = performance.now();
    // A brain busy for seconds (a big reconcile) has not read what the sides sent meanwhile: that time
    // does not count against them.
    const late = now - this.lastCheck - WATCHDOG_INTERVAL_MS;
    this.lastCheck = now;
    if (late > WATCHDOG_INTERVAL_MS) for (const side of ['left', 'right'] as const) this.lastBeat[side] += late;
    for (const side of ['left', 'right'] as const) {
      if (now - this.lastBeat[side] > HEARTBEAT_TIMEOUT_MS) {
        this.fail(new ConnectionError(`no heartbeat from the ${side} filter for ${HEARTBEAT_TIMEOUT_MS / 1000} s; the link is lost`));
      }
    }
  }

  /** One entry of a side's start-up scan. */
  private onEntry(side: Side, frame: Parameters<typeof decodeEntry>[0]): void {
    if (this.live) {
      this.counters.rejected[side] += 1;
      this.log.warn(`${side} filter: ignoring an ENTRY after the start-up`);
      return;
    }
    try {
      const { path, stat } = decodeEntry(frame);
      if (this.scans[side].size >= MAX_SCAN_ENTRIES) {
        this.fail(new ProtocolError(`the ${side} side reported more than ${MAX_SCAN_ENTRIES} entries at start-up`));
        return;
      }
      const observed: Observed = { ...versionOf(stat), ...identityOf(stat) };
      this.scans[side].set(path, observed);
      this.scanProgress?.advance(1, stat.type === 'file' ? stat.size : 0);
    } catch (error) {
      this.reject(side, 'a scan entry', error);
    }
  }

  /**
   * A frame from `side` that does not decode (malformed, forged, naming a
   * path psync must not touch): counted, said, never acted on. Anything but
   * a ProtocolError or SafetyError is a bug, and goes on up.
   */
  private reject(side: Side, what: string, error: unknown): void {
    if (!(error instanceof ProtocolError || error instanceof SafetyError)) throw error;
    this.counters.rejected[side] += 1;
    this.status.touch();
    this.log.warn(`${side}: rejected ${what}: ${error.message}`);
  }

  /** A directory the side's filter cannot read (or, with no reason, can again). */
  private onSkipped(side: Side, frame: Parameters<typeof decodeSkipped>[0]): void {
    let skipped: { path: string; why: string };
    try {
      skipped = decodeSkipped(frame);
    } catch (error) {
      this.reject(side, 'a SKIPPED', error);
      return;
    }
    const dirs = this.skippedDirs[side];
    if (skipped.why === '') {
      if (dirs.delete(skipped.path)) this.log.info(`${side}: ${JSON.stringify(skipped.path)} can be read again; syncing it`);
    } else if (!dirs.has(skipped.path) && dirs.size < MAX_SCAN_ENTRIES) {
      dirs.add(skipped.path);
      this.log.warn(`${side}: skipping ${JSON.stringify(skipped.path)}: ${skipped.why}; the rest syncs on, and it is tried again at each rescan`);
    }
    this.status.touch();
  }

  /** A version a killed transfer kept on this side (judged by the start-up reconcile). */
  private onLeftover(side: Side, frame: Parameters<typeof decodeLeftover>[0]): void {
    try {
      if (this.live || this.leftovers[side].length >= MAX_SCAN_ENTRIES) throw new ProtocolError('a LEFTOVER after the start-up scan');
      this.leftovers[side].push(decodeLeftover(frame));
    } catch (error) {
      this.reject(side, 'a LEFTOVER', error);
    }
  }

  /** A report from a filter: verify it; it waits while the start-up or a batch on its path runs; else it is judged. */
  private onReport(side: Side, frame: Parameters<typeof decodeAction>[0]): void {
    let action: Action;
    try {
      action = decodeAction(frame);
    } catch (error) {
      this.reject(side, 'a report', error);
      return;
    }
    this.counters.reported[side] += 1;
    this.status.touch();
    // Before it may wait: a transfer that lands while it waits came after the change it reports.
    if (action.kind !== 'delete') this.reportedAt.set(action, this.transfers);
    const admission = this.queueBound.admit(side, this.queue.length + this.held.length);
    if (admission === 'overflow') {
      this.fail(
        new ProtocolError(
          `the ${side} side went on reporting after it was asked to pause (${HARD_MAX_QUEUED_ACTIONS} actions queued); ` +
            'stopping rather than dropping its reports (the next start reconciles both trees)',
        ),
      );
      return;
    }
    if (admission === 'acceptAndPause') {
      this.tellSide(side, 'PAUSE');
      this.log.info(`${this.queue.length + this.held.length} actions queued: the ${side} side holds its reports until the queue has drained`);
    }
    // A side's reports keep their order (a directory's DELETE after its children's): once one waits, the
    // ones after it from that side wait too.
    if (!this.live || this.isInflight(action) || this.heldFrom[side] > 0) {
      this.held.push({ side, action });
      this.heldFrom[side] += 1;
      return;
    }
    this.judge(side, action);
  }

  /** Does `action` name a path the running batch changes (core/batch.ts waitsForBatch)? */
  private isInflight(action: Action): boolean {
    return this.inflight !== undefined && waitsForBatch(this.inflight, action);
  }

  /** Judge the reports that waited, in the order they came. */
  private releaseHeld(): void {
    const waiting = this.held;
    this.held = [];
    this.heldFrom = { left: 0, right: 0 };
    for (const { side, action } of waiting) {
      if (this.heldFrom[side] > 0 || this.isInflight(action)) {
        this.held.push({ side, action });
        this.heldFrom[side] += 1;
      } else {
        this.judge(side, action);
      }
    }
    this.resumeDrained();
  }

  /**
   * A report judged against the archive: an echo of what is agreed is
   * dropped; a change is queued. (A MOVE of a name the other side does not
   * hold is found out by its helper, and sent as a copy: fallback.ts.)
   */
  private judge(side: Side, reported: Action): void {
    if (reported.kind !== 'rsync') this.forgetSkipped(side, reported.kind === 'move' ? reported.from : reported.path, reported.kind === 'move' ? reported.to : undefined);
    const lookup = (path: string) => this.archive.get(path);
    const underQueuedMove = reported.kind === 'delete' && this.queue.movingOnto(side, reported.path);
    if (!underQueuedMove && isEcho(lookup, side, reported, (path) => this.tombstones.get(path))) {
      this.counters.echoes[side] += 1;
      this.log.debug(`${side}: no change from what both sides agreed on: ${describe(reported)}`);
      return;
    }
    const action = asReported(lookup, side, reported);
    this.log.debug(`${side}: ${describe(action)}`);
    this.log.silly(`${side}: ${JSON.stringify(action)} against ${JSON.stringify(this.archive.get(action.kind === 'move' ? action.to : action.path) ?? null)}`);
    const { dropped } = this.queue.enqueue(side, action);
    if (action.kind === 'move') {
      this.rebaseOrphans(action.from, action.to);
      // The other side's pending sends below the old name are due under the new one, after the move.
      this.queue.deferUnder(otherSide(side), action.from, action.to);
      for (const resend of this.vanished.noteMove(side, action.from, action.to, performance.now())) this.resend(directionFrom(side), resend);
    }
    if (dropped !== undefined) {
      // Counted when the winner's transfer meets the loser's version on its side (resolveReplaced).
      this.log.verbose(
        `conflict on ${JSON.stringify(dropped.action.kind === 'move' ? dropped.action.to : dropped.action.path)}: both sides changed it; ` +
          `the newer one is sent; if the ${sourceOf(dropped.direction)} side's older version differs, it is kept as a conflict copy`,
      );
    }
    this.wake();
  }

  private idle: Promise<void> = Promise.resolve();

  /** A flow-control frame to a side's filter (protocol.ts: PAUSE, RESUME). */
  private tellSide(side: Side, verb: FlowControlVerb): void {
    this.links.get(side)?.send(verb);
  }

  /** The queue shrank: tell the sides that hold their reports to send them (QueueBound). */
  private resumeDrained(): void {
    for (const side of this.queueBound.drained(this.queue.length)) {
      this.tellSide(side, 'RESUME');
      this.log.verbose(`${this.queue.length} actions queued: the ${side} side sends its reports again`);
    }
  }

  private resend(direction: Direction, resend: Resend): void {
    this.log.verbose(`${JSON.stringify(resend.path)} moved with its directory before rsync sent it: sending it again`);
    const { path, stat, prev } = resend;
    this.queue.enqueue(sourceOf(direction), prev === undefined ? { kind: 'rsync', path, stat } : { kind: 'rsync', path, stat, prev });
    this.wake();
  }

  private async dispatchLoop(): Promise<void> {
    let markIdle: () => void = () => {};
    for (;;) {
      const batch = this.queue.takeBatch();
      this.resumeDrained();
      if (batch === undefined || this.stopping) {
        markIdle();
        if (this.stopping) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      this.idle = new Promise<void>((resolve) => (markIdle = resolve));
      await this.applyWithRetries(batch);
      markIdle();
    }
  }

  /**
   * Apply a batch; a failure other than a lost connection is retried after
   * RETRY_DELAY_MS, at most MAX_ATTEMPTS times in all, then reported and
   * counted: psync goes on with the next batch rather than spin. Reports
   * that waited on its paths are judged once it is over.
   */
  private async applyWithRetries(batch: Batch, planned?: PlannedBatch, startup?: ProgressTask): Promise<void> {
    this.inflight = footprintOf(batch);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.apply(batch, planned, startup);
          return;
        } catch (error) {
          if (this.stopping) return; // aborted on shutdown
          if (error instanceof RsyncError && error.exitCode === 255) {
            this.fail(new ConnectionError(`lost the SSH connection: ${error.message}`, { cause: error }));
            return;
          }
          const what = `${batch.direction} ${batch.kind} of ${batch.actions.length} entries`;
          if (attempt < MAX_ATTEMPTS) {
            this.log.warn(`${what} failed (attempt ${attempt} of ${MAX_ATTEMPTS}), retrying: ${(error as Error).message}`);
            await this.pause(RETRY_DELAY_MS);
            if (this.stopping) return; // the session ended meanwhile
            continue;
          }
          this.counters.failures += 1;
          this.gaveUp = error as Error;
          this.lastError = (error as Error).message;
          this.status.touch();
          this.log.error(`${what} failed ${MAX_ATTEMPTS} times, giving up on it: ${(error as Error).message}`);
          return;
        }
      }
    } finally {
      this.inflight = undefined;
      if (this.live) this.releaseHeld();
    }
  }

  /** Wait `ms`, or less when the session stops meanwhile. */
  private pause(ms: number): Promise<void> {
    const { signal } = this.abort;
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Apply one batch. Each action is listed at -d 1 (verbose) before; one
   * line says what was done at -d 0 (info) after: `rsync left->right: 3
   * files, 1.2 MB` (with the duration and rate for a big transfer), `delete
   * left->right: 40 entries, 12 already gone`. A realtime rsync batch shows
   * its progress when it runs long; a start-up batch adds to the start-up's.
   */
  private async apply(batch: Batch, planned?: PlannedBatch, startup?: ProgressTask): Promise<void> {
    const source = sourceOf(batch.direction);
    const target = targetOf(batch.direction);
    const head = `${batch.kind} ${source}->${target}`;
    const what = `${head}: ${batch.actions.map(describe).slice(0, 5).join(', ')}${batch.actions.length > 5 ? `, ... (${batch.actions.length})` : ''}`;
    if (this.config.dryRun) {
      this.log.verbose(`dry run, not applied: ${what}`);
      return;
    }
    this.log.verbose(what);
    const started = performance.now();
    let applied = batch.actions.length;
    let done: string;
    if (batch.kind === 'rsync') {
      const task = startup ?? this.shared.progress.start(head, this.log, sendTotals(batch.actions));
      try {
        // Sends that wait for their parent on the target (dropOrphans) are not applied yet.
        const sends = planned === undefined ? await this.stillSends(batch) : batch.actions;
        const sent = await this.rsyncBatch(batch.direction, sends, { recursive: false, makeParents: false, progress: task });
        applied = sent.applied;
        done = describeTransfer(sent.done, performance.now() - started);
      } finally {
        if (task !== startup) task.end();
      }
    } else {
      const outcome =
        batch.kind === 'move'
          ? await this.moveBatch(batch.direction, batch.actions, planned === undefined ? 'report' : planned.setAside ? 'setAside' : 'startup')
          : await this.deleteBatch(batch.direction, planned === undefined ? await this.stillDeletes(batch) : batch.actions);
      startup?.advance(batch.actions.length, 0);
      done = `${batch.actions.length} ${batch.actions.length === 1 ? 'entry' : 'entries'}${outcome.gone > 0 ? `, ${outcome.gone} already gone` : ''}`;
    }
    this.log.info(`${head}: ${done}`);
    this.counters.applied[batch.direction] += applied;
    this.counters.done[batch.direction][batch.kind] += applied;
    this.progressAt = Date.now();
    this.shared.noteEvent(what);
    this.status.touch();
  }

  /**
   * rsync the batch's paths from source to target, judge what the transfer
   * replaced there (resolveReplaced), and record in the archive what the
   * target confirmed holding: the version rsync's transfer list says it
   * sent, with each side's inode where that side still holds it. Returns
   * how many paths it sent (not those that wait for their parent), and the
   * files and bytes rsync listed as written (each also added to `progress`).
   */
  private async rsyncBatch(
    direction: Direction,
    actions: readonly Action[],
    how: { recursive: boolean; makeParents: boolean; progress?: ProgressTask },
  ): Promise<{ applied: number; done: Counts }> {
    const source = sourceOf(direction);
    const all = actions.filter((a): a is Extract<Action, { kind: 'rsync' }> => a.kind === 'rsync');
    const sends = how.makeParents ? all : await this.dropOrphans(direction, all);
    const done = { files: 0, bytes: 0 };
    if (sends.length === 0) return { applied: 0, done };
    const backupDir = `${REPLACED_DIR}/${this.runTag}-${++this.rsyncSerial}`;
    const target = targetOf(direction);
    const transferred = new Map<string, TransferredEntry>();
    const paths = sends.map((a) => a.path);
    // Journaled until recorded, with what the target held as agreed: a psync killed meanwhile has the next
    // start remove rsync's temp files and judge what the run replaced against that.
    const agreedBefore = new Map<string, Stat>();
    const sending = new Map<string, Agreed>();
    for (const send of sends) {
      const entry = this.archive.get(send.path);
      if (entry !== undefined) agreedBefore.set(send.path, agreedStat(entry, target));
      if (send.stat.type !== 'dir') sending.set(send.path, sentAs(source, send.stat));
    }
    this.archive.beginTransfer(backupDir, target, paths, agreedBefore, sending);
    let result;
    try {
      const onTransferred = (entry: TransferredEntry): void => {
        transferred.set(entry.path, entry);
        if (entry.isDir) return;
        this.counters.bytesSent[direction] += entry.size;
        done.files += 1;
        done.bytes += entry.size;
        how.progress?.advance(1, entry.size);
      };
      result = await this.runRsync(direction, { files: paths, recursive: how.recursive, backupDir, onTransferred });
    } catch (error) {
      // An rsync that failed, was killed or cut off may have replaced some files before it stopped, and
      // left temp files: both are seen to now (judged, removed), or, when the session is ending, at the
      // next start (which also agrees on what it wrote whole: adoptCutOff).
      if (!this.stopping) {
        await this.resolveReplaced(target, backupDir, sends);
        if (await removeTransferTemps(this.helpers.get(target)!, paths)) this.archive.transaction((w) => w.endTransfer(backupDir));
      }
      throw error;
    }
    // A file rsync did not find may have moved with its directory: send it again under the new name.
    const checkedAt = performance.now();
    const unsent = sends.filter((send) => send.stat.type === 'file' && !transferred.has(send.path));
    for (const send of unsent) {
      const vanished = { path: send.path, stat: send.stat, prev: send.prev };
      for (const resend of this.vanished.noteVanished(source, vanished, checkedAt)) this.resend(direction, resend);
    }
    const targetNow = await this.resolveReplaced(targetOf(direction), backupDir, sends);
    this.transfers += 1;
    await this.statDirs(targetOf(direction), sends, targetNow);
    // Not for a recursive run: what it wrote below a directory it sent is not listed in `sends` to take back.
    const remade = how.recursive ? { dirs: [], sends: [] } : remadeBelow(transferred.values(), paths, (path) => this.archive.get(path));
    const undone = new Set([...remade.dirs, ...remade.sends]);
    this.archive.transaction((w) => {
      w.endTransfer(backupDir);
      for (const send of sends) {
        if (undone.has(send.path)) continue;
        const now = targetNow.get(send.path);
        // The target kept its own newer version at the name: nothing is agreed there; its report is a change.
        // What it replaced was not judged: nothing is agreed either, and the next start judges that version
        // against what was agreed before (startup.ts judgeLeftovers).
        if (now === 'keptOwn' || now === 'unjudged') continue;
        let listed: Listed | undefined = transferred.get(send.path);
        // A directory rsync did not list: what the target's helper found there (statDirs).
        if (listed === undefined && send.stat.type === 'dir' && now?.type === 'dir') listed = { isDir: true, size: 0, mtimeSeconds: 0, mode: now.mode };
        const agreed = agreedAfterSend(source, send.stat, listed, now);
        if (agreed === undefined) continue;
        this.bury(send.path);
        w.put(send.path, agreed);
        this.lastWritten.set(send.path, this.transfers);
        this.log.silly(`agreed ${JSON.stringify(send.path)}: ${JSON.stringify(agreed)}`);
        this.orphans.delete(`${direction}\0${send.path}`);
        this.unsentAttempts.delete(`${direction}\0${send.path}`);
        if (this.skippedFiles.delete(`${direction}\0${send.path}`)) {
          this.status.touch();
          this.log.info(`${JSON.stringify(send.path)}, skipped before, is sent now`);
        }
      }
      // rsync also made or set the attributes of parents on the way (implied directories): the target reports those too.
      // A report of one made before this write (its mode as tar first made it, say) is stale: stillSends asks again.
      const sent = new Set(sends.map((send) => send.path));
      for (const entry of transferred.values()) {
        if (!entry.isDir || sent.has(entry.path) || undone.has(entry.path)) continue;
        const known = this.archive.get(entry.path);
        w.put(entry.path, known?.type === 'dir' ? { ...known, mode: entry.mode } : agreedImpliedDir(entry));
        this.lastWritten.set(entry.path, this.transfers);
      }
    });
    if (undone.size > 0) await this.takeBack(direction, remade, targetNow, sends);
    // Only once the batch is recorded: a rename reported meanwhile is judged against what it agreed.
    if (result.status === 'partial') await this.retryUnsent(direction, result.exitCode, unsent);
    return { applied: sends.length, done };
  }

  /**
   * rsync made again directories the target had renamed or deleted after
   * the brain checked them (remadeBelow): take back what it wrote there
   * (each entry still as written, then the directories it made, deepest
   * first) and queue those sends again. The target's report of its rename
   * or delete is judged after this batch, and the sends follow it: under
   * the new name (the queue's deferUnder), or not at all.
   * RACE: with --force, a file the target's user put into a remade
   * directory in this moment goes with it.
   */
  private async takeBack(
    direction: Direction,
    remade: { readonly dirs: readonly string[]; readonly sends: readonly string[] },
    targetNow: ReadonlyMap<string, Stat | 'keptOwn' | 'unjudged'>,
    sends: readonly Extract<Action, { kind: 'rsync' }>[],
  ): Promise<void> {
    const target = targetOf(direction);
    this.log.verbose(`${remade.dirs.map((dir) => JSON.stringify(dir)).join(', ')}: gone on the ${target} side as rsync wrote into it (renamed or deleted there); taking back what it wrote`);
    const statOf = (path: string): Stat | undefined => {
      const now = targetNow.get(path);
      return typeof now === 'object' ? now : undefined;
    };
    const written = remade.sends.flatMap((path) => {
      const now = statOf(path);
      return now !== undefined && now.type !== 'dir' ? [{ kind: 'delete' as const, path, expect: now }] : [];
    });
    const dirs = [...new Set([...remade.dirs, ...remade.sends.filter((path) => statOf(path)?.type === 'dir')])];
    const requests = [...written, ...dirs.map((path) => ({ kind: 'delete' as const, path, expect: { ...NO_STAT, type: 'dir' as const } }))];
    requests.sort((a, b) => depthOf(b.path) - depthOf(a.path));
    const replies = await this.helpers.get(target)!.request(requests);
    for (const [i, reply] of replies.entries()) {
      if (!reply.ok && reply.code !== 'missing') this.log.warn(`could not take back ${JSON.stringify(requests[i]!.path)} on ${target} (${reply.code}: ${reply.message})`);
    }
    const again = new Set(remade.sends);
    for (const send of sends) if (again.has(send.path)) this.queue.enqueue(sourceOf(direction), send);
    this.wake();
  }

  /**
   * rsync makes a listed path's missing parents on the target, even with
   * `--no-implied-dirs`. A parent that is missing there was renamed or
   * deleted on that side since, which a report still on its way will say;
   * making it again split the trees (issue 9, bug 5: `mv d e` on one side
   * while the other edits `d/f` left `d/f` and an old `e/f`). So before a
   * realtime run the target's helper stats the parents (those the batch
   * does not make itself), and a send whose parent is gone there waits:
   * it is queued again after ORPHAN_RETRY_MS, by when that report has come.
   * A rename has then moved it to the new name (ActionQueue.rebaseSource,
   * VanishedSends); a delete has come back to this side as a delete its
   * helper refuses (the file changed here) and been copied back with its
   * parents. After ORPHAN_ATTEMPTS it is given up, with a warning: the path
   * is sent when it changes next.
   * A parent renamed between this stat and rsync's write is made again;
   * rsync's transfer list says so, and takeBack undoes it.
   */
  private async dropOrphans(direction: Direction, sends: Extract<Action, { kind: 'rsync' }>[]): Promise<Extract<Action, { kind: 'rsync' }>[]> {
    const target = targetOf(direction);
    const made = new Set(sends.map((send) => send.path));
    const parents = [...new Set(sends.map((send) => parentOf(send.path)).filter((parent) => parent !== '' && !made.has(parent)))];
    if (parents.length === 0) return sends;
    const replies = await this.helpers.get(target)!.request(parents.map((path) => ({ kind: 'stat' as const, path })));
    const gone = new Set(parents.filter((_, i) => { const reply = replies[i]!; return !reply.ok || reply.stat.type !== 'dir'; }));
    if (gone.size === 0) return sends;
    const isOrphan = (path: string): boolean => ancestorsOf(path).some((p) => gone.has(p));
    const source = sourceOf(direction);
    for (const send of sends) {
      if (!isOrphan(send.path)) continue;
      // psync itself may have renamed its directory on the source a moment ago (a move from the
      // target's report): then it is due under the new name at once.
      const renamed = send.stat.type === 'file' ? this.vanished.noteVanished(source, { path: send.path, stat: send.stat, prev: send.prev }, performance.now()) : [];
      if (renamed.length > 0) {
        for (const again of renamed) this.resend(direction, again);
        continue;
      }
      const key = `${direction}\0${send.path}`;
      const attempts = (this.orphans.get(key) ?? 0) + 1;
      if (attempts > ORPHAN_ATTEMPTS) {
        this.orphans.delete(key);
        this.log.warn(`${JSON.stringify(send.path)} was not sent to the ${target} side: its directory is gone there; it is sent when it changes next`);
        continue;
      }
      this.orphans.set(key, attempts);
      this.log.debug(`${JSON.stringify(send.path)}: its directory is gone on the ${target} side; trying again once that side has reported why`);
      const waiting = { path: send.path };
      const timer = setTimeout(() => {
        this.orphanWait.delete(waiting);
        if (this.stopping) return;
        if (waiting.path !== send.path) this.orphans.set(`${direction}\0${waiting.path}`, this.orphans.get(key) ?? attempts);
        this.queue.enqueue(sourceOf(direction), { ...send, path: waiting.path });
        this.wake();
      }, ORPHAN_RETRY_MS);
      this.orphanWait.set(waiting, timer);
    }
    return sends.filter((send) => !isOrphan(send.path));
  }

  /**
   * rsync exit 23 or 24: some listed files were not sent. One that is gone
   * from the source is left to its own report (a DELETE, a MOVE); one the
   * source still holds (unreadable there, or changed while rsync read it)
   * is sent again on its own after RETRY_DELAY_MS, and after UNSENT_ATTEMPTS
   * it is skipped with one warning that names it, counted in the status,
   * and tried again at each rescan (retrySkipped). Nothing else in the
   * batch is sent again.
   */
  private async retryUnsent(direction: Direction, exitCode: number, unsent: readonly Extract<Action, { kind: 'rsync' }>[]): Promise<void> {
    if (unsent.length === 0) return;
    const source = sourceOf(direction);
    const replies = await this.helpers.get(source)!.request(unsent.map((send) => ({ kind: 'stat' as const, path: send.path })));
    for (const [i, reply] of replies.entries()) {
      const send = unsent[i]!;
      if (!reply.ok || reply.stat.type !== 'file') continue; // gone or changed type there: its own report follows
      const key = `${direction}\0${send.path}`;
      const attempts = (this.unsentAttempts.get(key) ?? 0) + 1;
      this.unsentAttempts.set(key, attempts);
      if (attempts < UNSENT_ATTEMPTS) {
        this.log.debug(`${JSON.stringify(send.path)} was not sent ${direction} (rsync exit ${exitCode}); trying it again on its own`);
        const timer = setTimeout(() => {
          this.retryTimers.delete(timer);
          if (this.stopping) return;
          this.queue.enqueue(source, send);
          this.wake();
        }, RETRY_DELAY_MS);
        this.retryTimers.add(timer);
        continue;
      }
      this.unsentAttempts.delete(key);
      if (this.skippedFiles.has(key)) continue;
      this.skippedFiles.set(key, { direction, send });
      this.status.touch();
      this.log.warn(
        `skipping ${JSON.stringify(send.path)} on the ${source} side: rsync could not send it ${UNSENT_ATTEMPTS} times (exit ${exitCode}, its message is above); ` +
          `the rest syncs on, and it is tried again at each rescan`,
      );
    }
  }

  /** What was skipped on `side` at or below `path` is gone from there (deleted), or renamed to `to`. */
  private forgetSkipped(side: Side, path: string, to: string | undefined): void {
    const dirs = this.skippedDirs[side];
    for (const dir of [...dirs]) {
      if (!isSameOrUnder(dir, path)) continue;
      dirs.delete(dir);
      if (to !== undefined) dirs.add(rebase(dir, path, to));
    }
    for (const [key, { direction, send }] of [...this.skippedFiles]) {
      if (sourceOf(direction) !== side || !isSameOrUnder(send.path, path)) continue;
      this.skippedFiles.delete(key);
      if (to !== undefined) this.skippedFiles.set(`${direction}\0${rebase(send.path, path, to)}`, { direction, send: { ...send, path: rebase(send.path, path, to) } });
    }
    this.status.touch();
  }

  /** Each rescan: the files skipped after rsync could not send them are tried once more. */
  private retrySkipped(): void {
    for (const { direction, send } of this.skippedFiles.values()) this.queue.enqueue(sourceOf(direction), send);
    if (this.skippedFiles.size > 0) this.wake();
  }

  /** A rename reported or applied: the sends waiting for their parent (dropOrphans) follow it. */
  private rebaseOrphans(from: string, to: string): void {
    for (const waiting of this.orphanWait.keys()) if (isSameOrUnder(waiting.path, from)) waiting.path = rebase(waiting.path, from, to);
  }

  /**
   * What each directory sent holds on the target now, from its helper:
   * rsync does not list a directory whose attributes it did not have to set
   * (nor, it seems, every one whose mode it set), and its list holds no
   * inode; the archive records both, so that a late report of the
   * directory psync made there is known for its echo (isEcho's tombstones).
   */
  private async statDirs(target: Side, sends: readonly Extract<Action, { kind: 'rsync' }>[], targetNow: Map<string, Stat | 'keptOwn' | 'unjudged'>): Promise<void> {
    const dirs = sends.filter((send) => send.stat.type === 'dir').map((send) => send.path);
    if (dirs.length === 0) return;
    const replies = await this.helpers.get(target)!.request(dirs.map((path) => ({ kind: 'stat' as const, path })));
    for (const [i, reply] of replies.entries()) if (reply.ok) targetNow.set(dirs[i]!, reply.stat);
  }

  /**
   * After a transfer: every version it replaced on the target must be one
   * the target could hold without a change of its own (what was agreed
   * there, or what the source held before); any other is a change made on
   * the target that the transfer overwrote, and the helper keeps both
   * (conflict.ts). The replaced versions are dropped only when every one was
   * judged. Returns what each checked path holds on the target now, or
   * `keptOwn` where a conflict left the target's own (newer) version there.
   */
  private async resolveReplaced(target: Side, dir: string, sends: readonly Extract<Action, { kind: 'rsync' }>[]): Promise<Map<string, Stat | 'keptOwn' | 'unjudged'>> {
    const now = new Map<string, Stat | 'keptOwn' | 'unjudged'>();
    const helper = this.helpers.get(target)!;
    // Directories too: one sent over a file the target made meanwhile pushed that file out (rsync's backup).
    if (sends.length === 0) return now;
    const agreedThere = (path: string): Stat | undefined => {
      const entry = this.archive.get(path);
      return entry === undefined ? undefined : agreedStat(entry, target);
    };
    const replies = await helper.request(
      // `prev` is the source's stat: its inode means nothing on the target.
      sends.map((a) => ({ kind: 'resolve' as const, dir, path: a.path, expected: expectedVersions(a.prev && { ...a.prev, ino: 0 }, agreedThere(a.path)) })),
    );
    let failed = 0;
    for (const [i, reply] of replies.entries()) {
      const path = sends[i]!.path;
      if (!reply.ok) {
        failed += 1;
        now.set(path, 'unjudged');
        if (!this.stopping) this.log.warn(`could not check what the transfer replaced at ${JSON.stringify(path)} on ${target} (${reply.code}: ${reply.message})`);
        continue;
      }
      if (reply.stat.type !== 'other' || reply.stat.ino !== 0) now.set(path, reply.stat);
      if (reply.conflict?.kept === 'replaced') now.set(path, 'keptOwn');
      if (reply.conflict !== undefined) {
        this.shared.noteConflict(path);
        const [winner, loser] = reply.conflict.kept === 'written' ? ['incoming', `${target} side's`] : [`${target} side's`, 'incoming'];
        this.log.warn(
          `conflict on ${JSON.stringify(path)}: it changed on the ${target} side too; the newer (${winner}) version keeps the name, ` +
            `the ${loser} version is kept as ${JSON.stringify(reply.conflict.copy)}`,
        );
      }
    }
    if (failed > 0) {
      this.log.warn(`kept the versions the transfer replaced on ${target} in ${JSON.stringify(dir)} (under its root); the next start judges them`);
      return now;
    }
    const [purged] = await helper.request([{ kind: 'purge', dir }]);
    if (purged !== undefined && !purged.ok) this.log.warn(`could not remove ${JSON.stringify(dir)} on ${target}: ${purged.message}`);
    return now;
  }

  private runRsync(
    direction: Direction,
    options: {
      files?: string[];
      recursive?: boolean;
      backupDir?: string;
      onTransferred?: (entry: TransferredEntry) => void;
    },
  ) {
    const source = this.endpoints[sourceOf(direction)];
    const target = this.endpoints[targetOf(direction)];
    const argv = buildRsyncArgv({
      source: source.rsyncLocation(),
      target: target.rsyncLocation(),
      transportArgs: [...source.rsyncArgs(), ...target.rsyncArgs()],
      update: false,
      // Every run names paths that changed: never let the quick check skip one.
      ignoreTimes: options.files !== undefined,
      dryRun: false,
      extra: [...(options.onTransferred === undefined ? [] : TRANSFER_LIST_ARGS), ...this.config.rsyncExtra],
      excludes: this.rsyncExcludes,
      filesFrom: options.files !== undefined,
      recursive: options.recursive === true,
      ...(options.backupDir === undefined ? {} : { backupDir: options.backupDir }),
      // The client runs here, on the left; the right is the server, confined by the relay when it starts it.
      ...(this.confine.left === undefined ? {} : { confineRoot: this.confine.left }),
      ...(this.confine.right === undefined || this.relayed.has('right') ? {} : { serverConfineRoot: this.confine.right }),
      preserveSuid: this.config.preserveSuid,
    });
    this.counters.rsyncRuns += 1;
    this.log.debug(`rsync ${argv.join(' ')}`);
    return runRsync({
      argv,
      ...(options.files === undefined ? {} : { files: options.files }),
      signal: this.abort.signal,
      // A file that vanished while rsync ran is not a problem: its DELETE or MOVE follows (retryUnsent).
      log: (line) => this.log.log(isVanishedNotice(line) ? 'verbose' : 'warn', `rsync: ${line}`),
      ...(options.onTransferred === undefined ? {} : { onTransferred: options.onTransferred }),
    });
  }

  /**
   * Renames on the target. How each is recorded depends on where it came
   * from: a filter's report (`report`: the archive's entries move with it,
   * and the new name is agreed as the source reported it), the start-up
   * carrying a rename over (`startup`: the entries move; their versions
   * are compared again by the plan's own copies), or a conflict's loser set
   * aside on its own side (`setAside`: nothing is agreed until its copy is).
   */
  private async moveBatch(direction: Direction, actions: readonly Action[], origin: 'report' | 'startup' | 'setAside'): Promise<{ gone: number }> {
    const source = sourceOf(direction);
    const target = targetOf(direction);
    const lookup = (path: string) => this.archive.get(path);
    const all = actions.filter((a): a is Extract<Action, { kind: 'move' }> => a.kind === 'move');
    const superseded = origin === 'report' ? all.filter((m) => this.writtenSince(m) && moveStillValid(lookup, source, m) === 'superseded') : [];
    // psync wrote the old name on the source since the report was judged (the other side's edit, queued
    // first): what was renamed is not what is agreed there now, and arrives under its new name as a file of its own.
    const arrivals = origin === 'report' ? all.filter((m) => !superseded.includes(m) && asReported(lookup, source, m).kind === 'rsync') : [];
    const moves = all.filter((m) => !superseded.includes(m) && !arrivals.includes(m));
    for (const move of arrivals) this.log.debug(`${source}: ${describe(move)}: psync wrote the old name there since; sending the new name as a file of its own`);
    for (const move of superseded) {
      this.log.verbose(`${JSON.stringify(move.to)} on the ${source} side is no longer the file moved there from ${JSON.stringify(move.from)}: deleting the old name on the ${target} side instead of moving it`);
    }
    const plans = moves.map((m) => (origin === 'report' ? movePlan(lookup(m.from), source, m.stat) : { expect: m.stat, thenSend: false }));
    this.counters.helperRuns += 1;
    const replies = await this.helpers.get(target)!.request(
      moves.map((m, i) => ({ kind: 'move' as const, from: m.from, to: m.to, expect: plans[i]!.expect, ...(m.replaces === undefined ? {} : { replaces: m.replaces }) })),
    );
    const resend: Action[] = arrivals.map((m) => ({ kind: 'rsync', path: m.to, stat: m.stat }));
    const stale: Action[] = [];
    const done: { move: (typeof moves)[number]; now: Stat; thenSend: boolean }[] = [];
    let gone = 0;
    for (const [i, reply] of replies.entries()) {
      const move = moves[i]!;
      if (reply.ok) {
        const { thenSend } = plans[i]!;
        done.push({ move, now: reply.stat, thenSend });
        // The source changed the file before it renamed it: the target renamed the agreed version; the change follows.
        if (thenSend) resend.push({ kind: 'rsync', path: move.to, stat: move.stat });
        if (origin !== 'setAside') {
          // The target's own sends below the old name are due under the new one: those queued, and those
          // that rsync did not find there (VanishedSends).
          this.queue.rebaseSource(target, move.from, move.to);
          this.rebaseOrphans(move.from, move.to);
          for (const again of this.vanished.noteMove(target, move.from, move.to, performance.now())) this.resend(directionFrom(target), again);
        }
        if (reply.conflict !== undefined) {
          this.shared.noteConflict(move.to);
          this.log.warn(
            `conflict on ${JSON.stringify(move.to)}: it changed on the ${target} side too; the moved ${JSON.stringify(move.from)} takes the name, ` +
              `the ${target} side's version is kept as ${JSON.stringify(reply.conflict.copy)}`,
          );
        }
        continue;
      }
      const what = `move ${JSON.stringify(move.from)} -> ${JSON.stringify(move.to)} on ${target} not done (${reply.code}: ${reply.message})`;
      const fallback = origin === 'report' ? fallbackAfterRefusal('move', reply.code) : ({ kind: 'nothing' } as const);
      if (fallback.kind !== 'resend') {
        this.counters.refused += 1;
        this.status.touch();
        this.log.warn(`${what}; nothing is sent in its place`);
        continue;
      }
      // Already gone on the target (a temp file renamed before it was ever sent, git's pack files): not a warning.
      if (reply.code === 'missing') gone += 1;
      this.log.log(reply.code === 'missing' ? 'verbose' : 'warn', `${what}; sending ${JSON.stringify(move.to)} instead`);
      resend.push({ kind: 'rsync', path: move.to, stat: move.stat });
      // An old copy the target still holds under the old name goes, unless it was edited there.
      if (fallback.deleteOld) stale.push({ kind: 'delete', path: move.from, stat: move.stat });
      if (fallback.sendOldBack) {
        this.queue.enqueue(target, { kind: 'rsync', path: move.from, stat: NO_STAT });
        this.wake();
      }
    }
    if (origin !== 'setAside') {
      this.archive.transaction((w) => {
        for (const { move, now, thenSend } of done) {
          const was = lookup(move.from);
          this.bury(move.from);
          this.bury(move.to);
          w.moveTree(move.from, move.to);
          if (origin !== 'report') continue;
          // Renamed unchanged on the target; the source's inode holds the change, sent next.
          if (thenSend && was !== undefined) w.put(move.to, { ...was, [source]: { ino: 0 }, [target]: identityOf(now) });
          else w.put(move.to, agreedAfterMove(source, move.stat, now));
        }
      });
    }
    if (resend.length > 0) await this.rsyncBatch(direction, resend, { recursive: resend.some((a) => a.stat.type === 'dir'), makeParents: true });
    for (const move of superseded) {
      const agreed = lookup(move.from);
      if (agreed !== undefined) stale.push({ kind: 'delete', path: move.from, stat: agreedStat(agreed, target) });
    }
    if (stale.length > 0) await this.deleteBatch(direction, stale);
    return { gone };
  }

  /**
   * Reported DELETEs, judged again as they are applied: psync may have
   * written the path on the source since the report (the other side's
   * edit, queued first, or sent while the filter's round was settling).
   * The delete was of what that write replaced, and the edit wins: a delete
   * the archive now calls an echo (isEcho's tombstones) is dropped, and so
   * is one whose path the source's helper finds holding the agreed version
   * again (a delete of an entry the filter never indexed carries no stat to
   * judge it by).
   */
  private async stillDeletes(batch: Batch): Promise<Action[]> {
    const source = sourceOf(batch.direction);
    const lookup = (path: string) => this.archive.get(path);
    const stale = (action: Action, why: string): false => {
      this.log.debug(`${source}: ${describe(action)} is stale: ${why}`);
      return false;
    };
    const judged = batch.actions.filter((action) => !isEcho(lookup, source, action, (path) => this.tombstones.get(path)) || stale(action, 'psync wrote that path there since'));
    if (judged.length === 0) return [];
    const replies = await this.helpers.get(source)!.request(judged.map((action) => ({ kind: 'stat' as const, path: action.kind === 'move' ? action.to : action.path })));
    return judged.filter((action, i) => {
      const reply = replies[i]!;
      const entry = action.kind === 'move' ? undefined : lookup(action.path);
      // What psync agreed on stands there again; anything else there (a symlink that replaced a directory) has its own report.
      if (!reply.ok || entry === undefined || !holdsAgreed(entry, source, reply.stat)) return true;
      return stale(action, `the ${source} side holds what psync wrote there since`);
    });
  }

  /** Has psync written the path a reported send or rename names (a rename's new name) since the report came? */
  private writtenSince(action: Action): boolean {
    return (this.lastWritten.get(action.kind === 'move' ? action.to : action.path) ?? -1) > (this.reportedAt.get(action) ?? Infinity);
  }

  /**
   * Reported sends, judged again as they are applied: psync may have
   * written the path on the source since the report (the other side's
   * version, the reported one kept as a conflict copy or judged an older
   * state of it: resolveReplaced). The report's stat then no longer says
   * what stands there: rsync would send psync's own write back and the
   * archive would record it under the reported file's inode, so that the
   * rename of that file to its conflict copy, reported next, renamed the
   * other side's file (bug 7 under load). The source's helper says what
   * stands there now: the agreed version is not sent back; anything else
   * (the user wrote again) is sent as it is now.
   */
  private async stillSends(batch: Batch): Promise<Action[]> {
    const source = sourceOf(batch.direction);
    const stale = batch.actions.filter((action): action is Extract<Action, { kind: 'rsync' }> => action.kind === 'rsync' && this.writtenSince(action));
    if (stale.length === 0) return [...batch.actions];
    const replies = await this.helpers.get(source)!.request(stale.map((send) => ({ kind: 'stat' as const, path: send.path })));
    const now = new Map<Action, Action | undefined>();
    for (const [i, reply] of replies.entries()) {
      const send = stale[i]!;
      // Gone there: rsync finds that out (VanishedSends); its own report follows.
      if (!reply.ok) continue;
      const entry = this.archive.get(send.path);
      if (entry !== undefined && holdsAgreed(entry, source, reply.stat)) {
        this.log.debug(`${source}: ${describe(send)} is stale: the ${source} side holds what psync wrote there since`);
        now.set(send, undefined);
      } else {
        now.set(send, { ...send, stat: reply.stat });
      }
    }
    return batch.actions.flatMap((action) => {
      if (!now.has(action)) return [action];
      const fresh = now.get(action);
      return fresh === undefined ? [] : [fresh];
    });
  }

  /** Keep what was agreed at `path` as its tombstone, before the archive lets it go or agrees on something newer. */
  private bury(path: string): void {
    const entry = this.archive.get(path);
    if (entry !== undefined) this.tombstones.set(path, entry);
  }

  /** Deletes on the target; returns how many were already gone there (the helper's `missing`, not a problem). */
  private async deleteBatch(direction: Direction, actions: readonly Action[]): Promise<{ gone: number }> {
    const target = targetOf(direction);
    const deletes = actions.filter((a): a is Extract<Action, { kind: 'delete' }> => a.kind === 'delete');
    this.counters.helperRuns += 1;
    const replies = await this.helpers
      .get(target)!
      .request(deletes.map((d) => ({ kind: 'delete' as const, path: d.path, expect: deleteExpectation(this.archive.get(d.path), target, d.stat) })));
    const keep: string[] = [];
    let keptDirs = false;
    const gone: string[] = [];
    let missing = 0;
    for (const [i, reply] of replies.entries()) {
      const del = deletes[i]!;
      if (!reply.ok && reply.code === 'missing') missing += 1;
      const fallback = reply.ok ? ({ kind: 'done' } as const) : fallbackAfterRefusal('delete', reply.code);
      if (reply.ok || fallback.kind === 'done') {
        gone.push(del.path);
        continue;
      }
      const what = `kept ${JSON.stringify(del.path)} on ${target} (${reply.code}: ${reply.message})`;
      if (fallback.kind !== 'copyBack') {
        // Refused as unsafe (or failed): copying that path back could read through what the helper refused.
        this.counters.refused += 1;
        this.status.touch();
        this.log.warn(`${what}; nothing is copied back`);
        continue;
      }
      this.log.warn(`${what}; copying it back`);
      keep.push(del.path);
      if (reply.code === 'notempty') keptDirs = true;
    }
    this.archive.transaction((w) => {
      for (const path of gone) {
        this.bury(path);
        w.deleteTree(path);
      }
    });
    if (keep.length > 0) {
      // The target holds something the source never had: bring it back rather than lose it.
      const back: Direction = direction === 'leftToRight' ? 'rightToLeft' : 'leftToRight';
      const actionsBack = keep.map((path): Action => ({ kind: 'rsync', path, stat: NO_STAT }));
      await this.rsyncBatch(back, actionsBack, { recursive: keptDirs, makeParents: true });
    }
    return { gone: missing };
  }
}

/** What a batch of sends carries: its entries but directories (rsync's list counts those apart), and the bytes of its files. */
function sendTotals(actions: readonly Action[]): Counts {
  const entries = actions.filter((a) => a.kind === 'rsync' && a.stat.type !== 'dir');
  return { files: entries.length, bytes: entries.reduce((sum, a) => sum + (a.stat.type === 'file' ? a.stat.size : 0), 0) };
}

function describe(action: Action): string {
  return action.kind === 'move'
    ? `MOVE ${JSON.stringify(action.from)} -> ${JSON.stringify(action.to)}`
    : `${action.kind.toUpperCase()} ${JSON.stringify(action.path)}`;
}

