/**
 * PostgreSQL CDC source throughput, against the server of `SPATE_PG_URL` (default: the test server
 * of scripts/services.sh): a table of `rows` rows read as a snapshot, then a backlog of changes
 * written while the job was stopped and read when it resumes from its checkpoint — so the figure
 * is what the server's decoding, the protocol, value conversion and the pipeline sustain, not the
 * speed of the writer. Checkpoints every second, as a job would run.
 *
 * Backlogs: `changes` inserts in transactions of 1 000 rows; the same number of updates of
 * three columns in transactions of 1 000; `changes / 10` single-row transactions (one change per
 * transaction, so Begin and Commit messages weigh in). Records reach a counting sink. Backlogs are
 * timed from their first record to their last; the snapshot from the job's start (slot creation
 * included).
 *
 * `npx tsx bench/postgres-cdc.ts [rows=200000] [changes=200000]` prints a markdown table.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { CallbackSink, Pipeline, PostgresCdcSource, type RunningJob } from '../src/index.ts';

const URL = process.env['SPATE_PG_URL'] ?? 'postgres://spate:spate@127.0.0.1:5432/spate';
const rows = Number(process.argv[2] ?? 200_000);
const changes = Number(process.argv[3] ?? 200_000);

async function query(text: string): Promise<void> {
  const c = new Client(URL);
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

const schema = `spate_bench_cdc_${process.pid}`;
const slot = `spate_bench_cdc_${process.pid}`;
const table = `${schema}.items`;
const dir = mkdtempSync(join(tmpdir(), 'spate-bench-cdc-'));
let seen = 0;

function start(): RunningJob {
  const p = new Pipeline();
  p.source(new PostgresCdcSource({ connection: URL, slot, tables: [table] }), { id: 'cdc' }).sink(
    new CallbackSink(() => {
      seen++;
    }),
    { id: 'count' },
  );
  return p.start({ checkpointDir: dir, checkpointInterval: 1_000, log: () => undefined });
}

async function until(n: number): Promise<number> {
  const started = performance.now();
  while (seen < n) await new Promise((r) => setTimeout(r, 2));
  return (performance.now() - started) / 1000;
}

/** Writes a backlog with the job stopped, then measures reading it from the checkpoint. */
async function backlog(what: string, count: number, write: () => Promise<void>): Promise<string> {
  await write();
  seen = 0;
  const running = start();
  // Timed from the first record: start-up (plan, connection, START_REPLICATION) is not reading.
  await until(1);
  const started = performance.now();
  const first = seen;
  await until(count);
  const seconds = (performance.now() - started) / 1000;
  await running.stop();
  return `| ${what} | ${count} | ${seconds.toFixed(2)} | ${Math.round((count - first) / seconds).toLocaleString('en-US')} |`;
}

await query(`CREATE SCHEMA ${schema}`);
try {
  await query(`CREATE TABLE ${table} (id int PRIMARY KEY, v int NOT NULL, note text, at timestamptz)`);
  await query(`INSERT INTO ${table} SELECT i, i, 'note ' || i, now() FROM generate_series(1, ${rows}) i`);
  const out: string[] = ['| phase | records | seconds | records/s |', '|---|---:|---:|---:|'];
  let running = start();
  const snapshotSeconds = await until(rows);
  out.push(`| snapshot (start, slot creation and reading) | ${rows} | ${snapshotSeconds.toFixed(2)} | ${Math.round(rows / snapshotSeconds).toLocaleString('en-US')} |`);
  // One change read from the stream: the snapshot is over (its end is checkpointed by the stop).
  await query(`UPDATE ${table} SET v = 0 WHERE id = 1`);
  await until(rows + 1);
  await running.stop();
  const tx = 1_000;
  out.push(
    await backlog(`inserts, ${tx} per transaction`, changes, async () => {
      for (let i = 0; i < changes; i += tx) {
        await query(`INSERT INTO ${table} SELECT i, i, 'new ' || i, now() FROM generate_series(${rows + i + 1}, ${rows + Math.min(changes, i + tx)}) i`);
      }
    }),
  );
  out.push(
    await backlog(`updates, ${tx} per transaction`, changes, async () => {
      for (let i = 0; i < changes; i += tx) await query(`UPDATE ${table} SET v = v + 1, note = 'upd', at = now() WHERE id > ${i} AND id <= ${i + tx}`);
    }),
  );
  const single = Math.floor(changes / 10);
  out.push(
    await backlog('updates, 1 per transaction', single, async () => {
      for (let i = 0; i < single; i += 500) {
        let batch = '';
        for (let j = i; j < Math.min(single, i + 500); j++) batch += `BEGIN; UPDATE ${table} SET v = v + 1 WHERE id = ${j + 1}; COMMIT; `;
        await query(batch);
      }
    }),
  );
  running = start(); // nothing left: stops at once
  await running.stop();
  console.log(`PostgreSQL CDC source (${rows} rows, backlogs read from a checkpoint; counting sink; checkpoints every second)\n`);
  console.log(out.join('\n'));
} finally {
  await PostgresCdcSource.drop(URL, { slot, publication: slot });
  await query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  rmSync(dir, { recursive: true, force: true });
}
