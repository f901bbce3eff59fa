/**
 * The side process (src/side.ts): a filter and a helper on one channel.
 * Driven in-process through pipes, as the brain drives it.
 */

import { writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { expect, test } from 'vitest';
import { tempDir } from '../support/tmp.js';
import { FrameReceiver, FrameWriter, type Frame } from '../../src/core/frame.js';
import { encodeHelperRequest, PROTOCOL_VERSION } from '../../src/core/protocol.js';
import { coreStat, Tree } from '../../src/fs/directory.js';
import { runSide, type SideConfig } from '../../src/side.js';
import { waitFor } from '../support/psync.js';

function drive(root: string) {
  const input = new PassThrough();
  const output = new PassThrough();
  const writer = new FrameWriter();
  const receiver = new FrameReceiver();
  const frames: Frame[] = [];
  const seqs: number[] = [];
  output.on('data', (chunk: Buffer) => {
    for (const received of receiver.push(chunk.toString('latin1'))) {
      if (!received.ok) throw received.error;
      expect(received.missed).toBe(0); // one stream, numbered without gaps
      frames.push(received.frame);
      seqs.push(received.frame.seq);
    }
  });
  const config: SideConfig = {
    filter: { root, excludes: [], tempfiles: [], settleMs: 50, maxDelayMs: 1000, rescanMs: 0, lock: true, debug: 0 },
    helper: { root, force: false, dryRun: false, relay: false },
  };
  const exit = runSide(input, output);
  input.write(writer.encode('CONFIG', [JSON.stringify(config)]));
  const send = (verb: string, args: string[]): void => void input.write(writer.encode(verb, args));
  const find = (verb: string, arg0?: string) => waitFor(`${verb} ${arg0 ?? ''}`, () => frames.find((f) => f.verb === verb && (arg0 === undefined || f.args[0] === arg0)));
  return { input, frames, seqs, exit, send, find };
}

test('one HELLO for the side, the filter reports and the helper answers on the same channel, and input end stops both', async () => {
  const root = tempDir('psync-side-');
  writeFileSync(join(root, 'old'), 'x');
  const side = drive(root);
  const hello = await side.find('HELLO');
  expect(hello.args.slice(0, 2)).toEqual([String(PROTOCOL_VERSION), 'side']);
  expect(side.frames[0]).toBe(hello);
  await side.find('READY');
  writeFileSync(join(root, 'new'), 'y');
  await side.find('RSYNC', 'new');
  const { verb, args } = encodeHelperRequest({ id: 7, kind: 'delete', path: 'old', expect: coreStat(new Tree(root).lstat('old')!) });
  side.send(verb, args);
  const done = await side.find('DONE', '7');
  expect(done.args[0]).toBe('7');
  expect(existsSync(join(root, 'old'))).toBe(false);
  expect(side.frames.filter((f) => f.verb === 'DELETE')).toEqual([]); // the helper's own delete is not reported
  side.input.end();
  expect(await side.exit).toBe(0);
  expect(side.seqs).toEqual(side.seqs.map((_, i) => i + 1));
  expect(existsSync(join(root, '.psync'))).toBe(false); // the lock is released
});

test('a missing root: one ERROR, no HELLO, a non-zero exit', async () => {
  const base = tempDir('psync-side-');
  mkdirSync(join(base, 'other'));
  const side = drive(join(base, 'missing'));
  const error = await side.find('ERROR');
  expect(error.args[0]).toContain('missing');
  expect(side.frames.filter((f) => f.verb === 'HELLO')).toEqual([]);
  side.input.end();
  expect(await side.exit).not.toBe(0);
});

test('PAUSE holds the filter\'s reports (repeated changes of a path merge) while heartbeats go on; RESUME sends them', async () => {
  const root = tempDir('psync-side-');
  const side = drive(root);
  await side.find('READY');
  side.send('PAUSE', []);
  const beats = (): number => side.frames.filter((f) => f.verb === 'HEARTBEAT').length;
  const before = beats();
  writeFileSync(join(root, 'held'), 'one');
  writeFileSync(join(root, 'held'), 'two, longer');
  // Two heartbeats after the writes: far past the 50 ms settle delay, the filter is alive, and it held its report.
  await waitFor('two heartbeats', () => beats() >= before + 2, 10_000);
  expect(side.frames.filter((f) => f.verb === 'RSYNC')).toEqual([]);
  side.send('RESUME', []);
  const report = await side.find('RSYNC', 'held');
  expect(Number(report.args[3])).toBe('two, longer'.length); // the last version, reported once
  side.input.end();
  expect(await side.exit).toBe(0);
  expect(side.frames.filter((f) => f.verb === 'RSYNC' && f.args[0] === 'held')).toHaveLength(1);
});
