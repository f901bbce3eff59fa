/**
 * Reading a config file (`--config FILE`): `.json`, or a module (`.ts`,
 * `.mts`, `.js`, `.mjs`) whose default export is the settings (a `.ts` file
 * is compiled on the fly by jiti: no build step). Whatever the format, the
 * settings are checked against the schema (config.ts) and the first problem
 * is one line naming the setting (`pairs[1].excludes`) and what was
 * expected (`describeIssue`).
 */

import { readFile } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { createJiti } from 'jiti';
import type { z } from 'zod';
import { configFileSchema, type ConfigFile } from './config.js';
import { ConfigError } from './core/errors.js';

const MODULE_EXTENSIONS = new Set(['.ts', '.mts', '.js', '.mjs']);

/** The checked settings of the config file at `path`; throws ConfigError with one line. */
export async function loadConfigFile(path: string): Promise<ConfigFile> {
  const absolute = resolve(path);
  const extension = extname(absolute);
  let value: unknown;
  if (extension === '.json') {
    let text: string;
    try {
      text = await readFile(absolute, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read the config file ${absolute}: ${(error as Error).message}`, { cause: error });
    }
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new ConfigError(`the config file ${absolute} is not valid JSON: ${jsonErrorWhere(text, firstLine((error as Error).message))}`, { cause: error });
    }
  } else if (MODULE_EXTENSIONS.has(extension)) {
    try {
      const jiti = createJiti(import.meta.url, { moduleCache: false, fsCache: false });
      value = await jiti.import(absolute, { default: true });
    } catch (error) {
      throw new ConfigError(`cannot load the config file ${absolute}: ${firstLine((error as Error).message)}`, { cause: error });
    }
  } else {
    throw new ConfigError(`the config file ${absolute} must end in .json, .ts, .mts, .js or .mjs`);
  }
  const checked = configFileSchema.safeParse(value);
  if (!checked.success) {
    const [first] = checked.error.issues;
    const more = checked.error.issues.length > 1 ? ` (and ${checked.error.issues.length - 1} more)` : '';
    throw new ConfigError(`the config file ${absolute}: ${describeIssue(first!, value)}${more}`);
  }
  return checked.data;
}

const firstLine = (text: string): string => text.split('\n')[0]!.trim();

/** JSON.parse's message with the line and column of its `position N` (Node 20 gives the offset only). */
export function jsonErrorWhere(text: string, message: string): string {
  const match = / at position (\d+)/.exec(message);
  if (match === null || /\(line \d+/.test(message)) return message;
  const before = text.slice(0, Number(match[1]));
  const line = before.split('\n').length;
  return `${message} (line ${line}, column ${before.length - before.lastIndexOf('\n')})`;
}

/** `pairs[1].excludes` for the path ['pairs', 1, 'excludes']. */
export function settingPath(path: readonly PropertyKey[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i === 0 ? '' : '.'}${String(part)}`)).join('');
}

const EXPECTED: Record<string, string> = {
  array: 'a list (["a", "b"])',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  object: 'an object ({ ... })',
};

/** One line for a schema problem: the setting's path, what it expects, and what it got. */
export function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const where = issue.path.length === 0 ? 'the top level' : settingPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeys(issue.path);
      return issue.keys
        .map((key) => {
          const like = known.find((name) => name.toLowerCase() === key.toLowerCase());
          return `unknown setting ${settingPath([...issue.path, key])}${like === undefined ? '' : ` (did you mean ${like}?)`}`;
        })
        .join('; ');
    }
    case 'invalid_type':
      if (valueAt(input, issue.path) === undefined) return `${where} is missing (${EXPECTED[issue.expected] ?? issue.expected})`;
      return `${where}: expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${shown(valueAt(input, issue.path))}`;
    case 'invalid_value':
      return `${where}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${shown(valueAt(input, issue.path))}`;
    default:
      return `${where}: ${issue.message}`;
  }
}

/** The setting names known where an unknown key was found: a pair's, or the file's top level. */
function knownKeys(path: readonly PropertyKey[]): string[] {
  const shape = configFileSchema.shape;
  if (path[0] === 'pairs') return Object.keys(shape.pairs.unwrap().element.shape);
  return Object.keys(shape);
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const part of path) value = typeof value === 'object' && value !== null ? (value as Record<PropertyKey, unknown>)[part] : undefined;
  return value;
}

/** A value as the user wrote it, short. */
function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value) ?? String(value);
  return `${typeof value === 'string' ? 'the string' : typeof value} ${text.length > 40 ? `${text.slice(0, 40)}...` : text}`;
}
