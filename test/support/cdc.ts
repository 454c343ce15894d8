/**
 * Helpers for tests of the PostgreSQL CDC source: a table changed by concurrent transactions
 * (inserts, updates, key changes, deletes), and a strict replay of change records that fails on
 * any overlap (a row seen twice, an insert of a key present) or gap (an update or delete of a key
 * absent), whose result must equal the table.
 */
import { Client } from 'pg';
import type { ChangeRecord } from '../../src/connectors/postgres/cdc-source.ts';
import { PG_URL, sql } from './postgres.ts';

/** The rows of a test table: `id` is the primary key. */
export interface Item extends Record<string, unknown> {
  readonly id: number;
  readonly v: number;
  readonly note: string | null;
}

/** Creates `table` (id int primary key, v int, note text) with `rows` rows, ids 0..rows-1. */
export async function createItems(table: string, rows: number): Promise<void> {
  await sql(`CREATE TABLE ${table} (id int PRIMARY KEY, v int NOT NULL, note text)`);
  if (rows > 0) await sql(`INSERT INTO ${table} SELECT i, i, 'n' || i FROM generate_series(0, ${rows - 1}) i`);
}

/**
 * Runs random transactions on `table` until `stop()` (1–12 statements each: insert of a new key,
 * update of v, key change, delete), over keys 0..keys-1 and new ones from `fresh` on;
 * `committed()` counts the transactions committed so far.
 */
export function writer(table: string, options: { keys: number; fresh?: number; pauseMs?: number }): { stop: () => Promise<number>; committed: () => number } {
  let running = true;
  let txs = 0;
  let next = options.fresh ?? 1_000_000;
  const done = (async () => {
    const client = new Client({ connectionString: PG_URL });
    client.on('error', () => undefined);
    await client.connect();
    try {
      while (running) {
        const statements = 1 + Math.floor(Math.random() * 12);
        await client.query('BEGIN');
        try {
          for (let s = 0; s < statements; s++) {
            const r = Math.random();
            const k = Math.floor(Math.random() * options.keys);
            if (r < 0.3) await client.query(`INSERT INTO ${table} VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, [k, txs, `ins ${txs}`]);
            else if (r < 0.6) await client.query(`UPDATE ${table} SET v = v + 1, note = $2 WHERE id = $1`, [k, `upd ${txs}`]);
            else if (r < 0.7) await client.query(`UPDATE ${table} SET id = $2 WHERE id = $1`, [k, next++]);
            else if (r < 0.8) await client.query(`INSERT INTO ${table} VALUES ($1, 0, NULL)`, [next++]);
            else await client.query(`DELETE FROM ${table} WHERE id = $1`, [k]);
          }
          await client.query('COMMIT');
        } catch (error) {
          // A deadlock with another writer of the table: this transaction is rolled back, the next one goes on.
          if ((error as { code?: string }).code !== '40P01') throw error;
          await client.query('ROLLBACK');
          continue;
        }
        txs++;
        if (options.pauseMs !== undefined) await new Promise((r) => setTimeout(r, options.pauseMs));
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return {
    committed: () => txs,
    stop: async () => {
      running = false;
      await done;
      return txs;
    },
  };
}

/** Applies change records to a map by id, failing on overlap or gap (see the file comment). */
export function replay(records: ReadonlyArray<ChangeRecord<Item>>, into = new Map<number, Item>()): Map<number, Item> {
  for (const c of records) {
    const id = c.key?.id as number;
    switch (c.op) {
      case 'snapshot':
      case 'insert':
        if (into.has(id)) throw new Error(`overlap: ${c.op} of id ${id}, already present (lsn ${c.lsn})`);
        into.set(id, c.new!);
        break;
      case 'update': {
        const oldId = (c.old?.id as number | undefined) ?? id;
        if (!into.has(oldId)) throw new Error(`gap: update of id ${oldId}, absent (lsn ${c.lsn})`);
        into.delete(oldId);
        if (into.has(id)) throw new Error(`overlap: update moves ${oldId} to id ${id}, already present (lsn ${c.lsn})`);
        into.set(id, c.new!);
        break;
      }
      case 'delete':
        if (!into.delete(id)) throw new Error(`gap: delete of id ${id}, absent (lsn ${c.lsn})`);
        break;
      default:
        throw new Error(`unexpected op ${c.op}`);
    }
  }
  return into;
}

/** The table's rows as a map by id. */
export async function itemsOf(table: string): Promise<Map<number, Item>> {
  const rows = await sql<{ id: number; v: number; note: string | null }>(`SELECT id, v, note FROM ${table} ORDER BY id`);
  return new Map(rows.map((r) => [r.id, { id: r.id, v: r.v, note: r.note }]));
}

/** Only the columns a replayed row is compared on. */
export function plain(map: Map<number, Item>): Map<number, Item> {
  return new Map([...map].map(([k, r]) => [k, { id: r.id, v: r.v, note: r.note }]));
}
