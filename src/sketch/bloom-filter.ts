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
 * Options of {@link BloomFilter}.
 *
 * @example
 * ```ts
 * BloomFilter.forCapacity(10_000, 0.01, { seed: 42 });
 * ```
 */
export interface BloomFilterOptions {
  /** Hash seed; filters merge only with the same seed. Default: the sketch family's seed. */
  seed?: number;
}

const FORMAT_VERSION = 1;
const TWO_POW_32 = 4294967296;
/** Largest supported number of bits (512 MiB of filter). */
const MAX_BITS = 2 ** 32;
const scratch = new Uint32Array(2);

function popcount32(v: number): number {
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

/**
 * Bloom filter (Bloom, 1970): set membership with no false negatives and a tunable rate of false
 * positives, in `bits` bits and `hashes` probes per item.
 *
 * **Error bound.** `has(x)` is always true for an added `x`. For an item never added, after `n`
 * distinct items the probability of a false positive is about `(1 − e^(−k·n/m))^k` for `m` bits
 * and `k` probes; {@link BloomFilter.forCapacity} picks the optimal `m = −n·ln p / (ln 2)²` and
 * `k = round(m/n · ln 2)` for a target rate `p` at capacity `n`. {@link BloomFilter.falsePositiveRate}
 * reports the rate implied by the bits actually set.
 *
 * Each item is hashed once (64-bit {@link hashPair}); probe `i` is `h1 + i·h2` (Kirsch–Mitzenmacher
 * double hashing, which keeps the asymptotic false-positive rate of `k` independent hashes),
 * mapped to `[0, m)` by multiply-shift. Bits live in a `Uint32Array`; adding allocates nothing.
 * Merging ORs the bits, so the merged filter is bit-for-bit the filter of the union.
 *
 * @example
 * ```ts
 * const seen = BloomFilter.forCapacity(1_000_000, 0.01); // ~1.2 MB, 7 probes
 * seen.add('order:1001');
 * seen.has('order:1001'); // true
 * seen.has('order:9999'); // false (true with probability ≈ 1%)
 * ```
 */
export class BloomFilter {
  /** Number of bits `m`. */
  readonly bits: number;
  /** Number of probes (hash functions) `k`. */
  readonly hashes: number;
  /** Hash seed (unsigned 32-bit). */
  readonly seed: number;
  private readonly words: Uint32Array;
  private readonly scale: number;
  private setBits = 0;

  /** A filter of `bits` bits probed `hashes` times per item. See {@link BloomFilter.forCapacity}. */
  constructor(bits: number, hashes: number, options: BloomFilterOptions = {}) {
    this.bits = checkInt('BloomFilter bits', bits, 1, MAX_BITS);
    this.hashes = checkInt('BloomFilter hashes', hashes, 1, 64);
    this.seed = checkSeed(options.seed ?? DEFAULT_SKETCH_SEED);
    this.words = new Uint32Array(Math.ceil(bits / 32));
    this.scale = bits / TWO_POW_32;
  }

  /**
   * The smallest filter whose false-positive rate is at most `falsePositiveRate` after
   * `capacity` distinct items: m = ⌈−n·ln p / (ln 2)²⌉ bits and k = round(m/n · ln 2) probes.
   *
   * @example
   * ```ts
   * const f = BloomFilter.forCapacity(100_000, 0.001); // 1,437,759 bits, 10 probes
   * ```
   */
  static forCapacity(capacity: number, falsePositiveRate: number, options: BloomFilterOptions = {}): BloomFilter {
    if (!(capacity >= 1 && Number.isFinite(capacity))) {
      throw new RangeError(`capacity must be a finite number ≥ 1, got ${capacity}`);
    }
    if (!(falsePositiveRate > 0 && falsePositiveRate < 1)) {
      throw new RangeError(`falsePositiveRate must be in (0, 1), got ${falsePositiveRate}`);
    }
    const m = Math.ceil((-capacity * Math.log(falsePositiveRate)) / (Math.LN2 * Math.LN2));
    const k = Math.max(1, Math.round((m / capacity) * Math.LN2));
    if (m > MAX_BITS) {
      throw new RangeError(`BloomFilter.forCapacity: needs ${m} bits, more than the maximum ${MAX_BITS}`);
    }
    return new BloomFilter(m, Math.min(k, 64), options);
  }

  /** The false-positive rate predicted for `n` distinct items: `(1 − e^(−k·n/m))^k`. */
  expectedFalsePositiveRate(n: number): number {
    return Math.pow(1 - Math.exp((-this.hashes * n) / this.bits), this.hashes);
  }

  /** Bytes of bit memory (`4·⌈m/32⌉`). */
  get byteSize(): number {
    return this.words.byteLength;
  }

  /**
   * Adds `item`. Returns `true` when the item was certainly not present before (some bit was
   * still clear), `false` when it may have been. Allocation-free.
   *
   * Probe i is bit ⌊fmix32(h1 + i·h2) · m / 2³²⌋. The per-probe mix matters for small filters:
   * mapping h1 + i·h2 to a bit directly makes two items whose (h1, h2) are merely close share
   * every probe, which floors the false-positive rate near n/m² whatever k is.
   */
  add(item: string | number): boolean {
    hashPair(item, scratch, this.seed);
    let g = scratch[0]!;
    const h2 = scratch[1]!;
    const words = this.words;
    const scale = this.scale;
    let added = 0;
    for (let i = 0; i < this.hashes; i++) {
      const bit = (fmix32(g) * scale) >>> 0;
      const w = bit >>> 5;
      const mask = 1 << (bit & 31);
      const v = words[w]!;
      if ((v & mask) === 0) {
        words[w] = v | mask;
        added++;
      }
      g = (g + h2) | 0;
    }
    this.setBits += added;
    return added !== 0;
  }

  /** `true` if `item` may have been added (never false for an added item), `false` if certainly not. */
  has(item: string | number): boolean {
    hashPair(item, scratch, this.seed);
    let g = scratch[0]!;
    const h2 = scratch[1]!;
    const words = this.words;
    const scale = this.scale;
    for (let i = 0; i < this.hashes; i++) {
      const bit = (fmix32(g) * scale) >>> 0;
      if ((words[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
      g = (g + h2) | 0;
    }
    return true;
  }

  /**
   * Writes the 64-bit hash of `item` that {@link BloomFilter.add} and {@link BloomFilter.has}
   * probe with into `out[0]` and `out[1]`. Hash an item once, then probe several filters of the
   * same `seed` with {@link BloomFilter.addHashed} and {@link BloomFilter.hasHashed} (a chain of
   * filters, say); `f.addHashed(h[0], h[1])` is exactly `f.add(item)`. Allocation-free.
   *
   * @example
   * ```ts
   * const h = new Uint32Array(2);
   * BloomFilter.hashInto('order:1001', h, filter.seed);
   * filter.hasHashed(h[0]!, h[1]!); // same as filter.has('order:1001')
   * ```
   */
  static hashInto(item: string | number, out: Uint32Array, seed: number = DEFAULT_SKETCH_SEED): void {
    hashPair(item, out, seed >>> 0);
  }

  /** {@link BloomFilter.add} for an item hashed with {@link BloomFilter.hashInto} (this filter's seed). */
  addHashed(h1: number, h2: number): boolean {
    let g = h1 | 0;
    const words = this.words;
    const scale = this.scale;
    let added = 0;
    for (let i = 0; i < this.hashes; i++) {
      const bit = (fmix32(g) * scale) >>> 0;
      const w = bit >>> 5;
      const mask = 1 << (bit & 31);
      const v = words[w]!;
      if ((v & mask) === 0) {
        words[w] = v | mask;
        added++;
      }
      g = (g + h2) | 0;
    }
    this.setBits += added;
    return added !== 0;
  }

  /** {@link BloomFilter.has} for an item hashed with {@link BloomFilter.hashInto} (this filter's seed). */
  hasHashed(h1: number, h2: number): boolean {
    let g = h1 | 0;
    const words = this.words;
    const scale = this.scale;
    for (let i = 0; i < this.hashes; i++) {
      const bit = (fmix32(g) * scale) >>> 0;
      if ((words[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
      g = (g + h2) | 0;
    }
    return true;
  }

  /** Number of bits set. */
  bitCount(): number {
    return this.setBits;
  }

  /**
   * Estimated number of distinct items added, from the fraction of bits set
   * (Swamidass & Baldi: `−m/k · ln(1 − X/m)`); `Infinity` when every bit is set.
   */
  count(): number {
    const x = this.setBits;
    if (x === this.bits) return Infinity;
    return (-this.bits / this.hashes) * Math.log1p(-x / this.bits);
  }

  /** The false-positive rate implied by the bits currently set: `(X/m)^k`. */
  falsePositiveRate(): number {
    return Math.pow(this.setBits / this.bits, this.hashes);
  }

  private describe(): string {
    return `bits=${this.bits}, hashes=${this.hashes}, seed=${this.seed}`;
  }

  /**
   * ORs `other`'s bits into this filter (in place) and returns `this`; the result equals the
   * filter of the union. Both must have the same bits, hashes and seed; otherwise throws an Error
   * naming both parameter sets.
   */
  merge(other: BloomFilter): this {
    if (
      !(other instanceof BloomFilter) ||
      other.bits !== this.bits ||
      other.hashes !== this.hashes ||
      other.seed !== this.seed
    ) {
      const theirs = other instanceof BloomFilter ? other.describe() : String(other);
      throw new Error(`BloomFilter.merge: parameters differ (this: ${this.describe()}; other: ${theirs})`);
    }
    const a = this.words;
    const b = other.words;
    let set = 0;
    for (let i = 0; i < a.length; i++) {
      const v = a[i]! | b[i]!;
      a[i] = v;
      set += popcount32(v);
    }
    this.setBits = set;
    return this;
  }

  /** An independent copy. */
  clone(): BloomFilter {
    const copy = new BloomFilter(this.bits, this.hashes, { seed: this.seed });
    copy.words.set(this.words);
    copy.setBits = this.setBits;
    return copy;
  }

  /** Clears every bit, keeping the parameters. */
  clear(): void {
    this.words.fill(0);
    this.setBits = 0;
  }

  /** True when `other` has the same parameters and identical bits. */
  equals(other: BloomFilter): boolean {
    if (other.bits !== this.bits || other.hashes !== this.hashes || other.seed !== this.seed) return false;
    const a = this.words;
    const b = other.words;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /**
   * Binary form: header (magic `0xB1`, version 1), then bits (u32, `m − 1` so that 2³² fits),
   * hashes (u32), seed (u32) and the bit words (u32 × ⌈m/32⌉, bit `i` in word `i>>5`, bit
   * `i&31`), all little-endian.
   */
  serialize(): Uint8Array {
    const w = new ByteWriter(HEADER_BYTES + 12 + this.words.byteLength, SketchType.BloomFilter, FORMAT_VERSION);
    w.u32(this.bits - 1);
    w.u32(this.hashes);
    w.u32(this.seed);
    w.array(this.words);
    return w.finish();
  }

  /** Rebuilds a filter from {@link BloomFilter.serialize}'s output; throws on malformed input. */
  static deserialize(bytes: Uint8Array): BloomFilter {
    const r: ByteReader = new ByteReader(bytes, SketchType.BloomFilter, [FORMAT_VERSION]);
    if (r.flags !== 0) r.fail(`unknown flags ${r.flags}`);
    const bits = r.u32('bits') + 1;
    const hashes = r.u32('hashes');
    const seed = r.u32('seed');
    if (hashes < 1 || hashes > 64) r.fail(`invalid number of hashes ${hashes}`);
    const nWords = Math.ceil(bits / 32);
    r.expectRemaining(nWords * 4, 'bit words');
    const filter = new BloomFilter(bits, hashes, { seed });
    r.array(filter.words, 'bit words');
    r.end();
    const words = filter.words;
    const tail = bits & 31;
    if (tail !== 0 && words[nWords - 1]! >>> tail !== 0) r.fail('bits set beyond the filter size');
    let set = 0;
    for (let i = 0; i < words.length; i++) set += popcount32(words[i]!);
    filter.setBits = set;
    return filter;
  }
}
