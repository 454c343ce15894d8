import { ByteReader, ByteWriter, HEADER_BYTES, SketchType, checkInt } from './binary.ts';

/**
 * One entry of {@link SpaceSaving.top}: the true count lies in `[count − error, count]`.
 *
 * @example
 * ```ts
 * const [first] = summary.top(1); // { item: '/home', count: 5120, error: 3 }
 * ```
 */
export interface TopKEntry {
  /** The item. */
  item: string | number;
  /** Upper bound of the item's true count: `count − error ≤ true ≤ count`. */
  count: number;
  /** Maximum overestimation of `count` (at most `N / capacity`). */
  error: number;
}

const FORMAT_VERSION = 1;
const MAX_CAPACITY = 2 ** 24;
const TAG_NUMBER = 0;
const TAG_STRING = 1;

/**
 * Space-Saving (Metwally, Agrawal & El Abbadi, 2005): the most frequent items of a stream (top-k,
 * heavy hitters) with `capacity` counters.
 *
 * **Error bound.** With `N` the total weight added, every tracked item satisfies
 * `count − error ≤ true count ≤ count` and `error ≤ N / capacity`; every item whose true count
 * exceeds `N / capacity` is tracked; an untracked item's true count is at most the smallest
 * tracked count. So `top(k)` contains every item with frequency above `N / capacity`, and with
 * skewed (e.g. Zipf) data a capacity of a few times `k` recovers the true top-k. These guarantees
 * survive {@link SpaceSaving.merge} (the merge of Agarwal et al., "Mergeable summaries", 2012, in
 * Space-Saving form; see `merge`).
 *
 * Counts and errors live in `Float64Array`s, ordered by a min-heap of slot numbers
 * (`Int32Array`); a `Map` finds an item's slot. An update of a tracked item is one map lookup and
 * a sift; a new item replaces the minimum. Adding allocates nothing beyond the map's own storage.
 *
 * @example
 * ```ts
 * const pages = new SpaceSaving(100);
 * for (const e of events) pages.add(e.path);
 * pages.top(10); // [{ item: '/home', count: 5120, error: 0 }, ...]
 * ```
 */
export class SpaceSaving {
  /** Number of counters. */
  readonly capacity: number;
  private readonly slotItem: Array<string | number>;
  private readonly slotCount: Float64Array;
  private readonly slotError: Float64Array;
  /** Min-heap of slots by count. */
  private readonly heap: Int32Array;
  /** Heap position of each slot. */
  private readonly heapPos: Int32Array;
  private readonly slots = new Map<string | number, number>();
  private used = 0;
  private total = 0;

  /** A summary with `capacity` counters (memory ≈ 32 bytes plus the item and a map entry per counter). */
  constructor(capacity: number) {
    this.capacity = checkInt('SpaceSaving capacity', capacity, 1, MAX_CAPACITY);
    this.slotItem = new Array<string | number>(capacity).fill(0);
    this.slotCount = new Float64Array(capacity);
    this.slotError = new Float64Array(capacity);
    this.heap = new Int32Array(capacity);
    this.heapPos = new Int32Array(capacity);
  }

  /**
   * A summary whose count errors are at most `epsilon · N`: capacity = ⌈1/ε⌉. Every item more
   * frequent than `epsilon · N` is then tracked.
   *
   * @example
   * ```ts
   * SpaceSaving.withError(0.001).capacity; // 1000
   * ```
   */
  static withError(epsilon: number): SpaceSaving {
    if (!(epsilon > 0 && epsilon < 1)) throw new RangeError(`epsilon must be in (0, 1), got ${epsilon}`);
    return new SpaceSaving(Math.ceil(1 / epsilon - 1e-9));
  }

  /**
   * A summary for the top `k` items: capacity `factor · k` (default factor 10). On Zipf-like data
   * (exponent ≥ 1) this recovers the true top-k with high recall; the guaranteed bound is still
   * `error ≤ N / capacity`.
   */
  static forTopK(k: number, factor = 10): SpaceSaving {
    checkInt('SpaceSaving k', k, 1, MAX_CAPACITY);
    if (!(factor >= 1)) throw new RangeError(`factor must be ≥ 1, got ${factor}`);
    return new SpaceSaving(Math.min(MAX_CAPACITY, Math.ceil(k * factor)));
  }

  /** Number of items currently tracked. */
  get size(): number {
    return this.used;
  }

  /** Bytes of the typed arrays (the map and the items themselves come on top). */
  get byteSize(): number {
    return (
      this.slotCount.byteLength + this.slotError.byteLength + this.heap.byteLength + this.heapPos.byteLength
    );
  }

  /** Total weight `N` added (exact). */
  count(): number {
    return this.total;
  }

  /** The count bound `N / capacity` that no tracked item's error exceeds. */
  errorBound(): number {
    return this.total / this.capacity;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const pos = this.heapPos;
    const counts = this.slotCount;
    const n = this.used;
    const slot = heap[i]!;
    const c = counts[slot]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let child = l;
      let cc = counts[heap[l]!]!;
      if (r < n) {
        const rc = counts[heap[r]!]!;
        if (rc < cc) {
          child = r;
          cc = rc;
        }
      }
      if (cc >= c) break;
      const s = heap[child]!;
      heap[i] = s;
      pos[s] = i;
      i = child;
    }
    heap[i] = slot;
    pos[slot] = i;
  }

  private siftUp(i: number): void {
    const heap = this.heap;
    const pos = this.heapPos;
    const counts = this.slotCount;
    const slot = heap[i]!;
    const c = counts[slot]!;
    while (i > 0) {
      const parent = (i - 1) >>> 1;
      const ps = heap[parent]!;
      if (counts[ps]! <= c) break;
      heap[i] = ps;
      pos[ps] = i;
      i = parent;
    }
    heap[i] = slot;
    pos[slot] = i;
  }

  /** Adds `count` (a non-negative finite number, default 1) to `item`. */
  add(item: string | number, count = 1): void {
    if (!(count >= 0 && count !== Infinity)) {
      throw new RangeError(`SpaceSaving.add: count must be a non-negative finite number, got ${count}`);
    }
    this.total += count;
    const slot = this.slots.get(item);
    if (slot !== undefined) {
      this.slotCount[slot]! += count;
      this.siftDown(this.heapPos[slot]!);
      return;
    }
    if (count === 0) return;
    if (this.used < this.capacity) {
      const s = this.used++;
      this.slotItem[s] = item;
      this.slotCount[s] = count;
      this.slotError[s] = 0;
      this.heap[s] = s;
      this.heapPos[s] = s;
      this.slots.set(item, s);
      this.siftUp(s);
      return;
    }
    const s = this.heap[0]!;
    const min = this.slotCount[s]!;
    this.slots.delete(this.slotItem[s]!);
    this.slotItem[s] = item;
    this.slotError[s] = min;
    this.slotCount[s] = min + count;
    this.slots.set(item, s);
    this.siftDown(0);
  }

  /** The smallest tracked count, the upper bound for untracked items (0 while not full). */
  minCount(): number {
    return this.used < this.capacity ? 0 : this.slotCount[this.heap[0]!]!;
  }

  /** Upper bound of `item`'s true count: its count if tracked, else {@link SpaceSaving.minCount}. */
  estimate(item: string | number): number {
    const slot = this.slots.get(item);
    return slot !== undefined ? this.slotCount[slot]! : this.minCount();
  }

  /** Lower bound of `item`'s true count: `count − error` if tracked, else 0. */
  lowerBound(item: string | number): number {
    const slot = this.slots.get(item);
    return slot !== undefined ? this.slotCount[slot]! - this.slotError[slot]! : 0;
  }

  /**
   * The `k` (default: all) tracked items with the largest counts, sorted by count descending
   * (ties: smaller error first).
   */
  top(k = this.capacity): TopKEntry[] {
    const order: number[] = [];
    for (let i = 0; i < this.used; i++) order.push(this.heap[i]!);
    const counts = this.slotCount;
    const errors = this.slotError;
    order.sort((a, b) => counts[b]! - counts[a]! || errors[a]! - errors[b]!);
    const out: TopKEntry[] = [];
    for (let i = 0; i < Math.min(k, order.length); i++) {
      const s = order[i]!;
      out.push({ item: this.slotItem[s]!, count: counts[s]!, error: errors[s]! });
    }
    return out;
  }

  /**
   * Merges `other` into this summary (in place) and returns `this`. Both must have the same
   * capacity; otherwise throws an Error naming both parameter sets.
   *
   * For every item tracked by either side, the merged upper bound is the sum of the two sides'
   * upper bounds (an untracked item's bound on a side is that side's {@link SpaceSaving.minCount})
   * and the merged lower bound the sum of the lower bounds; the `capacity` items with the largest
   * upper bounds are kept. This keeps `count − error ≤ true ≤ count`, `error ≤ N / capacity`, and
   * the sum of counts ≤ N (so later updates keep the bounds too).
   */
  merge(other: SpaceSaving): this {
    if (!(other instanceof SpaceSaving) || other.capacity !== this.capacity) {
      const theirs = other instanceof SpaceSaving ? `capacity=${other.capacity}` : String(other);
      throw new Error(`SpaceSaving.merge: parameters differ (this: capacity=${this.capacity}; other: ${theirs})`);
    }
    const minA = this.minCount();
    const minB = other.minCount();
    const items: Array<string | number> = [];
    const upper: number[] = [];
    const lower: number[] = [];
    for (let i = 0; i < this.used; i++) {
      const s = this.heap[i]!;
      const item = this.slotItem[s]!;
      const o = other.slots.get(item);
      items.push(item);
      if (o !== undefined) {
        upper.push(this.slotCount[s]! + other.slotCount[o]!);
        lower.push(this.slotCount[s]! - this.slotError[s]! + other.slotCount[o]! - other.slotError[o]!);
      } else {
        upper.push(this.slotCount[s]! + minB);
        lower.push(this.slotCount[s]! - this.slotError[s]!);
      }
    }
    for (let i = 0; i < other.used; i++) {
      const o = other.heap[i]!;
      const item = other.slotItem[o]!;
      if (this.slots.has(item)) continue;
      items.push(item);
      upper.push(other.slotCount[o]! + minA);
      lower.push(other.slotCount[o]! - other.slotError[o]!);
    }
    const order = items.map((_, i) => i);
    order.sort((a, b) => upper[b]! - upper[a]! || lower[b]! - lower[a]!);
    const keep = Math.min(this.capacity, order.length);
    this.slots.clear();
    for (let j = 0; j < keep; j++) {
      const i = order[j]!;
      this.slotItem[j] = items[i]!;
      this.slotCount[j] = upper[i]!;
      this.slotError[j] = upper[i]! - lower[i]!;
      this.slots.set(items[i]!, j);
    }
    for (let j = keep; j < this.capacity; j++) this.slotItem[j] = 0;
    this.used = keep;
    // Slots sorted by descending count: reversed, they form a valid min-heap.
    for (let j = 0; j < keep; j++) {
      this.heap[j] = keep - 1 - j;
      this.heapPos[keep - 1 - j] = j;
    }
    this.total += other.total;
    return this;
  }

  /** An independent copy. */
  clone(): SpaceSaving {
    const copy = new SpaceSaving(this.capacity);
    for (let i = 0; i < this.used; i++) copy.slotItem[i] = this.slotItem[i]!;
    copy.slotCount.set(this.slotCount);
    copy.slotError.set(this.slotError);
    copy.heap.set(this.heap);
    copy.heapPos.set(this.heapPos);
    for (const [item, slot] of this.slots) copy.slots.set(item, slot);
    copy.used = this.used;
    copy.total = this.total;
    return copy;
  }

  /** Forgets every item, keeping the capacity. */
  clear(): void {
    this.slots.clear();
    this.slotItem.fill(0);
    this.slotCount.fill(0);
    this.slotError.fill(0);
    this.used = 0;
    this.total = 0;
  }

  /**
   * True when `other` has the same capacity, total, and the same entries in the same heap order
   * (so both will evolve identically under the same updates).
   */
  equals(other: SpaceSaving): boolean {
    if (other.capacity !== this.capacity || other.used !== this.used || other.total !== this.total) return false;
    for (let i = 0; i < this.used; i++) {
      const a = this.heap[i]!;
      const b = other.heap[i]!;
      if (
        !Object.is(this.slotItem[a], other.slotItem[b]) ||
        this.slotCount[a] !== other.slotCount[b] ||
        this.slotError[a] !== other.slotError[b]
      ) {
        return false;
      }
    }
    return true;
  }

  /**
   * Binary form: header (magic `0x55`, version 1), then capacity (u32), number of entries (u32),
   * total weight N (f64), then each entry in heap order: count (f64), error (f64), a tag (u8:
   * 0 = number, 1 = string) and the item — a f64, or a length (u32) and that many UTF-16 code
   * units (u16) — all little-endian.
   */
  serialize(): Uint8Array {
    let size = HEADER_BYTES + 8 + 8;
    for (let i = 0; i < this.used; i++) {
      const item = this.slotItem[this.heap[i]!]!;
      size += 17 + (typeof item === 'number' ? 8 : 4 + 2 * item.length);
    }
    const w = new ByteWriter(size, SketchType.SpaceSaving, FORMAT_VERSION);
    w.u32(this.capacity);
    w.u32(this.used);
    w.f64(this.total);
    for (let i = 0; i < this.used; i++) {
      const s = this.heap[i]!;
      const item = this.slotItem[s]!;
      w.f64(this.slotCount[s]!);
      w.f64(this.slotError[s]!);
      if (typeof item === 'number') {
        w.u8(TAG_NUMBER);
        w.f64(item);
      } else {
        w.u8(TAG_STRING);
        w.u32(item.length);
        w.utf16(item);
      }
    }
    return w.finish();
  }

  /** Rebuilds a summary from {@link SpaceSaving.serialize}'s output; throws on malformed input. */
  static deserialize(bytes: Uint8Array): SpaceSaving {
    const r: ByteReader = new ByteReader(bytes, SketchType.SpaceSaving, [FORMAT_VERSION]);
    if (r.flags !== 0) r.fail(`unknown flags ${r.flags}`);
    const capacity = r.u32('capacity');
    const used = r.u32('number of entries');
    const total = r.f64('total weight');
    if (capacity < 1 || capacity > MAX_CAPACITY) r.fail(`invalid capacity ${capacity}`);
    if (used > capacity) r.fail(`${used} entries for capacity ${capacity}`);
    if (used * 21 > r.remaining()) r.need(used * 21, `${used} entries`); // ≥ 21 bytes per entry
    if (!(total >= 0 && total !== Infinity)) r.fail(`invalid total weight ${total}`);
    const summary = new SpaceSaving(capacity);
    let sum = 0;
    for (let i = 0; i < used; i++) {
      const count = r.f64('count');
      const error = r.f64('error');
      const tag = r.u8('item tag');
      let item: string | number;
      if (tag === TAG_NUMBER) item = r.f64('number item');
      else if (tag === TAG_STRING) item = r.utf16(r.u32('string length'), 'string item');
      else r.fail(`unknown item tag ${tag}`);
      if (!(count > 0 && error >= 0 && error <= count && count !== Infinity)) {
        r.fail(`invalid count ${count} / error ${error} of entry ${i}`);
      }
      if (i > 0 && count < summary.slotCount[(i - 1) >>> 1]!) r.fail(`entries out of heap order at ${i}`);
      if (summary.slots.has(item)) r.fail(`duplicate item ${String(item)}`);
      summary.slotItem[i] = item;
      summary.slotCount[i] = count;
      summary.slotError[i] = error;
      summary.heap[i] = i;
      summary.heapPos[i] = i;
      summary.slots.set(item, i);
      sum += count;
    }
    r.end();
    if (sum > total * (1 + 1e-9) + 1e-9) r.fail(`counts add up to ${sum}, more than the total ${total}`);
    summary.used = used;
    summary.total = total;
    return summary;
  }
}
