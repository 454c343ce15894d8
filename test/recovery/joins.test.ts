/**
 * Exactly-once of the joins under crashes: regular inner and left joins (with and without
 * retention), interval joins and window joins (pairs and coGroup), on two disordered inputs read
 * by two sources (so checkpoint barriers align across two channels), with late records. The
 * committed output must equal an uninterrupted run's as a multiset.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { type Pipeline, session, sliding, type Stream, tumbling, type WindowAssigner } from '../../src/index.ts';
import { Coverage, crashArb, exactlyOnce, type Rec, scenarioArb, scripted, type Scenario, runs, seed } from './support.ts';

const RUNS = runs(100);
const coverage = new Coverage();
afterAll(() => coverage.expectAll('joins'));

const scenarios = scenarioArb({ maxRecords: 40, maxDisorder: 8, sides: 2, late: { maxCount: 4, maxBy: 15 } });

/** Left (side 0) and right (side 1) inputs, each its own source, both with every watermark. */
function inputs(p: Pipeline, sc: Scenario): [Stream<Rec>, Stream<Rec>] {
  return [
    p.source(scripted(sc.steps, (r) => r.side === 0), { id: 'left', idleTimeout: 0 }),
    p.source(scripted(sc.steps, (r) => r.side === 1), { id: 'right', idleTimeout: 0 }),
  ];
}

const pair = (l: Rec, r: Rec | undefined): string => `${l.id}-${r === undefined ? 'none' : r.id}`;

describe('joins under crashes', () => {
  it('regular inner and left joins, with and without retention', async () => {
    await fc.assert(
      fc.asyncProperty(scenarios, fc.option(fc.integer({ min: 1, max: 30 }), { nil: undefined }), crashArb, async (sc, retention, crash) => {
        const options = retention === undefined ? {} : { retention };
        const { expected } = await exactlyOnce(
          (p) => {
            const [l, r] = inputs(p, sc);
            const lk = l.keyBy((x) => x.k);
            const rk = r.keyBy((x) => x.k);
            return {
              inner: lk.join(rk, pair, { ...options, id: 'inner' }),
              left: lk.leftJoin(rk, pair, { ...options, id: 'left-join' }),
            };
          },
          crash,
          coverage,
        );
        // A left join emits every left record at least once.
        const lefts = new Set(expected.output.left.map((s) => Number(s.split('-')[0])));
        expect(lefts.size).toBe(sc.records.filter((x) => x.side === 0).length);
      }),
      { seed: seed(7201), numRuns: RUNS },
    );
  });

  it('interval joins', async () => {
    await fc.assert(
      fc.asyncProperty(scenarios, fc.integer({ min: -15, max: 5 }), fc.integer({ min: 0, max: 20 }), crashArb, async (sc, lower, width, crash) => {
        await exactlyOnce(
          (p) => {
            const [l, r] = inputs(p, sc);
            return l.keyBy((x) => x.k).intervalJoin(r.keyBy((x) => x.k), { lower, upper: lower + width }, pair, { id: 'interval' });
          },
          crash,
          coverage,
        );
      }),
      { seed: seed(7202), numRuns: RUNS },
    );
  });

  const assigners: fc.Arbitrary<WindowAssigner> = fc.oneof(
    fc.integer({ min: 1, max: 25 }).map((size) => tumbling(size)),
    fc.record({ slide: fc.integer({ min: 1, max: 8 }), factor: fc.integer({ min: 1, max: 3 }) }).map(({ slide, factor }) => sliding(slide * factor, slide)),
    fc.integer({ min: 1, max: 12 }).map((gap) => session(gap)),
  );

  it('window joins (pairs, and coGroup with either side empty)', async () => {
    await fc.assert(
      fc.asyncProperty(scenarios, assigners, crashArb, async (sc, assigner, crash) => {
        await exactlyOnce(
          (p) => {
            const [l, r] = inputs(p, sc);
            const joined = l.keyBy((x) => x.k).windowJoin(r.keyBy((x) => x.k), assigner);
            return {
              pairs: joined.apply((a, b, w) => `${pair(a, b)}@${w.start}`, { id: 'pairs' }),
              groups: joined.coGroup<string>(
                (k, ls, rs, w, out) => out.emit(`${k}@${w.start}-${w.end}:${ls.map((x) => x.id).sort((a, b) => a - b)}|${rs.map((x) => x.id).sort((a, b) => a - b)}`),
                { id: 'groups' },
              ),
            };
          },
          crash,
          coverage,
        );
      }),
      { seed: seed(7203), numRuns: RUNS },
    );
  });
});
