import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HyperLogLog } from './hyper-log-log.ts';
import { asStrings, uniformInts, zipfInts } from './test-data.ts';

/** Relative error of `estimate` against `truth`. */
const rel = (estimate: number, truth: number): number => Math.abs(estimate - truth) / truth;

describe('HyperLogLog accuracy', () => {
  const p = 14;
  const sigma = 1.04 / Math.sqrt(2 ** p); // theory: relative standard error 1.04/√m = 0.81%

  it.each([10, 1_000, 100_000, 1_000_000])('distinct numbers, n = %i: within 3·1.04/√m', (n) => {
    const hll = new HyperLogLog(p, { seed: n });
    for (let i = 0; i < n; i++) hll.add(i * 7 + 0.5 * (i & 1)); // ints and non-ints
    // Bound from theory: |estimate − n| / n ≤ 3σ (≈ 99.7% of runs).
    expect(rel(hll.count(), n)).toBeLessThanOrEqual(3 * sigma);
  });

  it.each([10, 1_000, 100_000])('distinct strings, n = %i: within 3·1.04/√m', (n) => {
    const hll = new HyperLogLog(p);
    const ids = Array.from({ length: n }, (_, i) => i);
    for (const s of asStrings(ids)) hll.add(s);
    expect(rel(hll.count(), n)).toBeLessThanOrEqual(3 * sigma);
  });

  it('Zipf(1.1) stream with repeats: estimates the number of distinct items', () => {
    const items = asStrings(zipfInts(300_000, 200_000, 1.1, 7));
    const truth = new Set(items).size;
    const hll = new HyperLogLog(p);
    for (const s of items) hll.add(s);
    expect(rel(hll.count(), truth)).toBeLessThanOrEqual(3 * sigma);
  });

  it('uniform stream with repeats: estimates the number of distinct items', () => {
    const items = uniformInts(300_000, 150_000, 11);
    const truth = new Set(items).size;
    const hll = new HyperLogLog(p);
    for (const x of items) hll.add(x);
    expect(rel(hll.count(), truth)).toBeLessThanOrEqual(3 * sigma);
  });

  it('the standard error really is 1.04/√m across seeds and the whole range (no bias bump)', () => {
    // 60 independent sketches (different seeds) at p = 10 (σ = 3.25%), read at cardinalities from
    // the linear-counting range (0.1·m) through the classic switch point (2.5·m) to 50·m.
    const pp = 10;
    const m = 2 ** pp;
    const s = 1.04 / Math.sqrt(m);
    const checkpoints = [100, 1000, 2560, 5000, 51_200];
    const errors = checkpoints.map(() => [] as number[]);
    for (let trial = 0; trial < 60; trial++) {
      const hll = new HyperLogLog(pp, { seed: 1000 + trial });
      let c = 0;
      for (let i = 1; i <= checkpoints.at(-1)!; i++) {
        hll.add(i);
        if (i === checkpoints[c]) errors[c++]!.push(hll.count() / i - 1);
      }
    }
    for (const e of errors) {
      const mean = e.reduce((a, b) => a + b, 0) / e.length;
      const rmse = Math.sqrt(e.reduce((a, b) => a + b * b, 0) / e.length);
      // RMSE of 60 samples of an estimator with standard error σ: within ±30% of σ or below it.
      expect(rmse).toBeLessThanOrEqual(1.3 * s);
      // Bias: the mean of 60 errors has standard error σ/√60; allow 3 of those.
      expect(Math.abs(mean)).toBeLessThanOrEqual((3 * s) / Math.sqrt(60));
    }
  });

  it('is exact-ish when tiny and 0 when empty', () => {
    const hll = new HyperLogLog(12);
    expect(hll.count()).toBe(0);
    hll.add('a');
    hll.add('a');
    expect(hll.count()).toBeCloseTo(1, 2);
  });

  it('treats -0 like 0 and 5 like 5.0', () => {
    const a = new HyperLogLog(10);
    a.add(0);
    a.add(5);
    const b = new HyperLogLog(10);
    b.add(-0);
    b.add(5.0);
    expect(a.equals(b)).toBe(true);
  });
});

describe('HyperLogLog sizing', () => {
  it('withError picks p from 1.04/√m', () => {
    expect(HyperLogLog.withError(0.01).precision).toBe(14); // (1.04/0.01)² = 10816 → 2^14
    expect(HyperLogLog.withError(0.02).precision).toBe(12); // 2704 → 2^12
    expect(HyperLogLog.withError(0.0325).precision).toBe(10); // 1024 exactly
    expect(HyperLogLog.withError(0.5).precision).toBe(4); // clamped
    expect(HyperLogLog.withError(0.01).relativeError).toBeLessThanOrEqual(0.01);
    expect(() => HyperLogLog.withError(0.0001)).toThrow(/precision/);
    expect(() => new HyperLogLog(3)).toThrow(RangeError);
    expect(() => new HyperLogLog(21)).toThrow(RangeError);
    expect(new HyperLogLog(14).byteSize).toBe(16384);
  });
});

describe('HyperLogLog merge', () => {
  it('merging equals the sketch of the union (register-wise max)', () => {
    const a = new HyperLogLog(12);
    const b = new HyperLogLog(12);
    const union = new HyperLogLog(12);
    const xs = asStrings(zipfInts(50_000, 40_000, 1.1, 1));
    const ys = asStrings(uniformInts(50_000, 40_000, 2));
    for (const x of xs) {
      a.add(x);
      union.add(x);
    }
    for (const y of ys) {
      b.add(y);
      union.add(y);
    }
    a.merge(b);
    expect(a.equals(union)).toBe(true);
    expect(a.count()).toBe(union.count());
    const truth = new Set([...xs, ...ys]).size;
    expect(rel(a.count(), truth)).toBeLessThanOrEqual(3 * a.relativeError);
  });

  it('merge is commutative and idempotent (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.double(), fc.integer())), fc.array(fc.string()), (xs, ys) => {
        const a = new HyperLogLog(6);
        const b = new HyperLogLog(6);
        xs.forEach((x) => a.add(x));
        ys.forEach((y) => b.add(y));
        const ab = a.clone().merge(b);
        const ba = b.clone().merge(a);
        expect(ab.equals(ba)).toBe(true);
        expect(ab.clone().merge(ab).equals(ab)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });

  it('refuses mismatched parameters, naming both', () => {
    expect(() => new HyperLogLog(12).merge(new HyperLogLog(13))).toThrow(
      /precision=12, seed=\d+.*precision=13, seed=\d+/,
    );
    expect(() => new HyperLogLog(12, { seed: 1 }).merge(new HyperLogLog(12, { seed: 2 }))).toThrow(/seed=1.*seed=2/);
  });

  it('clone is independent', () => {
    const a = new HyperLogLog(8);
    a.add(1);
    const c = a.clone();
    c.add(2);
    c.add(3);
    expect(a.count()).toBeCloseTo(1, 1);
    expect(c.count()).toBeGreaterThan(2.5);
  });
});

describe('HyperLogLog serialization', () => {
  it('round-trips dense and sparse forms', () => {
    for (const n of [0, 5, 100, 100_000]) {
      const hll = new HyperLogLog(11, { seed: 99 });
      for (let i = 0; i < n; i++) hll.add(`x${i}`);
      const bytes = hll.serialize();
      expect(bytes[0]).toBe(0x53);
      expect(bytes[1]).toBe(0x11);
      expect(bytes[3]).toBe(n < 512 ? 1 : 0); // sparse flag while < m/4 registers are set
      const back = HyperLogLog.deserialize(bytes);
      expect(back.equals(hll)).toBe(true);
      expect(back.count()).toBe(hll.count());
      expect(back.seed).toBe(99);
    }
  });

  it('rejects wrong magic, version, truncation and corrupt registers', () => {
    const hll = new HyperLogLog(10);
    for (let i = 0; i < 2000; i++) hll.add(i);
    const bytes = hll.serialize();
    expect(() => HyperLogLog.deserialize(bytes.subarray(0, 3))).toThrow(/truncated/);
    expect(() => HyperLogLog.deserialize(bytes.subarray(0, bytes.length - 1))).toThrow(/truncated/);
    expect(() => HyperLogLog.deserialize(new Uint8Array([...bytes, 0]))).toThrow(/trailing/);
    const wrongMagic = bytes.slice();
    wrongMagic[1] = 0xc1;
    expect(() => HyperLogLog.deserialize(wrongMagic)).toThrow(/wrong magic byte 0xc1 \(CountMinSketch\)/);
    const notSketch = bytes.slice();
    notSketch[0] = 0x7b;
    expect(() => HyperLogLog.deserialize(notSketch)).toThrow(/not a serialized Spate sketch/);
    const version = bytes.slice();
    version[2] = 2;
    expect(() => HyperLogLog.deserialize(version)).toThrow(/unsupported format version 2/);
    const badRegister = bytes.slice();
    badRegister[bytes.length - 1] = 200;
    expect(() => HyperLogLog.deserialize(badRegister)).toThrow(/corrupt/);
    const badP = bytes.slice();
    badP[4] = 30;
    expect(() => HyperLogLog.deserialize(badP)).toThrow(/precision/);
  });
});
