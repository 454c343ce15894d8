/**
 * The PostgreSQL sink against the real server (`scripts/services.sh up postgres`; URL from
 * SPATE_PG_URL). Each file works in a schema of its own, so runs can overlap and repeat.
 * The server-restart test is in postgres-restart.test.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Batch, GeneratorSource, Pipeline, type DeadLetter } from '../../index.ts';
import { PostgresSink, type PostgresCommittable } from './sink.ts';
import type { Committable } from '../../runtime/sink.ts';
import { PG_URL, sinkContext, sql, testSchema } from '../../../test/support/postgres.ts';
import { crashPipeline, isDelete, record } from '../../../test/support/postgres-job.ts';

let schema: { name: string; drop: () => Promise<void> };
let dirs: string[] = [];
let tables = 0;

beforeAll(async () => {
  schema = await testSchema('pgsink');
});
afterAll(async () => {
  await schema.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'spate-pg-'));
  dirs.push(d);
  return d;
}

/** A fresh table name in the test schema. */
function table(name: string): string {
  return `${schema.name}.${name}_${++tables}`;
}

function batch<T>(values: readonly T[]): Batch<T> {
  const b = new Batch<T>(Math.max(1, values.length));
  for (const v of values) b.push(v, 0);
  return b;
}

async function count(t: string): Promise<number> {
  return Number((await sql<{ n: string }>(`SELECT count(*) AS n FROM ${t}`))[0]!.n);
}

/** What is left in the sink's staging table (should be nothing once everything is committed or aborted). */
async function stagedRows(t: string): Promise<number> {
  const [s] = t.split('.');
  const tables = await sql<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'spate_stage_%'`, [s]);
  let n = 0;
  for (const { name } of tables) n += await count(`${s}."${name}"`);
  return n;
}

interface Reading {
  readonly device: string;
  readonly seq: number;
  readonly temp: number;
}

describe('PostgresSink in a pipeline', () => {
  it('runs the example of its TSDoc', async () => {
    const latest = table('latest_readings');
    const checkpoints = tempDir();
    // As in the @example of PostgresSink, with the test's table and checkpoint directory.
    const p = new Pipeline();
    p.source(new GeneratorSource({ count: 1_000, make: (i) => ({ device: `d${i % 10}`, reading: i }) }), { id: 'readings' }).sink(
      new PostgresSink<{ device: string; reading: number }>({
        connection: process.env['SPATE_PG_URL'] ?? 'postgres://spate:spate@127.0.0.1:5432/spate',
        table: latest,
        create: { device: 'text', reading: 'bigint' },
        key: ['device'],
      }),
      { id: 'latest' },
    );
    await p.run({ checkpointDir: checkpoints });
    const rows = await sql<{ device: string; reading: string }>(`SELECT device, reading FROM ${latest} ORDER BY device`);
    expect(rows.map((r) => [r.device, Number(r.reading)])).toEqual(Array.from({ length: 10 }, (_, d) => [`d${d}`, 990 + d]));
  });

  it('appends exactly the input, through checkpoints', async () => {
    const t = table('readings');
    const n = 30_000;
    const p = new Pipeline();
    p.source(new GeneratorSource<Reading>({ count: n, make: (i) => ({ device: `d${i % 10}`, seq: i, temp: (i % 400) / 10 }) }), { id: 'readings' }).sink(
      new PostgresSink<Reading>({ connection: PG_URL, table: t, create: { device: 'text', seq: 'bigint', temp: 'double precision' }, rowsPerFlush: 2_000 }),
      { id: 'pg' },
    );
    const result = await p.run({ checkpointDir: tempDir(), checkpointInterval: 20 });
    expect(result.deadLetters).toBe(0);
    const rows = await sql<{ n: string; distinct: string; min: string; max: string; temps: number }>(
      `SELECT count(*) AS n, count(DISTINCT seq) AS distinct, min(seq) AS min, max(seq) AS max, sum(temp) AS temps FROM ${t}`,
    );
    expect(rows[0]).toMatchObject({ n: String(n), distinct: String(n), min: '0', max: String(n - 1) });
    let temps = 0;
    for (let i = 0; i < n; i++) temps += (i % 400) / 10;
    expect(rows[0]!.temps).toBeCloseTo(temps, 3);
    const wrong = await sql(`SELECT * FROM ${t} WHERE device <> 'd' || (seq % 10)::text OR temp <> (seq % 400) / 10.0 LIMIT 1`);
    expect(wrong).toEqual([]);
    // Several checkpoints committed, each recorded once, and nothing left staged.
    const commits = await sql<{ n: string; rows: string }>(`SELECT count(*) AS n, sum(rows) AS rows FROM ${schema.name}.spate_commits WHERE sink_id = $1`, [`pg:${t}`]);
    expect(Number(commits[0]!.n)).toBeGreaterThan(1);
    expect(commits[0]!.rows).toBe(String(n));
    expect(await stagedRows(t)).toBe(0);
  });

  it('upserts by key across checkpoints, the last write of a key winning, and deletes', async () => {
    const t = table('latest');
    const n = 6_000;
    // Key i % 50; every record with i % 7 === 0 deletes its key. Rate-limited so that updates
    // of one key land in many checkpoints.
    const make = (i: number): { device: string; seq: number; temp: number; op: 'upsert' | 'delete' } => ({
      device: `d${i % 50}`,
      seq: i,
      temp: i / 10,
      op: i % 7 === 0 ? 'delete' : 'upsert',
    });
    const p = new Pipeline();
    p.source(new GeneratorSource({ count: n, make, ratePerSecond: 12_000 }), { id: 'changes' }).sink(
      new PostgresSink<ReturnType<typeof make>>({
        connection: PG_URL,
        table: t,
        create: { device: 'text', seq: 'bigint NOT NULL', temp: 'real' },
        columns: ['device', 'seq', 'temp'],
        key: ['device'],
        op: (r) => r.op,
        rowsPerFlush: 100,
      }),
      { id: 'pg' },
    );
    await p.run({ checkpointDir: tempDir(), checkpointInterval: 25 });
    const expected = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const r = make(i);
      if (r.op === 'delete') expected.delete(r.device);
      else expected.set(r.device, r.seq);
    }
    const rows = await sql<{ device: string; seq: string; temp: number }>(`SELECT device, seq, temp FROM ${t} ORDER BY device`);
    expect(new Map(rows.map((r) => [r.device, Number(r.seq)]))).toEqual(expected);
    for (const r of rows) expect(r.temp).toBeCloseTo(Number(r.seq) / 10, 2);
    const commits = await sql<{ n: string }>(`SELECT count(*) AS n FROM ${schema.name}.spate_commits WHERE sink_id = $1`, [`pg:${t}`]);
    expect(Number(commits[0]!.n)).toBeGreaterThan(5);
  });

  it('writes values of the common types as PostgreSQL reads them back (COPY escaping included)', async () => {
    const t = table('types');
    await sql(
      `CREATE TABLE ${t} (id integer PRIMARY KEY, big bigint, f real, d double precision, num numeric(12, 3), s text, vc varchar(8), ch char(3), ` +
        `b boolean, j jsonb, js json, ts timestamptz, tsl timestamp, day date, u uuid, bytes bytea, tags text[], grid integer[], span interval, addr inet)`,
    );
    const tricky = 'tab\there, newline\nthere, back\\slash, "quote", \r, \\N, é, 😀';
    const row = {
      id: 1,
      big: 9007199254740993n,
      f: 1.5,
      d: -0.1,
      num: '123456789.125',
      s: tricky,
      vc: 'éééééééé',
      ch: 'ab',
      b: true,
      j: { a: [1, 'two', null], s: tricky },
      js: ['x', { y: 1 }],
      ts: Date.UTC(2024, 1, 29, 12, 30, 45, 678),
      tsl: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)),
      day: new Date(Date.UTC(2024, 11, 31)),
      u: '123e4567-e89b-12d3-a456-426614174000',
      bytes: Buffer.from([0, 1, 2, 255]),
      tags: ['a', 'b,c', 'd"e', 'f\\g', null, '{}', tricky],
      grid: [
        [1, 2],
        [3, 4],
      ],
      span: 90_000,
      addr: '192.168.0.1/24',
    };
    const empty = { id: 2, s: '', tags: [], j: null, unknown: 'a field without a column is ignored' };
    const sink = new PostgresSink<Record<string, unknown>>({ connection: PG_URL, table: t });
    const ctx = sinkContext();
    await sink.open(ctx);
    await sink.abort(undefined);
    sink.write(batch([row, empty]));
    await sink.commit([{ checkpointId: 1, instance: 0, data: (await sink.preCommit(1))! }]);
    await sink.close();
    expect(ctx.dead).toEqual([]);
    const [back] = await sql(
      `SELECT big::text, f, d, num::text, s, vc, ch, b, j, js, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') AS ts, tsl::text, day::text, u::text, ` +
        `encode(bytes, 'hex') AS bytes, tags, grid, span::text, addr::text FROM ${t} WHERE id = 1`,
    );
    expect(back).toEqual({
      big: '9007199254740993',
      f: 1.5,
      d: -0.1,
      num: '123456789.125',
      s: tricky,
      vc: 'éééééééé',
      ch: 'ab ',
      b: true,
      j: row.j,
      js: row.js,
      ts: '2024-02-29 12:30:45.678',
      tsl: '2024-01-02 03:04:05',
      day: '2024-12-31',
      u: row.u,
      bytes: '000102ff',
      tags: row.tags,
      grid: row.grid,
      span: '00:01:30',
      addr: '192.168.0.1/24',
    });
    expect(await sql(`SELECT s, tags, j FROM ${t} WHERE id = 2`)).toEqual([{ s: '', tags: [], j: null }]);
  });

  it('turns records it cannot write into dead letters, and the job goes on', async () => {
    const t = table('typed');
    const records: unknown[] = [
      { id: 1, name: 'ok', n: 1 },
      { id: 2, name: 'x'.repeat(11), n: 2 }, // longer than varchar(10)
      { id: 3, name: 'ok', n: 'three' }, // not an integer
      { id: 4, name: 'nul\0', n: 4 }, // NUL in text
      { id: null, name: 'ok', n: 5 }, // NOT NULL
      { id: 6, name: 'ok', n: 2 ** 40 }, // out of range for integer
      { id: 7, name: 'ok', n: 7, mood: 'grumpy' }, // not a label of the enum: refused by the server when staged
      { id: 8, name: 'ok', n: 8, mood: 'happy' },
      { id: 9, name: 'ok', n: -9 }, // violates the table's check constraint: refused only at commit
      { id: 1, name: 'dup', n: 10 }, // duplicate primary key in append mode: refused at commit
      { id: 11, name: '\ud800', n: 11 }, // lone surrogate
    ];
    await sql(`CREATE TYPE ${schema.name}.mood AS ENUM ('happy', 'sad')`);
    await sql(`CREATE TABLE ${t} (id integer PRIMARY KEY, name varchar(10), n integer CHECK (n >= 0), mood ${schema.name}.mood)`);
    const p = new Pipeline();
    const dead = p.deadLetters().collect();
    p.fromArray(records).sink(new PostgresSink({ connection: PG_URL, table: t, columns: ['id', 'name', 'n', 'mood'] }), { id: 'pg' });
    const lines: string[] = [];
    const result = await p.run({ log: (l) => lines.push(l) });
    expect(await sql(`SELECT id, name FROM ${t} ORDER BY id`)).toEqual([
      { id: 1, name: 'ok' },
      { id: 8, name: 'ok' },
    ]);
    // Found when written: on the dead-letter stream. Found by the server at the final
    // checkpoint, after the end of input: on the job's log.
    const letters = dead.values as DeadLetter[];
    expect(letters.every((l) => l.step === 'pg')).toBe(true);
    const logged = lines.filter((l) => /dead letter #\d+ from step 'pg'/.test(l));
    const reasons = [...letters.map((l) => l.error), ...logged];
    expect(result.deadLetters).toBe(9);
    expect(reasons).toHaveLength(9);
    expect(letters.length).toBeGreaterThanOrEqual(6);
    expect(reasons.some((r) => /longer than 10/.test(r))).toBe(true);
    expect(reasons.some((r) => /'three' is not an integer/.test(r))).toBe(true);
    expect(reasons.some((r) => /NUL/.test(r))).toBe(true);
    expect(reasons.some((r) => /column id is NOT NULL/.test(r))).toBe(true);
    expect(reasons.some((r) => /out of range/.test(r))).toBe(true);
    expect(reasons.some((r) => /surrogate/.test(r))).toBe(true);
    expect(reasons.some((r) => /refused the row: invalid input value for enum/.test(r))).toBe(true);
    expect(reasons.some((r) => /at the commit of checkpoint \d+: .*check constraint/.test(r))).toBe(true);
    expect(reasons.some((r) => /at the commit of checkpoint \d+: .*duplicate key/.test(r))).toBe(true);
    const commits = await sql<{ rejected: string }>(`SELECT sum(rejected) AS rejected FROM ${schema.name}.spate_commits WHERE sink_id = $1`, [`pg:${t}`]);
    expect(commits[0]!.rejected).toBe('2');
  });
});

describe('PostgresSink protocol', () => {
  const rows = (from: number, to: number): Array<{ id: number; v: string }> => Array.from({ length: to - from }, (_, i) => ({ id: from + i, v: `v${from + i}` }));

  async function opened(t: string, ctx = sinkContext(), options: Partial<ConstructorParameters<typeof PostgresSink>[0]> = {}): Promise<PostgresSink<{ id: number; v: string }>> {
    const sink = new PostgresSink<{ id: number; v: string }>({ connection: PG_URL, table: t, create: { id: 'integer', v: 'text' }, rowsPerFlush: 7, ...options });
    await sink.open(ctx);
    await sink.abort(ctx.restoredCheckpoint);
    return sink;
  }

  it('keeps pre-committed rows invisible until the commit, shows them once, and a repeated commit adds nothing', async () => {
    const t = table('protocol');
    const ctx = sinkContext();
    const sink = await opened(t, ctx);
    sink.write(batch(rows(0, 20)));
    const c1 = await sink.preCommit(1);
    expect(c1).toEqual({ epoch: 0, rows: 20 });
    sink.write(batch(rows(20, 25))); // belongs to the next checkpoint
    expect(await count(t)).toBe(0);
    const committable: Committable<PostgresCommittable> = { checkpointId: 1, instance: 0, data: c1! };
    await sink.commit([committable]);
    expect(await count(t)).toBe(20);
    await sink.commit([committable]);
    const c2 = await sink.preCommit(2);
    expect(c2).toEqual({ epoch: 1, rows: 5 });
    await sink.commit([committable, { checkpointId: 2, instance: 0, data: c2! }]);
    await sink.commit([{ checkpointId: 2, instance: 0, data: c2! }]);
    expect((await sql<{ id: number }>(`SELECT id FROM ${t} ORDER BY id`)).map((r) => r.id)).toEqual(rows(0, 25).map((r) => r.id));
    expect(sink.preCommit(3)).toBeUndefined(); // nothing written since
    // Each checkpoint recorded once, and the repeated commits found their records (nothing to say).
    expect(await sql(`SELECT checkpoint_id, rows FROM ${schema.name}.spate_commits WHERE sink_id = $1 ORDER BY checkpoint_id`, [`sink:${t}`])).toEqual([
      { checkpoint_id: '1', rows: '20' },
      { checkpoint_id: '2', rows: '5' },
    ]);
    expect(ctx.lines).toEqual([]);
    // A commit record pruned (a day later) and the checkpoint restored from a savepoint: nothing
    // staged, nothing applied again.
    await sql(`DELETE FROM ${schema.name}.spate_commits WHERE sink_id = $1 AND checkpoint_id = 1`, [`sink:${t}`]);
    await sink.commit([committable]);
    expect(await count(t)).toBe(25);
    expect(ctx.lines).toEqual([expect.stringMatching(/checkpoint 1 \(instance 0\) has no commit record and none of its 20 staged rows: taken as committed/)]);
    await sink.close();
    expect(await stagedRows(t)).toBe(0);
  });

  it('recovery: re-commits the restored checkpoint once and aborts what came after it', async () => {
    const t = table('recovery');
    const first = await opened(t);
    first.write(batch(rows(0, 10)));
    const c5 = { checkpointId: 5, instance: 0, data: (await first.preCommit(5))! };
    await first.commit([c5]);
    first.write(batch(rows(10, 20)));
    await first.preCommit(6); // checkpoint 6 never completes
    first.write(batch(rows(20, 30))); // never pre-committed
    await new Promise((r) => setTimeout(r, 200));
    await first.close(); // the crash
    expect(await stagedRows(t)).toBeGreaterThan(0);

    const ctx = sinkContext({ restoredCheckpoint: 5 });
    const second = new PostgresSink<{ id: number; v: string }>({ connection: PG_URL, table: t });
    await second.open(ctx);
    await second.commit([c5]); // what the runtime does on recovery
    await second.abort(5);
    expect(await count(t)).toBe(10);
    expect(await stagedRows(t)).toBe(0);
    // The restored job goes on: ids 10.. again, now under checkpoint 7.
    second.write(batch(rows(10, 20)));
    const c7 = { checkpointId: 7, instance: 0, data: (await second.preCommit(7))! };
    expect(c7.data.epoch).toBe(5);
    await second.commit([c7]);
    expect((await sql<{ id: number }>(`SELECT id FROM ${t} ORDER BY id`)).map((r) => r.id)).toEqual(rows(0, 20).map((r) => r.id));
    await second.close();
  });

  it('a fresh start aborts everything staged, and its checkpoint ids start again', async () => {
    const t = table('fresh');
    const first = await opened(t);
    first.write(batch(rows(0, 10)));
    const c1 = { checkpointId: 1, instance: 0, data: (await first.preCommit(1))! };
    await first.commit([c1]);
    first.write(batch(rows(10, 20)));
    await first.preCommit(2);
    await first.close();
    const second = await opened(t); // fresh: no restored checkpoint
    expect(await stagedRows(t)).toBe(0);
    second.write(batch(rows(100, 105)));
    await second.commit([{ checkpointId: 1, instance: 0, data: (await second.preCommit(1))! }]);
    // Checkpoint 1 again, but of the new run: committed, not mistaken for the old one.
    expect(await count(t)).toBe(15);
    await second.close();
  });

  it('after rescaling, one instance commits the committables of old instances, and aborts their later rows', async () => {
    const t = table('rescale');
    const old = [0, 1].map((i) => sinkContext({ instance: i, parallelism: 2 }));
    const a = await opened(t, old[0]);
    const b = await opened(t, old[1]);
    a.write(batch(rows(0, 10)));
    b.write(batch(rows(10, 25)));
    const c3 = [
      { checkpointId: 3, instance: 0, data: (await a.preCommit(3))! },
      { checkpointId: 3, instance: 1, data: (await b.preCommit(3))! },
    ];
    b.write(batch(rows(25, 30))); // after checkpoint 3: to be aborted
    await b.preCommit(4);
    await Promise.all([a.close(), b.close()]);

    // Restored with parallelism 1: instance 0 holds both old instances' committables.
    const ctx = sinkContext({ instance: 0, parallelism: 1, restoredCheckpoint: 3 });
    const merged = new PostgresSink<{ id: number; v: string }>({ connection: PG_URL, table: t });
    await merged.open(ctx);
    await merged.commit(c3);
    await merged.abort(3);
    expect(await count(t)).toBe(25);
    expect(await stagedRows(t)).toBe(0);
    const recorded = await sql<{ instance: number }>(`SELECT instance FROM ${schema.name}.spate_commits WHERE sink_id = $1 AND checkpoint_id = 3 ORDER BY instance`, [`sink:${t}`]);
    expect(recorded.map((r) => r.instance)).toEqual([0, 1]);
    await merged.commit(c3); // again: nothing more
    expect(await count(t)).toBe(25);
    await merged.close();
  });

  it('a commit the table refuses wholesale stops, says why, and goes through once the table is fixed', async () => {
    const t = table('refusing');
    await sql(`CREATE TABLE ${t} (id integer, v text CONSTRAINT short CHECK (length(v) < 3))`);
    const ctx = sinkContext();
    const sink = await opened(t, ctx, { maxRejectsPerCommit: 2 });
    sink.write(batch(rows(0, 20))); // v0..v9 pass the check, v10..v19 do not
    const c1 = { checkpointId: 1, instance: 0, data: (await sink.preCommit(1))! };
    await expect(sink.commit([c1])).rejects.toThrow(/refuses more than 2 rows of checkpoint 1 \(the first: .*violates check constraint "short"/);
    await expect(sink.commit([c1])).rejects.toThrow(/refuses more than 2 rows/);
    expect(ctx.lines.filter((l) => /commit of checkpoint 1 failed \(attempt \d+, the table refuses it/.test(l))).toHaveLength(2); // attempts 1 and 2
    expect(await count(t)).toBe(0);
    await sql(`ALTER TABLE ${t} DROP CONSTRAINT short`);
    await sink.commit([c1]);
    expect(await count(t)).toBe(20);
    expect(ctx.lines.some((l) => /commit of checkpoint 1 succeeded after 2 failed attempt/.test(l))).toBe(true);
    expect(ctx.dead).toEqual([]);
    await sink.close();
  });

  it('two sinks may share a table under different sink ids; one id is refused to a second live job', async () => {
    const t = table('shared');
    const x = await opened(t, sinkContext({ stepId: 'x' }));
    const y = await opened(t, sinkContext({ stepId: 'y' }));
    x.write(batch(rows(0, 5)));
    y.write(batch(rows(5, 8)));
    const cx = { checkpointId: 1, instance: 0, data: (await x.preCommit(1))! };
    const cy = { checkpointId: 1, instance: 0, data: (await y.preCommit(1))! };
    await x.commit([cx]);
    await y.commit([cy]);
    expect(await count(t)).toBe(8);
    const twin = new PostgresSink<{ id: number; v: string }>({ connection: PG_URL, table: t });
    await expect(twin.open(sinkContext({ stepId: 'x' }))).rejects.toThrow(/sink id 'x:.*' \(instance 0\) is in use/);
    await twin.close();
    await Promise.all([x.close(), y.close()]);
  }, 30_000);

  it('rejects options the table cannot serve, with a clear error', async () => {
    const t = table('plain');
    await sql(`CREATE TABLE ${t} (id integer, v text)`);
    await expect(new PostgresSink({ connection: PG_URL, table: t, key: ['id'] }).open(sinkContext())).rejects.toThrow(/needs a primary key or unique index on exactly these columns/);
    await expect(new PostgresSink({ connection: PG_URL, table: t, columns: ['id', 'nope'] }).open(sinkContext())).rejects.toThrow(/has no column nope/);
    await expect(new PostgresSink({ connection: PG_URL, table: `${schema.name}.missing` }).open(sinkContext())).rejects.toThrow(/does not exist/);
    const generated = table('generated');
    await sql(`CREATE TABLE ${generated} (id integer GENERATED ALWAYS AS IDENTITY, v text, n integer GENERATED ALWAYS AS (length(v)) STORED)`);
    await expect(new PostgresSink({ connection: PG_URL, table: generated, columns: ['v', 'n'] }).open(sinkContext())).rejects.toThrow(/column n .* is generated/);
    // By default the table fills its generated and identity columns.
    const sink = new PostgresSink<{ v: string }>({ connection: PG_URL, table: generated });
    const ctx = sinkContext();
    await sink.open(ctx);
    await sink.abort(undefined);
    sink.write(batch([{ v: 'abc' }, { v: 'hello' }]));
    await sink.commit([{ checkpointId: 1, instance: 0, data: (await sink.preCommit(1))! }]);
    await sink.close();
    expect(await sql(`SELECT v, n FROM ${generated} ORDER BY v`)).toEqual([
      { v: 'abc', n: 3 },
      { v: 'hello', n: 5 },
    ]);
    expect(await sql(`SELECT id FROM ${generated} ORDER BY id`)).toEqual([{ id: 1 }, { id: 2 }]);
    expect(() => new PostgresSink({ table: t, op: () => 'delete' })).toThrow(/needs `key`/);
  });

  it('waits for an unreachable server at open, saying so once, until closed', async () => {
    const ctx = sinkContext();
    const sink = new PostgresSink({ connection: 'postgres://spate:spate@127.0.0.1:1/spate', table: 'whatever', retryMs: { first: 20, max: 100 } });
    const opening = sink.open(ctx);
    const outcome = opening.then(
      () => 'opened',
      (e: unknown) => `failed: ${(e as Error).message}`,
    );
    await new Promise((r) => setTimeout(r, 1_000));
    expect(ctx.lines.filter((l) => /connecting: PostgreSQL is unavailable \(.*ECONNREFUSED/.test(l))).toHaveLength(1);
    await sink.close();
    expect(await outcome).toMatch(/^failed: .*ECONNREFUSED/);
  });
});

describe('PostgresSink exactly once across SIGKILL', () => {
  const job = fileURLToPath(new URL('../../../test/support/postgres-job.ts', import.meta.url));

  /**
   * Runs the job as a child; kills it `killAfter` ms after it starts running its pipeline, if
   * given. Resolves with its exit code or signal.
   */
  function runChild(args: string[], killAfter: number | undefined): Promise<{ code: number | null; signal: string | null; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', job, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let timer: NodeJS.Timeout | undefined;
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.on('data', (d: Buffer) => {
        if (killAfter !== undefined && timer === undefined && d.toString().includes('running')) timer = setTimeout(() => child.kill('SIGKILL'), killAfter);
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stderr });
      });
    });
  }

  for (const mode of ['append', 'upsert'] as const) {
    it(`${mode}: killed at random moments and restarted, the table equals a failure-free run`, async () => {
      const n = 40_000;
      const reference = table(`${mode}_reference`);
      await crashPipeline(mode, reference, n, undefined).run({ checkpointInterval: 50 });
      const t = table(`${mode}_crashed`);
      const dir = tempDir();
      let kills = 0;
      let log = '';
      for (let attempt = 0; attempt < 20; attempt++) {
        // The first runs are killed at random moments (a whole run takes 8 s).
        const killAfter = kills < 4 ? 300 + Math.floor(Math.random() * 1_500) : undefined;
        const r = await runChild([mode, t, dir, String(n), '5000'], killAfter);
        log += r.stderr;
        if (r.signal === 'SIGKILL') {
          kills++;
          continue;
        }
        expect(r.code, r.stderr).toBe(0);
        break;
      }
      expect(kills).toBeGreaterThanOrEqual(3); // the crashes did happen
      expect(log).toMatch(/resuming from checkpoint/);
      const diff = await sql(`(SELECT * FROM ${t} EXCEPT ALL SELECT * FROM ${reference}) UNION ALL (SELECT * FROM ${reference} EXCEPT ALL SELECT * FROM ${t})`);
      expect(diff).toEqual([]);
      if (mode === 'append') expect(await count(t)).toBe(n);
      else {
        const expected = new Map<number, number>();
        for (let i = 0; i < n; i++) {
          const r = record(i);
          if (isDelete(r)) expected.delete(r.k);
          else expected.set(r.k, r.v);
        }
        expect(await count(t)).toBe(expected.size);
      }
      expect(await stagedRows(t)).toBe(0);
    }, 180_000);
  }
});
