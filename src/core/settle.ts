/**
 * The settle timer: a path is due once nothing has happened to it for
 * `settleMs`, so a file being written is sent once, when the writer is done;
 * a path that never goes quiet (a log appended to all the time) is due
 * anyway `maxDelayMs` after its first event, so it does not starve.
 */

interface Pending {
  readonly firstMs: number;
  lastMs: number;
}

export class Settler {
  private readonly pending = new Map<string, Pending>();

  /**
   * `groupMs`: paths falling due within this much of each other are taken
   * together, so the two halves of one rename (reported microseconds apart)
   * are decided in the same round and paired as a move.
   */
  constructor(
    readonly settleMs: number,
    readonly maxDelayMs: number,
    readonly groupMs = 0,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  /** Something happened to `path` at `now`. */
  touch(path: string, now: number): void {
    const entry = this.pending.get(path);
    if (entry === undefined) this.pending.set(path, { firstMs: now, lastMs: now });
    else entry.lastMs = Math.max(entry.lastMs, now);
  }

  private dueAt(entry: Pending): number {
    return Math.min(entry.lastMs + this.settleMs, entry.firstMs + this.maxDelayMs);
  }

  /** Take the paths that are due at `now` (or within `groupMs` of it), in the order they were first touched. */
  takeDue(now: number): string[] {
    const due: string[] = [];
    const next = this.nextDueAt();
    if (next === undefined || next > now) return due;
    for (const [path, entry] of this.pending) {
      if (this.dueAt(entry) <= now + this.groupMs) {
        due.push(path);
        this.pending.delete(path);
      }
    }
    return due;
  }

  /** When the next path falls due, or undefined when nothing is pending. */
  nextDueAt(): number | undefined {
    let next: number | undefined;
    for (const entry of this.pending.values()) {
      const at = this.dueAt(entry);
      if (next === undefined || at < next) next = at;
    }
    return next;
  }
}
