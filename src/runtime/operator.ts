import type { Clock } from '../time/clock.ts';
import type { KeyedStateBackend } from '../state/keyed-state-backend.ts';
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

/** Counters every step raises; the runtime reads them for metrics and the dashboard. */
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
  /** Index of this parallel instance, and the number of instances of the step. */
  readonly instance: number;
  readonly parallelism: number;
  /** The main output. */
  readonly output: Output<OUT>;
  /** Processing time. */
  readonly clock: Clock;
  /** Number of key groups (the maximum parallelism). */
  readonly maxParallelism: number;
  readonly metrics: OperatorMetrics;
  /**
   * The step's input watermark: the minimum over its active input channels. The runtime owns it
   * and snapshots it, so a restored step starts from the watermark it had at the checkpoint.
   */
  readonly watermark: number;
  /**
   * Keyed state of this instance. Declare every table in `open`; a restored step's tables are
   * filled from the checkpoint as they are declared, before any input arrives.
   */
  readonly state: KeyedStateBackend;
  /**
   * Non-keyed state this instance took over from a checkpoint: what `snapshotOperatorState`
   * returned, for each old instance whose share it now runs (several after scaling in, none after
   * scaling out beyond the old instances). Empty on a fresh start.
   */
  readonly restoredOperatorState: readonly unknown[];
  /** Id of the checkpoint the job resumed from; undefined on a fresh start. */
  readonly restoredCheckpoint: number | undefined;
  /** The job's `scope` (JobOptions.scope), if it has one. */
  readonly scope: string | undefined;
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
  /**
   * Whether input `input` delivers partial aggregates (`{ k, a, n }` records, time = their pane's
   * start) instead of records: the step offered pre-aggregation and the input crosses an exchange.
   */
  combined(input: number): boolean;
  /** Logs a warning on the job's log, once per distinct `message`. */
  warnOnce(message: string): void;
  /** Logs a line on the job's log (prefixed with the step id), every time. */
  log(line: string): void;
}

/**
 * A step's runtime logic. The runtime creates one instance per parallel instance of the step and
 * calls it from one thread, never concurrently, in this order:
 *
 *   open → (processBatch | onWatermark | onIdle | onProcessingTime
 *           | prepareSnapshotPreBarrier → snapshotOperatorState
 *           | notifyCheckpointComplete | notifyCheckpointAborted)* → endInput? → close
 *
 * - State is restored before `open` returns: keyed state as tables are declared on `ctx.state`,
 *   operator state in `ctx.restoredOperatorState`, the watermark in `ctx.watermark`.
 * - A checkpoint barrier that has arrived on every input calls `prepareSnapshotPreBarrier` (emit
 *   what must precede the barrier), then the runtime snapshots the keyed state, calls
 *   `snapshotOperatorState`, and forwards the barrier. Snapshots must not change state.
 * - `notifyCheckpointComplete(n)` comes once checkpoint n is durable everywhere (its manifest is
 *   committed); it may come late or never for a given n (a later one covers it).
 * - Output emitted during a call is flushed downstream when the call returns; the watermark is
 *   forwarded after `onWatermark` returns, so results it fires precede it.
 * - User-function errors are caught by the operators and reported with `ctx.deadLetter`; an
 *   exception escaping a hook fails the job (with the step id), which then restarts from the last
 *   checkpoint if it is run with one.
 */
export interface Operator<IN, OUT> {
  /** Declares state and takes the context. May be async (sinks connect here). */
  open(ctx: OperatorContext<OUT>): void | Promise<void>;
  /** Processes a batch arriving on input `input` (0-based, in the order inputs were declared). */
  processBatch(batch: Batch<IN>, input: number): void;
  /** The step's watermark advanced to `watermark` (read it also from `ctx.watermark`): fire timers and windows. */
  onWatermark?(watermark: number): void;
  /**
   * The step became idle (`true`: every open input is idle, so its watermark stands still without
   * holding anyone back) or active again (`false`, before the input that ends the idleness is
   * processed). Called only on a change, before the idleness is forwarded downstream; output
   * emitted here precedes it. Most operators need not know (the runtime forwards idleness);
   * a sink that carries time to another job does (`SinkOperator` hands it to `Sink.idle`).
   */
  onIdle?(idle: boolean): void;
  /**
   * The earliest event time at which the operator has something due — a window's end, a timer —
   * or Infinity: the dashboard's answer to "why hasn't my window fired?" compares it with the
   * watermark and the inputs that hold it back.
   */
  nextEventTime?(): number;
  /** The clock reached a time requested with {@link OperatorContext.requestProcessingTime}. */
  onProcessingTime?(now: number): void;
  /** All inputs ended (bounded input): emit what is still pending. Follows the final watermark. */
  endInput?(): void;
  /** Checkpoint `checkpointId`'s barrier arrived on every input: emit what must precede it. */
  prepareSnapshotPreBarrier?(checkpointId: number): void;
  /**
   * Non-keyed state for checkpoint `checkpointId` (msgpack-encodable), or undefined for none. A
   * promise defers only the checkpoint's acknowledgement (a sink's pre-commit I/O), never input.
   */
  snapshotOperatorState?(checkpointId: number): unknown;
  /** Checkpoint `checkpointId` is complete: make its effects visible (sinks commit). */
  notifyCheckpointComplete?(checkpointId: number): void | Promise<void>;
  /** Checkpoint `checkpointId` failed; its pre-committed work is kept for the next one. */
  notifyCheckpointAborted?(checkpointId: number): void;
  /** A promise while the step cannot take more input (a slow sink); undefined when it can. */
  backpressure?(): Promise<void> | undefined;
  close?(): void | Promise<void>;
}
