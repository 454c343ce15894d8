import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext, Output } from '../runtime/operator.ts';
import { checkKey, type Key, keyGroupOf } from '../state/key-group.ts';
import { EMPTY_SNAPSHOT, KeyedSnapshotReader, KeyedSnapshotWriter, type OperatorSnapshot } from '../state/snapshot.ts';
import { BloomFilter } from '../sketch/bloom-filter.ts';
import { MIN_WATERMARK } from '../time/watermark.ts';

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
  private readonly groups = new Map<number, Generations>();
  /** Current generation: floor(watermark / within). */
  private generation = -Infinity;
  private watermark = MIN_WATERMARK;
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
    if (watermark <= this.watermark) return;
    this.watermark = watermark;
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

  snapshot(): OperatorSnapshot {
    if (this.groups.size === 0 && this.watermark === MIN_WATERMARK) return EMPTY_SNAPSHOT;
    const writer = new KeyedSnapshotWriter(this.ctx.maxParallelism);
    for (const [kg, g] of this.groups) writer.addToGroup(kg, 'filters', g.current.serialize(), g.previous?.serialize() ?? null);
    return writer.finish({ watermark: this.watermark, generation: this.generation });
  }

  restore(snapshot: OperatorSnapshot): void {
    const reader = new KeyedSnapshotReader(snapshot);
    reader.forEach('filters', (flat, kg) => {
      const previous = flat[1] as Uint8Array | null;
      this.groups.set(kg, {
        current: BloomFilter.deserialize(flat[0] as Uint8Array),
        previous: previous === null ? null : BloomFilter.deserialize(previous),
      });
    });
    const op = reader.operatorState() as { watermark: number; generation: number } | undefined;
    if (op !== undefined) {
      this.watermark = op.watermark;
      this.generation = op.generation;
    }
  }

  /** Number of filters held (for tests of the memory bound). */
  filterCount(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.previous === null ? 1 : 2;
    return n;
  }
}
