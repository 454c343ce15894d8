import { fmix32, hashPair } from '../util/hash.ts';
import {
  ByteReader,
  ByteWriter,
  DEFAULT_SKETCH_SEED,
  HEADER_BYTES,
  SketchType,
  checkInt,
  checkSeed,
} from './binary.ts';

/**
 * Options of {@link CountMinSketch}.
 *
 * @example
 * ```ts
 * new CountMinSketch(2719, 5, { conservative: false, seed: 7 });
 * ```
 */
export interface CountMinSketchOptions {
  /**
   * Conservative update (Estan & Varghese): on `add`, raise each of the item's counters only as
   * far as the new minimum requires, instead of adding to all of them. Never less accurate than
   * the plain update, usually much more on skewed data; requires non-negative counts (which
   * `add` enforces anyway). Default `true`.
   */
  conservative?: boolean;
  /** Hash seed; sketches merge only with the same seed. Default: the sketch family's seed. */
  seed?: number;
}

const FORMAT_VERSION = 1;
const FLAG_CONSERVATIVE = 1;
const MAX_CELLS = 2 ** 28;
const TWO_POW_32 = 4294967296;
const scratch = new Uint32Array(2);

/**
 * Count-min sketch (Cormode & Muthukrishnan, 2005): approximate counts (frequencies, or sums of
 * non-negative weights) of items in a stream, in `width × depth` counters.
 *
 * **Error bound.** With `N` the total weight added, ε = e / width and δ = e^−depth, every
 * estimate satisfies `true ≤ estimate(item)` (never an underestimate), and
 * `estimate(item) ≤ true + ε·N` with probability at least 1 − δ for each item. Conservative
 * update (the default) keeps both guarantees and only lowers the estimates.
 *
 * Each item is hashed once (a 64-bit hash, {@link hashPair}); row `i` uses
 * `fmix32(h1 + i·h2)` reduced to the width, so rows behave as independent hash functions.
 * Counters are a single `Float64Array` (row-major), exact for integer totals up to 2⁵³; adding
 * allocates nothing.
 *
 * **Merging** adds the counters elementwise: for plain update the result is identical to the
 * sketch of the concatenated streams. For conservative update the merged counters are an upper
 * bound of every item's true count and never exceed the plain sketch of the union, so the same
 * ε·N bound holds.
 *
 * @example
 * ```ts
 * const cms = CountMinSketch.withError(0.001, 0.01); // ±0.1% of N, with 99% confidence
 * cms.add('page:/home');
 * cms.add('page:/cart', 3);
 * cms.estimate('page:/cart'); // ≥ 3, ≤ 3 + 0.001·N with probability ≥ 0.99
 * cms.count(); // 4 (total weight N)
 * ```
 */
export class CountMinSketch {
  /** Counters per row. */
  readonly width: number;
  /** Number of rows (hash functions). */
  readonly depth: number;
  /** Hash seed (unsigned 32-bit). */
  readonly seed: number;
  /** Whether `add` uses conservative update. */
  readonly conservative: boolean;
  private readonly cells: Float64Array;
  private readonly index: Int32Array;
  private readonly scale: number;
  private total = 0;

  /**
   * A sketch of `width` counters per row and `depth` rows (memory: 8·width·depth bytes).
   * See {@link CountMinSketch.withError} to size it from error parameters.
   */
  constructor(width: number, depth: number, options: CountMinSketchOptions = {}) {
    this.width = checkInt('CountMinSketch width', width, 1, 2 ** 31 - 1);
    this.depth = checkInt('CountMinSketch depth', depth, 1, 64);
    if (width * depth > MAX_CELLS) {
      throw new RangeError(`CountMinSketch width × depth must be at most ${MAX_CELLS}, got ${width * depth}`);
    }
    this.seed = checkSeed(options.seed ?? DEFAULT_SKETCH_SEED);
    this.conservative = options.conservative ?? true;
    this.cells = new Float64Array(width * depth);
    this.index = new Int32Array(depth);
    this.scale = width / TWO_POW_32;
  }

  /**
   * A sketch whose estimates exceed the true count by at most `epsilon · N` with probability at
   * least `1 − delta`: width = ⌈e/ε⌉, depth = ⌈ln(1/δ)⌉.
   *
   * @example
   * ```ts
   * const cms = CountMinSketch.withError(0.0001, 0.001); // width 27183, depth 7
   * ```
   */
  static withError(epsilon: number, delta: number, options: CountMinSketchOptions = {}): CountMinSketch {
    if (!(epsilon > 0 && epsilon < 1)) throw new RangeError(`epsilon must be in (0, 1), got ${epsilon}`);
    if (!(delta > 0 && delta < 1)) throw new RangeError(`delta must be in (0, 1), got ${delta}`);
    const width = Math.ceil(Math.E / epsilon);
    const depth = Math.max(1, Math.ceil(Math.log(1 / delta)));
    return new CountMinSketch(width, depth, options);
  }

  /** The additive error factor ε = e / width of this sketch's bound. */
  get epsilon(): number {
    return Math.E / this.width;
  }

  /** The failure probability δ = e^−depth of this sketch's bound. */
  get delta(): number {
    return Math.exp(-this.depth);
  }

  /** Bytes of counter memory (`8 · width · depth`). */
  get byteSize(): number {
    return this.cells.byteLength;
  }

  /**
   * Adds `count` (a non-negative finite number, default 1) to `item`'s count. Allocation-free.
   *
   * @example
   * ```ts
   * cms.add(42);
   * cms.add('user:7', 2.5);
   * ```
   */
  add(item: string | number, count = 1): void {
    if (!(count >= 0 && count !== Infinity)) {
      throw new RangeError(`CountMinSketch.add: count must be a non-negative finite number, got ${count}`);
    }
    hashPair(item, scratch, this.seed);
    const h2 = scratch[1]!;
    let g = scratch[0]!;
    const cells = this.cells;
    const width = this.width;
    const depth = this.depth;
    const scale = this.scale;
    this.total += count;
    if (!this.conservative) {
      for (let r = 0, base = 0; r < depth; r++, base += width) {
        const h = fmix32(g);
        cells[base + ((h * scale) >>> 0)]! += count;
        g = (g + h2) | 0;
      }
      return;
    }
    const index = this.index;
    let min = Infinity;
    for (let r = 0, base = 0; r < depth; r++, base += width) {
      const h = fmix32(g);
      const i = base + ((h * scale) >>> 0);
      index[r] = i;
      const c = cells[i]!;
      if (c < min) min = c;
      g = (g + h2) | 0;
    }
    const target = min + count;
    for (let r = 0; r < depth; r++) {
      const i = index[r]!;
      if (cells[i]! < target) cells[i] = target;
    }
  }

  /**
   * The estimated count of `item`: never below the true count, and above it by at most
   * `epsilon · count()` with probability ≥ 1 − `delta`.
   */
  estimate(item: string | number): number {
    hashPair(item, scratch, this.seed);
    const h2 = scratch[1]!;
    let g = scratch[0]!;
    const cells = this.cells;
    let min = Infinity;
    for (let r = 0, base = 0; r < this.depth; r++, base += this.width) {
      const h = fmix32(g);
      const c = cells[base + ((h * this.scale) >>> 0)]!;
      if (c < min) min = c;
      g = (g + h2) | 0;
    }
    return min;
  }

  /** Total weight `N` added so far (exact). */
  count(): number {
    return this.total;
  }

  /** The additive error bound `epsilon · N` that holds for each estimate with probability ≥ 1 − `delta`. */
  errorBound(): number {
    return this.epsilon * this.total;
  }

  private sameShape(other: CountMinSketch): boolean {
    return other.width === this.width && other.depth === this.depth && other.seed === this.seed;
  }

  private describe(): string {
    return `width=${this.width}, depth=${this.depth}, seed=${this.seed}`;
  }

  /**
   * Adds `other`'s counts into this sketch (in place) and returns `this`. Both must have the same
   * width, depth and seed; otherwise throws an Error naming both parameter sets. Sketches with
   * different `conservative` settings may be merged (the result keeps this sketch's setting).
   */
  merge(other: CountMinSketch): this {
    if (!(other instanceof CountMinSketch) || !this.sameShape(other)) {
      const theirs = other instanceof CountMinSketch ? other.describe() : String(other);
      throw new Error(
        `CountMinSketch.merge: parameters differ (this: ${this.describe()}; other: ${theirs})`,
      );
    }
    const a = this.cells;
    const b = other.cells;
    for (let i = 0; i < a.length; i++) a[i]! += b[i]!;
    this.total += other.total;
    return this;
  }

  /** An independent copy. */
  clone(): CountMinSketch {
    const copy = new CountMinSketch(this.width, this.depth, {
      seed: this.seed,
      conservative: this.conservative,
    });
    copy.cells.set(this.cells);
    copy.total = this.total;
    return copy;
  }

  /** Resets every counter to zero, keeping the parameters. */
  clear(): void {
    this.cells.fill(0);
    this.total = 0;
  }

  /** True when `other` has the same parameters and identical counters. */
  equals(other: CountMinSketch): boolean {
    if (!this.sameShape(other) || other.total !== this.total) return false;
    const a = this.cells;
    const b = other.cells;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /**
   * Binary form: header (magic `0xC1`, version 1, flag bit 0 = conservative), then width (u32),
   * depth (u32), seed (u32), total weight (f64) and the `width·depth` counters (f64), row-major,
   * all little-endian.
   */
  serialize(): Uint8Array {
    const w = new ByteWriter(
      HEADER_BYTES + 12 + 8 + this.cells.byteLength,
      SketchType.CountMinSketch,
      FORMAT_VERSION,
      this.conservative ? FLAG_CONSERVATIVE : 0,
    );
    w.u32(this.width);
    w.u32(this.depth);
    w.u32(this.seed);
    w.f64(this.total);
    w.array(this.cells);
    return w.finish();
  }

  /** Rebuilds a sketch from {@link CountMinSketch.serialize}'s output; throws on malformed input. */
  static deserialize(bytes: Uint8Array): CountMinSketch {
    const r: ByteReader = new ByteReader(bytes, SketchType.CountMinSketch, [FORMAT_VERSION]);
    if ((r.flags & ~FLAG_CONSERVATIVE) !== 0) r.fail(`unknown flags ${r.flags}`);
    const width = r.u32('width');
    const depth = r.u32('depth');
    const seed = r.u32('seed');
    const total = r.f64('total weight');
    if (width < 1 || depth < 1 || depth > 64 || width * depth > MAX_CELLS) {
      r.fail(`invalid dimensions width=${width}, depth=${depth}`);
    }
    if (!(total >= 0 && total !== Infinity)) r.fail(`invalid total weight ${total}`);
    r.expectRemaining(width * depth * 8, 'counters');
    const sketch = new CountMinSketch(width, depth, {
      seed,
      conservative: (r.flags & FLAG_CONSERVATIVE) !== 0,
    });
    r.array(sketch.cells, 'counters');
    r.end();
    sketch.total = total;
    return sketch;
  }
}
