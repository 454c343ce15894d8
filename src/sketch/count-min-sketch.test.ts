import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CountMinSketch } from './count-min-sketch.ts';
import { asStrings, frequencies, uniformInts, zipfInts } from './test-data.ts';

interface ErrorStats {
  underestimates: number;
  withinBound: number;
  items: number;
  meanOver: number;
}

function errorStats(cms: CountMinSketch, freq: Map<string | number, number>): ErrorStats {
  const bound = cms.epsilon * cms.count();
  let under = 0;
  let within = 0;
  let over = 0;
  for (const [item, f] of freq) {
    const e = cms.estimate(item);
    if (e < f) under++;
    if (e - f <= bound) within++;
    over += e - f;
  }
  return { underestimates: under, withinBound: within, items: freq.size, meanOver: over / freq.size };
}

describe('CountMinSketch accuracy', () => {
  const epsilon = 0.002;
  const delta = 0.01;
  const n = 200_000;

  const streams: Array<[string, Array<string | number>]> = [
    ['Zipf(1.1) strings', asStrings(zipfInts(n, 100_000, 1.1, 1))],
    ['uniform numbers', uniformInts(n, 50_000, 2)],
  ];

  for (const [name, stream] of streams) {
    for (const conservative of [true, false]) {
      it(`${name}, ${conservative ? 'conservative' : 'plain'} update: never under, ≤ εN for ≥ (1−δ) of items`, () => {
        const cms = CountMinSketch.withError(epsilon, delta, { conservative });
        for (const x of stream) cms.add(x);
        expect(cms.count()).toBe(n);
        const freq = frequencies(stream);
        const s = errorStats(cms, freq);
        // Theory: estimate ≥ true always.
        expect(s.underestimates).toBe(0);
        // Theory: estimate ≤ true + εN with probability ≥ 1 − δ, for each item.
        expect(s.withinBound / s.items).toBeGreaterThanOrEqual(1 - delta);
        // Theory: E[overestimate of one row] = (N − f)/width ≤ N/width = εN/e, and the
        // estimate is the minimum over rows, so the mean overestimate is below it.
        expect(s.meanOver).toBeLessThanOrEqual(n / cms.width);
      });
    }
  }

  it('the bound is tight enough to matter: a sketch 20× too small violates it often', () => {
    // Sanity check that the assertions above can fail: width e/ε·(1/20), same stream.
    const stream = uniformInts(n, 50_000, 2);
    const tiny = new CountMinSketch(Math.ceil(Math.E / epsilon / 20), 5, { conservative: false });
    for (const x of stream) tiny.add(x);
    const freq = frequencies(stream);
    let violations = 0;
    for (const [item, f] of freq) if (tiny.estimate(item) - f > epsilon * n) violations++;
    expect(violations / freq.size).toBeGreaterThan(delta);
  });

  it('conservative update never estimates above plain update', () => {
    const stream = asStrings(zipfInts(100_000, 50_000, 1.1, 3));
    const cu = new CountMinSketch(500, 4);
    const plain = new CountMinSketch(500, 4, { conservative: false });
    for (const x of stream) {
      cu.add(x);
      plain.add(x);
    }
    let strictlyBetter = 0;
    let under = 0;
    let abovePlain = 0;
    for (const [item, f] of frequencies(stream)) {
      const c = cu.estimate(item);
      const p = plain.estimate(item);
      if (c < f) under++;
      if (c > p) abovePlain++;
      if (c < p) strictlyBetter++;
    }
    expect(under).toBe(0);
    expect(abovePlain).toBe(0);
    expect(strictlyBetter).toBeGreaterThan(0);
  });

  it('supports weights (sums of non-negative amounts) and rejects bad counts', () => {
    const cms = new CountMinSketch(1000, 5);
    cms.add('a', 2.5);
    cms.add('a', 0.5);
    cms.add('b', 0);
    expect(cms.estimate('a')).toBe(3);
    expect(cms.estimate('b')).toBe(0);
    expect(cms.count()).toBe(3);
    expect(cms.errorBound()).toBeCloseTo((3 * Math.E) / 1000, 12);
    expect(() => cms.add('a', -1)).toThrow(RangeError);
    expect(() => cms.add('a', NaN)).toThrow(RangeError);
    expect(() => cms.add('a', Infinity)).toThrow(RangeError);
    expect(cms.count()).toBe(3);
  });
});

describe('CountMinSketch sizing', () => {
  it('withError: width = ⌈e/ε⌉, depth = ⌈ln(1/δ)⌉', () => {
    const cms = CountMinSketch.withError(0.001, 0.01);
    expect(cms.width).toBe(2719);
    expect(cms.depth).toBe(5);
    expect(cms.epsilon).toBeLessThanOrEqual(0.001);
    expect(cms.delta).toBeLessThanOrEqual(0.01);
    expect(cms.byteSize).toBe(2719 * 5 * 8);
    expect(CountMinSketch.withError(0.0001, 0.001).depth).toBe(7);
    expect(() => CountMinSketch.withError(0, 0.1)).toThrow(RangeError);
    expect(() => CountMinSketch.withError(0.1, 1)).toThrow(RangeError);
    expect(() => new CountMinSketch(0, 1)).toThrow(RangeError);
    expect(() => new CountMinSketch(10, 65)).toThrow(RangeError);
  });
});

describe('CountMinSketch merge', () => {
  const xs = asStrings(zipfInts(50_000, 20_000, 1.1, 4));
  const ys = uniformInts(50_000, 20_000, 5);

  it('plain update: merging equals the sketch of the union, elementwise', () => {
    const a = new CountMinSketch(1000, 5, { conservative: false });
    const b = new CountMinSketch(1000, 5, { conservative: false });
    const union = new CountMinSketch(1000, 5, { conservative: false });
    xs.forEach((x) => (a.add(x), union.add(x)));
    ys.forEach((y) => (b.add(y), union.add(y)));
    a.merge(b);
    expect(a.equals(union)).toBe(true);
  });

  it('conservative update: merged estimates stay ≥ truth and ≤ the plain sketch of the union', () => {
    const a = new CountMinSketch(1000, 5);
    const b = new CountMinSketch(1000, 5);
    const plainUnion = new CountMinSketch(1000, 5, { conservative: false });
    xs.forEach((x) => (a.add(x), plainUnion.add(x)));
    ys.forEach((y) => (b.add(y), plainUnion.add(y)));
    a.merge(b);
    expect(a.count()).toBe(100_000);
    let under = 0;
    let abovePlain = 0;
    for (const [item, f] of frequencies<string | number>([...xs, ...ys])) {
      const e = a.estimate(item);
      if (e < f) under++;
      if (e > plainUnion.estimate(item)) abovePlain++;
    }
    expect(under).toBe(0);
    expect(abovePlain).toBe(0);
  });

  it('merge is commutative (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.oneof(fc.string(), fc.integer()), fc.nat(100))),
        fc.array(fc.tuple(fc.string(), fc.nat(100))),
        (xs2, ys2) => {
          const a = new CountMinSketch(64, 3);
          const b = new CountMinSketch(64, 3);
          xs2.forEach(([x, c]) => a.add(x, c));
          ys2.forEach(([y, c]) => b.add(y, c));
          expect(a.clone().merge(b).equals(b.clone().merge(a))).toBe(true);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('refuses mismatched parameters, naming both', () => {
    expect(() => new CountMinSketch(100, 4).merge(new CountMinSketch(101, 4))).toThrow(
      /this: width=100, depth=4, seed=\d+; other: width=101, depth=4, seed=\d+/,
    );
    expect(() => new CountMinSketch(100, 4).merge(new CountMinSketch(100, 5))).toThrow(/depth=4.*depth=5/);
    expect(() => new CountMinSketch(100, 4, { seed: 3 }).merge(new CountMinSketch(100, 4, { seed: 4 }))).toThrow(
      /seed=3.*seed=4/,
    );
  });

  it('clone is independent; clear resets', () => {
    const a = new CountMinSketch(100, 3);
    a.add('x', 5);
    const c = a.clone();
    c.add('x', 5);
    expect(a.estimate('x')).toBe(5);
    expect(c.estimate('x')).toBe(10);
    c.clear();
    expect(c.estimate('x')).toBe(0);
    expect(c.count()).toBe(0);
  });
});

describe('CountMinSketch serialization', () => {
  it('round-trips both update modes', () => {
    for (const conservative of [true, false]) {
      const cms = new CountMinSketch(300, 4, { conservative, seed: 12345 });
      for (const x of zipfInts(10_000, 5000, 1.1, 6)) cms.add(x, 1.5);
      const back = CountMinSketch.deserialize(cms.serialize());
      expect(back.equals(cms)).toBe(true);
      expect(back.conservative).toBe(conservative);
      expect(back.seed).toBe(12345);
      expect(back.count()).toBe(cms.count());
      expect(back.estimate(1)).toBe(cms.estimate(1));
    }
  });

  it('rejects wrong magic, version, truncation and bad fields', () => {
    const cms = new CountMinSketch(10, 2);
    cms.add('a');
    const bytes = cms.serialize();
    expect(() => CountMinSketch.deserialize(bytes.subarray(0, 8))).toThrow(/truncated/);
    expect(() => CountMinSketch.deserialize(bytes.subarray(0, bytes.length - 8))).toThrow(/truncated/);
    expect(() => CountMinSketch.deserialize(new Uint8Array([...bytes, 0]))).toThrow(/trailing/);
    const magic = bytes.slice();
    magic[1] = 0x4b;
    expect(() => CountMinSketch.deserialize(magic)).toThrow(/wrong magic byte 0x4b \(KllSketch\), expected 0xc1/);
    const version = bytes.slice();
    version[2] = 9;
    expect(() => CountMinSketch.deserialize(version)).toThrow(/version 9/);
    const flags = bytes.slice();
    flags[3] = 0x80;
    expect(() => CountMinSketch.deserialize(flags)).toThrow(/flags/);
    const huge = bytes.slice();
    new DataView(huge.buffer).setUint32(4, 0xffffffff, true); // width
    expect(() => CountMinSketch.deserialize(huge)).toThrow(/dimensions/);
    const negTotal = bytes.slice();
    new DataView(negTotal.buffer).setFloat64(16, -1, true);
    expect(() => CountMinSketch.deserialize(negTotal)).toThrow(/total weight/);
  });
});
