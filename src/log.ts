/**
 * The one logger: winston, levels chosen by `-d`, lines in text or JSON,
 * to stderr and, with `--log-file`, to a file rotated by size.
 *
 * - Text: `2026-12-02 14:03:07.123 info  [pair] message` (local time; the
 *   `[pair]` when the logger is a pair's child, `log.child({ pair })`).
 *   JSON (`--log-format json`): one object a line, `{"timestamp"` (ISO 8601,
 *   UTC), `"level"`, `"pair"` (when there is one), `"message"}`.
 * - Under journald (stderr is the stream named by JOURNAL_STREAM, as systemd
 *   sets it up for a service) text lines on stderr carry no date of ours but
 *   a `<N>` syslog priority prefix: journald stamps each line itself and
 *   files it under that priority (`journalctl -p warning`).
 * - `--log-file FILE`: every line goes to FILE; stderr then gets warnings
 *   and errors only. psync runs as root and FILE's directory may be shared:
 *   FILE is opened O_NOFOLLOW (a symlink planted at its name is refused) and
 *   must be a regular file of ours with one link (a hard link to another
 *   file is refused). Past LOG_FILE_MAX_BYTES it is renamed to FILE.1 (FILE.1
 *   to FILE.2, ..., the oldest of LOG_FILE_KEEP dropped) and a new FILE is
 *   opened the same way; rename never follows a link planted at a name.
 * - Lines on stderr go through the progress board (progress.ts), which keeps
 *   them above a progress bar.
 */

import { closeSync, constants, fstatSync, openSync, renameSync, writeSync } from 'node:fs';
import winston from 'winston';
import TransportStream from 'winston-transport';
import { ConfigError } from './core/errors.js';

export type Logger = winston.Logger;
export type LogFormat = 'text' | 'json';

/** `-d 0` start, stop, one line per batch, warnings and errors; 1 (default) each action; 2 every event; 3 everything. */
const LEVEL_BY_DEBUG = ['info', 'verbose', 'debug', 'silly'] as const;

/** A log file is rotated once it would grow past this (PSYNC_LOG_MAX_BYTES overrides it, for tests). */
export const LOG_FILE_MAX_BYTES = 10 * 1024 * 1024;
/** Rotated files kept beside the log file: FILE.1 (newest) to FILE.5. */
export const LOG_FILE_KEEP = 5;
/** The log file is created with this mode. */
const LOG_FILE_MODE = 0o640;
// O_NONBLOCK: a FIFO planted at the name fails at once (ENXIO) instead of blocking the open.
const LOG_FILE_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** syslog priorities (sd-daemon(3) prefixes) of winston's npm levels. */
const SYSLOG_PRIORITY: Readonly<Record<string, number>> = { error: 3, warn: 4, info: 6, verbose: 7, debug: 7, silly: 7 };

export interface LoggerOptions {
  readonly debug: number;
  readonly format: LogFormat;
  readonly file?: string;
  /** Where stderr lines go (the progress board keeps them above its bar); process.stderr by default. */
  readonly stderr?: (text: string) => void;
}

/** Wait until everything logged so far has been written. */
export function flushLogger(log: Logger): Promise<void> {
  return new Promise((resolve) => {
    // A late line from a closing child must not crash the exit.
    log.on('error', () => {});
    log.once('finish', () => resolve());
    log.end();
  });
}

/** Throws ConfigError when the log file cannot be opened safely. */
export function createLogger(options: LoggerOptions): Logger {
  const level = LEVEL_BY_DEBUG[Math.max(0, Math.min(3, options.debug))]!;
  const toStderr = options.stderr ?? ((text: string) => void process.stderr.write(text));
  const journald = options.format === 'text' && stderrIsJournal();
  const transports: TransportStream[] = [
    new LineTransport({
      write: toStderr,
      render: journald ? journalLine : options.format === 'json' ? jsonLine : textLine,
      ...(options.file === undefined ? {} : { level: 'warn' }),
    }),
  ];
  if (options.file !== undefined) {
    const file = new RotatingFile(options.file, maxBytesFromEnv(), LOG_FILE_KEEP, (problem) => toStderr(`psync: ${problem}\n`));
    transports.push(new LineTransport({ write: (text) => file.write(text), render: options.format === 'json' ? jsonLine : textLine, close: () => file.close() }));
  }
  return winston.createLogger({ level, transports });
}

interface Info {
  level: string;
  message: unknown;
  pair?: unknown;
}

/** `2026-12-02 14:03:07.123`, local time. */
export function localTimestamp(date: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`
  );
}

const pairTag = (info: Info): string => (info.pair === undefined ? '' : `[${String(info.pair)}] `);

export function textLine(info: Info, now: Date): string {
  return `${localTimestamp(now)} ${info.level.padEnd(5)} ${pairTag(info)}${String(info.message)}\n`;
}

export function journalLine(info: Info): string {
  return `<${SYSLOG_PRIORITY[info.level] ?? 6}>${info.level.padEnd(5)} ${pairTag(info)}${String(info.message)}\n`;
}

export function jsonLine(info: Info, now: Date): string {
  const pair = info.pair === undefined ? {} : { pair: String(info.pair) };
  return `${JSON.stringify({ timestamp: now.toISOString(), level: info.level, ...pair, message: String(info.message) })}\n`;
}

/** Is stderr the journal stream systemd gave this service (JOURNAL_STREAM is `<dev>:<inode>` of it)? */
function stderrIsJournal(): boolean {
  const stream = process.env.JOURNAL_STREAM;
  if (stream === undefined) return false;
  try {
    const { dev, ino } = fstatSync(2);
    return stream === `${dev}:${ino}`;
  } catch {
    return false;
  }
}

function maxBytesFromEnv(): number {
  const value = Number(process.env.PSYNC_LOG_MAX_BYTES);
  return Number.isInteger(value) && value > 0 ? value : LOG_FILE_MAX_BYTES;
}

/** A winston transport that renders each entry into one line and hands it on. */
class LineTransport extends TransportStream {
  private readonly emitLine: (text: string) => void;
  private readonly render: (info: Info, now: Date) => string;
  private readonly onClose: (() => void) | undefined;

  constructor(options: { write: (text: string) => void; render: (info: Info, now: Date) => string; level?: string; close?: () => void }) {
    super(options.level === undefined ? {} : { level: options.level });
    this.emitLine = options.write;
    this.render = options.render;
    this.onClose = options.close;
  }

  override log(info: Info, next: () => void): void {
    this.emitLine(this.render(info, new Date()));
    next();
  }

  override close(): void {
    this.onClose?.();
  }
}

/**
 * The log file (see the header): written synchronously, so a line is in the
 * file once logged and the order of lines is the order of calls. A file that
 * cannot be opened at start is a ConfigError; one that cannot be reopened
 * after a rotation is reported once on stderr and logging to it stops.
 */
class RotatingFile {
  private fd: number | undefined;
  private size: number;

  constructor(
    private readonly path: string,
    private readonly maxBytes: number,
    private readonly keep: number,
    private readonly report: (problem: string) => void,
  ) {
    const { fd, size } = openLogFile(path);
    this.fd = fd;
    this.size = size;
  }

  write(text: string): void {
    if (this.fd === undefined) return;
    const bytes = Buffer.from(text);
    if (this.size > 0 && this.size + bytes.length > this.maxBytes) this.rotate();
    if (this.fd === undefined) return;
    try {
      writeSync(this.fd, bytes);
      this.size += bytes.length;
    } catch (error) {
      this.giveUp(`cannot write the log file ${this.path}: ${(error as Error).message}`);
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private rotate(): void {
    this.close();
    try {
      for (let n = this.keep - 1; n >= 1; n--) renameIfThere(`${this.path}.${n}`, `${this.path}.${n + 1}`);
      renameIfThere(this.path, `${this.path}.1`);
      const { fd, size } = openLogFile(this.path);
      this.fd = fd;
      this.size = size;
    } catch (error) {
      this.giveUp(`cannot rotate the log file ${this.path}: ${(error as Error).message}`);
    }
  }

  private giveUp(problem: string): void {
    this.close();
    this.report(`${problem}; no more lines go to it`);
  }
}

function renameIfThere(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** Open (or create) the log file the safe way (see the header); its fd and size. */
export function openLogFile(path: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(path, LOG_FILE_FLAGS, LOG_FILE_MODE);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ELOOP' ? 'it is a symlink' : (error as Error).message;
    throw new ConfigError(`cannot open the log file ${path}: ${why}`, { cause: error });
  }
  const info = fstatSync(fd);
  const problem = !info.isFile()
    ? 'it is not a regular file'
    : info.nlink !== 1
      ? `it has ${info.nlink} hard links`
      : typeof process.geteuid === 'function' && info.uid !== process.geteuid()
        ? `it belongs to uid ${info.uid}, not to psync's user`
        : undefined;
  if (problem !== undefined) {
    closeSync(fd);
    throw new ConfigError(`refusing the log file ${path}: ${problem}`);
  }
  return { fd, size: info.size };
}
