/** The first thing every child reads: the CONFIG frame the brain sends on its stdin. */

import type { Readable } from 'node:stream';
import { ProtocolError } from './core/errors.js';
import type { Frame, FrameReceiver } from './core/frame.js';

/**
 * Resolve with the parsed JSON of the first CONFIG frame. Frames after it
 * are handed to `rest` (the helper's requests), in order.
 */
export function readConfigFrame<T>(input: Readable, receiver: FrameReceiver, rest?: (frame: Frame) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let configured = false;
    const onData = (chunk: Buffer): void => {
      for (const received of receiver.push(chunk.toString('latin1'))) {
        if (!received.ok) {
          if (!configured) {
            fail(received.error);
            return;
          }
          process.stderr.write(`psync: ignoring a bad frame: ${received.error.message}\n`);
          continue;
        }
        if (configured) {
          rest?.(received.frame);
          continue;
        }
        if (received.frame.verb !== 'CONFIG' || received.frame.args.length !== 1) {
          fail(new ProtocolError(`expected CONFIG first, got ${received.frame.verb}`));
          return;
        }
        try {
          configured = true;
          resolve(JSON.parse(received.frame.args[0]!) as T);
        } catch (error) {
          fail(new ProtocolError('CONFIG is not valid JSON', { cause: error }));
          return;
        }
      }
    };
    const fail = (error: Error): void => {
      input.off('data', onData);
      reject(error);
    };
    input.on('data', onData);
    input.once('end', () => {
      if (!configured) fail(new ProtocolError('input closed before CONFIG'));
    });
  });
}
