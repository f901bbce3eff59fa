/**
 * Frames: the line format every psync process speaks on its pipes.
 *
 *     <seq> <VERB> [<arg> ...] <crc32>\n
 *
 * - `seq` counts frames on one stream in one direction, from 1, by 1. A gap
 *   means a frame was lost or forged; the receiver says so (see FrameReceiver).
 * - `VERB` is upper-case ASCII letters.
 * - Each argument is the UTF-8 (surrogate-escaped, see paths.ts) bytes of a
 *   string, percent-encoded so that only `[A-Za-z0-9._~/:@+=,-]` appear raw:
 *   spaces, newlines, `%` and every non-ASCII byte become `%XX`. An empty
 *   argument is a lone `%`. A frame is therefore printable ASCII on one line,
 *   whatever the file names hold.
 * - `crc32` is 8 lower-case hex digits of the CRC-32 of the bytes before the
 *   last space. It catches corruption and stray output (a remote login
 *   script printing to stdout), not a malicious peer: the path guard and the
 *   helper's checks are what keep a forged frame from doing harm.
 */

import { ProtocolError } from './errors.js';
import { LineSplitter } from './lines.js';
import { bytesToPath, pathToBytes } from './paths.js';

/** A frame longer than this is refused whole (two 4096-byte paths fully escaped fit easily). */
export const MAX_FRAME_BYTES = 256 * 1024;

export interface Frame {
  readonly seq: number;
  readonly verb: string;
  readonly args: readonly string[];
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE) of the character codes of an ASCII string. */
export function crc32(text: string): number {
  let crc = 0xffffffff;
  for (let i = 0; i < text.length; i++) crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const RAW_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~/:@+=,-';
/** The bytes an argument carries as they are; every other byte is %XX. */
const RAW_BYTE = Uint8Array.from({ length: 128 }, (_, code) => (RAW_CHARS.includes(String.fromCharCode(code)) ? 1 : 0));
/** A whole argument of raw characters only: the common case, encoded and decoded as it is. */
const ALL_RAW = /^[A-Za-z0-9._~/:@+=,-]+$/;
const HEX = '0123456789ABCDEF';

export function encodeArg(value: string): string {
  if (value === '') return '%';
  if (ALL_RAW.test(value)) return value;
  let out = '';
  for (const byte of pathToBytes(value)) {
    out += byte < 0x80 && RAW_BYTE[byte] === 1 ? String.fromCharCode(byte) : `%${HEX[byte >> 4]}${HEX[byte & 15]}`;
  }
  return out;
}

export function decodeArg(text: string): string {
  if (text === '%') return '';
  if (text === '') throw new ProtocolError('empty frame argument (an empty value is written %)');
  // Raw characters are ASCII: their bytes decode to the same string.
  if (ALL_RAW.test(text)) return text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    const code = ch.charCodeAt(0);
    if (ch === '%') {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new ProtocolError(`bad escape in frame argument ${JSON.stringify(text)}`);
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (code < 0x80 && RAW_BYTE[code] === 1) {
      bytes.push(code);
    } else {
      throw new ProtocolError(`unexpected character ${JSON.stringify(ch)} in frame argument`);
    }
  }
  return bytesToPath(Uint8Array.from(bytes));
}

/** One frame as a line, newline included. */
export function encodeFrame(frame: Frame): string {
  if (!/^[A-Z]+$/.test(frame.verb)) throw new ProtocolError(`bad verb ${JSON.stringify(frame.verb)}`);
  const body = [String(frame.seq), frame.verb, ...frame.args.map(encodeArg)].join(' ');
  return `${body} ${crc32(body).toString(16).padStart(8, '0')}\n`;
}

/** Parse one line (without its newline). Throws ProtocolError for anything malformed. */
export function decodeFrame(line: string): Frame {
  if (line.length > MAX_FRAME_BYTES) throw new ProtocolError(`frame of ${line.length} bytes is too long`);
  const lastSpace = line.lastIndexOf(' ');
  if (lastSpace < 0) throw new ProtocolError(`malformed frame ${preview(line)}`);
  const body = line.slice(0, lastSpace);
  const crc = line.slice(lastSpace + 1);
  if (!/^[0-9a-f]{8}$/.test(crc)) throw new ProtocolError(`malformed frame checksum in ${preview(line)}`);
  if (crc32(body) !== Number.parseInt(crc, 16)) throw new ProtocolError(`bad frame checksum in ${preview(line)}`);
  const [seqText, verb, ...rawArgs] = body.split(' ');
  if (seqText === undefined || !/^[1-9][0-9]{0,15}$/.test(seqText)) throw new ProtocolError(`bad sequence number in ${preview(line)}`);
  if (verb === undefined || !/^[A-Z]+$/.test(verb)) throw new ProtocolError(`bad verb in ${preview(line)}`);
  return { seq: Number(seqText), verb, args: rawArgs.map(decodeArg) };
}

const preview = (line: string): string => JSON.stringify(line.length > 80 ? `${line.slice(0, 80)}...` : line);

/** Numbers frames for one outgoing stream. */
export class FrameWriter {
  private seq = 0;
  encode(verb: string, args: readonly string[] = []): string {
    this.seq += 1;
    return encodeFrame({ seq: this.seq, verb, args });
  }
}

export type Received =
  | { readonly ok: true; readonly frame: Frame; readonly missed: number }
  | { readonly ok: false; readonly error: ProtocolError };

/**
 * Splits an incoming byte stream into frames and checks their order.
 * A malformed line is reported and skipped; it does not advance the
 * sequence. A frame whose number is not the next one is still returned, with
 * `missed` set to how many frames were skipped (negative for a replay, which
 * the caller must drop).
 */
export class FrameReceiver {
  /** One way to split bounded lines (lines.ts): a line longer than a frame comes out once, cut, and is refused. */
  private readonly lines = new LineSplitter(MAX_FRAME_BYTES);
  private expected = 1;

  /** Feed raw bytes (decoded as latin1 so that every byte maps to one char). */
  push(chunk: string): Received[] {
    return this.lines
      .push(chunk)
      .map((line): Received => (line.cut ? { ok: false, error: new ProtocolError(`frame too long (over ${MAX_FRAME_BYTES} bytes)`) } : this.accept(line.text)));
  }

  private accept(line: string): Received {
    try {
      const frame = decodeFrame(line);
      const missed = frame.seq - this.expected;
      if (missed >= 0) this.expected = frame.seq + 1;
      return { ok: true, frame, missed };
    } catch (error) {
      if (error instanceof ProtocolError) return { ok: false, error };
      throw error;
    }
  }
}
