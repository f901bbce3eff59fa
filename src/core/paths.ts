/**
 * Root-relative paths: the lossless byte codec and the path guard.
 *
 * File names on Linux are bytes, not text. psync keeps them as JS strings
 * decoded from UTF-8 with the "surrogate escape" convention (as Python's
 * `surrogateescape`): every byte that is not part of a valid UTF-8 sequence
 * becomes the lone surrogate U+DC80+byte. `pathToBytes(bytesToPath(b))`
 * gives back `b` exactly, so a non-UTF-8 name survives the wire, the helper
 * and rsync's NUL-separated file list byte for byte.
 */

import { SafetyError } from './errors.js';

const ESCAPE_BASE = 0xdc00;

/** Decode bytes as UTF-8, escaping each invalid byte as U+DC80..U+DCFF. */
export function bytesToPath(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const b0 = bytes[i]!;
    if (b0 < 0x80) {
      out += String.fromCharCode(b0);
      i += 1;
      continue;
    }
    const length = b0 >= 0xc2 && b0 <= 0xdf ? 2 : b0 >= 0xe0 && b0 <= 0xef ? 3 : b0 >= 0xf0 && b0 <= 0xf4 ? 4 : 0;
    const cp = length === 0 ? -1 : decodeSequence(bytes, i, length);
    if (cp < 0) {
      out += String.fromCharCode(ESCAPE_BASE + b0);
      i += 1;
    } else {
      out += String.fromCodePoint(cp);
      i += length;
    }
  }
  return out;
}

/** Returns the code point of a well-formed UTF-8 sequence, or -1. */
function decodeSequence(bytes: Uint8Array, start: number, length: number): number {
  if (start + length > bytes.length) return -1;
  const b0 = bytes[start]!;
  let cp = b0 & (0xff >> (length + 1));
  for (let k = 1; k < length; k++) {
    const b = bytes[start + k]!;
    if ((b & 0xc0) !== 0x80) return -1;
    cp = (cp << 6) | (b & 0x3f);
  }
  const minimum = length === 2 ? 0x80 : length === 3 ? 0x800 : 0x10000;
  if (cp < minimum || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  return cp;
}

/** Encode a path string back to the exact bytes it was decoded from. */
export function pathToBytes(path: string): Uint8Array {
  const out: number[] = [];
  for (const ch of path) {
    const cp = ch.codePointAt(0)!;
    if (cp >= 0xdc80 && cp <= 0xdcff) out.push(cp - ESCAPE_BASE);
    else if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else
      out.push(
        0xf0 | (cp >> 18),
        0x80 | ((cp >> 12) & 0x3f),
        0x80 | ((cp >> 6) & 0x3f),
        0x80 | (cp & 0x3f),
      );
  }
  return Uint8Array.from(out);
}

/** True when the path holds a byte that is not valid UTF-8 (an escaped surrogate). */
export const hasEscapedBytes = (path: string): boolean => /[\udc80-\udcff]/.test(path);

/**
 * The path guard. Every path that arrives from a filter, the wire or the
 * other side passes here before a shell joins it onto a root. It accepts a
 * non-empty relative POSIX path made of real components and throws a
 * SafetyError for anything that could leave the root or name the root:
 * absolute paths, `..` or `.` components, empty components, NUL bytes.
 */
export function guardPath(path: string): string {
  if (path === '') throw new SafetyError('refusing the root itself as a path');
  if (path.includes('\0')) throw new SafetyError(`refusing a path with a NUL byte: ${JSON.stringify(path)}`);
  if (path.startsWith('/')) throw new SafetyError(`refusing an absolute path: ${JSON.stringify(path)}`);
  for (const part of path.split('/')) {
    if (part === '' || part === '.' || part === '..') {
      throw new SafetyError(`refusing a path that could leave the root: ${JSON.stringify(path)}`);
    }
  }
  return path;
}

export const isValidPath = (path: string): boolean => {
  try {
    guardPath(path);
    return true;
  } catch {
    return false;
  }
};

export const joinPath = (dir: string, name: string): string => (dir === '' ? name : `${dir}/${name}`);

export const parentOf = (path: string): string => {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
};

export const baseName = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

/** True when `path` is `dir` itself or lies below it ("" is the root, above everything). */
export const isSameOrUnder = (path: string, dir: string): boolean =>
  dir === '' || path === dir || path.startsWith(`${dir}/`);

/** Rewrite `path` from below `from` to below `to` (it must be `from` or under it). */
export const rebase = (path: string, from: string, to: string): string =>
  path === from ? to : joinPath(to, from === '' ? path : path.slice(from.length + 1));

/** Ancestors of a path, nearest first, not including the root: "a/b/c" -> ["a/b", "a"]. */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  for (let p = parentOf(path); p !== ''; p = parentOf(p)) out.push(p);
  return out;
}

export const depthOf = (path: string): number => (path === '' ? 0 : path.split('/').length);
