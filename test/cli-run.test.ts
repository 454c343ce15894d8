/**
 * `spate run`, `spate savepoint` and `spate plan` as a user runs them: real child processes, a
 * pipeline module in TypeScript, signals, restarts from the checkpoint directory, savepoints and
 * restores into changed pipelines.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { Row } from './fixtures/counter.ts';

const bin = join(import.meta.dirname, '..', 'bin', 'spate.js');
const fixture = join(import.meta.dirname, 'fixtures', 'counter.ts');
const dir = mkdtempSync(join(tmpdir(), 'spate-run-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const exec = promisify(execFile);

function spate(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return exec(process.execPath, [bin, ...args], { cwd: dir }).then(
    ({ stdout, stderr }) => ({ stdout, stderr, code: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => ({ stdout: e.stdout, stderr: e.stderr, code: e.code }),
  );
}

function rows(path: string): Row[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  return text.length === 0 ? [] : text.trimEnd().split('\n').map((l) => JSON.parse(l) as Row);
}

/** The expected rows for numbers 0..n-1: every number once, with the running total of its key. */
function expectExactlyOnce(got: Row[]): void {
  const sorted = [...got].sort((a, b) => a.i - b.i);
  const totals = new Array<number>(10).fill(0);
  sorted.forEach((r, n) => {
    expect(r.i).toBe(n); // no gap, no duplicate
    totals[n % 10]! += n;
    expect(r).toEqual({ i: n, key: n % 10, total: totals[n % 10] });
  });
}

/** Starts `spate run` in the background; resolves its exit once it ends. */
function start(args: string[]): { child: ChildProcess; stderr: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [bin, 'run', ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => err, exit };
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const checkpoints = (ck: string): string[] => (existsSync(ck) ? readdirSync(ck).filter((n) => /^(chk|savepoint)-/.test(n) && existsSync(join(ck, n, '_MANIFEST'))) : []);
/** The id of the newest complete checkpoint (retention keeps only a few, so count ids, not directories). */
const newest = (ck: string): number => Math.max(0, ...checkpoints(ck).map((n) => Number(n.split('-')[1])));

describe('spate run', () => {
  it('--help lists every option', async () => {
    const { stdout, code } = await spate(['run', '--help']);
    expect(code).toBe(0);
    for (const flag of [
      '--checkpoint-dir',
      '--checkpoint-interval',
      '--retained-checkpoints',
      '--tolerated-checkpoint-failures',
      '--restore-from',
      '--allow-dropped-state',
      '--batch-size',
      '--max-parallelism',
      '--errors',
      '--parallelism',
      '--ui',
      '--ui-port',
      '--ui-host',
      '--ui-token',
      '--help',
    ]) {
      expect(stdout).toContain(flag);
    }
  });

  it('runs a TypeScript pipeline module to the end of its bounded input', async () => {
    const out = join(dir, 'bounded.jsonl');
    const { code, stderr } = await spate(['run', fixture, '--parallelism', '1', '--', out, '5000']);
    expect(code).toBe(0);
    expect(stderr).toMatch(/counter\.ts finished/);
    const got = rows(out);
    expect(got).toHaveLength(5000);
    expectExactlyOnce(got);
  });

  it('refuses a file that is not a pipeline module, and a missing file, with a clear error', async () => {
    const bad = await spate(['run', join(import.meta.dirname, 'support', 'reader-source.ts')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/must `export default definePipeline/);
    const missing = await spate(['run', join(dir, 'nope.ts')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no pipeline file at .*nope\.ts/);
    const usage = await spate(['run', fixture, '--checkpoint-interval', 'soon']);
    expect(usage.code).toBe(2);
  });

  it('--ui serves the dashboard of the running job (worker threads) until it stops', async () => {
    const out = join(dir, 'ui.jsonl');
    const run = start([fixture, '--parallelism', '2', '--ui', '--ui-port', '0', '--', out, 'unbounded', '2000']);
    await until(() => /dashboard at (http:\/\/127\.0\.0\.1:\d+\/)/.test(run.stderr()), 'the dashboard address');
    const url = /dashboard at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(run.stderr())![1]!;
    let status: { phase: string; steps: Array<{ step: string; outRate: number }> } = { phase: '', steps: [] };
    const deadline = Date.now() + 20_000;
    while (!(status.phase === 'running' && status.steps.find((s) => s.step === 'numbers')!.outRate > 0)) {
      if (Date.now() > deadline) throw new Error(`no rates: ${JSON.stringify(status)}`);
      await new Promise((r) => setTimeout(r, 200));
      status = (await (await fetch(new URL('/api/status', url))).json()) as typeof status;
    }
    expect(status.steps.map((s) => s.step)).toEqual(['numbers', 'totals', 'out']);
    const page = await fetch(url);
    expect(await page.text()).toContain('<title>counter · Spate dashboard</title>');
    const metrics = await (await fetch(new URL('/metrics', url))).text();
    expect(metrics).toMatch(/^spate_step_records_out_total\{step="numbers",kind="source",instance="1"\} [1-9]/m);
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    await expect(fetch(url)).rejects.toThrow();
    // The dashboard options need --ui.
    expect((await spate(['run', fixture, '--ui-port', '8080'])).code).toBe(2);
  });

  it('stops on SIGTERM with a final checkpoint, and a restart resumes exactly where it stopped', async () => {
    const out = join(dir, 'restart.jsonl');
    const ck = join(dir, 'restart-ck');
    const args = [fixture, '--parallelism', '1', '--checkpoint-dir', ck, '--checkpoint-interval', '200', '--', out, 'unbounded', '3000'];
    let generated = 0;
    for (let round = 0; round < 3; round++) {
      const run = start(args);
      const before = rows(out).length;
      await until(() => rows(out).length > before + 500, 'output to grow');
      run.child.kill('SIGTERM');
      expect(await run.exit).toBe(0);
      expect(run.stderr()).toMatch(/stopped by SIGTERM/);
      if (round > 0) expect(run.stderr()).toMatch(/resuming from checkpoint \d+/);
      // Everything written before the stop was committed by the final checkpoint: nothing is
      // lost, and the restart re-reads nothing — what the source generated over all runs is
      // exactly what the output holds.
      generated += Number(/numbers +source +(\d+) in/.exec(run.stderr())![1]);
      expect(rows(out)).toHaveLength(generated);
      expectExactlyOnce(rows(out));
    }
  });

  it('after kill -9 a restart commits everything exactly once', async () => {
    const out = join(dir, 'killed.jsonl');
    const ck = join(dir, 'killed-ck');
    const args = [fixture, '--parallelism', '1', '--checkpoint-dir', ck, '--checkpoint-interval', '100', '--', out, '30000', '20000'];
    for (let kill = 0; kill < 3; kill++) {
      const run = start(args);
      const seen = newest(ck);
      await until(() => newest(ck) > seen || run.child.exitCode !== null, 'a new checkpoint');
      await new Promise((r) => setTimeout(r, 50 + kill * 70));
      run.child.kill('SIGKILL');
      await run.exit;
      // Whatever is visible is committed: a prefix of the exact output, never a duplicate.
      const partial = rows(out);
      const ids = new Set(partial.map((r) => r.i));
      expect(ids.size).toBe(partial.length);
    }
    const last = start(args);
    expect(await last.exit).toBe(0);
    const got = rows(out);
    expect(got).toHaveLength(30_000);
    expectExactlyOnce(got);
  });
});

describe('spate run in worker threads', () => {
  it('kill -9 and restarts at parallelism 2, then 3: every number once, and the total of every key right', async () => {
    const out = join(dir, 'parallel.jsonl');
    const ck = join(dir, 'parallel-ck');
    const N = 40_000;
    for (const [kill, parallelism] of [2, 2, 3].entries()) {
      const run = start([fixture, '--parallelism', String(parallelism), '--checkpoint-dir', ck, '--checkpoint-interval', '100', '--', out, String(N), '20000']);
      const seen = newest(ck);
      await until(() => newest(ck) > seen + 1 || run.child.exitCode !== null, 'new checkpoints');
      await new Promise((r) => setTimeout(r, 30 + kill * 50));
      run.child.kill('SIGKILL');
      await run.exit;
      const partial = rows(out);
      expect(new Set(partial.map((r) => r.i)).size).toBe(partial.length); // never a duplicate
    }
    const last = start([fixture, '--parallelism', '2', '--checkpoint-dir', ck, '--checkpoint-interval', '100', '--', out, String(N), '20000']);
    expect(await last.exit).toBe(0);
    const got = rows(out);
    expect(got.map((r) => r.i).sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
    // Records of a key arrive from several instances in any order, but its last total is the sum.
    const expected = new Array<number>(10).fill(0);
    for (let i = 0; i < N; i++) expected[i % 10]! += i;
    const final = new Array<number>(10).fill(0);
    for (const r of got) final[r.key] = Math.max(final[r.key]!, r.total);
    expect(final).toEqual(expected);
  });
});

describe('spate savepoint and restores into a changed pipeline', () => {
  const out = join(dir, 'upgrade.jsonl');
  const ck = join(dir, 'upgrade-ck');
  let savepoint = '';

  it('takes a savepoint of a running job', async () => {
    // No periodic checkpoints: the output holds exactly what the savepoint committed.
    const run = start([fixture, '--parallelism', '1', '--checkpoint-dir', ck, '--checkpoint-interval', '0', '--', out, 'unbounded', '2000']);
    await new Promise((r) => setTimeout(r, 1500));
    const { stdout, code } = await spate(['savepoint', ck]);
    expect(code).toBe(0);
    const m = /savepoint (\d+) written to (\S+)/.exec(stdout);
    expect(m).not.toBeNull();
    savepoint = m![2]!;
    expect(existsSync(join(savepoint, '_MANIFEST'))).toBe(true);
    run.child.kill('SIGKILL');
    await run.exit;
    const none = await spate(['savepoint', ck]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no running job checkpoints into/);
  });

  it('plan --against says what a restore would do, and refuses what it cannot do', async () => {
    const same = await spate(['plan', fixture, '--against', savepoint, '--', out, 'unbounded']);
    expect(same.code).toBe(0);
    expect(same.stdout).toMatch(/restore +totals \(process\)/);
    expect(same.stdout).toMatch(/restore +state:total: version 1/);

    const migrated = await spate(['plan', fixture, '--against', savepoint, '--', out, 'unbounded', '1', 'v2']);
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toMatch(/migrate +state:total: version 1 → 2/);

    const refused = await spate(['plan', fixture, '--against', savepoint, '--', out, 'unbounded', '1', 'v2-no-migrate']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/refuse +state:total: .*version 1 but is declared with version 2 and no migrate function/);

    const renamed = await spate(['plan', fixture, '--against', savepoint, '--', out, 'unbounded', '1', 'renamed']);
    expect(renamed.code).toBe(1);
    expect(renamed.stdout).toMatch(/refuse +totals \(process\): the pipeline no longer has this step/);
    expect(renamed.stdout).toMatch(/new +sums \(process\)/);
    const dropped = await spate(['plan', fixture, '--against', savepoint, '--allow-dropped-state', '--', out, 'unbounded', '1', 'renamed']);
    expect(dropped.code).toBe(0);
    expect(dropped.stdout).toMatch(/drop +totals/);

    const extra = await spate(['plan', fixture, '--against', savepoint, '--', out, 'unbounded', '1', 'extra']);
    expect(extra.code).toBe(0);
    expect(extra.stdout).toMatch(/new +seen \(process\)/);
  });

  it('a changed pipeline starts from the savepoint: migrated state carries on, refused restores fail with the step ids', async () => {
    const refused = await spate(['run', fixture, '--parallelism', '1', '--restore-from', savepoint, '--', out, '20', '1000', 'renamed']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/state for steps this pipeline does not have: totals/);

    const notMigrated = await spate(['run', fixture, '--parallelism', '1', '--restore-from', savepoint, '--', out, '20', '1000', 'v2-no-migrate']);
    expect(notMigrated.code).toBe(1);
    expect(notMigrated.stderr).toMatch(/step 'totals' failed: state 'state:total' was written with version 1/);

    const atSavepoint = rows(out).length;
    expect(atSavepoint).toBeGreaterThan(0);
    expectExactlyOnce(rows(out));
    // Version 2 of the state, migrated from version 1: totals carry on from the savepoint.
    const upgraded = await spate(['run', fixture, '--parallelism', '1', '--restore-from', savepoint, '--checkpoint-dir', join(dir, 'upgraded-ck'), '--', out, '20000', '', 'v2']);
    expect(upgraded.code).toBe(0);
    expect(upgraded.stderr).toMatch(/starting from savepoint \d+/);
    const got = rows(out);
    expect(got).toHaveLength(20_000);
    expectExactlyOnce(got);
  });
});
