/**
 * Shared pieces of the oracle tests: random disordered deliveries with watermarks (and optional
 * late records), a driver that feeds them into an OperatorHarness with snapshot/restore failures
 * at random points, and small helpers for comparing multisets.
 *
 * The delivery model: every record gets an "arrival key" t + d with 0 <= d <= D and records are
 * delivered in arrival-key order. A record delivered after one of time t' has t + d >= t' + d' >= t'
 * and so t >= t' - D: every record not yet delivered has t >= maxSeen - D. Watermarks are
 * maxSeen - D - 1, so a watermark never passes (reaches) a record that is still to come. Late
 * records are then injected on purpose: at a random position, a record with time wm - by (by >= 0),
 * i.e. at or behind the current watermark.
 */
import fc from 'fast-check';
import type { OperatorHarness } from '../../src/testing/index.ts';

export const KEYS = ['a', 'b', 'c', 'd'] as const;

/** A test record. `t` duplicates the event time given to the engine; `side` picks the input. */
export interface Rec {
  readonly id: number;
  readonly k: string;
  readonly v: number;
  readonly t: number;
  readonly side: number;
  /** Injected behind the watermark on purpose. */
  readonly late: boolean;
}

export type Step = { readonly kind: 'rec'; readonly rec: Rec } | { readonly kind: 'wm'; readonly time: number };

export interface Scenario {
  readonly D: number;
  readonly steps: readonly Step[];
  /** Every record delivered, in delivery order. */
  readonly records: readonly Rec[];
}

export interface ScenarioOptions {
  readonly keys?: number;
  /** Range of the random base added to every time (lets times go negative). */
  readonly base?: readonly [number, number];
  /** Times are base + [0, span]. */
  readonly span?: number;
  readonly maxRecords?: number;
  readonly maxDisorder?: number;
  readonly sides?: number;
  /** Injected late records: how many at most, and how far behind the watermark at most. */
  readonly late?: { readonly maxCount: number; readonly maxBy: number };
  readonly vRange?: readonly [number, number];
}

interface RawRec {
  k: number;
  v: number;
  t: number;
  d: number;
  wm: boolean;
  side: number;
}

interface RawLate {
  at: number;
  k: number;
  v: number;
  by: number;
  side: number;
}

export function scenarioArb(o: ScenarioOptions = {}): fc.Arbitrary<Scenario> {
  const keys = o.keys ?? 3;
  const sides = o.sides ?? 1;
  const [vMin, vMax] = o.vRange ?? [-20, 50];
  const base = o.base ?? [-40, 40];
  const raw: fc.Arbitrary<RawRec> = fc.record({
    k: fc.integer({ min: 0, max: keys - 1 }),
    v: fc.integer({ min: vMin, max: vMax }),
    t: fc.integer({ min: 0, max: o.span ?? 60 }),
    d: fc.nat({ max: 1000 }),
    wm: fc.boolean(),
    side: fc.integer({ min: 0, max: sides - 1 }),
  });
  const lateRaw: fc.Arbitrary<RawLate> = fc.record({
    at: fc.nat({ max: 10_000 }),
    k: fc.integer({ min: 0, max: keys - 1 }),
    v: fc.integer({ min: vMin, max: vMax }),
    by: fc.nat({ max: o.late?.maxBy ?? 0 }),
    side: fc.integer({ min: 0, max: sides - 1 }),
  });
  return fc
    .record({
      base: fc.integer({ min: base[0], max: base[1] }),
      D: fc.integer({ min: 0, max: o.maxDisorder ?? 10 }),
      recs: fc.array(raw, { maxLength: o.maxRecords ?? 40 }),
      late: o.late === undefined ? fc.constant([] as RawLate[]) : fc.array(lateRaw, { maxLength: o.late.maxCount }),
    })
    .map(({ base: b, D, recs, late }) => build(b, D, recs, late));
}

function build(base: number, D: number, recs: readonly RawRec[], late: readonly RawLate[]): Scenario {
  const records: Rec[] = recs.map((r, i) => ({ id: i, k: KEYS[r.k]!, v: r.v, t: base + r.t, side: r.side, late: false }));
  const arrival = recs.map((r, i) => records[i]!.t + (r.d % (D + 1)));
  const order = records.map((_, i) => i).sort((a, b) => arrival[a]! - arrival[b]! || a - b);
  const onTime: Step[] = [];
  let maxSeen = -Infinity;
  let wm = -Infinity;
  for (const i of order) {
    const r = records[i]!;
    onTime.push({ kind: 'rec', rec: r });
    maxSeen = Math.max(maxSeen, r.t);
    if (recs[i]!.wm) {
      const w = maxSeen - D - 1;
      if (w > wm) {
        wm = w;
        onTime.push({ kind: 'wm', time: w });
      }
    }
  }
  // Inject late records: at position p (before onTime[p]), time = current watermark - by.
  const byPos = new Map<number, RawLate[]>();
  for (const l of late) {
    const p = l.at % (onTime.length + 1);
    const list = byPos.get(p) ?? [];
    list.push(l);
    byPos.set(p, list);
  }
  const steps: Step[] = [];
  let nextId = records.length;
  wm = -Infinity;
  for (let p = 0; p <= onTime.length; p++) {
    if (wm !== -Infinity) {
      for (const l of byPos.get(p) ?? []) {
        steps.push({ kind: 'rec', rec: { id: nextId++, k: KEYS[l.k]!, v: l.v, t: wm - l.by, side: l.side, late: true } });
      }
    }
    const s = onTime[p];
    if (s === undefined) break;
    steps.push(s);
    if (s.kind === 'wm') wm = s.time;
  }
  const delivered = steps.flatMap((s) => (s.kind === 'rec' ? [s.rec] : []));
  return { D, steps, records: delivered };
}

/** Positions (0..n) at which the driver snapshots, fails and restores; 0 to 3 of them. */
export const cutsArb: fc.Arbitrary<number[]> = fc.array(fc.nat({ max: 10_000 }), { maxLength: 3 });

/** Watermark in effect before each step (what the engine has seen when the step arrives). */
export function watermarksBefore(steps: readonly Step[]): number[] {
  const out: number[] = [];
  let wm = -Infinity;
  for (const s of steps) {
    out.push(wm);
    if (s.kind === 'wm') wm = Math.max(wm, s.time);
  }
  return out;
}

/**
 * Feeds `steps` into `h`, failing at every cut: snapshot, keep feeding `lost` more steps into the
 * doomed instance (work that the failure throws away), then restore the snapshot into a fresh
 * harness and resume from the cut. `capture` records what each instance had produced when its
 * snapshot was taken (what a checkpoint would have committed); the last capture is taken after
 * end of input. The union of the captures is the run's output.
 */
export function driveWithFailures<I extends readonly unknown[], O, C>(
  h0: OperatorHarness<I, O>,
  steps: readonly Step[],
  cuts: readonly number[],
  feed: (h: OperatorHarness<I, O>, step: Step) => void,
  capture: (h: OperatorHarness<I, O>) => C,
  lost = 2,
): C[] {
  const at = cuts.map((c) => c % (steps.length + 1)).sort((a, b) => a - b);
  let h = h0;
  let i = 0;
  const out: C[] = [];
  for (const c of at) {
    for (; i < c; i++) feed(h, steps[i]!);
    const snap = h.snapshot();
    out.push(capture(h));
    for (let j = i; j < Math.min(steps.length, i + lost); j++) feed(h, steps[j]!);
    h = h.restore(snap);
  }
  for (; i < steps.length; i++) feed(h, steps[i]!);
  h.endInput();
  out.push(capture(h));
  return out;
}

/** Canonical multiset form: sorted JSON lines (undefined → null so that it shows). */
export function bag(items: readonly unknown[]): string[] {
  return items.map((x) => JSON.stringify(x, (_k, v: unknown) => (v === undefined ? null : v))).sort();
}

export function mod(a: number, m: number): number {
  const r = a % m;
  return r < 0 ? r + m : r;
}

export const byNumber = (a: number, b: number): number => a - b;

/** Starts of the windows [s, s + size) containing t, with s ≡ offset (mod slide). */
export function windowStarts(t: number, size: number, slide: number, offset: number): number[] {
  const out: number[] = [];
  for (let s = t - mod(t - offset, slide); s > t - size; s -= slide) out.push(s);
  return out;
}

/** Batch sessions of one key's records: sorted by time, a record joins the current session iff t < end. */
export function batchSessions<R extends { readonly t: number }>(recs: readonly R[], gap: number): Array<{ start: number; end: number; recs: R[] }> {
  const sorted = [...recs].sort((a, b) => a.t - b.t);
  const out: Array<{ start: number; end: number; recs: R[] }> = [];
  for (const r of sorted) {
    const cur = out[out.length - 1];
    if (cur !== undefined && r.t < cur.end) {
      cur.recs.push(r);
      cur.end = Math.max(cur.end, r.t + gap);
    } else out.push({ start: r.t, end: r.t + gap, recs: [r] });
  }
  return out;
}

export function groupBy<T, K>(items: readonly T[], key: (x: T) => K): Map<K, T[]> {
  const m = new Map<K, T[]>();
  for (const x of items) {
    const k = key(x);
    const list = m.get(k);
    if (list === undefined) m.set(k, [x]);
    else list.push(x);
  }
  return m;
}
