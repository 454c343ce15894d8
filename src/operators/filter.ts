import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext, Output } from '../runtime/operator.ts';

/** Keeps the records for which the predicate is true. A throwing predicate dead-letters the record. */
export class FilterOperator<T> implements Operator<T, T> {
  private out!: Output<T>;
  private ctx!: OperatorContext<T>;

  constructor(private readonly predicate: (value: T) => boolean) {}

  open(ctx: OperatorContext<T>): void {
    this.ctx = ctx;
    this.out = ctx.output;
  }

  processBatch(batch: Batch<T>): void {
    const { values, times, length } = batch;
    const predicate = this.predicate;
    const out = this.out;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const v = values[i] as T;
          if (predicate(v)) out.emit(v, times[i]!);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }
}
