import type { Clock } from '../../time/clock.ts';
import type { Source, SourceContext, SourceOutput, SourceReader, SourceStatus, Split, SplitOutput } from '../../runtime/source.ts';

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
   * Number of splits the index space is dealt into (default: the source's parallelism at the first
   * start). Split k of n emits k, k + n, k + 2n, …; more splits than instances lets a restored job
   * scale out further.
   */
  readonly splits?: number;
}

/** A stride of an index space: indices k, k + n, … from `next` on. */
export interface StrideSplit {
  readonly id: string;
  /** Stride (number of splits). */
  readonly n: number;
  /** Next index to emit. */
  next: number;
  out: SplitOutput<unknown> | null;
}

/** Splits `n` stride splits: `k/n` at position k. */
export function strideSplits(n: number): Split<number>[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`splits must be a positive integer, got ${n}`);
  return Array.from({ length: n }, (_, k) => ({ id: `${k}/${n}`, position: k }));
}

/** Parses the stride splits assigned to a reader. */
export function openStrides(splits: readonly Split[]): StrideSplit[] {
  return splits.map((s) => {
    const n = Number(s.id.split('/')[1]);
    if (!Number.isInteger(n) || n < 1) throw new Error(`not a stride split: '${s.id}'`);
    return { id: s.id, n, next: s.position as number, out: null };
  });
}

/**
 * A deterministic source: record i is `make(i)`, so output is reproducible and a restored job
 * regenerates exactly the records after its checkpoint. The index space is dealt into stride
 * splits (split k of n emits k, k + n, …), read by parallel instances; each split has its own
 * watermark.
 *
 * @example
 * p.source(new GeneratorSource({ count: 1_000, make: (i) => ({ sensor: i % 10, value: i }), time: (i) => 1_700_000_000_000 + i * 100 }));
 */
export class GeneratorSource<T> implements Source<T> {
  readonly bounded: boolean;

  constructor(private readonly options: GeneratorOptions<T>) {
    this.bounded = options.count !== undefined && Number.isFinite(options.count);
    if (options.ratePerSecond !== undefined && !(options.ratePerSecond > 0)) {
      throw new RangeError(`ratePerSecond must be > 0, got ${options.ratePerSecond}`);
    }
  }

  splits(ctx: SourceContext): Split<number>[] {
    return strideSplits(this.options.splits ?? ctx.parallelism);
  }

  createReader(ctx: SourceContext): SourceReader<T> {
    return new GeneratorReader(this.options, ctx.clock);
  }
}

class GeneratorReader<T> implements SourceReader<T> {
  private splits: StrideSplit[] = [];
  private registered = false;
  private started = 0;
  private emitted = 0;
  private rate = Infinity;

  constructor(
    private readonly options: GeneratorOptions<T>,
    private readonly clock: Clock,
  ) {}

  open(splits: readonly Split[]): void {
    this.splits = openStrides(splits);
    this.started = this.clock.now();
    const total = this.splits[0]?.n ?? 1;
    // This reader's share of the rate: one stride split produces 1/n of the records.
    if (this.options.ratePerSecond !== undefined) this.rate = (this.options.ratePerSecond * this.splits.length) / total;
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    const count = this.options.count ?? Infinity;
    if (!this.registered) {
      // Every split holds the watermark back from the start, not only once it is first polled
      // (a batch holds one split's records: the first split polled would set it alone).
      this.registered = true;
      for (const s of this.splits) {
        s.out ??= out.split(s.id);
        if (s.next >= count) s.out.finish();
      }
    }
    let budget = max;
    if (this.rate !== Infinity) {
      const due = Math.floor(((this.clock.now() - this.started) * this.rate) / 1000) - this.emitted;
      if (due <= 0) return this.splits.every((s) => s.next >= count) ? 'end' : 'wait';
      budget = Math.min(budget, due);
    }
    const { make, time } = this.options;
    // One split per poll (a batch holds records of one split): the one furthest behind, so the
    // order follows from the positions alone and a restored job goes on exactly as before.
    let s: StrideSplit | undefined;
    for (const c of this.splits) if (c.next < count && (s === undefined || c.next < s.next)) s = c;
    if (s !== undefined) {
      const o = (s.out ??= out.split(s.id));
      let i = s.next;
      const step = s.n;
      for (let k = 0; k < budget && i < count; k++, i += step) {
        if (time === undefined) o.emit(make(i));
        else o.emit(make(i), time(i));
      }
      this.emitted += (i - s.next) / step;
      s.next = i;
      if (i >= count) o.finish();
    }
    return this.splits.every((s) => s.next >= count) ? 'end' : 'more';
  }

  ready(): Promise<void> {
    const rate = this.rate === Infinity ? 1000 : this.rate;
    return new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(1000 / rate))));
  }

  snapshot(): Split<number>[] {
    return this.splits.map((s) => ({ id: s.id, position: s.next }));
  }
}
