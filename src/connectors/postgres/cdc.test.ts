/**
 * The PostgreSQL change-data-capture source against the real server (`scripts/services.sh up
 * postgres`, wal_level=logical; URL from SPATE_PG_URL). Each test uses tables in a schema of this
 * file and slots/publications of its own (`spate_cdct_<pid>_<n>`), all dropped afterwards: a
 * leftover slot would retain WAL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CollectSink, Pipeline, type DeadLetter, type RunningJob } from '../../index.ts';
import { PostgresCdcSource, type ChangeRecord, type PostgresCdcOptions } from './cdc-source.ts';
import { parseLsn } from './pgoutput.ts';
import { PG_URL, sql, testSchema } from '../../../test/support/postgres.ts';

let schema: { name: string; drop: () => Promise<void> };
const dirs: string[] = [];
const slots: string[] = [];
let n = 0;

beforeAll(async () => {
  schema = await testSchema('cdc');
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

/** A job reading `options` into a collect sink (dead letters into another). */
function cdcJob<R extends Row>(
  options: Omit<PostgresCdcOptions<R>, 'connection'>,
  run: { checkpointDir?: string; checkpointInterval?: number; log?: (l: string) => void } = {},
): { running: RunningJob; out: CollectSink<ChangeRecord<R>>; dead: CollectSink<DeadLetter>; source: PostgresCdcSource<R> } {
  const p = new Pipeline();
  const source = new PostgresCdcSource<R>({ connection: PG_URL, retryMs: { first: 50, max: 500 }, ...options });
  const out = new CollectSink<ChangeRecord<R>>();
  const dead = new CollectSink<DeadLetter>();
  p.source(source, { id: 'cdc' }).sink(out, { id: 'out' });
  p.deadLetters().sink(dead, { id: 'dead' });
  const running = p.start({ checkpointInterval: 50, log: () => undefined, ...run });
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
});
