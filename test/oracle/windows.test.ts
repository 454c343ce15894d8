/**
 * Randomized oracle tests of tumbling, sliding and session windows: Spate's streaming results,
 * under bounded disorder, late data and snapshot/restore failures, against a naive recomputation.
 *
 * Semantics checked (see src/window/assigners.ts): windows are half-open [start, end), starts
 * ≡ offset (mod slide); a window fires when the watermark reaches end - 1 and its rows carry
 * timestamp end - 1. A session of a record at t is [t, t + gap); sessions merge only when they
 * overlap. End of bounded input (watermark +Infinity) fires everything.
 *
 * Late data (policies of src/window/late-policy.ts), with wm the watermark when a record arrives:
 * - tumbling/sliding, policy drop/side-output/dead-letter: the record counts in each of its
 *   windows W with W.end - 1 > wm (not fired yet); if there is none it is rejected (counted in
 *   lateRecords and dropped / sent to the side output / dead-lettered).
 * - update with allowedLateness L: the record counts in each window W with W.end - 1 + L > wm;
 *   for each such W that already fired (W.end - 1 <= wm) the row of (key, W) is emitted again with
 *   window.late = true; a record with no such W is rejected (beyond policy). lateRecords counts
 *   records with at least one fired window.
 * - sessions under update: see sessionUpdateModel.
 * - sessions, policy drop/side-output/dead-letter: the operator keeps the records of sessions not
 *   fired yet; a record is rejected iff the session it would form with those records ends
 *   (end - 1) at or behind the watermark. Fired sessions are gone: a later record near one starts
 *   a new session (streaming model below, recomputed from scratch at every step).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  Pipeline,
  OutputTag,
  avg,
  collectAll,
  count,
  max,
  maxBy,
  min,
  reduce,
  session,
  sliding,
  sum,
  tumbling,
  type Aggregator,
  type DeadLetter,
  type LatePolicy,
  type SessionWindows,
  type SlidingWindows,
  type Stream,
  type StepMetrics,
  type TumblingWindows,
  type WindowAssigner,
  type WindowInfo,
} from '../../src/index.ts';
import { OperatorHarness, TestSource, type Timed } from '../../src/testing/index.ts';
import {
  bag,
  batchSessions,
  byNumber,
  cutsArb,
  driveWithFailures,
  groupBy,
  type Rec,
  type Scenario,
  scenarioArb,
  type Step,
  windowStarts,
} from './support.ts';

// ---------------------------------------------------------------------------------------------
// Rows and the engine side
// ---------------------------------------------------------------------------------------------

const ALL_AGGS = ['count', 'sum', 'min', 'max', 'avg', 'reduce', 'maxBy', 'user', 'process'] as const;
type AggName = (typeof ALL_AGGS)[number];
const SESSION_AGGS: readonly AggName[] = ALL_AGGS;

interface Row {
  readonly agg: string;
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly value: unknown;
  readonly late: boolean;
}

/** A user aggregator with a mutable accumulator: parity counts and sum of squares. */
interface ParityAcc {
  even: number;
  odd: number;
  sq: number;
}
const parity: Aggregator<Rec, ParityAcc, string> = {
  create: () => ({ even: 0, odd: 0, sq: 0 }),
  add: (a, r) => {
    if (r.v % 2 === 0) a.even++;
    else a.odd++;
    a.sq += r.v * r.v;
    return a;
  },
  merge: (a, b) => {
    a.even += b.even;
    a.odd += b.odd;
    a.sq += b.sq;
    return a;
  },
  result: (a) => `${a.even}/${a.odd}/${a.sq}`,
};

/**
 * One window step per aggregation (step id = aggregation name), unioned. With `tag`, each step's
 * late side output is mapped to rows `late:<agg>` (value = record id) and unioned in too.
 */
function windowRows(s: Stream<Rec>, assigner: WindowAssigner, policy: LatePolicy<Rec>, aggs: readonly AggName[], tag?: OutputTag<Rec>): Stream<Row> {
  const w = s.keyBy((r) => r.k).window(assigner).onLate(policy);
  const row =
    (agg: string) =>
    (key: string, value: unknown, win: WindowInfo): Row => ({ agg, key, start: win.start, end: win.end, value, late: win.late });
  const parts: Stream<Row>[] = [];
  for (const agg of aggs) {
    const id = { id: agg };
    let part: Stream<Row>;
    switch (agg) {
      case 'count':
        part = w.aggregate(count(), row(agg), id);
        break;
      case 'sum':
        part = w.aggregate(sum((r: Rec) => r.v), row(agg), id);
        break;
      case 'min':
        part = w.aggregate(min((r: Rec) => r.v), row(agg), id);
        break;
      case 'max':
        part = w.aggregate(max((r: Rec) => r.v), row(agg), id);
        break;
      case 'avg':
        part = w.aggregate(avg((r: Rec) => r.v), row(agg), id);
        break;
      case 'reduce':
        // A pure fold (new object per step); the result's v is the sum.
        part = w.aggregate(
          reduce<Rec>((x, y) => ({ ...x, v: x.v + y.v })),
          (key, r, win) => row(agg)(key, r.v, win),
          id,
        );
        break;
      case 'maxBy':
        part = w.aggregate(maxBy((r: Rec) => r.v), (key, rs, win) => row(agg)(key, rs.map((r) => r.id).sort(byNumber), win), id);
        break;
      case 'user':
        part = w.aggregate(parity, row(agg), id);
        break;
      case 'process':
        part = w.process<Row>(
          (key, els, win, out) => out.emit(row(agg)(key, els.map((e) => e.id).sort(byNumber), win)),
          id,
        );
        break;
    }
    parts.push(part);
    if (tag !== undefined) {
      parts.push(part.sideOutput(tag).map((r): Row => ({ agg: `late:${agg}`, key: r.k, start: 0, end: 0, value: r.id, late: true })));
    }
  }
  return parts[0]!.union(...parts.slice(1));
}

function sourceOf(steps: readonly Step[]): TestSource<Rec> {
  const src = new TestSource<Rec>();
  for (const s of steps) {
    if (s.kind === 'rec') src.record(s.rec, s.rec.t);
    else src.watermark(s.time);
  }
  return src.end();
}

/** What one run produced. */
interface RunResult {
  readonly out: Array<Timed<Row>>;
  readonly dead: DeadLetter[];
  readonly metrics: Map<string, { lateRecords: number; lateDropped: number; deadLetters: number }>;
}

function pickMetrics(all: readonly StepMetrics[], aggs: readonly AggName[]): RunResult['metrics'] {
  const m = new Map<string, { lateRecords: number; lateDropped: number; deadLetters: number }>();
  for (const agg of aggs) {
    const s = all.find((x) => x.step === agg);
    if (s === undefined) throw new Error(`no metrics for step ${agg}`);
    m.set(agg, { lateRecords: s.lateRecords, lateDropped: s.lateDropped, deadLetters: s.deadLetters });
  }
  return m;
}

/** Batch size of pipeline runs: derived from the scenario so that batch boundaries vary. */
const batchSizeOf = (sc: Scenario): number => [1, 2, 3, 5, 8, 1024][sc.records.length % 6]!;
/** Instances of every step (in one thread): keyed exchanges, alignment and per-channel watermarks vary too. */
const parallelismOf = (sc: Scenario): number => [1, 2, 3, 4][sc.records.length % 4]!;

async function runPipeline(sc: Scenario, assigner: WindowAssigner, policy: LatePolicy<Rec>, aggs: readonly AggName[], tag?: OutputTag<Rec>): Promise<RunResult> {
  const p = new Pipeline({ batchSize: batchSizeOf(sc), parallelism: parallelismOf(sc) });
  const out = windowRows(p.source(sourceOf(sc.steps), { idleTimeout: 0 }), assigner, policy, aggs, tag).collect();
  const dead = p.deadLetters().collect();
  const result = await p.run();
  return { out: out.records.slice(), dead: dead.values, metrics: pickMetrics(result.metrics, aggs) };
}

function runHarness(
  sc: Scenario,
  assigner: WindowAssigner,
  policy: LatePolicy<Rec>,
  aggs: readonly AggName[],
  cuts: readonly number[],
  tag?: OutputTag<Rec>,
): RunResult {
  const h = OperatorHarness.of<[Rec], Row>((s) => windowRows(s, assigner, policy, aggs, tag));
  const caps = driveWithFailures(
    h,
    sc.steps,
    cuts,
    (x, step) => (step.kind === 'rec' ? x.push(step.rec, step.rec.t) : x.watermark(step.time)),
    (x) => ({ out: x.output(), dead: x.deadLetters().slice(), metrics: pickMetrics(x.metrics(), aggs) }),
  );
  const metrics = new Map<string, { lateRecords: number; lateDropped: number; deadLetters: number }>();
  for (const agg of aggs) {
    const total = { lateRecords: 0, lateDropped: 0, deadLetters: 0 };
    for (const c of caps) {
      const m = c.metrics.get(agg)!;
      total.lateRecords += m.lateRecords;
      total.lateDropped += m.lateDropped;
      total.deadLetters += m.deadLetters;
    }
    metrics.set(agg, total);
  }
  return { out: caps.flatMap((c) => c.out), dead: caps.flatMap((c) => c.dead), metrics };
}

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

/** The records of one key in one window, as one emission (late = an update of a fired window). */
interface Group {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly recs: readonly Rec[];
  readonly late: boolean;
}

function starts(a: TumblingWindows | SlidingWindows, t: number): number[] {
  return windowStarts(t, a.size, a.slide, a.offset);
}

/** Batch recomputation: every (key, window) holding at least one record. */
function batchGroups(recs: readonly Rec[], a: WindowAssigner): Group[] {
  const out: Group[] = [];
  for (const [key, list] of groupBy(recs, (r) => r.k)) {
    if (a.kind === 'session') {
      for (const s of batchSessions(list, a.gap)) out.push({ key, start: s.start, end: s.end, recs: s.recs, late: false });
      continue;
    }
    const byStart = new Map<number, Rec[]>();
    for (const r of list) for (const s of starts(a, r.t)) byStart.set(s, [...(byStart.get(s) ?? []), r]);
    for (const [s, rs] of byStart) out.push({ key, start: s, end: s + a.size, recs: rs, late: false });
  }
  return out;
}

function aggValue(agg: AggName, recs: readonly Rec[]): unknown {
  const vs = recs.map((r) => r.v);
  const total = vs.reduce((x, y) => x + y, 0);
  switch (agg) {
    case 'count':
      return recs.length;
    case 'sum':
      return total;
    case 'min':
      return Math.min(...vs);
    case 'max':
      return Math.max(...vs);
    case 'avg':
      return total / vs.length;
    case 'reduce':
      return total;
    case 'maxBy': {
      const best = Math.max(...vs);
      return recs.filter((r) => r.v === best).map((r) => r.id).sort(byNumber);
    }
    case 'user': {
      const even = vs.filter((v) => Math.abs(v) % 2 === 0).length;
      return `${even}/${vs.length - even}/${vs.reduce((x, v) => x + v * v, 0)}`;
    }
    case 'process':
      return recs.map((r) => r.id).sort(byNumber);
  }
}

/** Expected output rows (with timestamps end - 1) of some groups. */
function expectedRows(groups: readonly Group[], aggs: readonly AggName[]): Array<Timed<Row>> {
  const out: Array<Timed<Row>> = [];
  for (const g of groups) {
    for (const agg of aggs) {
      out.push({ value: { agg, key: g.key, start: g.start, end: g.end, value: aggValue(agg, g.recs), late: g.late }, time: g.end - 1 });
    }
  }
  return out;
}

interface ModelResult {
  /** Every emission, in order. */
  readonly groups: Group[];
  readonly rejected: Rec[];
  readonly lateRecords: number;
  /** key|start → records counted in that window (all that arrived within the lateness). */
  readonly included: Map<string, { key: string; start: number; end: number; recs: Rec[] }>;
}

/** Streaming model of tumbling/sliding windows with a late policy (see the file comment). */
function slicedModel(steps: readonly Step[], a: TumblingWindows | SlidingWindows, lateness: number, updates: boolean): ModelResult {
  const L = updates ? lateness : 0;
  const windows = new Map<string, { key: string; start: number; end: number; recs: Rec[] }>();
  const groups: Group[] = [];
  const rejected: Rec[] = [];
  let lateRecords = 0;
  let wm = -Infinity;
  const advance = (to: number): void => {
    if (!(to > wm)) return;
    const fired = [...windows.values()].filter((w) => w.end - 1 > wm && w.end - 1 <= to);
    for (const w of fired) groups.push({ key: w.key, start: w.start, end: w.end, recs: [...w.recs], late: false });
    wm = to;
  };
  for (const s of steps) {
    if (s.kind === 'wm') {
      advance(s.time);
      continue;
    }
    const r = s.rec;
    const ws = starts(a, r.t).map((start) => ({ start, end: start + a.size }));
    const included = ws.filter((w) => w.end - 1 + L > wm);
    if (included.length === 0) {
      rejected.push(r);
      lateRecords++;
      continue;
    }
    if (updates && ws.some((w) => w.end - 1 <= wm)) lateRecords++;
    for (const w of included) {
      const id = `${r.k}|${w.start}`;
      let win = windows.get(id);
      if (win === undefined) windows.set(id, (win = { key: r.k, start: w.start, end: w.end, recs: [] }));
      win.recs.push(r);
      if (w.end - 1 <= wm) groups.push({ key: r.k, start: w.start, end: w.end, recs: [...win.recs], late: true });
    }
  }
  advance(Infinity);
  return { groups, rejected, lateRecords, included: windows };
}

/** Streaming model of session windows under drop / side-output / dead-letter. */
function sessionModel(steps: readonly Step[], gap: number): ModelResult {
  const pending = new Map<string, Rec[]>();
  const groups: Group[] = [];
  const rejected: Rec[] = [];
  let wm = -Infinity;
  const advance = (to: number): void => {
    if (!(to > wm)) return;
    wm = to;
    for (const [key, list] of pending) {
      const keep: Rec[] = [];
      for (const s of batchSessions(list, gap)) {
        if (s.end - 1 <= wm) groups.push({ key, start: s.start, end: s.end, recs: s.recs, late: false });
        else keep.push(...s.recs);
      }
      pending.set(key, keep);
    }
  };
  for (const s of steps) {
    if (s.kind === 'wm') {
      advance(s.time);
      continue;
    }
    const r = s.rec;
    const list = pending.get(r.k) ?? [];
    const mine = batchSessions([...list, r], gap).find((x) => x.recs.includes(r))!;
    if (mine.end - 1 <= wm) rejected.push(r);
    else pending.set(r.k, [...list, r]);
  }
  advance(Infinity);
  return { groups, rejected, lateRecords: rejected.length, included: new Map() };
}

/**
 * Streaming model of session windows under `update` with allowed lateness L. Per key, sessions
 * with their records and whether they fired. A record merges every session (fired or not) whose
 * range overlaps [t, t + gap); it is rejected iff the merged session's end - 1 + L <= watermark.
 * A merged session behind the watermark is emitted at once as an update (late = true); otherwise
 * it (re)fires normally when the watermark reaches end - 1. A fired session is kept until the
 * watermark reaches end - 1 + L.
 */
function sessionUpdateModel(steps: readonly Step[], gap: number, lateness: number): ModelResult {
  interface S {
    start: number;
    end: number;
    recs: Rec[];
    fired: boolean;
  }
  const byKey = new Map<string, S[]>();
  const groups: Group[] = [];
  const rejected: Rec[] = [];
  let lateRecords = 0;
  let wm = -Infinity;
  const advance = (to: number): void => {
    if (!(to > wm)) return;
    wm = to;
    for (const [key, list] of byKey) {
      for (const s of list) {
        if (!s.fired && s.end - 1 <= wm) {
          groups.push({ key, start: s.start, end: s.end, recs: [...s.recs], late: false });
          s.fired = true;
        }
      }
      byKey.set(
        key,
        list.filter((s) => !(s.fired && s.end - 1 + lateness <= wm)),
      );
    }
  };
  for (const step of steps) {
    if (step.kind === 'wm') {
      advance(step.time);
      continue;
    }
    const r = step.rec;
    const list = byKey.get(r.k) ?? [];
    const over = list.filter((s) => s.start < r.t + gap && r.t < s.end);
    const start = Math.min(r.t, ...over.map((s) => s.start));
    const end = Math.max(r.t + gap, ...over.map((s) => s.end));
    if (end - 1 + lateness <= wm) {
      rejected.push(r);
      lateRecords++;
      continue;
    }
    const merged: S = { start, end, recs: [...over.flatMap((s) => s.recs), r], fired: false };
    byKey.set(r.k, [...list.filter((s) => !over.includes(s)), merged]);
    if (end - 1 <= wm) {
      lateRecords++;
      groups.push({ key: r.k, start, end, recs: [...merged.recs], late: true });
      merged.fired = true;
    }
  }
  advance(Infinity);
  return { groups, rejected, lateRecords, included: new Map() };
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

const SLICED: ReadonlyArray<TumblingWindows | SlidingWindows> = [
  tumbling(10),
  tumbling(7, 3),
  tumbling(5, -2),
  sliding(10, 5),
  sliding(10, 4),
  sliding(12, 8, 3),
  sliding(9, 3, 1),
  sliding(15, 6, 4),
  sliding(7, 7),
  sliding(6, 1),
];
const slicedArb = fc.constantFrom(...SLICED);
const sessionArb = fc.integer({ min: 1, max: 15 }).map((gap) => session(gap));
const RUNS = 150;

const name = (a: WindowAssigner): string =>
  a.kind === 'session' ? `session(${a.gap})` : `${a.kind}(${a.size}, ${a.slide}, offset ${a.offset})`;

/** Asserts output rows equal the expected ones as a multiset, timestamps included. */
function expectRows(actual: ReadonlyArray<Timed<Row>>, expected: ReadonlyArray<Timed<Row>>): void {
  expect(bag(actual.map((r) => [r.value, r.time]))).toEqual(bag(expected.map((r) => [r.value, r.time])));
}

// ---------------------------------------------------------------------------------------------
// On-time data: streaming result == batch result
// ---------------------------------------------------------------------------------------------

const onTime = scenarioArb({ keys: 3, span: 60, maxRecords: 40, maxDisorder: 12 });

describe('windows vs batch oracle, disordered on-time input', () => {
  for (const a of SLICED) {
    it(`${name(a)}: count/sum/min/max/avg/reduce/maxBy/user/process, TestSource + Pipeline.run`, async () => {
      await fc.assert(
        fc.asyncProperty(onTime, async (sc) => {
          const r = await runPipeline(sc, a, { policy: 'drop' }, ALL_AGGS);
          expectRows(r.out, expectedRows(batchGroups(sc.records, a), ALL_AGGS));
          for (const m of r.metrics.values()) expect(m).toEqual({ lateRecords: 0, lateDropped: 0, deadLetters: 0 });
        }),
        { seed: 1001, numRuns: RUNS },
      );
    });
  }

  it('sliding and tumbling through OperatorHarness with snapshot/restore failures', () => {
    fc.assert(
      fc.property(onTime, slicedArb, cutsArb, (sc, a, cuts) => {
        const r = runHarness(sc, a, { policy: 'drop' }, ALL_AGGS, cuts);
        expectRows(r.out, expectedRows(batchGroups(sc.records, a), ALL_AGGS));
        for (const m of r.metrics.values()) expect(m.lateRecords).toBe(0);
      }),
      { seed: 1002, numRuns: 900 },
    );
  });

  it('session windows (random gaps): count and process, TestSource + Pipeline.run', async () => {
    await fc.assert(
      fc.asyncProperty(onTime, sessionArb, async (sc, a) => {
        const r = await runPipeline(sc, a, { policy: 'drop' }, SESSION_AGGS);
        expectRows(r.out, expectedRows(batchGroups(sc.records, a), SESSION_AGGS));
        for (const m of r.metrics.values()) expect(m.lateRecords).toBe(0);
      }),
      { seed: 1003, numRuns: 450 },
    );
  });

  it('session windows through OperatorHarness with snapshot/restore failures', () => {
    fc.assert(
      fc.property(onTime, sessionArb, cutsArb, (sc, a, cuts) => {
        const r = runHarness(sc, a, { policy: 'drop' }, SESSION_AGGS, cuts);
        expectRows(r.out, expectedRows(batchGroups(sc.records, a), SESSION_AGGS));
      }),
      { seed: 1004, numRuns: 900 },
    );
  });

  it('the generator really is on time: no watermark reaches a record still to come', () => {
    fc.assert(
      fc.property(onTime, (sc) => {
        let wm = -Infinity;
        for (const s of sc.steps) {
          if (s.kind === 'wm') wm = Math.max(wm, s.time);
          else expect(s.rec.t).toBeGreaterThan(wm);
        }
      }),
      { seed: 1005, numRuns: 200 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Late data
// ---------------------------------------------------------------------------------------------

const withLate = scenarioArb({ keys: 3, span: 60, maxRecords: 35, maxDisorder: 8, late: { maxCount: 12, maxBy: 25 } });
const LATE_AGGS: readonly AggName[] = ['count', 'sum', 'process'];
const tag = new OutputTag<Rec>('late');
const rejectedIds = (m: ModelResult): number[] => m.rejected.map((r) => r.id).sort(byNumber);
const lateRowIds = (out: ReadonlyArray<Timed<Row>>, agg: string): Array<[number, number]> =>
  out
    .filter((r) => r.value.agg === `late:${agg}`)
    .map((r): [number, number] => [r.value.value as number, r.time])
    .sort((x, y) => x[0] - y[0]);

type Driver = 'pipeline' | 'harness';
const DRIVERS: readonly Driver[] = ['pipeline', 'harness'];

async function run(driver: Driver, sc: Scenario, a: WindowAssigner, policy: LatePolicy<Rec>, aggs: readonly AggName[], cuts: readonly number[], t?: OutputTag<Rec>): Promise<RunResult> {
  return driver === 'pipeline' ? runPipeline(sc, a, policy, aggs, t) : runHarness(sc, a, policy, aggs, cuts, t);
}

describe('late data', () => {
  for (const driver of DRIVERS) {
    it(`drop (${driver}): results over on-time records only; lateRecords/lateDropped count the rest`, async () => {
      await fc.assert(
        fc.asyncProperty(withLate, fc.oneof(slicedArb, sessionArb), cutsArb, async (sc, a, cuts) => {
          const aggs = a.kind === 'session' ? SESSION_AGGS : LATE_AGGS;
          const model = a.kind === 'session' ? sessionModel(sc.steps, a.gap) : slicedModel(sc.steps, a, 0, false);
          const r = await run(driver, sc, a, { policy: 'drop' }, aggs, cuts);
          expectRows(r.out, expectedRows(model.groups, aggs));
          for (const agg of aggs) {
            expect(r.metrics.get(agg)).toEqual({ lateRecords: model.rejected.length, lateDropped: model.rejected.length, deadLetters: 0 });
          }
        }),
        { seed: 2001, numRuns: 450 },
      );
    });

    it(`side-output (${driver}): rejected records appear on the side output, once per step`, async () => {
      await fc.assert(
        fc.asyncProperty(withLate, fc.oneof(slicedArb, sessionArb), cutsArb, async (sc, a, cuts) => {
          const aggs = a.kind === 'session' ? SESSION_AGGS : LATE_AGGS;
          const model = a.kind === 'session' ? sessionModel(sc.steps, a.gap) : slicedModel(sc.steps, a, 0, false);
          const r = await run(driver, sc, a, { policy: 'side-output', tag }, aggs, cuts, tag);
          expectRows(
            r.out.filter((x) => !x.value.agg.startsWith('late:')),
            expectedRows(model.groups, aggs),
          );
          for (const agg of aggs) {
            // The side output carries the record with its own timestamp.
            expect(lateRowIds(r.out, agg)).toEqual(model.rejected.map((x): [number, number] => [x.id, x.t]).sort((x, y) => x[0] - y[0]));
            expect(r.metrics.get(agg)).toEqual({ lateRecords: model.rejected.length, lateDropped: 0, deadLetters: 0 });
          }
        }),
        { seed: 2002, numRuns: 450 },
      );
    });

    it(`dead-letter (${driver}): rejected records are dead letters of each window step`, async () => {
      await fc.assert(
        fc.asyncProperty(withLate, fc.oneof(slicedArb, sessionArb), cutsArb, async (sc, a, cuts) => {
          const aggs = a.kind === 'session' ? SESSION_AGGS : LATE_AGGS;
          const model = a.kind === 'session' ? sessionModel(sc.steps, a.gap) : slicedModel(sc.steps, a, 0, false);
          const r = await run(driver, sc, a, { policy: 'dead-letter' }, aggs, cuts);
          expectRows(r.out, expectedRows(model.groups, aggs));
          for (const agg of aggs) {
            const letters = r.dead.filter((d) => d.step === agg);
            expect(letters.map((d) => [(d.record as Rec).id, d.time]).sort((x, y) => (x[0] as number) - (y[0] as number))).toEqual(
              model.rejected.map((x) => [x.id, x.t]).sort((x, y) => x[0]! - y[0]!),
            );
            expect(r.metrics.get(agg)).toEqual({ lateRecords: model.rejected.length, lateDropped: 0, deadLetters: model.rejected.length });
          }
          expect(r.dead.length).toBe(model.rejected.length * aggs.length);
        }),
        { seed: 2003, numRuns: 450 },
      );
    });

    it(`update with allowedLateness (${driver}): every emission, the last row per (key, window), metrics and the beyond policy match the oracle`, async () => {
      await fc.assert(
        fc.asyncProperty(
          withLate,
          fc.oneof(slicedArb, sessionArb),
          fc.integer({ min: 0, max: 20 }),
          fc.constantFrom('drop', 'side-output', 'dead-letter'),
          cutsArb,
          async (sc, a, lateness, beyond, cuts) => {
            const policy: LatePolicy<Rec> =
              beyond === 'drop'
                ? { policy: 'update', allowedLateness: lateness }
                : { policy: 'update', allowedLateness: lateness, beyond: beyond === 'side-output' ? { policy: 'side-output', tag } : { policy: 'dead-letter' } };
            const aggs = a.kind === 'session' ? LATE_AGGS : ALL_AGGS;
            const model = a.kind === 'session' ? sessionUpdateModel(sc.steps, a.gap, lateness) : slicedModel(sc.steps, a, lateness, true);
            const r = await run(driver, sc, a, policy, aggs, cuts, beyond === 'side-output' ? tag : undefined);
            const main = r.out.filter((x) => !x.value.agg.startsWith('late:'));
            // Every emission (first firings with late = false, updates with late = true).
            expectRows(main, expectedRows(model.groups, aggs));
            for (const agg of aggs) {
              if (a.kind !== 'session') {
                // The final row per (key, window) is the batch result over all records that
                // arrived within the allowed lateness.
                const last = new Map<string, Timed<Row>>();
                for (const x of main) if (x.value.agg === agg) last.set(`${x.value.key}|${x.value.start}`, x);
                const expected = [...model.included.values()].map((w) => ({ key: w.key, start: w.start, end: w.end, recs: w.recs, late: false }));
                expect(bag([...last.values()].map((x) => [x.value.key, x.value.start, x.value.end, x.value.value, x.time]))).toEqual(
                  bag(expectedRows(expected, [agg]).map((x) => [x.value.key, x.value.start, x.value.end, x.value.value, x.time])),
                );
              }
              const n = model.rejected.length;
              expect(r.metrics.get(agg)).toEqual({
                lateRecords: model.lateRecords,
                lateDropped: beyond === 'drop' ? n : 0,
                deadLetters: beyond === 'dead-letter' ? n : 0,
              });
              if (beyond === 'side-output') expect(lateRowIds(r.out, agg).map((x) => x[0])).toEqual(rejectedIds(model));
              if (beyond === 'dead-letter') {
                expect(r.dead.filter((d) => d.step === agg).map((d) => (d.record as Rec).id).sort(byNumber)).toEqual(rejectedIds(model));
              }
            }
            // Updates are flagged late, first firings are not.
            expect(main.filter((x) => x.value.late).length).toBe(model.groups.filter((g) => g.late).length * aggs.length);
          },
        ),
        { seed: 2004, numRuns: 450 },
      );
    });
  }

  it('the late generator produces records behind the watermark, of every kind', () => {
    // Guards against a generator that silently stops producing late data.
    let rejected = 0;
    let partial = 0;
    fc.assert(
      fc.property(withLate, (sc) => {
        const m = slicedModel(sc.steps, sliding(10, 4) as SlidingWindows, 0, false);
        rejected += m.rejected.length;
        partial += sc.records.filter((r) => r.late).length - m.rejected.length;
      }),
      { seed: 2005, numRuns: 100 },
    );
    expect(rejected).toBeGreaterThan(50);
    expect(partial).toBeGreaterThan(20);
  });
});

// ---------------------------------------------------------------------------------------------
// Results must not change after they were emitted
// ---------------------------------------------------------------------------------------------

describe('emitted window results are values, not live state', () => {
  /**
   * BUG (see report): under the `update` policy a tumbling window's row is built from the pane's
   * live accumulator (SlicedWindowOperator.fireWindow, pane === size) and a session's from the
   * session's (SessionWindowOperator.emit); `collectAll()` (and any aggregator whose result is
   * part of its accumulator, such as `maxBy`) hands that array out, and a later late record
   * pushed into the accumulator rewrites rows that were already emitted.
   */
  it('aggregate(collectAll()) rows under update keep the content they were emitted with (tumbling, session)', () => {
    fc.assert(
      fc.property(withLate, fc.oneof(fc.constant(tumbling(10)), sessionArb), fc.integer({ min: 1, max: 20 }), (sc, a, lateness) => {
        const h = OperatorHarness.of<[Rec], { key: string; start: number; end: number; recs: readonly Rec[] }>((s) =>
          s
            .keyBy((r) => r.k)
            .window(a)
            .onLate({ policy: 'update', allowedLateness: lateness })
            .aggregate(collectAll<Rec>(), (key, recs, w) => ({ key, start: w.start, end: w.end, recs })),
        );
        for (const s of sc.steps) {
          if (s.kind === 'rec') h.push(s.rec, s.rec.t);
          else h.watermark(s.time);
        }
        h.endInput();
        const model = a.kind === 'session' ? sessionUpdateModel(sc.steps, a.gap, lateness) : slicedModel(sc.steps, a, lateness, true);
        expect(bag(h.values().map((x) => [x.key, x.start, x.end, x.recs.map((r) => r.id).sort(byNumber)]))).toEqual(
          bag(model.groups.map((g) => [g.key, g.start, g.end, g.recs.map((r) => r.id).sort(byNumber)])),
        );
      }),
      { seed: 3001, numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Non-integer timestamps
// ---------------------------------------------------------------------------------------------

describe('fractional event times', () => {
  /**
   * Event times are whole milliseconds: sources truncate fractional record times, and a
   * fractional watermark W only closes the milliseconds before floor(W) (a record at
   * floor(W) + 0.5 > W may still come). So no on-time record is ever dropped, and the result is
   * the batch result over the truncated times.
   *
   * The scenarios are the integer ones halved: times t / 2, watermarks w / 2 + 0.25. Since every
   * record still to come had t >= w + 1, it has t / 2 >= w / 2 + 0.5 > w / 2 + 0.25: the input is
   * on time.
   */
  it('on-time records with half-millisecond times are never dropped (tumbling, sliding, session)', () => {
    const half = (sc: Scenario): Scenario => {
      const steps = sc.steps.map((s): Step => (s.kind === 'rec' ? { kind: 'rec', rec: { ...s.rec, t: s.rec.t / 2 } } : { kind: 'wm', time: s.time / 2 + 0.25 }));
      return { D: sc.D / 2, steps, records: steps.flatMap((s) => (s.kind === 'rec' ? [s.rec] : [])) };
    };
    fc.assert(
      fc.property(onTime.map(half), fc.oneof(slicedArb, sessionArb), (sc, a) => {
        const r = runHarness(sc, a, { policy: 'drop' }, ['count', 'process'], []);
        const truncated = sc.records.map((rec) => ({ ...rec, t: Math.floor(rec.t) }));
        expectRows(r.out, expectedRows(batchGroups(truncated, a), ['count', 'process']));
        expect(r.metrics.get('count')!.lateRecords).toBe(0);
      }),
      { seed: 3101, numRuns: 300 },
    );
  });
});
