/**
 * The CDC source while the server stops and starts again (`scripts/services.sh down|up
 * postgres`). Disruptive: it stops the shared test server, so it runs after every other test file
 * (see vitest.config.ts), and always starts the server again. By hand, take the lock other
 * engineers use: `flock /tmp/spate-disruptive.lock npx vitest run <this file>`.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CollectSink, Pipeline } from '../../index.ts';
import { type ChangeRecord, PostgresCdcSource } from './cdc-source.ts';
import { PG_URL, sql, testSchema } from '../../../test/support/postgres.ts';
import { createItems, type Item, itemsOf, plain, replay } from '../../../test/support/cdc.ts';

const exec = promisify(execFile);
const SERVICES = fileURLToPath(new URL('../../../scripts/services.sh', import.meta.url));
const services = (...args: string[]): Promise<unknown> => exec('bash', [SERVICES, ...args], { timeout: 120_000 });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const slots: string[] = [];

let schema: { name: string; drop: () => Promise<void> };

beforeAll(async () => {
  schema = await testSchema('cdcrestart');
});
afterAll(async () => {
  await services('up', 'postgres'); // whatever happened
  for (const slot of slots) await PostgresCdcSource.drop(PG_URL, { slot, publication: slot });
  await schema.drop();
}, 150_000);

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function job(t: string, slot: string, lines: string[]): { running: ReturnType<Pipeline['start']>; out: CollectSink<ChangeRecord<Item>>; source: PostgresCdcSource<Item> } {
  slots.push(slot);
  const p = new Pipeline();
  const source = new PostgresCdcSource<Item>({ connection: PG_URL, slot, tables: [t], retryMs: { first: 50, max: 500 } });
  const out = new CollectSink<ChangeRecord<Item>>();
  p.source(source, { id: 'cdc' }).sink(out, { id: 'out' });
  const running = p.start({ checkpointInterval: 100, log: (l) => lines.push(l) });
  return { running, out, source };
}

/** Random changes in `n` transactions. */
async function changes(t: string, n: number, keys: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const k = Math.floor(Math.random() * keys);
    await sql(
      `WITH u AS (UPDATE ${t} SET v = v + 1 WHERE id = ${k}), d AS (DELETE FROM ${t} WHERE id = ${(k * 7) % keys}) ` +
        `INSERT INTO ${t} VALUES (${keys + i + Math.floor(Math.random() * 1e6) * 1000}, ${i}, 'x') ON CONFLICT DO NOTHING`,
    );
  }
}

async function equalsTable(t: string, records: ReadonlyArray<ChangeRecord<Item>>): Promise<boolean> {
  const expected = await itemsOf(t);
  try {
    return JSON.stringify([...plain(replay(records))].sort((a, b) => a[0] - b[0])) === JSON.stringify([...expected]);
  } catch {
    return false;
  }
}

it('the server is down when the job starts: the source waits for it, saying so once, then reads everything', async () => {
  const t = `${schema.name}.late`;
  await createItems(t, 1_000);
  const lines: string[] = [];
  let started: ReturnType<typeof job>;
  try {
    await services('down', 'postgres');
    started = job(t, `spate_cdcr_late_${process.pid}`, lines);
    await sleep(2_000);
    expect(started.source.metrics.connectionFailures).toBeGreaterThan(2);
  } finally {
    await services('up', 'postgres');
  }
  await until(() => started.out.values.length >= 1_000, 'the snapshot');
  await changes(t, 50, 1_000);
  await until(() => equalsTable(t, started.out.values), 'the changes');
  await started.running.stop();
  expect(lines.filter((l) => /connecting: PostgreSQL is unavailable/.test(l))).toHaveLength(1);
  expect(lines.some((l) => /connecting: PostgreSQL answers again, after \d+ failed attempt/.test(l))).toBe(true);
  expect(await equalsTable(t, started.out.values)).toBe(true);
}, 150_000);

it('the server restarts while the job streams: the source reconnects and resumes without loss or duplicates', async () => {
  const t = `${schema.name}.restart`;
  await createItems(t, 2_000);
  const lines: string[] = [];
  const { running, out, source } = job(t, `spate_cdcr_restart_${process.pid}`, lines);
  await until(() => out.values.length >= 2_000, 'the snapshot');
  await changes(t, 100, 2_000);
  // A big transaction just before the stop: the stream may break inside it.
  await sql(`UPDATE ${t} SET note = 'big' WHERE id % 3 = 0`);
  try {
    await services('down', 'postgres');
    await sleep(2_000);
  } finally {
    await services('up', 'postgres');
  }
  await changes(t, 100, 2_000);
  await until(() => equalsTable(t, out.values), 'the changes after the restart', 60_000).catch(async (error: unknown) => {
    let why = '';
    try {
      replay(out.values);
    } catch (e) {
      why = (e as Error).message;
    }
    throw new Error(`${(error as Error).message}: ${why}; metrics ${JSON.stringify(source.metrics)}; log:\n${lines.join('\n')}`);
  });
  await running.stop();
  expect(source.metrics.reconnects).toBeGreaterThanOrEqual(1);
  expect(lines.some((l) => /change stream broke/.test(l))).toBe(true);
  expect(lines.some((l) => /change stream resumed from/.test(l))).toBe(true);
  // replay() throws on a change seen twice or missing: exactly once across the restart.
  expect(await equalsTable(t, out.values)).toBe(true);
}, 150_000);
