/**
 * The DuckDB sink: exactly once through a staging table and a commit table in the same file,
 * append, upsert and deletes, type mapping, dead letters, parallel instances sharing one file,
 * queries while the job runs, and recovery (commit after a crash is a no-op).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Batch, GeneratorSource, Pipeline, type DeadLetter } from '../../index.ts';
import type { Committable, SinkContext } from '../../runtime/sink.ts';
import { systemClock } from '../../time/clock.ts';
import { DuckDBDatabase } from './database.ts';
import { type DuckDBCommittable, DuckDBSink } from './sink.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'spate-duckdb-'));
  dirs.push(d);
  return d;
}

/** A fresh database file. */
function dbFile(): string {
  return join(tempDir(), 'results.duckdb');
}

function batch<T>(values: readonly T[]): Batch<T> {
  const b = new Batch<T>(Math.max(1, values.length));
  for (const v of values) b.push(v, 0);
  return b;
}

function context(options: { stepId?: string; instance?: number; parallelism?: number; restoredCheckpoint?: number } = {}): SinkContext & {
  dead: Array<{ record: unknown; error: string }>;
  lines: string[];
} {
  const dead: Array<{ record: unknown; error: string }> = [];
  const lines: string[] = [];
  return {
    stepId: options.stepId ?? 'sink',
    instance: options.instance ?? 0,
    parallelism: options.parallelism ?? 1,
    clock: systemClock,
    restoredCheckpoint: options.restoredCheckpoint,
    deadLetter: (record, error) => dead.push({ record, error: error instanceof Error ? error.message : String(error) }),
    log: (line) => lines.push(line),
    dead,
    lines,
  };
}

async function query<R = Record<string, unknown>>(path: string, sql: string): Promise<R[]> {
  return DuckDBDatabase.query<R>(path, sql);
}

interface Reading {
  readonly device: string;
  readonly seq: number;
  readonly temp: number;
}

describe('DuckDBSink in a pipeline', () => {
  it('runs the example of its TSDoc', async () => {
    const dir = tempDir();
    const path = join(dir, 'results.duckdb');
    const p = new Pipeline();
    const latest = new DuckDBSink<{ device: string; reading: number }>({
      path,
      table: 'latest_readings',
      create: { device: 'VARCHAR', reading: 'BIGINT' },
      key: ['device'],
    });
    p.source(new GeneratorSource({ count: 1_000, make: (i) => ({ device: `d${i % 10}`, reading: i }) }), { id: 'readings' }).sink(latest, { id: 'latest' });
    await p.run({ checkpointDir: join(dir, 'checkpoints') });
    const rows = await query(path, 'SELECT * FROM latest_readings ORDER BY device');
    expect(rows).toEqual(Array.from({ length: 10 }, (_, d) => ({ device: `d${d}`, reading: BigInt(990 + d) })));
  });

  it('appends exactly the input, through checkpoints, leaving nothing staged', async () => {
    const path = dbFile();
    const n = 30_000;
    const p = new Pipeline();
    p.source(new GeneratorSource<Reading>({ count: n, make: (i) => ({ device: `d${i % 10}`, seq: i, temp: (i % 400) / 10 }), ratePerSecond: 100_000 }), { id: 'readings' }).sink(
      new DuckDBSink<Reading>({ path, table: 'readings', create: { device: 'VARCHAR', seq: 'BIGINT', temp: 'DOUBLE' }, rowsPerFlush: 3_000 }),
      { id: 'duck' },
    );
    const result = await p.run({ checkpointDir: tempDir(), checkpointInterval: 20 });
    expect(result.deadLetters).toBe(0);
    const [stats] = await query<{ n: bigint; d: bigint; lo: bigint; hi: bigint; temps: number }>(
      path,
      'SELECT count(*) AS n, count(DISTINCT seq) AS d, min(seq) AS lo, max(seq) AS hi, sum(temp) AS temps FROM readings',
    );
    expect(stats).toMatchObject({ n: BigInt(n), d: BigInt(n), lo: 0n, hi: BigInt(n - 1) });
    let temps = 0;
    for (let i = 0; i < n; i++) temps += (i % 400) / 10;
    expect(stats!.temps).toBeCloseTo(temps, 3);
    expect(await query(path, `SELECT * FROM readings WHERE device <> 'd' || (seq % 10)::VARCHAR OR temp <> (seq % 400) / 10.0 LIMIT 1`)).toEqual([]);
    const [commits] = await query<{ n: bigint; rows: bigint }>(path, `SELECT count(*) AS n, sum(rows) AS rows FROM spate_commits WHERE sink_id = 'duck:readings'`);
    expect(Number(commits!.n)).toBeGreaterThan(1);
    expect(commits!.rows).toBe(BigInt(n));
    expect(await staged(path)).toBe(0);
  });

  it('upserts by key across checkpoints, the last write of a key winning, and deletes', async () => {
    const path = dbFile();
    const n = 6_000;
    const make = (i: number): { device: string; seq: number; temp: number; op: 'upsert' | 'delete' } => ({
      device: `d${i % 50}`,
      seq: i,
      temp: i / 10,
      op: i % 7 === 0 ? 'delete' : 'upsert',
    });
    const p = new Pipeline();
    // Rate-limited, so that the writes of one key land in several checkpoints.
    p.source(new GeneratorSource({ count: n, make, ratePerSecond: 10_000 }), { id: 'changes' }).sink(
      new DuckDBSink<ReturnType<typeof make>>({
        path,
        table: 'latest',
        create: { device: 'VARCHAR', seq: 'BIGINT NOT NULL', temp: 'REAL' },
        columns: ['device', 'seq', 'temp'],
        key: ['device'],
        op: (r) => r.op,
      }),
      { id: 'duck' },
    );
    const result = await p.run({ checkpointDir: tempDir(), checkpointInterval: 25 });
    expect(result.checkpoints.filter((c) => c.status === 'completed').length).toBeGreaterThanOrEqual(3);
    const expected = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const r = make(i);
      if (r.op === 'delete') expected.delete(r.device);
      else expected.set(r.device, r.seq);
    }
    const rows = await query<{ device: string; seq: bigint; temp: number }>(path, 'SELECT device, seq, temp FROM latest ORDER BY device');
    expect(rows.map((r) => [r.device, Number(r.seq)])).toEqual([...expected].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
    for (const r of rows) expect(r.temp).toBeCloseTo(Number(r.seq) / 10, 3);
    expect(await staged(path)).toBe(0);
  });

  it('maps JavaScript values to column types: integers, bigint, doubles, strings, booleans, timestamps, dates, JSON, lists, structs, decimals, nulls', async () => {
    const path = dbFile();
    const sink = new DuckDBSink<Record<string, unknown>>({
      path,
      table: 'typed',
      create: {
        id: 'INTEGER',
        big: 'BIGINT',
        huge: 'HUGEINT',
        small: 'SMALLINT',
        x: 'DOUBLE',
        f: 'FLOAT',
        s: 'VARCHAR',
        b: 'BOOLEAN',
        ts: 'TIMESTAMP',
        tz: 'TIMESTAMPTZ',
        ms: 'TIMESTAMP_MS',
        d: 'DATE',
        j: 'JSON',
        tags: 'VARCHAR[]',
        pt: 'STRUCT(x INTEGER, y VARCHAR)',
        price: 'DECIMAL(10,2)',
        u: 'UUID',
      },
    });
    const ctx = context();
    await sink.open(ctx);
    await sink.abort(undefined);
    const at = Date.UTC(2024, 1, 29, 12, 30, 45, 123);
    sink.write(
      batch([
        {
          id: 1,
          big: 2n ** 62n,
          huge: 10n ** 30n,
          small: -5,
          x: 0.1 + 0.2,
          f: 1.5,
          s: 'héllo 🌊',
          b: true,
          ts: new Date(at),
          tz: at,
          ms: '2024-02-29T12:30:45.123Z',
          d: '2024-02-29',
          j: { a: [1, 'two', null], n: 3.5 },
          tags: ['a', null, 'c'],
          pt: { x: 7, y: 'why' },
          price: 12.34,
          u: '123e4567-e89b-12d3-a456-426614174000',
        },
        { id: 2, big: 9007199254740991, s: '', b: false, j: 'just a string', ts: '2024-02-29 12:30:45' },
        { id: 3 },
      ]),
    );
    const c = sink.preCommit(1)!;
    expect(c).toEqual({ epoch: 0, rows: 3 });
    // Invisible until committed.
    expect(await query(path, 'SELECT * FROM typed')).toEqual([]);
    await sink.commit([{ checkpointId: 1, instance: 0, data: c }]);
    await sink.close();
    expect(ctx.dead).toEqual([]);
    const rows = await query(path, 'SELECT * FROM typed ORDER BY id');
    expect(rows[0]).toEqual({
      id: 1,
      big: 2n ** 62n,
      huge: 10n ** 30n,
      small: -5,
      x: 0.1 + 0.2,
      f: 1.5,
      s: 'héllo 🌊',
      b: true,
      ts: new Date(at),
      tz: new Date(at),
      ms: new Date(at),
      d: new Date(Date.UTC(2024, 1, 29)),
      j: '{"a":[1,"two",null],"n":3.5}',
      tags: ['a', null, 'c'],
      pt: { x: 7, y: 'why' },
      price: 12.34,
      u: '123e4567-e89b-12d3-a456-426614174000',
    });
    expect(rows[1]).toMatchObject({ id: 2, big: 9007199254740991n, s: '', b: false, j: '"just a string"', ts: new Date(Date.UTC(2024, 1, 29, 12, 30, 45)), x: null });
    expect(Object.values(rows[2]!).filter((v) => v !== null)).toEqual([3]);
    // JSON is queryable as JSON.
    expect(await query(path, `SELECT j->>'$.a[1]' AS two FROM typed WHERE id = 1`)).toEqual([{ two: 'two' }]);
  });

  it('dead-letters records it cannot write, with the column and why, and writes the rest', async () => {
    const path = dbFile();
    const p = new Pipeline();
    const records: unknown[] = [
      { id: 1, n: 5, s: 'ok', t: 0, j: [1] },
      { id: 2, n: 2 ** 40, s: 'too big', t: 0, j: 1 },
      { id: 3, n: 1.5, s: 'fraction', t: 0, j: 1 },
      { id: 4, n: 'seven', s: 'text', t: 0, j: 1 },
      { id: 5, n: 5, s: { nested: true }, t: 0, j: 1 },
      { id: 6, n: 5, s: 'bad time', t: 'yesterday', j: 1 },
      { id: 7, n: 5, s: 'lone \ud800 surrogate', t: 0, j: 1 },
      { id: 8, n: 5, s: 'bigint json', t: 0, j: 10n },
      { id: null, n: 5, s: 'null id', t: 0, j: 1 },
      'not an object',
      { id: 9, n: 6, s: 'ok too', t: 0, j: null },
    ];
    p.fromArray(records).sink(new DuckDBSink({ path, table: 't', create: { id: 'INTEGER NOT NULL', n: 'INTEGER', s: 'VARCHAR', t: 'TIMESTAMP', j: 'JSON' } }), { id: 'duck' });
    const dead: DeadLetter[] = [];
    p.deadLetters().sink(new (await import('../../index.ts')).CallbackSink((d: DeadLetter) => dead.push(d)));
    await p.run();
    expect((await query<{ id: number }>(path, 'SELECT id FROM t ORDER BY id')).map((r) => r.id)).toEqual([1, 9]);
    const errors = dead.map((d) => `${typeof d.record === 'object' ? String((d.record as { id: unknown }).id) : d.record}: ${d.error}`);
    expect(errors).toEqual([
      expect.stringMatching(/^2: column n \(INTEGER\): 1099511627776 is out of range/),
      expect.stringMatching(/^3: column n \(INTEGER\): 1\.5 is not an integer/),
      expect.stringMatching(/^4: column n \(INTEGER\): expected an integer, got a string/),
      expect.stringMatching(/^5: column s \(VARCHAR\): expected a string, got an object/),
      expect.stringMatching(/^6: column t \(TIMESTAMP\): 'yesterday' is not an ISO 8601/),
      expect.stringMatching(/^7: column s \(VARCHAR\): text contains a lone UTF-16 surrogate/),
      expect.stringMatching(/^8: column j \(JSON\): not JSON-serializable/),
      expect.stringMatching(/^null: column id is NOT NULL but the value is null/),
      expect.stringMatching(/^not an object: a record without `row` must be an object/),
    ]);
    expect(dead.every((d) => d.step === 'duck')).toBe(true);
  });

  it('dead-letters rows the table refuses at commit (CHECK, primary key) and commits the rest', async () => {
    const path = dbFile();
    const db = await DuckDBDatabase.open(path);
    const setup = await db.connect();
    await setup.run('CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER CHECK (balance >= 0), email VARCHAR UNIQUE)');
    await setup.run(`INSERT INTO accounts VALUES (1, 10, 'a@x')`);
    setup.closeSync();
    const sink = new DuckDBSink<{ id: number; balance: number; email: string }>({ path, table: 'accounts' });
    const ctx = context();
    await sink.open(ctx);
    await sink.abort(undefined);
    sink.write(
      batch([
        { id: 2, balance: 5, email: 'b@x' },
        { id: 3, balance: -1, email: 'c@x' }, // CHECK
        { id: 1, balance: 7, email: 'd@x' }, // primary key already in the table
        { id: 4, balance: 1, email: 'b@x' }, // unique email written before in the checkpoint
        { id: 5, balance: 0, email: 'e@x' },
      ]),
    );
    const c = sink.preCommit(1)!;
    await sink.commit([{ checkpointId: 1, instance: 0, data: c }]);
    expect((await db.query<{ id: number }>('SELECT id FROM accounts ORDER BY id')).map((r) => r.id)).toEqual([1, 2, 5]);
    expect(ctx.dead.map((d) => [(d.record as { id: number }).id, d.error])).toEqual([
      [3, expect.stringMatching(/CHECK\(\(balance >= 0\)\) is false/)],
      [1, expect.stringMatching(/already holds \(id\)/)],
      [4, expect.stringMatching(/\(email\) repeats a row written before it/)],
    ]);
    expect(await db.query(`SELECT rows, rejected FROM spate_commits`)).toEqual([{ rows: 5n, rejected: 3n }]);
    // More refusals than allowed: the commit waits (fails, to be retried) instead of dropping rows.
    const strict = new DuckDBSink<{ id: number; balance: number; email: string }>({ path, table: 'accounts', maxRejectsPerCommit: 1, sinkId: 'strict' });
    const ctx2 = context();
    await strict.open(ctx2);
    await strict.abort(undefined);
    strict.write(batch([{ id: 10, balance: -1, email: 'x' }, { id: 11, balance: -2, email: 'y' }]));
    const c2 = strict.preCommit(1)!;
    await expect(strict.commit([{ checkpointId: 1, instance: 0, data: c2 }])).rejects.toThrow(/refuses 2 rows of checkpoint 1, more than maxRejectsPerCommit \(1\)/);
    await strict.close();
    await sink.close();
    await db.close();
  });
});

/** Rows left in staging tables (nothing once everything is committed or aborted). */
async function staged(path: string): Promise<number> {
  const tables = await query<{ name: string }>(path, `SELECT table_name AS name FROM duckdb_tables() WHERE starts_with(table_name, 'spate_stage_')`);
  let n = 0;
  for (const { name } of tables) n += Number((await query<{ n: bigint }>(path, `SELECT count(*) AS n FROM "${name}"`))[0]!.n);
  return n;
}

describe('DuckDBSink commits exactly once', () => {
  it('a commit redone after recovery is a no-op; abort drops what never completed', async () => {
    const path = dbFile();
    const options = { path, table: 'events', create: { id: 'BIGINT' } } as const;
    const first = new DuckDBSink<{ id: number }>(options);
    await first.open(context());
    await first.abort(undefined);
    first.write(batch([{ id: 1 }, { id: 2 }]));
    const c1 = first.preCommit(1)!;
    first.write(batch([{ id: 3 }]));
    const c2 = first.preCommit(2)!;
    first.write(batch([{ id: 4 }])); // never pre-committed
    await first.commit([{ checkpointId: 1, instance: 0, data: c1 }]);
    // The process dies here: checkpoint 2 is complete but its commit never ran, checkpoint 1's did.
    await first.close();
    expect((await query<{ id: bigint }>(path, 'SELECT id FROM events ORDER BY id')).map((r) => Number(r.id))).toEqual([1, 2]);

    // Recovery from checkpoint 2: the runtime commits its committables again (1 and 2), then aborts after 2.
    const again = new DuckDBSink<{ id: number }>(options);
    const ctx = context({ restoredCheckpoint: 2 });
    await again.open(ctx);
    const restored: Array<Committable<DuckDBCommittable>> = [
      { checkpointId: 1, instance: 0, data: c1 },
      { checkpointId: 2, instance: 0, data: c2 },
    ];
    await again.commit(restored);
    await again.commit(restored); // and once more: still nothing twice
    await again.abort(2);
    again.write(batch([{ id: 4 }, { id: 5 }]));
    const c3 = again.preCommit(3)!;
    expect(c3).toEqual({ epoch: 2, rows: 2 });
    await again.commit([{ checkpointId: 3, instance: 0, data: c3 }]);
    await again.close();
    expect((await query<{ id: bigint }>(path, 'SELECT id FROM events ORDER BY id')).map((r) => Number(r.id))).toEqual([1, 2, 3, 4, 5]);
    expect(await staged(path)).toBe(0);
  });

  it('two live sinks with the same id in one process: the second is refused', async () => {
    const path = dbFile();
    const a = new DuckDBSink<{ id: number }>({ path, table: 't', create: { id: 'INTEGER' } });
    const b = new DuckDBSink<{ id: number }>({ path, table: 't', create: { id: 'INTEGER' } });
    await a.open(context());
    await expect(b.open(context())).rejects.toThrow(/sink id 'sink:t' \(instance 0\) is in use by another job of this process/);
    await b.close();
    await a.close();
  });
});

describe('DuckDBSink with parallel instances', () => {
  it('two instances share one file, each with its own staging table; a restore at parallelism 1 re-commits both', async () => {
    const path = dbFile();
    const checkpoints = tempDir();
    const n = 20_000;
    const build = (count: number): Pipeline => {
      const p = new Pipeline();
      p.source(new GeneratorSource<{ id: number }>({ count, make: (i) => ({ id: i }), ratePerSecond: 10_000 }), { id: 'numbers' }).sink(
        () => new DuckDBSink<{ id: number }>({ path, table: 'ids', create: { id: 'BIGINT' }, parallelism: 2 }),
        { id: 'duck' },
      );
      return p;
    };
    // Parallelism 2: two sink instances (a local sink in the thread that built the pipeline).
    const first = build(n).start({ checkpointDir: checkpoints, checkpointInterval: 30, parallelism: 2 });
    while ((await first.job.checkpoints()).filter((c) => c.status === 'completed').length < 5) await new Promise((r) => setTimeout(r, 20));
    const stages = await query<{ name: string }>(path, `SELECT table_name AS name FROM duckdb_tables() WHERE starts_with(table_name, 'spate_stage_') ORDER BY 1`);
    expect(stages.map((s) => s.name.slice(-2))).toEqual(['_0', '_1']);
    // Stopped without a final checkpoint: what the last checkpoints pre-committed waits in staging.
    first.stop({ checkpoint: false });
    await first.done;
    const committed = Number((await query<{ n: bigint }>(path, 'SELECT count(*) AS n FROM ids'))[0]!.n);
    expect(committed).toBeGreaterThan(0);
    expect(committed).toBeLessThan(n);
    // Restored at parallelism 1: instance 0 re-commits instance 1's committables too, then drops its staging table.
    const result = await build(n).run({ checkpointDir: checkpoints, checkpointInterval: 30, parallelism: 1 });
    expect(result.deadLetters).toBe(0);
    const [stats] = await query<{ n: bigint; d: bigint; hi: bigint }>(path, 'SELECT count(*) AS n, count(DISTINCT id) AS d, max(id) AS hi FROM ids');
    expect(stats).toEqual({ n: BigInt(n), d: BigInt(n), hi: BigInt(n - 1) });
    expect(await staged(path)).toBe(0);
    const left = await query<{ name: string }>(path, `SELECT table_name AS name FROM duckdb_tables() WHERE starts_with(table_name, 'spate_stage_')`);
    expect(left.map((s) => s.name.slice(-2))).toEqual(['_0']);
  });

  it('a sink object given for several instances is refused with a hint to pass a factory', async () => {
    const p = new Pipeline();
    p.source(new GeneratorSource({ count: 10, make: (id) => ({ id }) })).sink(new DuckDBSink<{ id: number }>({ path: dbFile(), table: 't', create: { id: 'INTEGER' }, parallelism: 2 }));
    await expect(p.run({ parallelism: 2 })).rejects.toThrow(/give parallel sinks as a factory/);
  });
});

describe('DuckDB results while the job runs', () => {
  it('queries from the same process see whole checkpoints, never staged rows, and grow as checkpoints commit', async () => {
    const path = dbFile();
    const p = new Pipeline();
    p.source(new GeneratorSource<{ id: number; k: number }>({ make: (i) => ({ id: i, k: i % 7 }), ratePerSecond: 20_000 }), { id: 'numbers' }).sink(
      new DuckDBSink<{ id: number; k: number }>({ path, table: 'live', create: { id: 'BIGINT', k: 'INTEGER' } }),
      { id: 'duck' },
    );
    const running = p.start({ checkpointInterval: 40 });
    while (running.job.checkpoints().length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const seen: number[] = [];
    const deadline = Date.now() + 20_000;
    while (seen.filter((n) => n > 0).length < 8 && Date.now() < deadline) {
      // One read-only transaction: the rows and the commit records agree at every moment.
      const [r] = await DuckDBDatabase.query<{ n: bigint; committed: bigint | null; staged: bigint }>(
        path,
        `SELECT (SELECT count(*) FROM live) AS n, (SELECT sum(rows) FROM spate_commits) AS committed,
                (SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, 'spate_stage_')) AS staged`,
      );
      expect(r!.n).toBe(r!.committed ?? 0n);
      seen.push(Number(r!.n));
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    running.stop();
    await running.done;
    expect(seen.filter((n) => n > 0).length).toBeGreaterThanOrEqual(8);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThanOrEqual(seen[i - 1]!);
    // Writes are refused; so is more than one statement.
    const db = await DuckDBDatabase.open(path);
    await expect(db.query('DELETE FROM live')).rejects.toThrow(/read-only/);
    await expect(db.query('SELECT 1; DROP TABLE live')).rejects.toThrow(/one SQL statement/);
    expect((await db.queryJson('SELECT count(*) AS n FROM live')).columns).toEqual([{ name: 'n', type: 'BIGINT' }]);
    await db.close();
  });

  it('another thread of the process cannot open the file a first thread holds (two instances of one file would corrupt it)', async () => {
    const path = dbFile();
    const { Worker } = await import('node:worker_threads');
    const attempt = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const worker = new Worker(new URL('../../../test/fixtures/duckdb-open-worker.mjs', import.meta.url), { workerData: path });
        worker.once('message', (m: string) => void worker.terminate().then(() => resolve(m)));
        worker.once('error', reject);
      });
    const db = await DuckDBDatabase.open(path);
    expect(await attempt()).toMatch(/is open in another thread of this process/);
    await db.close();
    // Closed here, the file is free for the other thread.
    expect(await attempt()).toBe('opened');
  });

  it('another process cannot open the file while the job holds it (DuckDB allows one writing process)', async () => {
    const path = dbFile();
    const db = await DuckDBDatabase.open(path);
    const script = `import('@duckdb/node-api').then(async ({ DuckDBInstance }) => { try { await DuckDBInstance.create(${JSON.stringify(path)}, { access_mode: 'READ_ONLY' }); console.log('opened'); } catch (e) { console.log(e.message); } })`;
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(process.execPath, ['-e', script], { cwd: join(import.meta.dirname, '..', '..', '..'), encoding: 'utf8' });
    expect(out).toMatch(/Could not set lock on file/);
    await db.close();
  });
});

describe('DuckDB results of a running `spate run` job, from another process', () => {
  it('answers read-only queries over the job control socket while it runs (the file itself is locked)', async () => {
    const bin = join(import.meta.dirname, '..', '..', '..', 'bin', 'spate.js');
    const fixture = join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'duckdb-job.ts');
    const path = dbFile();
    const checkpoints = tempDir();
    const child = spawn(process.execPath, [bin, 'run', fixture, '--checkpoint-dir', checkpoints, '--checkpoint-interval', '50', '--parallelism', '1', '--', path, '10000000', '5000', '1'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const { sendControl } = await import('../../cli/control.ts');
      const counts: number[] = [];
      const deadline = Date.now() + 30_000;
      while (counts.filter((n) => n > 0).length < 3 && Date.now() < deadline) {
        try {
          const answer = (await sendControl(checkpoints, { command: 'query', sql: 'SELECT count(*) AS n FROM events', database: path }, 5_000)) as {
            database: string;
            columns: unknown[];
            rows: Array<{ n: number | string }>;
          };
          expect(answer.columns).toEqual([{ name: 'n', type: 'BIGINT' }]);
          counts.push(Number(answer.rows[0]!.n));
        } catch (error) {
          // Not up yet (no socket, or the table is not created yet).
          if (!/no running job|does not exist|no DuckDB database/.test((error as Error).message)) throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(counts.filter((n) => n > 0).length, stderr).toBeGreaterThanOrEqual(3);
      for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeGreaterThanOrEqual(counts[i - 1]!);
      // Two files, or a write: refused with a clear error.
      await expect(sendControl(checkpoints, { command: 'query', sql: 'DELETE FROM events', database: path }, 5_000)).rejects.toThrow(/read-only/);
      await expect(sendControl(checkpoints, { command: 'query', sql: 'SELECT 1', database: join(tempDir(), 'other.duckdb') }, 5_000)).rejects.toThrow(/has no DuckDB database/);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, stderr).toBe(0);
  }, 60_000);
});

describe('DuckDBSink exactly once across SIGKILL', () => {
  const bin = join(import.meta.dirname, '..', '..', '..', 'bin', 'spate.js');
  const fixture = join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'duckdb-job.ts');

  /** The id of the newest complete checkpoint in `dir` (0 if none). */
  const newest = (dir: string): number => {
    if (!existsSync(dir)) return 0;
    const ids = readdirSync(dir)
      .filter((n) => /^chk-\d+$/.test(n) && existsSync(join(dir, n, '_MANIFEST')))
      .map((n) => Number(n.slice(4)));
    return Math.max(0, ...ids);
  };

  /**
   * Runs `spate run` on the fixture in worker threads; if `kill`, kills it with SIGKILL at a random
   * moment (up to `kill` ms) after it completed a checkpoint of its own, so that every killed run
   * leaves something to resume from, however slow the machine.
   */
  function runChild(args: string[], checkpoints: string, kill: number | undefined): Promise<{ code: number | null; signal: string | null; stderr: string }> {
    return new Promise((resolve) => {
      const before = newest(checkpoints);
      const child = spawn(process.execPath, [bin, 'run', fixture, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      let timer: NodeJS.Timeout | undefined;
      const watch =
        kill === undefined
          ? undefined
          : setInterval(() => {
              if (timer !== undefined || newest(checkpoints) <= before) return;
              timer = setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * kill));
            }, 10);
      child.on('exit', (code, signal) => {
        clearInterval(watch);
        clearTimeout(timer);
        resolve({ code, signal, stderr });
      });
    });
  }

  it('spate run with two worker threads and two sink instances, killed at random moments and restarted: the tables equal a failure-free run', async () => {
    const n = 30_000;
    const path = dbFile();
    const checkpoints = tempDir();
    let kills = 0;
    let log = '';
    for (let attempt = 0; attempt < 20; attempt++) {
      const r = await runChild(
        ['--checkpoint-dir', checkpoints, '--checkpoint-interval', '50', '--parallelism', '2', '--', path, String(n), '6000', '2'],
        checkpoints,
        kills < 3 ? 1_500 : undefined,
      );
      log += r.stderr;
      if (r.signal === 'SIGKILL') {
        kills++;
        continue;
      }
      expect(r.code, r.stderr).toBe(0);
      break;
    }
    expect(kills).toBeGreaterThanOrEqual(2); // the crashes did happen (a resumed run may end before its kill)
    expect(log).toMatch(/resuming from checkpoint/);
    const { record, isDelete } = await import('../../../test/fixtures/duckdb-job.ts');
    // Every record once in `events`.
    const events = await query<{ id: bigint; k: number; v: bigint }>(path, 'SELECT id, k, v FROM events ORDER BY id');
    expect(events.length).toBe(n);
    events.forEach((e, i) => expect({ id: Number(e.id), k: e.k, v: Number(e.v) }).toEqual(record(i)));
    // The newest record of each key in `latest` (each key always reaches the same sink instance).
    const expected = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const r = record(i);
      if (isDelete(r)) expected.delete(r.k);
      else expected.set(r.k, r.id);
    }
    expect(expected.size).toBeLessThan(97); // some keys end deleted
    const latest = await query<{ k: number; id: bigint }>(path, 'SELECT k, id FROM latest ORDER BY k');
    expect(latest.map((r) => [r.k, Number(r.id)])).toEqual([...expected].sort((a, b) => a[0] - b[0]));
    expect(await staged(path)).toBe(0);
  }, 120_000);
});
