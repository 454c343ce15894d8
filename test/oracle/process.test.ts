/**
 * Randomized model tests of keyed process functions: value/map/list state, event-time timers
 * (registered, deleted, re-registered from onTimer), processing-time timers and state TTL on a
 * VirtualClock, each against a naive model, and each also with snapshot/restore failures at
 * random points (restored into fresh operators; outputs before and after must add up exactly).
 *
 * Semantics modelled (src/operators/keyed-process.ts, src/time/timer-queue.ts,
 * src/state/heap-backend.ts):
 * - an event timer at T fires at the first watermark advance to W >= T (a timer registered at or
 *   behind the current watermark fires at the next advance); timers of one key fire in time order;
 *   at most one timer per (key, time); a timer registered from onTimer at <= W fires in the same
 *   advance; the final watermark (+Infinity) fires everything.
 * - a processing timer at T fires when the clock, advanced by the harness, reaches T; onTimer then
 *   sees ctx.now() = ctx.timestamp = the clock.
 * - TTL: an entry written at time w (or read, with ttlRefreshOnRead) reads as absent from
 *   w + ttl on (expires <= now). List/map mutations count as writes.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Pipeline, listState, mapState, sum, valueState, type Stream } from '../../src/index.ts';
import { OperatorHarness, TestSource, type Timed, VirtualClock } from '../../src/testing/index.ts';
import { bag, byNumber, cutsArb, driveWithFailures, KEYS, mod, type Rec, scenarioArb, type Step } from './support.ts';

// ---------------------------------------------------------------------------------------------
// Event time: running sums, map and list state, timers that emit and clear
// ---------------------------------------------------------------------------------------------

type EventRow =
  | { readonly kind: 'el'; readonly key: string; readonly id: number; readonly sum: number; readonly n: number }
  | {
      readonly kind: 'fire';
      readonly key: string;
      readonly time: number;
      readonly domain: string;
      readonly sum: number;
      readonly hist: Array<[number, number]>;
      readonly items: number[];
    };

/** End of the 10 ms bucket of t: where a record's timer goes. */
const bucketEnd = (t: number): number => t - mod(t, 10) + 9;
const THRESHOLD = 40;
const CARRY_DELAY = 7;

function eventProcess(s: Stream<Rec>): Stream<EventRow> {
  return s
    .keyBy((r) => r.k)
    .state({ sum: valueState<number>(), hist: mapState<number, number>(), items: listState<number>() })
    .process<EventRow>(
      {
        onElement(r, ctx) {
          const total = (ctx.state.sum.get() ?? 0) + r.v;
          ctx.state.sum.set(total);
          const b = mod(r.v, 3);
          ctx.state.hist.set(b, (ctx.state.hist.get(b) ?? 0) + 1);
          ctx.state.items.add(r.id);
          ctx.emit({ kind: 'el', key: ctx.key, id: r.id, sum: total, n: ctx.state.items.get().length });
          const end = bucketEnd(r.t);
          // Some records cancel the timer of the previous bucket (if it has not fired yet).
          if (mod(r.v, 5) === 0) ctx.deleteEventTimer(end - 10);
          ctx.registerEventTimer(end);
        },
        onTimer(time, ctx) {
          const total = ctx.state.sum.get() ?? 0;
          ctx.emit({
            kind: 'fire',
            key: ctx.key,
            time,
            domain: ctx.timeDomain,
            sum: total,
            hist: [...ctx.state.hist.entries()].sort((a, b) => a[0] - b[0]),
            items: [...ctx.state.items.get()].sort(byNumber),
          });
          if (total > THRESHOLD) {
            // Carry the excess to a follow-up timer registered from onTimer.
            ctx.state.sum.set(total - THRESHOLD);
            ctx.registerEventTimer(time + CARRY_DELAY);
          } else {
            ctx.state.sum.clear();
            ctx.state.hist.clear();
            ctx.state.items.clear();
          }
        },
      },
      { id: 'proc' },
    );
}

interface EventKeyState {
  sum: number | undefined;
  hist: Map<number, number>;
  items: number[];
  timers: Set<number>;
}

function eventModel(steps: readonly Step[]): Array<Timed<EventRow>> {
  const keys = new Map<string, EventKeyState>();
  const out: Array<Timed<EventRow>> = [];
  const stateOf = (k: string): EventKeyState => {
    let st = keys.get(k);
    if (st === undefined) keys.set(k, (st = { sum: undefined, hist: new Map(), items: [], timers: new Set() }));
    return st;
  };
  let wm = -Infinity;
  const advance = (to: number): void => {
    if (!(to > wm)) return;
    wm = to;
    for (const [key, st] of keys) {
      for (;;) {
        const due = [...st.timers].filter((t) => t <= wm).sort(byNumber)[0];
        if (due === undefined) break;
        st.timers.delete(due);
        const total = st.sum ?? 0;
        out.push({
          value: { kind: 'fire', key, time: due, domain: 'event-time', sum: total, hist: [...st.hist].sort((a, b) => a[0] - b[0]), items: [...st.items].sort(byNumber) },
          time: due,
        });
        if (total > THRESHOLD) {
          st.sum = total - THRESHOLD;
          st.timers.add(due + CARRY_DELAY);
        } else {
          st.sum = undefined;
          st.hist = new Map();
          st.items = [];
        }
      }
    }
  };
  for (const s of steps) {
    if (s.kind === 'wm') {
      advance(s.time);
      continue;
    }
    const r = s.rec;
    const st = stateOf(r.k);
    st.sum = (st.sum ?? 0) + r.v;
    const b = mod(r.v, 3);
    st.hist.set(b, (st.hist.get(b) ?? 0) + 1);
    st.items.push(r.id);
    out.push({ value: { kind: 'el', key: r.k, id: r.id, sum: st.sum, n: st.items.length }, time: r.t });
    const end = bucketEnd(r.t);
    if (mod(r.v, 5) === 0) st.timers.delete(end - 10);
    st.timers.add(end);
  }
  advance(Infinity);
  return out;
}

const eventScenario = scenarioArb({ keys: 3, span: 80, maxRecords: 40, maxDisorder: 12, late: { maxCount: 6, maxBy: 15 } });
const timedBag = <O>(xs: ReadonlyArray<Timed<O>>): string[] => bag(xs.map((x) => [x.value, x.time]));

describe('keyed process function with event-time timers', () => {
  it('matches the model (TestSource + Pipeline.run)', async () => {
    await fc.assert(
      fc.asyncProperty(eventScenario, async (sc) => {
        const p = new Pipeline({ batchSize: [1, 3, 1024][sc.records.length % 3]!, parallelism: [1, 2, 3][sc.records.length % 3]! });
        const src = new TestSource<Rec>();
        for (const s of sc.steps) {
          if (s.kind === 'rec') src.record(s.rec, s.rec.t);
          else src.watermark(s.time);
        }
        const out = eventProcess(p.source(src.end(), { idleTimeout: 0 })).collect();
        await p.run();
        expect(timedBag(out.records)).toEqual(timedBag(eventModel(sc.steps)));
      }),
      { seed: 7001, numRuns: 500 },
    );
  });

  it('matches the model through OperatorHarness with snapshot/restore failures', () => {
    fc.assert(
      fc.property(eventScenario, cutsArb, (sc, cuts) => {
        const h = OperatorHarness.of<[Rec], EventRow>((s) => eventProcess(s));
        const caps = driveWithFailures(
          h,
          sc.steps,
          cuts,
          (x, s) => (s.kind === 'rec' ? x.push(s.rec, s.rec.t) : x.watermark(s.time)),
          (x) => x.output(),
        );
        expect(timedBag(caps.flat())).toEqual(timedBag(eventModel(sc.steps)));
        expect(h.deadLetters()).toEqual([]);
      }),
      { seed: 7002, numRuns: 1250 },
    );
  });

  it('KeyedStream.aggregate: running per-key sums in arrival order, with failures', () => {
    fc.assert(
      fc.property(eventScenario, cutsArb, (sc, cuts) => {
        const h = OperatorHarness.of<[Rec], { key: string; value: number }>((s) => s.keyBy((r) => r.k).aggregate(sum((r: Rec) => r.v), { id: 'agg' }));
        const caps = driveWithFailures(
          h,
          sc.steps,
          cuts,
          (x, s) => (s.kind === 'rec' ? x.push(s.rec, s.rec.t) : x.watermark(s.time)),
          (x) => x.output(),
        );
        const running = new Map<string, number>();
        const expected = sc.records.map((r) => {
          running.set(r.k, (running.get(r.k) ?? 0) + r.v);
          return { value: { key: r.k, value: running.get(r.k)! }, time: r.t };
        });
        expect(timedBag(caps.flat())).toEqual(timedBag(expected));
      }),
      { seed: 7003, numRuns: 750 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Processing time: timers and TTL on a virtual clock
// ---------------------------------------------------------------------------------------------

type Op = { readonly kind: 'rec'; readonly rec: Rec } | { readonly kind: 'adv'; readonly ms: number };

type PtRow =
  | {
      readonly kind: 'el';
      readonly key: string;
      readonly id: number;
      readonly prev: number | null;
      readonly c: number;
      readonly n: number;
      readonly now: number;
    }
  | {
      readonly kind: 'pt';
      readonly key: string;
      readonly time: number;
      readonly now: number;
      readonly domain: string;
      readonly last: number | null;
      readonly n: number;
      readonly size: number;
    };

const TTL_LAST = 50;
const TTL_SEEN = 30;
const TTL_LOG = 40;
const roundUp = (x: number, m: number): number => x + mod(-x, m);
const timerFor = (now: number, v: number): number => roundUp(now + 3 + mod(v, 17), 5);
const cancelFor = (now: number): number => roundUp(now + 10, 5);

function ptProcess(s: Stream<Rec>): Stream<PtRow> {
  return s
    .keyBy((r) => r.k)
    .state({
      last: valueState<number>({ ttl: TTL_LAST }),
      seen: mapState<number, number>({ ttl: TTL_SEEN, ttlRefreshOnRead: true }),
      log: listState<number>({ ttl: TTL_LOG }),
    })
    .process<PtRow>(
      {
        onElement(r, ctx) {
          const prev = ctx.state.last.get() ?? null;
          const tag = mod(r.v, 3);
          const c = ctx.state.seen.get(tag) ?? 0;
          const n = ctx.state.log.get().length;
          const now = ctx.now();
          ctx.emit({ kind: 'el', key: ctx.key, id: r.id, prev, c, n, now });
          ctx.state.last.set(r.v);
          ctx.state.seen.set(tag, c + 1);
          ctx.state.log.add(r.id);
          if (mod(r.v, 11) === 0) ctx.state.seen.delete(mod(r.v + 1, 3));
          if (mod(r.v, 2) === 0) ctx.registerProcessingTimer(timerFor(now, r.v));
          if (mod(r.v, 7) === 0) ctx.deleteProcessingTimer(cancelFor(now));
        },
        onTimer(time, ctx) {
          const n = ctx.state.log.get().length;
          ctx.emit({
            kind: 'pt',
            key: ctx.key,
            time,
            now: ctx.now(),
            domain: ctx.timeDomain,
            last: ctx.state.last.get() ?? null,
            n,
            size: ctx.state.seen.size(),
          });
          // A timer with a long log clears it and checks again 20 ms later.
          if (n > 2) {
            ctx.state.log.clear();
            ctx.registerProcessingTimer(time + 20);
          }
        },
      },
      { id: 'pt' },
    );
}

interface Entry<V> {
  value: V;
  expires: number;
}
interface PtKeyState {
  last?: Entry<number> | undefined;
  seen?: Entry<Map<number, number>> | undefined;
  log?: Entry<number[]> | undefined;
  timers: Set<number>;
}

function ptModel(ops: readonly Op[], start: number): Array<Timed<PtRow>> {
  let now = start;
  const keys = new Map<string, PtKeyState>();
  const out: Array<Timed<PtRow>> = [];
  const stateOf = (k: string): PtKeyState => {
    let st = keys.get(k);
    if (st === undefined) keys.set(k, (st = { timers: new Set() }));
    return st;
  };
  const alive = <V>(e: Entry<V> | undefined): e is Entry<V> => e !== undefined && e.expires > now;
  // Reads
  const readLast = (st: PtKeyState): number | null => (alive(st.last) ? st.last.value : null);
  const readSeen = (st: PtKeyState): Map<number, number> | undefined => {
    if (!alive(st.seen)) {
      st.seen = undefined;
      return undefined;
    }
    st.seen.expires = now + TTL_SEEN; // refresh on read
    return st.seen.value;
  };
  const readLog = (st: PtKeyState): number[] => (alive(st.log) ? st.log.value : []);
  const fire = (key: string, st: PtKeyState, time: number): void => {
    const n = readLog(st).length;
    out.push({
      value: { kind: 'pt', key, time, now, domain: 'processing-time', last: readLast(st), n, size: readSeen(st)?.size ?? 0 },
      time: now,
    });
    if (n > 2) {
      st.log = undefined;
      st.timers.add(time + 20);
    }
  };
  for (const op of ops) {
    if (op.kind === 'adv') {
      now += op.ms;
      for (const [key, st] of keys) {
        for (;;) {
          const due = [...st.timers].filter((t) => t <= now).sort(byNumber)[0];
          if (due === undefined) break;
          st.timers.delete(due);
          fire(key, st, due);
        }
      }
      continue;
    }
    const r = op.rec;
    const st = stateOf(r.k);
    const prev = readLast(st);
    const tag = mod(r.v, 3);
    const c = readSeen(st)?.get(tag) ?? 0;
    const n = readLog(st).length;
    out.push({ value: { kind: 'el', key: r.k, id: r.id, prev, c, n, now }, time: r.t });
    st.last = { value: r.v, expires: now + TTL_LAST };
    const seen = readSeen(st);
    if (seen === undefined) st.seen = { value: new Map([[tag, c + 1]]), expires: now + TTL_SEEN };
    else {
      seen.set(tag, c + 1);
      st.seen!.expires = now + TTL_SEEN;
    }
    st.log = alive(st.log) ? { value: [...st.log.value, r.id], expires: now + TTL_LOG } : { value: [r.id], expires: now + TTL_LOG };
    if (mod(r.v, 11) === 0) {
      // MapState.delete: a read (refreshing), then a write if the entry existed; an emptied map
      // disappears.
      const m = readSeen(st);
      if (m !== undefined && m.delete(mod(r.v + 1, 3))) {
        if (m.size === 0) st.seen = undefined;
        else st.seen!.expires = now + TTL_SEEN;
      }
    }
    if (mod(r.v, 2) === 0) st.timers.add(timerFor(now, r.v));
    if (mod(r.v, 7) === 0) st.timers.delete(cancelFor(now));
  }
  return out;
}

const opsArb: fc.Arbitrary<Op[]> = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: fc.record({ k: fc.integer({ min: 0, max: 2 }), v: fc.integer({ min: -20, max: 60 }) }) },
      { weight: 2, arbitrary: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 20, max: 70 })) },
    ),
    { maxLength: 50 },
  )
  .map((raw) => {
    let id = 0;
    return raw.map((x): Op => {
      if (typeof x === 'number') return { kind: 'adv', ms: x };
      const i = id++;
      return { kind: 'rec', rec: { id: i, k: KEYS[x.k]!, v: x.v, t: 1000 + i, side: 0, late: false } };
    });
  });

/** Runs ops through harnesses, failing (snapshot → restore into fresh operators) at the cuts. */
function runPt(ops: readonly Op[], cuts: readonly number[], start: number): Array<Timed<PtRow>> {
  const h0 = OperatorHarness.of<[Rec], PtRow>((s) => ptProcess(s), { clock: new VirtualClock(start) });
  // driveWithFailures speaks Steps; map ops onto it (an advance travels as a pseudo watermark).
  const steps: Step[] = ops.map((op) => (op.kind === 'rec' ? { kind: 'rec', rec: op.rec } : { kind: 'wm', time: op.ms }));
  const caps = driveWithFailures(
    h0,
    steps,
    cuts,
    (h, s) => (s.kind === 'rec' ? h.push(s.rec, s.rec.t) : h.advanceProcessingTime(s.time)),
    (h) => ({ out: h.output(), dead: h.deadLetters().length }),
    0, // no lost work: the clock is shared between the failed and the restored instance
  );
  expect(caps.map((c) => c.dead)).toEqual(caps.map(() => 0));
  return caps.flatMap((c) => c.out);
}

describe('processing-time timers and state TTL (VirtualClock)', () => {
  it('matches the model without failures', () => {
    fc.assert(
      fc.property(opsArb, fc.integer({ min: 0, max: 1000 }), (ops, start) => {
        expect(timedBag(runPt(ops, [], start))).toEqual(timedBag(ptModel(ops, start)));
      }),
      { seed: 8001, numRuns: 1000 },
    );
  });

  it('matches the model with snapshot/restore failures', () => {
    fc.assert(
      fc.property(opsArb, fc.integer({ min: 0, max: 1000 }), cutsArb, (ops, start, cuts) => {
        expect(timedBag(runPt(ops, cuts, start))).toEqual(timedBag(ptModel(ops, start)));
      }),
      { seed: 8002, numRuns: 1250 },
    );
  });

  it('the scenarios exercise expiry and timers (guard against a vacuous model)', () => {
    let expired = 0;
    let fired = 0;
    fc.assert(
      fc.property(opsArb, (ops) => {
        const rows = ptModel(ops, 0).map((x) => x.value);
        fired += rows.filter((r) => r.kind === 'pt').length;
        // A key that had a value but reads none: its entry expired.
        const seenKeys = new Set<string>();
        for (const r of rows) {
          if (r.kind !== 'el') continue;
          if (seenKeys.has(r.key) && r.prev === null) expired++;
          seenKeys.add(r.key);
        }
      }),
      { seed: 8003, numRuns: 600 },
    );
    expect(expired).toBeGreaterThan(100);
    expect(fired).toBeGreaterThan(200);
  });
});

// ---------------------------------------------------------------------------------------------
// The documented way of declaring state
// ---------------------------------------------------------------------------------------------

describe('state is declared with .state() before .process()', () => {
  it('the documented form counts per key', () => {
    const h = OperatorHarness.of<[Rec], number>((s) =>
      s
        .keyBy((r) => r.k)
        .state({ count: valueState<number>() })
        .process<number>({
          onElement(_r, ctx) {
            const n = (ctx.state.count.get() ?? 0) + 1;
            ctx.state.count.set(n);
            ctx.emit(n);
          },
        }),
    );
    for (const [i, k] of ['a', 'b', 'a'].entries()) h.push({ id: i, k, v: 0, t: i, side: 0, late: false }, i);
    expect(h.deadLetters()).toEqual([]);
    expect(h.values()).toEqual([1, 1, 2]);
  });

  it('a `state` field inside the process function is refused with a clear error (JavaScript callers)', () => {
    expect(() =>
      OperatorHarness.of<[Rec], number>((s) =>
        s.keyBy((r) => r.k).process<number>({ state: { count: valueState<number>() }, onElement() {} } as never),
      ),
    ).toThrow(/declare keyed state with \.state\(\{ \.\.\. \}\) before \.process\(\)/);
  });
});

