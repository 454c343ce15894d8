/**
 * Jobs in worker threads through the API: results of local sinks gathered to this thread, a
 * failing worker failing the job cleanly, and a worker whose rebuild of the pipeline differs
 * refused with the step named.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildPipeline } from '../src/api/define-pipeline.ts';
import { StepFailure } from '../src/index.ts';
import module, { maxima, results } from './fixtures/parallel-module.ts';

const url = new URL('./fixtures/parallel-module.ts', import.meta.url).href;

describe('a job in worker threads', () => {
  it('gathers the results of collect sinks in this thread, equal to a run in one thread', async () => {
    const args = ['windows', '200000'];
    const p = await buildPipeline(module, args);
    const parallel = await p.run({ parallelism: 2, workers: { module: url, args } });
    const got = { counts: results.take(), maxima: maxima.take() };
    await (await buildPipeline(module, args)).run();
    const want = { counts: results.take(), maxima: maxima.take() };
    const sort = <T>(xs: T[]): string[] => xs.map((x) => JSON.stringify(x)).sort();
    expect(sort(got.counts)).toEqual(sort(want.counts));
    expect(sort(got.maxima)).toEqual(sort(want.maxima));
    expect(want.counts.reduce((n, r) => n + r.value, 0)).toBe(200_000);
    expect(parallel.metrics.find((m) => m.step === 'numbers')!.recordsOut).toBe(200_000);
    expect(parallel.metrics.find((m) => m.step === 'counts')!.recordsIn).toBeLessThan(200_000); // partial aggregates crossed, not records
  });

  it('fails cleanly when a worker fails: the step named, every worker stopped, no hang', async () => {
    const args = ['fails', '1000000'];
    const p = await buildPipeline(module, args);
    const started = Date.now();
    const error = await p.run({ parallelism: 2, errors: 'fail', workers: { module: url, args } }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StepFailure);
    expect((error as StepFailure).step).toBe('fragile');
    expect((error as Error).message).toMatch(/step 'fragile' failed: .*five thousand/);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('refuses a pipeline module whose steps are built differently in a worker, naming the step', async () => {
    // `spate run` loads the module in every thread through the same loader, so function text compares.
    const bin = join(import.meta.dirname, '..', 'bin', 'spate.js');
    const run = await promisify(execFile)(process.execPath, [bin, 'run', fileURLToPath(url), '--parallelism', '2', '--', 'thread-dependent', '1000']).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/step 'keep' failed: built differently in worker \d \(the code of its functions differs\)/);
    // The same module built alike everywhere runs.
    const ok = await promisify(execFile)(process.execPath, [bin, 'run', fileURLToPath(url), '--parallelism', '2', '--', 'windows', '1000']);
    expect(ok.stderr).toMatch(/finished/);
  });
});
