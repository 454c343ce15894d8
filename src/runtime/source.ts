import type { Clock } from '../time/clock.ts';

/** What a source reader's `poll` reports. */
export const SourceStatus = {
  /** Records may be available right away: poll again. */
  More: 'more',
  /** Nothing available now: wait for `ready()` before polling again. */
  Wait: 'wait',
  /** Every split of this reader is exhausted (bounded sources only). */
  End: 'end',
} as const;
export type SourceStatus = (typeof SourceStatus)[keyof typeof SourceStatus];

/**
 * A unit of input with its own position: a file or a byte range of one, a Kafka partition, a
 * share of a generator's sequence. Splits are assigned to parallel readers; a checkpoint stores
 * every split's position, so a restored job replays exactly what followed it, at any parallelism
 * (splits are reassigned).
 */
export interface Split<P = unknown> {
  /** Unique within the source and stable across runs. */
  readonly id: string;
  /** Where reading resumes (msgpack-encodable): an offset, an index, a sequence number. */
  readonly position: P;
}

/** Where a source reader writes records. */
export interface SourceOutput<T> {
  /**
   * Emits a record. `time` is the record's event time if the source knows it (a generator, a
   * broker timestamp); otherwise the step's timestamp function, or ingestion time, decides.
   * `origin` says where in the input the record came from (a line number, an offset): a record
   * that fails after the reader (its timestamp, say) is dead-lettered with `describe(origin)`.
   */
  emit(value: T, time?: number, origin?: number): void;
  /**
   * Emits a watermark chosen by the source itself (sources with `watermarks: 'explicit'`).
   * Ignored unless it advances the watermark.
   */
  watermark(watermark: number): void;
  /** Reports input the source could not turn into a record (a malformed line, say). */
  deadLetter(raw: unknown, error: unknown): void;
  /**
   * Declares this output idle now (it knows no data is coming, e.g. an empty partition) instead
   * of waiting for the idle timeout. The next emitted record makes it active again.
   */
  markIdle(): void;
  /**
   * The output of one split: its records get a watermark of their own, and the reader's watermark
   * is the minimum over the split outputs in use (per-split watermarks, so that splits read at
   * different speeds or one after another never make each other's records late). Calling it
   * registers the split: it holds the watermark back until it emits, finishes or goes idle.
   */
  split(id: string): SplitOutput<T>;
}

/** The output of one split. */
export interface SplitOutput<T> extends SourceOutput<T> {
  /** The split is exhausted: it no longer holds the watermark back. */
  finish(): void;
}

/** What the runtime gives a source when it enumerates splits and when it creates a reader. */
export interface SourceContext {
  readonly stepId: string;
  readonly clock: Clock;
  /** Index of this parallel instance and the number of instances of the source step. */
  readonly instance: number;
  readonly parallelism: number;
  /** Id of the checkpoint the job resumed from; undefined on a fresh start. */
  readonly restoredCheckpoint: number | undefined;
  /**
   * Logs a line on the job's log, prefixed with the step id (a broker that is unreachable and
   * when it answers again, an endpoint's address). Not deduplicated: the source decides how often
   * to speak.
   */
  readonly log?: (line: string) => void;
  /**
   * The job's checkpoint directory when it checkpoints to files: where a source keeps files that
   * belong with the checkpoints (push endpoints' write-ahead logs, by default). Absent otherwise.
   */
  readonly checkpointDir?: string;
}

/**
 * A source of records, split for parallel reading (after Flink's FLIP-27 sources): the runtime
 * asks `splits` for the input's splits on a fresh start (or takes them, with their positions,
 * from a checkpoint), assigns them to `parallelism` readers, and polls each reader.
 */
export interface Source<T> {
  /** A bounded source ends; an unbounded one runs until the job stops. */
  readonly bounded: boolean;
  /** `explicit`: the reader calls `out.watermark` itself and the runtime derives none. */
  readonly watermarks?: 'explicit' | 'derived';
  /**
   * Whether positions replay the input exactly (default true). A job with durable checkpoints
   * refuses to start with a source that cannot (an in-memory async iterable, say).
   */
  readonly replayable?: boolean;
  /** At most this many parallel readers; 1 for a source whose input cannot be divided. */
  readonly maxParallelism?: number;
  /**
   * Whether the source must run in the thread that built the pipeline (one instance), because
   * its input arrives there: push endpoints listening on a port, with their write-ahead logs.
   * A parallel job reads it there and sends what follows to the workers.
   */
  readonly local?: boolean;
  /**
   * The idle timeout when the step sets none (default: the runtime's, 10 s). A source whose reader
   * knows when it has caught up with its input, and says so with `markIdle`, sets 0: silence alone
   * then never makes it idle.
   */
  readonly idleTimeout?: number;
  /** The splits of the input, with their starting positions, on a fresh start. */
  splits(ctx: SourceContext): readonly Split[] | Promise<readonly Split[]>;
  /** A reader for one parallel instance. */
  createReader(ctx: SourceContext): SourceReader<T>;
}

/**
 * Reads the splits assigned to one parallel instance. Reading is pulled: `poll` must not block;
 * a reader that reads asynchronously buffers what arrived (boundedly) and returns `Wait` when the
 * buffer is empty, resolving `ready()` once more has arrived. Call order:
 *
 *   open → (poll | ready | snapshot | notifyCheckpointComplete)* → close
 *
 * `snapshot` is called between polls, when a checkpoint barrier is injected: it returns the
 * position of every assigned split such that resuming from it replays exactly the records not
 * yet emitted. `notifyCheckpointComplete(n)` says that the positions of checkpoint n are durable:
 * confirm them upstream (commit offsets, acknowledge messages, truncate a write-ahead log).
 * Throwing from any method fails the job.
 */
export interface SourceReader<T> {
  /** Receives this instance's splits with their positions (from a checkpoint or `splits`). */
  open(splits: readonly Split[]): void | Promise<void>;
  /** Emits at most `max` records. */
  poll(out: SourceOutput<T>, max: number): SourceStatus;
  /** Resolves when `poll` may make progress again after returning `Wait`. */
  ready?(): Promise<void>;
  /** The position of every assigned split now. */
  snapshot(checkpointId: number): readonly Split[];
  notifyCheckpointComplete?(checkpointId: number): void | Promise<void>;
  /** Where an emitted record's `origin` is in the input (for dead letters), e.g. `{ file, line }`. */
  describe?(origin: number): Record<string, unknown>;
  /**
   * The source's own counters and gauges, by name (a push endpoint's requests, accepted and
   * refused records, backlog…): the job's metrics carry them as the step's `source` metrics,
   * summed over instances. Called from the thread the reader runs in, between polls; keep it cheap.
   */
  metrics?(): Readonly<Record<string, number>>;
  close?(): void | Promise<void>;
}
