/**
 * Spate as a user gets it: `npm pack` the repository, install the tarball into fresh projects in
 * a temporary directory, and use it from there —
 * - a TypeScript project (strict, NodeNext, exactOptionalPropertyTypes) type-checks the README's
 *   examples with and without skipLibCheck, compiles them with tsc and runs them with node;
 * - a plain JavaScript (ESM) project imports `spate`, `spate/testing` and `spate/sketch` and runs
 *   a small pipeline;
 * - the installed `spate` command runs, from the compiled dist/ (the project has no tsx).
 * One pack and one install are shared by every case.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readmeExamples, REPO, sameOutput } from './readme-examples.ts';

const exec = promisify(execFile);
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const examples = readmeExamples();
/** Generous: each step is a tsc or npm run, slow on a busy 2-core machine (seconds when idle). */
const SLOW = 180_000;

/**
 * The environment for child npm and node processes. Under `npm test`, npm exports its lifecycle
 * variables, and `npm_config_local_prefix` points at this repository: drop those so that the
 * install in the temporary project is the temporary project's own.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_lifecycle_|npm_package_|npm_command$|npm_config_local_prefix$|INIT_CWD$)/i.test(k)) continue;
    env[k] = v;
  }
  // The installed bin starts with `#!/usr/bin/env node`: this node first.
  env['PATH'] = `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`;
  return env;
}
const env = cleanEnv();

async function sh(command: string, args: string[], cwd: string, timeout = 150_000): Promise<{ stdout: string; stderr: string }> {
  try {
    return await exec(command, args, { cwd, env, timeout, maxBuffer: 16 << 20 });
  } catch (e) {
    const err = e as Error & { stdout?: string; stderr?: string; code?: number };
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) failed with ${err.code}:\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

function installedVersion(name: string): string {
  return (JSON.parse(readFileSync(join(REPO, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

let dir: string;
let project: string;
let spate: string;
let tarball: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spate-package-'));
  // prepack builds dist/ first.
  await sh(NPM, ['pack', '--pack-destination', dir, '--silent'], REPO, SLOW);
  const packed = readdirSync(dir).filter((f) => f.endsWith('.tgz'));
  expect(packed).toHaveLength(1);
  tarball = join(dir, packed[0]!);

  project = join(dir, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'spate-user', private: true, type: 'module' }, null, 2));
  await sh(
    NPM,
    [
      'install',
      tarball,
      `typescript@${installedVersion('typescript')}`,
      `@types/node@${installedVersion('@types/node')}`,
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--loglevel=error',
    ],
    project,
    SLOW,
  );
  spate = join(project, 'node_modules', 'spate');
}, 2 * SLOW);

afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

interface Manifest {
  exports: Record<string, string | Record<string, string>>;
  types?: string;
  main?: string;
  bin: Record<string, string>;
}

/** Relative module specifiers of a declaration file (imports, re-exports, `import("…")` types). */
function relativeSpecifiers(path: string): string[] {
  const info = ts.preProcessFile(readFileSync(path, 'utf8'), true, true);
  return info.importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('./') || s.startsWith('../'));
}

function* files(root: string, suffix: string): Generator<string> {
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const path = join(root, entry.name);
    if (entry.isDirectory()) yield* files(path, suffix);
    else if (entry.name.endsWith(suffix)) yield path;
  }
}

describe('the packed package', () => {
  it('publishes types and code from dist/, for every entry point', () => {
    const manifest = JSON.parse(readFileSync(join(spate, 'package.json'), 'utf8')) as Manifest;
    expect(Object.keys(manifest.exports)).toEqual(expect.arrayContaining(['.', './testing', './sketch']));
    for (const [entry, target] of Object.entries(manifest.exports)) {
      if (entry === './package.json') continue;
      expect(typeof target, entry).toBe('object');
      const conditions = target as Record<string, string>;
      // `types` first: TypeScript takes the first condition that matches.
      expect(Object.keys(conditions)[0], entry).toBe('types');
      expect(conditions['types'], entry).toMatch(/^\.\/dist\/.*\.d\.ts$/);
      for (const [condition, path] of Object.entries(conditions)) {
        if (condition !== 'types') expect(path, `${entry} ${condition}`).toMatch(/^\.\/dist\/.*\.js$/);
        expect(existsSync(join(spate, path)), `${entry} ${condition}: ${path}`).toBe(true);
      }
    }
    expect(manifest.types).toMatch(/^\.\/dist\/.*\.d\.ts$/);
    expect(manifest.main).toMatch(/^\.\/dist\/.*\.js$/);
  });

  it('has declaration files that import .js, each with its .d.ts next to it', () => {
    const problems: string[] = [];
    let count = 0;
    for (const path of files(join(spate, 'dist'), '.d.ts')) {
      for (const spec of relativeSpecifiers(path)) {
        count++;
        const where = `${relative(spate, path)}: '${spec}'`;
        if (!spec.endsWith('.js')) problems.push(`${where} does not end in .js`);
        else if (!existsSync(join(dirname(path), spec.replace(/\.js$/, '.d.ts')))) problems.push(`${where} has no .d.ts`);
      }
    }
    expect(problems).toEqual([]);
    expect(count).toBeGreaterThan(50);
  });

  it('ships no tests', () => {
    const shipped = [...files(spate, '.ts')].map((p) => relative(spate, p));
    expect(shipped.filter((p) => p.endsWith('.test.ts') || p.endsWith('.test.d.ts'))).toEqual([]);
  });
});

describe('a TypeScript project using the package', () => {
  const compilerOptions = {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    exactOptionalPropertyTypes: true,
    skipLibCheck: false,
    types: ['node'],
    rootDir: 'src',
    outDir: 'build',
  };

  beforeAll(() => {
    mkdirSync(join(project, 'src'), { recursive: true });
    for (const e of examples) writeFileSync(join(project, 'src', e.file), e.code);
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['src'] }, null, 2));
    writeFileSync(
      join(project, 'tsconfig.skip-lib-check.json'),
      JSON.stringify({ extends: './tsconfig.json', compilerOptions: { skipLibCheck: true } }, null, 2),
    );
  });

  const tsc = join('node_modules', 'typescript', 'bin', 'tsc');

  it('type-checks the README examples with skipLibCheck: false', async () => {
    await sh(process.execPath, [tsc, '-p', 'tsconfig.json', '--noEmit'], project);
  }, SLOW);

  it('type-checks the README examples with skipLibCheck: true', async () => {
    await sh(process.execPath, [tsc, '-p', 'tsconfig.skip-lib-check.json', '--noEmit'], project);
  }, SLOW);

  it('compiles the README examples with tsc and runs them with node', async () => {
    await sh(process.execPath, [tsc, '-p', 'tsconfig.json'], project);
    const runnable = examples.filter((e) => e.run);
    expect(runnable.length).toBeGreaterThan(0);
    for (const e of runnable) {
      const { stdout } = await sh(process.execPath, [join('build', e.file.replace(/\.ts$/, '.js'))], project, 60_000);
      if (e.output !== undefined && !sameOutput(stdout, e.output)) expect(stdout, `README.md:${e.line}`).toBe(e.output);
    }
  }, SLOW);
});

describe('a JavaScript project using the package', () => {
  it('imports spate, spate/testing and spate/sketch and runs a pipeline', async () => {
    mkdirSync(join(project, 'js'), { recursive: true });
    writeFileSync(
      join(project, 'js', 'main.js'),
      `import { Pipeline, ArraySource, CollectSink, tumbling, count } from 'spate';
import { OperatorHarness } from 'spate/testing';
import { approxDistinct } from 'spate/sketch';

const clicks = [
  { user: 'ann', time: 1_000 },
  { user: 'bob', time: 2_000 },
  { user: 'ann', time: 3_000 },
  { user: 'ann', time: 12_000 },
];
const p = new Pipeline();
const source = p.source(new ArraySource(clicks), { id: 'clicks', timestamp: (c) => c.time });
const perUser = new CollectSink();
source.keyBy((c) => c.user).window(tumbling(10_000)).aggregate(count(), (user, n, w) => ({ user, n, start: w.start })).sink(perUser);
const distinct = new CollectSink();
source.windowAll(tumbling(10_000)).aggregate(approxDistinct((c) => c.user), (_, n, w) => ({ start: w.start, users: Math.round(n) })).sink(distinct);
await p.run();

const h = OperatorHarness.of((s) => s.keyBy((c) => c.user).window(tumbling(10_000)).aggregate(count()));
h.push(clicks[0], 1_000).push(clicks[2], 3_000).watermark(9_999);

console.log(JSON.stringify({ perUser: perUser.values, distinct: distinct.values, harness: h.values() }));
`,
    );
    const { stdout } = await sh(process.execPath, [join('js', 'main.js')], project, 60_000);
    const out = JSON.parse(stdout) as { perUser: unknown[]; distinct: unknown[]; harness: unknown[] };
    const byStart = (a: { start: number; user?: string }, b: { start: number; user?: string }) =>
      a.start - b.start || (a.user ?? '').localeCompare(b.user ?? '');
    expect((out.perUser as Array<{ start: number; user: string }>).sort(byStart)).toEqual([
      { user: 'ann', n: 2, start: 0 },
      { user: 'bob', n: 1, start: 0 },
      { user: 'ann', n: 1, start: 10_000 },
    ]);
    expect((out.distinct as Array<{ start: number }>).sort(byStart)).toEqual([
      { start: 0, users: 2 },
      { start: 10_000, users: 1 },
    ]);
    expect(out.harness).toEqual([{ key: 'ann', start: 0, end: 10_000, value: 2 }]);
  }, SLOW);
});

describe('the dashboard from the installed package', () => {
  it('serves its page, its script and uPlot from the package (compiled dist/ and shipped assets)', async () => {
    mkdirSync(join(project, 'js'), { recursive: true });
    writeFileSync(
      join(project, 'js', 'dashboard.js'),
      `import { Pipeline, GeneratorSource, serveDashboard } from 'spate';

const p = new Pipeline();
p.source(new GeneratorSource({ make: (i) => ({ k: i % 3, i }), ratePerSecond: 1000 })).keyBy((r) => r.k).view('latest');
const running = p.start();
const dashboard = await serveDashboard(running, { port: 0 });
const get = async (path) => {
  const res = await fetch(new URL(path, dashboard.url));
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
};
while ((await get('/views/latest/2')).status !== 200) await new Promise((r) => setTimeout(r, 20));
const out = {};
for (const path of ['/', '/assets/dashboard.js', '/assets/dashboard.css', '/assets/uplot.js', '/assets/uplot.css', '/api/status', '/metrics', '/views/latest/2']) {
  const r = await get(path);
  out[path] = { status: r.status, type: r.type, length: r.text.length, head: r.text.slice(0, 80) };
}
await dashboard.close();
await running.stop();
console.log(JSON.stringify(out));
`,
    );
    const { stdout } = await sh(process.execPath, [join('js', 'dashboard.js')], project, 60_000);
    const out = JSON.parse(stdout) as Record<string, { status: number; type: string; length: number; head: string }>;
    for (const [path, r] of Object.entries(out)) {
      expect(r.status, path).toBe(200);
      expect(r.length, path).toBeGreaterThan(20);
    }
    expect(out['/']!.head).toMatch(/^<!doctype html>/);
    expect(out['/assets/uplot.js']!.type).toMatch(/javascript/);
    expect(out['/metrics']!.head).toMatch(/^# HELP spate_job_phase/);
    expect(out['/views/latest/2']!.head).toMatch(/"key":2/);
  }, SLOW);
});

describe('the installed spate command', () => {
  it('runs from dist/ (not the sources), and runs a TypeScript pipeline module of the project', async () => {
    // tsx is a dependency (it loads users' TypeScript pipeline files), hoisted to the project: the
    // command runs the compiled dist/, since its own package has no tsx of its own beside src/.
    expect(existsSync(join(project, 'node_modules', 'spate', 'node_modules', 'tsx'))).toBe(false);
    const bin = join(project, 'node_modules', '.bin', process.platform === 'win32' ? 'spate.cmd' : 'spate');
    writeFileSync(
      join(project, 'doubled.ts'),
      [
        "import { definePipeline, JsonlSink } from 'spate';",
        'export default definePipeline((p, args) => {',
        '  const n: number = Number(args[0]);',
        "  p.fromArray(Array.from({ length: n }, (_, i) => i)).map((i) => ({ i, twice: i * 2 })).sink(new JsonlSink('doubled.jsonl'));",
        '});',
        '',
      ].join('\n'),
    );
    const run = await sh(bin, ['run', 'doubled.ts', '--parallelism', '2', '--', '100'], project, 60_000);
    expect(run.stderr).toMatch(/doubled\.ts finished/);
    const lines = readFileSync(join(project, 'doubled.jsonl'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(100);
    expect(JSON.parse(lines[99]!)).toEqual({ i: 99, twice: 198 });
    const help = await sh(bin, ['help'], project, 60_000);
    expect(help.stdout).toContain('Usage');
    // A query end to end: the compiled runtime, not only the argument parser.
    const q = await sh(bin, ['nexmark', '--query', 'q1', '--events', '2000', '--json'], project, 60_000);
    const result = JSON.parse(q.stdout.trim().split('\n').pop()!) as { results: number };
    // 46 of every 50 events are bids, and q1 converts each one.
    expect(result.results).toBe(1840);
  }, SLOW);
});
