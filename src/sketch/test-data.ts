/**
 * Deterministic test data for the sketch tests and benchmark: a seeded PRNG, uniform and Zipf
 * samplers, and exact answers to compare sketches with. Not part of the public API.
 */

/** Seeded PRNG: xoshiro128** seeded through splitmix32. Deterministic across platforms. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() || 1;
  }

  /** Uniform unsigned 32-bit integer. */
  u32(): number {
    const result = Math.imul(((Math.imul(this.b, 5) << 7) | (Math.imul(this.b, 5) >>> 25)), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = (this.d << 11) | (this.d >>> 21);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    return ((this.u32() >>> 5) * 67108864 + (this.u32() >>> 6)) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

/** Samples ranks 1..n with P(r) ∝ 1/r^s by binary search over the exact CDF. */
export class Zipf {
  private readonly cdf: Float64Array;

  constructor(
    readonly n: number,
    readonly s: number,
  ) {
    const cdf = new Float64Array(n);
    let acc = 0;
    for (let r = 1; r <= n; r++) {
      acc += 1 / Math.pow(r, s);
      cdf[r - 1] = acc;
    }
    for (let i = 0; i < n; i++) cdf[i]! /= acc;
    cdf[n - 1] = 1;
    this.cdf = cdf;
  }

  /** A rank in [1, n]. */
  sample(rng: Rng): number {
    const u = rng.next();
    const cdf = this.cdf;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  }
}

/** `count` Zipf(s)-distributed ranks over [1, universe]. */
export function zipfInts(count: number, universe: number, s: number, seed: number): number[] {
  const rng = new Rng(seed);
  const z = new Zipf(universe, s);
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) out[i] = z.sample(rng);
  return out;
}

/** `count` uniform integers over [0, universe). */
export function uniformInts(count: number, universe: number, seed: number): number[] {
  const rng = new Rng(seed);
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) out[i] = rng.int(universe);
  return out;
}

/** Maps integer ids to distinct strings (`prefix` + scrambled id) the way keys look in practice. */
export function asStrings(ids: readonly number[], prefix = 'user-'): string[] {
  return ids.map((id) => `${prefix}${id.toString(36)}-${(Math.imul(id, 0x9e3779b1) >>> 0).toString(16)}`);
}

/** Exact frequency of every item. */
export function frequencies<T>(items: readonly T[]): Map<T, number> {
  const m = new Map<T, number>();
  for (const x of items) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

/** The `k` most frequent items (ties broken by first appearance). */
export function exactTopK<T>(freq: Map<T, number>, k: number): T[] {
  return [...freq.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([item]) => item);
}

/**
 * Exact rank interval of `v` in ascending `sorted`: [fraction < v, fraction ≤ v]. With ties a
 * value's "true rank" is any point of this interval.
 */
export function rankInterval(sorted: Float64Array, v: number): [number, number] {
  const n = sorted.length;
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  const below = lo;
  hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= v) lo = mid + 1;
    else hi = mid;
  }
  return [below / n, lo / n];
}

/** Distance from `q` to the interval `[a, b]` (0 inside). */
export function distanceToInterval(q: number, [a, b]: [number, number]): number {
  return q < a ? a - q : q > b ? q - b : 0;
}
