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
  /** Instances of every step (in this thread). */
  readonly parallelism?: number;
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

/** Builds and runs one NEXMark query over generated events, and measures it. */
export async function runNexmark(options: NexmarkRunOptions): Promise<NexmarkRunResult> {
  const disorder = options.disorder ?? 0;
  const p = new Pipeline({ batchSize: options.batchSize });
  const events = p.source<NexmarkEvent>(
    () =>
      new NexmarkSource({
        events: options.events,
        rate: options.rate,
        seed: options.seed,
        baseTime: options.baseTime,
        disorder,
      }),
    // The watermark allows exactly for the disorder, so no event is late and results are unchanged.
    { id: 'nexmark', outOfOrderness: disorder, idleTimeout: 0 },
  );
  if (options.eventsOut !== undefined) events.sink(new JsonlSink<NexmarkEvent>(options.eventsOut), { id: 'events-out' });
  let running: RunningJob | null = null;
  const stopAfter = options.stopAfter;
  if (stopAfter !== undefined) {
    let seen = 0;
    events.sink(new CallbackSink(() => void (++seen === stopAfter && running?.stop())), { id: 'stop-after' });
  }
  const results = options.query === 'none' ? events : QUERIES[options.query].build(events);
  if (options.out === undefined) results.sink(new DiscardSink(), { id: 'out' });
  else {
    const tableKey = options.query === 'none' ? undefined : QUERIES[options.query].tableKey;
    (tableKey === undefined ? results : finalTable(results as Stream<object>, tableKey)).sink(new JsonlSink<object>(options.out), { id: 'out' });
  }
  running = p.start({ checkpointDir: options.checkpointDir, checkpointInterval: options.checkpointInterval, parallelism: options.parallelism });
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
  };
}
