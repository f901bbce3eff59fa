/**
 * The archive: for one pair of roots, the last state both sides agreed on at
 * every path. The three-way reconcile compares each side with it, so it must
 * outlive psync (deletes and renames made while psync was stopped are
 * decided against it) and never be half-written: it is an SQLite database
 * (better-sqlite3), written one transaction per applied batch.
 *
 * One file per pair, `<stateDir>/<pairId>.sqlite`, on the host where the
 * brain runs. WAL with `locking_mode=EXCLUSIVE`: the lock is taken when the
 * file is opened and held until close, so a second psync on the same pair
 * fails at once (ArchiveLockedError) instead of interleaving its writes.
 *
 * Paths are keys as bytes (a BLOB of `pathToBytes`): a name that is not
 * valid UTF-8 holds lone surrogates, which SQLite TEXT would replace. The
 * descendants of P are then the byte range [P + "/", P + "0"): "0" is the
 * byte after "/", and every key below P starts with P + "/". A LIKE would
 * read `%` and `_` in names as wildcards.
 */

import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { bytesToPath, pathToBytes } from '../core/paths.js';

import type { Agreed, Identity } from '../core/reconcile.js';
import type { Stat } from '../core/types.js';

export type { Agreed, Identity } from '../core/reconcile.js';

/** Another process holds this archive (another psync on the same pair). */
export class ArchiveLockedError extends Error {
  override readonly name = 'ArchiveLockedError';
}

export interface ArchiveWriter {
  put(path: string, entry: Agreed): void;
  /** That path only. */
  delete(path: string): void;
  /** The path and everything below it. */
  deleteTree(path: string): void;
  /** The path and its descendants renamed under `to`; whatever was at or below `to` goes first. */
  moveTree(from: string, to: string): void;
  clear(): void;
  /** The transfer `run` is over: its journal entry goes (in the transaction that records what it agreed). */
  endTransfer(run: string): void;
}

/**
 * A transfer that was started and never recorded as over (its psync was
 * killed, or its session cut off): where it wrote, which paths, and what
 * the target was agreed to hold at those paths before it (`expected`: the
 * versions it may have replaced without a conflict).
 */
export interface UnfinishedTransfer {
  readonly run: string;
  readonly target: 'left' | 'right';
  readonly paths: readonly string[];
  readonly expected: ReadonlyMap<string, Stat>;
  /** The files it was sending, as each would be agreed if it arrived as reported (core/agreed.ts sentAs, adoptCutOff). */
  readonly sent: ReadonlyMap<string, Agreed>;
}

const SCHEMA_VERSION = 2;

/** Version 2 added the journal of transfers (a version 1 archive gains the table when opened). */
const TRANSFERS_TABLE = `
  CREATE TABLE IF NOT EXISTS transfers (
    run TEXT PRIMARY KEY,
    target TEXT NOT NULL CHECK (target IN ('left', 'right')),
    paths BLOB NOT NULL,
    expected TEXT NOT NULL,
    sent TEXT NOT NULL
  );
`;

const SCHEMA = `
  CREATE TABLE entries (
    path BLOB PRIMARY KEY,
    type TEXT NOT NULL CHECK (type IN ('file', 'dir', 'symlink', 'other')),
    size INTEGER NOT NULL,
    mtime_ms REAL NOT NULL,
    mode INTEGER NOT NULL,
    hash TEXT,
    left_ino INTEGER NOT NULL,
    left_birth_ms REAL,
    right_ino INTEGER NOT NULL,
    right_birth_ms REAL
  ) WITHOUT ROWID;
  ${TRANSFERS_TABLE}
  PRAGMA user_version = ${SCHEMA_VERSION};
`;

const COLUMNS = 'type, size, mtime_ms, mode, hash, left_ino, left_birth_ms, right_ino, right_birth_ms';

type Row = [
  path: Buffer,
  type: Agreed['type'],
  size: number,
  mtimeMs: number,
  mode: number,
  hash: string | null,
  leftIno: number,
  leftBirthMs: number | null,
  rightIno: number,
  rightBirthMs: number | null,
];

/** `$XDG_STATE_HOME/psync`, else `$HOME/.local/state/psync`; the XDG spec ignores a relative XDG_STATE_HOME. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env['XDG_STATE_HOME'];
  if (xdg !== undefined && isAbsolute(xdg)) return join(xdg, 'psync');
  return join(env['HOME'] || homedir(), '.local', 'state', 'psync');
}

/** A pair's name: its roots and the right side's host (undefined: local), hashed. */
export function pairId(leftRoot: string, host: string | undefined, rightRoot: string): string {
  // JSON keeps the fields apart (a root may hold any character) and tells a
  // local pair (null) from a host named "".
  const encoded = JSON.stringify(['psync-pair', leftRoot, host ?? null, rightRoot]);
  return createHash('sha256').update(encoded).digest('hex').slice(0, 32);
}

export function archiveFile(stateDir: string, id: string): string {
  return join(stateDir, `${id}.sqlite`);
}

const key = (path: string): Buffer => Buffer.from(pathToBytes(path));

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * bytesToPath, fast for the common name: well-formed UTF-8 decodes the same
 * either way (ignoreBOM keeps a leading U+FEFF), and TextDecoder's flat
 * string is hashed into all()'s Map several times faster than the string
 * bytesToPath builds a character at a time.
 */
function keyToPath(bytes: Buffer): string {
  try {
    return utf8.decode(bytes);
  } catch {
    return bytesToPath(bytes);
  }
}

/** [lo, hi): the keys of the entries strictly below `path`. */
function below(path: string): [Buffer, Buffer] {
  const bytes = pathToBytes(path);
  return [Buffer.from([...bytes, 0x2f]), Buffer.from([...bytes, 0x30])];
}

// Index reads, no destructuring or spreading: all() runs this 100,000 times at start-up.
function toAgreed(r: Row): Agreed {
  const left = identity(r[6], r[7]);
  const right = identity(r[8], r[9]);
  return r[5] === null
    ? { type: r[1], size: r[2], mtimeMs: r[3], mode: r[4], left, right }
    : { type: r[1], size: r[2], mtimeMs: r[3], mode: r[4], hash: r[5], left, right };
}

const identity = (ino: number, birthMs: number | null): Identity => (birthMs === null ? { ino } : { ino, birthMs });

export class Archive {
  readonly #db: Database.Database;
  readonly #count: Database.Statement<[], number>;
  readonly #get: Database.Statement<[Buffer], Row>;
  readonly #all: Database.Statement<[], Row>;
  readonly #writer: ArchiveWriter;
  readonly #beginTransfer: Database.Statement<[string, string, Buffer, string, string]>;
  readonly #transfers: Database.Statement<[], [string, 'left' | 'right', Buffer, string, string]>;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#count = db.prepare<[], number>('SELECT count(*) FROM entries').pluck();
    this.#get = db.prepare<[Buffer], Row>(`SELECT path, ${COLUMNS} FROM entries WHERE path = ?`).raw();
    this.#all = db.prepare<[], Row>(`SELECT path, ${COLUMNS} FROM entries`).raw();
    const put = db.prepare(`INSERT OR REPLACE INTO entries (path, ${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const remove = db.prepare('DELETE FROM entries WHERE path = ?');
    const removeBelow = db.prepare('DELETE FROM entries WHERE path >= ? AND path < ?');
    // `||` joins the bytes as text without checking them; the CAST gives them back as a BLOB.
    const rename = db.prepare('UPDATE entries SET path = CAST(? || substr(path, ?) AS BLOB) WHERE path = ? OR (path >= ? AND path < ?)');
    const clear = db.prepare('DELETE FROM entries');
    const endTransfer = db.prepare('DELETE FROM transfers WHERE run = ?');
    this.#beginTransfer = db.prepare('INSERT OR REPLACE INTO transfers (run, target, paths, expected, sent) VALUES (?, ?, ?, ?, ?)');
    this.#transfers = db.prepare<[], [string, 'left' | 'right', Buffer, string, string]>('SELECT run, target, paths, expected, sent FROM transfers').raw();
    const deleteTree = (path: string): void => {
      if (path === '') clear.run();
      else {
        remove.run(key(path));
        removeBelow.run(...below(path));
      }
    };
    this.#writer = {
      put(path, e) {
        put.run(key(path), e.type, e.size, e.mtimeMs, e.mode, e.hash ?? null, e.left.ino, e.left.birthMs ?? null, e.right.ino, e.right.birthMs ?? null);
      },
      delete(path) {
        remove.run(key(path));
      },
      deleteTree,
      moveTree(from, to) {
        if (from === to) return;
        if (from === '' || to === '' || to.startsWith(`${from}/`) || from.startsWith(`${to}/`)) {
          throw new Error(`archive: cannot move ${JSON.stringify(from)} to ${JSON.stringify(to)} (one holds the other)`);
        }
        deleteTree(to);
        const fromKey = key(from);
        rename.run(key(to), fromKey.length + 1, fromKey, ...below(from));
      },
      clear() {
        clear.run();
      },
      endTransfer(run) {
        endTransfer.run(run);
      },
    };
  }

  /**
   * Opens (creating it, and its directory, when missing) and locks the
   * archive. Throws ArchiveLockedError when another process holds it, and
   * an Error saying the file is not a psync archive when it is something
   * else or damaged.
   */
  static open(file: string): Archive {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // SQLite would create the file 0644; its -wal file takes the database file's mode.
    closeSync(openSync(file, 'a', 0o600));
    const db = new Database(file, { timeout: 0 });
    try {
      // The lock before anything is read or written: in EXCLUSIVE locking
      // mode a connection keeps the lock its first transaction took, until
      // close. A foreign or damaged file is refused before it is changed.
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE');
      const fresh = schemaState(db, file);
      db.exec('COMMIT');
      // WAL under that lock keeps its index in this process's memory (no -shm file).
      db.pragma('journal_mode = WAL');
      // Each commit reaches the disk (WAL's default here syncs at checkpoints only):
      // an agreed state lost to a power cut would make both sides look changed.
      db.pragma('synchronous = FULL');
      if (fresh === 'empty') db.transaction(() => db.exec(SCHEMA))();
      if (fresh === 'v1') db.transaction(() => db.exec(`${TRANSFERS_TABLE} PRAGMA user_version = ${SCHEMA_VERSION};`))();
      return new Archive(db);
    } catch (error) {
      db.close();
      const code = (error as { code?: unknown }).code;
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
        const holder = archiveHolder(file);
        const who = holder === undefined ? 'another psync process' : `another psync (pid ${holder})`;
        throw new ArchiveLockedError(`${who} already runs this pair (its archive ${file} is in use); stop that psync first`, { cause: error });
      }
      if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
        throw new Error(`${file} is not a psync archive (${(error as Error).message})`, { cause: error });
      }
      throw error;
    }
  }

  /** Number of entries. */
  get size(): number {
    return this.#count.get()!;
  }

  get(path: string): Agreed | undefined {
    const row = this.#get.get(key(path));
    return row === undefined ? undefined : toAgreed(row);
  }

  /** Every entry, for the start-up reconcile. */
  all(): Map<string, Agreed> {
    const entries = new Map<string, Agreed>();
    for (const row of this.#all.iterate()) entries.set(keyToPath(row[0]), toAgreed(row));
    return entries;
  }

  /**
   * Journal a transfer before it starts (committed at once): if psync is
   * killed before the transfer is recorded, the next start knows where
   * rsync may have left its temp files (unfinishedTransfers).
   */
  beginTransfer(
    run: string,
    target: 'left' | 'right',
    paths: readonly string[],
    expected: ReadonlyMap<string, Stat> = new Map(),
    sent: ReadonlyMap<string, Agreed> = new Map(),
  ): void {
    // JSON keeps a path's lone surrogates (a name that is not UTF-8) as escapes, and gives them back.
    const list = Buffer.concat(paths.map((path) => Buffer.from([...pathToBytes(path), 0])));
    this.#beginTransfer.run(run, target, list, JSON.stringify([...expected]), JSON.stringify([...sent]));
  }

  unfinishedTransfers(): UnfinishedTransfer[] {
    return this.#transfers.all().map(([run, target, paths, expected, sent]) => ({
      run,
      target,
      paths: paths.length === 0 ? [] : splitNul(paths).map(keyToPath),
      expected: new Map(JSON.parse(expected) as Array<[string, Stat]>),
      sent: new Map(JSON.parse(sent) as Array<[string, Agreed]>),
    }));
  }


  /** One SQLite transaction: everything `fn` writes, or nothing if it throws. */
  transaction(fn: (w: ArchiveWriter) => void): void {
    this.#db.transaction(() => fn(this.#writer))();
  }

  /** Releases the lock. */
  close(): void {
    this.#db.close();
  }
}

/** NUL-terminated byte strings, apart. */
function splitNul(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let end = bytes.indexOf(0, start); end !== -1; end = bytes.indexOf(0, start)) {
    out.push(bytes.subarray(start, end));
    start = end + 1;
  }
  return out;
}

/** 'empty' for a new archive, 'v1' for one of version 1 (it gains the journal); throws for anything but these and this version. */
function schemaState(db: Database.Database, file: string): 'empty' | 'v1' | 'current' {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version === SCHEMA_VERSION) return 'current';
  if (version === 1) return 'v1';
  const objects = db.prepare('SELECT count(*) FROM sqlite_schema').pluck().get() as number;
  if (version === 0 && objects === 0) return 'empty';
  throw new Error(`${file} is not a psync archive of version ${SCHEMA_VERSION} (user_version ${version}, ${objects} schema objects)`);
}

/** The pid of the process that holds the archive's lock (an SQLite lock is a POSIX lock: /proc/locks lists it), if it can be told. */
function archiveHolder(file: string): number | undefined {
  try {
    const { dev, ino } = statSync(file);
    return lockHoldersIn(readFileSync('/proc/locks', 'latin1'), dev, ino)[0];
  } catch {
    return undefined;
  }
}

/**
 * The pids holding a lock on the file of device `dev` and inode `ino`, from
 * the text of /proc/locks (`1: POSIX  ADVISORY  WRITE <pid> <major>:<minor>:<inode> <start> <end>`,
 * major and minor in hex; a line with `->` is a waiter, not a holder).
 */
export function lockHoldersIn(procLocks: string, dev: number, ino: number): number[] {
  const major = Number((BigInt(dev) >> 8n) & 0xfffn) | Number((BigInt(dev) >> 32n) & ~0xfffn);
  const minor = Number(BigInt(dev) & 0xffn) | Number((BigInt(dev) >> 12n) & ~0xffn);
  const holders: number[] = [];
  for (const line of procLocks.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === '->') continue;
    const [pid, where] = [fields[4], fields[5]];
    const match = where === undefined ? null : /^([0-9a-f]+):([0-9a-f]+):([0-9]+)$/.exec(where);
    if (pid === undefined || match === null) continue;
    if (Number.parseInt(match[1]!, 16) === major && Number.parseInt(match[2]!, 16) === minor && Number(match[3]) === ino) {
      holders.push(Number.parseInt(pid, 10));
    }
  }
  return [...new Set(holders)];
}
