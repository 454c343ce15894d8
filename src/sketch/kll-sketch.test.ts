import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KllSketch } from './kll-sketch.ts';
import { Rng, distanceToInterval, rankInterval, uniformInts, zipfInts } from './test-data.ts';

const QS = [0.01, 0.1, 0.5, 0.9, 0.99];

/** Largest rank error of `sketch` on `data` (exact answers from sorting) at QS, both directions. */
function maxRankError(sketch: KllSketch, data: ArrayLike<number>): number {
  const sorted = Float64Array.from(data).sort();
  let worst = 0;
  for (const q of QS) {
    // quantile(q): the returned value's true rank interval must contain q, up to the error.
    worst = Math.max(worst, distanceToInterval(q, rankInterval(sorted, sketch.quantile(q))));
    // rank(x) at the true q-quantile x: estimated vs exact fraction ≤ x.
    const x = sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    worst = Math.max(worst, Math.abs(sketch.rank(x) - rankInterval(sorted, x)[1]));
  }
  return worst;
}

function streams(n: number): Array<[string, Float64Array]> {
  const rng = new Rng(42);
  return [
    ['uniform', Float64Array.from(uniformInts(n, 1e9, 1), (x) => x / 1e3)],
    ['Zipf(1.1) values (heavy ties)', Float64Array.from(zipfInts(n, 100_000, 1.1, 2))],
    ['normal', Float64Array.from({ length: n }, () => rng.normal() * 50 + 100)],
    ['sorted ascending', Float64Array.from({ length: n }, (_, i) => i)],
    ['sorted descending', Float64Array.from({ length: n }, (_, i) => n - i)],
  ];
}

describe('KllSketch accuracy', () => {
  const n = 300_000;
  const k = 200;

  for (const [name, data] of streams(n)) {
    it(`${name}: rank error at q ∈ {0.01, 0.1, 0.5, 0.9, 0.99} within the stated bound`, () => {
      const sketch = new KllSketch(k);
      for (let i = 0; i < data.length; i++) sketch.add(data[i]!);
      expect(sketch.count()).toBe(n);
      // Bound from theory (Azuma–Hoeffding over the compactions, δ = 1% per query), plus 1/n
      // for the discreteness of quantile(); and never above the a-priori bound for k.
      const bound = sketch.rankError(0.01);
      expect(bound).toBeGreaterThan(0);
      expect(bound).toBeLessThanOrEqual(KllSketch.rankErrorFor(k, 0.01));
      expect(maxRankError(sketch, data)).toBeLessThanOrEqual(bound + 1 / n);
      // The minimum and maximum are exact.
      const sorted = Float64Array.from(data).sort();
      expect(sketch.quantile(0)).toBe(sorted[0]);
      expect(sketch.quantile(1)).toBe(sorted[n - 1]);
      // Memory stays O(k log(n/k)): about 3k retained values.
      expect(sketch.retained).toBeLessThan(4 * k);
    });
  }

  it('errors across 30 seeds: the bound holds for every query (it is a 99% bound per query)', () => {
    const data = Float64Array.from(uniformInts(50_000, 1e9, 3));
    let worstRatio = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const sketch = new KllSketch(64, { seed });
      for (let i = 0; i < data.length; i++) sketch.add(data[i]!);
      worstRatio = Math.max(worstRatio, maxRankError(sketch, data) / sketch.rankError(0.01));
    }
    expect(worstRatio).toBeLessThanOrEqual(1);
    expect(worstRatio).toBeGreaterThan(0.05); // the sketch is approximate: errors are real
  });

  it('is exact before the first compaction', () => {
    const sketch = new KllSketch(200);
    const data = uniformInts(150, 1000, 4);
    data.forEach((x) => sketch.add(x));
    expect(sketch.rankError()).toBe(0);
    const sorted = Float64Array.from(data).sort();
    for (const x of [0, 17, 500, 999]) expect(sketch.rank(x)).toBe(rankInterval(sorted, x)[1]);
    expect(sketch.quantile(0.5)).toBe(sorted[74]);
  });

  it('empty sketch and NaN', () => {
    const sketch = new KllSketch();
    expect(sketch.quantile(0.5)).toBeNaN();
    expect(sketch.rank(1)).toBeNaN();
    expect(sketch.min).toBeNaN();
    sketch.add(NaN);
    expect(sketch.count()).toBe(0);
    sketch.add(3);
    expect(sketch.quantile(0.5)).toBe(3);
    expect(sketch.cdf([2, 3, 4])).toEqual([0, 1, 1]);
    expect(() => sketch.quantile(1.5)).toThrow(RangeError);
  });

  it('weighted add equals repeated adds while exact, and stays within the bound after', () => {
    const a = new KllSketch(200);
    const b = new KllSketch(200);
    a.add(5, 3);
    a.add(1, 2);
    a.add(9, 6);
    [5, 5, 5, 1, 1, 9, 9, 9, 9, 9, 9].forEach((x) => b.add(x));
    expect(a.count()).toBe(11);
    for (const x of [0, 1, 4, 5, 8, 9]) expect(a.rank(x)).toBeCloseTo(b.rank(x), 12);
    for (const q of QS) expect(a.quantile(q)).toBe(b.quantile(q));

    // Heavy weights on a large stream: ranks match the exact weighted distribution.
    const w = new KllSketch(200);
    const values: number[] = [];
    const weights: number[] = [];
    const rng = new Rng(8);
    for (let i = 0; i < 20_000; i++) {
      const v = rng.int(1_000_000);
      const c = 1 + rng.int(1000);
      w.add(v, c);
      values.push(v);
      weights.push(c);
    }
    const order = values.map((_, i) => i).sort((i, j) => values[i]! - values[j]!);
    const total = weights.reduce((s, c) => s + c, 0);
    expect(w.count()).toBe(total);
    let acc = 0;
    let worst = 0;
    for (const i of order) {
      acc += weights[i]!;
      worst = Math.max(worst, Math.abs(w.rank(values[i]!) - acc / total));
    }
    expect(worst).toBeLessThanOrEqual(w.rankError(0.01) + 1000 / total);
    expect(() => w.add(1, 1.5)).toThrow(RangeError);
    expect(() => w.add(1, -1)).toThrow(RangeError);
  });
});

describe('KllSketch sizing', () => {
  it('withError picks k from the a-priori bound', () => {
    const s = KllSketch.withError(0.01);
    expect(s.k).toBe(301);
    expect(KllSketch.rankErrorFor(s.k)).toBeLessThanOrEqual(0.01);
    expect(KllSketch.rankErrorFor(200, 0.01)).toBeCloseTo(0.015, 3);
    expect(KllSketch.withError(0.05, 0.05).k).toBeLessThan(KllSketch.withError(0.05, 0.001).k);
    expect(() => KllSketch.withError(0)).toThrow(RangeError);
    expect(() => KllSketch.withError(1e-6)).toThrow(/above the maximum/);
    expect(() => new KllSketch(7)).toThrow(RangeError);
  });

  it('a sketch sized by withError meets its error at every n tried', () => {
    for (const n of [1000, 33_333, 200_000]) {
      const s = KllSketch.withError(0.02);
      const data = Float64Array.from(uniformInts(n, 1e9, n));
      data.forEach((x) => s.add(x));
      expect(s.rankError(0.01)).toBeLessThanOrEqual(0.02);
      expect(maxRankError(s, data)).toBeLessThanOrEqual(0.02 + 1 / n);
    }
  });
});

describe('KllSketch merge', () => {
  it('merging parts stays within the merged bound against the exact union', () => {
    const data = Float64Array.from(zipfInts(200_000, 1_000_000, 1.1, 9), (x, i) => x + (i % 7) / 10);
    const parts = 8;
    const sketches = Array.from({ length: parts }, (_, i) => new KllSketch(200, { seed: i + 1 }));
    data.forEach((x, i) => sketches[i % parts]!.add(x));
    // Tree merge (as across workers) and sequential merge.
    const tree = [...sketches.map((s) => s.clone())];
    while (tree.length > 1) tree.push(tree.shift()!.merge(tree.shift()!));
    const seq = sketches.reduce((acc, s) => acc.merge(s), new KllSketch(200));
    const sorted = Float64Array.from(data).sort();
    for (const merged of [tree[0]!, seq]) {
      expect(merged.count()).toBe(data.length);
      expect(merged.min).toBe(sorted[0]);
      expect(merged.max).toBe(sorted.at(-1));
      expect(merged.retained).toBeLessThan(4 * 200);
      const bound = merged.rankError(0.01);
      expect(bound).toBeLessThanOrEqual(1.5 * KllSketch.rankErrorFor(200));
      expect(maxRankError(merged, data)).toBeLessThanOrEqual(bound + 1 / data.length);
    }
  });

  it('merging small (exact) sketches is exact; merging an empty one is a no-op', () => {
    const a = new KllSketch(100);
    const b = new KllSketch(100);
    [3, 1, 2].forEach((x) => a.add(x));
    [6, 5, 4].forEach((x) => b.add(x));
    a.merge(b).merge(new KllSketch(100));
    expect(a.count()).toBe(6);
    expect(a.quantiles([0.5, 1])).toEqual([3, 6]);
    expect(a.rankError()).toBe(0);
  });

  it('merge keeps the total weight and is order-insensitive within the bound (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ noNaN: true, min: -1e6, max: 1e6 }), { maxLength: 3000 }),
        fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 3000 }),
        (xs, ys) => {
          const a = new KllSketch(16);
          const b = new KllSketch(16);
          xs.forEach((x) => a.add(x));
          ys.forEach((y) => b.add(y));
          const ab = a.clone().merge(b);
          expect(ab.count()).toBe(xs.length + ys.length);
          if (ab.count() > 0) {
            const all = Float64Array.from([...xs, ...ys]);
            expect(maxRankError(ab, all)).toBeLessThanOrEqual(ab.rankError(0.001) + 1 / all.length);
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('refuses mismatched parameters, naming both', () => {
    expect(() => new KllSketch(200).merge(new KllSketch(100))).toThrow(/this: k=200; other: k=100/);
  });
});

describe('KllSketch serialization', () => {
  it('round-trips, and the copy evolves identically (coin-flip state included)', () => {
    for (const n of [0, 10, 5000, 100_000]) {
      const s = new KllSketch(50, { seed: 5 });
      const data = uniformInts(n, 1e6, n + 1);
      data.forEach((x) => s.add(x));
      const back = KllSketch.deserialize(s.serialize());
      expect(back.equals(s)).toBe(true);
      expect(back.quantiles(QS)).toEqual(s.quantiles(QS));
      expect(back.rankError()).toBe(s.rankError());
      const more = uniformInts(20_000, 1e6, 77);
      more.forEach((x) => (s.add(x), back.add(x)));
      expect(back.equals(s)).toBe(true);
      const c = s.clone();
      expect(c.equals(s)).toBe(true);
    }
  });

  it('rejects wrong magic, truncation and inconsistent contents', () => {
    const s = new KllSketch(8);
    for (let i = 0; i < 100; i++) s.add(i);
    const bytes = s.serialize();
    expect(() => KllSketch.deserialize(bytes.subarray(0, 20))).toThrow(/truncated/);
    expect(() => KllSketch.deserialize(bytes.subarray(0, bytes.length - 8))).toThrow(/truncated/);
    expect(() => KllSketch.deserialize(new Uint8Array([...bytes, 0]))).toThrow(/trailing/);
    const magic = bytes.slice();
    magic[1] = 0x55;
    expect(() => KllSketch.deserialize(magic)).toThrow(/wrong magic byte 0x55 \(SpaceSaving\)/);
    const view = (b: Uint8Array): DataView => new DataView(b.buffer);
    const badN = bytes.slice();
    view(badN).setFloat64(12, 101, true);
    expect(() => KllSketch.deserialize(badN)).toThrow(/weights add up to 100, not n = 101/);
    const unsorted = bytes.slice();
    // Swap the last two values (in the top, sorted level).
    const end = unsorted.length;
    const last = view(unsorted).getFloat64(end - 8, true);
    view(unsorted).setFloat64(end - 8, view(unsorted).getFloat64(end - 16, true), true);
    view(unsorted).setFloat64(end - 16, last, true);
    expect(() => KllSketch.deserialize(unsorted)).toThrow(/not sorted/);
    const outOfRange = bytes.slice();
    view(outOfRange).setFloat64(end - 8, 1e9, true);
    expect(() => KllSketch.deserialize(outOfRange)).toThrow(/outside \[min, max\]/);
  });
});
