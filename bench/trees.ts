/**
 * Data sets: trees of small files made quickly, copied with `cp -a` (so
 * both sides start identical to the nanosecond), counted and compared.
 */

import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';

const WRITE_CONCURRENCY = 64;

/** Deterministic size in [1024, 4096) for file number `i`. */
export function fileSize(i: number): number {
  return 1024 + ((i * 2654435761) % 3072);
}

export function fileName(i: number): string {
  return `f${String(i).padStart(7, '0')}.dat`;
}

export function dirName(i: number): string {
  return `d${String(i).padStart(4, '0')}`;
}

/** Content for one file: random bytes, so nothing compresses or dedups by accident. */
export function content(size: number): Buffer {
  return randomBytes(size);
}

/** Run `work(i)` for i in [0, count) with bounded concurrency. */
export async function forEachLimited(count: number, limit: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      await work(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

/** Where file `i` of `files` spread over `dirs` directories lives, relative to the set's root. */
export function spreadPath(i: number, dirs: number): string {
  return join(dirName(i % dirs), fileName(i));
}

/**
 * Write `files` files of 1-4 KB spread over `dirs` directories under `root`
 * (created). Returns the list of relative paths.
 */
export async function writeSpreadTree(root: string, files: number, dirs: number): Promise<string[]> {
  await mkdir(root, { recursive: true });
  await Promise.all(Array.from({ length: dirs }, (_, d) => mkdir(join(root, dirName(d)), { recursive: true })));
  const paths = Array.from({ length: files }, (_, i) => spreadPath(i, dirs));
  await forEachLimited(files, WRITE_CONCURRENCY, (i) => writeFile(join(root, paths[i] as string), content(fileSize(i))));
  return paths;
}

/** `cp -a SRC/. DST` (DST created): same contents, modes and nanosecond mtimes. */
export async function copyTree(src: string, dst: string): Promise<void> {
  await mkdir(dst, { recursive: true });
  await execa('cp', ['-a', '--', `${src}/.`, dst], { stdin: 'ignore' });
}

export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true, maxRetries: 3 });
}

/** Names in `dir` that are not hidden (rsync and unison write to hidden temp names first). */
export async function visibleNames(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((name) => !name.startsWith('.'));
  } catch {
    return [];
  }
}

/** How many visible files the given directories hold together. */
export async function countFiles(dirs: readonly string[]): Promise<number> {
  const counts = await Promise.all(dirs.map(async (dir) => (await visibleNames(dir)).length));
  return counts.reduce((a, b) => a + b, 0);
}

/** path -> "type size mtimeNs" for every entry (ignores `.psync/` and hidden temp names of the tools). */
export async function treeSignature(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = async (dir: string, rel: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      if (rel === '' && name === '.psync') continue;
      const abs = join(dir, name);
      const path = rel === '' ? name : `${rel}/${name}`;
      const info = await lstat(abs, { bigint: true });
      if (info.isDirectory()) {
        out.set(path, 'dir');
        await visit(abs, path);
      } else {
        // Milliseconds: unison keeps mtimes to the microsecond only, rsync to the nanosecond.
        out.set(path, `${info.isFile() ? 'file' : 'other'} ${info.size} ${info.mtimeNs / 1_000_000n}`);
      }
    }
  };
  await visit(root, '');
  return out;
}

/** Differences between two trees (by type, size and mtime), at most `limit` of them. */
export async function diffTrees(a: string, b: string, limit = 10): Promise<string[]> {
  const [left, right] = await Promise.all([treeSignature(a), treeSignature(b)]);
  const problems: string[] = [];
  for (const [path, sig] of left) {
    const other = right.get(path);
    if (other === undefined) problems.push(`only left: ${path}`);
    else if (other !== sig && sig !== 'dir') problems.push(`differs: ${path} (${sig} vs ${other})`);
    if (problems.length >= limit) return problems;
  }
  for (const path of right.keys()) {
    if (!left.has(path)) problems.push(`only right: ${path}`);
    if (problems.length >= limit) return problems;
  }
  return problems;
}

/**
 * Identity of some files in `dir`, by name: inode number plus ctime. The
 * ctime is there because a tool that deletes and re-creates files can get
 * the very same inode numbers back from the file system; a rename of the
 * parent directory leaves both untouched.
 */
export async function sampleInodes(dir: string, names: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  await Promise.all(
    names.map(async (name) => {
      const info = await lstat(join(dir, name), { bigint: true }).catch(() => undefined);
      if (info !== undefined) out.set(name, `${info.ino}:${info.ctimeNs}`);
    }),
  );
  return out;
}

/** Pick at most `count` evenly spaced items. */
export function evenlySpaced<T>(items: readonly T[], count: number): T[] {
  if (items.length <= count) return [...items];
  const step = items.length / count;
  return Array.from({ length: count }, (_, i) => items[Math.floor(i * step)] as T);
}
