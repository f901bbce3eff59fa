/**
 * `psync --config FILE` as a user runs it: every kind of bad config file is
 * refused with one line naming the setting (exit 2) and syncs nothing; a
 * `.ts` and a `.mjs` config are loaded as they are; and a config with two
 * pairs runs both in one process, where a broken pair (its root missing) is
 * reported and the other syncs both ways.
 */

import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, test } from 'vitest';
import { CLI, waitFor, type Status } from '../support/psync.js';
import { described } from '../support/table.js';
import { tempDir } from '../support/tmp.js';

const EXIT = { ok: 0, usage: 2 } as const;

function psync(args: readonly string[]) {
  return execa(process.execPath, [CLI, ...args], { reject: false, stdin: 'ignore', timeout: 60_000 });
}

/** The entries of `dir`, without psync's own `.psync`. */
const names = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((name) => name !== '.psync').sort();

/** Two roots, the left holding one file, and a config file named `name` with `text` (ROOTS replaced by the roots' settings). */
async function setup(name: string, text: (roots: string) => string): Promise<{ left: string; right: string; config: string }> {
  const base = tempDir('psync-config-');
  const [left, right] = [join(base, 'left'), join(base, 'right')];
  await Promise.all([mkdir(left), mkdir(right)]);
  await writeFile(join(left, 'keep.txt'), 'keep');
  const config = join(base, name);
  await writeFile(config, text(`"srcRoot": ${JSON.stringify(left)}, "dstRoot": ${JSON.stringify(right)}`));
  return { left, right, config };
}

/** The one `psync: ` line, which must be the only and the last line on stderr. */
function report(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^psync: /);
  return lines[0]!;
}

describe('a bad config file: exit 2, one line naming the setting and what it expects, nothing synced', () => {
  test.each(described<{ description: string; name: string; text: (roots: string) => string; message: RegExp }>([
    { description: 'an unknown key (the typo remotehost would have run in local mode)', name: 'c.json', text: (roots) => `{ ${roots}, "remotehost": "loop" }`, message: /unknown setting remotehost \(did you mean remoteHost\?\)/ },
    { description: 'a string for a list (it would have been split into characters)', name: 'c.json', text: (roots) => `{ ${roots}, "excludes": "*.log" }`, message: /excludes: expected a list .*got the string "\*\.log"/ },
    { description: 'a string for a boolean', name: 'c.json', text: (roots) => `{ ${roots}, "force": "no" }`, message: /force: expected true or false, got the string "no"/ },
    { description: 'a string for a number', name: 'c.json', text: (roots) => `{ ${roots}, "intervalSeconds": "0.5" }`, message: /intervalSeconds: expected a number, got the string "0\.5"/ },
    { description: 'a wrong type in the second pair names that pair', name: 'c.json', text: (roots) => `{ "pairs": [{ "name": "a", ${roots} }, { "name": "b", ${roots}, "rsyncExtra": "--bwlimit=1" }] }`, message: /pairs\[1\]\.rsyncExtra: expected a list/ },
    { description: 'two pairs of one name', name: 'c.json', text: (roots) => `{ "pairs": [{ "name": "a", ${roots} }, { "name": "a", ${roots} }] }`, message: /pairs\[1\]\.name: another pair is named "a" already/ },
    { description: 'a JSON syntax error', name: 'c.json', text: (roots) => `{ ${roots}, }`, message: /is not valid JSON: / },
    { description: 'a .ts config with a wrong type', name: 'c.ts', text: (roots) => `export default { ${roots}, force: 'no' as unknown as boolean };\n`, message: /force: expected true or false/ },
    { description: 'a config in an unknown format', name: 'c.yaml', text: () => 'force: true\n', message: /must end in \.json, \.ts/ },
  ]))('%s', async (_description, { name, text, message }) => {
    const { right, config } = await setup(name, text);
    const result = await psync(['-s', '--config', config]);
    expect(result.exitCode, result.stderr).toBe(EXIT.usage);
    const line = report(result.stderr);
    expect(line).toMatch(message);
    expect(line).toContain(config);
    expect(await names(right)).toEqual([]);
  });
});

describe('config files in every format are loaded, and their settings used', () => {
  test.each(described<{ description: string; name: string; text: (roots: string) => string }>([
    { description: 'a .ts file, type annotations and all (no build step)', name: 'psync.config.ts', text: (roots) => `interface Settings { excludes: string[] }\nconst extra: Settings = { excludes: ['*.skip'] };\nexport default { ${roots}, ...extra };\n` },
    { description: 'a .mjs module', name: 'psync.config.mjs', text: (roots) => `export default { ${roots}, excludes: ['*.skip'] };\n` },
    { description: 'a .json file', name: 'psync.config.json', text: (roots) => `{ ${roots}, "excludes": ["*.skip"] }` },
  ]))('%s', async (_description, { name, text }) => {
    const { left, right, config } = await setup(name, text);
    await writeFile(join(left, 'not-this.skip'), 'excluded');
    const result = await psync(['-s', '--config', config]);
    expect(result.exitCode, result.stderr).toBe(EXIT.ok);
    expect(await names(right)).toEqual(['keep.txt']);
  });

  test('an option on the command line wins over the file', async () => {
    const { right, config } = await setup('c.json', (roots) => `{ ${roots}, "dryRun": false }`);
    const result = await psync(['-s', '-n', '--config', config]);
    expect(result.exitCode, result.stderr).toBe(EXIT.ok);
    expect(await names(right)).toEqual([]);
  });
});

test('two pairs in one config, one broken (its root missing): it is reported, the other syncs both ways; exit 2 after a clean stop', async () => {
  const base = tempDir('psync-pairs-');
  const roots = { goodLeft: join(base, 'good-left'), goodRight: join(base, 'good-right'), brokenLeft: join(base, 'broken-left') };
  await Promise.all(Object.values(roots).map((dir) => mkdir(dir)));
  const missing = join(base, 'not-there');
  const statusFile = join(base, 'good.json');
  const config = join(base, 'pairs.json');
  await writeFile(
    config,
    JSON.stringify({
      intervalSeconds: 0.05,
      pairs: [
        { name: 'broken', srcRoot: roots.brokenLeft, dstRoot: missing },
        { name: 'good', srcRoot: roots.goodLeft, dstRoot: roots.goodRight, statusFile },
      ],
    }),
  );
  const child = execa(process.execPath, [CLI, '--config', config], { reject: false, stdin: 'ignore', buffer: false });
  const output: string[] = [];
  child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const log = (): string => output.join('');
  try {
    const exitedEarly = child.then((result) => {
      throw new Error(`psync exited early (${String(result.exitCode)}): ${log()}`);
    });
    await Promise.race([
      waitFor('the good pair to watch', async () => (JSON.parse(await readFile(statusFile, 'utf8')) as Status).state === 'watching', 30_000),
      exitedEarly,
    ]);
    exitedEarly.catch(() => {});
    await writeFile(join(roots.goodLeft, 'to-right.txt'), 'left to right');
    await writeFile(join(roots.goodRight, 'to-left.txt'), 'right to left');
    await waitFor('the file to reach the right', async () => (await readFile(join(roots.goodRight, 'to-right.txt'), 'utf8')) === 'left to right');
    await waitFor('the file to reach the left', async () => (await readFile(join(roots.goodLeft, 'to-left.txt'), 'utf8')) === 'right to left');
    expect(log()).toMatch(new RegExp(`error .*pair broken not started: DSTROOT ${missing} does not exist`));
  } finally {
    child.kill('SIGTERM');
  }
  const result = await child;
  expect(result.exitCode, log()).toBe(EXIT.usage);
  const last = log().trim().split('\n').at(-1);
  expect(last).toBe(`psync: pair broken: DSTROOT ${missing} does not exist (create it first)`);
  expect(JSON.parse(await readFile(statusFile, 'utf8')) as Status).toMatchObject({ state: 'stopped' });
  expect(await names(roots.brokenLeft)).toEqual([]);
});

test('two pairs with -s: both are reconciled in one process, exit 0 once both are done', async () => {
  const base = tempDir('psync-pairs-');
  const dirs = ['a-left', 'a-right', 'b-left', 'b-right'].map((name) => join(base, name));
  await Promise.all(dirs.map((dir) => mkdir(dir)));
  const [aLeft, aRight, bLeft, bRight] = dirs as [string, string, string, string];
  await writeFile(join(aLeft, 'a.txt'), 'a');
  await writeFile(join(bRight, 'b.txt'), 'b');
  const config = join(base, 'pairs.json');
  await writeFile(config, JSON.stringify({ pairs: [{ name: 'a', srcRoot: aLeft, dstRoot: aRight }, { name: 'b', srcRoot: bLeft, dstRoot: bRight }] }));
  const result = await psync(['-s', '--config', config]);
  expect(result.exitCode, result.stderr).toBe(EXIT.ok);
  expect(await names(aRight)).toEqual(['a.txt']);
  expect(await names(bLeft)).toEqual(['b.txt']);
  expect(result.stderr).not.toMatch(/psync: /);
});
