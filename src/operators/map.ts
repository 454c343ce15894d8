import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext, Output } from '../runtime/operator.ts';

/** One output record per input record. A throwing function dead-letters the record. */
export class MapOperator<T, U> implements Operator<T, U> {
  private out!: Output<U>;
  private ctx!: OperatorContext<U>;

  constructor(private readonly fn: (value: T) => U) {}

  open(ctx: OperatorContext<U>): void {
    this.ctx = ctx;
    this.out = ctx.output;
  }

  processBatch(batch: Batch<T>): void {
    const { values, times, length } = batch;
    const fn = this.fn;
    const out = this.out;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) out.emit(fn(values[i] as T), times[i]!);
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }
}
