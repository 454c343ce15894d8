/**
 * Every replayable source resumes exactly where its checkpoint says, under crashes: arrays,
 * re-iterable collections, generators with several splits (per-split watermarks), NEXMark with
 * several splits and disorder (held-back events are part of the position), and JSONL and CSV
 * files (byte offsets and line numbers, malformed lines as dead letters). A source that cannot
 * replay is refused before anything runs.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { count, CsvSource, GeneratorSource, JsonlSource, OutputTag, type Pipeline, sliding, tumbling } from '../../src/index.ts';
import type { NexmarkEvent } from '../../src/nexmark/model.ts';
import { q5 } from '../../src/nexmark/queries.ts';
import { NexmarkSource } from '../../src/nexmark/source.ts';
import { runWithCrashes } from '../../src/testing/index.ts';
import { Coverage, exactlyOnce } from './support.ts';

const coverage = new Coverage();
const dir = mkdtempSync(join(tmpdir(), 'spate-recovery-sources-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  console.log(`sources: ${coverage.summary()}`);
});

const SEEDS = [1, 2, 3, 4, 5, 6];
const settings = (seed: number) => ({ seed, crashes: 4, batchSize: 7, checkpointEvery: 2, storageDelay: 2 });

describe('sources resume exactly from their checkpointed positions', () => {
  it.each(SEEDS)('arrays and re-iterable collections (seed %i)', async (seed) => {
    const values = Array.from({ length: 300 }, (_, i) => i);
    const { expected } = await exactlyOnce(
      (p: Pipeline) => ({
        array: p.fromArray(values, { id: 'array' }).map((n) => n * 2),
        set: p.fromIterable(new Set(values), { id: 'set' }).map((n) => n * 3),
        map: p.fromIterable(new Map(values.map((v) => [v, `v${v}`])), { id: 'map' }).map(([k, v]) => `${k}:${v}`),
      }),
      settings(seed),
      coverage,
      { compare: 'values' }, // no timestamps given: ingestion time
    );
    expect(expected.output.set.sort((a, b) => a - b)).toEqual(values.map((v) => v * 3));
    expect(expected.output.map).toHaveLength(300);
  });

  it('refuses a source that cannot replay (a generator object) before it runs', async () => {
    function* once() {
      yield 1;
    }
    await expect(runWithCrashes((p) => p.fromIterable(once(), { id: 'once' }), { crashes: 1 })).rejects.toThrow(/source 'once' cannot replay its input/);
  });

  it.each(SEEDS)('a generator with three splits, each with its own watermark (seed %i)', async (seed) => {
    const late = new OutputTag<number>('late');
    const { expected } = await exactlyOnce(
      (p: Pipeline) => {
        // Split k emits k, k + 3, …; times jump back up to 600 ms within a split, so some are late.
        const src = new GeneratorSource({ count: 400, splits: 3, make: (i) => i, time: (i) => i * 10 - (i % 7) * 100 });
        const w = p
          .source(src, { id: 'gen', outOfOrderness: 40, idleTimeout: 0 })
          .keyBy((i) => i % 4)
          .window(sliding(100, 50))
          .onLate({ policy: 'side-output', tag: late })
          .aggregate(count(), { id: 'w' });
        return { w, late: w.sideOutput(late) };
      },
      settings(seed),
      coverage,
    );
    expect(expected.output.late.length).toBeGreaterThan(0);
  });

  it.each(SEEDS)('NEXMark with three splits and disorder: held-back events are part of the position (seed %i)', async (seed) => {
    await exactlyOnce(
      (p: Pipeline) =>
        q5(p.source<NexmarkEvent>(() => new NexmarkSource({ events: 6000, rate: 200, seed: 9, disorder: 3000, splits: 3 }), { id: 'nexmark', outOfOrderness: 3000, idleTimeout: 0 })),
      { ...settings(seed), batchSize: 50 },
      coverage,
    );
  });

  const jsonl = join(dir, 'events.jsonl');
  const lines: string[] = [];
  for (let i = 0; i < 400; i++) lines.push(i % 53 === 17 ? `{not json ${i}` : JSON.stringify({ i, k: `k${i % 5}`, t: 1000 + i * 10 }));
  writeFileSync(jsonl, lines.join('\n') + '\n');
  const csv = join(dir, 'events.csv');
  const rows = ['i,k,t,note'];
  for (let i = 0; i < 400; i++) rows.push(i % 41 === 3 ? `${i},k${i % 5},oops,"x"` : `${i},k${i % 5},${1000 + i * 10},"multi\nline ${i}"`);
  writeFileSync(csv, rows.join('\n') + '\n');

  it.each(SEEDS)('JSONL and CSV files: byte offsets and line numbers, malformed lines as dead letters (seed %i)', async (seed) => {
    const { expected } = await exactlyOnce(
      (p: Pipeline) => {
        const json = p.source(new JsonlSource<{ i: number; k: string; t: number }>(jsonl), { id: 'jsonl', timestamp: (r) => r.t, idleTimeout: 0 });
        const table = p.source(new CsvSource(csv, { types: { i: 'number', t: 'number' } }), { id: 'csv', timestamp: (r) => r.t as number, idleTimeout: 0 });
        return {
          json: json.keyBy((r) => r.k).window(tumbling(100)).aggregate(count(), { id: 'json-w' }),
          rows: table.map((r) => `${r.i}:${r.note}`, { id: 'csv-rows' }),
          dead: p.deadLetters().map((d) => `${d.step}: ${d.error}`),
        };
      },
      settings(seed),
      coverage,
      { compare: 'values' }, // a dead letter of a source is timed by the processing-time clock
    );
    expect(expected.output.rows.length).toBeGreaterThan(350);
    expect(expected.output.dead.length).toBe(8 + 10);
  });
});
