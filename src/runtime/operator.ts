import type { Clock } from '../time/clock.ts';
import type { OperatorSnapshot } from '../state/snapshot.ts';
import type { Batch } from './batch.ts';
import type { OutputTag } from '../api/output-tag.ts';

/**
 * Where an operator sends records. `emit` appends to a reused batch, which the runtime hands
 * downstream when it is full and after each call into the operator; no allocation per record.
 */
export interface Output<T> {
  emit(value: T, time: number): void;
}

/** A record that a step could not process, with the reason. */
export interface DeadLetter {
  /** Id of the step that failed. */
  readonly step: string;
  /** The error message. */
  readonly error: string;
  /** The input record (or raw input, for parse errors). */
  readonly record: unknown;
  /** The record's event timestamp, if it had one. */
  readonly time: number;
}

/** Counters every operator can raise; the runtime reads them for metrics and the dashboard. */
export interface OperatorMetrics {
  recordsIn: number;
  recordsOut: number;
  deadLetters: number;
  /** Records that arrived after the watermark had passed their window or time. */
  lateRecords: number;
  /** Late records dropped (beyond allowed lateness, or under the drop policy). */
  lateDropped: number;
  /** Records dropped as repeats of a recently seen key (`dedupe`; includes its rare false positives). */
  duplicatesDropped: number;
  /**
   * Keys that `dedupe` remembered after its filters reached their memory bound, where its
   * documented false-positive rate no longer holds (0 while the bound is not reached).
   */
  keysBeyondMemoryBound: number;
}

/** What the runtime gives an operator when it opens. */
export interface OperatorContext<OUT> {
  /** The step's stable id. */
  readonly stepId: string;
  /** The main output. */
  readonly output: Output<OUT>;
  /** Processing time. */
  readonly clock: Clock;
  /** Number of key groups (the maximum parallelism). */
  readonly maxParallelism: number;
  readonly metrics: OperatorMetrics;
  /** The output for a side-output tag (created on first use). */
  sideOutput<X>(tag: OutputTag<X>): Output<X>;
  /**
   * Reports a record the step could not process. Under the default error policy the record goes
   * to the dead-letter output and a counter rises; under fail-fast the job fails with `error`.
   */
  deadLetter(record: unknown, error: unknown, time: number): void;
  /**
   * Asks to be called back through {@link Operator.onProcessingTime} once the clock reaches
   * `time`. Only the earliest pending request counts; ask again after each callback.
   */
  requestProcessingTime(time: number): void;
}

/**
 * A step's runtime logic. One instance per parallel instance of the step; the runtime calls it
 * from a single thread and never concurrently, in this order:
 *
 *   open → (processBatch | onWatermark | onProcessingTime)* → snapshot* → endInput? → close
 *
 * `snapshot` may be called between any two calls of the middle phase; `restore` is called at most
 * once, after open and before any input. Output emitted during a call is flushed downstream when
 * the call returns; a watermark is forwarded after `onWatermark` returns, so results it fires
 * precede it. Throwing from any hook fails the job (user-function errors are caught by the
 * operators themselves and become dead letters).
 */
export interface Operator<IN, OUT> {
  open(ctx: OperatorContext<OUT>): void;
  /** Processes a batch arriving on input `input` (0-based, in the order inputs were declared). */
  processBatch(batch: Batch<IN>, input: number): void;
  /** The combined watermark of all inputs advanced to `watermark`: fire timers and windows. */
  onWatermark?(watermark: number): void;
  /** The clock reached a time requested with {@link OperatorContext.requestProcessingTime}. */
  onProcessingTime?(now: number): void;
  /** All inputs ended (bounded input): emit what is still pending. Follows the final watermark. */
  endInput?(): void;
  /** Captures the operator's state. Must not change it. */
  snapshot?(): OperatorSnapshot;
  /** Loads state captured by `snapshot` (possibly a subset of key groups, possibly merged). */
  restore?(snapshot: OperatorSnapshot): void;
  /** The checkpoint `id` that included this operator's snapshot is durable everywhere. */
  onCheckpointComplete?(id: number): void;
  close?(): void;
}
