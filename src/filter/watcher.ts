/**
 * Directory watches for the filter, behind one small interface with two
 * backends:
 *
 * - `inotify`: the native addon (native/inotify.c, built by `npm install`
 *   into build/Release). It hands over the raw bytes the kernel returns and
 *   this module parses `struct inotify_event`, so a kernel queue overflow
 *   (IN_Q_OVERFLOW) reaches the filter, which rescans.
 * - `fs.watch`: the fallback when the addon is not built (no compiler at
 *   install time) or `PSYNC_WATCHER=fs.watch`. libuv drops IN_Q_OVERFLOW,
 *   so an overflow is invisible there: only the periodic rescan finds what
 *   was lost.
 *
 * A watch reports a changed child by name, or `null` for the directory
 * itself (its attributes, or it was deleted or moved). `onError` means the
 * watch is dead (the directory was unmounted, or the watcher failed) while
 * the directory may still be there: the caller rescans it and watches again.
 */

import { watch } from 'node:fs';
import { endianness } from 'node:os';
import { loadAddon } from '../native.js';

export interface DirWatch {
  close(): void;
}

export interface WatchBackend {
  readonly kind: 'inotify' | 'fs.watch';
  /** Throws an error whose `code` is the errno name (ENOENT, ENOTDIR, ENOSPC for the watch limit...). */
  watchDir(path: Buffer, onEvent: (name: Buffer | null) => void, onError: () => void): DirWatch;
  close(): void;
}

/** The raw addon (native/inotify.c). */
export interface InotifyAddon {
  open(onData: (chunk: Buffer | null, error: string | undefined) => void): object;
  addWatch(handle: object, path: Buffer, mask: number): number;
  rmWatch(handle: object, wd: number): void;
  close(handle: object): void;
}

// <sys/inotify.h>
export const IN = {
  MODIFY: 0x2,
  ATTRIB: 0x4,
  CLOSE_WRITE: 0x8,
  MOVED_FROM: 0x40,
  MOVED_TO: 0x80,
  CREATE: 0x100,
  DELETE: 0x200,
  DELETE_SELF: 0x400,
  MOVE_SELF: 0x800,
  UNMOUNT: 0x2000,
  Q_OVERFLOW: 0x4000,
  IGNORED: 0x8000,
  ONLYDIR: 0x0100_0000,
  DONT_FOLLOW: 0x0200_0000,
  EXCL_UNLINK: 0x0400_0000,
  ISDIR: 0x4000_0000,
} as const;

/**
 * No IN_DONT_FOLLOW: the filter names a directory it holds open through the
 * file layer by its `/proc/self/fd/N` link, which must be followed to reach
 * that very directory (it cannot be redirected: it is bound to the open
 * descriptor, not to a path).
 */
export const DIR_MASK =
  IN.MODIFY | IN.ATTRIB | IN.CLOSE_WRITE | IN.MOVED_FROM | IN.MOVED_TO | IN.CREATE | IN.DELETE |
  IN.DELETE_SELF | IN.MOVE_SELF | IN.ONLYDIR | IN.EXCL_UNLINK;

const EVENT_HEADER_BYTES = 16; // int wd; uint32_t mask, cookie, len

export interface InotifyEvent {
  wd: number;
  mask: number;
  cookie: number;
  /** The child's name without the NUL padding; null for an event on the watched directory itself. */
  name: Buffer | null;
}

/** Parse the whole events of one read(2) on an inotify descriptor (host byte order). */
export function parseEvents(chunk: Buffer): InotifyEvent[] {
  const little = endianness() === 'LE';
  const events: InotifyEvent[] = [];
  let offset = 0;
  while (offset + EVENT_HEADER_BYTES <= chunk.length) {
    const wd = little ? chunk.readInt32LE(offset) : chunk.readInt32BE(offset);
    const u32 = (at: number): number => (little ? chunk.readUInt32LE(offset + at) : chunk.readUInt32BE(offset + at));
    const [mask, cookie, len] = [u32(4), u32(8), u32(12)];
    const start = offset + EVENT_HEADER_BYTES;
    let end = start + len;
    const nul = chunk.indexOf(0, start);
    if (nul !== -1 && nul < end) end = nul;
    events.push({ wd, mask, cookie, name: len === 0 ? null : Buffer.from(chunk.subarray(start, end)) });
    offset = start + len;
  }
  return events;
}

interface Subscriber {
  onEvent: (name: Buffer | null) => void;
  onError: () => void;
}

interface Watched {
  readonly subscribers: Set<Subscriber>;
  /** IN_DELETE_SELF seen: the IN_IGNORED that follows is the end of a deleted directory, not an error. */
  deleted: boolean;
}

/**
 * inotify gives the same wd to every watch of one inode, so a directory
 * watched twice (its old and new index node during a rename) shares a wd:
 * each watchDir() is a subscriber of it and the kernel watch is removed
 * with the last subscriber, so closing an old handle never kills a newer one.
 */
export class InotifyBackend implements WatchBackend {
  readonly kind = 'inotify';
  private readonly handle: object;
  private readonly watches = new Map<number, Watched>();
  private closed = false;

  constructor(
    private readonly addon: InotifyAddon,
    private readonly onOverflow: (reason: string) => void,
  ) {
    this.handle = addon.open((chunk, error) => this.onChunk(chunk, error));
  }

  watchDir(path: Buffer, onEvent: (name: Buffer | null) => void, onError: () => void): DirWatch {
    const wd = this.addon.addWatch(this.handle, path, DIR_MASK);
    let watched = this.watches.get(wd);
    if (watched === undefined) {
      watched = { subscribers: new Set(), deleted: false };
      this.watches.set(wd, watched);
    }
    const subscriber: Subscriber = { onEvent, onError };
    watched.subscribers.add(subscriber);
    const entry = watched;
    return { close: () => this.unsubscribe(wd, entry, subscriber) };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watches.clear();
    this.addon.close(this.handle);
  }

  private unsubscribe(wd: number, watched: Watched, subscriber: Subscriber): void {
    if (!watched.subscribers.delete(subscriber) || watched.subscribers.size > 0) return;
    if (this.watches.get(wd) !== watched) return; // the kernel already dropped it
    this.watches.delete(wd);
    if (!this.closed) this.addon.rmWatch(this.handle, wd);
  }

  private onChunk(chunk: Buffer | null, error: string | undefined): void {
    try {
      if (chunk === null) {
        // The reader thread stopped: no more events will come.
        this.onOverflow(`reading inotify events failed (${error ?? 'unknown error'}); events may be lost`);
        return;
      }
      for (const event of parseEvents(chunk)) this.dispatch(event);
    } catch (thrown) {
      // Called from native code: rethrow outside it, where it is an ordinary uncaught exception.
      setImmediate(() => {
        throw thrown;
      });
    }
  }

  private dispatch(event: InotifyEvent): void {
    if (this.closed) return;
    if (event.mask & IN.Q_OVERFLOW) {
      this.onOverflow('the kernel inotify event queue overflowed (fs.inotify.max_queued_events); events were dropped');
      return;
    }
    const watched = this.watches.get(event.wd);
    if (watched === undefined) return; // closed meanwhile
    if (event.mask & IN.IGNORED) {
      this.watches.delete(event.wd);
      const subscribers = [...watched.subscribers];
      watched.subscribers.clear();
      if (!watched.deleted) for (const s of subscribers) s.onError();
      return;
    }
    if (event.mask & IN.DELETE_SELF) watched.deleted = true;
    for (const s of [...watched.subscribers]) s.onEvent(event.name);
  }
}

/** libuv's inotify, one FSWatcher per directory; cannot see a queue overflow. */
export class FsWatchBackend implements WatchBackend {
  readonly kind = 'fs.watch';

  watchDir(path: Buffer, onEvent: (name: Buffer | null) => void, onError: () => void): DirWatch {
    const handle = watch(path, { encoding: 'buffer', persistent: true }, (_event, name) => onEvent(name));
    handle.on('error', () => {
      handle.close();
      onError();
    });
    return handle;
  }

  close(): void {}
}

/** The inotify addon, or an Error saying why it cannot be loaded. */
export function loadInotifyAddon(): InotifyAddon | Error {
  return loadAddon<InotifyAddon>('psync_inotify');
}

/**
 * The inotify backend when the addon loads, else fs.watch with `fallback`
 * saying why. `onOverflow` is called when events were lost (inotify only).
 */
export function openWatchBackend(onOverflow: (reason: string) => void): { backend: WatchBackend; fallback?: string } {
  if (process.env['PSYNC_WATCHER'] === 'fs.watch') return { backend: new FsWatchBackend(), fallback: 'PSYNC_WATCHER=fs.watch' };
  const addon = loadInotifyAddon();
  if (addon instanceof Error) return { backend: new FsWatchBackend(), fallback: `the inotify addon is not available (${firstLine(addon.message)})` };
  try {
    return { backend: new InotifyBackend(addon, onOverflow) };
  } catch (error) {
    return { backend: new FsWatchBackend(), fallback: `inotify could not be opened (${firstLine((error as Error).message)})` };
  }
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? text;
}
