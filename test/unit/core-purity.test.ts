import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { described } from '../support/table.js';


/**
 * src/core is the pure decision core (STYLE.md section 1): it may import
 * only other core modules and pure libraries, and never reads a clock or
 * starts a timer. This reads the sources and keeps that honest.
 */

const CORE_DIR = new URL('../../src/core/', import.meta.url);
const ALLOWED_PACKAGES = new Set(['micromatch']);
const FORBIDDEN_CALLS = ['Date.now(', 'setTimeout(', 'setInterval(', 'setImmediate(', 'performance.now(', 'process.hrtime', 'new Date()'];

/** Every module specifier: static imports and re-exports, side-effect imports, dynamic import() and require(). */
function specifiersOf(source: string): string[] {
  const patterns = [
    /^\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\s*\(\s*['"`]([^'"`]+)['"`]\s*\)/g,
    /\brequire\s*\(\s*['"`]([^'"`]+)['"`]\s*\)/g,
  ];
  return patterns.flatMap((pattern) => [...source.matchAll(pattern)].map((m) => m[1]!));
}

/** Dynamic imports or requires whose module name is not a literal cannot be checked: they are refused too. */
const hasOpaqueLoad = (source: string): boolean => /\bimport\s*\(\s*[^'"`\s)]/.test(source) || /\brequire\s*\(\s*[^'"`\s)]/.test(source);

const stripComments = (source: string): string => source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');

/** Problems with one core source file, empty when it is pure. */
function impurities(source: string): string[] {
  const problems: string[] = [];
  for (const specifier of specifiersOf(source)) {
    if (!specifier.startsWith('./') && !ALLOWED_PACKAGES.has(specifier)) problems.push(`imports ${specifier}`);
  }
  const code = stripComments(source);
  if (hasOpaqueLoad(code)) problems.push('loads a module by a computed name');
  for (const call of FORBIDDEN_CALLS) if (code.includes(call)) problems.push(`calls ${call}`);
  return problems;
}

const coreFiles = readdirSync(CORE_DIR).filter((name) => name.endsWith('.ts'));

describe('src/core is pure', () => {
  test('there are core modules to check', () => {
    expect(coreFiles.length).toBeGreaterThanOrEqual(10);
    expect(coreFiles).toContain('filterRules.ts');
  });

  test.each(described(coreFiles.map((name) => ({ description: name, name }))))(
    '%s imports only ./ modules and micromatch, no clock or timer',
    (_description, { name }) => {
      const source = readFileSync(new URL(name, CORE_DIR), 'utf8');
      expect(impurities(source)).toEqual([]);
    },
  );
});

describe('the purity check itself', () => {
  test.each(described<{ description: string; source: string; problems: string[] }>([
    { description: 'relative imports are fine', source: "import { a } from './a.js';\nimport type { B } from './b.js';", problems: [] },
    { description: 'micromatch is fine', source: "import micromatch from 'micromatch';", problems: [] },
    { description: 'a re-export from a core module is fine', source: "export { x } from './x.js';", problems: [] },
    { description: 'node:fs', source: "import { readFileSync } from 'node:fs';", problems: ['imports node:fs'] },
    { description: 'bare fs', source: "import fs from 'fs';", problems: ['imports fs'] },
    { description: 'child_process over several lines', source: "import {\n  spawn,\n} from 'child_process';", problems: ['imports child_process'] },
    { description: 'a side-effect import', source: "import 'net';", problems: ['imports net'] },
    { description: 'execa', source: "import { execa } from 'execa';", problems: ['imports execa'] },
    { description: 'ssh2 through a re-export', source: "export { Client } from 'ssh2';", problems: ['imports ssh2'] },
    { description: 'a module outside core', source: "import { log } from '../log.js';", problems: ['imports ../log.js'] },
    { description: 'a dynamic import', source: "const fs = await import('node:fs');", problems: ['imports node:fs'] },
    { description: 'a require', source: "const cp = require('child_process');", problems: ['imports child_process'] },
    { description: 'a computed dynamic import', source: 'const m = await import(name);', problems: ['loads a module by a computed name'] },
    { description: 'Date.now()', source: 'const now = Date.now();', problems: ['calls Date.now('] },
    { description: 'setTimeout', source: 'setTimeout(() => {}, 10);', problems: ['calls setTimeout('] },
    { description: 'setInterval', source: 'setInterval(tick, 10);', problems: ['calls setInterval('] },
    { description: 'performance.now()', source: 'const t = performance.now();', problems: ['calls performance.now('] },
    { description: 'a clock named in a comment is fine', source: '// never call Date.now() here\n/* nor setTimeout() */\nconst x = 1;', problems: [] },
  ]))('%s', (_description, { source, problems }) => {
    expect(impurities(source)).toEqual(problems);
  });
});
