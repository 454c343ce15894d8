import type { Clock } from '../time/clock.ts';
import type { Batch } from './batch.ts';

/** What the runtime gives a sink when it opens. */
export interface SinkContext {
  readonly stepId: string;
  /** Index of this parallel instance, and the number of instances of the sink. */
  readonly instance: number;
  readonly parallelism: number;
  readonly clock: Clock;
  /** Id of the checkpoint the job resumed from; undefined on a fresh start. */
  readonly restoredCheckpoint: number | undefined;
  /**
   * Reports a record the sink cannot write (it cannot be encoded, say): it becomes a dead letter
   * with the sink's step id and the rest of the batch is written.
   */
  deadLetter(record: unknown, error: unknown, time: number): void;
  /**
   * Logs a line on the job's log, prefixed with the step id (an outage and its end, say). Unlike
   * warnings it is not deduplicated: the sink decides how often to speak.
   */
  log?(line: string): void;
  /**
   * Set when one pipeline runs as several jobs at once — the tasks of a job spread over processes
   * (`src/cluster/`) — to the task's name (`t3`): a sink with identities outside the job
   * (transactional ids) makes them unique with it, so that tasks never fence each other.
   */
  readonly scope?: string;
}

/** What a sink pre-committed for one checkpoint, as stored in the checkpoint. */
export interface Committable<C> {
  readonly checkpointId: number;
  /** The instance that pre-committed it (instances may be renumbered by rescaling since). */
  readonly instance: number;
  readonly data: C;
}

/**
 * A destination for records, taking part in checkpoints through two-phase commit (after Flink's
 * Sink v2 writer and committer):
 *
 *   open → (write | watermark | idle | backpressure)* → preCommit(n) → (write)* → commit([..n]) → ... → close
 *
 * - `write` is synchronous and must copy what it keeps. A sink that writes asynchronously buffers
 *   (boundedly) and reports `backpressure()` until it can take more; the runtime then stops
 *   feeding it and, through credits, slows the sources.
 * - `preCommit(n)` is called when checkpoint n's barrier reaches the sink: make everything written
 *   since the previous pre-commit durable but not yet visible, and return what `commit` needs
 *   (msgpack-encodable; stored in the checkpoint). Its synchronous part runs in line with the
 *   data; a returned promise delays only the checkpoint's acknowledgement.
 * - `commit(committables)` is called once checkpoint n is complete (its manifest durable), with
 *   every committable up to n not yet committed, in checkpoint order; after a crash it is called
 *   again at `open` with the committables of the checkpoint the job resumes from. It must be
 *   idempotent (e.g. a commit table holding the checkpoint id in the same transaction as the
 *   rows) and may be retried after a failure.
 * - `watermark(w)` and `idle(idle)` (optional) pass the sink's input time on, in line with the
 *   data, for a sink that hands records to another job which needs it (a repartition topic read
 *   by the next tasks of a cluster job, `src/cluster/repartition.ts`); most sinks leave them out.
 * - `abort(after)` is called at `open` on recovery: drop what was pre-committed for checkpoints
 *   after `after` (they never completed), and anything written but never pre-committed.
 * - A sink without `preCommit`/`commit` writes through: what it wrote is visible at once, and a
 *   restart replays what followed the last checkpoint (at-least-once). `preCommit` is then its
 *   flush point (the end of bounded input also goes through a final checkpoint).
 *
 * Throwing from `open`, `write`, `preCommit` or `close` fails the job (with the step id); a
 * failing `commit` is retried with backoff while the sink reports backpressure.
 */
export interface Sink<T, C = unknown> {
  /** At most this many parallel instances (1: every record is gathered to one writer). */
  readonly parallelism?: number;
  /**
   * Whether the sink must run in the thread that built the pipeline, because it hands records to
   * that thread's memory (collect, callbacks) or to a resource only one thread of the process may
   * hold (an embedded database file). Parallel jobs send its input there: to one instance, or to
   * as many as `parallelism` allows (default 1 for a local sink), all in that thread.
   */
  readonly local?: boolean;
  open?(ctx: SinkContext): void | Promise<void>;
  write(batch: Batch<T>): void;
  /** A promise while the sink cannot take more input; undefined when it can. */
  backpressure?(): Promise<void> | undefined;
  /**
   * The sink's input watermark advanced to `watermark`: every record at or before it has been
   * written (`MAX_WATERMARK` once the input has ended, before the final `preCommit`). Called after
   * the `write` of the records that preceded it, never during one; it does not come again for a
   * restored watermark (a restored sink hears only advances beyond it). Throwing fails the job.
   */
  watermark?(watermark: number): void;
  /**
   * The sink's input became idle (`true`: every input is idle, so neither records nor watermarks
   * are coming for now) or active again (`false`, before the records that end the idleness).
   * Called only on a change. Throwing fails the job.
   */
  idle?(idle: boolean): void;
  preCommit?(checkpointId: number): C | undefined | Promise<C | undefined>;
  commit?(committables: ReadonlyArray<Committable<C>>): void | Promise<void>;
  abort?(afterCheckpointId: number | undefined): void | Promise<void>;
  close?(): void | Promise<void>;
}
