import type { Clock } from '../../time/clock.ts';
import type { Source, SourceContext, SourceOutput, SourceStatus } from '../../runtime/source.ts';

/** Options of {@link GeneratorSource}. */
export interface GeneratorOptions<T> {
  /** Builds record number `index` (0-based); must depend only on the index for replay. */
  readonly make: (index: number) => T;
  /** Event time of record `index` (default: none, so ingestion time or the step's timestamp function). */
  readonly time?: (index: number) => number;
  /** Number of records; default unbounded. */
  readonly count?: number;
  /** Emit at most this many records per second of processing time (default: as fast as possible). */
  readonly ratePerSecond?: number;
}

/**
 * A deterministic source: record i is `make(i)`, so output is reproducible and a restored job
 * regenerates exactly the records after its snapshot. Parallel instances split the index space
 * (instance k of n emits k, k + n, ...).
 *
 * @example
 * p.source(new GeneratorSource({ count: 1_000, make: (i) => ({ sensor: i % 10, value: i }), time: (i) => 1_700_000_000_000 + i * 100 }));
 */
export class GeneratorSource<T> implements Source<T> {
  readonly bounded: boolean;
  private next = 0;
  private step = 1;
  private clock: Clock | null = null;
  private started = 0;
  private emitted = 0;

  constructor(private readonly options: GeneratorOptions<T>) {
    this.bounded = options.count !== undefined && Number.isFinite(options.count);
    if (options.ratePerSecond !== undefined && !(options.ratePerSecond > 0)) {
      throw new RangeError(`ratePerSecond must be > 0, got ${options.ratePerSecond}`);
    }
  }

  open(ctx: SourceContext): void {
    if (this.next === 0) this.next = ctx.instance;
    this.step = ctx.parallelism;
    this.clock = ctx.clock;
    this.started = ctx.clock.now();
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    const count = this.options.count ?? Infinity;
    let budget = max;
    const rate = this.options.ratePerSecond;
    if (rate !== undefined) {
      const due = Math.floor(((this.clock!.now() - this.started) * rate) / 1000) - this.emitted;
      if (due <= 0) return this.next >= count ? 'end' : 'wait';
      budget = Math.min(budget, due);
    }
    const { make, time } = this.options;
    let i = this.next;
    for (let n = 0; n < budget && i < count; n++, i += this.step) {
      if (time === undefined) out.emit(make(i));
      else out.emit(make(i), time(i));
    }
    this.emitted += (i - this.next) / this.step;
    this.next = i;
    return i >= count ? 'end' : 'more';
  }

  ready(): Promise<void> {
    const rate = this.options.ratePerSecond ?? 1000;
    return new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(1000 / rate))));
  }

  snapshot(): number {
    return this.next;
  }

  restore(state: unknown): void {
    this.next = state as number;
  }
}
