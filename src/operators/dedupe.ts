import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext, Output } from '../runtime/operator.ts';
import { checkKey, type Key, keyGroupOf } from '../state/key-group.ts';
import type { KeyedSnapshotReader, KeyedSnapshotWriter } from '../state/snapshot.ts';
import type { StateTable } from '../state/keyed-state-backend.ts';
import { DEFAULT_SKETCH_SEED } from '../sketch/binary.ts';
import { BloomFilter } from '../sketch/bloom-filter.ts';
import { MIN_WATERMARK } from '../time/watermark.ts';
import { StateVersionError } from '../state/keyed-table.ts';

/** Options of {@link KeyedStream.dedupe}. */
export interface DedupeOptions {
  /**
   * How long (event time, ms) a key is remembered: a record whose key was emitted at a time
   * within `within` of its own (before or after it) is dropped, whatever the arrival order; a key
   * is forgotten after 2·`within`.
   */
  readonly within: number;
  /**
   * Distinct keys expected per `within` interval (default 1 000 000). Sizes the first filter of
   * each time bucket; more keys make the filters grow, not err.
   */
  readonly capacity?: number;
  /**
   * Bound on the probability that a record whose key was not emitted within 2·`within` is taken
   * for a repeat and dropped (default 1e-6). Holds for any number of keys, up to the memory bound.
   */
  readonly falsePositiveRate?: number;
  /**
   * Bytes of filters one parallel instance may hold (default 256 MiB). Once they reach it, filter
   * chains stop growing (a bucket's first filter is still allocated, so that every key has a
   * place): keys are still remembered, but the false-positive rate may rise above
   * `falsePositiveRate` — each key added past a full filter is counted in the step's
   * `keysBeyondMemoryBound` metric, and a process warning (code `SPATE_DEDUPE_MEMORY_BOUND`) is
   * emitted the first time.
   */
  readonly maxMemoryBytes?: number;
  /**
   * How far (ms) behind the watermark records may arrive and still be deduplicated against their
   * own time (default 0). Memory is kept for event times from watermark − `allowedLateness` −
   * `within` on; a record later than that is counted in `lateRecords` and deduplicated as if it
   * were at watermark − `allowedLateness` (it is never dropped for being late).
   */
  readonly allowedLateness?: number;
}

/** Default {@link DedupeOptions.maxMemoryBytes}: 256 MiB. */
export const DEFAULT_DEDUPE_MAX_MEMORY = 256 * 1024 * 1024;
/** Capacity factor from one filter of a chain to the next (as RedisBloom's default expansion). */
const GROWTH = 2;
/**
 * False-positive factor from one filter of a chain to the next; a chain whose first filter has
 * rate p₀ has compound rate at most p₀ / (1 − TIGHTENING) (Almeida et al., "Scalable Bloom
 * Filters", 2007).
 */
const TIGHTENING = 0.5;
/** A record is looked up in the chains of its time bucket and the two neighbouring ones. */
const BUCKETS_CHECKED = 3;
/** Smallest first filter per key group and bucket, in keys. */
const MIN_CAPACITY = 64;
/** Largest filter a {@link BloomFilter} can be (2³² bits). */
const MAX_FILTER_BYTES = 2 ** 29;
/** Version of the per-key-group state encoding. */
const STATE_VERSION = 1;
/** Snapshot section holding one encoded {@link DedupeKeyGroup} per key group. */
const SECTION = 'dedupe';

const pair = new Uint32Array(2);

/**
 * Most probes per filter. Adding a key costs one random memory access per probe; the optimal
 * count for the default rate is 23, while 16 needs only 4% more bits for the same rate.
 */
const MAX_PROBES = 16;

/**
 * Bits and probes of a filter whose false-positive rate is at most `rate` after `capacity` keys:
 * the optimal k = round(log₂(1/rate)) capped at {@link MAX_PROBES}, and the fewest bits m with
 * (1 − e^(−k·n/m))^k ≤ rate for that k (for the optimal k, {@link BloomFilter.forCapacity}'s m).
 */
function sizing(capacity: number, rate: number): { bits: number; hashes: number } {
  const optimal = Math.max(1, Math.round(-Math.log2(rate)));
  const hashes = Math.min(optimal, MAX_PROBES);
  // (1 − e^(−k·n/m))^k = rate  ⇔  m = −k·n / ln(1 − rate^(1/k))
  const bits = Math.ceil((-hashes * capacity) / Math.log1p(-Math.pow(rate, 1 / hashes)));
  return { bits, hashes };
}

/** An empty filter sized by {@link sizing}. */
function newFilter(capacity: number, rate: number, seed: number): BloomFilter {
  const { bits, hashes } = sizing(capacity, rate);
  return new BloomFilter(bits, hashes, { seed });
}

/** Bytes of the filter {@link newFilter} builds for `capacity` at `rate`. */
function filterBytes(capacity: number, rate: number): number {
  return Math.ceil(sizing(capacity, rate).bits / 32) * 4;
}

// ---------------------------------------------------------------------------------------------
// State: key group → time buckets → filter chain. Self-contained (no reference to the operator)
// so that a state backend can hold it per key group through encodeKeyGroup / decodeKeyGroup.
// ---------------------------------------------------------------------------------------------

/**
 * A scalable Bloom filter holding the keys of one key group first emitted in one time bucket:
 * a chain of filters where filter i has capacity c₀·2ⁱ and false-positive rate p₀·2⁻ⁱ. Keys go
 * into the last filter; when it holds its capacity a new one is chained, so that the chain's
 * compound rate stays below 2·p₀ however many keys arrive (union bound over the chain).
 */
export class FilterChain {
  /** The filters, oldest (smallest) first; the last one takes new keys. */
  readonly filters: BloomFilter[] = [];
  /** Keys each filter was sized for. */
  readonly capacities: number[] = [];
  /** False-positive rate each filter was sized for (at its capacity). */
  readonly rates: number[] = [];
  /** Keys added to each filter (exact: a key is added only when no filter may hold it). */
  readonly counts: number[] = [];
  private last!: BloomFilter;
  private lastCount = 0;
  private lastCapacity = 0;

  /** `bucket`: the time bucket, ⌊event time / within⌋. */
  constructor(readonly bucket: number) {}

  /** Appends a filter, which takes every key added from now on. */
  push(filter: BloomFilter, capacity: number, rate: number, count = 0): void {
    this.filters.push(filter);
    this.capacities.push(capacity);
    this.rates.push(rate);
    this.counts.push(count);
    this.last = filter;
    this.lastCount = count;
    this.lastCapacity = capacity;
  }

  /** True when the last filter holds its capacity: the next key needs a new filter to keep the rate. */
  get full(): boolean {
    return this.lastCount >= this.lastCapacity;
  }

  /** Capacity and rate of the filter that would be chained next. */
  nextSizing(): { capacity: number; rate: number } {
    return { capacity: this.lastCapacity * GROWTH, rate: this.rates[this.rates.length - 1]! * TIGHTENING };
  }

  /** May the key hashed to (h1, h2) have been added? Never false for an added key. */
  has(h1: number, h2: number): boolean {
    const filters = this.filters;
    // Newest first: the biggest filter is the likeliest to hold a repeat.
    for (let i = filters.length - 1; i >= 0; i--) if (filters[i]!.hasHashed(h1, h2)) return true;
    return false;
  }

  /** Adds a key (the caller checked {@link has} first, so keys are counted once). */
  add(h1: number, h2: number): void {
    this.last.addHashed(h1, h2);
    this.counts[this.counts.length - 1] = ++this.lastCount;
  }

  /** Bytes of filter memory. */
  get byteSize(): number {
    let n = 0;
    for (const f of this.filters) n += f.byteSize;
    return n;
  }
}

/** The dedupe state of one key group: its filter chains by time bucket, newest bucket first. */
export interface DedupeKeyGroup {
  readonly buckets: FilterChain[];
}

/**
 * What a key group's state is snapshotted as (msgpack-encodable, like a {@link StateCodec}'s
 * output): `within` (buckets are ⌊time / within⌋), and per bucket its filters with their sizing
 * and counts, filters in {@link BloomFilter.serialize}'s binary form.
 */
export function encodeKeyGroup(group: DedupeKeyGroup, within: number): unknown {
  return {
    version: STATE_VERSION,
    within,
    buckets: group.buckets.map((c) => ({
      bucket: c.bucket,
      capacities: c.capacities.slice(),
      rates: c.rates.slice(),
      counts: c.counts.slice(),
      filters: c.filters.map((f) => f.serialize()),
    })),
  };
}

/**
 * Rebuilds what {@link encodeKeyGroup} wrote. Throws when it was written with another `within`
 * (its buckets would mean other times) or is malformed.
 */
export function decodeKeyGroup(encoded: unknown, within: number, seed: number = DEFAULT_SKETCH_SEED): DedupeKeyGroup {
  const e = encoded as {
    version?: unknown;
    within?: unknown;
    buckets?: Array<{ bucket: number; capacities: number[]; rates: number[]; counts: number[]; filters: Uint8Array[] }>;
  };
  if (e === null || typeof e !== 'object' || e.version !== STATE_VERSION || !Array.isArray(e.buckets)) {
    throw new Error(`dedupe: unknown key-group state (version ${String(e?.version)})`);
  }
  if (e.within !== within) {
    throw new Error(`dedupe: the snapshot was taken with within = ${String(e.within)} ms, this step has within = ${within} ms`);
  }
  const buckets: FilterChain[] = [];
  for (const b of e.buckets) {
    const n = b.filters.length;
    if (n === 0 || b.capacities.length !== n || b.rates.length !== n || b.counts.length !== n || !Number.isFinite(b.bucket)) {
      throw new Error(`dedupe: malformed state of bucket ${String(b.bucket)}`);
    }
    const chain = new FilterChain(b.bucket);
    for (let i = 0; i < n; i++) {
      const filter = BloomFilter.deserialize(b.filters[i]!);
      if (filter.seed !== seed) throw new Error(`dedupe: filter seed ${filter.seed} differs from ${seed}`);
      chain.push(filter, b.capacities[i]!, b.rates[i]!, b.counts[i]!);
    }
    buckets.push(chain);
  }
  buckets.sort((a, b) => b.bucket - a.bucket);
  return { buckets };
}

// ---------------------------------------------------------------------------------------------

/**
 * Drops records whose key was emitted recently in event time.
 *
 * Time is cut into buckets of `within` ms (bucket ⌊t / within⌋). Each key group keeps one filter
 * chain (a scalable Bloom filter, {@link FilterChain}) per bucket. A record at time t in bucket b
 * is looked up in the chains of buckets b − 1, b and b + 1 — which hold every key emitted at a time
 * within `within` of t, and none emitted 2·`within` or more away — and, if absent, added to
 * bucket b's chain and emitted. Buckets follow record time, so the guarantee holds whatever the
 * arrival order; the watermark only frees memory: buckets that no record at or after
 * watermark − allowedLateness can look up are dropped.
 *
 * Each chain's filters are sized for false-positive rate p/3 (p = `falsePositiveRate`, three
 * chains are looked up); chains grow as keys arrive, until the instance's filters reach
 * `maxMemoryBytes`. Filters are per key group, so snapshots split by key group like all keyed
 * state and restore at any parallelism.
 */
export class DedupeOperator implements Operator<unknown, unknown> {
  private out!: Output<unknown>;
  private ctx!: OperatorContext<unknown>;
  /** Key group → its state (undefined while it holds nothing). */
  private groups: Array<DedupeKeyGroup | undefined> = [];
  /** Records before this time are late: watermark − allowedLateness. */
  private horizon = MIN_WATERMARK;
  private readonly within: number;
  private readonly allowedLateness: number;
  private readonly maxMemoryBytes: number;
  private readonly rate: number;
  private readonly seed = DEFAULT_SKETCH_SEED;
  private readonly capacity: number;
  /** Sizing of the first filter of each chain (per key group). */
  private firstCapacity = 0;
  private firstRate = 0;
  /** Bytes of all filters held. */
  private bytes = 0;

  constructor(
    private readonly key: (value: unknown) => Key,
    options: DedupeOptions,
  ) {
    const { within, capacity = 1_000_000, falsePositiveRate = 1e-6, maxMemoryBytes = DEFAULT_DEDUPE_MAX_MEMORY, allowedLateness = 0 } = options;
    if (!(within > 0 && Number.isFinite(within))) throw new RangeError(`dedupe: within must be a finite number > 0 (ms), got ${within}`);
    if (!(capacity >= 1 && Number.isFinite(capacity))) throw new RangeError(`dedupe: capacity must be a finite number ≥ 1, got ${capacity}`);
    if (!(falsePositiveRate > 0 && falsePositiveRate < 1)) {
      throw new RangeError(`dedupe: falsePositiveRate must be in (0, 1), got ${falsePositiveRate}`);
    }
    if (!(maxMemoryBytes > 0)) throw new RangeError(`dedupe: maxMemoryBytes must be > 0, got ${maxMemoryBytes}`);
    if (!(allowedLateness >= 0 && Number.isFinite(allowedLateness))) {
      throw new RangeError(`dedupe: allowedLateness must be a finite number ≥ 0 (ms), got ${allowedLateness}`);
    }
    this.within = within;
    this.allowedLateness = allowedLateness;
    this.maxMemoryBytes = maxMemoryBytes;
    this.rate = falsePositiveRate;
    this.capacity = capacity;
  }

  open(ctx: OperatorContext<unknown>): void {
    this.ctx = ctx;
    this.out = ctx.output;
    this.groups = new Array<DedupeKeyGroup | undefined>(ctx.maxParallelism).fill(undefined);
    this.firstCapacity = Math.max(MIN_CAPACITY, Math.ceil(this.capacity / ctx.maxParallelism));
    // Union bound: three chains per lookup, each at most p/3; a chain at most p₀ / (1 − TIGHTENING).
    this.firstRate = (this.rate / BUCKETS_CHECKED) * (1 - TIGHTENING);
    if (filterBytes(this.firstCapacity, this.firstRate) > MAX_FILTER_BYTES) {
      throw new RangeError(`dedupe: capacity ${this.capacity} at falsePositiveRate ${this.rate} needs filters of more than 2³² bits per key group`);
    }
    ctx.state.registerTable(this.table());
    const wm = ctx.watermark;
    if (wm !== MIN_WATERMARK && wm !== Infinity) this.horizon = wm - this.allowedLateness;
  }

  /** The operator's keyed state: key group → its buckets, written per key group. */
  private table(): StateTable {
    return {
      name: SECTION,
      version: 1,
      snapshot: (writer: KeyedSnapshotWriter) => {
        for (let kg = 0; kg < this.groups.length; kg++) {
          const group = this.groups[kg];
          if (group !== undefined) writer.addToGroup(kg, SECTION, encodeKeyGroup(group, this.within));
        }
      },
      restore: (reader: KeyedSnapshotReader, writtenVersion: number) => {
        if (writtenVersion !== 1) throw new StateVersionError(SECTION, writtenVersion, 1);
        reader.forEach(SECTION, (flat, kg) => {
          const group = decodeKeyGroup(flat[0], this.within, this.seed);
          for (const chain of group.buckets) this.bytes += chain.byteSize;
          this.groups[kg] = group;
        });
      },
    };
  }

  processBatch(batch: Batch<unknown>): void {
    const { values, times, length } = batch;
    const keyOf = this.key;
    const maxParallelism = this.ctx.maxParallelism;
    const metrics = this.ctx.metrics;
    const within = this.within;
    const seed = this.seed;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const v = values[i];
          const k = checkKey(keyOf(v));
          let t = times[i]!;
          if (t < this.horizon) {
            // Its own buckets may be gone: deduplicate against the oldest time still remembered.
            metrics.lateRecords++;
            t = this.horizon;
          }
          const b = Math.floor(t / within);
          if (!Number.isFinite(b)) throw new RangeError(`dedupe: event time ${times[i]} is not a finite number`);
          const kg = keyGroupOf(k, maxParallelism);
          BloomFilter.hashInto(k, pair, seed);
          const h1 = pair[0]!;
          const h2 = pair[1]!;
          let group = this.groups[kg];
          if (group === undefined) {
            group = { buckets: [] };
            this.groups[kg] = group;
          }
          const buckets = group.buckets;
          let own: FilterChain | undefined;
          let seen = false;
          for (let j = 0; j < buckets.length; j++) {
            const chain = buckets[j]!;
            const cb = chain.bucket;
            if (cb > b + 1) continue;
            if (cb < b - 1) break;
            if (cb === b) own = chain;
            if (chain.has(h1, h2)) {
              seen = true;
              break;
            }
          }
          if (seen) {
            metrics.duplicatesDropped++;
            continue;
          }
          if (own === undefined) own = this.newChain(buckets, b);
          else if (own.full && !this.grow(own)) metrics.keysBeyondMemoryBound++;
          own.add(h1, h2);
          this.out.emit(v, times[i]!);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }

  /** A chain for bucket `b`, inserted in `buckets` (newest first). Always allocated: keys need a home. */
  private newChain(buckets: FilterChain[], b: number): FilterChain {
    const chain = new FilterChain(b);
    const filter = newFilter(this.firstCapacity, this.firstRate, this.seed);
    chain.push(filter, this.firstCapacity, this.firstRate);
    this.bytes += filter.byteSize;
    if (this.bytes > this.maxMemoryBytes) this.boundReached();
    let j = buckets.length;
    while (j > 0 && buckets[j - 1]!.bucket < b) j--;
    buckets.splice(j, 0, chain);
    return chain;
  }

  /** Chains a bigger filter to a full chain, if the memory bound allows; false if not. */
  private grow(chain: FilterChain): boolean {
    const { capacity, rate } = chain.nextSizing();
    const bytes = filterBytes(capacity, rate);
    if (this.bytes + bytes > this.maxMemoryBytes || bytes > MAX_FILTER_BYTES) {
      this.boundReached();
      return false;
    }
    const filter = newFilter(capacity, rate, this.seed);
    chain.push(filter, capacity, rate);
    this.bytes += filter.byteSize;
    return true;
  }

  private boundReached(): void {
    this.ctx.warnOnce(
      `dedupe filters reached maxMemoryBytes (${this.maxMemoryBytes} bytes); ` +
        `new keys may now be dropped as repeats more often than falsePositiveRate ${this.rate} ` +
        `(counted in the keysBeyondMemoryBound metric). Raise maxMemoryBytes or capacity.`,
    );
  }

  onWatermark(watermark: number): void {
    // End of input: nothing more will be looked up; keep the state as it is.
    if (watermark === Infinity) return;
    this.horizon = watermark - this.allowedLateness;
    // A record at the horizon or later is in bucket ≥ ⌊horizon / within⌋ and looks one bucket back.
    const oldest = Math.floor(this.horizon / this.within) - 1;
    const groups = this.groups;
    for (let kg = 0; kg < groups.length; kg++) {
      const group = groups[kg];
      if (group === undefined) continue;
      const buckets = group.buckets;
      while (buckets.length > 0 && buckets[buckets.length - 1]!.bucket < oldest) this.bytes -= buckets.pop()!.byteSize;
      if (buckets.length === 0) groups[kg] = undefined;
    }
  }

  /** What the instance holds: key groups, buckets, filters and their bytes. */
  stats(): { keyGroups: number; buckets: number; filters: number; bytes: number } {
    let keyGroups = 0;
    let buckets = 0;
    let filters = 0;
    for (const group of this.groups) {
      if (group === undefined) continue;
      keyGroups++;
      buckets += group.buckets.length;
      for (const chain of group.buckets) filters += chain.filters.length;
    }
    return { keyGroups, buckets, filters, bytes: this.bytes };
  }
}
