/**
 * Exactly-once of the keyed-stateful primitive under crashes: keyed process functions with value,
 * map and list state, event-time timers, processing-time timers and state with a TTL, and
 * running aggregates. Processing time comes from the input (each record carries the processing
 * time at which it arrives, see `pacedSource`), so timers and expiry replay exactly and the
 * committed output — timestamps included — must equal an uninterrupted run's.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { listState, mapState, sum, valueState } from '../../src/index.ts';
import { Coverage, crashArb, exactlyOnce, InputClock, KEYS, pacedSource, type Paced, type Rec, scenarioArb, scripted, runs, seed } from './support.ts';

const RUNS = runs(100);
const coverage = new Coverage();
afterAll(() => coverage.expectAll('keyed process'));

describe('keyed process functions under crashes', () => {
  it('value, map and list state with event-time timers, over disordered input with late records', async () => {
    await fc.assert(
      fc.asyncProperty(
        scenarioArb({ maxRecords: 40, maxDisorder: 8, late: { maxCount: 4, maxBy: 20 } }),
        fc.integer({ min: 1, max: 20 }),
        crashArb,
        async (sc, gap, crash) => {
          const { expected } = await exactlyOnce(
            (p) =>
              p
                .source(scripted(sc.steps), { id: 'in', idleTimeout: 0 })
                .keyBy((r) => r.k)
                .state({ total: valueState<number>(), byParity: mapState<string, number>(), ids: listState<number>() })
                .process<{ k: string; at: number; total: number; even: number; odd: number; ids: number[]; late: boolean }>(
                  {
                    onElement(r, ctx) {
                      ctx.state.total.set((ctx.state.total.get() ?? 0) + r.v);
                      const parity = r.v % 2 === 0 ? 'even' : 'odd';
                      ctx.state.byParity.set(parity, (ctx.state.byParity.get(parity) ?? 0) + 1);
                      ctx.state.ids.add(r.id);
                      // One timer per key and time: a session-like flush `gap` after each record.
                      ctx.registerEventTimer(r.t + gap);
                    },
                    onTimer(time, ctx) {
                      const ids = [...ctx.state.ids.get()].sort((a, b) => a - b);
                      if (ids.length === 0) return;
                      ctx.emit({
                        k: ctx.key,
                        at: time,
                        total: ctx.state.total.get() ?? 0,
                        even: ctx.state.byParity.get('even') ?? 0,
                        odd: ctx.state.byParity.get('odd') ?? 0,
                        ids,
                        late: time <= ctx.watermark - gap,
                      });
                      ctx.state.ids.clear();
                    },
                  },
                  { id: 'flush' },
                ),
            crash,
            coverage,
          );
          // Every record is flushed by some timer (at the latest at the end of input).
          const flushed = expected.output.flatMap((r) => r.ids).sort((a, b) => a - b);
          expect(flushed).toEqual(sc.records.map((r) => r.id).sort((a, b) => a - b));
        },
      ),
      { seed: seed(7101), numRuns: RUNS },
    );
  });

  it('running aggregates (keyBy().aggregate) emit one update per record, exactly once', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb({ maxRecords: 50, maxDisorder: 5 }), crashArb, async (sc, crash) => {
        const { expected } = await exactlyOnce(
          (p) => p.source(scripted(sc.steps), { id: 'in', idleTimeout: 0 }).keyBy((r) => r.k).aggregate(sum((r: Rec) => r.v), { id: 'running' }),
          crash,
          coverage,
        );
        expect(expected.output).toHaveLength(sc.records.length);
      }),
      { seed: seed(7102), numRuns: RUNS },
    );
  });
});

/** Random paced input: keys, values, event times with disorder, processing times that only grow. */
const pacedArb = fc
  .array(fc.record({ k: fc.integer({ min: 0, max: 3 }), v: fc.integer({ min: 0, max: 9 }), dt: fc.integer({ min: 0, max: 8 }), dp: fc.integer({ min: 0, max: 6 }) }), {
    maxLength: 60,
  })
  .map((raw) => {
    let t = 1000;
    let pt = 0;
    return raw.map((r, id): Paced<Rec> => {
      t += r.dt - 3; // event time wanders, with disorder
      pt += r.dp;
      return { value: { id, k: KEYS[r.k]!, v: r.v, t, side: 0, late: false }, time: t, ptime: pt };
    });
  });

describe('processing time under crashes (time driven by the input)', () => {
  it('processing-time timers fire once per registration, with the state they saw', async () => {
    await fc.assert(
      fc.asyncProperty(pacedArb, fc.integer({ min: 1, max: 15 }), crashArb, async (items, delay, crash) => {
        const clock = new InputClock();
        const { expected } = await exactlyOnce(
          (p) => {
            clock.time = 0;
            return p
              .source(pacedSource(items, clock, 10), { id: 'in', idleTimeout: 0 })
              .keyBy((r) => r.k)
              .state({ count: valueState<number>(), armed: valueState<number>() })
              .process<{ k: string; fired: number; count: number }>(
                {
                  onElement(_r, ctx) {
                    ctx.state.count.set((ctx.state.count.get() ?? 0) + 1);
                    if (ctx.state.armed.get() === undefined) {
                      const at = ctx.now() + delay;
                      ctx.state.armed.set(at);
                      ctx.registerProcessingTimer(at);
                    }
                  },
                  onTimer(time, ctx) {
                    ctx.emit({ k: ctx.key, fired: time, count: ctx.state.count.get() ?? 0 });
                    ctx.state.armed.clear();
                  },
                },
                { id: 'timeouts' },
              );
          },
          crash,
          coverage,
          { clock },
        );
        // Not vacuous: when some key's first timer is due before the input ends, timers fired.
        // (Processing time stands at the last record's, whose poll also ends the input: an ended
        // step fires no processing-time timers, so the last one that can fire is due by the
        // second-to-last record.)
        const first = new Map<string, number>();
        for (const it of items) if (!first.has(it.value.k)) first.set(it.value.k, it.ptime);
        const last = items.at(-2)?.ptime ?? -Infinity;
        if ([...first.values()].some((pt) => pt + delay <= last)) expect(expected.output.length).toBeGreaterThan(0);
      }),
      { seed: seed(7103), numRuns: RUNS },
    );
  });

  it('state with a TTL (value, map, list; refreshed on write or on read) expires at the same instants', async () => {
    await fc.assert(
      fc.asyncProperty(pacedArb, fc.integer({ min: 1, max: 20 }), fc.boolean(), crashArb, async (items, ttl, refreshOnRead, crash) => {
        const clock = new InputClock();
        await exactlyOnce(
          (p) => {
            clock.time = 0;
            return p
              .source(pacedSource(items, clock, 10), { id: 'in', idleTimeout: 0 })
              .keyBy((r) => r.k)
              .state({
                last: valueState<number>({ ttl, ttlRefreshOnRead: refreshOnRead }),
                seen: mapState<number, number>({ ttl }),
                recent: listState<number>({ ttl: ttl * 2 }),
              })
              .process<{ id: number; last: number | null; seen: number; recent: number[] }>(
                {
                  onElement(r, ctx) {
                    const last = ctx.state.last.get();
                    ctx.emit({ id: r.id, last: last ?? null, seen: ctx.state.seen.get(r.v) ?? 0, recent: [...ctx.state.recent.get()] });
                    ctx.state.last.set(r.id);
                    ctx.state.seen.set(r.v, (ctx.state.seen.get(r.v) ?? 0) + 1);
                    ctx.state.recent.add(r.id);
                  },
                },
                { id: 'ttl' },
              );
          },
          crash,
          coverage,
          { clock },
        );
      }),
      { seed: seed(7104), numRuns: RUNS },
    );
  });

  it('a restored TTL entry keeps its expiry: it does not get a fresh TTL from the restart', async () => {
    // Key 'a' is written at processing time 0 with a TTL of 50; checkpoint 1 holds it; the job
    // crashes once that checkpoint is complete and resumes; at time 60 the entry must be gone.
    const items: Array<Paced<Rec>> = [0, 10, 20, 30, 40, 50, 60, 70].map((pt, id) => ({
      value: { id, k: id === 0 || id === 6 ? 'a' : 'b', v: 0, t: 1000 + id, side: 0, late: false },
      time: 1000 + id,
      ptime: pt,
    }));
    const clock = new InputClock();
    const { actual } = await exactlyOnce(
      // The clock is not reset between runs: the restarted job restores at the time of the crash.
      (p) =>
        p
          .source(pacedSource(items, clock), { id: 'in', idleTimeout: 0 })
          .keyBy((r) => r.k)
          .state({ last: valueState<number>({ ttl: 50 }) })
          .process<string>(
            {
              onElement(r, ctx) {
                ctx.emit(`${r.id}:${ctx.key}:${ctx.state.last.get() ?? 'none'}`);
                ctx.state.last.set(r.id);
              },
            },
            { id: 'ttl' },
          ),
      { seed: 1, crashes: 0, batchSize: 1, checkpointEvery: 2, storageDelay: 0 },
      coverage,
      { crashes: [{ at: 'manifest-written', checkpoint: 1 }], clock },
    );
    expect(actual.crashes).toHaveLength(1);
    expect(actual.incarnations[1]!.restoredFrom).toBe(1);
    // The restart happened at processing time ≥ 10: a fresh TTL would keep 'a' past 60.
    expect(actual.output).toContain('6:a:none');
  });
});
