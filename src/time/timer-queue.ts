import type { Key } from '../state/key-group.ts';
import type { StateTable } from '../state/keyed-state-backend.ts';
import { StateVersionError } from '../state/keyed-table.ts';
import type { KeyedSnapshotReader, KeyedSnapshotWriter } from '../state/snapshot.ts';

/**
 * Timers of a keyed operator on one time axis (event time or processing time): at most one timer
 * per (key, time). Distinct times sit in a binary min-heap; the keys due at each time in a Set,
 * so registering a timer that exists is a lookup and firing visits keys in registration order.
 */
export class TimerQueue implements StateTable {
  readonly version = 1;
  private heap: number[] = [];
  private readonly byTime = new Map<number, Set<Key>>();
  private count = 0;

  /** `name` keys the timers in snapshots (`timers:event`, `timers:processing`). */
  constructor(readonly name: string) {}

  /** Number of pending timers. */
  get size(): number {
    return this.count;
  }

  /** The earliest pending time, or Infinity. */
  peek(): number {
    return this.heap.length === 0 ? Infinity : this.heap[0]!;
  }

  register(key: Key, time: number): void {
    // NaN would break the heap order and stop every timer behind it.
    if (time !== time) throw new RangeError(`a timer time must be a number, got NaN (key ${String(key)})`);
    let keys = this.byTime.get(time);
    if (keys === undefined) {
      keys = new Set();
      this.byTime.set(time, keys);
      this.push(time);
    }
    if (!keys.has(key)) {
      keys.add(key);
      this.count++;
    }
  }

  delete(key: Key, time: number): void {
    const keys = this.byTime.get(time);
    if (keys !== undefined && keys.delete(key)) this.count--;
    // The heap entry stays; an empty time is skipped when it comes up.
  }

  has(key: Key, time: number): boolean {
    return this.byTime.get(time)?.has(key) ?? false;
  }

  /**
   * Fires every timer with time <= `upTo`, earliest first, calling `fire(key, time)`. Timers that
   * `fire` registers at times <= `upTo` fire in the same call.
   */
  advance(upTo: number, fire: (key: Key, time: number) => void): void {
    while (this.heap.length > 0 && this.heap[0]! <= upTo) {
      const time = this.pop();
      const keys = this.byTime.get(time);
      if (keys === undefined) continue;
      // Timers registered for this same time while firing join this set and are visited too.
      for (const key of keys) {
        keys.delete(key);
        this.count--;
        fire(key, time);
      }
      this.byTime.delete(time);
    }
  }

  snapshot(writer: KeyedSnapshotWriter): void {
    for (const [time, keys] of this.byTime) for (const key of keys) writer.add(this.name, key, time);
  }

  restore(reader: KeyedSnapshotReader, writtenVersion: number): void {
    if (writtenVersion !== this.version) throw new StateVersionError(this.name, writtenVersion, this.version);
    reader.forEach(this.name, (flat) => {
      for (let i = 0; i < flat.length; i += 2) this.register(flat[i] as Key, flat[i + 1] as number);
    });
  }

  private push(time: number): void {
    const heap = this.heap;
    let i = heap.length;
    heap.push(time);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]! <= time) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = time;
  }

  private pop(): number {
    const heap = this.heap;
    const top = heap[0]!;
    const last = heap.pop()!;
    const n = heap.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && heap[r]! < heap[l]! ? r : l;
        if (heap[c]! >= last) break;
        heap[i] = heap[c]!;
        i = c;
      }
      heap[i] = last;
    }
    return top;
  }
}
