import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext } from '../runtime/operator.ts';
import { type Emitter, TimedEmitter } from './emitter.ts';

/**
 * Zero or more output records per input record, emitted through a reused emitter. If the
 * function throws, what it emitted for that record stays emitted and the record is dead-lettered.
 */
export class FlatMapOperator<T, U> implements Operator<T, U> {
  private emitter!: TimedEmitter<U>;
  private ctx!: OperatorContext<U>;

  constructor(private readonly fn: (value: T, out: Emitter<U>) => void) {}

  open(ctx: OperatorContext<U>): void {
    this.ctx = ctx;
    this.emitter = new TimedEmitter(ctx.output);
  }

  processBatch(batch: Batch<T>): void {
    const { values, times, length } = batch;
    const fn = this.fn;
    const emitter = this.emitter;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          emitter.time = times[i]!;
          fn(values[i] as T, emitter);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }
}
