import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BloomFilter } from './bloom-filter.ts';
import { asStrings, uniformInts, zipfInts } from './test-data.ts';

/** Measured false-positive rate of `filter` over `probes` items that were never added. */
function measuredFpr(filter: BloomFilter, probes: ReadonlyArray<string | number>): number {
  let fp = 0;
  for (const x of probes) if (filter.has(x)) fp++;
  return fp / probes.length;
}

describe('BloomFilter accuracy', () => {
  const members = 100_000;
  const nonMembers = 100_000;

  it.each([0.01, 0.001])('strings: no false negatives, FPR near the configured %f', (p) => {
    const filter = BloomFilter.forCapacity(members, p);
    const ids = Array.from({ length: members + nonMembers }, (_, i) => i);
    const keys = asStrings(ids, 'k');
    for (let i = 0; i < members; i++) filter.add(keys[i]!);
    let falseNegatives = 0;
    for (let i = 0; i < members; i++) if (!filter.has(keys[i]!)) falseNegatives++;
    expect(falseNegatives).toBe(0);
    const fpr = measuredFpr(filter, keys.slice(members));
    // Configured rate p at capacity: the measured rate over 100k non-members is within [0.5p, 1.5p]...
    expect(fpr).toBeGreaterThanOrEqual(0.5 * p);
    expect(fpr).toBeLessThanOrEqual(1.5 * p);
    // ...and within 4 binomial standard deviations of the theoretical (1 − e^(−kn/m))^k.
    const theory = filter.expectedFalsePositiveRate(members);
    expect(Math.abs(fpr - theory)).toBeLessThanOrEqual(4 * Math.sqrt((theory * (1 - theory)) / nonMembers));
    // The rate implied by the bits actually set agrees with theory too.
    expect(filter.falsePositiveRate()).toBeCloseTo(theory, 3);
  });

  it('numbers (int and fractional): no false negatives, FPR near the configured rate', () => {
    const p = 0.02;
    const filter = BloomFilter.forCapacity(members, p);
    for (let i = 0; i < members; i++) filter.add(i % 2 === 0 ? i : i + 0.25);
    let falseNegatives = 0;
    for (let i = 0; i < members; i++) if (!filter.has(i % 2 === 0 ? i : i + 0.25)) falseNegatives++;
    expect(falseNegatives).toBe(0);
    const probes = Array.from({ length: nonMembers }, (_, i) => members + i + (i % 3 === 0 ? 0.5 : 0));
    const fpr = measuredFpr(filter, probes);
    const theory = filter.expectedFalsePositiveRate(members);
    expect(fpr).toBeGreaterThanOrEqual(0.5 * p);
    expect(fpr).toBeLessThanOrEqual(1.5 * p);
    expect(Math.abs(fpr - theory)).toBeLessThanOrEqual(4 * Math.sqrt((theory * (1 - theory)) / nonMembers));
  });

  it('Zipf(1.1) stream: duplicates do not count twice; FPR set by the distinct items', () => {
    const stream = zipfInts(300_000, 1_000_000, 1.1, 5);
    const distinct = new Set(stream);
    const filter = BloomFilter.forCapacity(distinct.size, 0.01);
    let firstSeen = 0;
    for (const x of stream) if (filter.add(x)) firstSeen++;
    // add() returns true only for items certainly new: never more than the distinct count.
    expect(firstSeen).toBeLessThanOrEqual(distinct.size);
    expect(firstSeen).toBeGreaterThan(distinct.size * 0.98);
    expect([...distinct].filter((x) => !filter.has(x))).toEqual([]);
    const probes = uniformInts(100_000, 1_000_000_000, 9).map((x) => x + 2_000_000);
    const fpr = measuredFpr(filter, probes);
    expect(fpr).toBeGreaterThanOrEqual(0.005);
    expect(fpr).toBeLessThanOrEqual(0.015);
    // count() estimates the distinct items added (Swamidass–Baldi), within 2% here.
    expect(Math.abs(filter.count() / distinct.size - 1)).toBeLessThan(0.02);
  });
});

describe('BloomFilter sizing', () => {
  it('forCapacity uses the optimal m and k', () => {
    const f = BloomFilter.forCapacity(1_000_000, 0.01);
    expect(f.bits).toBe(Math.ceil((1_000_000 * Math.log(100)) / Math.LN2 ** 2)); // 9,585,059
    expect(f.hashes).toBe(7);
    expect(f.byteSize).toBe(Math.ceil(f.bits / 32) * 4);
    expect(BloomFilter.forCapacity(100_000, 0.001).hashes).toBe(10);
    expect(f.expectedFalsePositiveRate(1_000_000)).toBeLessThanOrEqual(0.0101);
    expect(() => BloomFilter.forCapacity(0, 0.01)).toThrow(RangeError);
    expect(() => BloomFilter.forCapacity(10, 1)).toThrow(RangeError);
    expect(() => new BloomFilter(0, 3)).toThrow(RangeError);
    expect(() => new BloomFilter(100, 0)).toThrow(RangeError);
  });

  it('works with sizes that are not multiples of 32 and with a single bit', () => {
    const f = new BloomFilter(1, 3);
    expect(f.has('x')).toBe(false);
    f.add('x');
    expect(f.has('anything')).toBe(true);
    const g = new BloomFilter(33, 2);
    for (let i = 0; i < 10; i++) g.add(i);
    for (let i = 0; i < 10; i++) expect(g.has(i)).toBe(true);
    expect(BloomFilter.deserialize(g.serialize()).equals(g)).toBe(true);
  });
});

describe('BloomFilter pre-hashed probes', () => {
  it('addHashed / hasHashed with hashInto behave exactly like add / has (property)', () => {
    const item = fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true }));
    fc.assert(
      fc.property(fc.array(item, { maxLength: 200 }), fc.array(item, { maxLength: 200 }), fc.integer({ min: 1, max: 5000 }), fc.integer(), (added, probed, bits, seed) => {
        const plain = new BloomFilter(bits, 5, { seed });
        const hashed = new BloomFilter(bits, 5, { seed });
        const h = new Uint32Array(2);
        for (const x of added) {
          BloomFilter.hashInto(x, h, hashed.seed);
          expect(hashed.addHashed(h[0]!, h[1]!)).toBe(plain.add(x));
        }
        expect(hashed.equals(plain)).toBe(true);
        expect(hashed.bitCount()).toBe(plain.bitCount());
        for (const x of [...added, ...probed]) {
          BloomFilter.hashInto(x, h, seed);
          expect(hashed.hasHashed(h[0]!, h[1]!)).toBe(plain.has(x));
        }
      }),
      { seed: 11 },
    );
  });
});

describe('BloomFilter merge', () => {
  it('merging is bitwise equal to the filter of the union', () => {
    const a = BloomFilter.forCapacity(20_000, 0.01);
    const b = BloomFilter.forCapacity(20_000, 0.01);
    const union = BloomFilter.forCapacity(20_000, 0.01);
    for (const x of asStrings(uniformInts(10_000, 1e6, 1))) {
      a.add(x);
      union.add(x);
    }
    for (const x of zipfInts(10_000, 1e6, 1.1, 2)) {
      b.add(x);
      union.add(x);
    }
    a.merge(b);
    expect(a.equals(union)).toBe(true);
    expect(a.bitCount()).toBe(union.bitCount());
  });

  it('merge is commutative and idempotent, and never loses a member (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.double(), fc.integer())), fc.array(fc.string()), (xs, ys) => {
        const a = new BloomFilter(256, 3);
        const b = new BloomFilter(256, 3);
        xs.forEach((x) => a.add(x));
        ys.forEach((y) => b.add(y));
        const ab = a.clone().merge(b);
        expect(ab.equals(b.clone().merge(a))).toBe(true);
        expect(ab.clone().merge(ab).equals(ab)).toBe(true);
        for (const x of [...xs, ...ys]) expect(ab.has(x)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });

  it('refuses mismatched parameters, naming both', () => {
    expect(() => new BloomFilter(1000, 3).merge(new BloomFilter(1001, 3))).toThrow(
      /this: bits=1000, hashes=3, seed=\d+; other: bits=1001, hashes=3/,
    );
    expect(() => new BloomFilter(1000, 3).merge(new BloomFilter(1000, 4))).toThrow(/hashes=3.*hashes=4/);
    expect(() => new BloomFilter(1000, 3, { seed: 1 }).merge(new BloomFilter(1000, 3, { seed: 2 }))).toThrow(
      /seed=1.*seed=2/,
    );
  });

  it('clone is independent; clear empties', () => {
    const a = new BloomFilter(1000, 4);
    a.add('a');
    const c = a.clone();
    c.add('b');
    expect(a.has('b')).toBe(false);
    expect(c.has('b')).toBe(true);
    c.clear();
    expect(c.has('a')).toBe(false);
    expect(c.bitCount()).toBe(0);
  });
});

describe('BloomFilter serialization', () => {
  it('round-trips', () => {
    const f = BloomFilter.forCapacity(5000, 0.05, { seed: 7 });
    for (let i = 0; i < 5000; i++) f.add(`k${i}`);
    const bytes = f.serialize();
    expect([bytes[0], bytes[1], bytes[2]]).toEqual([0x53, 0xb1, 1]);
    const back = BloomFilter.deserialize(bytes);
    expect(back.equals(f)).toBe(true);
    expect(back.bitCount()).toBe(f.bitCount());
    expect(back.seed).toBe(7);
    expect(Array.from({ length: 5000 }, (_, i) => `k${i}`).every((k) => back.has(k))).toBe(true);
  });

  it('rejects wrong magic, truncation, trailing bytes and stray bits', () => {
    const f = new BloomFilter(40, 2);
    f.add(1);
    const bytes = f.serialize();
    expect(() => BloomFilter.deserialize(new Uint8Array(0))).toThrow(/truncated/);
    expect(() => BloomFilter.deserialize(bytes.subarray(0, 10))).toThrow(/truncated/);
    expect(() => BloomFilter.deserialize(bytes.subarray(0, bytes.length - 2))).toThrow(/truncated/);
    expect(() => BloomFilter.deserialize(new Uint8Array([...bytes, 1]))).toThrow(/trailing/);
    const magic = bytes.slice();
    magic[1] = 0x11;
    expect(() => BloomFilter.deserialize(magic)).toThrow(/wrong magic byte 0x11 \(HyperLogLog\), expected 0xb1/);
    const stray = bytes.slice();
    stray[stray.length - 1] = 0x80; // bit 63 of a 40-bit filter
    expect(() => BloomFilter.deserialize(stray)).toThrow(/beyond the filter size/);
  });
});
