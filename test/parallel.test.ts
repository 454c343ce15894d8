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

  it('completes checkpoints that run while the input ends: a step whose inputs all ended without the barrier takes its part at its end', async () => {
    // Checkpoints back to back, so that some start when one worker's source has ended (it
    // injects no barrier any more) and a step in the other worker has yet to receive that end.
    // Before the fix, most such runs hung on a checkpoint that never completed.
    const args = ['windows', '20000'];
    for (let run = 0; run < 6; run++) {
      const p = await buildPipeline(module, args);
      const result = await p.run({ parallelism: 2, checkpointInterval: 1, checkpointTimeout: 5000, workers: { module: url, args } });
      expect(result.checkpoints.filter((c) => c.status !== 'completed')).toEqual([]);
      expect(results.take().reduce((n, r) => n + r.value, 0)).toBe(20_000);
      maxima.take();
    }
  });

  it('an instance whose input is idle does not hold back the watermark of the steps it feeds', async () => {
    // Instance 1 of the source reads only a split without data; after its idle timeout the
    // windows of both instances fire on instance 0's data alone, while the job runs.
    const args = ['one-idle'];
    const p = await buildPipeline(module, args);
    const running = p.start({ parallelism: 2, workers: { module: url, args } });
    const deadline = Date.now() + 20_000;
    while (results.values.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(results.values.length).toBeGreaterThan(0);
    expect(new Set(results.values.map((r) => r.start)).size).toBeGreaterThanOrEqual(1);
    await running.stop();
    results.take();
    maxima.take();
  });

  it('reads a local source in this thread and runs what follows it in the workers', async () => {
    const args = ['local-source', '50000'];
    const p = await buildPipeline(module, args);
    expect(p.explain(2)).toMatch(/task 0 ×1, main thread: numbers \(source\)/);
    expect(p.explain(2)).toMatch(/task 1 ×2: off-main \(map\)\n {2}⇐ task 0 \(rebalance\)/);
    const parallel = await p.run({ parallelism: 2, workers: { module: url, args } });
    const counts = results.take();
    maxima.take();
    // The map after the source ran in both workers (never here: it would map to -1).
    expect(counts.reduce((n, r) => n + r.value, 0)).toBe(50_000);
    expect(counts.some((r) => r.key === -1)).toBe(false);
    expect(parallel.metrics.find((m) => m.step === 'off-main')!.recordsIn).toBe(50_000);
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
