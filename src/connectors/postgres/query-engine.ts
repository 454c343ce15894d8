import pg, { type ClientConfig, type QueryArrayConfig } from 'pg';
import type { QueryEngine, QueryResult } from '../../ui/query-engine.ts';
import { clientConfig, type PostgresConnection } from './config.ts';

/**
 * A {@link QueryEngine} over PostgreSQL, for the dashboard's `/api/query` of a job that stores its
 * results there: each query runs in its own read-only transaction with a statement timeout, on a
 * connection of a small pool. Values come back as `pg` parses them, made JSON-safe (BIGINT and
 * NUMERIC stay strings, timestamps ISO strings).
 *
 * @example
 * const dashboard = await serveDashboard(running, { port: 7070, queries: postgresQueryEngine('postgres://localhost/results') });
 */
export function postgresQueryEngine(connection: PostgresConnection | undefined, options: { readonly timeoutMs?: number; readonly connections?: number } = {}): QueryEngine & { close(): Promise<void> } {
  const pool = new pg.Pool({ ...(clientConfig(connection, 'spate query') as ClientConfig), max: options.connections ?? 2 });
  pool.on('error', () => undefined); // an idle connection that broke: the pool replaces it
  const timeout = Math.max(1, Math.floor(options.timeoutMs ?? 10_000));
  return {
    async query(sql: string): Promise<QueryResult> {
      const client = await pool.connect();
      try {
        await client.query(`BEGIN READ ONLY; SET LOCAL statement_timeout = ${timeout}`);
        // The extended protocol takes one statement only: the simple one would run `…; COMMIT; DROP …`
        // past the read-only transaction. (`queryMode` is not in @types/pg.)
        const query: QueryArrayConfig = { text: sql, rowMode: 'array', ...{ queryMode: 'extended' } };
        const result = await client.query(query);
        const rows = (result.rows as unknown[][]).map((row) => Object.fromEntries(result.fields.map((f, i) => [f.name, jsonSafe(row[i])])));
        return { columns: result.fields.map((f) => ({ name: f.name })), rows };
      } finally {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release();
      }
    },
    close: () => pool.end(),
  };
}

function jsonSafe(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'bigint') return v.toString();
  if (Buffer.isBuffer(v)) return `\\x${v.toString('hex')}`;
  return v;
}
