import { describe, expect, test } from 'vitest';
import { parsePermissions, parseTransferLine } from '../../src/transfer/rsync.js';
import { described } from '../support/table.js';

// rsync's --out-format '%i %l %M %B %n' (TRANSFER_LIST_ARGS): what the archive records after a transfer.
describe('parseTransferLine', () => {
  const at = new Date(2026, 11, 2, 6, 30, 5).getTime() / 1000;
  test.each(
    described<{ description: string; line: string; want: ReturnType<typeof parseTransferLine> }>([
      { description: 'a file', line: '>f.st...... 12 2026/12/02-06:30:05 rw-r--r-- a/b.txt', want: { path: 'a/b.txt', isDir: false, size: 12, mtimeSeconds: at, mode: 0o644, created: false } },
      { description: 'a new file', line: '>f+++++++++ 12 2026/12/02-06:30:05 rw-r--r-- a/b.txt', want: { path: 'a/b.txt', isDir: false, size: 12, mtimeSeconds: at, mode: 0o644, created: true } },
      { description: 'a directory (trailing slash) whose mtime was set', line: '.d..t...... 4096 2026/12/02-06:30:05 rwxr-x--- d/', want: { path: 'd', isDir: true, size: 4096, mtimeSeconds: at, mode: 0o750, created: false } },
      // A parent rsync made on the way to a listed path: gone on the target since it was agreed (a rename there).
      { description: 'a directory rsync made', line: 'cd+++++++++ 4096 2026/12/02-06:30:05 rwxr-x--- d/', want: { path: 'd', isDir: true, size: 4096, mtimeSeconds: at, mode: 0o750, created: true } },
      { description: 'a symlink rsync made', line: 'cL+++++++++ 7 2026/12/02-06:30:05 rwxrwxrwx l', want: { path: 'l', isDir: false, size: 7, mtimeSeconds: at, mode: 0o777, created: true } },
      { description: 'an escaped newline in the name', line: '>f+++++++++ 1 2026/12/02-06:30:05 rw------- a\\#012b', want: { path: 'a\nb', isDir: false, size: 1, mtimeSeconds: at, mode: 0o600, created: true } },
      { description: 'a name with spaces', line: '>f..t...... 1 2026/12/02-06:30:05 rw-r--r-- a b c', want: { path: 'a b c', isDir: false, size: 1, mtimeSeconds: at, mode: 0o644, created: false } },
      { description: 'the root itself is not an entry', line: '.d..t...... 4096 2026/12/02-06:30:05 rwxr-xr-x ./', want: undefined },
      { description: 'a line without the change is not one (an older format)', line: '12 2026/12/02-06:30:05 rw-r--r-- a/b.txt', want: undefined },
      { description: 'a delete is not one', line: '*deleting   12 2026/12/02-06:30:05 rw-r--r-- a/b.txt', want: undefined },
      { description: 'rsync chatter is not one', line: 'sending incremental file list', want: undefined },
    ]),
  )('%s', (_d, { line, want }) => {
    expect(parseTransferLine(line)).toEqual(want);
  });
});

describe('parsePermissions', () => {
  test.each(
    described<{ description: string; text: string; mode: number }>([
      { description: 'plain bits', text: 'rwxr-xr-x', mode: 0o755 },
      { description: 'none', text: '---------', mode: 0 },
      { description: 'setuid with x', text: 'rwsr-xr-x', mode: 0o4755 },
      { description: 'setuid without x', text: 'rwSr--r--', mode: 0o4644 },
      { description: 'setgid with x', text: 'rwxr-sr-x', mode: 0o2755 },
      { description: 'sticky with x', text: 'rwxrwxrwt', mode: 0o1777 },
      { description: 'sticky without x', text: 'rwxrwxrwT', mode: 0o1776 },
    ]),
  )('%s', (_d, { text, mode }) => {
    expect(parsePermissions(text)).toBe(mode);
  });
});
