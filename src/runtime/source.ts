import type { Clock } from '../time/clock.ts';

/** What a source's `poll` reports. */
export const SourceStatus = {
  /** Records may be available right away: poll again. */
  More: 'more',
  /** Nothing available now: wait for `ready()` before polling again. */
  Wait: 'wait',
  /** The input is exhausted (bounded sources only). */
  End: 'end',
} as const;
export type SourceStatus = (typeof SourceStatus)[keyof typeof SourceStatus];

/** Where a source writes records. */
export interface SourceOutput<T> {
  /**
   * Emits a record. `time` is the record's event time if the source knows it (a generator, a
   * broker timestamp); otherwise the step's timestamp function, or ingestion time, decides.
   */
  emit(value: T, time?: number): void;
  /**
   * Emits a watermark chosen by the source itself (sources with `watermarks: 'explicit'`).
   * Ignored unless it advances the watermark.
   */
  watermark(watermark: number): void;
  /** Reports input the source could not turn into a record (a malformed line, say). */
  deadLetter(raw: unknown, error: unknown): void;
  /**
   * Declares the source idle now (it knows no data is coming, e.g. an empty partition), instead
   * of waiting for the idle timeout. The next emitted record makes it active again.
   */
  markIdle(): void;
}

/** What the runtime gives a source when it opens. */
export interface SourceContext {
  readonly stepId: string;
  readonly clock: Clock;
  /** Index of this parallel instance and the number of instances (for splitting the input). */
  readonly instance: number;
  readonly parallelism: number;
}

/**
 * A source of records. Sources are pulled: the runtime calls `poll`, which must not block; a
 * source that reads asynchronously buffers what arrived and returns `Wait` when the buffer is
 * empty, resolving `ready()` once more has arrived. Call order:
 *
 *   open → (poll | ready | snapshot)* → close
 *
 * `restore` is called before `open` when the job resumes from a snapshot; the state it receives
 * is what `snapshot` returned (offsets, positions), so that the source replays from there.
 */
export interface Source<T> {
  /** A bounded source ends; an unbounded one runs until the job stops. */
  readonly bounded: boolean;
  /** `explicit`: the source calls `out.watermark` itself and the runtime derives none. */
  readonly watermarks?: 'explicit' | 'derived';
  open?(ctx: SourceContext): void | Promise<void>;
  /** Emits at most `max` records. */
  poll(out: SourceOutput<T>, max: number): SourceStatus;
  /** Resolves when `poll` may make progress again after returning `Wait`. */
  ready?(): Promise<void>;
  /** The source's position, to resume from. Must be encodable as msgpack. */
  snapshot?(): unknown;
  restore?(state: unknown): void;
  close?(): void | Promise<void>;
}
