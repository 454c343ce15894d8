import type { Batch } from './batch.ts';
import type { Operator, OperatorContext } from './operator.ts';
import type { Sink } from './sink.ts';

/** Runs a {@link Sink} as the last step of a branch. */
export class SinkOperator implements Operator<unknown, never> {
  private stepId = '';

  constructor(readonly sink: Sink<unknown>) {}

  open(ctx: OperatorContext<never>): void {
    this.stepId = ctx.stepId;
  }

  openSink(): void | Promise<void> {
    return this.sink.open?.({ stepId: this.stepId });
  }

  processBatch(batch: Batch<unknown>): void {
    this.sink.write(batch);
  }

  backpressure(): Promise<void> | undefined {
    return this.sink.backpressure?.();
  }

  async flushSink(): Promise<void> {
    await this.sink.flush?.();
  }

  async closeSink(): Promise<void> {
    await this.sink.close?.();
  }
}
