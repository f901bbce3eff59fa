import { describe, expect, test } from 'vitest';
import { ProtocolError } from '../../src/core/errors.js';
import {
  FrameReceiver,
  FrameWriter,
  MAX_FRAME_BYTES,
  crc32,
  decodeArg,
  decodeFrame,
  encodeArg,
  encodeFrame,
  type Received,
} from '../../src/core/frame.js';
import { described } from '../support/table.js';


/** A line with a correct checksum for `body`, so only the part under test is wrong. */
const signed = (body: string): string => `${body} ${crc32(body).toString(16).padStart(8, '0')}`;
const line = (seq: number, verb: string, args: string[] = []): string => encodeFrame({ seq, verb, args });
const summary = (received: Received[]): Array<string> =>
  received.map((r) => (r.ok ? `${r.frame.seq} ${r.frame.verb} missed=${r.missed}` : 'error'));

describe('crc32', () => {
  test.each(described<{ description: string; text: string; expected: number }>([
    { description: 'empty string', text: '', expected: 0 },
    { description: 'the standard check value', text: '123456789', expected: 0xcbf43926 },
  ]))('%s', (_description, { text, expected }) => {
    expect(crc32(text)).toBe(expected);
  });
});

describe('encodeFrame / decodeFrame round trip', () => {
  test.each(described<{ description: string; verb: string; args: string[]; raw?: string[] }>([
    { description: 'no arguments', verb: 'READY', args: [] },
    { description: 'a plain path', verb: 'RSYNC', args: ['a/b.txt'], raw: ['a/b.txt'] },
    { description: 'spaces', verb: 'RSYNC', args: ['my file.txt'], raw: ['my%20file.txt'] },
    { description: 'a newline', verb: 'RSYNC', args: ['a\nb'], raw: ['a%0Ab'] },
    { description: 'a carriage return', verb: 'RSYNC', args: ['a\rb'], raw: ['a%0Db'] },
    { description: 'a percent sign', verb: 'RSYNC', args: ['100%'], raw: ['100%25'] },
    { description: 'a lone percent sign is not the empty argument', verb: 'RSYNC', args: ['%'], raw: ['%25'] },
    { description: 'a tab', verb: 'RSYNC', args: ['a\tb'], raw: ['a%09b'] },
    { description: 'colons and other raw punctuation', verb: 'RSYNC', args: ['a:b@c+d=e,f~g_h.i'], raw: ['a:b@c+d=e,f~g_h.i'] },
    { description: 'a leading dash', verb: 'RSYNC', args: ['-rf', '--delete'], raw: ['-rf', '--delete'] },
    { description: 'an empty argument', verb: 'WARN', args: [''], raw: ['%'] },
    { description: 'empty arguments among others', verb: 'FAIL', args: ['', 'x', ''], raw: ['%', 'x', '%'] },
    { description: 'UTF-8 is percent-encoded byte by byte', verb: 'RSYNC', args: ['é'], raw: ['%C3%A9'] },
    { description: 'an emoji', verb: 'RSYNC', args: ['\u{1f600}'], raw: ['%F0%9F%98%80'] },
    { description: 'non-UTF-8 bytes (escaped surrogates)', verb: 'RSYNC', args: ['a\udcffb\udc80'], raw: ['a%FFb%80'] },
    { description: 'a NUL byte', verb: 'WARN', args: ['a\0b'], raw: ['a%00b'] },
    { description: 'shell metacharacters', verb: 'RSYNC', args: ['$(rm -rf ~);`x`|&>'] },
    { description: 'many arguments', verb: 'MOVE', args: ['a b', 'c\nd', 'file', '1', '2', '3.5', '644'] },
    { description: 'a JSON config', verb: 'CONFIG', args: ['{"root":"/tmp/a b","excludes":["*.o"]}'] },
  ]))('%s', (_description, { verb, args, raw }) => {
    const text = encodeFrame({ seq: 7, verb, args });
    expect(text.endsWith('\n')).toBe(true);
    const body = text.slice(0, -1);
    expect(body).toMatch(/^[\x21-\x7e]+( [\x21-\x7e]+)*$/); // printable ASCII, single spaces, one line
    const fields = body.split(' ');
    expect(fields).toHaveLength(args.length + 3);
    if (raw !== undefined) expect(fields.slice(2, -1)).toEqual(raw);
    expect(decodeFrame(body)).toEqual({ seq: 7, verb, args });
  });

  test('FrameWriter numbers frames from 1 by 1', () => {
    const writer = new FrameWriter();
    const seqs = [writer.encode('HEARTBEAT', ['1']), writer.encode('HEARTBEAT', ['2']), writer.encode('READY')].map(
      (text) => decodeFrame(text.slice(0, -1)).seq,
    );
    expect(seqs).toEqual([1, 2, 3]);
  });

  test.each(described<{ description: string; verb: string }>([
    { description: 'lower-case verb', verb: 'rsync' },
    { description: 'empty verb', verb: '' },
    { description: 'verb with a space', verb: 'RS YNC' },
    { description: 'verb with a digit', verb: 'RSYNC2' },
  ]))('encodeFrame refuses a %s', (_description, { verb }) => {
    expect(() => encodeFrame({ seq: 1, verb, args: [] })).toThrow(ProtocolError);
  });
});

describe('decodeArg', () => {
  test.each(described<{ description: string; text: string; expected: string }>([
    { description: 'lower-case hex escapes are read too', text: '%c3%a9', expected: 'é' },
    { description: 'raw characters pass', text: 'a/b-c', expected: 'a/b-c' },
  ]))('accepts %s', (_description, { text, expected }) => {
    expect(decodeArg(text)).toBe(expected);
    expect(decodeArg(encodeArg(expected))).toBe(expected);
  });

  test.each(described<{ description: string; text: string }>([
    { description: 'a percent sign at the end', text: 'a%' },
    { description: 'one hex digit', text: '%4' },
    { description: 'non-hex digits', text: '%G1' },
    { description: 'a double percent', text: '%%' },
    { description: 'an escaped escape marker', text: '%%41' },
    { description: 'a raw tab', text: 'a\tb' },
    { description: 'a raw Latin-1 byte', text: 'caf\u00e9' },
    { description: 'a raw quote', text: 'a"b' },
    { description: 'a raw percent-free shell character', text: 'a;b' },
  ]))('rejects %s', (_description, { text }) => {
    expect(() => decodeArg(text)).toThrow(ProtocolError);
  });
});

describe('decodeFrame rejects', () => {
  const good = line(3, 'RSYNC', ['a b']).slice(0, -1);
  const longArg = 'a'.repeat(MAX_FRAME_BYTES);
  // A frame whose checksum holds a hex letter, so that upper-casing it changes it.
  const withLetter = ['a', 'b', 'c', 'd', 'e'].map((a) => line(3, 'RSYNC', [a]).slice(0, -1)).find((l) => /[a-f]/.test(l.slice(-8)))!;
  const upperCrc = withLetter.slice(0, -8) + withLetter.slice(-8).toUpperCase();

  test.each(described<{ description: string; text: string }>([
    { description: 'an empty line', text: '' },
    { description: 'a bashrc banner', text: 'Welcome to Ubuntu 22.04 LTS' },
    { description: 'a bad checksum', text: good.replace(/.$/, (c) => (c === '0' ? '1' : '0')) },
    { description: 'a body changed under its checksum', text: good.replace('3 RSYNC', '4 RSYNC') },
    { description: 'a missing checksum', text: '3 RSYNC a%20b' },
    { description: 'only a sequence number', text: '3' },
    { description: 'an upper-case checksum', text: upperCrc },
    { description: 'a short checksum', text: good.slice(0, -1) },
    { description: 'a carriage return after the checksum', text: `${good}\r` },
    { description: 'a lower-case verb', text: signed('3 rsync a') },
    { description: 'a mixed-case verb', text: signed('3 Rsync a') },
    { description: 'a missing verb', text: signed('3') },
    { description: 'sequence number zero', text: signed('0 READY') },
    { description: 'a negative sequence number', text: signed('-1 READY') },
    { description: 'a sequence number with a leading zero', text: signed('01 READY') },
    { description: 'a non-numeric sequence number', text: signed('x READY') },
    { description: 'a missing sequence number', text: signed('READY') },
    { description: 'a bad escape in an argument', text: signed('3 RSYNC a%ZZ') },
    { description: 'a truncated escape in an argument', text: signed('3 RSYNC a%4') },
    { description: 'an unescaped tab in an argument', text: signed('3 RSYNC a\tb') },
    { description: 'an unescaped non-ASCII byte in an argument', text: signed('3 RSYNC caf\u00e9') },
    { description: 'two spaces in a row (an empty argument must be a lone %)', text: signed('3 RSYNC a  b') },
    { description: 'a leading space', text: signed(' 3 READY') },
    { description: `a line longer than MAX_FRAME_BYTES (${MAX_FRAME_BYTES})`, text: signed(`1 WARN ${longArg}`) },
  ]))('%s', (_description, { text }) => {
    expect(() => decodeFrame(text)).toThrow(ProtocolError);
  });

  test('a frame of exactly MAX_FRAME_BYTES is accepted', () => {
    const body = `1 WARN ${'a'.repeat(MAX_FRAME_BYTES - 16)}`;
    const text = signed(body);
    expect(text).toHaveLength(MAX_FRAME_BYTES);
    expect(decodeFrame(text).args[0]).toHaveLength(MAX_FRAME_BYTES - 16);
  });

  test('an unescaped space in an argument splits it, so the argument count shows it', () => {
    expect(decodeFrame(signed('3 RSYNC my file')).args).toEqual(['my', 'file']);
  });
});

describe('FrameReceiver', () => {
  const f1 = line(1, 'HELLO', ['1', 'filter', '42']);
  const f2 = line(2, 'READY', ['10']);
  const f3 = line(3, 'HEARTBEAT', ['1']);
  const f4 = line(4, 'HEARTBEAT', ['2']);
  const longLine = 'x'.repeat(MAX_FRAME_BYTES + 10);
  const maxFrame = `${signed(`1 WARN ${'a'.repeat(MAX_FRAME_BYTES - 16)}`)}\n`;

  test.each(described<{ description: string; chunks: string[]; expected: string[] }>([
    { description: 'one chunk, two frames', chunks: [f1 + f2], expected: ['1 HELLO missed=0', '2 READY missed=0'] },
    { description: 'nothing until the newline', chunks: [f1.slice(0, -1)], expected: [] },
    { description: 'a frame split in the middle', chunks: [f1.slice(0, 5), f1.slice(5)], expected: ['1 HELLO missed=0'] },
    {
      description: 'a frame split right before its newline',
      chunks: [f1.slice(0, -1), '\n', f2],
      expected: ['1 HELLO missed=0', '2 READY missed=0'],
    },
    {
      description: 'a frame split byte by byte',
      chunks: [...f1, ...f2],
      expected: ['1 HELLO missed=0', '2 READY missed=0'],
    },
    {
      description: 'a frame end and the next frame start in one chunk',
      chunks: [f1.slice(0, 10), f1.slice(10) + f2.slice(0, 4), f2.slice(4)],
      expected: ['1 HELLO missed=0', '2 READY missed=0'],
    },
    {
      description: 'a bashrc banner before the first frame is rejected without advancing seq',
      chunks: ['Welcome to host!\n', f1, f2],
      expected: ['error', '1 HELLO missed=0', '2 READY missed=0'],
    },
    {
      description: 'garbage between frames does not advance seq',
      chunks: [f1, 'motd: be nice\n\n', f2],
      expected: ['1 HELLO missed=0', 'error', 'error', '2 READY missed=0'],
    },
    {
      description: 'a corrupted frame is reported and its number is still expected',
      chunks: [f1, f2.replace('READY', 'REDDY'), f2],
      expected: ['1 HELLO missed=0', 'error', '2 READY missed=0'],
    },
    { description: 'a gap is reported as missed frames', chunks: [f1, f4], expected: ['1 HELLO missed=0', '4 HEARTBEAT missed=2'] },
    {
      description: 'after a gap the count goes on from the frame received',
      chunks: [f1, f3, f4],
      expected: ['1 HELLO missed=0', '3 HEARTBEAT missed=1', '4 HEARTBEAT missed=0'],
    },
    {
      description: 'a replay is negative missed and does not move the count back',
      chunks: [f1, f2, f3, f2, f4],
      expected: ['1 HELLO missed=0', '2 READY missed=0', '3 HEARTBEAT missed=0', '2 READY missed=-2', '4 HEARTBEAT missed=0'],
    },
    {
      description: 'the same frame twice is a replay',
      chunks: [f1, f1, f2],
      expected: ['1 HELLO missed=0', '1 HELLO missed=-1', '2 READY missed=0'],
    },
    {
      description: 'an over-long line in one chunk is rejected, then the stream resynchronises',
      chunks: [`${longLine}\n${f1}`],
      expected: ['error', '1 HELLO missed=0'],
    },
    {
      description: 'an over-long line arriving in pieces is rejected once and discarded up to its newline',
      chunks: [f1, longLine, 'x'.repeat(1000), longLine, `still the long line ${f3}`, f2],
      expected: ['1 HELLO missed=0', 'error', '2 READY missed=0'],
    },
    {
      description: 'an over-long line ending exactly at a chunk end is discarded up to the newline',
      chunks: [longLine, `\n${f1}`],
      expected: ['error', '1 HELLO missed=0'],
    },
    {
      description: 'a frame of exactly MAX_FRAME_BYTES is kept waiting for its newline',
      chunks: [maxFrame.slice(0, -1), '\n', f2],
      expected: ['1 WARN missed=0', '2 READY missed=0'],
    },
  ]))('%s', (_description, { chunks, expected }) => {
    const receiver = new FrameReceiver();
    const received = chunks.flatMap((chunk) => receiver.push(chunk));
    expect(summary(received)).toEqual(expected);
    for (const r of received) if (!r.ok) expect(r.error).toBeInstanceOf(ProtocolError);
  });

  test('frames come back with their arguments decoded', () => {
    const receiver = new FrameReceiver();
    const [first] = receiver.push(line(1, 'RSYNC', ['a b\nc', '\udcff']));
    expect(first).toEqual({ ok: true, frame: { seq: 1, verb: 'RSYNC', args: ['a b\nc', '\udcff'] }, missed: 0 });
  });

  test('a line longer than MAX_FRAME_BYTES in one chunk is rejected as such', () => {
    const receiver = new FrameReceiver();
    const [first] = receiver.push(`${signed(`1 WARN ${'a'.repeat(MAX_FRAME_BYTES)}`)}\n`);
    expect(first?.ok).toBe(false);
    expect(first !== undefined && !first.ok && first.error.message).toMatch(/too long/);
  });
});
