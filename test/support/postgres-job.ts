/**
 * A job for the crash tests of the PostgreSQL sink, run as a child process (and killed with
 * SIGKILL): a deterministic generator → PostgresSink with durable checkpoints every 50 ms.
 *
 *   node --import tsx test/support/postgres-job.ts <append|upsert> <schema.table> <checkpoint-dir> <count> <rate>
 *
 * Records: { id: i, k: i % 97, v: i }; in upsert mode keyed by k, and every record with
 * i % 11 === 3 deletes its key. Exits 0 when the input is consumed and committed.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GeneratorSource, Pipeline, PostgresSink } from '../../src/index.ts';
import { PG_URL } from './postgres.ts';

export interface JobRecord {
  readonly id: number;
  readonly k: number;
  readonly v: number;
}

export const record = (i: number): JobRecord => ({ id: i, k: i % 97, v: i });
export const isDelete = (r: JobRecord): boolean => r.id % 11 === 3;

/** The pipeline of the crash tests (also run in-process for the failure-free reference). */
export function crashPipeline(mode: string, table: string, count: number, rate: number | undefined): Pipeline {
  const p = new Pipeline();
  const source = new GeneratorSource<JobRecord>({ count, make: record, ...(rate === undefined ? {} : { ratePerSecond: rate }) });
  p.source(source, { id: 'numbers' }).sink(
    new PostgresSink<JobRecord>({
      connection: PG_URL,
      table,
      create: { id: 'bigint', k: 'integer', v: 'bigint' },
      columns: ['id', 'k', 'v'],
      row: (r) => [r.id, r.k, r.v],
      ...(mode === 'upsert' ? { key: ['k'], op: (r: JobRecord) => (isDelete(r) ? 'delete' : 'upsert') } : {}),
    }),
    { id: 'pg' },
  );
  return p;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [mode, table, dir, count, rate] = process.argv.slice(2);
  process.stdout.write('running\n'); // the parent times its kill from here, not from a slow start-up
  await crashPipeline(mode!, table!, Number(count), Number(rate)).run({ checkpointDir: dir!, checkpointInterval: 50, log: (l) => process.stderr.write(l + '\n') });
}
