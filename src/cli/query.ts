import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DuckDBDatabase, type DuckDBQueryResult } from '../connectors/duckdb/database.ts';
import { UsageError } from './args.ts';
import { sendControl } from './control.ts';

export const QUERY_USAGE = `spate query "SQL" [options]

Runs one read-only SQL statement (SELECT, WITH, SHOW, DESCRIBE, …) against a job's results and
prints them as a table. By default it asks the demo (spate demo / npm start) in .spate/demo.

options:
  --dir DIR               the demo's directory (default .spate/demo); a running demo answers
                          from its results, in DuckDB or (--store postgres) PostgreSQL
  --checkpoint-dir DIR    ask the job running with this checkpoint directory (spate run
                          --checkpoint-dir DIR): it answers from the DuckDB file it has open
  --database FILE         the DuckDB file, when the job has several open — or, when no job runs,
                          the file to open and read
  --url URL               ask a job's dashboard over HTTP instead (http://127.0.0.1:7070; the
                          address spate demo prints, ?token=… included, will do)
  --token T               the dashboard's bearer token (default: the URL's ?token=, else
                          SPATE_UI_TOKEN)
  --json                  print the rows as JSON lines
  -h, --help              this text
`;

/** `spate query`. */
export async function queryCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      'checkpoint-dir': { type: 'string' },
      database: { type: 'string' },
      url: { type: 'string' },
      token: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(QUERY_USAGE);
    return 0;
  }
  const sql = positionals.join(' ').trim();
  if (sql === '') throw new UsageError(`a SQL statement is required\n\n${QUERY_USAGE}`);
  let result: DuckDBQueryResult;
  if (values.url !== undefined) {
    // The address the demo prints carries the token (?token=…): it goes as the bearer token.
    let fromUrl: string | undefined;
    try {
      fromUrl = new URL(values.url).searchParams.get('token') ?? undefined;
    } catch {
      throw new UsageError(`--url: not a URL: '${values.url}'`);
    }
    result = await overHttp(values.url, sql, values.token ?? fromUrl ?? process.env['SPATE_UI_TOKEN']);
  } else {
    const demo = resolve(values.dir ?? '.spate/demo');
    const checkpointDir = values['checkpoint-dir'] ?? join(demo, 'checkpoints');
    const database = values.database ?? (values['checkpoint-dir'] === undefined ? join(demo, 'results.duckdb') : undefined);
    try {
      result = (await sendControl(checkpointDir, { command: 'query', sql, ...(database === undefined ? {} : { database }) }, 60_000)) as DuckDBQueryResult;
    } catch (error) {
      // No job runs there: read the file itself (nobody holds it).
      if (!/^no running job/.test((error as Error).message) || database === undefined) throw error;
      if (!existsSync(database)) throw new Error(`no running job checkpoints into ${resolve(checkpointDir)}, and there is no DuckDB file ${resolve(database)}`);
      const db = await DuckDBDatabase.open(database);
      try {
        result = await db.queryJson(sql);
      } finally {
        await db.close();
      }
    }
  }
  process.stdout.write(values.json ? result.rows.map((r) => JSON.stringify(r)).join('\n') + (result.rows.length > 0 ? '\n' : '') : formatTable(result));
  return 0;
}

async function overHttp(url: string, sql: string, token: string | undefined): Promise<DuckDBQueryResult> {
  const res = await fetch(new URL('/api/query', url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    body: JSON.stringify({ sql }),
  });
  const body = (await res.json().catch(() => ({}))) as DuckDBQueryResult & { error?: string };
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${body.error ?? res.statusText}`);
  return body;
}

/** Rows as an aligned text table, with the row count. */
export function formatTable(result: DuckDBQueryResult): string {
  const names = result.columns.map((c) => c.name);
  const cell = (v: unknown): string => (v === null || v === undefined ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const rows = result.rows.map((r) => names.map((n) => cell(r[n])));
  const widths = names.map((n, i) => Math.min(60, Math.max(n.length, ...rows.map((r) => r[i]!.length))));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (c.length > widths[i]! ? `${c.slice(0, widths[i]! - 1)}…` : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(names), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  return `${out.join('\n')}\n(${rows.length} row${rows.length === 1 ? '' : 's'})\n`;
}
