/**
 * Text from a process psync does not fully trust (a side's stderr, rsync's
 * stderr and transfer list), read as bounded lines (core/lines.ts) as it
 * comes: decoded across chunk boundaries, its last line given out when the
 * stream ends.
 */

import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { LineSplitter, type Line } from './core/lines.js';

/** A stderr line longer than this (from a side or from rsync) is logged cut; the rest of it is dropped. */
export const MAX_STDERR_LINE_CHARS = 64 * 1024;

/** Hand each line of `stream` to `onLine`; resolves once the stream has ended or closed, after its last line. */
export function readLines(stream: Readable, maxChars: number, onLine: (line: Line) => void, encoding: 'utf8' | 'latin1' = 'utf8'): Promise<void> {
  const decoder = new StringDecoder(encoding);
  const lines = new LineSplitter(maxChars);
  stream.on('data', (chunk: Buffer) => {
    for (const line of lines.push(decoder.write(chunk))) onLine(line);
  });
  return new Promise<void>((resolve) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      for (const line of [...lines.push(decoder.end()), ...lines.end()]) onLine(line);
      resolve();
    };
    stream.once('end', finish);
    stream.once('close', finish);
  });
}
