/**
 * The brain's frame handling, with fake endpoints: the test plays both
 * filters and both helpers over PassThrough pipes (no process, no sshd).
 *
 * Whatever a filter sends that cannot be trusted (stray shell output, a
 * corrupted frame, a path that leaves the root, a frame of the wrong shape,
 * a verb the brain does not know) is counted and never acted on: no rsync
 * runs and no helper receives a request. Each row is followed by a valid
 * DELETE of `x` from the left filter as a barrier: frames are handled in
 * order, so once the right helper has that DELETE, anything the bad input
 * could have caused would already have happened.
 *
 * Both fake sides start with the same scan (SCAN: `x`, `lnk2`,
 * `lnk2/secret`), which the pair's archive already holds as agreed, and
 * with the pair's marker: so a DELETE of `x` is a change to carry over, and
 * the start-up asks no helper anything.
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import winston from 'winston';
import { describe, expect, test, vi } from 'vitest';
import { Brain, newCounters } from '../../src/brain/brain.js';
import { StatusWriter } from '../../src/brain/status.js';
import { ProgressBoard } from '../../src/progress.js';
import { Archive, archiveFile, defaultStateDir, pairId } from '../../src/state/archive.js';
import { DEFAULTS, type Config } from '../../src/config.js';
import { encodeFrame, FrameReceiver, type Frame } from '../../src/core/frame.js';
import {
  decodeHelperRequest,
  encodeEntry,
  encodeHelperReply,
  encodeReady,
  encodeStat,
  NO_STAT,
  PROTOCOL_VERSION,
  type HelperReply,
  type HelperRequest,
  type Role,
} from '../../src/core/protocol.js';
import type { Side, Stat } from '../../src/core/types.js';
import type { Channel, Endpoint, RsyncHost } from '../../src/transport/endpoint.js';
import { described } from '../support/table.js';
import { tempDir } from '../support/tmp.js';


const FILE_STAT: Stat = { type: 'file', ino: 42, size: 3, mtimeMs: 1_600_000_000_000, mode: 0o644 };
const DIR_STAT: Stat = { type: 'dir', ino: 43, size: 4096, mtimeMs: 1_600_000_000_000, mode: 0o755 };
/** What both sides hold at start-up. */
const SCAN: readonly [string, Stat][] = [
  ['x', FILE_STAT],
  ['lnk2', DIR_STAT],
  ['lnk2/secret', FILE_STAT],
];

/** One child as the brain sees it; the test speaks the child's side of the pipes. */
class FakeChild implements Channel {
  /** What the brain writes (CONFIG, helper requests). */
  readonly stdin = new PassThrough();
  /** What the test writes as the child (frames, garbage). */
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly exited: Promise<number | null>;
  /** Every well-formed frame the brain sent, CONFIG included. */
  readonly received: Frame[] = [];
  private readonly receiver = new FrameReceiver();
  private seq = 0;
  private exit: (code: number | null) => void = () => {};

  constructor(
    readonly role: Role,
    onFrame: (child: FakeChild, frame: Frame) => void,
  ) {
    this.exited = new Promise((resolve) => (this.exit = resolve));
    this.stdin.on('data', (chunk: Buffer) => {
      for (const received of this.receiver.push(chunk.toString('latin1'))) {
        if (!received.ok) throw received.error;
        this.received.push(received.frame);
        // A real child answers in a later tick, never inside the brain's write.
        setImmediate(() => onFrame(this, received.frame));
      }
    });
  }

  /** A well-formed frame with the next sequence number. */
  send(verb: string, args: readonly string[] = []): void {
    this.seq += 1;
    this.stdout.write(encodeFrame({ seq: this.seq, verb, args }));
  }

  /** The line the next send() would write, without using up its sequence number. */
  peekLine(verb: string, args: readonly string[] = []): string {
    return encodeFrame({ seq: this.seq + 1, verb, args });
  }

  /** Bytes as they are: stray output, corrupted frames. */
  raw(text: string): void {
    this.stdout.write(text);
  }

  /** Requests (after CONFIG) the brain sent this child. */
  requests(): Frame[] {
    return this.received.filter((frame) => frame.verb !== 'CONFIG');
  }

  kill(): void {
    this.stdin.end();
    this.stdout.end();
    this.stderr.end();
    this.exit(null);
  }
}

class FakeEndpoint implements Endpoint {
  readonly children: Partial<Record<Role, FakeChild>> = {};
  /** How this side's helper answers a request (DONE by default). */
  answer: (request: HelperRequest) => HelperReply = (request) =>
    // A reported DELETE's path is checked on its source before it is carried over (Brain.stillDeletes): gone.
    request.kind === 'stat'
      ? { id: request.id, ok: false, code: 'missing', message: `${request.path} does not exist (fake)` }
      : { id: request.id, ok: true, stat: request.kind === 'move' || request.kind === 'delete' ? request.expect : NO_STAT };

  constructor(
    readonly side: Side,
    readonly root: string,
    /** The pair's id, which the side's READY names as its root's marker. */
    readonly marker: string,
  ) {}

  get description(): string {
    return `fake:${this.root}`;
  }

  /** The side's one child: its filter and its helper speak over the same channel. */
  get filter(): FakeChild {
    const child = this.children.side;
    if (child === undefined) throw new Error(`the ${this.side} side was not started`);
    return child;
  }

  get helper(): FakeChild {
    return this.filter;
  }

  async start(role: Role): Promise<Channel> {
    const child = new FakeChild(role, (c, frame) => playSide(c, frame, this.answer, this.marker));
    this.children[role] = child;
    return child;
  }

  rsyncLocation(): string {
    return `${this.root}/`;
  }

  rsyncArgs(): string[] {
    return [];
  }

  async inspectRsync(): Promise<RsyncHost> {
    return { where: 'this host', realRoot: this.root, versionOutput: 'rsync  version 3.5.0  protocol version 32\n', euid: 0 };
  }

  async close(): Promise<void> {}
}

/** A side answers CONFIG with HELLO, its scan, READY and one beat (its filter), and every request as `answer` says (its helper). */
function playSide(child: FakeChild, frame: Frame, answer: (request: HelperRequest) => HelperReply, marker: string): void {
  if (frame.verb === 'CONFIG') {
    child.send('HELLO', [String(PROTOCOL_VERSION), 'side', '1']);
    for (const [path, stat] of SCAN) {
      const { verb, args } = encodeEntry({ path, stat });
      child.send(verb, args);
    }
    const { verb, args } = encodeReady({ entries: SCAN.length, markers: [marker] });
    child.send(verb, args);
    child.send('HEARTBEAT', ['1']);
    return;
  }
  if (frame.verb === 'PAUSE' || frame.verb === 'RESUME') return; // the filter's flow control
  const { verb, args } = encodeHelperReply(answer(decodeHelperRequest(frame)));
  child.send(verb, args);
}

interface Harness {
  readonly brain: Brain;
  readonly left: FakeEndpoint;
  readonly right: FakeEndpoint;
  readonly logs: string[];
  readonly outcome: ReturnType<Brain['run']>;
  readonly statusFile: string;
}

/** A brain on two fake endpoints, watching (-k: no start-up transfers, so no rsync of its own). */
async function startBrain(setUp: (left: FakeEndpoint, right: FakeEndpoint) => void = () => {}): Promise<Harness> {
  const base = tempDir('psync-brain-frames-');
  const statusFile = join(base, 'status.json');
  const config: Config = { ...DEFAULTS, name: 'frames', srcRoot: join(base, 'left'), dstRoot: join(base, 'right'), skipInitialSync: true, statusFile };
  const logs: string[] = [];
  const memory = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(chunk.toString());
      callback();
    },
  });
  const logger = winston.createLogger({
    level: 'silly',
    format: winston.format.printf(({ level, message }) => `${level} ${String(message)}`),
    transports: [new winston.transports.Stream({ stream: memory })],
  });
  const id = pairId(config.srcRoot, undefined, config.dstRoot);
  const archive = Archive.open(archiveFile(defaultStateDir(), id));
  archive.transaction((w) => {
    for (const [path, { type, size, mtimeMs, mode, ino }] of SCAN) {
      w.put(path, { type: type === 'dir' ? 'dir' : 'file', size, mtimeMs, mode, left: { ino }, right: { ino } });
    }
  });
  const left = new FakeEndpoint('left', config.srcRoot, id);
  const right = new FakeEndpoint('right', config.dstRoot, id);
  setUp(left, right);
  const counters = newCounters();
  const status = new StatusWriter(statusFile, () => ({ ...brain.statusFields(), counters }));
  const brain: Brain = new Brain(config, { left, right }, logger, { archive, pairId: id, counters, status, progress: new ProgressBoard('off'), onWatching: () => {}, noteEvent: () => {}, noteConflict: () => {} });
  const outcome = brain.run().finally(() => archive.close());
  await vi.waitFor(
    async () => {
      const status = JSON.parse(await readFile(statusFile, 'utf8')) as { state: string };
      expect(status.state).toBe('watching');
    },
    { timeout: 5_000, interval: 10 },
  );
  return { brain, left, right, logs, outcome, statusFile };
}

/** The barrier: a valid DELETE of `x` from the left filter, seen by the right helper. */
async function sendBarrier(h: Harness): Promise<void> {
  h.left.filter.send('DELETE', ['x', ...encodeStat(FILE_STAT)]);
  await vi.waitFor(() => expect(h.brain.counters.applied.leftToRight).toBe(1), { timeout: 5_000, interval: 5 });
}

async function stopBrain(h: Harness): Promise<void> {
  h.brain.stop();
  expect(await h.outcome).toEqual({ ok: true });
}

const rsyncArgs = (path: string): string[] => [path, ...encodeStat(FILE_STAT)];
const linkRejections = (logs: readonly string[]): number => logs.filter((line) => /left side: rejected a frame/.test(line)).length;

describe('a filter frame that cannot be trusted is counted and never acted on', () => {
  test.each(described<{
    description: string;
    send: (filter: FakeChild) => void;
    /** Counted in the brain's counters (and so in the status file): every refused frame. */
    brainRejected: number;
    /** Refused by the link before decoding (logged as "rejected a frame"). */
    linkRejected: number;
  }>([
    { description: 'stray shell output (hello from bashrc)', send: (f) => f.raw('hello from bashrc\n'), brainRejected: 1, linkRejected: 1 },
    {
      description: 'a frame with a bad checksum',
      send: (f) => {
        const line = f.peekLine('RSYNC', rsyncArgs('good.txt'));
        const crc = line.slice(-9, -1);
        const wrong = crc.replace(/^./, (c) => (c === '0' ? '1' : '0'));
        f.raw(`${line.slice(0, -9)}${wrong}\n`);
      },
      brainRejected: 1,
      linkRejected: 1,
    },
    { description: 'RSYNC of ../etc/passwd', send: (f) => f.send('RSYNC', rsyncArgs('../etc/passwd')), brainRejected: 1, linkRejected: 0 },
    { description: 'RSYNC of /etc/passwd', send: (f) => f.send('RSYNC', rsyncArgs('/etc/passwd')), brainRejected: 1, linkRejected: 0 },
    { description: 'RSYNC of a/../../b', send: (f) => f.send('RSYNC', rsyncArgs('a/../../b')), brainRejected: 1, linkRejected: 0 },
    { description: 'RSYNC with a wrong argument count', send: (f) => f.send('RSYNC', ['good.txt', 'file']), brainRejected: 1, linkRejected: 0 },
    { description: 'RSYNC of .psync/lock', send: (f) => f.send('RSYNC', rsyncArgs('.psync/lock')), brainRejected: 1, linkRejected: 0 },
    { description: 'RSYNC of a .psync symlink', send: (f) => f.send('RSYNC', ['.psync', ...encodeStat({ ...FILE_STAT, type: 'symlink' })]), brainRejected: 1, linkRejected: 0 },
    { description: 'DELETE of .psync', send: (f) => f.send('DELETE', ['.psync', ...encodeStat({ ...FILE_STAT, type: 'dir' })]), brainRejected: 1, linkRejected: 0 },
    { description: 'MOVE into .psync', send: (f) => f.send('MOVE', ['w/victim', '.psync/victim', ...encodeStat(FILE_STAT)]), brainRejected: 1, linkRejected: 0 },
    { description: 'RSYNC of a scratch name', send: (f) => f.send('RSYNC', rsyncArgs('w/x.1-1-abcdef.psync.ignore')), brainRejected: 1, linkRejected: 0 },
    {
      description: 'a line longer than a frame, over many chunks, then a newline',
      send: (f) => {
        for (let i = 0; i < 40; i++) f.raw('x'.repeat(16 * 1024));
        f.raw('\n');
      },
      brainRejected: 1,
      linkRejected: 1,
    },
    { description: 'an unknown verb', send: (f) => f.send('FROB', ['good.txt']), brainRejected: 1, linkRejected: 0 },
    {
      description: 'all of the above in one stream',
      send: (f) => {
        f.raw('hello from bashrc\n');
        const line = f.peekLine('RSYNC', rsyncArgs('good.txt'));
        f.raw(`${line.slice(0, -9)}${line.slice(-9, -1) === '00000000' ? '11111111' : '00000000'}\n`);
        f.send('RSYNC', rsyncArgs('../etc/passwd'));
        f.send('RSYNC', rsyncArgs('/etc/passwd'));
        f.send('RSYNC', rsyncArgs('a/../../b'));
        f.send('RSYNC', ['good.txt', 'file']);
        f.send('FROB', ['good.txt']);
      },
      brainRejected: 7,
      linkRejected: 2,
    },
  ]))('%s', async (_description, row) => {
    const h = await startBrain();
    try {
      row.send(h.left.filter);
      await vi.waitFor(
        () => {
          expect(h.brain.counters.rejected.left).toBe(row.brainRejected);
          expect(linkRejections(h.logs)).toBe(row.linkRejected);
        },
        { timeout: 5_000, interval: 5 },
      );
      expect(h.brain.counters.reported.left).toBe(0);
      expect(h.brain.counters.rsyncRuns).toBe(0);
      expect(h.brain.counters.applied).toEqual({ leftToRight: 0, rightToLeft: 0 });
      expect(h.right.helper.requests()).toEqual([]);

      await sendBarrier(h);
      // Exactly the barrier reached the right helper; nothing else was done anywhere.
      expect(h.right.helper.requests().map((f) => [f.verb, f.args[1]])).toEqual([['DELETE', 'x']]);
      expect(h.left.helper.requests().map((f) => [f.verb, f.args[1]])).toEqual([['STAT', 'x']]);
      expect(h.brain.counters.rsyncRuns, h.logs.join('')).toBe(0);
      expect(h.brain.counters.rejected).toEqual({ left: row.brainRejected, right: 0 });
      expect(h.brain.counters.reported.left).toBe(1);
      expect(h.brain.counters.applied).toEqual({ leftToRight: 1, rightToLeft: 0 });
      expect(linkRejections(h.logs)).toBe(row.linkRejected);
      // No frame was lost or replayed: a malformed line does not use up a sequence number.
      expect(h.logs.filter((line) => /lost before|replayed/.test(line))).toEqual([]);
    } finally {
      await stopBrain(h);
    }
  });
});

test('a valid DELETE from the left filter becomes exactly one DELETE request to the right helper', async () => {
  const h = await startBrain();
  try {
    await sendBarrier(h);
    const requests = h.right.helper.requests();
    expect(requests).toHaveLength(1);
    const request = decodeHelperRequest(requests[0]!);
    expect(request).toMatchObject({ kind: 'delete', path: 'x', expect: FILE_STAT });
    // The left's helper was only asked whether x is still gone there.
    expect(h.left.helper.requests().map((f) => [f.verb, f.args[1]])).toEqual([['STAT', 'x']]);
    expect(h.brain.counters.helperRuns).toBe(1);
    expect(h.brain.counters.rejected).toEqual({ left: 0, right: 0 });
  } finally {
    await stopBrain(h);
  }
});

describe('a helper reply that answers no pending request is counted and never acted on', () => {
  test.each(described<{ description: string; send: (helper: FakeChild) => void; rejected: number; why: RegExp }>([
    { description: 'a forged DONE', send: (h) => h.send('DONE', ['999', ...encodeStat(FILE_STAT)]), rejected: 1, why: /DONE 999 answers no pending request/ },
    { description: 'a forged FAIL', send: (h) => h.send('FAIL', ['7', 'changed', 'x']), rejected: 1, why: /FAIL 7 answers no pending request/ },
    {
      description: 'a DONE naming a conflict copy under .psync',
      send: (h) => h.send('DONE', ['1', ...encodeStat(FILE_STAT), '.psync/lock', 'written']),
      rejected: 1,
      why: /rejected a reply: DONE: refusing psync's own name/,
    },
  ]))('%s', async (_description, row) => {
    const h = await startBrain();
    try {
      row.send(h.right.helper);
      await vi.waitFor(() => expect(h.brain.counters.rejected.right).toBe(row.rejected), { timeout: 5_000, interval: 5 });
      expect(h.logs.join('')).toMatch(row.why);
      await sendBarrier(h);
      expect(h.brain.counters.rsyncRuns).toBe(0);
      await vi.waitFor(async () => {
        const status = JSON.parse(await readFile(h.statusFile, 'utf8')) as { counters: { rejected: { right: number } } };
        expect(status.counters.rejected.right).toBe(row.rejected);
      });
    } finally {
      await stopBrain(h);
    }
  });
});

describe('after a refused DELETE or MOVE only a refusal that says what the target holds starts a transfer', () => {
  test.each(described<{ description: string; verb: 'DELETE' | 'MOVE'; code: 'unsafe' | 'error'; refused: number }>([
    // Issue 8, attack 2: `DELETE lnk2/secret` with `lnk2 -> /root` on the left, refused as unsafe by the target's helper,
    // was "copied back": rsync read lnk2/secret through the link.
    { description: 'a DELETE refused as unsafe is not copied back', verb: 'DELETE', code: 'unsafe', refused: 1 },
    { description: 'a DELETE that failed is not copied back', verb: 'DELETE', code: 'error', refused: 1 },
    { description: 'a MOVE refused as unsafe is not sent again', verb: 'MOVE', code: 'unsafe', refused: 1 },
  ]))('%s', async (_description, row) => {
    const h = await startBrain((left) => {
      left.answer = (request) => ({ id: request.id, ok: false, code: row.code, message: 'refused by the test' });
    });
    try {
      // From the right: the left's helper refuses it.
      if (row.verb === 'DELETE') h.right.filter.send('DELETE', ['lnk2/secret', ...encodeStat(FILE_STAT)]);
      else h.right.filter.send('MOVE', ['lnk2/secret', 'stolen', ...encodeStat(FILE_STAT)]);
      await vi.waitFor(() => expect(h.brain.counters.refused).toBe(row.refused), { timeout: 5_000, interval: 5 });
      await sendBarrier(h);
      expect(h.brain.counters.rsyncRuns, h.logs.join('')).toBe(0);
      // The barrier only (and the check that lnk2/secret is gone on the right): no stale DELETE after a refused MOVE.
      expect(h.right.helper.requests().filter((f) => f.verb !== 'STAT')).toHaveLength(1);
      expect(h.logs.join('')).toMatch(/nothing is (copied back|sent in its place)/);
    } finally {
      await stopBrain(h);
    }
  });
});

test('an unreadable reply to a pending request fails that request (no wait for ever), and is counted', async () => {
  const h = await startBrain((_left, right) => {
    right.answer = (request) => ({ id: request.id, ok: true, stat: FILE_STAT, conflict: { copy: '.psync/lock', kept: 'written' } });
  });
  try {
    h.left.filter.send('DELETE', ['x', ...encodeStat(FILE_STAT)]);
    await vi.waitFor(() => expect(h.brain.counters.applied.leftToRight).toBe(1), { timeout: 5_000, interval: 5 });
    expect(h.brain.counters.rejected.right).toBe(1);
    expect(h.brain.counters.refused).toBe(1);
    expect(h.brain.counters.rsyncRuns).toBe(0);
  } finally {
    await stopBrain(h);
  }
});

test('a side that writes a huge stderr line without a newline: one cut line in the log, then the next line as usual', async () => {
  const h = await startBrain();
  try {
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    for (let i = 0; i < 64; i++) h.left.filter.stderr.write(chunk); // 16 MiB, no newline
    h.left.filter.stderr.write('\nafter the flood\n');
    await vi.waitFor(() => expect(h.logs.join('')).toContain('after the flood'), { timeout: 10_000, interval: 10 });
    const flood = h.logs.filter((line) => line.includes('aaaa'));
    expect(flood).toHaveLength(1);
    expect(flood[0]).toContain('[line cut at 65536 characters');
    expect(flood[0]!.length).toBeLessThan(70 * 1024);
  } finally {
    await stopBrain(h);
  }
});
