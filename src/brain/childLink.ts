/**
 * The brain's end of the channel to one side (src/side.ts: its filter and
 * helper): sends CONFIG, checks HELLO, verifies every frame, and relays the
 * side's stderr to the log. What the side writes on stderr before its HELLO
 * is held: a side that dies before it started (a wrong --remote-psync)
 * ends the start with one line naming the cause (core/startFailure.ts),
 * the rest of it at debug level; a side that starts has it logged then. Bad frames are logged, counted and never acted
 * on. Both streams are split into lines by one bounded splitter
 * (core/lines.ts): a side that writes without newlines makes the brain hold
 * at most one line's worth (a frame's MAX_FRAME_BYTES on stdout,
 * MAX_STDERR_LINE_CHARS on stderr), in linear time.
 */

import { ProtocolError, RootInUseError, RootUnusableError } from '../core/errors.js';
import { FrameReceiver, FrameWriter, MAX_FRAME_BYTES, type Frame } from '../core/frame.js';
import { LineSplitter, type Line } from '../core/lines.js';
import { startFailureLine } from '../core/startFailure.js';
import { MAX_STDERR_LINE_CHARS, readLines } from '../lineStream.js';
import { PROTOCOL_VERSION, START_ERROR_KIND, type Role } from '../core/protocol.js';
import type { Side } from '../core/types.js';
import type { Logger } from '../log.js';
import type { Channel, Endpoint } from '../transport/endpoint.js';

/** How long a child may take to answer CONFIG with HELLO (a remote node start included). */
export const HELLO_TIMEOUT_MS = 30_000;
/** At most this many stderr lines are held until HELLO (a runaway stack trace is cut). */
const MAX_HELD_STDERR_LINES = 200;
/** How long a side that exited before HELLO may take to finish writing its stderr. */
const STDERR_DRAIN_MS = 2_000;

export interface LinkCounters {
  frames: number;
  rejected: number;
  missed: number;
}

export class ChildLink {
  readonly counters: LinkCounters = { frames: 0, rejected: 0, missed: 0 };
  private readonly writer = new FrameWriter();
  private readonly receiver = new FrameReceiver();
  /** Frames are ASCII lines: split as latin1, one char per byte. */
  private readonly stdoutLines = new LineSplitter(MAX_FRAME_BYTES);
  private onFrame: (frame: Frame) => void = () => {};
  /** Frames that arrived after HELLO but before `listen` (often in HELLO's own chunk). */
  private early: Frame[] | undefined;
  private closed = false;
  /** Stderr lines held until HELLO (undefined once the child started: lines are then logged as they come). */
  private heldStderr: string[] | undefined = [];
  private stderrEnded: Promise<void> = Promise.resolve();

  private constructor(
    readonly side: Side,
    readonly role: Role,
    private readonly channel: Channel,
    private readonly log: Logger,
    /** Told of every rejected frame, so the brain's counters and status show them. */
    private readonly onRejected: () => void,
  ) {}

  get name(): string {
    return `${this.side} ${this.role}`;
  }

  get exited(): Promise<number | null> {
    return this.channel.exited;
  }

  /**
   * Start the child on `endpoint`, send it `config` and wait for its HELLO.
   * A child that answers ERROR (a missing root, say) rejects with its message.
   */
  static async open(endpoint: Endpoint, role: Role, config: unknown, log: Logger, onRejected: () => void = () => {}): Promise<ChildLink> {
    const channel = await endpoint.start(role);
    const link = new ChildLink(endpoint.side, role, channel, log, onRejected);
    link.relayStderr();
    channel.stdout.on('data', (chunk: Buffer) => link.receive(chunk));
    const hello = link.awaitHello(endpoint);
    link.send('CONFIG', [JSON.stringify(config)]);
    await hello;
    return link;
  }

  /** Handle every later frame (after HELLO). */
  listen(onFrame: (frame: Frame) => void): void {
    this.onFrame = onFrame;
    const early = this.early ?? [];
    this.early = undefined;
    for (const frame of early) onFrame(frame);
  }

  send(verb: string, args: readonly string[] = []): void {
    if (this.closed) return;
    this.channel.stdin.write(this.writer.encode(verb, args));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel.stdin.end();
    this.channel.kill();
  }

  private awaitHello(endpoint: Endpoint): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        for (const line of this.releaseStderr()) this.log.warn(`${this.name}: ${line}`);
        reject(new ProtocolError(`${this.name} on ${endpoint.description} did not answer within ${HELLO_TIMEOUT_MS / 1000} s`));
      }, HELLO_TIMEOUT_MS);
      const settle = (error?: Error): void => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      this.onFrame = (frame) => {
        if (frame.verb === 'HELLO' && frame.args[0] === String(PROTOCOL_VERSION) && frame.args[1] === this.role) {
          const early: Frame[] = [];
          this.early = early;
          this.onFrame = (next) => early.push(next);
          for (const line of this.releaseStderr()) this.log.warn(`${this.name}: ${line}`);
          settle();
        } else if (frame.verb === 'ERROR') {
          // Its stderr says the same as the ERROR (or more of the same): kept for -d 2.
          for (const line of this.releaseStderr()) this.log.debug(`${this.name}: ${line}`);
          settle(startError(`${this.name} on ${endpoint.description}: ${frame.args[0] ?? 'unknown error'}`, frame.args[1]));
        } else {
          settle(new ProtocolError(`${this.name} on ${endpoint.description} speaks another protocol (${frame.verb} ${frame.args.join(' ')})`));
        }
      };
      void this.channel.exited.then(async (code) => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([this.stderrEnded, new Promise((resolve) => (timer = setTimeout(resolve, STDERR_DRAIN_MS)))]);
        clearTimeout(timer);
        const stderr = this.releaseStderr();
        for (const line of stderr) this.log.debug(`${this.name}: ${line}`);
        const cause = startFailureLine(stderr);
        settle(
          new ProtocolError(
            `${this.name} on ${endpoint.description} exited (${code ?? 'killed'}) before it started${cause === undefined ? '' : `: ${cause}`}; is psync installed there? (--remote-psync)`,
          ),
        );
      });
    });
  }

  private receive(chunk: Buffer): void {
    for (const line of this.stdoutLines.push(chunk.toString('latin1'))) this.receiveLine(line);
  }

  private receiveLine(line: Line): void {
    if (line.cut) {
      this.counters.rejected += 1;
      this.onRejected();
      this.log.warn(`${this.name}: rejected a frame: longer than ${MAX_FRAME_BYTES} bytes`);
      return;
    }
    for (const received of this.receiver.push(`${line.text}\n`)) {
      if (!received.ok) {
        this.counters.rejected += 1;
        this.onRejected();
        this.log.warn(`${this.name}: rejected a frame: ${received.error.message}`);
        continue;
      }
      if (received.missed < 0) {
        this.counters.rejected += 1;
        this.onRejected();
        this.log.warn(`${this.name}: rejected a replayed frame (seq ${received.frame.seq})`);
        continue;
      }
      if (received.missed > 0) {
        this.counters.missed += received.missed;
        this.log.error(`${this.name}: ${received.missed} frame(s) lost before seq ${received.frame.seq}; changes may have been missed`);
      }
      this.counters.frames += 1;
      this.onFrame(received.frame);
    }
  }

  private relayStderr(): void {
    this.stderrEnded = readLines(this.channel.stderr, MAX_STDERR_LINE_CHARS, (line) => {
      if (line.text.trim() === '') return;
      const note = line.cut ? ` [line cut at ${MAX_STDERR_LINE_CHARS} characters; the rest of it dropped]` : '';
      if (this.heldStderr === undefined) this.log.warn(`${this.name}: ${line.text}${note}`);
      else if (this.heldStderr.length < MAX_HELD_STDERR_LINES) this.heldStderr.push(`${line.text}${note}`);
    });
  }

  /** The stderr lines held until now; from now on each line is logged as it comes. */
  private releaseStderr(): string[] {
    const held = this.heldStderr ?? [];
    this.heldStderr = undefined;
    return held;
  }
}

/** The error for a side's ERROR before HELLO: its kind (protocol.ts START_ERROR_KIND) decides the class, hence the exit code. */
export function startError(message: string, kind: string | undefined): Error {
  if (kind === START_ERROR_KIND.rootUnusable) return new RootUnusableError(message);
  if (kind === START_ERROR_KIND.rootInUse) return new RootInUseError(message);
  return new ProtocolError(message);
}
