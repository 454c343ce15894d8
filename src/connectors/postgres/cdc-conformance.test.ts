/**
 * The source conformance suite of `spate/testing` run against the PostgreSQL CDC source, on the
 * real server (`scripts/services.sh up postgres`, wal_level=logical; URL from SPATE_PG_URL): a
 * table, publication and replication slot of its own per check (`spate_cdcconf_<pid>_<n>`), all
 * dropped afterwards — a leftover slot would retain WAL.
 *
 * Two inputs. With the initial snapshot (the default), records 0 … n − 1 are rows of the table
 * before the job starts and appended records are inserts. Without it, the harness creates the
 * slot before inserting anything, so every record is a change from the log, and appended records
 * come in one transaction each: snapshots land inside transactions.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Source, SourceOutput, SourceReader, SplitOutput } from '../../runtime/source.ts';
import { type SourceHarness, sourceConformance } from '../../testing/index.ts';
import { PG_URL, sql, testSchema } from '../../../test/support/postgres.ts';
import { type ChangeRecord, PostgresCdcSource } from './cdc-source.ts';

interface Item extends Record<string, unknown> {
  readonly id: number;
  readonly name: string;
}
const item = (i: number): Item => ({ id: i, name: `item ${i}` });

let schema: { name: string; drop: () => Promise<void> };
let n = 0;
beforeAll(async () => {
  schema = await testSchema('cdcconf');
});
afterAll(async () => {
  await schema.drop();
});

/** A table of its own, and the slot (also the publication's name) reading it. */
interface Input {
  readonly table: string;
  readonly slot: string;
  next: number;
}

async function newInput(): Promise<Input> {
  const k = ++n;
  const input = { table: `${schema.name}.t${k}`, slot: `spate_cdcconf_${process.pid}_${k}`, next: 0 };
  await sql(`CREATE TABLE ${input.table} (id int PRIMARY KEY, name text NOT NULL)`);
  return input;
}

/** Inserts the next `count` records in one transaction. */
async function insert(input: Input, count: number): Promise<void> {
  if (count === 0) return;
  const from = input.next;
  input.next += count;
  await sql(`INSERT INTO ${input.table} SELECT i, 'item ' || i FROM generate_series(${from}, ${from + count - 1}) i`);
}

async function destroy(input: Input): Promise<void> {
  await PostgresCdcSource.drop(PG_URL, { slot: input.slot, publication: input.slot });
  await sql(`DROP TABLE IF EXISTS ${input.table}`);
}

/** Rejects the rows named 'bad' (a dead letter each). */
const schemaCheck = (row: unknown): Item => {
  if ((row as Item).name === 'bad') throw new Error(`row ${(row as Item).id} is named 'bad'`);
  return row as Item;
};

// After the snapshot rows, the change stream starts on a new connection (a few hundred ms): the
// suite waits this long for records beyond those expected — duplicates of the rows in changes.
const settleMs = 1_000;

/** A bad row: an id outside the records' (negative), named 'bad'. */
const appendBad = async (input: Input): Promise<void> => void (await sql(`INSERT INTO ${input.table} VALUES (-1, 'bad')`));

describe('source conformance: PostgresCdcSource, snapshot then changes', () => {
  /**
   * A record as a mirror of the table sees it: the row. A restore in the middle of the snapshot
   * reads the rest of the table in a new snapshot at a later position (see PostgresCdcSource):
   * rows inserted meanwhile then come as snapshot rows rather than inserts, with that snapshot's
   * position and time — the same rows, not the same change records. So the suite compares rows.
   */
  const harness: SourceHarness<Item, Input> = {
    bounded: false,
    create: async (count) => {
      const input = await newInput();
      await insert(input, count);
      return input;
    },
    source: (input) => rowsOf(new PostgresCdcSource<Item>({ connection: PG_URL, slot: input.slot, tables: [input.table], schema: schemaCheck, retryMs: { first: 50, max: 500 } })),
    append: insert,
    appendBad,
    record: item,
    destroy,
  };
  for (const check of sourceConformance(harness, { settleMs })) it(check.name, check.run);
});

describe('source conformance: PostgresCdcSource, changes only', () => {
  // Whole change records (op, LSNs, commit time, xid): replayed from the log, they must be the very
  // same. Not known ahead, so the suite counts them and finds duplicates instead of comparing.
  const harness: SourceHarness<ChangeRecord<Item>, Input> = {
    bounded: false,
    create: async (count) => {
      const input = await newInput();
      await sql(`CREATE PUBLICATION ${input.slot} FOR TABLE ${input.table}`);
      await sql(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [input.slot]);
      await insert(input, count);
      return input;
    },
    source: (input) => new PostgresCdcSource<Item>({ connection: PG_URL, slot: input.slot, snapshot: false, schema: schemaCheck, retryMs: { first: 50, max: 500 } }),
    append: insert,
    appendBad,
    destroy,
  };
  for (const check of sourceConformance(harness, { prefix: 'changes only', settleMs })) it(check.name, check.run);
});

/** The source, emitting each change's row (`new`); the reader's positions, waits and dead letters are its own. */
function rowsOf(source: PostgresCdcSource<Item>): Source<Item> {
  const row = (c: ChangeRecord<Item>): Item => {
    if (c.op !== 'snapshot' && c.op !== 'insert') throw new Error(`the input only gets rows and inserts, not ${c.op}`);
    return c.new!;
  };
  const output = <O extends SourceOutput<Item>>(out: O): SourceOutput<ChangeRecord<Item>> => ({
    emit: (c, time, origin) => out.emit(row(c), time, origin),
    watermark: (w) => out.watermark(w),
    deadLetter: (raw, error) => out.deadLetter(raw, error),
    markIdle: () => out.markIdle(),
    split: (id) => splitOutput(out.split(id)),
  });
  const splitOutput = (out: SplitOutput<Item>): SplitOutput<ChangeRecord<Item>> => ({ ...output(out), finish: () => out.finish() });
  return {
    bounded: source.bounded,
    maxParallelism: source.maxParallelism,
    idleTimeout: source.idleTimeout,
    splits: () => source.splits(),
    createReader: (ctx) => {
      const r = source.createReader(ctx);
      const reader: SourceReader<Item> = {
        open: (splits) => r.open(splits),
        poll: (out, max) => r.poll(output(out), max),
        ready: () => r.ready!(),
        snapshot: (id) => r.snapshot(id),
        notifyCheckpointComplete: (id) => r.notifyCheckpointComplete?.(id),
        close: () => r.close?.(),
      };
      return reader;
    },
  };
}
