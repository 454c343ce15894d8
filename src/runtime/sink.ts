import type { Batch } from './batch.ts';

/** What the runtime gives a sink when it opens. */
export interface SinkContext {
  readonly stepId: string;
}

/**
 * A destination for records. `write` is synchronous and must copy whatever it keeps; a sink that
 * writes asynchronously buffers and reports backpressure, so that a slow destination slows the
 * sources down instead of growing memory. Call order:
 *
 *   open → (write | backpressure)* → flush? → close
 *
 * `flush` is called at the end of bounded input (and, later, at checkpoints); after it resolves,
 * everything written so far must be durable in the destination.
 */
export interface Sink<T> {
  open?(ctx: SinkContext): void | Promise<void>;
  write(batch: Batch<T>): void;
  /** A promise while the sink cannot take more input; undefined when it can. */
  backpressure?(): Promise<void> | undefined;
  flush?(): void | Promise<void>;
  close?(): void | Promise<void>;
}
