/**
 * DuckDB sink throughput: a generator of small records → DuckDBSink, with a checkpoint every
 * second (each commits its rows), in append and upsert mode, into a scratch database file. For
 * comparison, the same records appended straight into the table with DuckDB's appender (no
 * staging, no exactly-once) and the generator alone.
 *
 * Records: { id: i, device: 'd' + (i % 1000), value: i / 10, at: epoch ms }; upsert keys by
 * `id % keys` (default 100 000 distinct keys, so most records update a row). Rows/s counts the
 * whole run, from start to the last commit, generator included.
 *
 * `npx tsx bench/duckdb-sink.ts [records=1000000] [keys=100000]` prints a markdown table.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBDatabase, DuckDBSink, GeneratorSource, Pipeline } from '../src/index.ts';
import { CallbackSink } from '../src/index.ts';

const n = Number(process.argv[2] ?? 1_000_000);
const keys = Number(process.argv[3] ?? 100_000);
const dir = mkdtempSync(join(tmpdir(), 'spate-bench-duckdb-'));

interface Reading {
  readonly id: number;
  readonly device: string;
  readonly value: number;
  readonly at: number;
}

const T0 = Date.UTC(2025, 0, 1);
const columns = { id: 'BIGINT', device: 'VARCHAR', value: 'DOUBLE', at: 'TIMESTAMP' };

async function run(mode: 'append' | 'upsert' | 'generator only', path: string): Promise<{ seconds: number; rows: number; checkpoints: number }> {
  const p = new Pipeline();
  const make = (i: number): Reading => ({ id: mode === 'upsert' ? i % keys : i, device: `d${i % 1000}`, value: i / 10, at: T0 + i });
  const stream = p.source(new GeneratorSource<Reading>({ count: n, make }), { id: 'readings' });
  if (mode === 'generator only') stream.sink(new CallbackSink(() => undefined));
  else stream.sink(new DuckDBSink<Reading>({ path, table: mode, create: columns, ...(mode === 'upsert' ? { key: ['id'] } : {}) }), { id: 'duck' });
  const started = performance.now();
  const result = await p.run({ checkpointInterval: 1_000 });
  const seconds = (performance.now() - started) / 1000;
  const rows = mode === 'generator only' ? n : Number((await DuckDBDatabase.query<{ n: bigint }>(path, `SELECT count(*) AS n FROM ${mode}`))[0]!.n);
  return { seconds, rows, checkpoints: result.checkpoints.length };
}

/** The floor: the same rows appended straight into a table with DuckDB's appender, one data chunk per 2048 rows. */
async function appenderOnly(path: string): Promise<number> {
  const { DuckDBDataChunk, BIGINT, VARCHAR, DOUBLE, TIMESTAMP } = await import('@duckdb/node-api');
  const db = await DuckDBDatabase.open(path);
  const c = await db.connect();
  await c.run('CREATE TABLE direct (id BIGINT, device VARCHAR, value DOUBLE, "at" TIMESTAMP)');
  const started = performance.now();
  const appender = await c.createAppender('direct');
  const chunk = DuckDBDataChunk.create([BIGINT, VARCHAR, DOUBLE, TIMESTAMP], 2048);
  const box = { micros: 0n };
  for (let off = 0; off < n; off += 2048) {
    const rows = Math.min(2048, n - off);
    const v = [0, 1, 2, 3].map((i) => chunk.getColumnVector(i));
    for (let j = 0; j < rows; j++) {
      const i = off + j;
      v[0]!.setItem(j, BigInt(i));
      v[1]!.setItem(j, `d${i % 1000}`);
      v[2]!.setItem(j, i / 10);
      box.micros = BigInt(T0 + i) * 1000n;
      v[3]!.setItem(j, box as never);
    }
    for (const x of v) x.flush();
    if (rows < 2048) chunk.rowCount = rows;
    appender.appendDataChunk(chunk);
    chunk.reset();
    chunk.rowCount = 2048;
  }
  appender.flushSync();
  appender.closeSync();
  const seconds = (performance.now() - started) / 1000;
  c.closeSync();
  await db.close();
  return seconds;
}

try {
  console.log(`| mode | records | rows in table | seconds | rows/s | checkpoints |`);
  console.log(`|---|---:|---:|---:|---:|---:|`);
  const line = (mode: string, r: { seconds: number; rows: number; checkpoints: number | string }): void =>
    console.log(`| ${mode} | ${n.toLocaleString('en-US')} | ${r.rows.toLocaleString('en-US')} | ${r.seconds.toFixed(2)} | ${Math.round(n / r.seconds).toLocaleString('en-US')} | ${r.checkpoints} |`);
  line('generator only', await run('generator only', join(dir, 'none.duckdb')));
  for (const mode of ['append', 'upsert'] as const) line(`DuckDBSink ${mode}`, await run(mode, join(dir, `${mode}.duckdb`)));
  const seconds = await appenderOnly(join(dir, 'direct.duckdb'));
  line('appender straight into the table (no generator, not exactly-once)', { seconds, rows: n, checkpoints: '–' });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
