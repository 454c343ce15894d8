/**
 * Randomized oracle tests of joins: regular inner/left joins (with and without retention),
 * interval joins and window joins, on two disordered keyed inputs, against a naive recomputation
 * over all pairs; through TestSource + Pipeline.run and through a two-input OperatorHarness with
 * snapshot/restore failures at random points.
 *
 * Rules derived from src/join/joins.ts:
 *
 * - Regular join, no retention: every pair (l, r) with equal keys, once, emitted when the later of
 *   the two arrives (timestamp: the later one's). Left join: plus (l, undefined) for each left
 *   that never matched, at the end of input, timed max(l.t, last watermark + 1) so that it is not
 *   late downstream.
 *
 * - Regular join, retention R: a record with time t registers an event timer at t + R; when the
 *   watermark advances to W (watermarks only advance) timers <= W fire and evict every entry of
 *   the key with time + R <= W. So a record stays joinable until the first watermark ADVANCE to a
 *   value >= t + R after it arrived. Hence, with a the earlier-arriving record of a pair, b the
 *   later one, and W(x) the watermark in effect when x arrives:
 *
 *       (l, r) is emitted  ⇔  W(b) == W(a)  ∨  a.t + R > W(b)
 *
 *   (W(b) == W(a): no advance in between, which only matters for a record that arrived already
 *   behind t + R.) For on-time input (t > W at arrival) this is simply a.t + R > W(b). So it is
 *   the watermark, not |l.t - r.t|, that decides: a pair with a.t + R >= b.t is always emitted
 *   (W(b) < b.t), one with a.t + R <= W(b) never; in between it depends on how far the watermark
 *   had advanced. Left join with retention: (l, undefined) for each left with no emitted pair,
 *   when it is evicted or at the end of input.
 *
 * - Interval join [lower, upper]: a record with t <= W at arrival is late and dropped (counted in
 *   lateRecords and lateDropped); every pair of accepted records with
 *   l.t + lower <= r.t <= l.t + upper is emitted once, at max(l.t, r.t).
 *
 * - Window join: records of both sides with the same key in the same window; default late policy
 *   drop, so a record counts in the windows W with W.end - 1 > W(arrival). `apply` emits every
 *   pair (l, r) of a (key, window), `coGroup` one call per (key, window) with at least one record;
 *   rows at end - 1.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  Pipeline,
  count,
  session,
  sliding,
  tumbling,
  type SessionWindows,
  type SlidingWindows,
  type Stream,
  type TumblingWindows,
  type WindowAssigner,
} from '../../src/index.ts';
import { OperatorHarness, TestSource, type Timed } from '../../src/testing/index.ts';
import {
  bag,
  batchSessions,
  byNumber,
  cutsArb,
  driveWithFailures,
  groupBy,
  mod,
  type Rec,
  type Scenario,
  scenarioArb,
  type Step,
  watermarksBefore,
  windowStarts,
} from './support.ts';

// ---------------------------------------------------------------------------------------------
// Engine side
// ---------------------------------------------------------------------------------------------

interface Pair {
  readonly l: number;
  readonly r: number | null;
}
interface WinPair extends Pair {
  readonly start: number;
  readonly end: number;
}
interface CoGroupRow {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly ls: number[];
  readonly rs: number[];
}

type Build<O> = (l: Stream<Rec>, r: Stream<Rec>) => Stream<O>;
const keyOf = (x: Rec): string => x.k;

const innerJoin =
  (retention?: number): Build<Pair> =>
  (l, r) =>
    l.keyBy(keyOf).join(r.keyBy(keyOf), (a, b) => ({ l: a.id, r: b.id }), retention === undefined ? { id: 'j' } : { id: 'j', retention });
const leftJoin =
  (retention?: number): Build<Pair> =>
  (l, r) =>
    l
      .keyBy(keyOf)
      .leftJoin(r.keyBy(keyOf), (a, b) => ({ l: a.id, r: b === undefined ? null : b.id }), retention === undefined ? { id: 'j' } : { id: 'j', retention });
const intervalJoin =
  (lower: number, upper: number): Build<Pair> =>
  (l, r) =>
    l.keyBy(keyOf).intervalJoin(r.keyBy(keyOf), { lower, upper }, (a, b) => ({ l: a.id, r: b.id }), { id: 'j' });
const windowApply =
  (a: WindowAssigner): Build<WinPair> =>
  (l, r) =>
    l
      .keyBy(keyOf)
      .windowJoin(r.keyBy(keyOf), a)
      .apply((x, y, w) => ({ l: x.id, r: y.id, start: w.start, end: w.end }), { id: 'j' });
const windowCoGroup =
  (a: WindowAssigner): Build<CoGroupRow> =>
  (l, r) =>
    l
      .keyBy(keyOf)
      .windowJoin(r.keyBy(keyOf), a)
      .coGroup<CoGroupRow>(
        (key, ls, rs, w, out) =>
          out.emit({ key, start: w.start, end: w.end, ls: ls.map((x) => x.id).sort(byNumber), rs: rs.map((x) => x.id).sort(byNumber) }),
        { id: 'j' },
      );

function sourceOf(steps: readonly Step[], side: number): TestSource<Rec> {
  const src = new TestSource<Rec>();
  for (const s of steps) {
    if (s.kind === 'rec') {
      if (s.rec.side === side) src.record(s.rec, s.rec.t);
    } else src.watermark(s.time);
  }
  return src.end();
}

const batchSizeOf = (sc: Scenario): number => [1, 2, 3, 5, 8, 1024][sc.records.length % 6]!;
/** Instances of every step (in one thread): keyed exchanges, alignment and per-channel watermarks vary too. */
const parallelismOf = (sc: Scenario): number => [1, 2, 3, 4][sc.records.length % 4]!;

interface JoinRun<O> {
  readonly out: Array<Timed<O>>;
  readonly lateRecords: number;
  readonly lateDropped: number;
}

async function runPipeline<O>(sc: Scenario, build: Build<O>): Promise<JoinRun<O>> {
  const p = new Pipeline({ batchSize: batchSizeOf(sc), parallelism: parallelismOf(sc) });
  const out = build(p.source(sourceOf(sc.steps, 0), { idleTimeout: 0 }), p.source(sourceOf(sc.steps, 1), { idleTimeout: 0 })).collect();
  const res = await p.run();
  const m = res.metrics.find((x) => x.step === 'j')!;
  return { out: out.records.slice(), lateRecords: m.lateRecords, lateDropped: m.lateDropped };
}

function runHarness<O>(sc: Scenario, build: Build<O>, cuts: readonly number[]): JoinRun<O> {
  const h = OperatorHarness.of<[Rec, Rec], O>((l, r) => build(l, r));
  const caps = driveWithFailures(
    h,
    sc.steps,
    cuts,
    (x, s) => (s.kind === 'rec' ? x.pushTo(s.rec.side, s.rec, s.rec.t) : x.watermark(s.time)),
    (x) => ({ out: x.output(), m: x.stepMetrics('j') }),
  );
  return {
    out: caps.flatMap((c) => c.out),
    lateRecords: caps.reduce((n, c) => n + c.m.lateRecords, 0),
    lateDropped: caps.reduce((n, c) => n + c.m.lateDropped, 0),
  };
}

// ---------------------------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------------------------

interface Arrival {
  readonly rec: Rec;
  /** Position in the delivery. */
  readonly at: number;
  /** Watermark in effect when it arrived. */
  readonly wm: number;
}

function arrivals(steps: readonly Step[]): Arrival[] {
  const wms = watermarksBefore(steps);
  const out: Arrival[] = [];
  steps.forEach((s, at) => {
    if (s.kind === 'rec') out.push({ rec: s.rec, at, wm: wms[at]! });
  });
  return out;
}

/** Regular join pairs (see the file comment for the retention rule), timed at the later arrival. */
function regularPairs(steps: readonly Step[], retention: number | undefined): Array<Timed<Pair>> {
  const all = arrivals(steps);
  const lefts = all.filter((x) => x.rec.side === 0);
  const rights = all.filter((x) => x.rec.side === 1);
  const out: Array<Timed<Pair>> = [];
  for (const l of lefts) {
    for (const r of rights) {
      if (l.rec.k !== r.rec.k) continue;
      const [a, b] = l.at < r.at ? [l, r] : [r, l];
      const kept = retention === undefined || b.wm === a.wm || a.rec.t + retention > b.wm;
      if (kept) out.push({ value: { l: l.rec.id, r: r.rec.id }, time: b.rec.t });
    }
  }
  return out;
}

function leftJoinRows(steps: readonly Step[], retention: number | undefined): Array<Timed<Pair>> {
  const pairs = regularPairs(steps, retention);
  const matched = new Set(pairs.map((p) => p.value.l));
  // An unmatched left row is timed so that it is not behind the watermark downstream: at its
  // expiry l.t + R with retention, else (end of input) just after the last watermark.
  const lastWm = Math.max(-Infinity, ...steps.flatMap((s) => (s.kind === 'wm' ? [s.time] : [])));
  const unmatched = arrivals(steps)
    .filter((x) => x.rec.side === 0 && !matched.has(x.rec.id))
    .map((x): Timed<Pair> => ({
      value: { l: x.rec.id, r: null },
      time: retention !== undefined ? x.rec.t + retention : Math.max(x.rec.t, lastWm + 1),
    }));
  return [...pairs, ...unmatched];
}

function intervalPairs(steps: readonly Step[], lower: number, upper: number): { pairs: Array<Timed<Pair>>; late: number } {
  const all = arrivals(steps);
  const accepted = all.filter((x) => x.rec.t > x.wm).map((x) => x.rec);
  const out: Array<Timed<Pair>> = [];
  for (const l of accepted.filter((x) => x.side === 0)) {
    for (const r of accepted.filter((x) => x.side === 1)) {
      if (l.k === r.k && l.t + lower <= r.t && r.t <= l.t + upper) out.push({ value: { l: l.id, r: r.id }, time: Math.max(l.t, r.t) });
    }
  }
  return { pairs: out, late: all.length - accepted.length };
}

interface JoinGroup {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly ls: Rec[];
  readonly rs: Rec[];
}

/** Window-join groups: each record in its windows not fired when it arrived (drop policy). */
function windowGroups(steps: readonly Step[], a: WindowAssigner): { groups: JoinGroup[]; late: number } {
  const all = arrivals(steps);
  const groups = new Map<string, JoinGroup>();
  let late = 0;
  if (a.kind === 'session') {
    // Only used with on-time input: batch sessions over both sides together.
    for (const [key, list] of groupBy(all, (x) => x.rec.k)) {
      for (const s of batchSessions(
        list.map((x) => x.rec),
        a.gap,
      )) {
        groups.set(`${key}|${s.start}`, { key, start: s.start, end: s.end, ls: s.recs.filter((r) => r.side === 0), rs: s.recs.filter((r) => r.side === 1) });
      }
    }
    return { groups: [...groups.values()], late: 0 };
  }
  for (const { rec, wm } of all) {
    const ws = windowStarts(rec.t, a.size, a.slide, a.offset).filter((s) => s + a.size - 1 > wm);
    if (ws.length === 0) late++;
    for (const s of ws) {
      const id = `${rec.k}|${s}`;
      let g = groups.get(id);
      if (g === undefined) groups.set(id, (g = { key: rec.k, start: s, end: s + a.size, ls: [], rs: [] }));
      (rec.side === 0 ? g.ls : g.rs).push(rec);
    }
  }
  return { groups: [...groups.values()], late };
}

function applyRows(groups: readonly JoinGroup[]): Array<Timed<WinPair>> {
  return groups.flatMap((g) => g.ls.flatMap((l) => g.rs.map((r) => ({ value: { l: l.id, r: r.id, start: g.start, end: g.end }, time: g.end - 1 }))));
}

function coGroupRows(groups: readonly JoinGroup[]): Array<Timed<CoGroupRow>> {
  return groups.map((g) => ({
    value: { key: g.key, start: g.start, end: g.end, ls: g.ls.map((x) => x.id).sort(byNumber), rs: g.rs.map((x) => x.id).sort(byNumber) },
    time: g.end - 1,
  }));
}

const timedBag = <O>(xs: ReadonlyArray<Timed<O>>): string[] => bag(xs.map((x) => [x.value, x.time]));

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

const onTime = scenarioArb({ keys: 3, span: 60, maxRecords: 30, maxDisorder: 12, sides: 2 });
const withLate = scenarioArb({ keys: 3, span: 60, maxRecords: 30, maxDisorder: 8, sides: 2, late: { maxCount: 10, maxBy: 25 } });
const retentionArb = fc.integer({ min: 1, max: 30 });
const boundsArb = fc
  .tuple(fc.integer({ min: -15, max: 10 }), fc.integer({ min: 0, max: 20 }))
  .map(([lower, width]) => ({ lower, upper: lower + width }));
const WINDOWS: ReadonlyArray<TumblingWindows | SlidingWindows> = [tumbling(10), tumbling(7, 3), sliding(10, 4), sliding(12, 8, 3), sliding(6, 2, 1)];
const windowArb = fc.constantFrom(...WINDOWS);
const sessionArb: fc.Arbitrary<SessionWindows> = fc.integer({ min: 1, max: 12 }).map((g) => session(g));

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe('regular joins', () => {
  it('inner join = all equal-key pairs (TestSource + Pipeline.run)', async () => {
    await fc.assert(
      fc.asyncProperty(onTime, async (sc) => {
        const r = await runPipeline(sc, innerJoin());
        const expected = regularPairs(sc.steps, undefined);
        expect(bag(r.out.map((x) => x.value))).toEqual(bag(expected.map((x) => x.value)));
        // Which side arrives later depends on how the job polls the two sources: the pair's
        // timestamp is one of the two records' times.
        const time = new Map(sc.records.map((x) => [x.id, x.t]));
        for (const x of r.out) expect([time.get(x.value.l), time.get(x.value.r!)]).toContain(x.time);
      }),
      { seed: 4001, numRuns: 500 },
    );
  });

  it('left join = pairs + (l, undefined) for every left that never matched (TestSource + Pipeline.run)', async () => {
    await fc.assert(
      fc.asyncProperty(onTime, async (sc) => {
        const r = await runPipeline(sc, leftJoin());
        // Two sources are polled in turn, so which side of a pair arrives later (and times the
        // pair) is not the script's order; the unmatched rows' times are fixed.
        const expected = leftJoinRows(sc.steps, undefined);
        expect(bag(r.out.map((x) => x.value))).toEqual(bag(expected.map((x) => x.value)));
        expect(timedBag(r.out.filter((x) => x.value.r === null))).toEqual(timedBag(expected.filter((x) => x.value.r === null)));
      }),
      { seed: 4002, numRuns: 500 },
    );
  });

  it('inner and left join through OperatorHarness with failures (exact timestamps)', () => {
    fc.assert(
      fc.property(withLate, fc.boolean(), cutsArb, (sc, outer, cuts) => {
        const r = runHarness(sc, outer ? leftJoin() : innerJoin(), cuts);
        const expected = outer ? leftJoinRows(sc.steps, undefined) : regularPairs(sc.steps, undefined);
        expect(timedBag(r.out)).toEqual(timedBag(expected));
      }),
      { seed: 4003, numRuns: 1000 },
    );
  });

  it('inner join with retention: the derived eviction rule (OperatorHarness, failures, late records)', () => {
    fc.assert(
      fc.property(withLate, retentionArb, cutsArb, (sc, retention, cuts) => {
        const r = runHarness(sc, innerJoin(retention), cuts);
        expect(timedBag(r.out)).toEqual(timedBag(regularPairs(sc.steps, retention)));
      }),
      { seed: 4004, numRuns: 1000 },
    );
  });

  it('left join with retention: pairs by the rule, plus one (l, undefined) per left without a pair', () => {
    fc.assert(
      fc.property(withLate, retentionArb, cutsArb, (sc, retention, cuts) => {
        const r = runHarness(sc, leftJoin(retention), cuts);
        expect(timedBag(r.out)).toEqual(timedBag(leftJoinRows(sc.steps, retention)));
      }),
      { seed: 4005, numRuns: 1000 },
    );
  });

  it('retention really bounds the join (the rule is not vacuous): on-time pairs with a.t + R >= b.t are always kept, far ones dropped', () => {
    let dropped = 0;
    fc.assert(
      fc.property(onTime, retentionArb, (sc, retention) => {
        const r = runHarness(sc, innerJoin(retention), []);
        const got = new Set(r.out.map((x) => `${x.value.l}|${x.value.r}`));
        const all = arrivals(sc.steps);
        for (const l of all.filter((x) => x.rec.side === 0)) {
          for (const x of all.filter((y) => y.rec.side === 1 && y.rec.k === l.rec.k)) {
            const [a, b] = l.at < x.at ? [l, x] : [x, l];
            const id = `${l.rec.id}|${x.rec.id}`;
            if (a.rec.t + retention >= b.rec.t) expect(got.has(id)).toBe(true);
            if (a.rec.t + retention <= b.wm) expect(got.has(id)).toBe(false);
            if (!got.has(id)) dropped++;
          }
        }
      }),
      { seed: 4006, numRuns: 400 },
    );
    expect(dropped).toBeGreaterThan(100);
  });
});

describe('join output feeding event-time operators', () => {
  /**
   * A left join emits (l, undefined) when l leaves the state, after the join has forwarded
   * watermarks >= l.t: its timestamp must not be behind them, or a window after the join would
   * drop the row as late.
   */
  it('a tumbling window after a left join counts every row of the join', () => {
    fc.assert(
      fc.property(onTime, fc.option(retentionArb, { nil: undefined }), (sc, retention) => {
        const h = OperatorHarness.of<[Rec, Rec], { start: number; n: number }>((l, r) =>
          leftJoin(retention)(l, r)
            .keyBy(() => 'all')
            .window(tumbling(20))
            .aggregate(count(), (_k, n, w) => ({ start: w.start, n }), { id: 'win' }),
        );
        for (const s of sc.steps) {
          if (s.kind === 'rec') h.pushTo(s.rec.side, s.rec, s.rec.t);
          else h.watermark(s.time);
        }
        h.endInput();
        const perWindow = groupBy(leftJoinRows(sc.steps, retention), (x) => x.time - mod(x.time, 20));
        expect(bag(h.values())).toEqual(bag([...perWindow].map(([start, rows]) => ({ start, n: rows.length }))));
        expect(h.stepMetrics('win').lateRecords).toBe(0);
      }),
      { seed: 4010, numRuns: 750 },
    );
  });
});

describe('interval join', () => {
  it('pairs with l.t + lower <= r.t <= l.t + upper, at max(l.t, r.t) (TestSource + Pipeline.run)', async () => {
    await fc.assert(
      fc.asyncProperty(onTime, boundsArb, async (sc, b) => {
        const r = await runPipeline(sc, intervalJoin(b.lower, b.upper));
        expect(timedBag(r.out)).toEqual(timedBag(intervalPairs(sc.steps, b.lower, b.upper).pairs));
        expect(r.lateRecords).toBe(0);
      }),
      { seed: 5001, numRuns: 500 },
    );
  });

  it('through OperatorHarness with snapshot/restore failures (on-time input)', () => {
    fc.assert(
      fc.property(onTime, boundsArb, cutsArb, (sc, b, cuts) => {
        const r = runHarness(sc, intervalJoin(b.lower, b.upper), cuts);
        expect(timedBag(r.out)).toEqual(timedBag(intervalPairs(sc.steps, b.lower, b.upper).pairs));
      }),
      { seed: 5002, numRuns: 1000 },
    );
  });

  it('late records (t <= watermark) are dropped and counted (OperatorHarness, no failures)', () => {
    fc.assert(
      fc.property(withLate, boundsArb, (sc, b) => {
        const r = runHarness(sc, intervalJoin(b.lower, b.upper), []);
        const m = intervalPairs(sc.steps, b.lower, b.upper);
        expect(timedBag(r.out)).toEqual(timedBag(m.pairs));
        expect([r.lateRecords, r.lateDropped]).toEqual([m.late, m.late]);
      }),
      { seed: 5003, numRuns: 750 },
    );
  });

  /**
   * BUG (see report): KeyedProcessOperator does not snapshot its watermark, so right after a
   * restore it is -Infinity and the interval join accepts (and joins) records that the failed
   * instance would have dropped as late.
   */
  it('late records are judged the same after snapshot/restore', () => {
    fc.assert(
      fc.property(withLate, boundsArb, cutsArb, (sc, b, cuts) => {
        const r = runHarness(sc, intervalJoin(b.lower, b.upper), cuts);
        const m = intervalPairs(sc.steps, b.lower, b.upper);
        expect(timedBag(r.out)).toEqual(timedBag(m.pairs));
        expect([r.lateRecords, r.lateDropped]).toEqual([m.late, m.late]);
      }),
      { seed: 5004, numRuns: 750 },
    );
  });
});

describe('window join', () => {
  it('apply = pairs of the same key in the same window (TestSource + Pipeline.run)', async () => {
    await fc.assert(
      fc.asyncProperty(onTime, windowArb, async (sc, a) => {
        const r = await runPipeline(sc, windowApply(a));
        expect(timedBag(r.out)).toEqual(timedBag(applyRows(windowGroups(sc.steps, a).groups)));
      }),
      { seed: 6001, numRuns: 500 },
    );
  });

  it('coGroup = one call per key and window with both sides (TestSource + Pipeline.run, incl. sessions)', async () => {
    await fc.assert(
      fc.asyncProperty(onTime, fc.oneof(windowArb, sessionArb), async (sc, a) => {
        const r = await runPipeline(sc, windowCoGroup(a));
        expect(timedBag(r.out)).toEqual(timedBag(coGroupRows(windowGroups(sc.steps, a).groups)));
      }),
      { seed: 6002, numRuns: 500 },
    );
  });

  it('apply and coGroup through OperatorHarness with failures and late records (drop)', () => {
    fc.assert(
      fc.property(withLate, windowArb, fc.boolean(), cutsArb, (sc, a, co, cuts) => {
        const m = windowGroups(sc.steps, a);
        if (co) {
          const r = runHarness(sc, windowCoGroup(a), cuts);
          expect(timedBag(r.out)).toEqual(timedBag(coGroupRows(m.groups)));
          expect(r.lateDropped).toBe(m.late);
        } else {
          const r = runHarness(sc, windowApply(a), cuts);
          expect(timedBag(r.out)).toEqual(timedBag(applyRows(m.groups)));
          expect(r.lateDropped).toBe(m.late);
        }
      }),
      { seed: 6003, numRuns: 1000 },
    );
  });

  it('session coGroup through OperatorHarness with failures (on-time input)', () => {
    fc.assert(
      fc.property(onTime, sessionArb, cutsArb, (sc, a, cuts) => {
        const r = runHarness(sc, windowCoGroup(a), cuts);
        expect(timedBag(r.out)).toEqual(timedBag(coGroupRows(windowGroups(sc.steps, a).groups)));
      }),
      { seed: 6004, numRuns: 750 },
    );
  });
});
