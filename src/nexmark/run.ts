import type { CheckpointRecord } from '../checkpoint/coordinator.ts';
import { Pipeline, type RunningJob } from '../api/pipeline.ts';
import { JsonlSink } from '../connectors/file/jsonl-sink.ts';
import { CallbackSink } from '../connectors/memory/sink.ts';
import type { Batch } from '../runtime/batch.ts';
import type { Stream } from '../api/stream.ts';
import { valueState } from '../state/descriptors.ts';
import { MAX_WATERMARK } from '../time/watermark.ts';
import type { Sink } from '../runtime/sink.ts';
import type { NexmarkEvent } from './model.ts';
import { type QueryName, QUERIES } from './queries.ts';
import { NexmarkSource } from './source.ts';

/** Options of one NEXMark run. */
export interface NexmarkRunOptions {
  readonly query: QueryName | 'none';
  readonly events: number;
  readonly rate?: number;
  readonly seed?: number;
  readonly baseTime?: number;
  readonly disorder?: number;
  /** Results as JSONL (the final table for updating queries). */
  readonly out?: string;
  /** The generated events as JSONL, in arrival order. */
  readonly eventsOut?: string;
  readonly batchSize?: number;
  /** Durable checkpoints: a run restarted with the same directory resumes where it stopped. */
  readonly checkpointDir?: string;
  /** Milliseconds between checkpoints (default 1000). */
  readonly checkpointInterval?: number;
  /** Instances of every step: in worker threads, unless `threads` is false. */
  readonly parallelism?: number;
  /** False: run the instances in this thread (default: worker threads when parallelism > 1). */
  readonly threads?: boolean;
  /**
   * Stop the run, with a final checkpoint, once this many events were generated (to test
   * restores: a run with the same checkpoint directory goes on from there).
   */
  readonly stopAfter?: number;
  /** Called once the job has started: to stop it early (on a signal) or to watch its progress. */
  readonly onStart?: (job: RunningJob) => void;
}

/** What a run measured. */
export interface NexmarkRunResult {
  readonly query: QueryName | 'none';
  /** Events processed: all of them, unless the job was stopped early. */
  readonly events: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  /** Result rows emitted (for updating queries: updates, not final rows). */
  readonly results: number;
  readonly deadLetters: number;
  readonly lateRecords: number;
  /** Checkpoints taken: how many completed, the longest pause one caused, their mean size and duration. */
  readonly checkpoints: { readonly completed: number; readonly maxPauseMs: number; readonly meanBytes: number; readonly meanMs: number };
}

/** Keeps nothing (benchmark sink); the job's metrics count what reaches it. */
class DiscardSink implements Sink<unknown> {
  write(_batch: Batch<unknown>): void {}
}

/**
 * The final table of an updating query: the last row per key, emitted once the input has ended
 * (keyed state, so a restored job still emits every key exactly once).
 */
function finalTable(results: Stream<object>, key: (row: object) => string | number): Stream<object> {
  return results
    .keyBy(key)
    .state({ row: valueState<object>() })
    .process<object>(
      {
        onElement(row, ctx) {
          ctx.state.row.set(row);
          ctx.registerEventTimer(MAX_WATERMARK);
        },
        onTimer(_time, ctx) {
          const row = ctx.state.row.get();
          if (row !== undefined) ctx.emit(row);
        },
      },
      { id: 'final-table' },
    );
}

/** What a NEXMark pipeline is built from (the pipeline module's argument, as JSON). */
export type NexmarkSpec = Pick<NexmarkRunOptions, 'query' | 'events' | 'rate' | 'seed' | 'baseTime' | 'disorder' | 'out' | 'eventsOut' | 'stopAfter'>;

/**
 * Builds the NEXMark pipeline of `spec` on `p`: the event source, the query, its sink. `onStop`
 * is what the stop-after sink calls (it runs in the thread that built the pipeline).
 */
export function buildNexmark(p: Pipeline, spec: NexmarkSpec, onStop: () => void = () => undefined): void {
  const disorder = spec.disorder ?? 0;
  const events = p.source<NexmarkEvent>(
    () => new NexmarkSource({ events: spec.events, rate: spec.rate, seed: spec.seed, baseTime: spec.baseTime, disorder }),
    // The watermark allows exactly for the disorder, so no event is late and results are unchanged.
    { id: 'nexmark', outOfOrderness: disorder, idleTimeout: 0 },
  );
  if (spec.eventsOut !== undefined) events.sink(new JsonlSink<NexmarkEvent>(spec.eventsOut), { id: 'events-out' });
  const stopAfter = spec.stopAfter;
  if (stopAfter !== undefined) {
    let seen = 0;
    events.sink(new CallbackSink(() => void (++seen === stopAfter && onStop())), { id: 'stop-after' });
  }
  const results = spec.query === 'none' ? events : QUERIES[spec.query].build(events);
  if (spec.out === undefined) results.sink(new DiscardSink(), { id: 'out' });
  else {
    const tableKey = spec.query === 'none' ? undefined : QUERIES[spec.query].tableKey;
    (tableKey === undefined ? results : finalTable(results as Stream<object>, tableKey)).sink(new JsonlSink<object>(spec.out), { id: 'out' });
  }
}

/** The pipeline module of NEXMark runs in worker threads. */
const MODULE = new URL(import.meta.url.endsWith('.ts') ? './module.ts' : './module.js', import.meta.url).href;

/**
 * Builds and runs one NEXMark query over generated events, and measures it. With `parallelism`
 * above 1, the instances run in worker threads (`threads: false` keeps them in this thread).
 */
export async function runNexmark(options: NexmarkRunOptions): Promise<NexmarkRunResult> {
  const spec: NexmarkSpec = {
    query: options.query,
    events: options.events,
    rate: options.rate,
    seed: options.seed,
    baseTime: options.baseTime,
    disorder: options.disorder,
    out: options.out,
    eventsOut: options.eventsOut,
    stopAfter: options.stopAfter,
  };
  const p = new Pipeline({ batchSize: options.batchSize });
  let running: RunningJob | null = null;
  buildNexmark(p, spec, () => void running?.stop());
  const parallelism = options.parallelism ?? 1;
  const workers = parallelism > 1 && options.threads !== false ? { module: MODULE, args: [JSON.stringify(spec)] } : undefined;
  running = p.start({ checkpointDir: options.checkpointDir, checkpointInterval: options.checkpointInterval, parallelism, workers });
  options.onStart?.(running);
  const result = await running.done;
  // Result rows: what reached the sink, or for an updating query every update of its table.
  const counted = result.metrics.find((m) => m.step === 'final-table') ?? result.metrics.find((m) => m.step === 'out')!;
  const seconds = result.durationMs / 1000;
  const processed = result.metrics.find((m) => m.step === 'nexmark')!.recordsOut;
  return {
    query: options.query,
    events: processed,
    seconds,
    eventsPerSecond: processed / seconds,
    results: counted.recordsIn,
    deadLetters: result.deadLetters,
    lateRecords: result.metrics.reduce((n, m) => n + m.lateRecords, 0),
    checkpoints: summarize(result.checkpoints),
  };
}

function summarize(records: readonly CheckpointRecord[]): NexmarkRunResult['checkpoints'] {
  const done = records.filter((c) => c.status === 'completed');
  const mean = (f: (c: CheckpointRecord) => number): number => (done.length === 0 ? 0 : done.reduce((n, c) => n + f(c), 0) / done.length);
  return {
    completed: done.length,
    maxPauseMs: done.reduce((n, c) => Math.max(n, c.pauseMs), 0),
    meanBytes: mean((c) => c.bytes),
    meanMs: mean((c) => c.phases.align + c.phases.write + c.phases.commit),
  };
}
