/** Command-line flags of `npm run bench` and the data-set sizes they select. */

import { parseArgs } from 'node:util';
import { SCENARIO_NAMES, type ScenarioName } from './scenarios.js';
import { TOOL_NAMES, type ToolName } from './tools.js';

export interface Options {
  readonly smoke: boolean;
  readonly runs: number;
  readonly scenarios: readonly ScenarioName[];
  readonly tools: readonly ToolName[];
  readonly latencySamples: number;
  readonly burstFiles: number;
  readonly burstDirs: number;
  readonly renameFiles: number;
  readonly mergeFiles: number;
  readonly idleFiles: number;
  readonly idleSeconds: number;
  /** Wait after a tool is ready before the idle window opens (not measured). */
  readonly idleWarmupSeconds: number;
  readonly scaleFiles: number;
  /** Files in each tree of the start-up scenario (100 to a directory; --scale: issue 9's 100,000). */
  readonly startupFiles: number;
  /** Where the JSON goes; undefined: bench/results/<timestamp>.json. */
  readonly out: string | undefined;
  /** Another build of psync to measure (e.g. a snapshot of a commit); undefined: this checkout's. */
  readonly psyncCli: string | undefined;
}

/** Issue 4's sizes. */
const FULL = {
  runs: 3,
  latencySamples: 30,
  burstFiles: 10_000,
  burstDirs: 100,
  renameFiles: 10_000,
  mergeFiles: 100_000,
  idleFiles: 100_000,
  idleSeconds: 60,
  idleWarmupSeconds: 5,
  scaleFiles: 1_000_000,
  // Not issue 9's 100,000 by default: copying the trees and building the
  // archive take some 4 minutes there on 2 cores; 20,000 about one.
  startupFiles: 20_000,
};

/** The start-up scenario's size with --scale: issue 9's target. */
const STARTUP_FILES_SCALE = 100_000;

/** Tiny sizes: every code path once, well under a minute. */
const SMOKE: typeof FULL = {
  runs: 1,
  latencySamples: 3,
  burstFiles: 100,
  burstDirs: 10,
  renameFiles: 100,
  mergeFiles: 300,
  idleFiles: 300,
  idleSeconds: 1,
  idleWarmupSeconds: 0.5,
  scaleFiles: 500,
  startupFiles: 300,
};

const SMOKE_TOOLS: readonly ToolName[] = ['psync', 'rsync'];

export const USAGE = `npm run bench -- [options]

  --smoke            tiny data sets, 1 run each, psync and rsync only unless --tools
                     (a check that the harness works, not a measurement)
  --scale            also run scenario 6 (start-up on 1,000,000 files; slow to create),
                     and scenario 7 (startup) on ${STARTUP_FILES_SCALE.toLocaleString('en-US')} files instead of ${FULL.startupFiles.toLocaleString('en-US')}
  --runs N           runs per figure (default ${FULL.runs}; latency takes ${FULL.latencySamples} samples per session)
  --only a,b         scenarios: ${SCENARIO_NAMES.join(', ')}
  --tools a,b        tools: ${TOOL_NAMES.join(', ')} (rsync is the floor the ratios refer to)
  --factor F         multiply every file count by F (e.g. 0.1 for a quicker, smaller run)
  --idle-seconds S   length of each idle window (default ${FULL.idleSeconds})
  --out FILE         JSON results file (default bench/results/<timestamp>.json)
  --psync-cli FILE   the psync cli.js to measure (default: this checkout's dist/src/cli.js)
  -h, --help`;

function list<T extends string>(value: string | undefined, allowed: readonly T[], what: string): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((item) => item.trim()).filter((item) => item !== '');
  for (const item of items) if (!(allowed as readonly string[]).includes(item)) throw new Error(`unknown ${what} "${item}" (known: ${allowed.join(', ')})`);
  return items as T[];
}

function positive(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) throw new Error(`${what} must be a positive number (got "${value}")`);
  return number;
}

/** undefined: --help was asked for. */
export function parseOptions(argv: readonly string[]): Options | undefined {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      smoke: { type: 'boolean', default: false },
      scale: { type: 'boolean', default: false },
      runs: { type: 'string' },
      only: { type: 'string' },
      tools: { type: 'string' },
      factor: { type: 'string' },
      'idle-seconds': { type: 'string' },
      out: { type: 'string' },
      'psync-cli': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return undefined;
  const base = values.smoke ? SMOKE : FULL;
  const factor = positive(values.factor, '--factor') ?? 1;
  const files = (count: number): number => Math.max(1, Math.round(count * factor));
  const runs = positive(values.runs, '--runs');
  if (runs !== undefined && !Number.isInteger(runs)) throw new Error('--runs must be a whole number');
  const only = list(values.only, SCENARIO_NAMES, 'scenario');
  const scenarios = only ?? SCENARIO_NAMES.filter((name) => name !== 'scale' || values.scale);
  return {
    smoke: values.smoke,
    runs: runs ?? base.runs,
    scenarios,
    // The smoke run checks the harness in `npm test`: psync and the floor only, unless asked.
    tools: list(values.tools, TOOL_NAMES, 'tool') ?? (values.smoke ? SMOKE_TOOLS : TOOL_NAMES),
    latencySamples: base.latencySamples,
    burstFiles: files(base.burstFiles),
    burstDirs: Math.min(files(base.burstFiles), base.burstDirs),
    renameFiles: files(base.renameFiles),
    mergeFiles: files(base.mergeFiles),
    idleFiles: files(base.idleFiles),
    idleSeconds: positive(values['idle-seconds'], '--idle-seconds') ?? base.idleSeconds,
    idleWarmupSeconds: base.idleWarmupSeconds,
    scaleFiles: files(base.scaleFiles),
    startupFiles: files(values.scale && !values.smoke ? STARTUP_FILES_SCALE : base.startupFiles),
    out: values.out,
    psyncCli: values['psync-cli'],
  };
}
