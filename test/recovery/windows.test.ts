/**
 * Exactly-once of the window operators under crashes: tumbling, sliding and session windows over
 * random disordered input with late records, under every late-data policy (drop, side output,
 * dead letter, update with allowed lateness), with crashes injected anywhere in the pipeline
 * (between polls, mid-checkpoint, after the manifest before the commit, during recovery). The
 * committed output of every output stream — results, late side output, dead letters — must equal
 * that of an uninterrupted run as a multiset.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type Aggregator,
  avg,
  collectAll,
  count,
  type LatePolicy,
  maxBy,
  OutputTag,
  type Pipeline,
  session,
  sliding,
  type Stream,
  sum,
  tumbling,
  type WindowAssigner,
  type WindowInfo,
} from '../../src/index.ts';
import { Coverage, crashArb, exactlyOnce, type Rec, scenarioArb, scripted, type Scenario, runs, seed } from './support.ts';

const RUNS = runs(150);
const coverage = new Coverage();
afterAll(() => coverage.expectAll('windows'));

interface Row {
  readonly agg: string;
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly late: boolean;
  readonly value: unknown;
}

/** A user aggregator with a mutable accumulator (it must survive the checkpoint codec). */
const parity: Aggregator<Rec, { even: number; odd: number; ids: number[] }, string> = {
  create: () => ({ even: 0, odd: 0, ids: [] }),
  add: (a, r) => {
    if (r.v % 2 === 0) a.even++;
    else a.odd++;
    a.ids.push(r.id);
    return a;
  },
  merge: (a, b) => ({ even: a.even + b.even, odd: a.odd + b.odd, ids: [...a.ids, ...b.ids] }),
  result: (a) => `${a.even}/${a.odd}/${[...a.ids].sort((x, y) => x - y).join(',')}`,
};

function windows(s: Stream<Rec>, assigner: WindowAssigner, policy: LatePolicy<Rec>): Stream<Row> {
  const w = s.keyBy((r) => r.k).window(assigner).onLate(policy);
  const row = (agg: string) => (key: string, value: unknown, win: WindowInfo): Row => ({ agg, key, start: win.start, end: win.end, late: win.late, value });
  return w
    .aggregate(count(), row('count'), { id: 'count' })
    .union(
      w.aggregate(sum((r: Rec) => r.v), row('sum'), { id: 'sum' }),
      w.aggregate(avg((r: Rec) => r.v), row('avg'), { id: 'avg' }),
      w.aggregate(maxBy((r: Rec) => r.v), (k, top, win) => row('maxBy')(k, top.map((r) => r.id).sort((a, b) => a - b), win), { id: 'maxBy' }),
      w.aggregate(parity, row('parity'), { id: 'parity' }),
      w.aggregate(collectAll<Rec>(), (k, all, win) => row('collect')(k, all.map((r) => r.id).sort((a, b) => a - b), win), { id: 'collect' }),
    );
}

const assignerArb: fc.Arbitrary<WindowAssigner> = fc.oneof(
  fc.record({ size: fc.integer({ min: 1, max: 25 }), offset: fc.integer({ min: 0, max: 30 }) }).map(({ size, offset }) => tumbling(size, offset)),
  fc
    .record({ slide: fc.integer({ min: 1, max: 10 }), factor: fc.integer({ min: 1, max: 4 }), offset: fc.integer({ min: 0, max: 12 }) })
    .map(({ slide, factor, offset }) => sliding(slide * factor, slide, offset)),
  fc.integer({ min: 1, max: 15 }).map((gap) => session(gap)),
);

const late = new OutputTag<Rec>('late');
const policyArb: fc.Arbitrary<LatePolicy<Rec>> = fc.oneof(
  fc.constant<LatePolicy<Rec>>({ policy: 'drop' }),
  fc.constant<LatePolicy<Rec>>({ policy: 'side-output', tag: late }),
  fc.constant<LatePolicy<Rec>>({ policy: 'dead-letter' }),
  fc
    .record({ allowedLateness: fc.integer({ min: 0, max: 30 }), beyond: fc.constantFrom<'drop' | 'side-output' | 'dead-letter'>('drop', 'side-output', 'dead-letter') })
    .map(({ allowedLateness, beyond }): LatePolicy<Rec> => ({
      policy: 'update',
      allowedLateness,
      beyond: beyond === 'side-output' ? { policy: 'side-output', tag: late } : { policy: beyond },
    })),
);

function build(sc: Scenario, assigner: WindowAssigner, policy: LatePolicy<Rec>) {
  return (p: Pipeline) => ({ rows: windows(p.source(scripted(sc.steps), { id: 'in', idleTimeout: 0 }), assigner, policy), dead: p.deadLetters() });
}

describe('windows under crashes: committed output equals an uninterrupted run', () => {
  it('on-time disordered input, every window kind and aggregate', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb({ maxRecords: 40, maxDisorder: 8 }), assignerArb, crashArb, async (sc, assigner, crash) => {
        const { expected } = await exactlyOnce(build(sc, assigner, { policy: 'drop' }), crash, coverage);
        // The input has records, so every aggregate produced rows (the check is not vacuous).
        if (sc.records.length > 0) expect(expected.output.rows.length).toBeGreaterThan(0);
      }),
      { seed: seed(7001), numRuns: RUNS },
    );
  });

  it('late records under every late-data policy (results, late side output, dead letters)', async () => {
    await fc.assert(
      fc.asyncProperty(
        scenarioArb({ maxRecords: 40, maxDisorder: 8, late: { maxCount: 6, maxBy: 25 } }),
        assignerArb,
        policyArb,
        crashArb,
        async (sc, assigner, policy, crash) => {
          await exactlyOnce(
            (p) => {
              const w = p
                .source(scripted(sc.steps), { id: 'in', idleTimeout: 0 })
                .keyBy((r) => r.k)
                .window(assigner)
                .onLate(policy);
              const rows = w.aggregate(collectAll<Rec>(), (k, all, win) => ({ k, start: win.start, end: win.end, late: win.late, ids: all.map((r) => r.id).sort((a, b) => a - b) }), { id: 'w' });
              const counts = w.aggregate(count(), (k, n, win) => ({ k, start: win.start, late: win.late, n }), { id: 'n' });
              return { rows, counts, late: rows.sideOutput(late), lateCounts: counts.sideOutput(late), dead: p.deadLetters() };
            },
            crash,
            coverage,
          );
        },
      ),
      { seed: seed(7002), numRuns: RUNS },
    );
  });

  it('chosen crash points of a tumbling count (each point of checkpoint 2 and recovery)', async () => {
    const sc: Rec[] = Array.from({ length: 60 }, (_, i) => ({ id: i, k: 'abc'[i % 3]!, v: i, t: i * 3, side: 0, late: false }));
    const steps = sc.flatMap((rec) => [{ kind: 'rec' as const, rec }, { kind: 'wm' as const, time: rec.t - 1 }]);
    const expected = new Map<string, number>();
    for (const r of sc) expected.set(`${r.k}@${Math.floor(r.t / 20) * 20}`, (expected.get(`${r.k}@${Math.floor(r.t / 20) * 20}`) ?? 0) + 1);
    for (const at of ['pre-commit', 'state-written', 'manifest-written', 'commit'] as const) {
      const { actual } = await exactlyOnce(
        (p) => p.source(scripted(steps), { id: 'in', idleTimeout: 0 }).keyBy((r) => r.k).window(tumbling(20)).aggregate(count(), { id: 'w' }),
        { seed: 1, crashes: 0, batchSize: 2, checkpointEvery: 3, storageDelay: 1 },
        coverage,
        { crashes: [{ at, checkpoint: 2 }, { at: 'commit', afterPolls: 0 }, { at: 'poll', afterPolls: 5 }] },
      );
      expect(actual.crashes.map((c) => c.at)).toEqual([at, 'commit', 'poll']);
      expect(actual.crashes[0]!.checkpoint).toBe(2);
      // Against a plain recount, too: the uninterrupted run itself is right.
      expect(new Map(actual.output.map((r) => [`${r.key}@${r.start}`, r.value]))).toEqual(expected);
    }
  });
});
