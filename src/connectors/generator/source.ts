import type { Clock } from '../../time/clock.ts';
import type { Source, SourceContext, SourceOutput, SourceReader, SourceStatus, Split } from '../../runtime/source.ts';

/** Options of {@link GeneratorSource}. */
export interface GeneratorOptions<T> {
  /** Builds record number `index` (0-based); must depend only on the index for replay. */
  readonly make: (index: number) => T;
  /** Event time of record `index` (default: none, so ingestion time or the step's timestamp function). */
  readonly time?: (index: number) => number;
  /** Number of records; default unbounded. */
  readonly count?: number;
  /** Emit at most this many records per second of processing time, over all instances (default: as fast as possible). */
  readonly ratePerSecond?: number;
  /**
   * Number of splits the index space is dealt into (default 16): split k of n emits k, k + n,
   * k + 2n, …, and a restored job can run at most this many instances of the source.
   */
  readonly splits?: number;
}

/** Default number of stride splits: enough for a restored job to scale out to 16 instances. */
export const DEFAULT_STRIDE_SPLITS = 16;

/** Splits `n` stride splits: `k/n` at position k. */
export function strideSplits(n: number): Split<number>[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`splits must be a positive integer, got ${n}`);
  return Array.from({ length: n }, (_, k) => ({ id: `${k}/${n}`, position: k }));
}

/**
 * The indices of the stride splits one reader owns, walked in increasing order: split `k/n` owns
 * k, k + n, k + 2n, … from its position on. Walking the union in index order (rather than split by
 * split) keeps a reader's output in generation order whatever it owns — one instance owning every
 * split generates exactly the sequence 0, 1, 2, … — so a single watermark serves all its splits.
 */
export class StrideCursor {
  readonly n: number;
  private readonly ids: readonly string[];
  private readonly owned: Uint8Array;
  /** Per residue: the first index the split still has to emit (its restored position). */
  private readonly from: Float64Array;
  /** The next index to consider. */
  private at: number;

  constructor(splits: readonly Split[]) {
    let n = 0;
    for (const s of splits) {
      const stride = Number(s.id.split('/')[1]);
      if (!Number.isInteger(stride) || stride < 1 || (n !== 0 && stride !== n)) throw new Error(`not a stride split of this source: '${s.id}'`);
      n = stride;
    }
    this.n = Math.max(1, n);
    this.ids = Array.from({ length: this.n }, (_, k) => `${k}/${this.n}`);
    this.owned = new Uint8Array(this.n);
    this.from = new Float64Array(this.n).fill(Infinity);
    for (const s of splits) {
      const k = Number(s.id.split('/')[0]);
      this.owned[k] = 1;
      this.from[k] = s.position as number;
    }
    let min = Infinity;
    for (const f of this.from) if (f < min) min = f;
    this.at = min;
  }

  /** Whether the reader owns no split. */
  get empty(): boolean {
    return this.at === Infinity;
  }

  /** The next index to emit (Infinity if none); call {@link advance} after emitting it. */
  next(): number {
    const n = this.n;
    let i = this.at;
    for (;;) {
      if (i === Infinity) return Infinity;
      const k = i % n;
      if (this.owned[k] === 1 && i >= this.from[k]!) return (this.at = i);
      i++;
    }
  }

  /** Moves past the index last returned by {@link next}. */
  advance(): void {
    this.at++;
  }

  /** Every owned split with its position: the first index ≥ where the walk is, on its residue. */
  positions(): Split<number>[] {
    const out: Split<number>[] = [];
    const n = this.n;
    for (let k = 0; k < n; k++) {
      if (this.owned[k] !== 1) continue;
      const at = this.at === Infinity ? Infinity : this.at + ((k - (this.at % n) + n) % n);
      out.push({ id: this.ids[k]!, position: Math.max(this.from[k]!, at) });
    }
    return out;
  }

  /** The split (residue) index `i` belongs to. */
  splitOf(i: number): string {
    return this.ids[i % this.n]!;
  }
}

/**
 * A deterministic source: record i is `make(i)`, so output is reproducible and a restored job
 * regenerates exactly the records after its checkpoint. The index space is dealt into stride
 * splits (split k of n emits k, k + n, …), read by parallel instances; an instance generates the
 * indices of its splits in increasing order.
 *
 * @example
 * p.source(new GeneratorSource({ count: 1_000, make: (i) => ({ sensor: i % 10, value: i }), time: (i) => 1_700_000_000_000 + i * 100 }));
 */
export class GeneratorSource<T> implements Source<T> {
  readonly bounded: boolean;

  constructor(private readonly options: GeneratorOptions<T>) {
    this.bounded = options.count !== undefined && Number.isFinite(options.count);
    this.maxParallelism = options.splits ?? DEFAULT_STRIDE_SPLITS;
    if (options.ratePerSecond !== undefined && !(options.ratePerSecond > 0)) {
      throw new RangeError(`ratePerSecond must be > 0, got ${options.ratePerSecond}`);
    }
  }

  readonly maxParallelism: number;

  splits(): Split<number>[] {
    return strideSplits(this.options.splits ?? DEFAULT_STRIDE_SPLITS);
  }

  createReader(ctx: SourceContext): SourceReader<T> {
    return new GeneratorReader(this.options, ctx.clock);
  }
}

class GeneratorReader<T> implements SourceReader<T> {
  private cursor: StrideCursor = new StrideCursor([]);
  private started = 0;
  private emitted = 0;
  private rate = Infinity;

  constructor(
    private readonly options: GeneratorOptions<T>,
    private readonly clock: Clock,
  ) {}

  open(splits: readonly Split[]): void {
    this.cursor = new StrideCursor(splits);
    this.started = this.clock.now();
    // This reader's share of the rate: each stride split produces 1/n of the records.
    if (this.options.ratePerSecond !== undefined) this.rate = (this.options.ratePerSecond * splits.length) / this.cursor.n;
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    const count = this.options.count ?? Infinity;
    let budget = max;
    if (this.rate !== Infinity) {
      const due = Math.floor(((this.clock.now() - this.started) * this.rate) / 1000) - this.emitted;
      if (due <= 0) return this.cursor.next() >= count ? 'end' : 'wait';
      budget = Math.min(budget, due);
    }
    const { make, time } = this.options;
    const cursor = this.cursor;
    let n = 0;
    for (; n < budget; n++) {
      const i = cursor.next();
      if (i >= count) break;
      if (time === undefined) out.emit(make(i));
      else out.emit(make(i), time(i));
      cursor.advance();
    }
    this.emitted += n;
    return cursor.next() >= count ? 'end' : 'more';
  }

  ready(): Promise<void> {
    const rate = this.rate === Infinity ? 1000 : this.rate;
    return new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(1000 / rate))));
  }

  snapshot(): Split<number>[] {
    return this.cursor.positions();
  }
}
