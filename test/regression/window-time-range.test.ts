// Regression tests: event times too large for exact window arithmetic, window lengths that are
// not whole milliseconds, and zero-length sessions. The comments describe what went wrong.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { count, session, sliding, tumbling, type WindowResult } from '../../src/index.ts';
import { OperatorHarness } from '../../src/testing/index.ts';
import { maxWindowTime, type WindowAssigner } from '../../src/window/assigners.ts';

const fixture = fileURLToPath(new URL('./fixtures/window-time-range.ts', import.meta.url));
const NS = 1.7e18; // 2023 as nanoseconds, read as milliseconds

interface Outcome {
  readonly out?: unknown[];
  readonly dead?: Array<{ step: string; error: string; time: number }>;
  readonly error?: string;
}

/** Runs the fixture in a child process: 5 s, 512 MB heap; a hang is killed and fails the test. */
function runFixture(kind: string, time = NS): Outcome {
  const r = spawnSync(process.execPath, ['--max-old-space-size=512', '--import', 'tsx', fixture, kind, String(time)], {
    encoding: 'utf8',
    timeout: 5_000,
    killSignal: 'SIGKILL',
  });
  expect(r.signal, `still running after 5 s; stderr: ${r.stderr}`).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Outcome;
}

const outOfRange = (time: string) => new RegExp(`event time ${time} .*out of range`);

describe('an event time beyond exact window arithmetic (a nanosecond timestamp) is a dead letter', () => {
  it('tumbling: no endless firing loop', () => {
    // At 1.7e18 doubles are 256 apart: window end = start + 10 = start, and the firing loop's
    // nextEnd = end + slide never moved, emitting the same empty-length window forever.
    const r = runFixture('tumbling');
    expect(r.out).toEqual([
      { key: 'a', start: 0, end: 10, value: 1 },
      { key: 'b', start: 0, end: 10, value: 1 },
    ]);
    expect(r.dead).toHaveLength(1);
    expect(r.dead![0]!.error).toMatch(outOfRange('1700000000000000000'));
    expect(r.dead![0]!.error).toMatch(/nanoseconds/);
    // Beyond 2^53 the source itself refuses the time (milliseconds are inexact there); times the
    // source accepts but a window cannot compute with are refused by the window (tests below).
    expect(r.dead![0]!.step).toBe('source-1');
  });

  it('tumbling: also for a huge negative time', () => {
    const r = runFixture('tumbling', -NS);
    expect(r.out).toHaveLength(2);
    expect(r.dead!.map((d) => d.error)).toEqual([expect.stringMatching(outOfRange('-1700000000000000000'))]);
  });

  it('sliding: no silent endless loop', () => {
    // Same loop, but the window [start, start) held no pane: nothing was emitted, the job spun
    // at 100% CPU without a sign.
    const r = runFixture('sliding');
    expect(r.out).toHaveLength(4);
    expect(r.dead!.map((d) => d.error)).toEqual([expect.stringMatching(outOfRange('1700000000000000000'))]);
  });

  it('window join: a huge time on either input', () => {
    const r = runFixture('join');
    expect(r.out).toEqual([]);
    expect(r.dead!.map((d) => d.error)).toEqual([expect.stringMatching(outOfRange('1700000000000000000'))]);
  });

  it('session: no zero-length session', () => {
    // t + gap === t: the session [t, t) was emitted as a result.
    const r = runFixture('session');
    expect(r.out).toEqual([
      { key: 'a', start: 5, end: 15, value: 1 },
      { key: 'b', start: 7, end: 17, value: 1 },
    ]);
    expect(r.dead!.map((d) => d.error)).toEqual([expect.stringMatching(outOfRange('1700000000000000000'))]);
  });

  it('a hand-built assigner with a NaN slide is refused, not spun on', () => {
    // gcd(10, NaN) looped forever while the job was being created.
    const r = runFixture('literal-nan-slide', 5);
    expect(r.error).toMatch(/slide must be a whole number of milliseconds .*got NaN/);
  });

  it('a hand-built assigner with a fractional size is refused', () => {
    const r = runFixture('literal-fractional-size', 5);
    expect(r.error).toMatch(/size must be a whole number of milliseconds .*got 10\.5/);
  });

  it('a hand-built assigner with an offset beyond its slide is refused', () => {
    // t - offset left the exact range for times the limit accepts.
    const r = runFixture('literal-large-offset', 5);
    expect(r.error).toMatch(/tumbling window offset \(1000000000000000\) must be less than its slide \(10\) in magnitude/);
  });
});

type Row = WindowResult<string, number>;
const ev = { k: 'a' };
const counting = (assigner: WindowAssigner) =>
  OperatorHarness.of<[{ k: string }], Row>((s) => s.keyBy((e) => e.k).window(assigner).aggregate(count()));

describe('times below 2^53 whose windows would end beyond it', () => {
  it('tumbling: a record at Number.MAX_SAFE_INTEGER is a dead letter, not a window with an inexact end', () => {
    // The record was accepted: its window ended at 2^53 + 8 and its results carried
    // timestamp end - 1 = 2^53 + 7, which a double cannot hold.
    const h = counting(tumbling(10));
    h.push(ev, Number.MAX_SAFE_INTEGER);
    h.endInput();
    expect(h.values()).toEqual([]);
    expect(h.deadLetters().map((d) => d.error)).toEqual([expect.stringMatching(outOfRange(String(Number.MAX_SAFE_INTEGER)))]);
  });

  it('sliding: the same for the last window of the pane', () => {
    const h = counting(sliding(10, 5));
    h.push(ev, Number.MAX_SAFE_INTEGER - 3);
    h.endInput();
    expect(h.values()).toEqual([]);
    expect(h.deadLetters()).toHaveLength(1);
  });

  it('session: the same for the session end', () => {
    const h = counting(session(10));
    h.push(ev, Number.MAX_SAFE_INTEGER - 3);
    h.endInput();
    expect(h.values()).toEqual([]);
    expect(h.deadLetters()).toHaveLength(1);
  });
});

describe('the limit, maxWindowTime', () => {
  it('accepts a time at the limit with exact windows, and dead-letters one past it', () => {
    for (const assigner of [tumbling(10, 3), sliding(10, 4, 1), session(7)]) {
      const limit = maxWindowTime(assigner);
      for (const sign of [1, -1]) {
        const h = counting(assigner);
        h.push(ev, sign * limit);
        h.push(ev, sign * (limit + 1));
        h.endInput();
        expect(h.deadLetters().map((d) => d.time)).toEqual([sign * (limit + 1)]);
        expect(h.values().length).toBeGreaterThan(0);
        for (const w of h.values()) {
          expect(Number.isSafeInteger(w.start) && Number.isSafeInteger(w.end)).toBe(true);
          expect(w.start <= sign * limit && sign * limit < w.end).toBe(true);
          expect(w.end - w.start).toBe(assigner.kind === 'session' ? assigner.gap : assigner.size);
          expect(w.value).toBe(1);
        }
      }
    }
  });

  it('leaves room for size + slide + pane, and is far beyond any millisecond timestamp', () => {
    expect(maxWindowTime(tumbling(10_000))).toBe(Number.MAX_SAFE_INTEGER - 30_000);
    expect(maxWindowTime(sliding(10_000, 2_000))).toBe(Number.MAX_SAFE_INTEGER - 14_000);
    expect(maxWindowTime(session(10_000))).toBe(Number.MAX_SAFE_INTEGER - 10_000);
    expect(maxWindowTime(sliding(2 ** 50, 2 ** 50))).toBeGreaterThan(5e15); // year 160 000
  });
});

describe('window lengths must be whole milliseconds', () => {
  it('rejects fractional, non-positive, non-finite and absurd sizes, slides, gaps and offsets, naming them', () => {
    // A fractional slide made panes of gcd(10, 0.3) ≈ 1e-16 ms and the firing loop spun; a
    // fractional or tiny gap made sessions [t, t + 1e-9) that are [t, t) in doubles; a NaN
    // offset put every record in pane NaN, which fired forever.
    expect(() => tumbling(10.5)).toThrow(/tumbling window size must be a whole number of milliseconds .*got 10\.5/);
    expect(() => tumbling(0)).toThrow(/tumbling window size .*got 0/);
    expect(() => tumbling(10, NaN)).toThrow(/tumbling window offset must be a whole number of milliseconds, got NaN/);
    expect(() => tumbling(10, 2.5)).toThrow(/offset .*got 2\.5/);
    expect(() => tumbling(2 ** 60)).toThrow(/tumbling window size .*from 1 to 1125899906842624 \(2\^50\), got 1152921504606847000/);
    expect(() => sliding(10, 0.3)).toThrow(/sliding window slide must be a whole number .*got 0\.3/);
    expect(() => sliding(10.5, 5)).toThrow(/sliding window size .*got 10\.5/);
    expect(() => sliding(10, -5)).toThrow(/sliding window slide .*got -5/);
    expect(() => sliding(10, 5, Infinity)).toThrow(/sliding window offset .*got Infinity/);
    expect(() => session(0.5)).toThrow(/session gap must be a whole number of milliseconds .*got 0\.5/);
    expect(() => session(1e-9)).toThrow(/session gap .*got 1e-9/);
    expect(() => session(0)).toThrow(/session gap/);
    expect(() => session(-1)).toThrow(/session gap/);
    expect(() => session(NaN)).toThrow(/session gap/);
    expect(() => session(Infinity)).toThrow(/session gap/);
  });

  it('still accepts the windows that worked', () => {
    expect(tumbling(10, -3)).toEqual({ kind: 'tumbling', size: 10, slide: 10, offset: -3 });
    expect(sliding(10, 4, 6)).toEqual({ kind: 'sliding', size: 10, slide: 4, offset: 2 });
    expect(session(1)).toEqual({ kind: 'session', gap: 1 });
  });
});

describe('sessions never have zero length', () => {
  it('every emitted session spans at least the gap, with whole-ms bounds, for any time', () => {
    const time = fc.oneof(
      fc.integer({ min: -1_000, max: 1_000 }),
      fc.integer({ min: Number.MAX_SAFE_INTEGER - 2_000, max: Number.MAX_SAFE_INTEGER }),
      fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: -Number.MAX_SAFE_INTEGER + 2_000 }),
      fc.double({ min: 2 ** 53, max: 1e19, noNaN: true }).map(Math.floor),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), fc.array(fc.tuple(fc.constantFrom('a', 'b'), time), { maxLength: 30 }), (gap, records) => {
        const h = OperatorHarness.of<[{ k: string }], Row>((s) => s.keyBy((e) => e.k).window(session(gap)).aggregate(count()));
        for (const [k, t] of records) h.push({ k }, t);
        h.endInput();
        let total = 0;
        for (const w of h.values()) {
          expect(Number.isSafeInteger(w.start) && Number.isSafeInteger(w.end)).toBe(true);
          expect(w.end - w.start).toBeGreaterThanOrEqual(gap);
          total += w.value;
        }
        // Nothing is lost silently: every record is in a session or a dead letter.
        expect(total + h.deadLetters().length).toBe(records.length);
      }),
      { numRuns: 200 },
    );
  });
});
