import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, lstatSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { createLogger, flushLogger, jsonLine, journalLine, localTimestamp, openLogFile, textLine } from '../../src/log.js';
import { tempDir } from '../support/tmp.js';

const at = new Date(2026, 11, 2, 14, 3, 7, 123); // local time

describe('line formats', () => {
  test('the local timestamp carries the date and milliseconds', () => {
    expect(localTimestamp(at)).toBe('2026-12-02 14:03:07.123');
  });

  test('text: date, level, [pair] when the logger is a pair’s child, message', () => {
    expect(textLine({ level: 'warn', message: 'hello', pair: 'docs' }, at)).toBe('2026-12-02 14:03:07.123 warn  [docs] hello\n');
    expect(textLine({ level: 'info', message: 'no pair' }, at)).toBe('2026-12-02 14:03:07.123 info  no pair\n');
  });

  test('json: one object a line with timestamp (UTC ISO), level, pair, message', () => {
    const line = jsonLine({ level: 'error', message: 'a "quoted"\nline', pair: 'docs' }, at);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trimEnd().includes('\n')).toBe(false);
    expect(JSON.parse(line)).toEqual({ timestamp: at.toISOString(), level: 'error', pair: 'docs', message: 'a "quoted"\nline' });
    expect(JSON.parse(jsonLine({ level: 'info', message: 'm' }, at))).not.toHaveProperty('pair');
  });

  test('journald: no date of ours, the syslog priority first', () => {
    expect(journalLine({ level: 'warn', message: 'careful', pair: 'p' })).toBe('<4>warn  [p] careful\n');
    expect(journalLine({ level: 'error', message: 'bad' })).toBe('<3>error bad\n');
    expect(journalLine({ level: 'info', message: 'ok' })).toBe('<6>info  ok\n');
  });
});

describe('the log file', () => {
  const saved = process.env.PSYNC_LOG_MAX_BYTES;
  afterEach(() => {
    if (saved === undefined) delete process.env.PSYNC_LOG_MAX_BYTES;
    else process.env.PSYNC_LOG_MAX_BYTES = saved;
  });

  test('a symlink planted at its name is refused, and what it points to is left alone', () => {
    const dir = tempDir('psync-log-');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(dir, 'psync.log'));
    expect(() => openLogFile(join(dir, 'psync.log'))).toThrow(/symlink/);
    expect(() => openLogFile(join(dir, 'psync.log'))).toThrow(ConfigError);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });

  test('a hard link to another file is refused', () => {
    const dir = tempDir('psync-log-');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    linkSync(victim, join(dir, 'psync.log'));
    expect(() => openLogFile(join(dir, 'psync.log'))).toThrow(/2 hard links/);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });

  test('a FIFO is refused at once instead of blocking', () => {
    const dir = tempDir('psync-log-');
    execFileSync('mkfifo', [join(dir, 'psync.log')]);
    expect(() => openLogFile(join(dir, 'psync.log'))).toThrow(ConfigError);
  });

  test('every line goes to the file, stderr gets warnings and errors only, and the file rotates by size', async () => {
    const dir = tempDir('psync-log-');
    const file = join(dir, 'psync.log');
    process.env.PSYNC_LOG_MAX_BYTES = '400';
    const stderr: string[] = [];
    const log = createLogger({ debug: 1, format: 'text', file, stderr: (text) => stderr.push(text) });
    const pair = log.child({ pair: 'docs' });
    for (let i = 0; i < 40; i++) pair.info(`line ${i} ${'x'.repeat(20)}`);
    pair.warn('a warning');
    pair.debug('not at -d 1');
    await flushLogger(log);
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} warn  \[docs\] a warning\n$/);
    const current = readFileSync(file, 'utf8');
    expect(current).toContain('a warning');
    expect(current.length).toBeLessThanOrEqual(400);
    for (const n of [1, 2, 3, 4, 5]) expect(existsSync(`${file}.${n}`), `${file}.${n}`).toBe(true);
    expect(existsSync(`${file}.6`)).toBe(false);
    const all = [5, 4, 3, 2, 1].map((n) => readFileSync(`${file}.${n}`, 'utf8')).join('') + current;
    // The newest lines survive in order; the oldest went with the files past LOG_FILE_KEEP.
    expect(all).toContain('line 39 ');
    expect(all).not.toContain('line 0 ');
    const numbers = [...all.matchAll(/line (\d+) /g)].map((m) => Number(m[1]));
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(all).not.toContain('not at -d 1');
  });

  test('a symlink planted at the name between rotations is not followed', async () => {
    const dir = tempDir('psync-log-');
    const file = join(dir, 'psync.log');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    process.env.PSYNC_LOG_MAX_BYTES = '200';
    const stderr: string[] = [];
    const log = createLogger({ debug: 0, format: 'json', file, stderr: (text) => stderr.push(text) });
    log.info(`first ${'y'.repeat(150)}`);
    // What a user with write access to the directory could do: move the log away and plant links at its names.
    execFileSync('mv', [file, join(dir, 'moved')]);
    symlinkSync(victim, `${file}.1`);
    symlinkSync(victim, file);
    log.info(`second ${'z'.repeat(150)}`);
    log.info('third');
    await flushLogger(log);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    // The rotation renamed the links (rename never follows one) and made a new file of its own.
    expect(lstatSync(file).isFile()).toBe(true);
    expect(readFileSync(file, 'utf8')).toContain('"message":"third"');
    expect(stderr).toEqual([]);
  });
});
