/**
 * Helpers for tests against the real PostgreSQL server (`scripts/services.sh up postgres`): the
 * URL from `SPATE_PG_URL`, a schema of its own per test file (so files run in parallel and
 * repeatedly), queries that wait out a server restart, and a sink context for driving a sink by hand.
 */
import { Client } from 'pg';
import type { SinkContext } from '../../src/runtime/sink.ts';
import { systemClock } from '../../src/time/clock.ts';

export const PG_URL = process.env['SPATE_PG_URL'] ?? 'postgres://spate:spate@127.0.0.1:5432/spate';

/** Runs one statement on a fresh connection, retrying for a while if the server is restarting. */
export async function sql<R extends Record<string, unknown> = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<R[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const client = new Client({ connectionString: PG_URL, connectionTimeoutMillis: 5_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return (await client.query<R>(text, values)).rows;
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      const transient = /^(57P0|08)/.test(code) || /ECONN|terminat|timeout/i.test(String((error as Error).message) + code);
      if (!transient || Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 250));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

/** Creates a schema of its own (`spate_test_<tag>_<random>`); `drop` removes it with everything in it. */
export async function testSchema(tag: string): Promise<{ name: string; drop: () => Promise<void> }> {
  const name = `spate_test_${tag}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  await sql(`CREATE SCHEMA ${name}`);
  return { name, drop: async () => void (await sql(`DROP SCHEMA IF EXISTS ${name} CASCADE`)) };
}

/** A sink context for driving a sink without a job; dead letters and log lines are collected. */
export function sinkContext(
  options: { stepId?: string; instance?: number; parallelism?: number; restoredCheckpoint?: number } = {},
): SinkContext & { dead: Array<{ record: unknown; error: string }>; lines: string[] } {
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
