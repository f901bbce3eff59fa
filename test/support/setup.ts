/**
 * Runs around every test file (vitest setupFiles): psync's archives and logs
 * go to a state directory of the file's own (psync keeps them under
 * $XDG_STATE_HOME/psync), its status and pid files to a runtime directory of
 * its own (never /run/psync), and what the file's tests left in temp dirs goes.
 */

import { afterAll } from 'vitest';
import { removeTempDirs, tempDir } from './tmp.js';

process.env.XDG_STATE_HOME = tempDir('psync-state-');
process.env.XDG_RUNTIME_DIR = tempDir('psync-runtime-');

afterAll(removeTempDirs);
