/** Runs around every test file (vitest setupFiles): what the file's tests left in temp dirs goes. */

import { afterAll } from 'vitest';
import { removeTempDirs } from './tmp.js';

afterAll(removeTempDirs);
