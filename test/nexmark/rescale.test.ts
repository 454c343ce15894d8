/**
 * Rescaling: a NEXMark job stopped (with a checkpoint) and restarted from its checkpoint directory
 * at another parallelism — 1 → 2 → 3 → 1 — gives exactly the batch oracle's results: key groups and
 * splits are redistributed, windows that fired are never fired again, and the restored watermark
 * judges replayed records as before.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { NexmarkEvent } from '../../src/nexmark/model.ts';
import { QUERY_NAMES } from '../../src/nexmark/queries.ts';
import { runNexmark } from '../../src/nexmark/run.ts';
import { canonical, oracle } from './oracle.ts';

const dir = mkdtempSync(join(tmpdir(), 'spate-rescale-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function readJsonl(path: string): object[] {
  const text = readFileSync(path, 'utf8');
  return text.length === 0 ? [] : text.trimEnd().split('\n').map((l) => JSON.parse(l) as object);
}

const EVENTS = 40_000;

describe('NEXMark restored at another parallelism (1 → 2 → 3 → 1)', () => {
  it.each(QUERY_NAMES.map((q) => [q]))('%s', async (query) => {
    const out = join(dir, `${query}.jsonl`);
    const eventsOut = join(dir, `${query}-events.jsonl`);
    const checkpointDir = join(dir, `${query}-ck`);
    const common = { query, events: EVENTS, seed: 5, rate: 1000, disorder: 2000, out, eventsOut, checkpointDir, checkpointInterval: 0, batchSize: 256 } as const;
    const parallelisms = [1, 2, 3, 1];
    let generated = 0;
    for (const [i, parallelism] of parallelisms.entries()) {
      // Each run but the last stops, with a final checkpoint, after a quarter of the events.
      const last = i === parallelisms.length - 1;
      const result = await runNexmark({ ...common, parallelism, stopAfter: last ? undefined : EVENTS / 4 });
      generated += result.events;
      // Stopped well before the end (in worker threads the stop reaches the sources a little later).
      if (!last) expect(result.events).toBeLessThan(EVENTS / 2);
    }
    // Nothing was generated twice: each run went on where the previous one stopped.
    expect(generated).toBe(EVENTS);
    const events = readJsonl(eventsOut) as NexmarkEvent[];
    expect(events).toHaveLength(EVENTS);
    const expected = oracle(query, events);
    expect(expected.length).toBeGreaterThan(0);
    expect(canonical(readJsonl(out))).toEqual(canonical(expected));
  });
});
