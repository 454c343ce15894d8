/**
 * End to end, across SIGKILLs: a PostgreSQL table changed by concurrent inserts, updates (some of
 * the key) and deletes, mirrored by `spate run` of a pipeline module (CDC source → PostgresSink
 * upserting and deleting by key) into another table. The job is killed at random moments — during
 * the snapshot and during the stream — and restarted from its checkpoint directory; at the end the
 * target table equals the source table, and an append-only audit of the change records shows
 * none twice and none that a snapshot row already held.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PostgresCdcSource } from '../src/index.ts';
import { createItems, writer } from './support/cdc.ts';
import { PG_URL, sql, testSchema } from './support/postgres.ts';

const bin = join(import.meta.dirname, '..', 'bin', 'spate.js');
const fixture = join(import.meta.dirname, 'fixtures', 'cdc-mirror.ts');
const dir = mkdtempSync(join(tmpdir(), 'spate-cdc-mirror-'));
const slot = `spate_cdc_mirror_${process.pid}`;
let schema: { name: string; drop: () => Promise<void> };

beforeAll(async () => {
  schema = await testSchema('cdcmirror');
});
afterAll(async () => {
  await PostgresCdcSource.drop(PG_URL, { slot, publication: slot });
  await schema.drop();
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function start(args: string[]): { child: ChildProcess; stderr: () => string; exit: Promise<{ code: number | null; signal: string | null }> } {
  const child = spawn(process.execPath, [bin, 'run', ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, stderr: () => err, exit };
}

/** The id of the newest complete checkpoint in `ck` (0 if none). */
function newest(ck: string): number {
  if (!existsSync(ck)) return 0;
  return Math.max(0, ...readdirSync(ck).filter((n) => /^chk-\d+$/.test(n) && existsSync(join(ck, n, '_MANIFEST'))).map((n) => Number(n.slice(4))));
}

/** Rows in one table and not the other (both ways, with multiplicity). */
async function difference(a: string, b: string): Promise<unknown[]> {
  return sql(`(SELECT id, v, note FROM ${a} EXCEPT ALL SELECT id, v, note FROM ${b}) UNION ALL (SELECT id, v, note FROM ${b} EXCEPT ALL SELECT id, v, note FROM ${a})`);
}

it('a CDC pipeline killed at random moments and restarted mirrors the table exactly', async () => {
  const source = `${schema.name}.items`;
  const target = `${schema.name}.mirror`;
  await createItems(source, 150_000);
  await sql(`CREATE TABLE ${target} (id int PRIMARY KEY, v int, note text)`);
  const ck = join(dir, 'checkpoints');
  const args = [fixture, '--parallelism', '2', '--checkpoint-dir', ck, '--checkpoint-interval', '100', '--', PG_URL, slot, source, target];
  const w = writer(source, { keys: 150_000, pauseMs: 1 });
  let log = '';
  let kills = 0;
  try {
    // Killed at random moments: the first runs mostly during the snapshot, later ones in the stream.
    for (let round = 0; round < 5; round++) {
      const run = start(args);
      if (round === 0) {
        // The first kill lands during the snapshot, right after a checkpoint of it completes.
        const began = Date.now();
        while (!/reading the snapshot/.test(run.stderr()) && Date.now() - began < 30_000) await sleep(5);
        const before = newest(ck);
        while (newest(ck) === before && Date.now() - began < 30_000) await sleep(5);
      } else await sleep(1_200 + Math.random() * 2_500);
      if (process.env['SPATE_TEST_VERBOSE']) console.log(`kill ${round} at ${Date.now() % 1e6}`);
      run.child.kill('SIGKILL');
      const exit = await run.exit;
      log += run.stderr();
      if (exit.signal === 'SIGKILL') kills++;
      else throw new Error(`the job ended by itself (${JSON.stringify(exit)}): ${run.stderr()}`);
    }
    // Enough changes to check, however slow the machine is (about 4 row changes per transaction): the last run streams them from the slot.
    const began = Date.now();
    while (w.committed() < 300 && Date.now() - began < 60_000) await sleep(50);
  } finally {
    await w.stop();
  }
  // A last run, left to catch up with the table, then stopped.
  const run = start(args);
  const deadline = Date.now() + 60_000;
  let diff = await difference(source, target);
  while (diff.length > 0 && Date.now() < deadline) {
    await sleep(250);
    diff = await difference(source, target);
  }
  if (process.env['SPATE_TEST_VERBOSE']) console.log(`caught up at ${Date.now() % 1e6}`);
  run.child.kill('SIGTERM');
  const exit = await run.exit;
  log += run.stderr();
  if (process.env["SPATE_TEST_VERBOSE"]) console.log(log);
  expect(exit.code, log).toBe(0);
  expect(kills).toBe(5);
  expect(log).toMatch(/resuming from checkpoint/);
  expect(log).toMatch(/resuming the snapshot at/); // the first crash was during the snapshot
  expect(diff).toEqual([]);
  expect(await difference(source, target)).toEqual([]);
  // Exactly once, not only convergent: no change record twice, and none older than the snapshot
  // row of its key (a replayed change would be hidden by upserts of full rows).
  const audit = `${target}_audit`;
  await sql(`ANALYZE ${audit}`); // fresh statistics, or the planner nests loops over 150 000 rows
  expect(await sql(`SELECT op, id, lsn, count(*) FROM ${audit} GROUP BY 1, 2, 3 HAVING count(*) > 1 LIMIT 5`)).toEqual([]);
  expect(
    await sql(
      `SELECT c.op, c.id, c.commit_lsn, s.lsn AS snapshot_lsn FROM ${audit} c JOIN ${audit} s ON s.id = c.id AND s.op = 'snapshot' ` +
        `WHERE c.op <> 'snapshot' AND c.commit_lsn::pg_lsn < s.lsn::pg_lsn LIMIT 5`,
    ),
  ).toEqual([]);
  const [{ changes }] = await sql<{ changes: string }>(`SELECT count(*) AS changes FROM ${audit} WHERE op <> 'snapshot'`);
  expect(Number(changes)).toBeGreaterThan(1_000);
  const [{ n }] = await sql<{ n: string }>(`SELECT count(*) AS n FROM ${target}`);
  expect(Number(n)).toBeGreaterThan(140_000);
}, 150_000);
