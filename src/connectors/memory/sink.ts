import type { Batch } from '../../runtime/batch.ts';
import type { Sink } from '../../runtime/sink.ts';

/**
 * Keeps every record in memory, with its timestamp: for tests and small results.
 *
 * @example
 * const out = new CollectSink<number>();
 * p.fromArray([1, 2]).sink(out);
 * await p.run();
 * out.values; // [1, 2]
 */
export class CollectSink<T> implements Sink<T> {
  readonly records: Array<{ value: T; time: number }> = [];

  get values(): T[] {
    return this.records.map((r) => r.value);
  }

  write(batch: Batch<T>): void {
    for (let i = 0; i < batch.length; i++) this.records.push({ value: batch.values[i] as T, time: batch.times[i]! });
  }

  /** Removes and returns what was collected so far. */
  take(): T[] {
    const out = this.values;
    this.records.length = 0;
    return out;
  }
}

/** Calls a function for every record (synchronously, in order). */
export class CallbackSink<T> implements Sink<T> {
  constructor(private readonly fn: (value: T, time: number) => void) {}

  write(batch: Batch<T>): void {
    const fn = this.fn;
    for (let i = 0; i < batch.length; i++) fn(batch.values[i] as T, batch.times[i]!);
  }
}
