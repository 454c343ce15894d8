/**
 * The connector conformance suites of `spate/testing`, run against Spate's own connectors: sinks
 * (JSONL files, PostgreSQL, DuckDB) and sources (generator, JSONL files bounded and tailing,
 * write-ahead logs). PostgreSQL is the real server of `scripts/services.sh up postgres`.
 */
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { DuckDBDatabase, DuckDBSink, GeneratorSource, JsonlSink, JsonlSource, PostgresSink, WalSource, WriteAheadLog } from '../src/index.ts';
import { type SinkHarness, sinkConformance, type SourceHarness, sourceConformance } from '../src/testing/index.ts';
import { PG_URL, sql, testSchema } from './support/postgres.ts';

interface Item {
  readonly id: number;
  readonly name: string;
}

const item = (i: number): Item => ({ id: i, name: `item ${i}` });
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'spate-conformance-'));
  dirs.push(d);
  return d;
}

describe('sink conformance: JsonlSink', () => {
  const harness: SinkHarness<Item, string> = {
    create: () => join(tempDir(), 'out.jsonl'),
    // `append`: a fresh start keeps what earlier runs committed (without it, a fresh start replaces the file).
    sink: (path) => new JsonlSink<Item>(path, { append: true }),
    read: (path) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Item) : []),
    record: item,
    ordered: true,
    parallel: false,
  };
  for (const check of sinkConformance(harness)) it(check.name, check.run);
  // Without `append`, a fresh start replaces the file: also conformant (nothing pre-committed shows).
  for (const check of sinkConformance({ ...harness, sink: (path) => new JsonlSink<Item>(path) }, { prefix: 'replacing' })) it(check.name, check.run);
});

describe('sink conformance: PostgresSink', () => {
  let schema: { name: string; drop: () => Promise<void> };
  let tables = 0;
  beforeAll(async () => {
    schema = await testSchema('conformance');
  });
  afterAll(async () => {
    await schema.drop();
  });
  const harness: SinkHarness<Item, string> = {
    create: () => `${schema.name}.t${++tables}`,
    sink: (table) => new PostgresSink<Item>({ connection: PG_URL, table, create: { id: 'bigint', name: 'text' } }),
    read: async (table) => {
      const exists = await sql<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [table]);
      if (exists[0]!.t === null) return [];
      return (await sql<{ id: string; name: string }>(`SELECT id, name FROM ${table}`)).map((r) => ({ id: Number(r.id), name: r.name }));
    },
    record: item,
  };
  for (const check of sinkConformance(harness)) it(check.name, check.run);
});

describe('sink conformance: DuckDBSink', () => {
  const harness: SinkHarness<Item, string> = {
    create: () => join(tempDir(), 'results.duckdb'),
    sink: (path) => new DuckDBSink<Item>({ path, table: 'items', create: { id: 'BIGINT', name: 'VARCHAR' }, parallelism: 2 }),
    read: async (path) => {
      const found = await DuckDBDatabase.query(path, `SELECT 1 FROM duckdb_tables() WHERE table_name = 'items'`);
      if (found.length === 0) return [];
      return (await DuckDBDatabase.query<{ id: bigint; name: string }>(path, 'SELECT id, name FROM items')).map((r) => ({ id: Number(r.id), name: r.name }));
    },
    record: item,
  };
  for (const check of sinkConformance(harness)) it(check.name, check.run);
});

describe('source conformance: GeneratorSource', () => {
  const harness: SourceHarness<Item, number> = {
    bounded: true,
    create: (n) => n,
    source: (n) => new GeneratorSource<Item>({ count: n, make: item }),
    record: item,
  };
  for (const check of sourceConformance(harness)) it(check.name, check.run);
});

/** A JSON-lines file and how many records it holds. */
interface LinesFile {
  readonly path: string;
  count: number;
}

function linesHarness(tail: boolean): SourceHarness<Item, LinesFile> {
  const lines = (from: number, n: number): string => Array.from({ length: n }, (_, k) => JSON.stringify(item(from + k)) + '\n').join('');
  return {
    bounded: !tail,
    create: (n) => {
      const path = join(tempDir(), 'in.jsonl');
      writeFileSync(path, lines(0, n));
      return { path, count: n };
    },
    source: (f) => new JsonlSource<Item>(f.path, tail ? { tail: true } : {}),
    append: (f, n) => {
      appendFileSync(f.path, lines(f.count, n));
      f.count += n;
    },
    appendBad: (f) => appendFileSync(f.path, '{"id": 1, oops\n'),
    record: item,
  };
}

describe('source conformance: JsonlSource', () => {
  for (const check of sourceConformance(linesHarness(false))) it(check.name, check.run);
});

describe('source conformance: JsonlSource, tailing', () => {
  for (const check of sourceConformance(linesHarness(true), { prefix: 'tail' })) it(check.name, check.run);
});

/** Two write-ahead logs (two splits) and how many records they hold. */
interface Logs {
  readonly dir: string;
  readonly logs: WriteAheadLog[];
  count: number;
}

describe('source conformance: WalSource', () => {
  const encode = (i: number): Uint8Array => Buffer.from(JSON.stringify(item(i)));
  const append = async (l: Logs, n: number): Promise<void> => {
    // Record i goes to log i % 2.
    for (let k = 0; k < n; k++) await l.logs[(l.count + k) % 2]!.append([encode(l.count + k)]);
    l.count += n;
  };
  const harness: SourceHarness<Item, Logs> = {
    bounded: false,
    create: async (n) => {
      const dir = tempDir();
      const logs = [await WriteAheadLog.open(join(dir, 'a')), await WriteAheadLog.open(join(dir, 'b'))];
      const l = { dir, logs, count: 0 };
      await append(l, n);
      return l;
    },
    source: (l) =>
      new WalSource<Item>({
        logs: l.logs.map((log, i) => ({ id: `log-${i}`, log })),
        decode: (bytes) => JSON.parse(Buffer.from(bytes).toString('utf8')) as Item,
      }),
    append,
    appendBad: async (l) => void (await l.logs[0]!.append([Buffer.from('{ not json')])),
    record: item,
    destroy: async (l) => {
      for (const log of l.logs) await log.close();
    },
  };
  for (const check of sourceConformance(harness)) it(check.name, check.run);
});
