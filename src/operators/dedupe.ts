import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext, Output } from '../runtime/operator.ts';
import { checkKey, type Key, keyGroupOf } from '../state/key-group.ts';
import { KeyGroupTable } from '../state/key-group-table.ts';
import { BloomFilter } from '../sketch/bloom-filter.ts';

/** Options of {@link KeyedStream.dedupe}. */
export interface DedupeOptions {
  /**
   * How long (event time, ms) a key is remembered: a repeat within `within` of the first
   * occurrence is always dropped; after 2·`within` the key is forgotten. Memory stays bounded by
   * two generations of filters, whatever the number of keys over time.
   */
  readonly within: number;
  /** Distinct keys expected per `within` interval (sizes the filters; default 1 000 000). */
  readonly capacity?: number;
  /**
   * Probability that a key never seen is taken for a repeat and dropped (per filter; a key is
   * checked against two). Default 1e-6.
   */
  readonly falsePositiveRate?: number;
}

/** Filters of one key group: the current generation and the one before. */
interface Generations {
  current: BloomFilter;
  previous: BloomFilter | null;
}

/**
 * Drops records whose key was seen recently, with Bloom filters per key group in two event-time
 * generations of `within` ms: a key is looked up in both and added to the current one; when the
 * watermark enters a new generation the current filters become the previous ones and the oldest
 * are dropped. Filters are per key group so that snapshots split by key group like all keyed
 * state (and rescale). Repeats are not emitted: `recordsIn − recordsOut` counts them.
 */
export class DedupeOperator implements Operator<unknown, unknown> {
  private out!: Output<unknown>;
  private ctx!: OperatorContext<unknown>;
  /** Key group → its filters (the operator's keyed state). */
  private groups!: Map<number, Generations>;
  /** Current generation: floor(watermark / within). */
  private generation = -Infinity;
  private bitsPerGroup = 0;
  private hashesPerGroup = 0;

  constructor(
    private readonly key: (value: unknown) => Key,
    private readonly options: DedupeOptions,
  ) {
    if (!(options.within > 0)) throw new RangeError(`dedupe: within must be > 0 ms, got ${options.within}`);
  }

  open(ctx: OperatorContext<unknown>): void {
    this.ctx = ctx;
    this.out = ctx.output;
    const perGroup = Math.max(64, Math.ceil((this.options.capacity ?? 1_000_000) / ctx.maxParallelism));
    const template = BloomFilter.forCapacity(perGroup, this.options.falsePositiveRate ?? 1e-6);
    this.bitsPerGroup = template.bits;
    this.hashesPerGroup = template.hashes;
    const table = ctx.state.registerTable(
      new KeyGroupTable<Generations>('filters', {
        encode: (g) => [g.current.serialize(), g.previous?.serialize() ?? null],
        decode: (e) => {
          const [current, previous] = e as [Uint8Array, Uint8Array | null];
          return { current: BloomFilter.deserialize(current), previous: previous === null ? null : BloomFilter.deserialize(previous) };
        },
      }),
    );
    this.groups = table.groups;
    const wm = ctx.watermark;
    if (wm !== -Infinity && wm !== Infinity) this.generation = Math.floor(wm / this.options.within);
  }

  private filter(): BloomFilter {
    return new BloomFilter(this.bitsPerGroup, this.hashesPerGroup);
  }

  processBatch(batch: Batch<unknown>): void {
    const { values, times, length } = batch;
    const keyOf = this.key;
    const maxParallelism = this.ctx.maxParallelism;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const v = values[i];
          const k = checkKey(keyOf(v));
          const kg = keyGroupOf(k, maxParallelism);
          let g = this.groups.get(kg);
          if (g === undefined) {
            g = { current: this.filter(), previous: null };
            this.groups.set(kg, g);
          }
          if (g.previous !== null && g.previous.has(k)) continue;
          // add() reports whether the key was certainly new to the current filter.
          if (g.current.add(k)) this.out.emit(v, times[i]!);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }

  onWatermark(watermark: number): void {
    if (watermark === Infinity) return;
    const generation = Math.floor(watermark / this.options.within);
    if (generation <= this.generation) return;
    const previous = this.generation;
    this.generation = generation;
    // What came before the first watermark belongs to its generation.
    if (previous === -Infinity) return;
    if (generation > previous + 1) {
      // More than a generation passed: everything is forgotten.
      this.groups.clear();
      return;
    }
    for (const g of this.groups.values()) {
      // Reuse the oldest filter's memory for the new generation.
      const recycled = g.previous;
      g.previous = g.current;
      if (recycled === null) g.current = this.filter();
      else {
        recycled.clear();
        g.current = recycled;
      }
    }
  }

  /** Number of filters held (for tests of the memory bound). */
  filterCount(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.previous === null ? 1 : 2;
    return n;
  }
}
