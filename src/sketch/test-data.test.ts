import { describe, expect, it } from 'vitest';
import { Rng, Zipf, frequencies, rankInterval, zipfInts } from './test-data.ts';

describe('test data helpers', () => {
  it('Rng is deterministic and uniform', () => {
    const a = new Rng(1);
    const b = new Rng(1);
    const xs = Array.from({ length: 5 }, () => a.u32());
    expect(Array.from({ length: 5 }, () => b.u32())).toEqual(xs);
    expect(new Rng(2).u32()).not.toBe(xs[0]);
    const r = new Rng(3);
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 100_000; i++) buckets[Math.floor(r.next() * 10)]!++;
    for (const c of buckets) expect(Math.abs(c - 10_000)).toBeLessThan(500); // sd ≈ 95
  });

  it('Zipf sampler follows P(r) ∝ r^−s', () => {
    const s = 1.1;
    const freq = frequencies(zipfInts(200_000, 1000, s, 4));
    const f1 = freq.get(1)!;
    for (const r of [2, 4, 10]) {
      // Expected ratio f(1)/f(r) = r^s; counts are large, so within 10%.
      expect(f1 / freq.get(r)! / Math.pow(r, s)).toBeGreaterThan(0.9);
      expect(f1 / freq.get(r)! / Math.pow(r, s)).toBeLessThan(1.1);
    }
    const z = new Zipf(10, 1);
    const rng = new Rng(5);
    for (let i = 0; i < 1000; i++) {
      const v = z.sample(rng);
      expect(v >= 1 && v <= 10).toBe(true);
    }
  });

  it('rankInterval handles ties', () => {
    const sorted = Float64Array.from([1, 2, 2, 2, 3]);
    expect(rankInterval(sorted, 2)).toEqual([0.2, 0.8]);
    expect(rankInterval(sorted, 0)).toEqual([0, 0]);
    expect(rankInterval(sorted, 9)).toEqual([1, 1]);
  });
});
