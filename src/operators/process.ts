import type { OutputTag } from '../api/output-tag.ts';
import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext, Output } from '../runtime/operator.ts';
import { explicitTime, type ProcessContext } from './emitter.ts';

/** A non-keyed process function: any number of outputs and side outputs per record. */
export type ProcessFunction<T, O> = (value: T, ctx: ProcessContext<O>) => void;

/** Runs a {@link ProcessFunction}; the context object is reused across records. */
export class ProcessOperator<T, O> implements Operator<T, O>, ProcessContext<O> {
  timestamp = 0;
  watermark = -Infinity;
  private ctx!: OperatorContext<O>;
  private out!: Output<O>;

  constructor(private readonly fn: ProcessFunction<T, O>) {}

  open(ctx: OperatorContext<O>): void {
    this.ctx = ctx;
    this.out = ctx.output;
  }

  emit(value: O, time?: number): void {
    this.out.emit(value, time === undefined ? this.timestamp : explicitTime(time));
  }

  output<X>(tag: OutputTag<X>, value: X, time?: number): void {
    this.ctx.sideOutput(tag).emit(value, time === undefined ? this.timestamp : explicitTime(time));
  }

  processBatch(batch: Batch<T>): void {
    const { values, times, length } = batch;
    const fn = this.fn;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          this.timestamp = times[i]!;
          fn(values[i] as T, this);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }

  onWatermark(watermark: number): void {
    this.watermark = watermark;
  }
}
