import { Pipeline, type RunningJob } from '../api/pipeline.ts';
import { JsonlSink } from '../connectors/file/jsonl-sink.ts';
import type { Batch } from '../runtime/batch.ts';
import type { Sink } from '../runtime/sink.ts';
import { writeFileSync } from 'node:fs';
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

/** Counts records and keeps nothing (benchmark sink). */
class CountSink implements Sink<unknown> {
  count = 0;
  write(batch: Batch<unknown>): void {
    this.count += batch.length;
  }
}

/** Collects a final result table: with a key, the last row per key; without, every row. */
class TableSink implements Sink<object> {
  readonly rows: object[] = [];
  readonly byKey = new Map<string | number, object>();
  count = 0;

  constructor(
    private readonly path: string,
    private readonly key: ((row: object) => string | number) | undefined,
  ) {}

  write(batch: Batch<object>): void {
    this.count += batch.length;
    for (let i = 0; i < batch.length; i++) {
      const row = batch.values[i]!;
      if (this.key === undefined) this.rows.push(row);
      else this.byKey.set(this.key(row), row);
    }
  }

  flush(): void {
    const rows = this.key === undefined ? this.rows : [...this.byKey.values()];
    const lines = rows.map((r) => JSON.stringify(r)).sort();
    writeFileSync(this.path, lines.length === 0 ? '' : lines.join('\n') + '\n');
  }
}

/** Counts the records reaching a JSONL sink. */
class CountingJsonlSink<T> extends JsonlSink<T> {
  count = 0;
  override write(batch: Batch<T>): void {
    this.count += batch.length;
    super.write(batch);
  }
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
  let counter: { count: number };
  if (options.query === 'none') {
    const sink = new CountSink();
    events.sink(sink, { id: 'count' });
    counter = sink;
  } else {
    const query = QUERIES[options.query];
    const results = query.build(events);
    if (options.out === undefined) {
      const sink = new CountSink();
      results.sink(sink, { id: 'count' });
      counter = sink;
    } else if (query.tableKey !== undefined || options.query === 'q3') {
      const sink = new TableSink(options.out, query.tableKey);
      results.sink(sink, { id: 'out' });
      counter = sink;
    } else {
      const sink = new CountingJsonlSink<object>(options.out);
      results.sink(sink, { id: 'out' });
      counter = sink;
    }
  }
  const running = p.start();
  options.onStart?.(running);
  const result = await running.done;
  const seconds = result.durationMs / 1000;
  const processed = result.metrics.find((m) => m.step === 'nexmark')!.recordsOut;
  return {
    query: options.query,
    events: processed,
    seconds,
    eventsPerSecond: processed / seconds,
    results: counter.count,
    deadLetters: result.deadLetters,
    lateRecords: result.metrics.reduce((n, m) => n + m.lateRecords, 0),
  };
}
