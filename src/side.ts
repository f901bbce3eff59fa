/**
 * One process per side: the filter and the helper of a side run together,
 * spoken to over one channel. Each is a node process's worth of memory
 * (some 50 MB before it does anything), and over SSH each was a channel and
 * a remote command of its own.
 *
 * The side is a multiplexer around the two unchanged children: it reads
 * `CONFIG {"filter": FilterConfig, "helper": HelperConfig}`, starts both
 * on in-process pipes, answers `HELLO <version> side <pid>` once both said
 * HELLO (or passes on the first ERROR), and from then on:
 *   - every frame either child writes goes out, renumbered in one stream;
 *   - of the frames the brain sends after CONFIG, PAUSE and RESUME (flow
 *     control, protocol.ts) go to the filter, every other one is a helper
 *     request.
 * The side ends when its input ends and both children have finished.
 * While its output is full (the brain reads slower than the filter's
 * start-up scan report is written), it stops reading what the children
 * write, so they wait for room too (the filter's ENTRY frames, the helper's
 * replies) instead of piling frames up in memory.
 */

import { PassThrough, type Readable, type Writable } from 'node:stream';
import { runHelper } from '../helpers/helper.js';
import { readConfigFrame } from './childConfig.js';
import { FrameReceiver, FrameWriter, type Frame } from './core/frame.js';
import { isFlowControlVerb, PROTOCOL_VERSION, type FilterConfig, type HelperConfig } from './core/protocol.js';
import { runFilter } from './filter/filter.js';

export interface SideConfig {
  readonly filter: FilterConfig;
  readonly helper: HelperConfig;
}

/** Exit codes of the side: the filter's when it failed, else the helper's. */
export async function runSide(input: Readable, output: Writable): Promise<number> {
  const writer = new FrameWriter();
  const send = (verb: string, args: readonly string[]): void => void output.write(writer.encode(verb, [...args]));
  const toHelper = new PassThrough();
  const helperWriter = new FrameWriter();
  const toFilter = new PassThrough();
  const filterWriter = new FrameWriter();
  // Frames that came in CONFIG's own chunk wait until the children have their CONFIG.
  const early: Frame[] = [];
  let childrenReady = false;
  const request = (frame: Frame): void => {
    if (!childrenReady) early.push(frame);
    else if (isFlowControlVerb(frame.verb)) toFilter.write(filterWriter.encode(frame.verb, frame.args));
    else toHelper.write(helperWriter.encode(frame.verb, frame.args));
  };
  let config: SideConfig;
  try {
    config = await readConfigFrame<SideConfig>(input, new FrameReceiver(), request);
    if (typeof config !== 'object' || config === null || typeof config.filter !== 'object' || typeof config.helper !== 'object') {
      throw new Error('CONFIG must hold "filter" and "helper" settings');
    }
  } catch (error) {
    send('ERROR', [(error as Error).message]);
    return 2;
  }

  toFilter.write(filterWriter.encode('CONFIG', [JSON.stringify(config.filter)]));
  toHelper.write(helperWriter.encode('CONFIG', [JSON.stringify(config.helper)]));
  childrenReady = true;
  for (const frame of early.splice(0)) request(frame);
  input.once('end', () => {
    toFilter.end();
    toHelper.end();
  });

  // Both HELLOs first; an ERROR from either stops the side before it says HELLO itself.
  let hellos = 0;
  let failed = false;
  const pending: Frame[] = [];
  const forward = (frame: Frame): void => {
    if (failed) return;
    if (hellos < 2) {
      if (frame.verb === 'HELLO') {
        hellos += 1;
        if (hellos === 2) {
          send('HELLO', [String(PROTOCOL_VERSION), 'side', String(process.pid)]);
          for (const early of pending.splice(0)) send(early.verb, early.args);
        }
        return;
      }
      if (frame.verb === 'ERROR') {
        failed = true;
        send('ERROR', frame.args);
        toFilter.end();
        toHelper.end();
        return;
      }
      pending.push(frame);
      return;
    }
    send(frame.verb, frame.args);
  };
  const fromFilter = collect(forward, output);
  const fromHelper = collect(forward, output);
  const [filterCode, helperCode] = await Promise.all([
    runFilter(toFilter, fromFilter).finally(() => toHelper.end()),
    runHelper(toHelper, fromHelper).finally(() => toFilter.end()),
  ]);
  return filterCode !== 0 ? filterCode : helperCode;
}

/**
 * A writable that parses the frames a child writes and hands each to
 * `onFrame`; it stops reading while `output` is full, until it drains.
 */
function collect(onFrame: (frame: Frame) => void, output: Writable): Writable {
  const receiver = new FrameReceiver();
  const pipe = new PassThrough();
  pipe.on('data', (chunk: Buffer) => {
    for (const received of receiver.push(chunk.toString('latin1'))) {
      if (received.ok) onFrame(received.frame);
      else process.stderr.write(`psync side: dropped a malformed frame from a child: ${received.error.message}\n`);
    }
    if (output.writableNeedDrain && !pipe.isPaused()) {
      pipe.pause();
      const resume = (): void => {
        output.off('drain', resume);
        output.off('close', resume);
        pipe.resume();
      };
      output.on('drain', resume);
      output.on('close', resume);
    }
  });
  return pipe;
}
