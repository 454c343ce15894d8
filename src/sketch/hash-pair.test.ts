import { describe, expect, it } from 'vitest';
import { hash32, hashPair } from '../util/hash.ts';
import { Rng, asStrings } from './test-data.ts';

const out = new Uint32Array(2);
const pair = (x: string | number, seed = 0): [number, number] => {
  hashPair(x, out, seed);
  return [out[0]!, out[1]!];
};

describe('hashPair (64-bit hash for sketches)', () => {
  it('is stable: golden values (a change would break serialized sketches and merges)', () => {
    expect(pair('')).toEqual([2462723854, 630480412]);
    expect(pair('a')).toEqual([777038007, 3981934676]);
    expect(pair('hello world')).toEqual([803690405, 4212938918]);
    expect(pair('🚀')).toEqual([1121984715, 3041419626]);
    expect(pair(0)).toEqual([2002310131, 2733681659]);
    expect(pair(-1)).toEqual([497870283, 3866818682]);
    expect(pair(0.5)).toEqual([2766158581, 1012003512]);
    expect(pair(1e300)).toEqual([2499105149, 3598767283]);
    expect(pair('abc', 42)).toEqual([2455312687, 4151667792]);
    expect(pair(1, 42)).toEqual([2897639689, 1486087483]);
  });

  it('leaves the existing 32-bit hashes unchanged (key groups depend on them)', () => {
    expect(hash32('')).toBe(0);
    expect(hash32('a')).toBe(1867108634);
    expect(hash32('hello world')).toBe(1689409188);
    expect(hash32(0)).toBe(1270938603);
    expect(hash32(0.5)).toBe(225346354);
    expect(hash32('abc', 0x5bd1e995)).toBe(1405879232);
    expect(hash32(-2147483648, 0x5bd1e995)).toBe(4290155914);
  });

  it('equal numbers hash equally (-0 and 0, 5 and 5.0, every NaN); strings and numbers differ', () => {
    expect(pair(-0)).toEqual(pair(0));
    expect(pair(5.0)).toEqual(pair(5));
    expect(pair('5')).not.toEqual(pair(5));
    const otherNaN = new Float64Array(new Uint32Array([1, 0xfff80000]).buffer)[0]!; // another payload
    expect(pair(otherNaN)).toEqual(pair(NaN));
    expect(pair('x', 1)).not.toEqual(pair('x', 2));
  });

  it('no 64-bit collisions among 300k keys; 32-bit halves collide only as often as chance allows', () => {
    const keys: Array<string | number> = [...asStrings(Array.from({ length: 200_000 }, (_, i) => i))];
    for (let i = 0; i < 100_000; i++) keys.push(i * 0.001);
    const full = new BigUint64Array(keys.length);
    const lo = new Uint32Array(keys.length);
    keys.forEach((k, i) => {
      hashPair(k, out, 0);
      full[i] = (BigInt(out[0]!) << 32n) | BigInt(out[1]!);
      lo[i] = out[0]!;
    });
    full.sort();
    lo.sort();
    let fullCollisions = 0;
    let halfCollisions = 0;
    for (let i = 1; i < keys.length; i++) {
      if (full[i] === full[i - 1]) fullCollisions++;
      if (lo[i] === lo[i - 1]) halfCollisions++;
    }
    expect(fullCollisions).toBe(0);
    // Expected 32-bit collisions: n²/2³³ ≈ 10.5; Poisson, so ≤ 30 with overwhelming probability.
    expect(halfCollisions).toBeLessThanOrEqual(30);
  });

  it('avalanche: flipping one input bit flips each output bit with probability ≈ 1/2', () => {
    const rng = new Rng(1);
    const trials = 2000;
    const flips = new Float64Array(64);
    for (let t = 0; t < trials; t++) {
      const x = rng.u32() | 0;
      const bit = 1 << rng.int(32);
      const [a1, a2] = pair(x);
      const [b1, b2] = pair(x ^ bit);
      const s = `k${x}`;
      const [c1, c2] = pair(s);
      const [d1, d2] = pair(s.slice(0, -1) + String.fromCharCode(s.charCodeAt(s.length - 1) ^ 1));
      for (let j = 0; j < 32; j++) {
        flips[j]! += ((a1 ^ b1) >>> j) & 1;
        flips[32 + j]! += ((a2 ^ b2) >>> j) & 1;
        flips[j]! += ((c1 ^ d1) >>> j) & 1;
        flips[32 + j]! += ((c2 ^ d2) >>> j) & 1;
      }
    }
    // 4000 Bernoulli(1/2) trials per bit: standard deviation 0.79%; allow ±5%.
    for (const f of flips) expect(Math.abs(f / (2 * trials) - 0.5)).toBeLessThan(0.05);
  });

  it('the two halves are uncorrelated', () => {
    // P(bit i of h1 = bit j of h2) ≈ 1/2 for all i, j, over 20k keys (sd 0.35%; allow ±2.5%).
    const agree = new Float64Array(32 * 32);
    const n = 20_000;
    for (let t = 0; t < n; t++) {
      const [h1, h2] = pair(t % 2 ? t : `key:${t}`);
      for (let i = 0; i < 32; i++) {
        const b = (h1 >>> i) & 1;
        for (let j = 0; j < 32; j++) agree[i * 32 + j]! += b ^ ((h2 >>> j) & 1) ^ 1;
      }
    }
    for (const a of agree) expect(Math.abs(a / n - 0.5)).toBeLessThan(0.025);
  });
});
