/**
 * `npm run bench`: psync against the floor (plain `rsync -a` over one reused
 * SSH connection), lsyncd and unison, on the same data in the same run, over
 * a private sshd on 127.0.0.1 (the end-to-end tests' fixture). Prints a
 * Markdown table and writes the figures as JSON. See README "Benchmark".
 */

import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { startSshd, type SshdFixture } from '../test/support/sshd.js';
import { parseOptions, USAGE, type Options } from './options.js';
import { SCENARIOS, type Context, type Scenario, type ToolResult } from './scenarios.js';
import { addRatios, markdownTable, summarize, type Figure } from './stats.js';
import { closeAllMasters, DEFAULT_PSYNC_CLI, lsyncdTool, psyncTool, RsyncFloor, unisonTool, waitSshdQuiet, type BenchEnv, type SessionTool, type ToolName } from './tools.js';
import { removeTree } from './trees.js';

const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));

interface ToolInfo {
  readonly name: ToolName;
  readonly available: boolean;
  readonly version: string;
  readonly note: string;
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function version(file: string, args: string[]): Promise<string> {
  const result = await execa(file, args, { reject: false, stdin: 'ignore' });
  return `${result.stdout}\n${result.stderr}`.trim().split('\n')[0] ?? '';
}

/** The version in the package.json above the CLI; for this checkout's own build also its commit. */
async function psyncVersion(cli: string): Promise<string> {
  const version = await readFile(join(dirname(cli), '..', '..', 'package.json'), 'utf8').then(
    (text) => (JSON.parse(text) as { version?: string }).version ?? '?',
    () => '?',
  );
  if (cli !== resolve(DEFAULT_PSYNC_CLI)) return version;
  const git = (args: string[]): Promise<string> =>
    execa('git', args, { cwd: dirname(cli), reject: false, stdin: 'ignore' }).then((result) => (result.exitCode === 0 ? result.stdout.trim() : ''));
  const commit = await git(['rev-parse', '--short', 'HEAD']);
  if (commit === '') return version;
  const dirty = (await git(['status', '--porcelain', '--', ':/src', ':/helpers', ':/native'])) !== '';
  return `${version} (${commit}${dirty ? ' with uncommitted changes in src/helpers/native' : ''})`;
}

function figuresFor(scenario: Scenario, tool: ToolName, outcome: ToolResult | Error): Figure[] {
  return scenario.metrics.map((metric) => {
    const samples = outcome instanceof Error ? [] : (outcome.values[metric.key] ?? []);
    const figure: Figure = {
      scenario: scenario.name,
      metric: metric.label,
      unit: metric.unit,
      tool,
      required: metric.required,
      samples,
      ...summarize(samples, metric.p95 === true),
      ratioToFloor: null,
      notes: outcome instanceof Error ? [] : outcome.notes,
      ...(outcome instanceof Error ? { error: outcome.message } : {}),
    };
    return figure;
  });
}

async function runScenario(
  scenario: Scenario,
  options: Options,
  env: BenchEnv,
  floor: RsyncFloor,
  tools: readonly ToolName[],
  sessions: ReadonlyMap<ToolName, SessionTool>,
): Promise<{ figures: Figure[]; details: Record<string, unknown> }> {
  const dir = join(env.work, scenario.name);
  await mkdir(dir, { recursive: true });
  const ctx: Context = { env, options, floor, dir, log };
  const figures: Figure[] = [];
  const details: Record<string, unknown> = {};
  try {
    log(`${scenario.name}: preparing data`);
    await scenario.prepare(ctx);
    for (const tool of tools) {
      log(`${scenario.name}: ${tool}`);
      let outcome: ToolResult | Error;
      try {
        outcome = await scenario.run(ctx, tool, sessions.get(tool));
        if (Object.keys(outcome.details).length > 0) details[tool] = outcome.details;
      } catch (error) {
        outcome = error instanceof Error ? error : new Error(String(error));
        log(`${scenario.name}: ${tool} failed: ${outcome.message}`);
        await waitSshdQuiet(env);
      }
      figures.push(...figuresFor(scenario, tool, outcome));
    }
  } finally {
    await removeTree(dir);
  }
  return { figures, details };
}

async function main(): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (options === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const startedAt = new Date();
  const load = loadavg();
  const work = await mkdtemp(join(tmpdir(), 'psync-bench-'));
  let sshd: SshdFixture | undefined;
  const stop = async (): Promise<void> => {
    await closeAllMasters();
    await sshd?.stop();
    await removeTree(work);
  };
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: cleaning up`);
    void stop().finally(() => process.exit(130));
  };
  // `on`, not `once`: while our listener is registered, execa's exit hook does
  // not re-raise the signal and kill us before the cleanup is done.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    sshd = await startSshd();
    const sshdPid = Number((await readFile(join(sshd.dir, 'sshd.pid'), 'utf8')).trim());
    const psyncCli = resolve(options.psyncCli ?? DEFAULT_PSYNC_CLI);
    const env: BenchEnv = { host: sshd.host, sshConfig: sshd.configFile, sshdPid, work, psyncCli };
    const floor = new RsyncFloor(env);

    const sessionTools = new Map<ToolName, SessionTool>();
    const toolInfo: ToolInfo[] = [];
    for (const name of options.tools) {
      if (name === 'rsync') {
        toolInfo.push({ name, available: true, version: await version('rsync', ['--version']), note: `plain rsync -a -e "${floor.master.rsh()}"` });
        continue;
      }
      const tool = name === 'psync' ? psyncTool(env) : name === 'lsyncd' ? lsyncdTool(env) : unisonTool(env);
      const missing = await tool.unavailable();
      const versionLine =
        name === 'psync'
          ? `psync ${await psyncVersion(psyncCli)}, ${psyncCli}`
          : missing === undefined
            ? await version(name, name === 'lsyncd' ? ['--version'] : ['-version'])
            : '';
      toolInfo.push({ name, available: missing === undefined, version: versionLine, note: missing ?? tool.note });
      if (missing === undefined) sessionTools.set(name, tool);
      else log(`skipping ${name}: ${missing}`);
    }
    const tools = toolInfo.filter((info) => info.available).map((info) => info.name);

    const figures: Figure[] = [];
    const details: Record<string, unknown> = {};
    for (const name of options.scenarios) {
      const scenario = SCENARIOS.find((s) => s.name === name) as Scenario;
      const outcome = await runScenario(scenario, options, env, floor, tools, sessionTools);
      figures.push(...outcome.figures);
      details[name] = outcome.details;
    }
    addRatios(figures);

    const table = markdownTable(figures, tools);
    const header = [
      `## psync benchmark, ${startedAt.toISOString()}${options.smoke ? ' (smoke: tiny sizes, not a measurement)' : ''}`,
      '',
      `${cpus().length} cores, load average ${load.map((value) => value.toFixed(2)).join(' ')} at start; loopback sshd; ${options.runs} run(s) per figure.`,
      ...toolInfo.map((info) => `- **${info.name}** ${info.version ? `(${info.version})` : ''}: ${info.available ? info.note : `skipped: ${info.note}`}`),
      '',
    ].join('\n');
    process.stdout.write(`${header}\n${table}\n`);

    const out = options.out ?? join(RESULTS_DIR, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    await mkdir(dirname(out), { recursive: true });
    const json = {
      version: 1,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      machine: { cores: cpus().length, loadAverageAtStart: load, node: process.version, kernel: release() },
      options,
      tools: toolInfo,
      scenarios: SCENARIOS.filter((s) => options.scenarios.includes(s.name)).map((s) => ({ name: s.name, title: s.title, metrics: s.metrics })),
      figures,
      details,
    };
    await writeFile(out, `${JSON.stringify(json, null, 2)}\n`);
    log(`results written to ${out}`);
    const failed = figures.filter((figure) => figure.error !== undefined);
    return failed.length > 0 ? 1 : 0;
  } finally {
    await stop();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
