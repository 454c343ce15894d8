import { ByteReader, ByteWriter, HEADER_BYTES, SketchType, checkInt, checkSeed } from './binary.ts';

/**
 * Options of {@link KllSketch}.
 *
 * @example
 * ```ts
 * new KllSketch(200, { seed: 42 }); // reproducible compactions
 * ```
 */
export interface KllSketchOptions {
  /**
   * Seed of the sketch's coin flips (it compacts at random). Equal seeds and equal inputs give
   * identical sketches, so a job restored from a checkpoint and replayed reproduces its sketch.
   * Sketches with different seeds merge freely. Default 1.
   */
  seed?: number;
}

const FORMAT_VERSION = 1;
/** Minimum capacity of a level (DataSketches' `m`). */
const MIN_LEVEL_CAPACITY = 8;
const MIN_K = 8;
const MAX_K = 65535;
/** Levels needed for any weight up to 2⁵³ plus compaction headroom. */
const MAX_LEVELS = 61;
const DEFAULT_DELTA = 0.01;
const POW3 = Array.from({ length: 31 }, (_, i) => 3 ** i);
const POW2 = Float64Array.from({ length: MAX_LEVELS + 1 }, (_, i) => 2 ** i);
const POW4 = Float64Array.from({ length: MAX_LEVELS + 1 }, (_, i) => 4 ** i);

/**
 * Upper bound of `sup_n V·k²/n²`, where `V = Σ 4^h` over the compactions of a sketch with
 * parameter `k` after `n` unit updates (see {@link KllSketch.rankError}). Measured exactly (the
 * compaction schedule depends only on `n` and `k`, not on the values) for k from 8 to 4096 and n
 * up to 2·10⁷ (2.5·10⁸ for k = 64 and 200): the supremum is 0.35 at k = 8, 0.76–0.80 for
 * k in [24, 4096], and 0.822 at k = 200; rounded up with a margin.
 */
const VARIANCE_CONSTANT = 0.85;

/**
 * Capacity of level `height` in a sketch with `numLevels` levels: max(m, round(k·(2/3)^depth)),
 * depth = distance from the top level, in exact integer arithmetic (as Apache DataSketches).
 */
function levelCapacity(k: number, numLevels: number, height: number): number {
  const depth = numLevels - height - 1;
  if (depth > 30) return MIN_LEVEL_CAPACITY;
  const cap = Math.floor(((2 * k * 2 ** depth) / POW3[depth]! + 1) / 2);
  return cap > MIN_LEVEL_CAPACITY ? cap : MIN_LEVEL_CAPACITY;
}

function totalCapacity(k: number, numLevels: number): number {
  let total = 0;
  for (let h = 0; h < numLevels; h++) total += levelCapacity(k, numLevels, h);
  return total;
}

/** Sorts items[from, to) ascending: insertion sort for short ranges (no allocation), else native. */
function sortRange(items: Float64Array, from: number, to: number): void {
  if (to - from > 48) {
    items.subarray(from, to).sort();
    return;
  }
  for (let i = from + 1; i < to; i++) {
    const v = items[i]!;
    let j = i - 1;
    while (j >= from && items[j]! > v) {
      items[j + 1] = items[j]!;
      j--;
    }
    items[j + 1] = v;
  }
}

/** Merges sorted a[aBeg, aBeg+aLen) and b[bBeg, bBeg+bLen) into dst from dBeg (dst may overlap b's tail). */
function mergeSorted(
  a: Float64Array,
  aBeg: number,
  aLen: number,
  b: Float64Array,
  bBeg: number,
  bLen: number,
  dst: Float64Array,
  dBeg: number,
): void {
  const aLim = aBeg + aLen;
  const bLim = bBeg + bLen;
  let i = aBeg;
  let j = bBeg;
  let d = dBeg;
  while (i < aLim && j < bLim) {
    const x = a[i]!;
    const y = b[j]!;
    if (y < x) {
      dst[d++] = y;
      j++;
    } else {
      dst[d++] = x;
      i++;
    }
  }
  while (i < aLim) dst[d++] = a[i++]!;
  while (j < bLim) dst[d++] = b[j++]!;
}

/**
 * KLL quantile sketch (Karnin, Lang & Liberty, 2016), laid out as in Apache DataSketches: all
 * retained values in one `Float64Array`, levels of weight 2^h side by side, lazy compaction with
 * level capacities k·(2/3)^depth (at least 8).
 *
 * **Why KLL and not t-digest.** KLL's rank error has a proven, data-independent bound: it does
 * not depend on the values' distribution or arrival order, only on `k` and the stream length,
 * and it survives merging in any order. That is what lets Spate document (and test) an error
 * bound for every windowed, merged-across-workers quantile. t-digest is usually more accurate in
 * the extreme tails, but its error has no worst-case guarantee and depends on the data and the
 * merge order.
 *
 * **Error bound.** For any value `x`, the estimated rank differs from the true rank by
 * `Σ ±2^h` — one zero-mean term per compaction of level `h` (the random choice of which half of
 * the level survives) — so by the Azuma–Hoeffding inequality, with `n` the stream length,
 * `|rank(x) − trueRank(x)| ≤ min(S, √(2·V·ln(2/δ))) / n` with probability ≥ 1 − δ, where
 * `V = Σ 4^h` and `S = Σ 2^h` over the sketch's compactions. {@link KllSketch.rankError} returns this
 * bound for the current sketch (exact bookkeeping of its compactions, not an empirical fit;
 * merging adds both sides' `V` and `S`), and {@link KllSketch.rankErrorFor} its maximum over all
 * stream lengths, `√(2·0.85·ln(2/δ)) / k`: 1.50% at δ = 1% for the default k = 200 (which keeps
 * about 600 values, 5 KiB, at n = 10⁶). `quantile(q)` returns a retained value whose true rank
 * is within the bound (plus 1/n) of `q` with probability ≥ 1 − 2δ. The minimum and maximum are
 * exact. The bound does not depend on the data's distribution or order.
 *
 * Adding a value allocates nothing in the steady state: compactions work in place (short level-0
 * runs are insertion-sorted; only the long runs of a young sketch use the native sort through a
 * view object), and the buffer grows O(log n) times.
 *
 * @example
 * ```ts
 * const latency = new KllSketch(200);
 * for (const ms of samples) latency.add(ms);
 * latency.quantile(0.99); // p99: true rank within ±latency.rankError() (≤ 1.5%) of 0.99
 * latency.rank(250); // fraction of samples ≤ 250 ms
 * ```
 */
export class KllSketch {
  /** Accuracy parameter: capacity of the top level; rank error ∝ 1/k. */
  readonly k: number;
  private items: Float64Array;
  /** Level h occupies items[levels[h], levels[h+1]); free space is [0, levels[0]). */
  private readonly levels = new Int32Array(MAX_LEVELS + 1);
  /** Capacity of each level for the current number of levels. */
  private readonly caps = new Int32Array(MAX_LEVELS);
  private numLevels = 1;
  private n = 0;
  private minValue = Infinity;
  private maxValue = -Infinity;
  /** Σ 4^h over all compactions (in this sketch and everything merged into it). */
  private variance = 0;
  /** Σ 2^h over all compactions: a deterministic bound on the absolute rank error. */
  private worstCase = 0;
  private rng: number;
  private sortedValues: Float64Array | null = null;
  private sortedCumulative: Float64Array | null = null;

  /**
   * A sketch with accuracy parameter `k` (an integer in [8, 65535], default 200). See
   * {@link KllSketch.withError} to size it from a rank error.
   */
  constructor(k = 200, options: KllSketchOptions = {}) {
    this.k = checkInt('KllSketch k', k, MIN_K, MAX_K);
    this.rng = checkSeed(options.seed ?? 1) || 0x9e3779b9;
    const cap = levelCapacity(k, 1, 0);
    this.items = new Float64Array(cap);
    this.levels[0] = cap;
    this.levels[1] = cap;
    this.updateCapacities();
  }

  private updateCapacities(): void {
    for (let h = 0; h < this.numLevels; h++) this.caps[h] = levelCapacity(this.k, this.numLevels, h);
  }

  /**
   * The smallest sketch whose rank error is at most `rankError` with probability ≥ 1 − `delta`
   * (default 0.01) at every stream length: k = ⌈√(2·0.85·ln(2/δ)) / ε⌉.
   *
   * @example
   * ```ts
   * KllSketch.withError(0.01).k; // 301
   * ```
   */
  static withError(rankError: number, delta = DEFAULT_DELTA, options: KllSketchOptions = {}): KllSketch {
    if (!(rankError > 0 && rankError < 1)) throw new RangeError(`rankError must be in (0, 1), got ${rankError}`);
    if (!(delta > 0 && delta < 1)) throw new RangeError(`delta must be in (0, 1), got ${delta}`);
    const k = Math.max(MIN_K, Math.ceil(Math.sqrt(2 * VARIANCE_CONSTANT * Math.log(2 / delta)) / rankError));
    if (k > MAX_K) {
      throw new RangeError(`KllSketch.withError: rank error ${rankError} needs k = ${k}, above the maximum ${MAX_K}`);
    }
    return new KllSketch(k, options);
  }

  /**
   * The a-priori rank-error bound of a sketch with parameter `k`, valid at every stream length
   * with probability ≥ 1 − `delta`: `√(2·0.85·ln(2/δ)) / k` (0.0150 for k = 200, δ = 0.01).
   */
  static rankErrorFor(k: number, delta = DEFAULT_DELTA): number {
    return Math.sqrt(2 * VARIANCE_CONSTANT * Math.log(2 / delta)) / k;
  }

  /**
   * The rank-error bound of this sketch as it is now: with probability ≥ 1 − `delta` (default
   * 0.01), for any fixed value `x`, `|rank(x) − trueRank(x)| ≤ rankError(delta)`; 0 while the
   * sketch is exact (no compaction yet).
   */
  rankError(delta = DEFAULT_DELTA): number {
    if (!(delta > 0 && delta < 1)) throw new RangeError(`delta must be in (0, 1), got ${delta}`);
    if (this.n === 0) return 0;
    return Math.min(this.worstCase, Math.sqrt(2 * this.variance * Math.log(2 / delta))) / this.n;
  }

  /** Bytes of the value buffer (8 bytes per slot, free slots included). */
  get byteSize(): number {
    return this.items.byteLength;
  }

  /** Number of values currently retained. */
  get retained(): number {
    return this.levels[this.numLevels]! - this.levels[0]!;
  }

  /** Smallest value added (exact); NaN when empty. */
  get min(): number {
    return this.n === 0 ? NaN : this.minValue;
  }

  /** Largest value added (exact); NaN when empty. */
  get max(): number {
    return this.n === 0 ? NaN : this.maxValue;
  }

  /** Total weight added (the number of values, counting weights). */
  count(): number {
    return this.n;
  }

  /** True when nothing was added. */
  isEmpty(): boolean {
    return this.n === 0;
  }

  private nextBit(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return x >>> 31;
  }

  /**
   * Adds `value` with weight `count` (a positive integer, default 1). NaN is ignored (it has no
   * rank). Weight 1 allocates nothing; a weight `w > 1` is inserted exactly as one value per set
   * bit of `w`, at the level of that bit.
   */
  add(value: number, count = 1): void {
    if (value !== value) return; // NaN
    if (count !== 1) {
      this.addWeighted(value, count);
      return;
    }
    if (this.levels[0] === 0) this.compressWhileUpdating();
    this.n++;
    const pos = --this.levels[0]!;
    this.items[pos] = value;
    if (value < this.minValue) this.minValue = value;
    if (value > this.maxValue) this.maxValue = value;
    this.sortedValues = null;
  }

  private addWeighted(value: number, count: number): void {
    if (!(Number.isInteger(count) && count >= 0 && count <= Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(`KllSketch.add: count must be a non-negative safe integer, got ${count}`);
    }
    if (count === 0) return;
    let rest = count;
    for (let h = 0; rest > 0; h++) {
      const bit = rest % 2;
      rest = (rest - bit) / 2;
      if (bit === 0) continue;
      if (h === 0) {
        this.add(value);
        continue;
      }
      while (this.numLevels <= h) this.addEmptyTopLevel();
      if (this.levels[0] === 0) this.compressWhileUpdating();
      // Insert into the sorted level h: shift everything below the insertion point left by one.
      const items = this.items;
      const levels = this.levels;
      let lo = levels[h]!;
      let hi = levels[h + 1]!;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (items[mid]! <= value) lo = mid + 1;
        else hi = mid;
      }
      const start = levels[0]!;
      items.copyWithin(start - 1, start, lo);
      items[lo - 1] = value;
      for (let l = 0; l <= h; l++) levels[l]!--;
      this.n += 2 ** h;
    }
    if (value < this.minValue) this.minValue = value;
    if (value > this.maxValue) this.maxValue = value;
    this.sortedValues = null;
  }

  private findLevelToCompact(): number {
    const levels = this.levels;
    for (let h = 0; ; h++) {
      if (levels[h + 1]! - levels[h]! >= this.caps[h]!) return h;
      if (h >= this.numLevels - 1) {
        throw new Error('KllSketch: internal error: no level to compact');
      }
    }
  }

  /** Grows the buffer by the capacity of a new bottom level and adds an empty top level. */
  private addEmptyTopLevel(): void {
    if (this.numLevels >= MAX_LEVELS) throw new Error('KllSketch: too many levels');
    const curTotal = this.levels[this.numLevels]!;
    const delta = levelCapacity(this.k, this.numLevels + 1, 0);
    const items = new Float64Array(curTotal + delta);
    const start = this.levels[0]!;
    items.set(this.items.subarray(start, curTotal), start + delta);
    this.items = items;
    for (let h = 0; h <= this.numLevels; h++) this.levels[h]! += delta;
    this.numLevels++;
    this.levels[this.numLevels] = curTotal + delta;
    this.updateCapacities();
  }

  /** Compacts the lowest full level into the next one, in place (DataSketches' algorithm). */
  private compressWhileUpdating(): void {
    const level = this.findLevelToCompact();
    if (level === this.numLevels - 1) this.addEmptyTopLevel();
    const items = this.items;
    const levels = this.levels;
    const rawBeg = levels[level]!;
    const rawLim = levels[level + 1]!;
    const popAbove = levels[level + 2]! - rawLim;
    const rawPop = rawLim - rawBeg;
    const odd = rawPop & 1;
    const adjBeg = rawBeg + odd;
    const adjPop = rawPop - odd;
    const half = adjPop >>> 1;
    if (level === 0) sortRange(items, adjBeg, adjBeg + adjPop);
    const offset = this.nextBit();
    if (popAbove === 0) {
      // Keep every other value, writing into the upper half of the range (backwards).
      let j = adjBeg + adjPop - 1 - offset;
      for (let i = adjBeg + adjPop - 1; i >= adjBeg + half; i--) {
        items[i] = items[j]!;
        j -= 2;
      }
    } else {
      // Keep every other value in the lower half, then merge it with the level above.
      let j = adjBeg + offset;
      for (let i = adjBeg; i < adjBeg + half; i++) {
        items[i] = items[j]!;
        j += 2;
      }
      mergeSorted(items, adjBeg, half, items, rawLim, popAbove, items, adjBeg + half);
    }
    levels[level + 1]! -= half;
    if (odd) {
      levels[level] = levels[level + 1]! - 1;
      if (levels[level] !== rawBeg) items[levels[level]!] = items[rawBeg]!;
    } else {
      levels[level] = levels[level + 1]!;
    }
    if (level > 0) {
      const start = levels[0]!;
      items.copyWithin(start + half, start, rawBeg);
      for (let l = 0; l < level; l++) levels[l]! += half;
    }
    this.variance += POW4[level]!;
    this.worstCase += POW2[level]!;
  }

  /** The retained values of each level (level 0 unsorted, the others sorted), as copies. */
  private levelArrays(): Float64Array[] {
    const out: Float64Array[] = [];
    for (let h = 0; h < this.numLevels; h++) {
      out.push(this.items.slice(this.levels[h]!, this.levels[h + 1]!));
    }
    return out;
  }

  /**
   * Rebuilds the buffer from per-level arrays, compacting until the values fit the capacities
   * (DataSketches' general compression, used by merge).
   */
  private rebuild(lv: Float64Array[]): void {
    let numLevels = lv.length;
    let target = totalCapacity(this.k, numLevels);
    let total = 0;
    for (const a of lv) total += a.length;
    while (total >= target) {
      for (let h = 0; h < numLevels; h++) {
        const pop = lv[h]!.length;
        if (total < target || pop < levelCapacity(this.k, numLevels, h)) continue;
        if (h === numLevels - 1) {
          if (numLevels >= MAX_LEVELS) throw new Error('KllSketch: too many levels');
          lv.push(new Float64Array(0));
          numLevels++;
          target += levelCapacity(this.k, numLevels, 0);
        }
        const cur = lv[h]!;
        if (h === 0) cur.sort();
        const odd = pop & 1;
        const half = (pop - odd) >>> 1;
        const offset = this.nextBit();
        const kept = new Float64Array(half);
        for (let i = 0, j = odd + offset; i < half; i++, j += 2) kept[i] = cur[j]!;
        const above = lv[h + 1]!;
        const merged = new Float64Array(half + above.length);
        mergeSorted(kept, 0, half, above, 0, above.length, merged, 0);
        lv[h + 1] = merged;
        lv[h] = odd ? cur.slice(0, 1) : new Float64Array(0);
        total -= half;
        this.variance += 4 ** h;
        this.worstCase += 2 ** h;
      }
    }
    const items = new Float64Array(target);
    let pos = target - total;
    for (let h = 0; h < numLevels; h++) {
      this.levels[h] = pos;
      items.set(lv[h]!, pos);
      pos += lv[h]!.length;
    }
    this.levels[numLevels] = pos;
    this.numLevels = numLevels;
    this.items = items;
    this.sortedValues = null;
    this.updateCapacities();
  }

  /**
   * Merges `other` into this sketch (in place) and returns `this`. Both must have the same `k`;
   * otherwise throws an Error naming both parameter sets. The merged sketch's bound
   * ({@link KllSketch.rankError}) accounts for the compactions of both inputs and of the merge.
   */
  merge(other: KllSketch): this {
    if (!(other instanceof KllSketch) || other.k !== this.k) {
      const theirs = other instanceof KllSketch ? `k=${other.k}` : String(other);
      throw new Error(`KllSketch.merge: parameters differ (this: k=${this.k}; other: ${theirs})`);
    }
    if (other.n === 0) return this;
    const a = this.levelArrays();
    const b = other.levelArrays();
    const lv: Float64Array[] = [];
    for (let h = 0; h < Math.max(a.length, b.length); h++) {
      const x = a[h] ?? new Float64Array(0);
      const y = b[h] ?? new Float64Array(0);
      const m = new Float64Array(x.length + y.length);
      if (h === 0) {
        m.set(x);
        m.set(y, x.length);
      } else {
        mergeSorted(x, 0, x.length, y, 0, y.length, m, 0);
      }
      lv.push(m);
    }
    this.n += other.n;
    this.variance += other.variance;
    this.worstCase += other.worstCase;
    if (other.minValue < this.minValue) this.minValue = other.minValue;
    if (other.maxValue > this.maxValue) this.maxValue = other.maxValue;
    this.rebuild(lv);
    return this;
  }

  /** Builds (once per change) the sorted values and their cumulative weights. */
  private sortedView(): { values: Float64Array; cumulative: Float64Array } {
    if (this.sortedValues !== null && this.sortedCumulative !== null) {
      return { values: this.sortedValues, cumulative: this.sortedCumulative };
    }
    const total = this.retained;
    let values = new Float64Array(total);
    let weights = new Float64Array(total);
    let scratchV = new Float64Array(total);
    let scratchW = new Float64Array(total);
    let len = 0;
    for (let h = 0; h < this.numLevels; h++) {
      const beg = this.levels[h]!;
      const lim = this.levels[h + 1]!;
      const pop = lim - beg;
      if (pop === 0) continue;
      const run = this.items.slice(beg, lim);
      if (h === 0) run.sort();
      const w = 2 ** h;
      // Merge (values, weights)[0, len) with the run into the scratch arrays, then swap.
      let i = 0;
      let j = 0;
      let d = 0;
      while (i < len && j < pop) {
        if (run[j]! < values[i]!) {
          scratchV[d] = run[j++]!;
          scratchW[d++] = w;
        } else {
          scratchV[d] = values[i]!;
          scratchW[d++] = weights[i++]!;
        }
      }
      while (i < len) {
        scratchV[d] = values[i]!;
        scratchW[d++] = weights[i++]!;
      }
      while (j < pop) {
        scratchV[d] = run[j++]!;
        scratchW[d++] = w;
      }
      [values, scratchV] = [scratchV, values];
      [weights, scratchW] = [scratchW, weights];
      len = d;
    }
    let acc = 0;
    for (let i = 0; i < len; i++) {
      acc += weights[i]!;
      weights[i] = acc;
    }
    this.sortedValues = values;
    this.sortedCumulative = weights;
    return { values, cumulative: weights };
  }

  /**
   * The value at normalized rank `q` ∈ [0, 1]: the smallest retained value whose estimated
   * rank (fraction of the weight ≤ it) is at least `q`; `quantile(0)` and `quantile(1)` are the
   * exact minimum and maximum. NaN when the sketch is empty.
   */
  quantile(q: number): number {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`KllSketch.quantile: q must be in [0, 1], got ${q}`);
    if (this.n === 0) return NaN;
    if (q === 0) return this.minValue;
    if (q === 1) return this.maxValue;
    const { values, cumulative } = this.sortedView();
    const target = q * this.n;
    let lo = 0;
    let hi = values.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cumulative[mid]! < target) lo = mid + 1;
      else hi = mid;
    }
    return values[lo]!;
  }

  /** {@link KllSketch.quantile} at each of `qs`. */
  quantiles(qs: readonly number[]): number[] {
    return qs.map((q) => this.quantile(q));
  }

  /**
   * Estimated normalized rank of `x`: the fraction of the added weight that is ≤ `x`, within
   * {@link KllSketch.rankError} of the truth. NaN when the sketch is empty.
   */
  rank(x: number): number {
    if (this.n === 0) return NaN;
    if (x < this.minValue) return 0;
    if (x >= this.maxValue) return 1;
    const { values, cumulative } = this.sortedView();
    let lo = 0;
    let hi = values.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (values[mid]! <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? 0 : cumulative[lo - 1]! / this.n;
  }

  /** The cumulative distribution at each point: `points.map(x => rank(x))`. */
  cdf(points: readonly number[]): number[] {
    return points.map((x) => this.rank(x));
  }

  /** An independent copy (including the coin-flip state). */
  clone(): KllSketch {
    const copy = new KllSketch(this.k);
    copy.items = this.items.slice();
    copy.levels.set(this.levels);
    copy.numLevels = this.numLevels;
    copy.caps.set(this.caps);
    copy.n = this.n;
    copy.minValue = this.minValue;
    copy.maxValue = this.maxValue;
    copy.variance = this.variance;
    copy.worstCase = this.worstCase;
    copy.rng = this.rng;
    return copy;
  }

  /** Empties the sketch, keeping `k` and the coin-flip state. */
  clear(): void {
    const cap = levelCapacity(this.k, 1, 0);
    this.items = new Float64Array(cap);
    this.levels.fill(0);
    this.levels[0] = cap;
    this.levels[1] = cap;
    this.numLevels = 1;
    this.updateCapacities();
    this.n = 0;
    this.minValue = Infinity;
    this.maxValue = -Infinity;
    this.variance = 0;
    this.worstCase = 0;
    this.sortedValues = null;
  }

  /** True when `other` has the same `k`, state and retained values (level by level). */
  equals(other: KllSketch): boolean {
    if (
      other.k !== this.k ||
      other.n !== this.n ||
      other.numLevels !== this.numLevels ||
      other.variance !== this.variance ||
      other.worstCase !== this.worstCase ||
      other.rng !== this.rng ||
      !Object.is(other.min, this.min) ||
      !Object.is(other.max, this.max)
    ) {
      return false;
    }
    for (let h = 0; h < this.numLevels; h++) {
      const a = this.items.subarray(this.levels[h]!, this.levels[h + 1]!);
      const b = other.items.subarray(other.levels[h]!, other.levels[h + 1]!);
      if (a.length !== b.length) return false;
      for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
    }
    return true;
  }

  /**
   * Binary form: header (magic `0x4B`, version 1), then k (u32), number of levels (u32), total
   * weight n (f64), min (f64), max (f64), the variance sum V (f64), the coin-flip state (u32),
   * the population of each level (u32 each, bottom first) and the retained values (f64, level 0
   * first), all little-endian. Free buffer space is not written.
   */
  serialize(): Uint8Array {
    const retained = this.retained;
    const w = new ByteWriter(
      HEADER_BYTES + 8 + 40 + 4 + 4 * this.numLevels + 8 * retained,
      SketchType.KllSketch,
      FORMAT_VERSION,
    );
    w.u32(this.k);
    w.u32(this.numLevels);
    w.f64(this.n);
    w.f64(this.minValue);
    w.f64(this.maxValue);
    w.f64(this.variance);
    w.f64(this.worstCase);
    w.u32(this.rng);
    for (let h = 0; h < this.numLevels; h++) w.u32(this.levels[h + 1]! - this.levels[h]!);
    w.array(this.items.subarray(this.levels[0]!, this.levels[this.numLevels]!));
    return w.finish();
  }

  /**
   * Rebuilds a sketch from {@link KllSketch.serialize}'s output; throws on malformed input
   * (including levels whose weights do not add up to n, or unsorted levels).
   */
  static deserialize(bytes: Uint8Array): KllSketch {
    const r: ByteReader = new ByteReader(bytes, SketchType.KllSketch, [FORMAT_VERSION]);
    if (r.flags !== 0) r.fail(`unknown flags ${r.flags}`);
    const k = r.u32('k');
    const numLevels = r.u32('number of levels');
    if (k < MIN_K || k > MAX_K) r.fail(`invalid k ${k}`);
    if (numLevels < 1 || numLevels > MAX_LEVELS) r.fail(`invalid number of levels ${numLevels}`);
    const n = r.f64('n');
    const min = r.f64('min');
    const max = r.f64('max');
    const variance = r.f64('variance');
    const worstCase = r.f64('worst-case error');
    const rng = r.u32('coin-flip state');
    if (!(Number.isInteger(n) && n >= 0 && n <= Number.MAX_SAFE_INTEGER)) r.fail(`invalid n ${n}`);
    if (!(variance >= 0 && variance !== Infinity)) r.fail(`invalid variance ${variance}`);
    if (!(worstCase >= 0 && worstCase * worstCase >= variance * (1 - 1e-9))) r.fail(`invalid worst-case error ${worstCase}`);
    if (rng === 0) r.fail('invalid coin-flip state 0');
    const pops: number[] = [];
    let retained = 0;
    let weight = 0;
    for (let h = 0; h < numLevels; h++) {
      const pop = r.u32(`population of level ${h}`);
      pops.push(pop);
      retained += pop;
      weight += pop * 2 ** h;
    }
    if (weight !== n) r.fail(`level weights add up to ${weight}, not n = ${n}`);
    const capacity = totalCapacity(k, numLevels);
    if (retained > capacity) r.fail(`${retained} values exceed the capacity ${capacity}`);
    r.expectRemaining(8 * retained, 'values');
    const sketch = new KllSketch(k, { seed: rng });
    sketch.items = new Float64Array(capacity);
    let pos = capacity - retained;
    r.array(sketch.items.subarray(pos), 'values');
    r.end();
    for (let h = 0; h < numLevels; h++) {
      sketch.levels[h] = pos;
      const lim = pos + pops[h]!;
      for (let i = pos; i < lim; i++) {
        const v = sketch.items[i]!;
        if (!(v >= min && v <= max)) r.fail(`value ${v} outside [min, max] = [${min}, ${max}]`);
        if (h > 0 && i > pos && v < sketch.items[i - 1]!) r.fail(`level ${h} is not sorted`);
      }
      pos = lim;
    }
    sketch.levels[numLevels] = pos;
    sketch.numLevels = numLevels;
    sketch.updateCapacities();
    sketch.n = n;
    sketch.minValue = n === 0 ? Infinity : min;
    sketch.maxValue = n === 0 ? -Infinity : max;
    sketch.variance = variance;
    sketch.worstCase = worstCase;
    sketch.rng = rng;
    return sketch;
  }
}
