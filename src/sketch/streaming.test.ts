import { describe, expect, it } from 'vitest';
import { Pipeline } from '../api/pipeline.ts';
import type { Stream } from '../api/stream.ts';
import { OperatorHarness } from '../testing/operator-harness.ts';
import { TestSource } from '../testing/test-source.ts';
import { sliding, tumbling } from '../window/assigners.ts';
import { approxDistinct, approxFrequency, approxQuantiles, approxTopK, mergeSketches, sketchOf, sketchState } from './aggregators.ts';
import { HyperLogLog } from './hyper-log-log.ts';
import { Rng, zipfInts } from './test-data.ts';

interface Ev {
  user: number;
  page: string;
  ms: number;
}

/** 40 000 events over 40 s, Zipf-skewed users and pages, log-normal latencies. */
function events(seed: number): Array<{ value: Ev; time: number }> {
  const rng = new Rng(seed);
  const users = zipfInts(40_000, 5_000, 1.1, seed);
  const pages = zipfInts(40_000, 300, 1.3, seed + 1);
  return users.map((u, i) => ({
    value: { user: u, page: `/p${pages[i]}`, ms: Math.exp(3 + rng.normal()) },
    time: i,
  }));
}

/** Exact answers per 10 s tumbling window. */
function exact(input: Array<{ value: Ev; time: number }>) {
  const windows = new Map<number, Ev[]>();
  for (const { value, time } of input) {
    const start = time - (time % 10_000);
    let list = windows.get(start);
    if (list === undefined) windows.set(start, (list = []));
    list.push(value);
  }
  return windows;
}

async function run<O>(build: (s: Stream<Ev>) => Stream<O>, input: Array<{ value: Ev; time: number }>): Promise<O[]> {
  const p = new Pipeline();
  const src = new TestSource<Ev>().records(input).end();
  const out = build(p.source(src)).collect();
  await p.run();
  return out.values;
}

describe('sketch window aggregators against exact answers', () => {
  const input = events(17);
  const truth = exact(input);

  it('approxDistinct: within 3 standard errors of the exact distinct count', async () => {
    const rows = await run((s) => s.windowAll(tumbling(10_000)).aggregate(approxDistinct((e: Ev) => e.user, { relativeError: 0.02 })), input);
    expect(rows).toHaveLength(truth.size);
    for (const r of rows) {
      const distinct = new Set(truth.get(r.start)!.map((e) => e.user)).size;
      // HyperLogLog: relative standard error 0.02 as configured; 3σ holds with probability 99.7%.
      expect(Math.abs(r.value - distinct) / distinct).toBeLessThan(3 * 0.02);
    }
  });

  it('approxQuantiles: rank error within the configured bound', async () => {
    const qs = [0.1, 0.5, 0.9, 0.99];
    const rows = await run((s) => s.windowAll(tumbling(10_000)).aggregate(approxQuantiles((e: Ev) => e.ms, qs, { rankError: 0.01 })), input);
    for (const r of rows) {
      const sorted = truth.get(r.start)!.map((e) => e.ms).sort((a, b) => a - b);
      r.value.forEach((v, i) => {
        const rank = sorted.filter((x) => x <= v).length / sorted.length;
        // KLL: |rank(estimate) − q| <= rankError with probability 1 − δ (δ = 1%).
        expect(Math.abs(rank - qs[i]!)).toBeLessThanOrEqual(0.01 + 1 / sorted.length);
      });
    }
  });

  it('approxTopK: finds the true top pages, with counts bracketing the truth', async () => {
    const rows = await run((s) => s.windowAll(tumbling(10_000)).aggregate(approxTopK((e: Ev) => e.page, 5)), input);
    for (const r of rows) {
      const counts = new Map<string, number>();
      for (const e of truth.get(r.start)!) counts.set(e.page, (counts.get(e.page) ?? 0) + 1);
      const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([p]) => p);
      // SpaceSaving (capacity 50) on Zipf(1.3): the top 5 are far above N/capacity.
      expect(r.value.map((e) => e.item).sort()).toEqual([...top].sort());
      for (const e of r.value) {
        const n = counts.get(e.item as string)!;
        expect(e.count - e.error).toBeLessThanOrEqual(n);
        expect(e.count).toBeGreaterThanOrEqual(n);
      }
    }
  });

  it('approxFrequency: never underestimates, overestimates by at most εN for 99% of pages', async () => {
    const rows = await run(
      (s) => s.windowAll(tumbling(10_000)).aggregate(approxFrequency((e: Ev) => e.page, { epsilon: 0.002, delta: 0.01 })),
      input,
    );
    for (const r of rows) {
      const window = truth.get(r.start)!;
      const counts = new Map<string, number>();
      for (const e of window) counts.set(e.page, (counts.get(e.page) ?? 0) + 1);
      let within = 0;
      for (const [page, n] of counts) {
        const est = r.value.estimate(page);
        expect(est).toBeGreaterThanOrEqual(n);
        if (est - n <= 0.002 * window.length) within++;
      }
      expect(within / counts.size).toBeGreaterThanOrEqual(0.99);
    }
  });
});

describe('sketches in windows merge across panes and across instances', () => {
  const input = events(23);

  it('a sliding window built from panes equals the sketch of all its records', async () => {
    const rows = await run(
      (s) => s.windowAll(sliding(10_000, 5_000)).aggregate(sketchOf(() => new HyperLogLog(12), (h, e: Ev) => h.add(e.user))),
      input,
    );
    for (const r of rows) {
      const direct = new HyperLogLog(12);
      for (const { value, time } of input) if (time >= r.start && time < r.end) direct.add(value.user);
      expect(r.value.equals(direct)).toBe(true);
    }
  });

  it('partial sketches of 8 shards merged globally equal the sketch of the whole stream', async () => {
    const rows = await run(
      (s) =>
        s
          .keyBy((e) => e.user % 8)
          .window(tumbling(10_000))
          .aggregate(sketchOf(() => new HyperLogLog(12), (h, e: Ev) => h.add(e.user)), (_shard, sketch) => sketch)
          .windowAll(tumbling(10_000))
          .aggregate(mergeSketches<HyperLogLog>(), (_k, merged, w) => ({ start: w.start, merged })),
      input,
    );
    expect(rows).toHaveLength(4);
    for (const r of rows) {
      const direct = new HyperLogLog(12);
      for (const { value, time } of input) if (time >= r.start && time < r.start + 10_000) direct.add(value.user);
      expect(r.merged.equals(direct)).toBe(true);
    }
  });
});

describe('sketch state is checkpointed', () => {
  it('a window of sketches restored mid-window gives the same results', () => {
    const input = events(5).slice(0, 15_000);
    const build = (s: Stream<Ev>) =>
      s.keyBy((e) => e.page).window(tumbling(10_000)).aggregate(approxDistinct((e: Ev) => e.user), (page, n, w) => `${page}@${w.start}=${n}`);
    const straight = OperatorHarness.of<[Ev], string>(build);
    for (const { value, time } of input) straight.push(value, time);
    straight.endInput();

    const first = OperatorHarness.of<[Ev], string>(build);
    input.slice(0, 7_000).forEach(({ value, time }) => first.push(value, time));
    const snapshot = first.snapshot();
    // The accumulators travel as serialized sketches.
    const blob = [...snapshot.steps.get('tumbling-window-1')!.keyed.values()][0]!;
    expect(blob.byteLength).toBeGreaterThan(100);
    const second = first.restore(snapshot);
    input.slice(7_000).forEach(({ value, time }) => second.push(value, time));
    second.endInput();
    expect([...first.values(), ...second.values()].sort()).toEqual(straight.values().sort());
  });

  it('keyed state holding a sketch survives snapshot and restore', () => {
    const build = (s: Stream<Ev>) =>
      s
        .keyBy((e) => e.page)
        .state({ visitors: sketchState(HyperLogLog) })
        .process<number>({
          onElement(e, ctx) {
            const h = ctx.state.visitors.get() ?? new HyperLogLog(10);
            h.add(e.user);
            ctx.state.visitors.set(h);
            ctx.emit(Math.round(h.count()));
          },
        });
    const h1 = OperatorHarness.of<[Ev], number>(build);
    for (let u = 0; u < 500; u++) h1.push({ user: u, page: '/a', ms: 1 }, u);
    const h2 = h1.restore(h1.snapshot());
    h2.push({ user: 1000, page: '/a', ms: 1 }, 600);
    expect(h2.values()[0]).toBeGreaterThan(480);
    expect(h2.values()[0]).toBeLessThan(530);
  });
});

describe('dedupe', () => {
  interface Order {
    id: string;
    n: number;
  }
  const build = (s: Stream<Order>) => s.keyBy((o) => o.id).dedupe({ within: 1000, capacity: 10_000, id: 'dedupe' });

  it('drops repeats seen within the interval and keeps first occurrences', () => {
    const h = OperatorHarness.of<[Order], Order>(build);
    h.push({ id: 'a', n: 1 }, 10).push({ id: 'b', n: 2 }, 20).push({ id: 'a', n: 3 }, 30).watermark(500).push({ id: 'b', n: 4 }, 600);
    expect(h.values()).toEqual([
      { id: 'a', n: 1 },
      { id: 'b', n: 2 },
    ]);
    const m = h.stepMetrics('dedupe');
    expect(m.recordsIn - m.recordsOut).toBe(2);
  });

  it('remembers a key for at least `within` and forgets it after two generations', () => {
    const h = OperatorHarness.of<[Order], Order>(build);
    h.watermark(0).push({ id: 'a', n: 1 }, 900); // generation [0, 1000)
    h.watermark(1500).push({ id: 'a', n: 2 }, 1600); // next generation: still remembered
    h.watermark(2100).push({ id: 'a', n: 3 }, 2200); // two generations later: forgotten
    expect(h.values().map((o) => o.n)).toEqual([1, 3]);
  });

  it('has no false duplicates among many distinct keys, and memory stays bounded over time', () => {
    const h = OperatorHarness.of<[Order], Order>(build);
    let t = 0;
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 5000; i++) h.push({ id: `o-${round}-${i}`, n: i }, t++);
      h.watermark(t - 1);
    }
    expect(h.values()).toHaveLength(100_000);
    // Filters exist per key group and generation only: at most 2 × 128, however many keys passed.
    const snap = h.snapshot().steps.get('dedupe')!;
    expect(snap.keyed.size).toBeLessThanOrEqual(128);
  });

  it('keeps its filters across snapshot and restore, those of the previous interval included', () => {
    const h = OperatorHarness.of<[Order], Order>(build);
    h.watermark(0);
    for (let i = 0; i < 300; i++) h.push({ id: `k${i}`, n: i }, i); // [0, 1000)
    h.watermark(1000);
    for (let i = 300; i < 400; i++) h.push({ id: `k${i}`, n: i }, 700 + i); // [1000, 2000)
    const h2 = h.restore(h.snapshot());
    // k250–k299 repeat `within` after their first occurrence: only the previous interval has them.
    for (let i = 250; i < 450; i++) h2.push({ id: `k${i}`, n: i }, 1000 + i);
    expect(h2.values().map((o) => o.n)).toEqual(Array.from({ length: 50 }, (_, i) => 400 + i));
  });

  it('runs in a pipeline and is planned with a keyed exchange', async () => {
    const p = new Pipeline();
    const out = p
      .fromArray(['x', 'y', 'x', 'z', 'y'].map((id, n) => ({ id, n })), { timestamp: (o) => o.n })
      .keyBy((o) => o.id)
      .dedupe({ within: 60_000 })
      .collect();
    await p.run();
    expect(out.values.map((o) => o.id)).toEqual(['x', 'y', 'z']);
    expect(p.explain()).toMatch(/dedupe-1 \(dedupe\)|dedupe-1/);
  });
});
