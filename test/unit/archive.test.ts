/**
 * The archive of agreed state (src/state/archive.ts) on real SQLite files.
 * The lock test opens the archive from a second process through the built
 * module (dist/, which `npm test` builds first).
 */

import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { Archive, ArchiveLockedError, archiveFile, defaultStateDir, lockHoldersIn, pairId, type Agreed, type ArchiveWriter } from '../../src/state/archive.js';
import { described } from '../support/table.js';
import { tempDir } from '../support/tmp.js';

const BUILT = new URL('../../dist/src/state/archive.js', import.meta.url);

const entry = (ino: number, more: Partial<Agreed> = {}): Agreed => ({
  type: 'file',
  size: ino,
  mtimeMs: 1_700_000_000_000 + ino,
  mode: 0o644,
  left: { ino },
  right: { ino: ino + 1000 },
  ...more,
});

/** A new archive file in a fresh temp dir; closed after `fn`. */
function withArchive(fn: (archive: Archive, file: string) => void): void {
  const file = join(tempDir('psync-archive-'), 'pair.sqlite');
  const archive = Archive.open(file);
  try {
    fn(archive, file);
  } finally {
    archive.close();
  }
}

const put = (archive: Archive, paths: readonly string[]): void =>
  archive.transaction((w) => paths.forEach((path, i) => w.put(path, entry(i + 1))));

/** The archive's paths, each with the inode its entry was put with (entry(i)'s left.ino), sorted by path. */
const contents = (archive: Archive): Array<[string, number]> =>
  [...archive.all()].map(([path, e]): [string, number] => [path, e.left.ino]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

describe('round trip', () => {
  test.each(described<{ description: string; path: string; entry: Agreed }>([
    {
      description: 'a file with every field, sub-millisecond mtime and birth times',
      path: 'd/f.txt',
      entry: {
        type: 'file',
        size: 2 ** 40 + 3,
        mtimeMs: 1_700_000_000_123.456_7,
        mode: 0o4755,
        hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
        left: { ino: 2 ** 50 + 1, birthMs: 1_600_000_000_000.25 },
        right: { ino: 77, birthMs: 1_650_000_000_000.5 },
      },
    },
    { description: 'no hash, no birth times, inode unknown on the right', path: 'x', entry: { type: 'file', size: 0, mtimeMs: 0.5, mode: 0o600, left: { ino: 5 }, right: { ino: 0 } } },
    { description: 'a directory', path: 'd', entry: { type: 'dir', size: 4096, mtimeMs: 1e12, mode: 0o2775, left: { ino: 9, birthMs: 1 }, right: { ino: 10 } } },
    { description: 'a symlink with a hash', path: 'l', entry: { type: 'symlink', size: 7, mtimeMs: 2, mode: 0o777, hash: 'ab', left: { ino: 3 }, right: { ino: 4, birthMs: 8 } } },
    { description: 'a name with a lone surrogate (a byte that is not UTF-8)', path: 'caf\udce9/\udcff\udc80', entry: entry(1) },
    { description: 'a name with a newline', path: 'a\nb/c\n', entry: entry(2) },
    { description: 'a name starting with a byte order mark', path: '\ufeffbom', entry: entry(3) },
    { description: 'a name with 4-byte UTF-8 and SQL wildcards', path: '\u{1f600} 100%_x', entry: entry(4) },
  ]))('%s', (_, row) => {
    withArchive((archive) => {
      archive.transaction((w) => w.put(row.path, row.entry));
      expect(archive.get(row.path)).toStrictEqual(row.entry);
      expect(archive.all()).toStrictEqual(new Map([[row.path, row.entry]]));
      expect(archive.size).toBe(1);
    });
  });

  test('the path is stored as its bytes, not as text', () => {
    const file = join(tempDir('psync-archive-'), 'pair.sqlite');
    const archive = Archive.open(file);
    put(archive, ['caf\udce9']);
    archive.close();
    const db = new Database(file, { readonly: true });
    try {
      expect(db.prepare('SELECT typeof(path) AS t, hex(path) AS h FROM entries').get()).toEqual({ t: 'blob', h: '636166E9' });
    } finally {
      db.close();
    }
  });

  test('get of a missing path is undefined; put replaces; size counts', () => {
    withArchive((archive) => {
      expect(archive.get('a')).toBeUndefined();
      expect(archive.size).toBe(0);
      put(archive, ['a', 'b']);
      archive.transaction((w) => w.put('a', entry(9)));
      expect(archive.get('a')).toStrictEqual(entry(9));
      expect(archive.size).toBe(2);
    });
  });
});

// A holds descendants; the rest only share its name's first bytes ('0' is the byte after '/').
const A_TREE = ['a', 'a/x', 'a/y', 'a/y/z', 'a/\udcff'];
const SIBLINGS = ['a b', 'a b/x', 'a.txt', 'a-', 'a0', 'a0/x', 'ab', 'ab/x', 'b', '\udcff'];

describe('delete, deleteTree, moveTree, clear', () => {
  test.each(described<{ description: string; paths: string[]; write: (w: ArchiveWriter) => void; expected: string[] }>([
    { description: 'delete removes that path only, not its descendants', paths: [...A_TREE, ...SIBLINGS], write: (w) => w.delete('a'), expected: [...A_TREE.slice(1), ...SIBLINGS] },
    { description: 'deleteTree removes the path and everything below, no sibling sharing a prefix', paths: [...A_TREE, ...SIBLINGS], write: (w) => w.deleteTree('a'), expected: SIBLINGS },
    { description: 'deleteTree of a path without an entry removes its descendants', paths: ['d/x', 'd/y/z', 'd0', 'd.txt'], write: (w) => w.deleteTree('d'), expected: ['d0', 'd.txt'] },
    { description: 'deleteTree of a deeper path', paths: ['a/y', 'a/y/z', 'a/yz', 'a/y.txt', 'a/x'], write: (w) => w.deleteTree('a/y'), expected: ['a/yz', 'a/y.txt', 'a/x'] },
    { description: 'deleteTree of a name that is not UTF-8', paths: ['\udcff', '\udcff/x', '\udcff0', '\udcfe/x'], write: (w) => w.deleteTree('\udcff'), expected: ['\udcff0', '\udcfe/x'] },
    { description: 'deleteTree of the root empties the archive', paths: ['a', 'b/c'], write: (w) => w.deleteTree(''), expected: [] },
    { description: 'clear empties the archive', paths: [...A_TREE, ...SIBLINGS], write: (w) => w.clear(), expected: [] },
  ]))('%s', (_, row) => {
    withArchive((archive) => {
      put(archive, row.paths);
      archive.transaction(row.write);
      expect(contents(archive).map(([path]) => path)).toEqual([...row.expected].sort());
    });
  });

  test.each(described<{ description: string; paths: string[]; from: string; to: string; expected: Array<[string, string]> }>([
    {
      description: 'moveTree renames the path and its descendants, no sibling sharing a prefix',
      paths: [...A_TREE, ...SIBLINGS],
      from: 'a',
      to: 'c',
      expected: [['a', 'c'], ['a/x', 'c/x'], ['a/y', 'c/y'], ['a/y/z', 'c/y/z'], ['a/\udcff', 'c/\udcff'], ...SIBLINGS.map((p): [string, string] => [p, p])],
    },
    {
      description: 'moveTree onto an existing subtree: what was at or below the target goes first, its siblings stay',
      paths: ['a', 'a/x', 'c', 'c/old', 'c/x', 'c/x/deep', 'c0', 'c.txt', 'c b/x'],
      from: 'a',
      to: 'c',
      expected: [['a', 'c'], ['a/x', 'c/x'], ['c0', 'c0'], ['c.txt', 'c.txt'], ['c b/x', 'c b/x']],
    },
    {
      description: 'moveTree to a deeper and longer name',
      paths: ['a', 'a/x', 'ab'],
      from: 'a',
      to: 'ab/new name\nx',
      expected: [['a', 'ab/new name\nx'], ['a/x', 'ab/new name\nx/x'], ['ab', 'ab']],
    },
    {
      description: 'moveTree up to a shorter name',
      paths: ['deep/er/a', 'deep/er/a/x', 'deep/er/ab'],
      from: 'deep/er/a',
      to: 'b',
      expected: [['deep/er/a', 'b'], ['deep/er/a/x', 'b/x'], ['deep/er/ab', 'deep/er/ab']],
    },
    {
      description: 'moveTree keeps bytes that are not UTF-8 in both names',
      paths: ['d\udcff', 'd\udcff/\udc80x', 'd\udcff0'],
      from: 'd\udcff',
      to: '\udcfee',
      expected: [['d\udcff', '\udcfee'], ['d\udcff/\udc80x', '\udcfee/\udc80x'], ['d\udcff0', 'd\udcff0']],
    },
    {
      description: 'moveTree of a path without an entry moves its descendants',
      paths: ['a/x', 'a0'],
      from: 'a',
      to: 'b',
      expected: [['a/x', 'b/x'], ['a0', 'a0']],
    },
    { description: 'moveTree onto itself changes nothing', paths: ['a', 'a/x'], from: 'a', to: 'a', expected: [['a', 'a'], ['a/x', 'a/x']] },
  ]))('%s', (_, row) => {
    withArchive((archive) => {
      put(archive, row.paths);
      const inoOf = new Map(row.paths.map((path, i) => [path, i + 1]));
      archive.transaction((w) => w.moveTree(row.from, row.to));
      const expected = row.expected.map(([from, to]): [string, number] => [to, inoOf.get(from)!]);
      expect(contents(archive)).toEqual(expected.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      // Each moved entry is still its whole self under the new name.
      for (const [from, to] of row.expected) expect(archive.get(to)).toStrictEqual(entry(inoOf.get(from)!));
    });
  });

  test.each(described<{ description: string; from: string; to: string }>([
    { description: 'into its own subtree', from: 'a', to: 'a/b' },
    { description: 'onto its own ancestor', from: 'a/b', to: 'a' },
    { description: 'the root', from: '', to: 'a' },
    { description: 'onto the root', from: 'a', to: '' },
  ]))('moveTree %s is refused and changes nothing', (_, row) => {
    withArchive((archive) => {
      put(archive, ['a', 'a/b', 'a/b/c']);
      expect(() => archive.transaction((w) => w.moveTree(row.from, row.to))).toThrow(/cannot move/);
      expect(contents(archive).map(([path]) => path)).toEqual(['a', 'a/b', 'a/b/c']);
    });
  });
});

describe('transactions and persistence', () => {
  test('a transaction whose function throws leaves nothing of it behind', () => {
    withArchive((archive) => {
      put(archive, ['keep', 'gone/x']);
      const failure = new Error('boom');
      expect(() =>
        archive.transaction((w) => {
          w.put('new', entry(7));
          w.put('keep', entry(8));
          w.deleteTree('gone');
          w.moveTree('keep', 'moved');
          throw failure;
        }),
      ).toThrow(failure);
      expect(contents(archive)).toEqual([['gone/x', 2], ['keep', 1]]);
      archive.transaction((w) => w.put('after', entry(3)));
      expect(archive.size).toBe(3);
    });
  });

  test('closing and opening again keeps every entry', () => {
    const file = join(tempDir('psync-archive-'), 'pair.sqlite');
    const paths = ['a', 'a/\udce9', 'b\nc', 'd/e/f'];
    let archive = Archive.open(file);
    put(archive, paths);
    archive.transaction((w) => w.put('h', entry(5, { hash: 'ff', left: { ino: 5, birthMs: 1.5 } })));
    const before = archive.all();
    archive.close();
    archive = Archive.open(file);
    try {
      expect(archive.all()).toStrictEqual(before);
      expect(archive.size).toBe(5);
    } finally {
      archive.close();
    }
  });

  // How fast: the benchmark's start-up scenario (bench/), never a timed assertion here.
  test('all() loads every one of 100,000 entries', () => {
    withArchive((archive) => {
      const path = (i: number): string => `dir${i % 100}/sub${i % 7}/file number ${i}.txt`;
      archive.transaction((w) => {
        for (let i = 0; i < 100_000; i++) w.put(path(i), entry(i + 1, { hash: 'ab'.repeat(32) }));
      });
      const all = archive.all();
      expect(all.size).toBe(100_000);
      expect(all.get(path(1005))).toStrictEqual(entry(1006, { hash: 'ab'.repeat(32) }));
      expect(all.get(path(99_999))).toStrictEqual(entry(100_000, { hash: 'ab'.repeat(32) }));
    });
  });
});

describe('opening', () => {
  test('a second process opening a held archive gets ArchiveLockedError at once, naming the file; the first keeps working', () => {
    expect(existsSync(fileURLToPath(BUILT)), `${fileURLToPath(BUILT)} missing: run npm run build`).toBe(true);
    const file = join(tempDir('psync-archive-'), 'pair.sqlite');
    const script = `
      const { Archive, ArchiveLockedError } = await import(${JSON.stringify(BUILT.href)});
      try {
        Archive.open(process.argv[1]).close();
        console.log(JSON.stringify({ opened: true }));
      } catch (error) {
        console.log(JSON.stringify({ locked: error instanceof ArchiveLockedError, message: error.message }));
      }`;
    type Outcome = { opened?: boolean; locked?: boolean; message?: string };
    const tryOpen = (): Outcome => {
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, file], { encoding: 'utf8', timeout: 30_000 });
      expect(child.stderr).toBe('');
      return JSON.parse(child.stdout) as Outcome;
    };
    const archive = Archive.open(file);
    try {
      put(archive, ['a']);
      const result = tryOpen();
      expect(result.locked).toBe(true);
      expect(result.message).toContain(file);
      expect(result.message).not.toContain('\n');
      // The psync to stop: this process holds the lock.
      expect(result.message).toContain(`another psync (pid ${process.pid})`);
      archive.transaction((w) => w.put('b', entry(2)));
      expect(contents(archive)).toEqual([['a', 1], ['b', 2]]);
    } finally {
      archive.close();
    }
    expect(tryOpen()).toEqual({ opened: true });
  });

  test('a second open in the same process is refused too', () => {
    withArchive((_, file) => {
      expect(() => Archive.open(file)).toThrow(ArchiveLockedError);
    });
  });

  test.each(described<{ description: string; make: (file: string) => void; message: RegExp }>([
    { description: 'a text file', make: (file) => writeFileSync(file, 'not a database, just text\n'.repeat(40)), message: /not a psync archive.*not a database/ },
    { description: 'a file of zeros', make: (file) => writeFileSync(file, Buffer.alloc(8192)), message: /not a psync archive/ },
    {
      description: 'another program\'s SQLite database',
      make: (file) => {
        const db = new Database(file);
        db.exec('CREATE TABLE t (x)');
        db.close();
      },
      message: /not a psync archive of version 2 \(user_version 0, 1 schema objects\)/,
    },
    {
      description: 'an archive of another version',
      make: (file) => {
        const db = new Database(file);
        db.pragma('user_version = 99');
        db.exec('CREATE TABLE entries (path BLOB PRIMARY KEY)');
        db.close();
      },
      message: /user_version 99/,
    },
  ]))('%s is refused with a clear error, left as it was, and not left locked', (_, row) => {
    const file = join(tempDir('psync-archive-'), 'pair.sqlite');
    row.make(file);
    const before = readFileSync(file);
    const open = (): unknown => Archive.open(file);
    expect(open).toThrow(row.message);
    expect(open).not.toThrow(ArchiveLockedError);
    expect(readFileSync(file)).toEqual(before);
  });

  test('creates its directories 0700 and its file 0600 (and the WAL beside it)', () => {
    const base = tempDir('psync-archive-');
    const file = join(base, 'state', 'psync', 'pair.sqlite');
    const archive = Archive.open(file);
    try {
      put(archive, ['a']);
      expect(statSync(join(base, 'state')).mode & 0o777).toBe(0o700);
      expect(statSync(join(base, 'state', 'psync')).mode & 0o777).toBe(0o700);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(`${file}-wal`).mode & 0o777).toBe(0o600);
      // The WAL index is in memory (EXCLUSIVE locking mode): no shared-memory file that another process could map.
      expect(existsSync(`${file}-shm`)).toBe(false);
    } finally {
      archive.close();
    }
  });
});

describe('the journal of transfers', () => {
  test('a transfer begun and not ended is unfinished, with its target, paths (odd names included), what was agreed before and what it sent, after a reopen too; ending it in a transaction clears it', () => {
    const file = join(tempDir('psync-archive-'), 'pair.sqlite');
    const paths = ['a', 'd/\udcff', 'x\ny', 'sp ace'];
    let archive = Archive.open(file);
    const before = { type: 'file' as const, ino: 7, size: 3, mtimeMs: 1_000.5, mode: 0o644 };
    const sent = { ...entry(3), right: { ino: 0 } };
    archive.beginTransfer('.psync/replaced/1-1-1', 'right', paths, new Map([['d/\udcff', before]]), new Map([['a', sent]]));
    archive.beginTransfer('.psync/replaced/1-1-2', 'left', []);
    archive.close();
    archive = Archive.open(file);
    try {
      expect(archive.unfinishedTransfers().sort((a, b) => a.run.localeCompare(b.run))).toEqual([
        { run: '.psync/replaced/1-1-1', target: 'right', paths, expected: new Map([['d/\udcff', before]]), sent: new Map([['a', sent]]) },
        { run: '.psync/replaced/1-1-2', target: 'left', paths: [], expected: new Map(), sent: new Map() },
      ]);
      archive.transaction((w) => w.endTransfer('.psync/replaced/1-1-1'));
      expect(archive.unfinishedTransfers().map((t) => t.run)).toEqual(['.psync/replaced/1-1-2']);
    } finally {
      archive.close();
    }
  });

  test('an archive of version 1 gains the journal and keeps its entries', () => {
    const file = join(tempDir('psync-archive-'), 'pair.sqlite');
    const db = new Database(file);
    db.exec(`CREATE TABLE entries (path BLOB PRIMARY KEY, type TEXT NOT NULL, size INTEGER NOT NULL, mtime_ms REAL NOT NULL, mode INTEGER NOT NULL,
      hash TEXT, left_ino INTEGER NOT NULL, left_birth_ms REAL, right_ino INTEGER NOT NULL, right_birth_ms REAL) WITHOUT ROWID; PRAGMA user_version = 1;`);
    db.prepare('INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').run(Buffer.from('kept'), 'file', 1, 1000, 0o644, null, 5, null, 6, null);
    db.close();
    const archive = Archive.open(file);
    try {
      expect(archive.get('kept')).toEqual({ type: 'file', size: 1, mtimeMs: 1000, mode: 0o644, left: { ino: 5 }, right: { ino: 6 } });
      expect(archive.unfinishedTransfers()).toEqual([]);
      archive.beginTransfer('.psync/replaced/2-1-1', 'left', ['f']);
      expect(archive.unfinishedTransfers()).toHaveLength(1);
    } finally {
      archive.close();
    }
  });
});

describe('names', () => {
  test.each(described<{ description: string; env: NodeJS.ProcessEnv; expected: string }>([
    { description: 'XDG_STATE_HOME set', env: { XDG_STATE_HOME: '/x/state', HOME: '/home/u' }, expected: '/x/state/psync' },
    { description: 'a relative XDG_STATE_HOME is ignored', env: { XDG_STATE_HOME: 'x/state', HOME: '/home/u' }, expected: '/home/u/.local/state/psync' },
    { description: 'an empty XDG_STATE_HOME is ignored', env: { XDG_STATE_HOME: '', HOME: '/home/u' }, expected: '/home/u/.local/state/psync' },
    { description: 'XDG_STATE_HOME unset', env: { HOME: '/home/u' }, expected: '/home/u/.local/state/psync' },
  ]))('defaultStateDir: %s', (_, row) => {
    expect(defaultStateDir(row.env)).toBe(row.expected);
  });

  test.each(described<{ description: string; a: [string, string | undefined, string]; b: [string, string | undefined, string] }>([
    { description: 'the roots swapped', a: ['/l', undefined, '/r'], b: ['/r', undefined, '/l'] },
    { description: 'a local pair and one on a host named ""', a: ['/l', undefined, '/r'], b: ['/l', '', '/r'] },
    { description: 'a separator moved between fields', a: ['/l', 'h', '/r'], b: ['/l', 'h/', 'r'] },
    { description: 'a comma moved between fields', a: ['/a,', 'h', '/r'], b: ['/a', ',h', '/r'] },
    { description: 'different hosts', a: ['/l', 'h1', '/r'], b: ['/l', 'h2', '/r'] },
  ]))('pairId tells apart %s', (_, row) => {
    expect(pairId(...row.a)).not.toBe(pairId(...row.b));
  });

  test('pairId is stable, 32 hex digits; archiveFile names <id>.sqlite in the state dir', () => {
    const id = pairId('/home/u/left', 'server', '/srv/right');
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(pairId('/home/u/left', 'server', '/srv/right')).toBe(id);
    expect(archiveFile('/s/psync', id)).toBe(`/s/psync/${id}.sqlite`);
  });
});

describe('lockHoldersIn: who holds a lock on a file, from /proc/locks', () => {
  // Device 0xfe00 (major 0xfe, minor 0), inode 2271707; and device 0x10300 (major 0x103, minor 0).
  const PROC_LOCKS = [
    '1: POSIX  ADVISORY  WRITE 10453 fe:00:2271707 1073741824 1073742335',
    '1: -> POSIX  ADVISORY  WRITE 10999 fe:00:2271707 1073741824 1073742335',
    '2: POSIX  ADVISORY  READ 10453 fe:00:2271707 1073741826 1073742335',
    '3: FLOCK  ADVISORY  WRITE 777 fe:00:12 0 EOF',
    '4: POSIX  ADVISORY  WRITE 888 103:00:2271707 0 EOF',
    '',
  ].join('\n');
  test.each(described<{ description: string; dev: number; ino: number; holders: number[] }>([
    { description: 'the holder of the file, once, however many ranges it locks; a waiter (->) is not a holder', dev: 0xfe00, ino: 2271707, holders: [10453] },
    { description: 'the same inode on another device is another file', dev: 0x10300, ino: 2271707, holders: [888] },
    { description: 'a file nobody locks', dev: 0xfe00, ino: 5, holders: [] },
  ]))('%s', (_description, { dev, ino, holders }) => {
    expect(lockHoldersIn(PROC_LOCKS, dev, ino)).toEqual(holders);
  });
});
