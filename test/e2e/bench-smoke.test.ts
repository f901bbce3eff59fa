/**
 * The benchmark's smoke run (`npm run bench -- --smoke`), so the harness
 * cannot rot: it compiles bench/ the way `npm run bench` does, runs every
 * scenario on tiny data against psync and the floor over a private sshd, and
 * checks the JSON it writes. No figure is compared with a threshold: on a
 * shared machine timings say nothing; that every figure exists and is a
 * finite number does.
 */

import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HARNESS = join(ROOT, 'dist-bench', 'bench', 'run.js');
const CLI = join(ROOT, 'dist', 'src', 'cli.js');
const SCENARIOS = ['latency', 'burst', 'rename', 'merge', 'idle', 'scale', 'startup'];
const COMPILE_TIMEOUT_MS = 120_000;
const SMOKE_TIMEOUT_MS = 240_000;

interface Figure {
  scenario: string;
  metric: string;
  unit: string;
  tool: string;
  required: boolean;
  samples: number[];
  median: number | null;
  min: number | null;
  max: number | null;
  ratioToFloor: number | null;
  error?: string;
}

interface Results {
  options: { smoke: boolean };
  tools: { name: string; available: boolean }[];
  scenarios: { name: string; metrics: { label: string; required: boolean }[] }[];
  figures: Figure[];
}

describe('bench --smoke', () => {
  let dir: string;
  let results: Results;
  let stdout: string;

  beforeAll(async () => {
    // `npm test` has built dist/ already; bench/ has its own tsconfig (output in dist-bench/).
    await stat(CLI).catch(() => {
      throw new Error(`${CLI} is missing: run npm run build first`);
    });
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    await execa(process.execPath, [tsc, '-p', join(ROOT, 'bench', 'tsconfig.json')], { cwd: ROOT, stdin: 'ignore' });

    dir = await mkdtemp(join(tmpdir(), 'psync-bench-smoke-'));
    const out = join(dir, 'results.json');
    const run = await execa(process.execPath, [HARNESS, '--smoke', '--scale', '--out', out], {
      cwd: ROOT,
      stdin: 'ignore',
      reject: false,
      timeout: SMOKE_TIMEOUT_MS,
    });
    if (run.exitCode !== 0) throw new Error(`bench --smoke exited ${String(run.exitCode)}\n${run.stderr}\n${run.stdout}`);
    stdout = run.stdout;
    results = JSON.parse(await readFile(out, 'utf8')) as Results;
  }, COMPILE_TIMEOUT_MS + SMOKE_TIMEOUT_MS);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('ran the smoke sizes with psync and the floor', () => {
    expect(results.options.smoke).toBe(true);
    expect(results.tools.filter((tool) => tool.available).map((tool) => tool.name)).toEqual(['psync', 'rsync']);
    expect(results.scenarios.map((scenario) => scenario.name)).toEqual(SCENARIOS);
  });

  it.each(SCENARIOS.flatMap((scenario) => ['psync', 'rsync'].map((tool) => ({ scenario, tool }))))(
    '$scenario: every required figure of $tool is a finite number',
    ({ scenario, tool }) => {
      const required = results.scenarios.find((s) => s.name === scenario)?.metrics.filter((metric) => metric.required) ?? [];
      expect(required.length).toBeGreaterThan(0);
      for (const metric of required) {
        const figure = results.figures.find((f) => f.scenario === scenario && f.tool === tool && f.metric === metric.label);
        expect(figure, `${scenario} / ${metric.label} / ${tool}`).toBeDefined();
        if (figure === undefined) continue;
        expect(figure.error, `${scenario} / ${metric.label} / ${tool}`).toBeUndefined();
        expect(figure.samples.length).toBeGreaterThan(0);
        for (const sample of figure.samples) expect(Number.isFinite(sample)).toBe(true);
        for (const value of [figure.median, figure.min, figure.max]) expect(Number.isFinite(value)).toBe(true);
        expect(figure.min as number).toBeLessThanOrEqual(figure.median as number);
        expect(figure.median as number).toBeLessThanOrEqual(figure.max as number);
      }
    },
  );

  it('gives each psync figure its ratio to the floor', () => {
    const psync = results.figures.filter((f) => f.tool === 'psync' && f.unit !== 'fraction' && f.median !== null);
    expect(psync.length).toBeGreaterThan(0);
    for (const figure of psync) {
      const floor = results.figures.find((f) => f.tool === 'rsync' && f.scenario === figure.scenario && f.metric === figure.metric);
      if (floor?.median == null || floor.median === 0) expect(figure.ratioToFloor).toBeNull();
      else expect(figure.ratioToFloor).toBeCloseTo((figure.median as number) / floor.median, 9);
    }
  });

  it('prints a Markdown table with a row per scenario', () => {
    expect(stdout).toMatch(/^\| scenario \| metric \| psync \| rsync \(floor\) \|$/m);
    for (const scenario of SCENARIOS) expect(stdout).toMatch(new RegExp(`^\\| ${scenario} \\|`, 'm'));
  });
});
