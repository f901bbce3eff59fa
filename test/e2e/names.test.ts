/**
 * File names are bytes: psync over a real sshd carries awkward names both
 * ways, byte for byte (created, renamed, deleted), and the trees end
 * identical. Names are compared as the bytes readdir returns
 * (`{ encoding: 'buffer' }`): a string readdir would turn a non-UTF-8 name
 * into U+FFFD and hide a mangled copy.
 */

import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PsyncProcess, startRemotePair, waitFor, type RemotePair } from '../support/psync.js';
import { described } from '../support/table.js';

let pair: RemotePair;
let psync: PsyncProcess;
let left: string;
let right: string;

beforeAll(async () => {
  pair = await startRemotePair([]);
  ({ psync, left, right } = pair);
}, 60_000);

afterAll(async () => {
  expect(await pair?.stop()).toBe(0);
});

// ---------------------------------------------------------------------------
// Byte-exact trees

const SLASH = Buffer.from('/');
const bytesJoin = (...parts: Array<string | Buffer>): Buffer =>
  Buffer.concat(parts.flatMap((part, i) => [...(i === 0 ? [] : [SLASH]), typeof part === 'string' ? Buffer.from(part) : part]));
/** A name as the test shows it: JSON of its latin1 reading, so every byte is visible. */
const show = (name: Buffer): string => JSON.stringify(name.toString('latin1'));

/** The entry names of a directory, as bytes, sorted by bytes. */
async function namesIn(dir: Buffer): Promise<Buffer[]> {
  return (await readdir(dir, { encoding: 'buffer' })).sort(Buffer.compare);
}

/** Every entry below `root` keyed by its relative path's bytes (hex); `.psync` at the top is psync's own. */
async function snapshotBytes(root: Buffer): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = async (dir: Buffer, rel: Buffer | undefined): Promise<void> => {
    for (const name of await namesIn(dir)) {
      if (rel === undefined && name.toString('latin1') === '.psync') continue;
      const abs = bytesJoin(dir, name);
      const path = rel === undefined ? name : bytesJoin(rel, name);
      const info = await lstat(abs);
      const key = path.toString('hex');
      if (info.isDirectory()) {
        out.set(key, `dir ${(info.mode & 0o7777).toString(8)}`);
        await visit(abs, path);
      } else if (info.isSymbolicLink()) {
        out.set(key, `symlink ${(await readlink(abs, { encoding: 'buffer' })).toString('hex')}`);
      } else {
        const hash = createHash('sha1').update(await readFile(abs)).digest('hex');
        out.set(key, `file ${(info.mode & 0o7777).toString(8)} ${Math.floor(info.mtimeMs)} ${hash}`);
      }
    }
  };
  await visit(root, undefined);
  return out;
}

async function diffBytes(a: Buffer, b: Buffer): Promise<string[]> {
  const [x, y] = await Promise.all([snapshotBytes(a), snapshotBytes(b)]);
  const path = (hex: string): string => show(Buffer.from(hex, 'hex'));
  const problems: string[] = [];
  for (const [key, info] of x) {
    const other = y.get(key);
    if (other === undefined) problems.push(`only in ${show(a)}: ${path(key)}`);
    else if (other !== info) problems.push(`differs: ${path(key)} ${info} vs ${other}`);
  }
  for (const key of y.keys()) if (!x.has(key)) problems.push(`only in ${show(b)}: ${path(key)}`);
  return problems;
}

/** Wait until `sub` (a directory below both roots, or both roots themselves) is byte-identical on both sides. */
async function waitForSameBytes(sub?: string, deadlineMs = 20_000): Promise<void> {
  const [a, b] = sub === undefined ? [Buffer.from(left), Buffer.from(right)] : [bytesJoin(left, sub), bytesJoin(right, sub)];
  let problems: string[] = [];
  await waitFor(
    `byte-identical trees${sub === undefined ? '' : ` below ${sub}`}`,
    async () => {
      problems = await diffBytes(a, b);
      return problems.length === 0;
    },
    deadlineMs,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n${problems.slice(0, 20).join('\n')}\n${psync.log().slice(-4000)}`);
  });
}

/** Wait until `dir` on the target lists exactly `expected` (bytes). */
async function waitForNames(dir: Buffer, expected: readonly Buffer[], what: string): Promise<void> {
  const want = [...expected].sort(Buffer.compare).map(show);
  let got: string[] = [];
  await waitFor(what, async () => {
    got = (await namesIn(dir)).map(show);
    return JSON.stringify(got) === JSON.stringify(want);
  }).catch((error: Error) => {
    throw new Error(`${error.message}\nwant ${want.join(' ')}\ngot  ${got.join(' ')}\n${psync.log().slice(-4000)}`);
  });
}

// ---------------------------------------------------------------------------
// The names

const b = (text: string): Buffer => Buffer.from(text, 'utf8');
/** The renamed name: `.mv` appended, or replacing the end of a name that is already 255 bytes. */
const renamed = (name: Buffer): Buffer =>
  name.length + 3 > 255 ? Buffer.concat([name.subarray(0, 252), b('.mv')]) : Buffer.concat([name, b('.mv')]);


const ROWS = described<{ description: string; names: Buffer[] }>([
  { description: 'spaces', names: [b('with  two spaces '), b(' leading space')] },
  { description: 'a newline', names: [b('new\nline')] },
  { description: 'a tab', names: [b('tab\there')] },
  { description: 'a colon', names: [b('co:lon'), b('host:path')] },
  { description: 'a backslash', names: [b('back\\slash')] },
  { description: 'a leading dash: -rf', names: [b('-rf')] },
  { description: 'a leading dash: --help', names: [b('--help')] },
  { description: 'glob characters *?[', names: [b('*?['), b('[a-z]*')] },
  { description: 'quotes', names: [b(`it's "quoted"`), b('`backtick` $HOME')] },
  { description: 'a 255-byte name', names: [b('n'.repeat(255))] },
  { description: 'a 255-byte name of 2-byte characters', names: [b(`${'é'.repeat(127)}x`)] },
  { description: 'non-UTF-8 bytes', names: [Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe]), Buffer.from([0xc3, 0x28, 0x80, 0x2e, 0x74, 0x78, 0x74])] },
  { description: 'NFC é and NFD é as two files in one directory', names: [b('caf\u00e9'), b('cafe\u0301')] },
]);

describe.each(['leftToRight', 'rightToLeft'] as const)('%s', (direction) => {
  const src = (): string => (direction === 'leftToRight' ? left : right);
  const dst = (): string => (direction === 'leftToRight' ? right : left);

  test.each(ROWS)('%s: created, renamed, deleted byte for byte', async (_description, { names }) => {
    const dir = `${direction}-${ROWS.findIndex(([, row]) => row.names === names)}`;
    const srcDir = bytesJoin(src(), dir);
    const dstDir = bytesJoin(dst(), dir);
    await mkdir(srcDir);
    await waitFor(`${dir} to arrive`, () => lstat(dstDir).then((s) => s.isDirectory())).catch((error: Error) => {
      throw new Error(`${error.message}\n${psync.log().slice(-4000)}`);
    });

    // Create: each name arrives under its exact bytes, with its content.
    for (const [i, name] of names.entries()) await writeFile(bytesJoin(srcDir, name), `content ${i} of ${show(name)}\n`);
    await waitForNames(dstDir, names, `the names to arrive in ${dir}`);
    for (const name of names) {
      expect((await readFile(bytesJoin(dstDir, name))).equals(await readFile(bytesJoin(srcDir, name))), show(name)).toBe(true);
    }
    await waitForSameBytes(dir);

    // Rename: the target holds the new names (moved, same inode), none of the old.
    const inodes = await Promise.all(names.map(async (name) => (await lstat(bytesJoin(dstDir, name))).ino));
    for (const name of names) await rename(bytesJoin(srcDir, name), bytesJoin(srcDir, renamed(name)));
    await waitForNames(dstDir, names.map(renamed), `the renamed names in ${dir}`);
    const after = await Promise.all(names.map(async (name) => (await lstat(bytesJoin(dstDir, renamed(name)))).ino));
    expect(after, 'renamed on the target, not copied').toEqual(inodes);
    await waitForSameBytes(dir);

    // Delete: nothing left on either side.
    for (const name of names) await rm(bytesJoin(srcDir, renamed(name)));
    await waitForNames(dstDir, [], `the names to be deleted in ${dir}`);
    await rm(srcDir, { recursive: true });
    await waitFor(`${dir} to be deleted`, () => lstat(dstDir).then(() => false, () => true));
    expect((await psync.status())?.counters.failures, psync.log().slice(-4000)).toBe(0);
  });
});

// Each row compares its own directory, so that one row's failure does not fail the next rows;
// this one compares the whole trees.
test('everything at once, both sides, then the trees end identical', async () => {
  const all = ROWS.flatMap(([, row]) => row.names);
  await mkdir(join(left, 'all-left'));
  await mkdir(join(right, 'all-right'));
  for (const name of all) {
    await writeFile(bytesJoin(left, 'all-left', name), 'L');
    await writeFile(bytesJoin(right, 'all-right', name), 'R');
  }
  await waitForNames(bytesJoin(right, 'all-left'), all, 'every name left to right');
  await waitForNames(bytesJoin(left, 'all-right'), all, 'every name right to left');
  await waitForSameBytes();
  expect((await psync.status())?.counters.failures).toBe(0);
});
