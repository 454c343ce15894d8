/**
 * End to end across SIGKILLs (issue 9 point 9, Kafka): NEXMark events in a Kafka topic, a job
 * reading it with parallelism 2 (worker threads, `spate run`) computing q5 and q7 into three
 * stores — a Kafka topic with transactions, PostgreSQL tables and DuckDB tables (one DuckDB file
 * per run directory), each appended to; killed with SIGKILL mid-run and restarted from its
 * checkpoints, every store holds exactly what a failure-free run's holds (as multisets: a row
 * written twice or lost shows).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { DuckDBDatabase } from '../../src/index.ts';
import { NexmarkGenerator } from '../../src/nexmark/generator.ts';
import { createTopic, deleteTopics, produce, readCommitted, uniqueTopic } from '../support/kafka.ts';
import { Q5_COLUMNS, Q7_COLUMNS } from '../support/kafka-nexmark-job.ts';
import { sql, testSchema } from '../support/postgres.ts';

const BIN = fileURLToPath(new URL('../../bin/spate.js', import.meta.url));
const JOB = fileURLToPath(new URL('../support/kafka-nexmark-job.ts', import.meta.url));
const topics: string[] = [];
const dirs: string[] = [];
const schemas: Array<{ drop: () => Promise<void> }> = [];

afterAll(async () => {
  await deleteTopics(topics);
  for (const s of schemas) await s.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function run(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, [BIN, 'run', JOB, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
  return { child, done };
}

/** Checkpoints committed in `dir` (a checkpoint exists once its manifest does). */
const committed = (dir: string): number => {
  try {
    return readdirSync(dir).filter((f) => /^chk-/.test(f) && existsSync(join(dir, f, '_MANIFEST'))).length;
  } catch {
    return 0;
  }
};

/** A row of q5 or q7 as one comparable string, whatever store it was read from. */
const rowKey = (q: 'q5' | 'q7', values: readonly unknown[]): string => JSON.stringify([q, ...values.map(String)]);

/** What the output topic holds, as sorted row keys. */
async function kafkaRows(topic: string, options: { waitStable?: boolean } = {}): Promise<string[]> {
  return (await readCommitted(topic, options))
    .map((r) => {
      const v = JSON.parse(r.value) as Record<string, unknown>;
      return v['q'] === 'q5' ? rowKey('q5', [v['auction'], v['num'], v['window_start'], v['window_end']]) : rowKey('q7', [v['auction'], v['price'], v['bidder'], v['dateTime'], v['extra']]);
    })
    .sort();
}

/** What the PostgreSQL tables of a run hold (none yet: nothing). */
async function pgRows(schema: string): Promise<string[]> {
  const out: string[] = [];
  for (const [q, columns] of [['q5', Q5_COLUMNS], ['q7', Q7_COLUMNS]] as const) {
    const exists = await sql<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [`${schema}.${q}`]);
    if (exists[0]!.t === null) continue;
    for (const r of await sql(`SELECT ${columns.join(', ')} FROM ${schema}.${q}`)) out.push(rowKey(q, columns.map((c) => r[c])));
  }
  return out.sort();
}

/** What the DuckDB tables of a run hold (opened by this process once the job has exited). */
async function duckdbRows(path: string): Promise<string[]> {
  const out: string[] = [];
  for (const [q, columns] of [['q5', Q5_COLUMNS], ['q7', Q7_COLUMNS]] as const) {
    for (const r of await DuckDBDatabase.query<Record<string, unknown>>(path, `SELECT ${columns.join(', ')} FROM ${q}`)) out.push(rowKey(q, columns.map((c) => r[c])));
  }
  return out.sort();
}

it('q5 and q7 from Kafka to Kafka, PostgreSQL and DuckDB at parallelism 2: SIGKILLed mid-run and restarted, every store holds what a failure-free run holds', async () => {
  const n = 60_000;
  // Events from 2023: createTopic turns time-based retention off, or the broker would delete them.
  const input = await createTopic(uniqueTopic('nexmark-in'), 2);
  const reference = await createTopic(uniqueTopic('nexmark-ref'), 1);
  const crashed = await createTopic(uniqueTopic('nexmark-crash'), 1);
  topics.push(input, reference, crashed);
  const refSchema = await testSchema('nexmark_ref');
  const crashSchema = await testSchema('nexmark_crash');
  schemas.push(refSchema, crashSchema);
  // 500 events per second of event time: 120 s of it, so that q5 (every 2 s) and q7 (every 10 s)
  // emit throughout the run — rows committed before the kill, pre-committed at it, and after.
  const gen = new NexmarkGenerator({ rate: 500 });
  const events = Array.from({ length: n }, (_, i) => gen.event(i));
  await produce(input, events.map((e, i) => ({ value: e, partition: i % 2, timestamp: e.dateTime })));

  const common = ['--parallelism', '2', '--checkpoint-interval', '100'];
  const refDir = mkdtempSync(join(tmpdir(), 'spate-kafka-nx-ref-'));
  const dir = mkdtempSync(join(tmpdir(), 'spate-kafka-nx-'));
  dirs.push(refDir, dir);
  const refArgs = ['--', input, reference, refSchema.name, join(refDir, 'results.duckdb')];
  const args = ['--', input, crashed, crashSchema.name, join(dir, 'results.duckdb')];

  const ref = await run([...common, '--checkpoint-dir', refDir, ...refArgs]).done;
  expect(ref.code, ref.stderr).toBe(0);

  const want = await kafkaRows(reference, { waitStable: true });
  expect(want.filter((v) => v.startsWith('["q5"')).length).toBeGreaterThan(10);
  expect(want.filter((v) => v.startsWith('["q7"')).length).toBeGreaterThan(2);

  // Slowed down so that the kill lands mid-run: 60 000 events × 200 µs over two workers ≈ 6 s.
  // Killed once two checkpoints are committed (CI once saw the whole input processed before a
  // third checkpoint directory appeared) and a third of the output is committed in PostgreSQL:
  // rows committed before the kill, rows pre-committed at it, rows written after the restart.
  // Batches of 64 events: a worker busy with a batch of 1024 (200 ms of spin) lets its event loop
  // turn only between batches, and each step of a checkpoint's file writes waits for a turn —
  // the first checkpoints then took seconds and the kill came near the end of the output.
  const first = run([...common, '--batch-size', '64', '--checkpoint-dir', dir, ...args, '200']);
  let exited = false;
  void first.done.then(() => (exited = true));
  const deadline = Date.now() + 30_000;
  while (!exited && (committed(dir) < 2 || (await pgRows(crashSchema.name)).length < want.length / 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  first.child.kill('SIGKILL');
  const killed = await first.done;
  expect(killed.signal, killed.stderr).toBe('SIGKILL');
  const partial = await readCommitted(crashed);
  const pgPartial = await pgRows(crashSchema.name);

  const second = await run([...common, '--checkpoint-dir', dir, ...args]).done;
  expect(second.code, second.stderr).toBe(0);
  expect(second.stderr).toMatch(/restor|resum/i);

  expect(partial.length).toBeLessThan(want.length);
  expect(pgPartial.length, 'rows committed before the kill').toBeGreaterThan(0);
  expect(pgPartial.length).toBeLessThan(want.length);
  // The failure-free run wrote the same rows to each store.
  expect(await pgRows(refSchema.name), 'PostgreSQL, failure-free').toEqual(want);
  expect(await duckdbRows(join(refDir, 'results.duckdb')), 'DuckDB, failure-free').toEqual(want);
  // Killed and restarted, each store holds them too: nothing lost, nothing twice.
  expect(await kafkaRows(crashed, { waitStable: true }), 'Kafka, killed and restarted').toEqual(want);
  expect(await pgRows(crashSchema.name), 'PostgreSQL, killed and restarted').toEqual(want);
  expect(await duckdbRows(join(dir, 'results.duckdb')), 'DuckDB, killed and restarted').toEqual(want);
}, 120_000);
