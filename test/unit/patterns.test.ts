import { describe, expect, test } from 'vitest';
import {
  DEFAULT_TEMPFILES,
  compilePathClassifier,
  isPsyncInternal,
  toRsyncFilterArgs,
  toRsyncPatterns,
  validatePattern,
  type PathClass,
} from '../../src/core/patterns.js';
import { ConfigError } from '../../src/core/errors.js';

describe('compilePathClassifier', () => {
  const classify = compilePathClassifier({
    excludes: ['*.skip', 'node_modules', '/build', 'docs/private', 'cache/', '**/gen/*.js', 'logs/**', '[!a]x', 'lit\\eral', '[{]a,b}'],
    tempfiles: DEFAULT_TEMPFILES,
  });

  test.each<{ description: string; path: string; isDir?: boolean; expected: PathClass }>([
    { description: 'an ordinary file is synced', path: 'src/main.ts', expected: 'sync' },
    { description: 'the root is synced', path: '', expected: 'sync' },
    { description: 'no-slash pattern matches the base name at the top', path: 'a.skip', expected: 'excluded' },
    { description: 'no-slash pattern matches the base name at any depth', path: 'a/b/c.skip', expected: 'excluded' },
    { description: 'no-slash pattern does not match a mere suffix of a name', path: 'a/b/c.skipped', expected: 'sync' },
    { description: 'an excluded directory excludes itself', path: 'x/node_modules', isDir: true, expected: 'excluded' },
    { description: 'an excluded directory excludes everything below it', path: 'x/node_modules/p/index.js', expected: 'excluded' },
    { description: 'a leading slash anchors to the root', path: 'build/out.o', expected: 'excluded' },
    { description: 'an anchored pattern does not match deeper', path: 'src/build/out.o', expected: 'sync' },
    { description: 'a slash in the middle matches from the root', path: 'docs/private/a.md', expected: 'excluded' },
    { description: 'a slash in the middle does not match deeper', path: 'x/docs/private/a.md', expected: 'sync' },
    { description: 'a trailing slash matches a directory', path: 'a/cache', isDir: true, expected: 'excluded' },
    { description: 'a trailing slash does not match a file', path: 'a/cache', isDir: false, expected: 'sync' },
    { description: 'a trailing slash without isDir does not match the path itself', path: 'a/cache', expected: 'sync' },
    { description: 'a trailing slash matches through an ancestor', path: 'a/cache/f', expected: 'excluded' },
    { description: 'leading ** matches at the top', path: 'gen/x.js', expected: 'excluded' },
    { description: 'leading ** matches deeper', path: 'a/b/gen/x.js', expected: 'excluded' },
    { description: 'leading ** keeps the rest of the pattern', path: 'a/gen/x.ts', expected: 'sync' },
    { description: 'trailing ** matches everything below', path: 'logs/2024/a.log', expected: 'excluded' },
    { description: '[!a] negates like rsync', path: 'bx', expected: 'excluded' },
    { description: '[!a] does not match the negated character', path: 'ax', expected: 'sync' },
    { description: 'a pattern without wildcards is literal, backslash included', path: 'lit\\eral', expected: 'excluded' },
    { description: 'a backslash is not an escape without wildcards', path: 'literal', expected: 'sync' },
    { description: 'a literal brace list ([{]a,b}) does not expand', path: 'a', expected: 'sync' },
    { description: 'a literal brace list ([{]a,b}) matches itself', path: '{a,b}', expected: 'excluded' },
    { description: 'psync state directory is internal', path: '.psync', isDir: true, expected: 'internal' },
    { description: 'below the psync state directory is internal', path: '.psync/state.json', expected: 'internal' },
    { description: 'a rename-dance scratch name is internal', path: 'a/b.txt.12.psync.ignore', expected: 'internal' },
    { description: 'below a scratch directory is internal', path: 'd.1.psync.ignore/f', expected: 'internal' },
    { description: 'internal wins over excluded', path: 'x.skip.1.psync.ignore', expected: 'internal' },
    { description: 'excluded wins over temp', path: 'dir.tmp/a.skip', expected: 'excluded' },
    { description: 'vim swap file', path: 'a/.main.ts.swp', expected: 'temp' },
    { description: 'vim swap file probe 4913', path: 'a/4913', expected: 'temp' },
    { description: 'backup file', path: 'notes.txt~', expected: 'temp' },
    { description: 'emacs lock', path: '.#notes.txt', expected: 'temp' },
    { description: 'emacs auto-save', path: 'a/#notes.txt#', expected: 'temp' },
    { description: 'office owner file', path: '~$report.docx', expected: 'temp' },
    { description: 'libreoffice lock', path: '.~lock.report.odt#', expected: 'temp' },
    { description: 'gio safe save', path: '.goutputstream-AB12CD', expected: 'temp' },
    { description: 'rsync temp file', path: 'dir/.photo.jpg.Xa9bQ2', expected: 'temp' },
    { description: 'a dot file is not an rsync temp file', path: '.bashrc', expected: 'sync' },
    { description: 'a temp name with a newline', path: 'a\nb.tmp', expected: 'temp' },
    { description: 'a temp name with a non-UTF-8 byte', path: 'x\udcffy.tmp', expected: 'temp' },
    { description: 'a file inside a temp-named directory is temp', path: 'build.tmp/out', expected: 'temp' },
    { description: '* matches dot files', path: '.hidden.skip', expected: 'excluded' },
  ])('$description', ({ path, isDir, expected }) => {
    expect(isDir === undefined ? classify(path) : classify(path, isDir)).toBe(expected);
  });

  test('a refused pattern throws a ConfigError', () => {
    expect(() => compilePathClassifier({ excludes: ['!keep'], tempfiles: [] })).toThrow(ConfigError);
  });
});

describe('isPsyncInternal', () => {
  test.each([
    { description: 'the state directory', path: '.psync', expected: true },
    { description: 'under the state directory', path: '.psync/a/b', expected: true },
    { description: 'a nested .psync is an ordinary name', path: 'a/.psync', expected: false },
    { description: 'a name starting with .psync', path: '.psyncrc', expected: false },
    { description: 'a scratch name', path: 'a.1.psync.ignore', expected: true },
    { description: 'the mark alone', path: 'x/.psync.ignore', expected: true },
    { description: 'the mark inside a name', path: 'x/a.psync.ignored', expected: true },
    { description: 'an ordinary path', path: 'a/b', expected: false },
  ])('$description', ({ path, expected }) => {
    expect(isPsyncInternal(path)).toBe(expected);
  });
});

describe('validatePattern', () => {
  test.each([
    { description: 'a plain glob', pattern: '*.o', ok: true },
    { description: 'an anchored directory', pattern: '/build/', ok: true },
    { description: 'globstar components', pattern: 'a/**/b/**', ok: true },
    { description: 'an escaped bang', pattern: '\\!x', ok: true },
    { description: 'empty', pattern: '', ok: false },
    { description: 'blank', pattern: '  ', ok: false },
    { description: 'only slashes', pattern: '//', ok: false },
    { description: 'a NUL byte', pattern: 'a\0b', ok: false },
    { description: 'a newline', pattern: 'a\nb', ok: false },
    { description: 'negation', pattern: '!keep', ok: false },
    { description: 'an rsync include prefix', pattern: '+ foo', ok: false },
    { description: 'an rsync exclude prefix', pattern: '- foo', ok: false },
    { description: 'rsync triple star', pattern: 'dir/***', ok: false },
    { description: 'globstar glued to text', pattern: 'a**b', ok: false },
    { description: 'a brace list (users expect the shell to expand it)', pattern: '*.{jpg,png}', ok: false },
    { description: 'a brace range', pattern: 'f{1..9}', ok: false },
    { description: 'a literal brace written as a class', pattern: '[{]a,b}', ok: true },
    { description: 'braces without a list are literal', pattern: '{a}', ok: true },
  ])('$description', ({ pattern, ok }) => {
    const problem = validatePattern(pattern);
    if (ok) expect(problem).toBeUndefined();
    else expect(problem).toEqual(expect.any(String));
  });
});

describe('toRsyncPatterns', () => {
  test.each([
    { description: 'a base-name pattern stays unanchored', pattern: '*.o', expected: ['*.o'] },
    { description: 'a directory-only base-name pattern', pattern: 'cache/', expected: ['cache/'] },
    { description: 'an anchored pattern keeps its slash', pattern: '/build', expected: ['/build'] },
    { description: 'a middle slash gets anchored', pattern: 'docs/private', expected: ['/docs/private'] },
    { description: 'a directory-only anchored pattern', pattern: 'docs/tmp/', expected: ['/docs/tmp/'] },
    { description: 'leading ** also matches at the top', pattern: '**/gen', expected: ['/gen', '/**/gen'] },
    { description: 'middle ** also matches zero directories', pattern: 'a/**/b', expected: ['/a/b', '/a/**/b'] },
    { description: 'trailing ** also matches the directory itself', pattern: 'logs/**', expected: ['/logs', '/logs/**'] },
    {
      description: 'two ** give four spellings',
      pattern: 'a/**/b/**',
      expected: ['/a/b', '/a/b/**', '/a/**/b', '/a/**/b/**'],
    },
  ])('$description', ({ pattern, expected }) => {
    expect(toRsyncPatterns(pattern)).toEqual(expected);
  });
});

describe('toRsyncFilterArgs', () => {
  test('internal names come first, then excludes and temp files', () => {
    expect(toRsyncFilterArgs({ excludes: ['*.o', 'docs/x'], tempfiles: ['*~'] })).toEqual([
      '--exclude=/.psync',
      '--exclude=/.psync/**',
      '--exclude=*.psync.ignore*',
      '--exclude=*.psync.ignore*/**',
      '--exclude=*.o',
      '--exclude=/docs/x',
      '--exclude=*~',
    ]);
  });

  test('duplicates are emitted once', () => {
    expect(toRsyncFilterArgs({ excludes: ['*.tmp'], tempfiles: ['*.tmp'] })).toEqual([
      '--exclude=/.psync',
      '--exclude=/.psync/**',
      '--exclude=*.psync.ignore*',
      '--exclude=*.psync.ignore*/**',
      '--exclude=*.tmp',
    ]);
  });

  test('a refused pattern throws a ConfigError', () => {
    expect(() => toRsyncFilterArgs({ excludes: [], tempfiles: ['+ x'] })).toThrow(ConfigError);
  });
});
