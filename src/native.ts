/**
 * Loading psync's native addons (native/*.c, built by `npm install` through
 * node-gyp into build/Release) from the package root, found upwards from
 * this module: src/ in tests, dist/src/ when built.
 */

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon `name` (`psync_inotify`, `psync_fs`), or an Error saying why it cannot be loaded. */
export function loadAddon<T>(name: string): T | Error {
  if (process.platform !== 'linux') return new Error(`${name} exists only on Linux`);
  const file = join('build', 'Release', `${name}.node`);
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) return new Error('package root not found');
    dir = parent;
  }
  try {
    return createRequire(import.meta.url)(join(dir, file)) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return new Error(`${file} was not built`);
    return error as Error;
  }
}
