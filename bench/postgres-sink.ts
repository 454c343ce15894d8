/**
 * PostgreSQL sink throughput: a generator of small records → PostgresSink, with a checkpoint
 * every second (each commits its rows), in append and upsert mode, against the server of
 * `SPATE_PG_URL` (default: the test server of scripts/services.sh).
 *
 * Records: { id: i, device: 'd' + (i % 1000), value: i / 10 }; upsert keys by device and
 * `id % keys` (default 100 000 distinct keys, so most records update a row). Rows/s counts the
 * whole run, from start to the last commit, generator included. Each mode runs in a fresh table
 * of a scratch schema, dropped at the end.
 *
 * `npx tsx bench/postgres-sink.ts [records=1000000] [keys=100000]` prints a markdown table.
 */
import { Client } from 'pg';
import { GeneratorSource, Pipeline, PostgresSink } from '../src/index.ts';

const URL = process.env['SPATE_PG_URL'] ?? 'postgres://spate:spate@127.0.0.1:5432/spate';
const n = Number(process.argv[2] ?? 1_000_000);
const keys = Number(process.argv[3] ?? 100_000);

interface Reading {
  readonly id: number;
  readonly device: string;
  readonly value: number;
}

async function query(text: string): Promise<Array<Record<string, unknown>>> {
  const c = new Client(URL);
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

async function run(mode: 'append' | 'upsert', schema: string): Promise<{ seconds: number; rows: number; checkpoints: number }> {
  const table = `${schema}.${mode}`;
  const p = new Pipeline();
  const make = mode === 'append' ? (i: number): Reading => ({ id: i, device: `d${i % 1000}`, value: i / 10 }) : (i: number): Reading => ({ id: i % keys, device: `d${i % 1000}`, value: i / 10 });
  p.source(new GeneratorSource<Reading>({ count: n, make }), { id: 'readings' }).sink(
    new PostgresSink<Reading>({
      connection: URL,
      table,
      create: { id: 'bigint', device: 'text', value: 'double precision' },
      ...(mode === 'upsert' ? { key: ['id'] } : {}),
    }),
    { id: 'pg' },
  );
  const started = performance.now();
  const result = await p.run({ checkpointInterval: 1_000 });
  const seconds = (performance.now() - started) / 1000;
  const rows = Number((await query(`SELECT count(*) AS n FROM ${table}`))[0]!['n']);
  return { seconds, rows, checkpoints: result.checkpoints.length };
}

const schema = `spate_bench_${process.pid}`;
await query(`CREATE SCHEMA ${schema}`);
try {
  console.log(`| mode | records | rows in table | seconds | rows/s | checkpoints |`);
  console.log(`|---|---:|---:|---:|---:|---:|`);
  for (const mode of ['append', 'upsert'] as const) {
    const r = await run(mode, schema);
    console.log(`| ${mode} | ${n.toLocaleString('en-US')} | ${r.rows.toLocaleString('en-US')} | ${r.seconds.toFixed(1)} | ${Math.round(n / r.seconds).toLocaleString('en-US')} | ${r.checkpoints} |`);
  }
} finally {
  await query(`DROP SCHEMA ${schema} CASCADE`);
}
