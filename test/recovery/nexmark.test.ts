/**
 * The NEXMark queries under crashes: every query's committed output (for q4, the update stream
 * and the final table) must equal an uninterrupted run's, and the batch oracle's over the same
 * events — in order and with disorder (a watermark that allows exactly for it).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_WATERMARK, type Pipeline, type Stream, valueState } from '../../src/index.ts';
import { NexmarkGenerator } from '../../src/nexmark/generator.ts';
import type { NexmarkEvent } from '../../src/nexmark/model.ts';
import { QUERIES, QUERY_NAMES, type QueryName } from '../../src/nexmark/queries.ts';
import { NexmarkSource } from '../../src/nexmark/source.ts';
import { canonical, oracle } from '../nexmark/oracle.ts';
import { Coverage, exactlyOnce } from './support.ts';

const coverage = new Coverage();
afterAll(() => coverage.expectAll('nexmark'));

const EVENTS = 10_000;
const RATE = 200; // 50 s of event time: several windows and sessions
const SEED = 5;

/** The last row per key of an updating query, once the input has ended (as `spate nexmark --out` writes it). */
function finalTable(rows: Stream<object>, key: (row: object) => string | number): Stream<object> {
  return rows
    .keyBy(key)
    .state({ row: valueState<object>() })
    .process<object>(
      {
        onElement(row, ctx) {
          ctx.state.row.set(row);
          ctx.registerEventTimer(MAX_WATERMARK);
        },
        onTimer(_t, ctx) {
          const row = ctx.state.row.get();
          if (row !== undefined) ctx.emit(row);
        },
      },
      { id: 'final-table' },
    );
}

function build(query: QueryName, disorder: number) {
  return (p: Pipeline) => {
    const events = p.source<NexmarkEvent>(() => new NexmarkSource({ events: EVENTS, rate: RATE, seed: SEED, disorder }), {
      id: 'nexmark',
      outOfOrderness: disorder,
      idleTimeout: 0,
    });
    const q = QUERIES[query];
    const rows = q.build(events);
    const outputs: Record<string, Stream<object>> = { rows };
    if (q.tableKey !== undefined) outputs.table = finalTable(rows, q.tableKey);
    return outputs;
  };
}

const generator = new NexmarkGenerator({ seed: SEED, rate: RATE });
const allEvents: NexmarkEvent[] = Array.from({ length: EVENTS }, (_, n) => generator.event(n));

describe.each([0, 3000])('NEXMark under crashes (disorder %i ms)', (disorder) => {
  it.each(QUERY_NAMES.map((q, i) => [q, i] as const))('%s', async (query, i) => {
    const { expected, actual } = await exactlyOnce(
      build(query, disorder),
      { seed: 100 + i + disorder, crashes: 5, batchSize: 64, checkpointEvery: 3, storageDelay: 2 },
      coverage,
    );
    const out = expected.output as { rows: object[]; table?: object[] };
    const want = canonical(oracle(query, allEvents));
    expect(want.length).toBeGreaterThan(0);
    expect(canonical(out.table ?? out.rows)).toEqual(want);
    expect(actual.crashes.length).toBeGreaterThan(0);
  });
});
