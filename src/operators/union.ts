import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext, Output } from '../runtime/operator.ts';

/** Merges several inputs of the same type; its watermark is the minimum of theirs. */
export class UnionOperator<T> implements Operator<T, T> {
  private out!: Output<T>;

  open(ctx: OperatorContext<T>): void {
    this.out = ctx.output;
  }

  processBatch(batch: Batch<T>): void {
    const { values, times, length } = batch;
    const out = this.out;
    for (let i = 0; i < length; i++) out.emit(values[i] as T, times[i]!);
  }
}
