/**
 * `spate demo --store postgres` on the real PostgreSQL server (scripts/services.sh up postgres):
 * the demo's tables are unqualified names, so the run gets a schema of its own through the
 * connection string's search_path (`?options=-c search_path=<schema>`). The tables fill, the
 * dashboard's /api/query and `spate query` answer from PostgreSQL (the demo's
 * postgresQueryEngine), and the schema is dropped afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresQueryEngine } from '../../src/connectors/postgres/query-engine.ts';
import { apiQuery, count, type DemoProcess, spateQuery, startDemo, steps, until } from '../support/demo.ts';
import { PG_URL, sql, testSchema } from '../support/postgres.ts';

const root = mkdtempSync(join(tmpdir(), 'spate-demo-pg-'));
const dir = join(root, 'demo');
let schema: Awaited<ReturnType<typeof testSchema>>;
let demo: DemoProcess;

/** PG_URL with the schema as its search path. */
function withSearchPath(url: string, name: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${name}`)}`;
}

beforeAll(async () => {
  schema = await testSchema('demo');
  demo = await startDemo(dir, ['--devices', '200', '--rate', '1000', '--store', 'postgres', '--pg-url', withSearchPath(PG_URL, schema.name)]);
});

afterAll(async () => {
  await demo?.kill();
  await schema?.drop();
  rmSync(root, { recursive: true, force: true });
});

const tableCount = async (table: string): Promise<number> => Number((await sql<{ n: string }>(`SELECT count(*) AS n FROM ${schema.name}.${table}`))[0]!.n);

describe('spate demo --store postgres', () => {
  it('creates its tables in the schema of its search path and fills them', async () => {
    expect(demo.stdout()).toMatch(/results exactly once in PostgreSQL/);
    const tables = ['device_stats', 'device_p95', 'alerts', 'region_activity', 'noisiest', 'late_readings', 'dead_letters'];
    await until('the demo tables in the test schema', async () => {
      const rows = await sql<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1`, [schema.name]);
      const names = new Set(rows.map((r) => r.table_name));
      return tables.every((t) => names.has(t));
    }, 30_000);
    // Every 10 s window of every device, the 1-minute p95 every 10 s, active devices per region, the fleet's faults.
    // Two windows stored: the first may hold only the last moments of a window the demo started in.
    await until('rows in device_stats (two windows), device_p95, region_activity and dead_letters', async () => {
      const n = await Promise.all(['device_stats', 'device_p95', 'region_activity', 'dead_letters'].map(tableCount));
      const [w] = await sql<{ n: string }>(`SELECT count(DISTINCT window_start) AS n FROM ${schema.name}.device_stats`);
      return n.every((x) => x > 0) && Number(w!.n) >= 2 ? n : false;
    }, 60_000);
    const [stats] = await sql<{ devices: string; readings: string; bad: string }>(
      `SELECT count(DISTINCT device) AS devices, sum(readings) AS readings, count(*) FILTER (WHERE NOT (min_db <= avg_db AND avg_db <= max_db AND window_end - window_start = interval '10 seconds')) AS bad FROM ${schema.name}.device_stats`,
    );
    expect(Number(stats!.devices)).toBeGreaterThan(100);
    expect(Number(stats!.readings)).toBeGreaterThan(500);
    expect(Number(stats!.bad)).toBe(0);
    const regions = await sql<{ region: string }>(`SELECT DISTINCT region FROM ${schema.name}.region_activity ORDER BY region`);
    expect(regions.map((r) => r.region)).toEqual(['centre', 'east', 'north', 'south', 'west']);
    const dead = await sql<{ step: string; error: string }>(`SELECT step, error FROM ${schema.name}.dead_letters`);
    for (const d of dead) expect(['http', 'websocket', 'mqtt']).toContain(d.step);
    // The sinks' bookkeeping is beside the tables, in the same schema.
    expect(Number((await sql<{ n: string }>(`SELECT count(*) AS n FROM ${schema.name}.spate_commits`))[0]!.n)).toBeGreaterThan(0);
  });

  it('answers /api/query from PostgreSQL', async () => {
    const { rows } = await apiQuery(demo.url, `SELECT current_schema() AS s, version() AS v, (SELECT count(*) FROM device_stats) AS n`);
    expect(rows[0]!['s']).toBe(schema.name);
    expect(rows[0]!['v']).toMatch(/^PostgreSQL \d+/);
    expect(count(rows)).toBeGreaterThan(0);
    // Rows come back JSON-safe: timestamps as ISO strings, BIGINT as strings.
    const latest = await apiQuery(demo.url, 'SELECT device, window_start, window_end, readings FROM device_stats ORDER BY window_end DESC, device LIMIT 3');
    expect(latest.columns.map((c) => c.name)).toEqual(['device', 'window_start', 'window_end', 'readings']);
    expect(latest.rows).toHaveLength(3);
    for (const r of latest.rows) {
      expect(r['device']).toMatch(/^sensor-\d{4}$/);
      expect(r['window_end']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(Date.parse(r['window_end'] as string) - Date.parse(r['window_start'] as string)).toBe(10_000);
      expect(Number(r['readings'])).toBeGreaterThan(0);
    }
    // The same count as the server's own, up to what was committed in between.
    const before = await tableCount('device_stats');
    const answered = count((await apiQuery(demo.url, 'SELECT count(*) AS n FROM device_stats')).rows);
    expect(answered).toBeGreaterThanOrEqual(before);
    expect(answered).toBeLessThanOrEqual(await tableCount('device_stats'));
    // Read-only: a statement that writes is refused.
    await expect(apiQuery(demo.url, 'DELETE FROM device_stats')).rejects.toThrow(/400.*read-only/);
    await expect(apiQuery(demo.url, 'SELECT 1; DELETE FROM device_stats')).rejects.toThrow(/400/);
  });

  it('has a query engine that stays read-only by itself (the dashboard checks first; the engine does not rely on it)', async () => {
    const engine = postgresQueryEngine(withSearchPath(PG_URL, schema.name));
    try {
      expect(count((await engine.query('SELECT count(*) AS n FROM device_stats')).rows)).toBeGreaterThan(0);
      await expect(engine.query('CREATE TABLE probe (a int)')).rejects.toThrow(/read-only transaction/);
      // Past the read-only transaction with a COMMIT in a second statement: refused whole.
      await expect(engine.query('SELECT 1; COMMIT; CREATE TABLE probe (a int)')).rejects.toThrow(/multiple commands/);
      expect((await sql<{ t: string | null }>(`SELECT to_regclass($1) AS t`, [`${schema.name}.probe`]))[0]!.t).toBeNull();
    } finally {
      await engine.close();
    }
  });

  it('answers `spate query` over its control socket from PostgreSQL too', async () => {
    const rows = await spateQuery('SELECT current_schema() AS s, count(*) AS n FROM device_stats', ['--dir', dir]);
    expect(rows[0]!['s']).toBe(schema.name);
    expect(count(rows)).toBeGreaterThan(0);
  });

  it('stops on SIGTERM with exit code 0: one row per device and window, nothing left staged', async () => {
    const ingested = [...(await steps(demo.url)).values()].filter((s) => s.kind === 'source').reduce((n, s) => n + s.recordsOut, 0);
    expect(ingested).toBeGreaterThan(0);
    const { code, signal } = await demo.stop();
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    // Exactly once: one row per device and window, nothing left staged.
    const [dup] = await sql<{ n: string }>(`SELECT count(*) AS n FROM (SELECT device, window_start FROM ${schema.name}.device_stats GROUP BY 1, 2 HAVING count(*) > 1) d`);
    expect(Number(dup!.n)).toBe(0);
    const staged = await sql<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name LIKE 'spate_stage_%'`, [schema.name]);
    for (const t of staged) expect(await tableCount(t.table_name), t.table_name).toBe(0);
  });
});
