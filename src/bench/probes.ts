/**
 * Measurements of `spate bench` that are not plain NEXMark throughput: source-to-sink latency at
 * a fixed rate, memory under a slow sink, and the time to restore keyed state. Each runs in a
 * process of its own (`spate bench --probe …`, started by the bench), so one probe's heap and JIT
 * state do not skew the next. This file is also the pipeline module their worker threads load.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPipeline, definePipeline } from '../api/define-pipeline.ts';
import { Pipeline } from '../api/pipeline.ts';
import type { Stream } from '../api/stream.ts';
import { CallbackSink } from '../connectors/memory/sink.ts';
import { GeneratorSource } from '../connectors/generator/source.ts';
import { NexmarkGenerator } from '../nexmark/generator.ts';
import { q7 } from '../nexmark/queries.ts';
import type { Batch } from '../runtime/batch.ts';
import type { Sink } from '../runtime/sink.ts';
import { valueState } from '../state/descriptors.ts';

/** Wall-clock time in ms with sub-millisecond resolution, comparable across worker threads. */
const wallClock = (): number => performance.timeOrigin + performance.now();

/** Latencies (ms) seen by the sink of a latency probe in this thread, after the warm-up. */
const latencies: number[] = [];
let warmUntil = 0;

/** Spins for `micros` µs: the work of a slow sink, without yielding (a sink that is slow, not asleep). */
function spin(micros: number): void {
  const until = performance.now() + micros / 1000;
  while (performance.now() < until) {
    /* busy */
  }
}

/** A sink that takes `micros` µs per record, in as many instances as the step runs. */
class SlowSink implements Sink<unknown> {
  constructor(private readonly micros: number) {}
  write(batch: Batch<unknown>): void {
    spin(batch.length * this.micros);
  }
}

/**
 * The probes' pipelines (args: probe, then its parameters):
 * - `latency stateless|q7 RATE`: records stamped with the wall clock as their event time, at RATE
 *   per second, through a stateless chain (map, filter) or NEXMark q7; a local sink records
 *   now − event time (for q7, now − the end of the window that produced the row);
 * - `memory RATE MICROS`: records at RATE per second into a sink that takes MICROS µs each.
 */
const probes = definePipeline((p, args) => {
  const [probe, a, b] = args;
  const rate = Number(a);
  if (probe === 'latency') {
    const kind = b;
    const record = (value: unknown, time: number): void => {
      const now = wallClock();
      if (now >= warmUntil) latencies.push(now - (kind === 'q7' ? time + 1 : time));
    };
    if (kind === 'stateless') {
      p.source(new GeneratorSource({ make: (i) => ({ id: i, value: i % 1000 }), time: () => wallClock(), ratePerSecond: rate }), { id: 'probe', idleTimeout: 0 })
        .map((r) => ({ id: r.id, doubled: r.value * 2 }), { id: 'double' })
        .filter((r) => r.doubled >= 0, { id: 'keep' })
        .sink(new CallbackSink(record), { id: 'latency' });
    } else {
      const generator = new NexmarkGenerator({});
      const events = p.source(new GeneratorSource({ make: (i) => generator.event(i), time: () => wallClock(), ratePerSecond: rate }), { id: 'nexmark', idleTimeout: 0 });
      (q7(events) as Stream<unknown>).sink(new CallbackSink(record), { id: 'latency' });
    }
  } else if (probe === 'memory') {
    p.source(new GeneratorSource({ make: (i) => ({ id: i, payload: `reading ${i % 977}` }), ratePerSecond: rate }), { id: 'fast' })
      .map((r) => ({ ...r, seen: true }), { id: 'touch' })
      .sink(() => new SlowSink(Number(b)), { id: 'slow' });
  } else throw new Error(`unknown probe '${probe}'`);
});
export default probes;

const MODULE = new URL(import.meta.url).href;

/** Percentiles of a latency probe, in ms. */
export interface LatencyResult {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/** Runs a latency probe for `seconds` (the first second is warm-up, not counted). */
export async function latencyProbe(kind: 'stateless' | 'q7', rate: number, parallelism: number, seconds: number): Promise<LatencyResult> {
  const args = ['latency', String(rate), kind];
  const p = await buildPipeline(probes, args);
  latencies.length = 0;
  warmUntil = wallClock() + 1000;
  const running = p.start({ parallelism, checkpointInterval: 0, workers: parallelism > 1 ? { module: MODULE, args } : undefined });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await running.stop({ checkpoint: false });
  const sorted = Float64Array.from(latencies).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] ?? NaN };
}

/** Resident memory and heap (MB) every `every` ms while a source outruns its sink tenfold. */
export async function memoryProbe(rate: number, micros: number, parallelism: number, seconds: number, every = 1000): Promise<Array<{ s: number; rssMb: number; heapMb: number; records: number }>> {
  const args = ['memory', String(rate), String(micros)];
  const p = await buildPipeline(probes, args);
  const running = p.start({ parallelism, checkpointInterval: 0, workers: parallelism > 1 ? { module: MODULE, args } : undefined });
  const curve: Array<{ s: number; rssMb: number; heapMb: number; records: number }> = [];
  const started = performance.now();
  for (let t = every; t <= seconds * 1000; t += every) {
    await new Promise((r) => setTimeout(r, started + t - performance.now()));
    const m = process.memoryUsage();
    const slow = running.job.metrics().find((s) => s.step === 'slow');
    curve.push({ s: t / 1000, rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20, records: slow?.recordsIn ?? 0 });
  }
  await running.stop({ checkpoint: false });
  return curve;
}

/** Checkpoints `keys` keys of keyed state, then measures how long a new job takes to restore them. */
export async function restoreProbe(keys: number): Promise<{ keys: number; checkpointBytes: number; restoreMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'spate-restore-'));
  try {
    const build = (): Pipeline => {
      const p = new Pipeline();
      p.source(new GeneratorSource({ make: (i) => i, time: (i) => i, count: keys }), { id: 'keys' })
        .keyBy((i) => i)
        .state({ last: valueState<number>() })
        .process<number>({ onElement: (i, ctx) => ctx.state.last.set(i) }, { id: 'remember' })
        .sink(new CallbackSink(() => undefined), { id: 'none' });
      return p;
    };
    const first = await build().run({ checkpointDir: dir, checkpointInterval: 0 });
    const checkpointBytes = first.checkpoints.filter((c) => c.status === 'completed').pop()?.bytes ?? 0;
    const second = await build().run({ checkpointDir: dir, checkpointInterval: 0, log: () => undefined });
    return { keys, checkpointBytes, restoreMs: second.openMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
