/**
 * Shared vocabulary of the pure core. Paths are root-relative POSIX strings
 * ("" is the root itself, never sent on the wire). A name that is not valid
 * UTF-8 is carried losslessly with the surrogate-escape convention of
 * `paths.ts`.
 */

export type Side = 'left' | 'right';
export type Direction = 'leftToRight' | 'rightToLeft';

export const otherSide = (side: Side): Side => (side === 'left' ? 'right' : 'left');
export const directionFrom = (source: Side): Direction =>
  source === 'left' ? 'leftToRight' : 'rightToLeft';
export const sourceOf = (direction: Direction): Side =>
  direction === 'leftToRight' ? 'left' : 'right';
export const targetOf = (direction: Direction): Side => otherSide(sourceOf(direction));

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

/** What psync knows of one tree entry: enough to pair moves and to recognise echoes. */
export interface Stat {
  readonly type: EntryType;
  readonly ino: number;
  readonly size: number;
  /** Modification time in milliseconds, with the sub-millisecond part the file system gives. */
  readonly mtimeMs: number;
  /** Permission bits only (mode & 0o7777). */
  readonly mode: number;
  /**
   * Birth time where the file system records it. An inode number can be
   * reused at once after a delete (ext4 does), so a rename is paired by
   * inode AND birth time: by the filter, and by the start-up reconcile
   * (sent in ENTRY frames and STAT replies, never in actions).
   */
  readonly birthMs?: number;
}

/**
 * An action a filter asks the brain to carry to the other side. `stat` is
 * what the source side looked like when the filter emitted the action: the
 * brain uses it to recognise the echo on the target, and the helper uses it
 * to check the target before it moves or deletes.
 */
export type Action =
  | {
      readonly kind: 'rsync';
      readonly path: string;
      readonly stat: Stat;
      /**
       * What the source held at `path` before this change, as it last
       * reported it: what the target should still hold if nobody changed it
       * there. Absent for a new entry. A target that holds something else
       * was changed on its own: a conflict (see conflict.ts).
       */
      readonly prev?: Stat;
    }
  | {
      readonly kind: 'move';
      readonly from: string;
      readonly to: string;
      readonly stat: Stat;
      /**
       * The file or symlink the move replaced at `to` on the source, as it
       * last reported it. A target holding something else there changed it
       * on its own: it is kept as a conflict copy, not overwritten.
       */
      readonly replaces?: Stat;
    }
  | { readonly kind: 'delete'; readonly path: string; readonly stat: Stat };

export type ActionKind = Action['kind'];
