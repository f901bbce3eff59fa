import { describe, expect, test } from 'vitest';
import { LineSplitter, type Line } from '../../src/core/lines.js';
import { described } from '../support/table.js';

const line = (text: string): Line => ({ text, cut: false });
const cut = (text: string): Line => ({ text, cut: true });

describe('LineSplitter', () => {
  test.each(described<{ description: string; max: number; chunks: string[]; lines: Line[]; atEnd?: Line[] }>([
    { description: 'lines in one chunk', max: 10, chunks: ['a\nbb\n'], lines: [line('a'), line('bb')] },
    { description: 'a line split over chunks', max: 10, chunks: ['ab', 'c', 'd\ne'], lines: [line('abcd')], atEnd: [line('e')] },
    { description: 'an empty line stays a line', max: 10, chunks: ['\n\n'], lines: [line(''), line('')] },
    { description: 'a line of exactly the limit is whole', max: 4, chunks: ['abcd\n'], lines: [line('abcd')] },
    { description: 'a longer line in one chunk is cut once', max: 4, chunks: ['abcdef\nxy\n'], lines: [cut('abcd'), line('xy')] },
    {
      description: 'a line that grows past the limit over chunks is cut once, the rest dropped up to its newline',
      max: 4,
      chunks: ['ab', 'cde', 'fgh', 'ijk\nok\n'],
      lines: [cut('abcd'), line('ok')],
    },
    { description: 'a cut line with no newline yet gives nothing more at the end', max: 3, chunks: ['abcdef', 'ghi'], lines: [cut('abc')], atEnd: [] },
    { description: 'the tail after a dropped rest is a new line', max: 3, chunks: ['abcdef', 'g\nhi'], lines: [cut('abc')], atEnd: [line('hi')] },
    { description: 'a chunk that ends with a newline leaves nothing pending', max: 5, chunks: ['abc\n'], lines: [line('abc')], atEnd: [] },
  ]))('%s', (_description, { max, chunks, lines, atEnd = [] }) => {
    const splitter = new LineSplitter(max);
    expect(chunks.flatMap((chunk) => splitter.push(chunk))).toEqual(lines);
    expect(splitter.end()).toEqual(atEnd);
  });

  test('a gigabyte-class stream without a newline is held in bounded memory and linear time', () => {
    const splitter = new LineSplitter(64 * 1024);
    const chunk = 'x'.repeat(64 * 1024);
    const started = performance.now();
    const out: Line[] = [];
    for (let i = 0; i < 4096; i++) out.push(...splitter.push(chunk)); // 256 MiB
    out.push(...splitter.push('\nafter\n'));
    expect(out.map((l) => [l.text.length, l.cut])).toEqual([[64 * 1024, true], [5, false]]);
    // Splitting the whole pending text on every chunk took minutes for this; linear takes well under a second.
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});
