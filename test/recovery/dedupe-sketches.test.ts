/**
 * Exactly-once of dedupe and of the sketches under crashes: dedupe's rotating per-key-group
 * filters, sketch accumulators of tumbling, sliding and session windows (HyperLogLog, KLL with its
 * coin-flip state, SpaceSaving, count-min), partial sketches merged downstream (two-phase
 * aggregation), and sketches kept in keyed state. A restored sketch must continue exactly as the
 * uninterrupted one, so the committed output — estimates included — is the same.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { type Pipeline, session, sliding, tumbling, type WindowAssigner } from '../../src/index.ts';
import {
  approxDistinct,
  approxFrequency,
  approxQuantiles,
  approxTopK,
  HyperLogLog,
  KllSketch,
  mergeSketches,
  sketchOf,
  sketchState,
} from '../../src/sketch/index.ts';
import { TestSource } from '../../src/testing/index.ts';
import { Coverage, crashArb, exactlyOnce, type Rec, scenarioArb, scripted, runs, seed } from './support.ts';

const RUNS = runs(60);
const coverage = new Coverage();
afterAll(() => coverage.expectAll('dedupe and sketches'));

const scenarios = scenarioArb({ maxRecords: 60, maxDisorder: 8, late: { maxCount: 3, maxBy: 10 }, vRange: [0, 30] });

describe('dedupe under crashes', () => {
  // Few keys over a long span: keys repeat across generations, so a restore that lost the
  // previous generation's filter lets repeats through.
  const repeats = scenarioArb({ maxRecords: 80, span: 200, maxDisorder: 8, late: { maxCount: 3, maxBy: 10 }, vRange: [0, 30] });
  it('drops the same repeats as an uninterrupted run', async () => {
    await fc.assert(
      fc.asyncProperty(repeats, fc.integer({ min: 5, max: 40 }), crashArb, async (sc, within, crash) => {
        await exactlyOnce(
          (p) => p.source(scripted(sc.steps), { id: 'in', idleTimeout: 0 }).keyBy((r) => r.v % 6).dedupe({ within, capacity: 1000, id: 'dedupe' }),
          crash,
          coverage,
        );
      }),
      { seed: seed(7301), numRuns: RUNS },
    );
  });
});

describe('dedupe restored between a rotation and a repeat', () => {
  // Key 'x' is first seen in generation 0; the watermark moves into generation 1, so 'x' is in
  // the previous generation's filter when checkpoint 2 is taken; after the restart 'x' repeats
  // and must still be dropped, as in the uninterrupted run.
  it('keeps the previous generation', async () => {
    const build = (p: Pipeline) => {
      const src = new TestSource<string>().watermark(0).record('x', 1).watermark(12);
      for (let i = 0; i < 20; i++) src.record(`f${i}`, 13);
      src.record('x', 15);
      return p.source(src.end(), { id: 'in', idleTimeout: 0 }).keyBy((s) => s).dedupe({ within: 10, id: 'dedupe' });
    };
    const { expected, actual } = await exactlyOnce(build, { seed: 1, crashes: 0, batchSize: 1, checkpointEvery: 2, storageDelay: 0 }, coverage, {
      crashes: [{ at: 'manifest-written', checkpoint: 2 }],
    });
    expect(expected.output.filter((s) => s === 'x')).toHaveLength(1);
    expect(actual.incarnations.map((i) => i.restoredFrom)).toEqual([null, 2]);
  });
});

const assigners: fc.Arbitrary<WindowAssigner> = fc.oneof(
  fc.integer({ min: 5, max: 30 }).map((size) => tumbling(size)),
  fc.record({ slide: fc.integer({ min: 2, max: 10 }), factor: fc.integer({ min: 1, max: 3 }) }).map(({ slide, factor }) => sliding(slide * factor, slide)),
  fc.integer({ min: 2, max: 12 }).map((gap) => session(gap)),
);

describe('sketches under crashes', () => {
  it('window sketch aggregates: distinct, quantiles, top-k, frequency', async () => {
    await fc.assert(
      fc.asyncProperty(scenarios, assigners, crashArb, async (sc, assigner, crash) => {
        await exactlyOnce(
          (p: Pipeline) => {
            const w = p.source(scripted(sc.steps), { id: 'in', idleTimeout: 0 }).keyBy((r) => r.k).window(assigner);
            return {
              distinct: w.aggregate(approxDistinct((r: Rec) => r.v, { relativeError: 0.05 }), (k, n, win) => ({ k, start: win.start, n }), { id: 'distinct' }),
              quantiles: w.aggregate(approxQuantiles((r: Rec) => r.v, [0, 0.5, 0.9, 1], { rankError: 0.05 }), (k, q, win) => ({ k, start: win.start, q }), { id: 'quantiles' }),
              top: w.aggregate(approxTopK((r: Rec) => r.v % 7, 2, { capacity: 4 }), (k, top, win) => ({ k, start: win.start, top }), { id: 'top' }),
              frequency: w.aggregate(
                approxFrequency((r: Rec) => r.v % 4, { epsilon: 0.05, delta: 0.05 }),
                (k, cms, win) => ({ k, start: win.start, f: [0, 1, 2, 3].map((x) => cms.estimate(x)) }),
                { id: 'frequency' },
              ),
            };
          },
          crash,
          coverage,
        );
      }),
      { seed: seed(7302), numRuns: RUNS },
    );
  });

  it('partial sketches per shard merged downstream (two-phase aggregation)', async () => {
    await fc.assert(
      fc.asyncProperty(scenarios, fc.integer({ min: 5, max: 30 }), crashArb, async (sc, size, crash) => {
        await exactlyOnce(
          (p: Pipeline) =>
            p
              .source(scripted(sc.steps), { id: 'in', idleTimeout: 0 })
              .keyBy((r) => r.id % 3)
              .window(tumbling(size))
              .aggregate(
                sketchOf(() => new KllSketch(8, { seed: 3 }), (s, r: Rec) => s.add(r.v)),
                (_k, s) => s,
                { id: 'partial' },
              )
              .windowAll(tumbling(size))
              .aggregate(mergeSketches<KllSketch>(), (_k, s, win) => ({ start: win.start, n: s.count(), median: s.quantile(0.5) }), { id: 'merged' }),
          crash,
          coverage,
        );
      }),
      { seed: seed(7303), numRuns: RUNS },
    );
  });

  it('sketches in keyed state (a running distinct count per key)', async () => {
    await fc.assert(
      fc.asyncProperty(scenarios, crashArb, async (sc, crash) => {
        await exactlyOnce(
          (p: Pipeline) =>
            p
              .source(scripted(sc.steps), { id: 'in', idleTimeout: 0 })
              .keyBy((r) => r.k)
              .state({ seen: sketchState(HyperLogLog), median: sketchState(KllSketch) })
              .process<{ id: number; distinct: number; median: number }>(
                {
                  onElement(r, ctx) {
                    const hll = ctx.state.seen.get() ?? HyperLogLog.withError(0.05);
                    hll.add(r.v);
                    ctx.state.seen.set(hll);
                    const kll = ctx.state.median.get() ?? new KllSketch(8, { seed: 11 });
                    kll.add(r.v);
                    ctx.state.median.set(kll);
                    ctx.emit({ id: r.id, distinct: Math.round(hll.count()), median: kll.quantile(0.5) });
                  },
                },
                { id: 'keyed-sketches' },
              ),
          crash,
          coverage,
        );
      }),
      { seed: seed(7304), numRuns: RUNS },
    );
  });
});
