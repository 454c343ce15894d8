/**
 * What a dashboard reads from a running job: `job.status()` (phase, per-instance input channel
 * and split watermarks, the next due event time, backpressure, recent dead letters, checkpoint
 * history) and queryable views (`keyedStream.view(name)`, `job.view(name)`), in one thread and
 * across worker threads, and a view restored from a checkpoint.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildPipeline } from '../src/api/define-pipeline.ts';
import { count, GeneratorSource, Pipeline, tumbling } from '../src/index.ts';
import { inputChannels } from '../src/plan/physical.ts';
import module from './fixtures/parallel-module.ts';

const url = new URL('./fixtures/parallel-module.ts', import.meta.url).href;
const dir = mkdtempSync(join(tmpdir(), 'spate-status-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until(condition: () => boolean, ms = 20_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('job status', () => {
  it('reports the phase, watermarks per input channel and split, the next due time and recent dead letters', async () => {
    const p = new Pipeline();
    // 200 events per second of wall clock, event time = 10 ms apart: windows of 1 s fire every 0.5 s.
    p.source(new GeneratorSource({ make: (i) => i, time: (i) => 1_000_000 + i * 10, ratePerSecond: 200, splits: 2 }), { id: 'numbers' })
      .map((i) => {
        if (i % 50 === 7) throw new Error(`${i} is unlucky`);
        return i;
      }, { id: 'lucky' })
      .keyBy((i) => i % 3)
      .window(tumbling(1000))
      .aggregate(count(), (key, value, w) => ({ key, end: w.end, value }), { id: 'counts' })
      .keyBy((r) => r.key)
      .view('counts');
    const running = p.start({ parallelism: 2 });
    const { job } = running;
    await until(() => job.status().phase === 'running' && (job.view<{ value: number }>('counts')?.size ?? 0) === 3);
    const status = job.status();
    expect(status.parallelism).toBe(2);
    expect(status.restoredFrom).toBeNull();
    // The window instances read one channel per upstream instance, each with its watermark.
    const windows = status.instances.filter((m) => m.step === 'counts' && m.instance >= 0);
    expect(windows).toHaveLength(2);
    for (const w of windows) {
      expect(w.inputs).toHaveLength(inputChannels(job.plan, 'counts', w.instance).length);
      expect(w.inputs!.length).toBe(2);
      expect(Math.min(...w.inputs!.map((c) => c.watermark))).toBe(w.watermark);
      // The next window to fire is ahead of the watermark, within one window.
      expect(w.nextEventTime).toBeGreaterThan(w.watermark);
      expect(w.nextEventTime).toBeLessThanOrEqual(w.watermark + 1000);
    }
    const sources = status.instances.filter((m) => m.step === 'numbers');
    expect(sources).toHaveLength(2);
    for (const s of sources) {
      expect(s.splits!.length).toBeGreaterThan(0);
      expect(Math.min(...s.splits!.map((x) => x.watermark))).toBeGreaterThanOrEqual(s.watermark);
    }
    expect(status.steps.find((m) => m.step === 'counts')!.instances).toBe(2);
    expect(status.deadLetters.length).toBeGreaterThan(0);
    expect(status.deadLetters[0]).toMatchObject({ step: 'lucky', error: expect.stringMatching(/is unlucky/) });
    expect(job.viewNames()).toEqual(['counts']);
    const view = job.view<{ key: number; value: number; end: number }>('counts')!;
    const entry = view.get(1)!;
    expect(entry.value).toMatchObject({ key: 1 });
    expect(view.entries().map((e) => e.key).sort()).toEqual([0, 1, 2]);
    const heard: number[] = [];
    const unsubscribe = view.subscribe((updates) => heard.push(...updates.map((u) => u.key as number)));
    await until(() => heard.length >= 3);
    unsubscribe();
    await running.stop();
    expect(job.status().phase).toBe('finished');
  });

  it('gathers the status and the dead letters of worker threads, and keeps the view in this thread', async () => {
    const args = ['view', '30000'];
    const p = await buildPipeline(module, args);
    const running = p.start({ parallelism: 2, workers: { module: url, args } });
    const result = await running.done;
    expect(result.deadLetters).toBe(30);
    const status = running.job.status();
    expect(status.phase).toBe('finished');
    expect(status.deadLetters.length).toBe(30);
    expect(new Set(status.deadLetters.map((d) => d.step))).toEqual(new Set(['not-round']));
    expect(status.instances.filter((m) => m.step === 'counts' && m.instance >= 0).map((m) => m.inputs!.length)).toEqual([2, 2]);
    const view = running.job.view<{ key: number; start: number; value: number }>('counts')!;
    expect(view.size).toBe(7);
    // The last window of every key: [29000, 30000).
    for (const e of view.entries()) expect(e.value.start).toBe(29_000);
    expect(p.explain(2)).toMatch(/×1, main thread: view-counts \[runs in the main thread \(a view\)\]/);
  });

  it('restores a view from a checkpoint, and has none to show while the job restores', async () => {
    const checkpointDir = join(dir, 'view');
    const build = (n: number): Pipeline => {
      const p = new Pipeline();
      p.fromArray(Array.from({ length: n }, (_, i) => i), { timestamp: (i) => i, id: 'numbers' })
        .keyBy((i) => i % 4)
        .window(tumbling(100))
        .aggregate(count(), (key, value, w) => ({ key, start: w.start, value }), { id: 'counts' })
        .keyBy((r) => r.key)
        .view('latest');
      return p;
    };
    const first = build(1000).start({ checkpointDir });
    await first.done;
    expect(first.job.view<{ start: number }>('latest')!.get(3)!.value.start).toBe(900);
    // The same pipeline again: restored from the final checkpoint, its input already consumed.
    const second = build(1000).start({ checkpointDir });
    expect(second.job.view('latest')).toBeUndefined(); // opening: no view to answer from yet
    await second.done;
    expect(second.job.status().restoredFrom).toMatchObject({ kind: 'checkpoint' });
    const view = second.job.view<{ start: number; value: number }>('latest')!;
    expect(view.size).toBe(4);
    expect(view.get(3)!.value).toMatchObject({ start: 900, value: 25 });
  });
});
