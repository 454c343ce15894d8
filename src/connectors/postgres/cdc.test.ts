/**
 * The PostgreSQL change-data-capture source against the real server (`scripts/services.sh up
 * postgres`, wal_level=logical; URL from SPATE_PG_URL). Each test uses tables in a schema of this
 * file and slots/publications of its own (`spate_cdct_<pid>_<n>`), all dropped afterwards: a
 * leftover slot would retain WAL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CollectSink, Pipeline, PostgresSink, type Batch, type DeadLetter, type JobSnapshot, type RunningJob, type Sink } from '../../index.ts';
import { PostgresCdcSource, type ChangeRecord, type PostgresCdcOptions } from './cdc-source.ts';
import { parseLsn } from './pgoutput.ts';
import { PG_URL, sql, testSchema } from '../../../test/support/postgres.ts';
import { createItems, type Item, itemsOf, plain, replay, writer } from '../../../test/support/cdc.ts';

let schema: { name: string; drop: () => Promise<void> };
const dirs: string[] = [];
const slots: string[] = [];
let n = 0;
/** Every job of a test, stopped after it even when it fails (a running job keeps its slot active). */
const jobs: RunningJob[] = [];

beforeAll(async () => {
  schema = await testSchema('cdc');
});
afterEach(async () => {
  for (const job of jobs.splice(0)) await job.stop({ checkpoint: false }).catch(() => undefined);
});
afterAll(async () => {
  for (const slot of slots) await PostgresCdcSource.drop(PG_URL, { slot, publication: slot });
  await schema.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'spate-cdc-'));
  dirs.push(d);
  return d;
}

/** A fresh slot name (also the publication's), dropped after the file. */
function slotName(): string {
  const s = `spate_cdct_${process.pid}_${++n}`;
  slots.push(s);
  return s;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function confirmedFlush(slot: string): Promise<string | null> {
  const r = await sql<{ lsn: string | null }>(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  return r[0]?.lsn ?? null;
}

type Row = Record<string, unknown>;

/**
 * Collects records and notes, at each pre-commit, how many it had: the records before checkpoint
 * n's barrier are exactly `values.slice(0, cuts.get(n))`. Optionally slow (backpressure after
 * every batch), to hold the job back.
 */
class CutSink<T> implements Sink<T> {
  readonly local = true;
  readonly parallelism = 1;
  readonly values: T[] = [];
  readonly records: Array<{ value: T; time: number }> = [];
  readonly cuts = new Map<number, number>();
  /** Called after each write (the job's thread, before the source reads on). */
  onWrite: () => void = () => undefined;
  private until = 0;

  constructor(private readonly delayMs = 0) {}

  write(batch: Batch<T>): void {
    for (let i = 0; i < batch.length; i++) {
      this.values.push(batch.values[i] as T);
      this.records.push({ value: batch.values[i] as T, time: batch.times[i]! });
    }
    if (this.delayMs > 0) this.until = Date.now() + this.delayMs;
    this.onWrite();
  }

  backpressure(): Promise<void> | undefined {
    const wait = this.until - Date.now();
    return wait > 0 ? new Promise((r) => setTimeout(r, wait)) : undefined;
  }

  preCommit(n: number): undefined {
    this.cuts.set(n, this.values.length);
    return undefined;
  }
}

/** A job reading `options` into a cut sink (dead letters into a collect sink). */
function cdcJob<R extends Row>(
  options: Omit<PostgresCdcOptions<R>, 'connection'> & { connection?: PostgresCdcOptions<R>['connection'] },
  run: { checkpointDir?: string; checkpointInterval?: number; log?: (l: string) => void; restoreFrom?: JobSnapshot; batchSize?: number; sinkDelayMs?: number } = {},
): { running: RunningJob; out: CutSink<ChangeRecord<R>>; dead: CollectSink<DeadLetter>; source: PostgresCdcSource<R> } {
  const p = new Pipeline();
  const source = new PostgresCdcSource<R>({ connection: PG_URL, retryMs: { first: 50, max: 500 }, ...options });
  const out = new CutSink<ChangeRecord<R>>(run.sinkDelayMs);
  const dead = new CollectSink<DeadLetter>();
  p.source(source, { id: 'cdc' }).sink(out, { id: 'out' });
  p.deadLetters().sink(dead, { id: 'dead' });
  const { sinkDelayMs: _, ...jobOptions } = run;
  const running = p.start({ checkpointInterval: 50, log: () => undefined, ...jobOptions });
  jobs.push(running);
  return { running, out, dead, source };
}

describe('PostgresCdcSource', () => {
  it('reads a snapshot then inserts, updates and deletes, with values typed by column type', async () => {
    const t = `${schema.name}.typed`;
    await sql(`CREATE TABLE ${t} (
      id int PRIMARY KEY, small smallint, big bigint, num numeric(20,6), f4 real, f8 double precision, flag boolean,
      name text, vc varchar(10), ts timestamp, tstz timestamptz, d date, j json, jb jsonb, bytes bytea,
      ints int[], texts text[], bigs bigint[], u uuid, big_text text)`);
    await sql(`ALTER TABLE ${t} ALTER COLUMN big_text SET STORAGE EXTERNAL`); // out of line, uncompressed: TOASTed
    await sql(`INSERT INTO ${t} VALUES (1, -5, 9007199254740993, 12345678901234.123456, 1.5, -2.25, true,
      'snap "quoted"', 'abc', '2024-05-01 12:34:56.789', '2024-05-01 12:34:56.789+02', '2024-02-29', '{"a": [1, 2]}', '{"b": null}',
      '\\x00ff10', '{1,NULL,3}', '{"a b","c\\"d",NULL}', '{1,2}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', repeat('x', 10000))`);
    const slot = slotName();
    const { running, out } = cdcJob<Row>({ slot, tables: [t] });
    await until(() => out.records.length >= 1, 'the snapshot row');
    await sql(`INSERT INTO ${t} (id, big, flag, texts) VALUES (2, -1, false, '{}')`);
    await sql(`UPDATE ${t} SET name = 'changed' WHERE id = 1`); // big_text is TOASTed and unchanged
    await sql(`UPDATE ${t} SET id = 3 WHERE id = 2`);
    await sql(`DELETE FROM ${t} WHERE id = 3`);
    await until(() => out.records.length >= 5, 'the changes');
    await running.stop();
    const [snap, ins, upd, rekey, del] = out.values;
    expect(snap).toMatchObject({ op: 'snapshot', schema: schema.name, table: 'typed', xid: 0, key: { id: 1 }, old: undefined });
    expect(snap!.new).toEqual({
      id: 1,
      small: -5,
      big: 9007199254740993n,
      num: '12345678901234.123456',
      f4: 1.5,
      f8: -2.25,
      flag: true,
      name: 'snap "quoted"',
      vc: 'abc',
      ts: new Date('2024-05-01T12:34:56.789Z'),
      tstz: new Date('2024-05-01T10:34:56.789Z'),
      d: '2024-02-29',
      j: { a: [1, 2] },
      jb: { b: null },
      bytes: Buffer.from([0, 255, 16]),
      ints: [1, null, 3],
      texts: ['a b', 'c"d', null],
      bigs: [1n, 2n],
      u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      big_text: 'x'.repeat(10000),
    });
    expect(ins).toMatchObject({ op: 'insert', key: { id: 2 }, new: { id: 2, big: -1n, flag: false, texts: [], name: null, small: null }, old: undefined });
    expect(typeof ins!.xid).toBe('number');
    expect(ins!.commitTime).toBeGreaterThan(Date.now() - 60_000);
    expect(out.records[1]!.time).toBe(ins!.commitTime); // event time = commit time
    // An update that did not touch the TOASTed column does not carry it.
    expect(upd).toMatchObject({ op: 'update', key: { id: 1 }, unchanged: ['big_text'], old: undefined });
    expect(upd!.new).not.toHaveProperty('big_text');
    expect(upd!.new!['name']).toBe('changed');
    // A key change carries the old key (REPLICA IDENTITY DEFAULT).
    expect(rekey).toMatchObject({ op: 'update', key: { id: 3 }, old: { id: 2 } });
    expect(del).toMatchObject({ op: 'delete', key: { id: 3 }, old: { id: 3 }, new: undefined });
    // LSNs increase along the stream.
    const lsns = [ins, upd, rekey, del].map((c) => parseLsn(c!.lsn));
    expect(lsns.every((l, i) => i === 0 || l > lsns[i - 1]!)).toBe(true);
  });

  it('snapshot then changes under concurrent writes: no gap, no overlap, the replay equals the table', async () => {
    const t = `${schema.name}.busy`;
    await createItems(t, 20_000);
    const w = writer(t, { keys: 20_000 });
    const slot = slotName();
    // Small chunks and batches, and a slow sink: the snapshot takes a while, writes go on meanwhile.
    const { running, out } = cdcJob<Item>({ slot, tables: [t], snapshotChunkRows: 500 }, { batchSize: 256, sinkDelayMs: 2 });
    await until(() => out.values.filter((c) => c.op !== 'snapshot').length > 200, 'changes after the snapshot', 40_000);
    const txs = await w.stop();
    const expected = await itemsOf(t);
    await until(() => {
      try {
        const got = replay(out.values);
        return got.size === expected.size && JSON.stringify([...plain(got)].sort((a, b) => a[0] - b[0])) === JSON.stringify([...expected]);
      } catch {
        return false;
      }
    }, 'the replay to equal the table', 40_000).catch(() => undefined);
    await running.stop();
    const snapshotRows = out.values.filter((c) => c.op === 'snapshot').length;
    expect(snapshotRows).toBeGreaterThan(15_000); // the writer changed the rest
    expect(txs).toBeGreaterThan(20);
    const got = plain(replay(out.values)); // throws on any overlap or gap
    expect([...got].sort((a, b) => a[0] - b[0])).toEqual([...expected]);
    // Snapshot rows first, each once, in key order; then changes in commit order.
    const firstChange = out.values.findIndex((c) => c.op !== 'snapshot');
    expect(out.values.slice(firstChange).every((c) => c.op !== 'snapshot')).toBe(true);
    const commits = out.values.slice(firstChange).map((c) => parseLsn(c.commitLsn));
    expect(commits.every((l, i) => i === 0 || l >= commits[i - 1]!)).toBe(true);
  }, 90_000);

  it('restored from a checkpoint taken in the middle of the change stream, replays exactly what followed it', async () => {
    const t = `${schema.name}.restore_stream`;
    await createItems(t, 500);
    // Rows of the big transactions, apart from the writer's keys (0..499, then 1 000 000 on): no deadlocks.
    await sql(`INSERT INTO ${t} SELECT i, i, NULL FROM generate_series(500000, 500299) i`);
    const slot = slotName();
    // No periodic checkpoints: the one taken by hand is the only one ever confirmed.
    const first = cdcJob<Item>({ slot, tables: [t] }, { checkpointInterval: 0, batchSize: 7, sinkDelayMs: 1 });
    await until(() => first.out.values.length >= 800, 'the snapshot');
    const w = writer(t, { keys: 500 });
    // Big transactions too, emitted 7 changes per poll (each poll followed by a 1 ms sink delay,
    // slower than the transactions come): checkpoints fall inside them.
    let big = true;
    const bigWriter = (async () => {
      while (big) await sql(`UPDATE ${t} SET v = v + 1000 WHERE id >= 500000`);
    })();
    await until(() => first.out.values.length > 1_500, 'changes');
    let snapshot!: JobSnapshot;
    let position!: { lsn: string; tx: { finalLsn: string; done: number } | null; phase: string };
    for (let attempt = 0; attempt < 50; attempt++) {
      snapshot = await first.running.snapshot();
      position = snapshot.steps.get('cdc')!.instances[0]!.splits![0]!.position as typeof position;
      if (position.tx !== null && position.tx.done > 0) break;
      await sleep(Math.random() * 20);
    }
    expect(position.tx).not.toBeNull(); // inside a transaction, some of whose changes were emitted
    const cut = first.out.cuts.get(snapshot.id)!;
    big = false;
    await bigWriter;
    await sleep(300);
    await w.stop();
    await sql(`UPDATE ${t} SET note = 'last'`); // one more transaction, then nothing
    const expected = await itemsOf(t);
    const caughtUp = (values: ReadonlyArray<ChangeRecord<Item>>, prefix: ReadonlyArray<ChangeRecord<Item>> = []): boolean => {
      try {
        return JSON.stringify([...plain(replay(values, replay(prefix)))].sort((a, b) => a[0] - b[0])) === JSON.stringify([...expected]);
      } catch {
        return false;
      }
    };
    await until(() => caughtUp(first.out.values), 'the first job to catch up');
    await first.running.stop({ checkpoint: false }); // a crash: nothing after the snapshot is confirmed
    expect(position.phase).toBe('stream');
    expect(await confirmedFlush(slot)).toBe(position.lsn);

    const second = cdcJob<Item>({ slot, tables: [t] }, { checkpointInterval: 0, restoreFrom: snapshot });
    const after = first.out.values.slice(cut);
    await until(() => second.out.values.length >= after.length, 'the restored job to replay');
    await sleep(200);
    await second.running.stop({ checkpoint: false });
    // Exactly the records that followed the checkpoint: same changes, positions, times and order.
    expect(second.out.values.length).toBe(after.length);
    expect(second.out.values).toEqual(after);
    expect(caughtUp(second.out.values, first.out.values.slice(0, cut))).toBe(true);
  }, 60_000);

  it('restored from a checkpoint taken during the snapshot, reads the rest in a later snapshot without gap or overlap', async () => {
    const t = `${schema.name}.restore_snapshot`;
    await createItems(t, 30_000);
    const w = writer(t, { keys: 30_000 });
    const slot = slotName();
    const first = cdcJob<Item>({ slot, tables: [t], snapshotChunkRows: 300, maxBufferedChanges: 1_000 }, { checkpointInterval: 0, batchSize: 128, sinkDelayMs: 2 });
    await until(() => first.out.values.length > 3_000, 'part of the snapshot');
    const snapshot = await first.running.snapshot();
    const cut = first.out.cuts.get(snapshot.id)!;
    await first.running.stop({ checkpoint: false });
    const position = snapshot.steps.get('cdc')!.instances[0]!.splits![0]!.position as { phase: string; tables: Array<{ cursor: string[]; done: boolean }> };
    expect(position.phase).toBe('snapshot');
    expect(position.tables[0]!.done).toBe(false);
    const prefix = first.out.values.slice(0, cut);
    expect(prefix.every((c) => c.op === 'snapshot')).toBe(true);
    await sleep(500); // writes go on between the crash and the restart: some of them before the resumed snapshot

    const lines: string[] = [];
    const second = cdcJob<Item>({ slot, tables: [t], snapshotChunkRows: 2_000 }, { checkpointInterval: 100, log: (l) => lines.push(l), restoreFrom: snapshot });
    await until(() => second.out.values.some((c) => c.op !== 'snapshot') && second.out.values.length > 30_000 - cut - 2_000, 'the rest of the snapshot and changes', 40_000);
    await sleep(300);
    await w.stop();
    const expected = await itemsOf(t);
    await until(() => {
      try {
        return JSON.stringify([...plain(replay(second.out.values, replay(prefix)))].sort((a, b) => a[0] - b[0])) === JSON.stringify([...expected]);
      } catch {
        return false;
      }
    }, 'the replay to equal the table', 40_000).catch(() => undefined);
    await second.running.stop();
    expect(lines.some((l) => /resuming the snapshot at/.test(l)), lines.join('\n')).toBe(true);
    const got = plain(replay(second.out.values, replay(prefix)));
    expect([...got].sort((a, b) => a[0] - b[0])).toEqual([...expected]);
    // Changes to keys of the rows read before the crash were not dropped, nor those after.
    const firstChange = second.out.values.findIndex((c) => c.op !== 'snapshot');
    expect(firstChange).toBeGreaterThan(0);
    // The temporary slot of the resumed snapshot is gone.
    expect(await sql(`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE $1`, [`${slot}_resume_%`])).toEqual([]);
  }, 90_000);

  it("confirms the slot's position only when a checkpoint completes", async () => {
    const t = `${schema.name}.confirm`;
    await createItems(t, 10);
    const slot = slotName();
    const { running, out } = cdcJob<Item>({ slot, tables: [t], statusIntervalMs: 100 }, { checkpointInterval: 0 });
    await until(() => out.values.length >= 10, 'the snapshot');
    const created = (await confirmedFlush(slot))!;
    for (let i = 0; i < 20; i++) await sql(`UPDATE ${t} SET v = v + 1 WHERE id = ${i % 10}`);
    await until(() => out.values.length >= 30, 'the changes');
    // Status updates went out (every 100 ms, and replies to probes) without confirming anything.
    await sleep(1_500);
    expect(await confirmedFlush(slot)).toBe(created);
    const snapshot = await running.snapshot();
    const position = snapshot.steps.get('cdc')!.instances[0]!.splits![0]!.position as { lsn: string };
    await until(async () => (await confirmedFlush(slot)) === position.lsn, 'the checkpoint to be confirmed', 5_000);
    expect(parseLsn(position.lsn)).toBeGreaterThanOrEqual(parseLsn(out.values.at(-1)!.commitLsn));
    // More changes: received, not confirmed until the next checkpoint.
    await sql(`UPDATE ${t} SET v = 0`);
    await until(() => out.values.length >= 40, 'more changes');
    await sleep(1_200);
    expect(await confirmedFlush(slot)).toBe(position.lsn);
    await running.stop();
    expect(parseLsn((await confirmedFlush(slot))!)).toBeGreaterThan(parseLsn(position.lsn));
  });

  it('rows the schema rejects are dead letters with the table, LSN and a preview; the job goes on', async () => {
    const t = `${schema.name}.validated`;
    await createItems(t, 3);
    const slot = slotName();
    const schemaFn = (row: unknown): Item => {
      const r = row as Item;
      if (r.v < 0) throw new Error(`v must not be negative, got ${r.v}`);
      return r;
    };
    const { running, out, dead } = cdcJob<Item>({ slot, tables: [t], schema: schemaFn });
    await until(() => out.values.length >= 3, 'the snapshot');
    await sql(`INSERT INTO ${t} VALUES (10, -1, 'bad'), (11, 5, 'good')`);
    await sql(`UPDATE ${t} SET v = -7 WHERE id = 0`);
    await sql(`DELETE FROM ${t} WHERE id = 1`);
    await until(() => out.values.length >= 5 && dead.values.length >= 2, 'changes and dead letters');
    await running.stop();
    expect(out.values.slice(3).map((c) => [c.op, c.key])).toEqual([
      ['insert', { id: 11 }],
      ['delete', { id: 1 }],
    ]);
    expect(dead.values).toHaveLength(2);
    const [first, second] = dead.values;
    expect(first!.step).toBe('cdc');
    expect(first!.error).toMatch(/v must not be negative, got -1/);
    expect(first!.record).toMatchObject({ table: `${schema.name}.validated`, op: 'insert', size: expect.any(Number) });
    expect((first!.record as { payload: string }).payload).toContain('"note":"bad"');
    expect((first!.record as { lsn: string }).lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(second!.record).toMatchObject({ op: 'update' });
  });

  it('keeps the connection alive while the job is held back (status updates go out while reading pauses)', async () => {
    const t = `${schema.name}.slow`;
    await createItems(t, 0);
    const slot = slotName();
    // The server drops a client silent for 1.5 s: only status updates keep this one.
    const connection = { connectionString: PG_URL, options: '-c wal_sender_timeout=1500' };
    const { running, out, source } = cdcJob<Item>({ connection, slot, tables: [t], statusIntervalMs: 300, maxBufferedChanges: 200 }, { batchSize: 16, sinkDelayMs: 40 });
    await until(() => source.metrics.connected, 'the stream');
    await sql(`INSERT INTO ${t} SELECT i, i, repeat('x', 100) FROM generate_series(1, 2000) i`);
    // 2 000 changes at 16 per 40 ms: about 5 s of backpressure, with reading paused most of it.
    await until(() => out.values.length >= 2_000, 'every change', 30_000);
    await running.stop();
    expect(source.metrics.reconnects).toBe(0);
    expect(out.values.map((c) => c.key!.id)).toEqual(Array.from({ length: 2_000 }, (_, i) => i + 1));
  }, 60_000);

  it('waits for an unreachable server at start, saying so once, until stopped', async () => {
    const lines: string[] = [];
    const slot = slotName();
    const { running, source } = cdcJob<Row>({ connection: 'postgres://spate:spate@127.0.0.1:1/spate', slot, tables: ['whatever'], retryMs: { first: 20, max: 100 } }, { log: (l) => lines.push(l) });
    await sleep(1_000);
    expect(lines.filter((l) => /connecting: PostgreSQL is unavailable \(.*ECONNREFUSED/.test(l))).toHaveLength(1);
    expect(source.metrics.connectionFailures).toBeGreaterThan(3);
    expect(source.metrics.connected).toBe(false);
    await running.stop();
  });

  it('refuses what retrying cannot fix with a clear error', async () => {
    const slot = slotName();
    const missing = cdcJob<Row>({ slot, tables: [`${schema.name}.no_such_table`] });
    await expect(missing.running.done).rejects.toThrow(/table .*no_such_table does not exist/);
    const noTables = cdcJob<Row>({ slot: slotName() });
    await expect(noTables.running.done).rejects.toThrow(/publication spate_cdct_\d+_\d+ does not exist; give `tables`/);
    expect(() => new PostgresCdcSource({ slot: 'Bad-Name' })).toThrow(/`slot` must be/);
  });

  it('runs the example of its TSDoc', async () => {
    const accounts = `${schema.name}.accounts`;
    const copy = `${schema.name}.accounts_copy`;
    await sql(`CREATE TABLE ${accounts} (id integer PRIMARY KEY, name text)`);
    await sql(`INSERT INTO ${accounts} VALUES (1, 'ann'), (2, 'bob')`);
    const slot = slotName();
    const checkpoints = tempDir();
    // As in the @example of PostgresCdcSource, with the test's names.
    const url = process.env['SPATE_PG_URL'] ?? 'postgres://spate:spate@127.0.0.1:5432/spate';
    const p = new Pipeline();
    p.source(new PostgresCdcSource<{ id: number; name: string }>({ connection: url, slot, tables: [accounts] }), { id: 'cdc' }).sink(
      new PostgresSink<ChangeRecord<{ id: number; name: string }>>({
        connection: url,
        table: copy,
        create: { id: 'integer', name: 'text' },
        columns: ['id', 'name'],
        row: (c) => [c.key!.id, c.new?.name ?? null],
        key: ['id'],
        op: (c) => (c.op === 'delete' ? 'delete' : 'upsert'),
        parallelism: 1,
      }),
      { id: 'mirror' },
    );
    const running = p.start({ checkpointDir: checkpoints, checkpointInterval: 1_000 });
    await sql(`INSERT INTO ${accounts} VALUES (3, 'cy')`);
    await sql(`UPDATE ${accounts} SET name = 'bo' WHERE id = 2`);
    await sql(`DELETE FROM ${accounts} WHERE id = 1`);
    const same = async (): Promise<boolean> => JSON.stringify(await sql(`SELECT * FROM ${copy} ORDER BY id`).catch(() => [])) === JSON.stringify(await sql(`SELECT * FROM ${accounts} ORDER BY id`));
    await until(same, 'the copy to equal the table');
    await running.stop();
    expect(await sql(`SELECT * FROM ${copy} ORDER BY id`)).toEqual([
      { id: 2, name: 'bo' },
      { id: 3, name: 'cy' },
    ]);
  });

  it('is idle only once it has caught up with the server, and active again with the next change', async () => {
    const t = `${schema.name}.idle`;
    await createItems(t, 100);
    const slot = slotName();
    const { running, out } = cdcJob<Item>({ slot, tables: [t] });
    const node = (): { idle: boolean } => running.job.node('cdc') as unknown as { idle: boolean };
    await until(() => out.values.length >= 100, 'the snapshot');
    await until(() => node().idle, 'idleness once caught up', 10_000);
    // Whether the source was idle when the change reached the sink: it may catch up (and be idle
    // again) within milliseconds, before a test polling its flag would look.
    let idleAtChange: boolean | undefined;
    out.onWrite = () => (idleAtChange ??= node().idle);
    await sql(`UPDATE ${t} SET v = -1 WHERE id = 5`);
    await until(() => out.values.length >= 101, 'the change');
    expect(idleAtChange).toBe(false);
    await until(() => node().idle, 'idleness again', 10_000);
    await running.stop();
  });
});
