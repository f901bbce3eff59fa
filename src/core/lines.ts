/**
 * Lines from a process psync does not fully trust (a side's stdout and
 * stderr, rsync's output), in bounded memory and linear time.
 *
 * A stream that never sends a newline must not make psync hold it all, nor
 * rescan what it holds on every chunk (joining and re-splitting the whole
 * pending text each time is quadratic: a gigabyte without a newline took
 * minutes of CPU and kept the brain from answering SIGTERM). A line longer
 * than `maxChars` comes out once, cut to `maxChars`, with `cut` set; the rest
 * of it is dropped up to its newline. At most `maxChars` are held between
 * chunks.
 */

export interface Line {
  readonly text: string;
  /** The line was longer than the limit: `text` is its first `maxChars` characters. */
  readonly cut: boolean;
}

export class LineSplitter {
  private pending = '';
  /** Inside a line already given out cut: drop everything up to its newline. */
  private discarding = false;

  constructor(readonly maxChars: number) {}

  /** Feed one chunk (decoded by the caller); returns the lines it completed, in order. */
  push(chunk: string): Line[] {
    const out: Line[] = [];
    let start = 0;
    for (let newline = chunk.indexOf('\n'); newline >= 0; newline = chunk.indexOf('\n', start)) {
      const piece = chunk.slice(start, newline);
      start = newline + 1;
      if (this.discarding) this.discarding = false;
      else out.push(this.complete(piece));
      this.pending = '';
    }
    if (this.discarding || start === chunk.length) return out;
    const tail = chunk.slice(start);
    if (this.pending.length + tail.length > this.maxChars) {
      out.push(this.complete(tail));
      this.pending = '';
      this.discarding = true;
    } else {
      this.pending += tail;
    }
    return out;
  }

  /** The stream ended: its last line, when it had no newline. */
  end(): Line[] {
    const last = this.discarding || this.pending === '' ? [] : [{ text: this.pending, cut: false }];
    this.pending = '';
    this.discarding = false;
    return last;
  }

  private complete(piece: string): Line {
    const room = this.maxChars - this.pending.length;
    return piece.length > room ? { text: this.pending + piece.slice(0, room), cut: true } : { text: this.pending + piece, cut: false };
  }
}
