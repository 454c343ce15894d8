import type { Batch } from '../../runtime/batch.ts';
import type { Sink, SinkContext } from '../../runtime/sink.ts';

/**
 * Keeps every record in memory, with its timestamp: for tests and small results. It runs in the
 * thread that built the pipeline (parallel jobs gather its input there) and writes through: after
 * a restart from a checkpoint it sees again what followed the checkpoint.
 *
 * @example
 * const out = new CollectSink<number>();
 * p.fromArray([1, 2]).sink(out);
 * await p.run();
 * out.values; // [1, 2]
 */
export class CollectSink<T> implements Sink<T> {
  readonly local = true;
  readonly parallelism = 1;
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

/**
 * Calls a function for every record (synchronously, in order), in the thread that built the
 * pipeline. A call that throws makes its record a dead letter of the sink's step; the rest of the
 * batch is still delivered.
 *
 * @example
 * p.fromArray([1, 2]).sink(new CallbackSink((n) => console.log(n)));
 */
export class CallbackSink<T> implements Sink<T> {
  readonly local = true;
  readonly parallelism = 1;
  private ctx: SinkContext | null = null;

  constructor(private readonly fn: (value: T, time: number) => void) {}

  open(ctx: SinkContext): void {
    this.ctx = ctx;
  }

  write(batch: Batch<T>): void {
    const fn = this.fn;
    const { values, times, length } = batch;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) fn(values[i] as T, times[i]!);
      } catch (error) {
        if (this.ctx === null) throw error;
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }
}
