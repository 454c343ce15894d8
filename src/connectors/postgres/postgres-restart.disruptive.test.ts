/**
 * The PostgreSQL sink while the server stops and starts again (`scripts/services.sh down|up
 * postgres`). Disruptive: it stops the shared test server, so it runs after every other test file
 * (see vitest.config.ts), and always starts the server again.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GeneratorSource, Pipeline } from '../../index.ts';
import { PostgresSink } from './sink.ts';
import { PG_URL, sql, testSchema } from '../../../test/support/postgres.ts';

const exec = promisify(execFile);
const SERVICES = fileURLToPath(new URL('../../../scripts/services.sh', import.meta.url));
const services = (...args: string[]): Promise<unknown> => exec('bash', [SERVICES, ...args], { timeout: 120_000 });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let schema: { name: string; drop: () => Promise<void> };
let dir: string;

beforeAll(async () => {
  schema = await testSchema('pgrestart');
  dir = mkdtempSync(join(tmpdir(), 'spate-pg-restart-'));
});
afterAll(async () => {
  await services('up', 'postgres'); // whatever happened
  await schema.drop();
  rmSync(dir, { recursive: true, force: true });
}, 150_000);

/** A job writing `n` records { id, v: 2·id } at `rate` per second into `t`. */
function job(t: string, n: number, rate: number, maxBufferedRows = 50_000): Pipeline {
  const p = new Pipeline();
  p.source(new GeneratorSource({ count: n, make: (i) => ({ id: i, v: i * 2 }), ratePerSecond: rate }), { id: 'numbers' }).sink(
    new PostgresSink<{ id: number; v: number }>({
      connection: PG_URL,
      table: t,
      create: { id: 'bigint', v: 'bigint' },
      rowsPerFlush: 500,
      maxBufferedRows,
      retryMs: { first: 50, max: 500 },
    }),
    { id: 'pg' },
  );
  return p;
}

async function expectExactlyOnce(t: string, n: number): Promise<void> {
  const rows = await sql<{ n: string; distinct: string; min: string; max: string; bad: string }>(
    `SELECT count(*) AS n, count(DISTINCT id) AS distinct, min(id) AS min, max(id) AS max, count(*) FILTER (WHERE v <> 2 * id) AS bad FROM ${t}`,
  );
  expect(rows[0]).toEqual({ n: String(n), distinct: String(n), min: '0', max: String(n - 1), bad: '0' });
}

it('the server is down when the job starts: the sink waits for it, saying so once, then writes everything', async () => {
  const t = `${schema.name}.late_start`;
  await sql(`CREATE TABLE ${t} (id bigint, v bigint)`);
  const lines: string[] = [];
  let running: ReturnType<Pipeline['start']>;
  try {
    await services('down', 'postgres');
    running = job(t, 5_000, 10_000).start({ checkpointDir: join(dir, 'late-start'), checkpointInterval: 100, log: (l) => lines.push(l) });
    await sleep(2_000);
  } finally {
    await services('up', 'postgres');
  }
  const result = await running.done;
  expect(result.deadLetters).toBe(0);
  await expectExactlyOnce(t, 5_000);
  expect(lines.filter((l) => /connecting: PostgreSQL is unavailable \(.*ECONNREFUSED/.test(l))).toHaveLength(1);
  expect(lines.some((l) => /connecting: PostgreSQL answers again, after \d+ failed attempt/.test(l))).toBe(true);
}, 150_000);

it('the server stops for a few seconds while a job writes: the sink backs up, waits, and commits everything exactly once', async () => {
  const n = 25_000;
  const maxBufferedRows = 2_000;
  const t = `${schema.name}.readings`;
  const p = job(t, n, 5_000, maxBufferedRows);
  const lines: string[] = [];
  const running = p.start({ checkpointDir: join(dir, 'restart'), checkpointInterval: 100, log: (l) => lines.push(l) });
  const sinkIn = (): number => running.job.metrics().find((m) => m.step === 'pg')!.recordsIn;
  await sleep(1_500);
  let during: number;
  try {
    await services('down', 'postgres');
    const before = sinkIn();
    await sleep(3_000);
    during = sinkIn() - before;
  } finally {
    await services('up', 'postgres');
  }
  const result = await running.done;
  expect(result.deadLetters).toBe(0);
  // While the server was down the sink took at most its buffer (and a batch or two), not the 15 000 records of 3 s.
  expect(during).toBeLessThan(maxBufferedRows + 2 * 1024);
  await expectExactlyOnce(t, n);
  expect(lines.some((l) => /PostgreSQL sink pg:.*PostgreSQL is unavailable/.test(l))).toBe(true);
  expect(lines.some((l) => /PostgreSQL answers again|succeeded after/.test(l))).toBe(true);
}, 150_000);
