/**
 * The brain: starts a side (its filter and helper) on each root, checks
 * each host's rsync, runs the initial merge, then turns the filters'
 * reports into transfers. Decisions live in src/core (echo ledger, queue and
 * its bound, batches, the fallback after a helper's refusal, which rsync may
 * run); this loop only wires them to the sides and to rsync.
 *
 * rsync's client always runs here, on the left; the right is its server
 * (over SSH, through the right helper's relay or a remote shell, or a
 * separate local process: transport/local.ts). Each end is confined to its
 * own root (`--confine-root`, transfer/rsync.ts).
 */

import { decodeAction, HEARTBEAT_TIMEOUT_MS, isActionVerb, NO_STAT, REPLACED_DIR, type FlowControlVerb } from '../core/protocol.js';
import type { SideConfig } from '../side.js';
import { expectedVersions, LastSynced } from '../core/conflict.js';
import { VanishedSends, type Resend } from '../core/vanished.js';
import { ActionQueue, HARD_MAX_QUEUED_ACTIONS, QueueBound, type Batch } from '../core/batch.js';
import { EchoLedger, sameAsMerged } from '../core/echo.js';
import { ConnectionError, ProtocolError, RsyncError, SafetyError } from '../core/errors.js';
import { fallbackAfterRefusal } from '../core/fallback.js';
import { parseRsyncVersion, rsyncVerdict } from '../core/rsyncVersion.js';
import { toRsyncFilterArgs } from '../core/patterns.js';
import { directionFrom, sourceOf, targetOf, type Action, type Direction, type Side } from '../core/types.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { buildRsyncArgv, runRsync, TRANSFER_LIST_ARGS, type TransferredEntry } from '../transfer/rsync.js';
import type { Endpoint, RsyncHost } from '../transport/endpoint.js';
import { ChildLink } from './childLink.js';
import { HelperClient } from './helperClient.js';
import { StatusWriter, type BrainState } from './status.js';

export interface BrainCounters {
  reported: Record<Side, number>;
  echoes: Record<Side, number>;
  rejected: Record<Side, number>;
  applied: Record<Direction, number>;
  rsyncRuns: number;
  helperRuns: number;
  failures: number;
  conflicts: number;
  /** MOVEs and DELETEs a helper refused after which nothing was sent in their place (an `unsafe` refusal, say). */
  refused: number;
}

/** Why the brain stopped: a clean stop, or a failure the CLI turns into an exit code. */
export type BrainOutcome = { ok: true } | { ok: false; error: Error };

const WATCHDOG_INTERVAL_MS = 1_000;
/** A failing batch is tried this many times in all before psync gives up on it. */
const MAX_ATTEMPTS = 3;
const RETRY_DELAY_MS = 1_000;
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

export class Brain {
  readonly counters: BrainCounters = {
    reported: { left: 0, right: 0 },
    echoes: { left: 0, right: 0 },
    rejected: { left: 0, right: 0 },
    applied: { leftToRight: 0, rightToLeft: 0 },
    rsyncRuns: 0,
    helperRuns: 0,
    failures: 0,
    conflicts: 0,
    refused: 0,
  };
  private readonly ledger = new EchoLedger();
  private readonly queue = new ActionQueue();
  private readonly queueBound = new QueueBound();
  /** Each end's `--confine-root` (its root's real path), once prepareRsync checked its rsync; unset for an rsync too old to take it. */
  private readonly confine: Partial<Record<Side, string>> = {};
  /** Sides whose rsync server the helper's relay starts (it adds --confine-root itself). */
  private readonly relayed = new Set<Side>();
  private readonly links = new Map<Side, ChildLink>();
  private readonly helpers = new Map<Side, HelperClient>();
  private readonly lastBeat: Record<Side, number> = { left: 0, right: 0 };
  private merged = false;
  private stopping = false;
  private wake: () => void = () => {};
  private finish: (outcome: BrainOutcome) => void = () => {};
  private readonly abort = new AbortController();
  private watchdog: NodeJS.Timeout | undefined;
  private state: BrainState = 'starting';
  private lastError: string | undefined;
  private readonly status: StatusWriter;
  /** The exclude arguments every rsync run gets: the filters' patterns in rsync's spelling, then --rsync-excludes. */
  private readonly rsyncExcludes: readonly string[];
  /** The last version psync synced at each path: what a target may hold without a change of its own. */
  private readonly synced = new LastSynced();
  private readonly vanished = new VanishedSends();
  /** Names this run's directories of replaced versions: `<pid>-<n>`. */
  private readonly runTag = String(process.pid);
  private rsyncSerial = 0;

  constructor(
    private readonly config: Config,
    private readonly endpoints: Record<Side, Endpoint>,
    private readonly log: Logger,
  ) {
    this.rsyncExcludes = [
      ...toRsyncFilterArgs({ excludes: config.excludes, tempfiles: config.tempfiles }),
      ...config.rsyncExcludes.map((p) => `--exclude=${p}`),
    ];
    this.status = new StatusWriter(config.statusFile, () => ({
      state: this.state,
      left: endpoints.left.description,
      right: endpoints.right.description,
      queued: this.queue.length,
      counters: this.counters,
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    }));
  }

  private setState(state: BrainState): void {
    this.state = state;
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
    if (this.config.syncOnly) {
      await this.prepareRsync();
      await this.initialMerge();
      this.setState('stopped');
      this.finish({ ok: true });
      return;
    }
    await Promise.all([this.prepareRsync(), this.startSide('left'), this.startSide('right')]);
    if (this.stopping) return;
    if (this.config.skipInitialSync) this.log.info('skipping the initial merge (-k)');
    else await this.initialMerge();
    if (this.stopping) return;
    this.merged = true;
    this.setState('watching');
    this.log.info(`watching ${this.endpoints.left.description} <-> ${this.endpoints.right.description}`);
    this.watchdog = setInterval(() => this.checkHeartbeats(), WATCHDOG_INTERVAL_MS);
    void this.dispatchLoop();
  }

  /**
   * Before the first transfer: each host's rsync and each root's real path.
   * Running as root there with an rsync older than 3.5.0 stops psync
   * (SafetyError, exit 7); otherwise an old rsync runs without
   * `--confine-root` and psync says so once (core/rsyncVersion.ts).
   */
  private async prepareRsync(): Promise<void> {
    const inspect = async (side: Side): Promise<RsyncHost> => {
      const host = await this.endpoints[side].inspectRsync();
      // An answer that holds no version (rsync could not be started there for a moment) is asked for once more.
      return parseRsyncVersion(host.versionOutput) === undefined ? this.endpoints[side].inspectRsync() : host;
    };
    const hosts = await Promise.all((['left', 'right'] as const).map(async (side) => [side, await inspect(side)] as const));
    const warned = new Set<string>();
    for (const [side, host] of hosts) {
      const verdict = rsyncVerdict(host.versionOutput, host.euid, host.where);
      if (verdict.kind !== 'ok') {
        if (verdict.kind === 'refuse') throw new SafetyError(verdict.message);
        if (!warned.has(verdict.message)) this.log.warn(verdict.message); // two local roots: one host, one warning
        warned.add(verdict.message);
        continue;
      }
      if (!host.realRoot.startsWith('/')) {
        // A relative root that does not exist yet on that host: rsync makes it; --confine-root needs an absolute path.
        this.log.warn(`${side}: ${JSON.stringify(host.realRoot)} was not found on ${host.where}; its transfers run without --confine-root`);
        continue;
      }
      this.confine[side] = host.realRoot;
      this.log.debug(`${side}: rsync ${verdict.version.major}.${verdict.version.minor}.${verdict.version.patch}, confined to ${host.realRoot}`);
    }
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
    this.lastError = error.message;
    this.setState('failed');
    this.wake();
    this.finish({ ok: false, error });
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.watchdog);
    // The initial merge can take hours: abort it at once. A realtime batch gets a grace period.
    const grace = setTimeout(() => this.abort.abort(new Error('psync is stopping')), this.merged ? STOP_GRACE_MS : 0);
    await this.idle;
    clearTimeout(grace);
    for (const helper of this.helpers.values()) helper.close();
    for (const link of this.links.values()) link.close();
    // Let the children finish (a filter releases its root lock on the way out), but not for ever.
    const children = [...this.links.values()].map((link) => link.exited);
    await Promise.race([Promise.all(children), new Promise((resolve) => setTimeout(resolve, CHILD_EXIT_GRACE_MS))]);
    if (this.state === 'stopping') this.state = 'stopped';
    await this.status.flush();
    const c = this.counters;
    this.log.info(
      `applied ${c.applied.leftToRight} left->right and ${c.applied.rightToLeft} right->left in ${c.rsyncRuns} rsync and ${c.helperRuns} helper runs; ` +
        `dropped ${c.echoes.left + c.echoes.right} echoes; ${c.failures} failures`,
    );
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
        debug: this.config.debug,
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
      } else if (frame.verb === 'READY') {
        this.log.info(`${side}: watching ${frame.args[0] ?? '?'} entries in ${endpoint.description}`);
        ready();
      } else if (frame.verb === 'WARN') {
        this.log.warn(`${side} filter: ${frame.args[0] ?? ''}`);
      } else if (frame.verb === 'ERROR') {
        this.fail(new ProtocolError(`${side} filter: ${frame.args[0] ?? 'unknown error'}`));
      } else if (frame.verb !== 'HEARTBEAT') {
        this.counters.rejected[side] += 1;
        this.log.warn(`${side} filter: ignoring unexpected ${frame.verb}`);
      }
    });
    void link.exited.then((code) => {
      if (!this.stopping) this.fail(new ConnectionError(`the ${side} side stopped unexpectedly (${code ?? 'connection lost'})`));
    });
    await Promise.race([isReady, link.exited.then(() => Promise.reject(new ConnectionError(`the ${side} side stopped before it was ready`)))]);
    if (relay) {
      const offer = await helper.relay;
      const problem = offer.ok ? await endpoint.useRelay!(offer) : offer.reason;
      if (problem === undefined) {
        this.relayed.add(side);
        this.log.info(`${side}: rsync runs through the helper's relay`);
      } else {
        this.log.warn(`${side}: every rsync run starts a remote shell (no relay: ${problem})`);
      }
    }
  }

  private checkHeartbeats(): void {
    const now = performance.now();
    for (const side of ['left', 'right'] as const) {
      if (now - this.lastBeat[side] > HEARTBEAT_TIMEOUT_MS) {
        this.fail(new ConnectionError(`no heartbeat from the ${side} filter for ${HEARTBEAT_TIMEOUT_MS / 1000} s; the link is lost`));
      }
    }
  }

  /** A report from a filter: verify it, drop it if it is our own echo, else queue it. */
  private onReport(side: Side, frame: Parameters<typeof decodeAction>[0]): void {
    let action: Action;
    try {
      action = decodeAction(frame);
    } catch (error) {
      if (!(error instanceof ProtocolError || error instanceof SafetyError)) throw error;
      this.counters.rejected[side] += 1;
      this.status.touch();
      this.log.warn(`${side}: rejected a report: ${error.message}`);
      return;
    }
    this.counters.reported[side] += 1;
    this.status.touch();
    if (this.ledger.isEcho(side, action, performance.now())) {
      this.counters.echoes[side] += 1;
      this.log.debug(`${side}: echo of our own change dropped: ${describe(action)}`);
      return;
    }
    this.log.debug(`${side}: ${describe(action)}`);
    const admission = this.queueBound.admit(side, this.queue.length);
    if (admission === 'overflow') {
      this.fail(
        new ProtocolError(
          `the ${side} side went on reporting after it was asked to pause (${HARD_MAX_QUEUED_ACTIONS} actions queued); ` +
            'stopping rather than dropping its reports (the next start merges both trees)',
        ),
      );
      return;
    }
    if (admission === 'acceptAndPause') {
      this.tellSide(side, 'PAUSE');
      this.log.warn(`${this.queue.length} actions queued: the ${side} side holds its reports until the queue has drained`);
    }
    const { dropped } = this.queue.enqueue(side, action, !this.merged);
    if (action.kind === 'move') {
      for (const resend of this.vanished.noteMove(side, action.from, action.to, performance.now())) this.resend(directionFrom(side), resend);
    }
    if (dropped !== undefined) {
      // Counted when the winner's transfer meets the loser's version on its side (resolveReplaced).
      this.log.info(
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
      this.log.info(`${this.queue.length} actions queued: the ${side} side sends its reports again`);
    }
  }

  private resend(direction: Direction, resend: Resend): void {
    this.log.info(`${JSON.stringify(resend.path)} moved with its directory before rsync sent it: sending it again`);
    const { path, stat, prev } = resend;
    this.queue.enqueue(sourceOf(direction), prev === undefined ? { kind: 'rsync', path, stat } : { kind: 'rsync', path, stat, prev }, !this.merged);
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
   * counted: psync goes on with the next batch rather than spin.
   */
  private async applyWithRetries(batch: Batch): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.apply(batch);
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
          await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
          continue;
        }
        this.counters.failures += 1;
        this.lastError = (error as Error).message;
        this.status.touch();
        this.log.error(`${what} failed ${MAX_ATTEMPTS} times, giving up on it: ${(error as Error).message}`);
        return;
      }
    }
  }

  private async apply(batch: Batch): Promise<void> {
    const source = sourceOf(batch.direction);
    const target = targetOf(batch.direction);
    const what = `${batch.kind} ${source}->${target}: ${batch.actions.map(describe).slice(0, 5).join(', ')}${batch.actions.length > 5 ? `, ... (${batch.actions.length})` : ''}`;
    if (this.config.dryRun) {
      this.log.info(`dry run, not applied: ${what}`);
      return;
    }
    this.log.info(what);
    if (batch.kind === 'rsync') await this.rsyncBatch(batch.direction, batch.actions, batch.updateOnly);
    else if (batch.kind === 'move') await this.moveBatch(batch.direction, batch.actions);
    else await this.deleteBatch(batch.direction, batch.actions);
    this.counters.applied[batch.direction] += batch.actions.length;
    this.status.touch();
  }

  private async rsyncBatch(direction: Direction, actions: readonly Action[], updateOnly: boolean, recursive = false): Promise<void> {
    const target = targetOf(direction);
    const now = performance.now();
    const sends = actions.filter((a): a is Extract<Action, { kind: 'rsync' }> => a.kind === 'rsync');
    for (const send of sends) this.ledger.expect(target, { kind: 'written', path: send.path, stat: send.stat }, now);
    const backupDir = `${REPLACED_DIR}/${this.runTag}-${++this.rsyncSerial}`;
    const transferred = new Map<string, TransferredEntry>();
    const onTransferred = (entry: TransferredEntry): void => {
      transferred.set(entry.path, entry);
      // rsync also sets the attributes of the listed paths' parents (implied directories), and of a
      // directory that changed again since its report: the target reports those too, as echoes.
      if (entry.isDir) this.ledger.expect(target, { kind: 'merged', ...entry }, performance.now());
    };
    const result = await this.runRsync(direction, { files: sends.map((a) => a.path), updateOnly, recursive, backupDir, onTransferred });
    if (result.status === 'partial') {
      this.log.warn(`rsync ${direction}: some files vanished or could not be transferred (exit ${result.exitCode}); their own events follow`);
    }
    // A file rsync did not find may have moved with its directory: send it again under the new name.
    const checkedAt = performance.now();
    for (const send of sends) {
      if (send.stat.type !== 'file' || transferred.has(send.path)) continue;
      const vanished = { path: send.path, stat: send.stat, prev: send.prev };
      for (const resend of this.vanished.noteVanished(sourceOf(direction), vanished, checkedAt)) this.resend(direction, resend);
    }
    await this.resolveReplaced(target, backupDir, sends, transferred);
  }

  /**
   * After a transfer: every version it replaced on the target must be one
   * the brain expected there; any other is a change made on the target that
   * the transfer overwrote, and the helper keeps both (conflict.ts). The
   * replaced versions are dropped only when every one was judged.
   */
  private async resolveReplaced(
    target: Side,
    dir: string,
    sends: readonly Extract<Action, { kind: 'rsync' }>[],
    transferred: ReadonlyMap<string, TransferredEntry>,
  ): Promise<void> {
    const helper = this.helpers.get(target)!;
    const files = sends.filter((a) => a.stat.type !== 'dir');
    if (files.length === 0) return;
    const replies = await helper.request(
      files.map((a) => ({ kind: 'resolve' as const, dir, path: a.path, expected: expectedVersions(a.prev, this.synced.get(a.path)) })),
    );
    let failed = 0;
    for (const [i, reply] of replies.entries()) {
      const path = files[i]!.path;
      if (!reply.ok) {
        this.synced.delete(path);
        failed += 1;
        this.log.warn(`could not check what the transfer replaced at ${JSON.stringify(path)} on ${target} (${reply.code}: ${reply.message})`);
      } else if (reply.conflict === undefined) {
        // The target now holds what psync synced there: the version the source reported, when rsync's
        // list confirms that is what it sent (the source may have changed since); else what the
        // target holds now, when that is what rsync wrote (no edit there since).
        const entry = transferred.get(path);
        const sent = [files[i]!.stat, reply.stat].find(
          (stat) => entry !== undefined && stat.type !== 'other' && sameAsMerged({ kind: 'merged', ...entry }, stat),
        );
        if (sent === undefined) this.synced.delete(path);
        else this.synced.set(path, sent);
      } else {
        this.counters.conflicts += 1;
        this.synced.delete(path);
        const [winner, loser] = reply.conflict.kept === 'written' ? ['incoming', `${target} side's`] : [`${target} side's`, 'incoming'];
        this.log.warn(
          `conflict on ${JSON.stringify(path)}: it changed on the ${target} side too; the newer (${winner}) version keeps the name, ` +
            `the ${loser} version is kept as ${JSON.stringify(reply.conflict.copy)}`,
        );
      }
    }
    if (failed > 0) {
      this.log.warn(`kept the versions the transfer replaced on ${target} in ${JSON.stringify(dir)} (under its root); check them by hand`);
      return;
    }
    const [purged] = await helper.request([{ kind: 'purge', dir }]);
    if (purged !== undefined && !purged.ok) this.log.warn(`could not remove ${JSON.stringify(dir)} on ${target}: ${purged.message}`);
  }

  private runRsync(
    direction: Direction,
    options: {
      files?: string[];
      updateOnly: boolean;
      recursive?: boolean;
      dryRun?: boolean;
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
      update: options.updateOnly,
      // Realtime batches name paths that changed: never let the quick check skip one.
      ignoreTimes: options.files !== undefined,
      dryRun: options.dryRun === true,
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
      log: (line) => this.log.warn(`rsync: ${line}`),
      ...(options.onTransferred === undefined ? {} : { onTransferred: options.onTransferred }),
    });
  }

  private async moveBatch(direction: Direction, actions: readonly Action[]): Promise<void> {
    const target = targetOf(direction);
    const moves = actions.filter((a): a is Extract<Action, { kind: 'move' }> => a.kind === 'move');
    const now = performance.now();
    for (const move of moves) {
      this.ledger.expect(target, { kind: 'movedIn', path: move.to, from: move.from, stat: move.stat }, now);
      this.ledger.expect(target, { kind: 'removed', path: move.from }, now);
    }
    this.counters.helperRuns += 1;
    const replies = await this.helpers.get(target)!.request(
      moves.map((m) => ({ kind: 'move' as const, from: m.from, to: m.to, expect: m.stat, ...(m.replaces === undefined ? {} : { replaces: m.replaces }) })),
    );
    const resend: Action[] = [];
    const stale: Action[] = [];
    for (const [i, reply] of replies.entries()) {
      const move = moves[i]!;
      this.synced.delete(move.from);
      if (reply.ok) {
        if (move.stat.type !== 'dir') this.synced.set(move.to, move.stat);
        if (reply.conflict !== undefined) {
          this.counters.conflicts += 1;
          this.log.warn(
            `conflict on ${JSON.stringify(move.to)}: it changed on the ${target} side too; the moved ${JSON.stringify(move.from)} takes the name, ` +
              `the ${target} side's version is kept as ${JSON.stringify(reply.conflict.copy)}`,
          );
        }
        continue;
      }
      this.ledger.cancel(target, move.to);
      this.ledger.cancel(target, move.from);
      const what = `move ${JSON.stringify(move.from)} -> ${JSON.stringify(move.to)} on ${target} not done (${reply.code}: ${reply.message})`;
      const fallback = fallbackAfterRefusal('move', reply.code);
      if (fallback.kind !== 'resend') {
        this.counters.refused += 1;
        this.status.touch();
        this.log.warn(`${what}; nothing is sent in its place`);
        continue;
      }
      this.log.warn(`${what}; sending ${JSON.stringify(move.to)} instead`);
      resend.push({ kind: 'rsync', path: move.to, stat: move.stat });
      // An old copy the target still holds under the old name goes, unless it was edited there.
      if (fallback.deleteOld) stale.push({ kind: 'delete', path: move.from, stat: move.stat });
    }
    if (resend.length > 0) await this.rsyncBatch(direction, resend, false, resend.some((a) => a.stat.type === 'dir'));
    if (stale.length > 0) await this.deleteBatch(direction, stale);
  }

  private async deleteBatch(direction: Direction, actions: readonly Action[]): Promise<void> {
    const target = targetOf(direction);
    const deletes = actions.filter((a): a is Extract<Action, { kind: 'delete' }> => a.kind === 'delete');
    const now = performance.now();
    for (const del of deletes) this.ledger.expect(target, { kind: 'removed', path: del.path }, now);
    this.counters.helperRuns += 1;
    const replies = await this.helpers.get(target)!.request(deletes.map((d) => ({ kind: 'delete' as const, path: d.path, expect: d.stat })));
    const keep: string[] = [];
    for (const [i, reply] of replies.entries()) {
      const del = deletes[i]!;
      const fallback = reply.ok ? ({ kind: 'done' } as const) : fallbackAfterRefusal('delete', reply.code);
      if (reply.ok || fallback.kind === 'done') {
        this.synced.delete(del.path);
        continue;
      }
      this.ledger.cancel(target, del.path);
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
    }
    if (keep.length > 0) {
      // The target holds something the source never had: bring it back rather than lose it.
      const back: Direction = direction === 'leftToRight' ? 'rightToLeft' : 'leftToRight';
      const actionsBack = keep.map((path): Action => ({ kind: 'rsync', path, stat: NO_STAT }));
      await this.rsyncBatch(back, actionsBack, false, true);
    }
  }

  /**
   * rsync --update both ways over the whole tree: the union of both trees,
   * the newer file wins. The filters already watch, so both report what the
   * merge writes: rsync lists every entry it wrote (size, mtime seconds) and
   * those reports are dropped as echoes, in the queue and when they come
   * late. Sending them back would be wasted work, and worse, could bring back
   * a file deleted on its side while the merge ran.
   */
  private async initialMerge(): Promise<void> {
    const started = performance.now();
    this.setState('merging');
    this.log.info(`initial merge of ${this.endpoints.left.description} and ${this.endpoints.right.description}${this.config.dryRun ? ' (dry run)' : ''}`);
    const written: Record<Side, Map<string, TransferredEntry>> = { left: new Map(), right: new Map() };
    for (const direction of ['leftToRight', 'rightToLeft'] as const) {
      const target = written[targetOf(direction)];
      const result = await this.runRsync(direction, {
        updateOnly: true,
        dryRun: this.config.dryRun,
        onTransferred: (entry) => target.set(entry.path, entry),
      });
      if (result.status === 'partial') this.log.warn(`initial merge ${direction}: some files vanished during the transfer (exit ${result.exitCode})`);
    }
    const now = performance.now();
    for (const side of ['left', 'right'] as const) {
      this.counters.echoes[side] += this.queue.dropWhere((item) => {
        if (item.action.kind !== 'rsync' || sourceOf(item.direction) !== side) return false;
        const entry = written[side].get(item.action.path);
        return entry !== undefined && sameAsMerged({ kind: 'merged', ...entry }, item.action.stat);
      });
      for (const entry of written[side].values()) this.ledger.expect(side, { kind: 'merged', ...entry }, now);
    }
    this.resumeDrained();
    this.log.info(
      `initial merge done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${written.right.size} entries written on the right, ${written.left.size} on the left`,
    );
  }
}

function describe(action: Action): string {
  return action.kind === 'move'
    ? `MOVE ${JSON.stringify(action.from)} -> ${JSON.stringify(action.to)}`
    : `${action.kind.toUpperCase()} ${JSON.stringify(action.path)}`;
}

