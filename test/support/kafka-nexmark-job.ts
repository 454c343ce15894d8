/**
 * A pipeline module for the Kafka end-to-end tests, run with `spate run` (worker threads) and
 * killed with SIGKILL: NEXMark events from a Kafka topic (bounded: up to the end found at the first
 * start), q5 and q7, results to three stores, each exactly once:
 *
 * - a Kafka topic, in transactions: records `{ q: 'q5' | 'q7', ...row }`;
 * - PostgreSQL tables `<schema>.q5` and `<schema>.q7` (PostgresSink; URL from SPATE_PG_URL);
 * - DuckDB tables `q5` and `q7` in one file (DuckDBSink; a local sink: the main thread writes it).
 *
 * The tables are appended to, not upserted: a row written twice shows as two rows, a lost one as
 * none.
 *
 *   spate run test/support/kafka-nexmark-job.ts --parallelism 2 --checkpoint-dir D -- <input topic> <output topic> <pg schema> <duckdb file> [spin µs per event]
 *
 * The optional spin slows every event down (so that a kill lands mid-run on a fast machine).
 */
import { definePipeline, DuckDBSink, KafkaSink, KafkaSource, PostgresSink, type Stream } from '../../src/index.ts';
import type { NexmarkEvent, Q5Row, Q7Row } from '../../src/nexmark/model.ts';
import { q5, q7 } from '../../src/nexmark/queries.ts';
import { PG_URL } from './postgres.ts';

/** The columns of the q5 and q7 tables, in both databases, and a row's values in their order. */
export const Q5_COLUMNS = ['auction', 'num', 'window_start', 'window_end'] as const;
export const Q7_COLUMNS = ['auction', 'price', 'bidder', 'date_time', 'extra'] as const;
const q5Row = (r: Q5Row): unknown[] => [r.auction, r.num, r.window_start, r.window_end];
const q7Row = (r: Q7Row): unknown[] => [r.auction, r.price, r.bidder, r.dateTime, r.extra];

/** `events`, each held up `micros` µs by a busy loop (a step `spin`), so that kills land mid-run; `events` itself for 0. */
export function slowedDown<T>(events: Stream<T>, micros: number): Stream<T> {
  if (!(micros > 0)) return events;
  const ms = micros / 1000;
  return events.map((e) => {
    const until = performance.now() + ms;
    while (performance.now() < until);
    return e;
  }, { id: 'spin' });
}

export default definePipeline((p, args) => {
  const [input, output, schema, duckdb, spin] = args;
  if (input === undefined || output === undefined || schema === undefined || duckdb === undefined) {
    throw new Error('usage: -- <input topic> <output topic> <pg schema> <duckdb file> [spin µs]');
  }
  const events = slowedDown(p.source(new KafkaSource<NexmarkEvent>({ topic: input, bounded: true }), { id: 'events', timestamp: (e) => e.dateTime }), Number(spin ?? 0));
  const hot = q5(events);
  const highest = q7(events);
  hot.sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q5', ...r }) }), { id: 'q5-out' });
  highest.sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q7', ...r }) }), { id: 'q7-out' });

  const pgTypes = { auction: 'bigint', num: 'bigint', window_start: 'bigint', window_end: 'bigint', price: 'bigint', bidder: 'bigint', date_time: 'bigint', extra: 'text' };
  const duckTypes = { auction: 'BIGINT', num: 'BIGINT', window_start: 'BIGINT', window_end: 'BIGINT', price: 'BIGINT', bidder: 'BIGINT', date_time: 'BIGINT', extra: 'VARCHAR' };
  const typesOf = (types: Record<string, string>, columns: readonly string[]) => Object.fromEntries(columns.map((c) => [c, types[c]!]));
  hot.sink(new PostgresSink<Q5Row>({ connection: PG_URL, table: `${schema}.q5`, columns: Q5_COLUMNS, row: q5Row, create: typesOf(pgTypes, Q5_COLUMNS) }), { id: 'q5-pg' });
  highest.sink(new PostgresSink<Q7Row>({ connection: PG_URL, table: `${schema}.q7`, columns: Q7_COLUMNS, row: q7Row, create: typesOf(pgTypes, Q7_COLUMNS) }), { id: 'q7-pg' });
  hot.sink(new DuckDBSink<Q5Row>({ path: duckdb, table: 'q5', columns: Q5_COLUMNS, row: q5Row, create: typesOf(duckTypes, Q5_COLUMNS) }), { id: 'q5-duckdb' });
  highest.sink(new DuckDBSink<Q7Row>({ path: duckdb, table: 'q7', columns: Q7_COLUMNS, row: q7Row, create: typesOf(duckTypes, Q7_COLUMNS) }), { id: 'q7-duckdb' });
});
