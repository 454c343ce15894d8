import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SpaceSaving } from './space-saving.ts';
import { asStrings, exactTopK, frequencies, uniformInts, zipfInts } from './test-data.ts';

/** Checks every Space-Saving guarantee of `ss` against the exact frequencies; returns violations. */
function guaranteeViolations(ss: SpaceSaving, freq: Map<string | number, number>, n: number): string[] {
  const problems: string[] = [];
  const entries = ss.top();
  const tracked = new Set(entries.map((e) => e.item));
  let sum = 0;
  for (const { item, count, error } of entries) {
    const f = freq.get(item) ?? 0;
    // Theory: count − error ≤ true ≤ count, error ≤ N / capacity.
    if (!(count - error <= f && f <= count)) problems.push(`${item}: ${count}-${error} vs true ${f}`);
    if (error > n / ss.capacity) problems.push(`${item}: error ${error} > N/m`);
    sum += count;
  }
  if (sum > n + 1e-9) problems.push(`sum of counts ${sum} > N ${n}`);
  const min = ss.minCount();
  for (const [item, f] of freq) {
    if (tracked.has(item)) continue;
    // Theory: an untracked item's count is at most the minimum, hence at most N / capacity.
    if (f > min) problems.push(`untracked ${item} has ${f} > min ${min}`);
    if (f > n / ss.capacity) problems.push(`untracked heavy hitter ${item} (${f})`);
  }
  return problems;
}

function recall<T>(found: readonly T[], truth: readonly T[]): number {
  const f = new Set(found);
  return truth.filter((t) => f.has(t)).length / truth.length;
}

describe('SpaceSaving accuracy', () => {
  const n = 200_000;

  it('Zipf(1.1): recall of the true top-10 ≥ 0.9 with capacity 100; all guarantees hold', () => {
    const stream = asStrings(zipfInts(n, 100_000, 1.1, 1));
    const ss = new SpaceSaving(100);
    for (const x of stream) ss.add(x);
    const freq = frequencies<string | number>(stream);
    const truth = exactTopK(freq, 10);
    const top = ss.top(10);
    expect(top).toHaveLength(10);
    expect(recall(top.map((e) => e.item), truth)).toBeGreaterThanOrEqual(0.9);
    for (let i = 1; i < top.length; i++) expect(top[i]!.count).toBeLessThanOrEqual(top[i - 1]!.count);
    expect(guaranteeViolations(ss, freq, n)).toEqual([]);
    expect(ss.count()).toBe(n);
  });

  it('Zipf(1.1) numbers: recall of the true top-50 ≥ 0.9 with capacity 500', () => {
    const stream = zipfInts(n, 1_000_000, 1.1, 2);
    const ss = SpaceSaving.forTopK(50);
    expect(ss.capacity).toBe(500);
    for (const x of stream) ss.add(x);
    const freq = frequencies<string | number>(stream);
    expect(recall(ss.top(50).map((e) => e.item), exactTopK(freq, 50))).toBeGreaterThanOrEqual(0.9);
    expect(guaranteeViolations(ss, freq, n)).toEqual([]);
  });

  it('uniform data (no heavy hitters): every guarantee still holds', () => {
    const stream = uniformInts(n, 10_000, 3);
    const ss = new SpaceSaving(200);
    for (const x of stream) ss.add(x);
    expect(guaranteeViolations(ss, frequencies<string | number>(stream), n)).toEqual([]);
  });

  it('weighted updates keep the guarantees', () => {
    const items = zipfInts(20_000, 5000, 1.1, 4);
    const weights = uniformInts(20_000, 10, 5).map((w) => w + 0.5);
    const ss = new SpaceSaving(50);
    const freq = new Map<string | number, number>();
    let total = 0;
    items.forEach((x, i) => {
      ss.add(x, weights[i]!);
      freq.set(x, (freq.get(x) ?? 0) + weights[i]!);
      total += weights[i]!;
    });
    expect(ss.count()).toBeCloseTo(total, 6);
    expect(guaranteeViolations(ss, freq, total)).toEqual([]);
    expect(() => ss.add('x', -1)).toThrow(RangeError);
  });

  it('exact while not full; estimate and lowerBound bracket the truth', () => {
    const ss = new SpaceSaving(10);
    ['a', 'b', 'a', 1, 'a', 1].forEach((x) => ss.add(x));
    expect(ss.top()).toEqual([
      { item: 'a', count: 3, error: 0 },
      { item: 1, count: 2, error: 0 },
      { item: 'b', count: 1, error: 0 },
    ]);
    expect(ss.estimate('zzz')).toBe(0);
    expect(ss.estimate('1')).toBe(0); // the string '1' is not the number 1
    const full = new SpaceSaving(2);
    ['a', 'a', 'a', 'b', 'c'].forEach((x) => full.add(x));
    expect(full.estimate('c')).toBe(2); // replaced b: count 1 + 1, error 1
    expect(full.lowerBound('c')).toBe(1);
    expect(full.estimate('b')).toBe(2); // untracked: at most the minimum
    expect(full.lowerBound('b')).toBe(0);
  });
});

describe('SpaceSaving merge', () => {
  const stream = asStrings(zipfInts(200_000, 100_000, 1.1, 6));
  const freq = frequencies<string | number>(stream);

  it('merging 4 partial summaries keeps every guarantee and the top-10 recall', () => {
    const parts = Array.from({ length: 4 }, () => new SpaceSaving(100));
    stream.forEach((x, i) => parts[(i * 7919) % 4]!.add(x));
    const merged = parts[0]!.merge(parts[1]!).merge(parts[2]!.merge(parts[3]!));
    expect(merged.count()).toBe(stream.length);
    expect(guaranteeViolations(merged, freq, stream.length)).toEqual([]);
    expect(recall(merged.top(10).map((e) => e.item), exactTopK(freq, 10))).toBeGreaterThanOrEqual(0.9);
    // Updating after a merge keeps the guarantees too.
    const more = asStrings(zipfInts(50_000, 100_000, 1.1, 7));
    more.forEach((x) => merged.add(x));
    const all = frequencies<string | number>([...stream, ...more]);
    expect(guaranteeViolations(merged, all, stream.length + more.length)).toEqual([]);
  });

  it('disjoint streams: merged counts stay upper bounds (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 300 }),
        fc.array(fc.integer({ min: 20, max: 60 }), { maxLength: 300 }),
        fc.array(fc.integer({ min: 0, max: 60 }), { maxLength: 100 }),
        (xs, ys, zs) => {
          const a = new SpaceSaving(8);
          const b = new SpaceSaving(8);
          xs.forEach((x) => a.add(x));
          ys.forEach((y) => b.add(y));
          const m = a.merge(b);
          zs.forEach((z) => m.add(z));
          const all = [...xs, ...ys, ...zs];
          expect(guaranteeViolations(m, frequencies<string | number>(all), all.length)).toEqual([]);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses mismatched parameters, naming both', () => {
    expect(() => new SpaceSaving(100).merge(new SpaceSaving(50))).toThrow(/this: capacity=100; other: capacity=50/);
  });

  it('clone is independent; clear empties', () => {
    const a = new SpaceSaving(3);
    a.add('x');
    const c = a.clone();
    c.add('x');
    c.add('y');
    expect(a.estimate('x')).toBe(1);
    expect(c.estimate('x')).toBe(2);
    c.clear();
    expect(c.size).toBe(0);
    expect(c.top()).toEqual([]);
    c.add('z');
    expect(c.top()).toEqual([{ item: 'z', count: 1, error: 0 }]);
  });
});

describe('SpaceSaving serialization', () => {
  it('round-trips strings (any UTF-16, lone surrogates included) and numbers', () => {
    const ss = new SpaceSaving(6);
    const items: Array<string | number> = ['plain', 'emoji 🚀', '\ud800 lone', '', 0, -1.5, 1e300, 'plain', 0];
    items.forEach((x, i) => ss.add(x, i + 1));
    for (let i = 0; i < 20; i++) ss.add(`spill-${i % 5}`);
    const back = SpaceSaving.deserialize(ss.serialize());
    expect(back.equals(ss)).toBe(true);
    expect(back.top()).toEqual(ss.top());
    // The copy evolves identically (same heap order, same evictions).
    for (let i = 0; i < 50; i++) {
      ss.add(`next-${i % 9}`);
      back.add(`next-${i % 9}`);
    }
    expect(back.equals(ss)).toBe(true);
  });

  it('round-trips a large summary', () => {
    const ss = new SpaceSaving(1000);
    zipfInts(50_000, 20_000, 1.1, 8).forEach((x) => ss.add(x % 2 ? x : `s${x}`));
    expect(SpaceSaving.deserialize(ss.serialize()).equals(ss)).toBe(true);
  });

  it('rejects wrong magic, truncation and corrupt entries', () => {
    const ss = new SpaceSaving(4);
    ['a', 'b', 'a'].forEach((x) => ss.add(x));
    const bytes = ss.serialize();
    expect(() => SpaceSaving.deserialize(bytes.subarray(0, bytes.length - 1))).toThrow(/truncated/);
    expect(() => SpaceSaving.deserialize(bytes.subarray(0, 12))).toThrow(/truncated/);
    expect(() => SpaceSaving.deserialize(new Uint8Array([...bytes, 0]))).toThrow(/trailing/);
    const magic = bytes.slice();
    magic[1] = 0xb1;
    expect(() => SpaceSaving.deserialize(magic)).toThrow(/wrong magic byte 0xb1 \(BloomFilter\), expected 0x55/);
    const tag = bytes.slice();
    tag[4 + 16 + 16] = 7; // first entry's item tag
    expect(() => SpaceSaving.deserialize(tag)).toThrow(/unknown item tag 7/);
    const total = bytes.slice();
    new DataView(total.buffer).setFloat64(12, 1, true);
    expect(() => SpaceSaving.deserialize(total)).toThrow(/more than the total/);
    const tooMany = bytes.slice();
    new DataView(tooMany.buffer).setUint32(8, 5, true);
    expect(() => SpaceSaving.deserialize(tooMany)).toThrow(/5 entries for capacity 4/);
  });
});
