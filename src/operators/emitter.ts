import type { OutputTag } from '../api/output-tag.ts';
import type { Output } from '../runtime/operator.ts';

/** Emits records from a user function; the timestamp defaults to the current record's. */
export interface Emitter<T> {
  emit(value: T): void;
}

/**
 * The emitter handed to user functions: one reused object per operator, its `time` set before
 * each call, so emitting allocates nothing.
 */
export class TimedEmitter<T> implements Emitter<T> {
  time = 0;
  constructor(private readonly out: Output<T>) {}
  emit(value: T): void {
    this.out.emit(value, this.time);
  }
}

/** What a non-keyed process function sees. */
export interface ProcessContext<O> {
  /** Event timestamp of the current record. */
  readonly timestamp: number;
  /** The step's current watermark. */
  readonly watermark: number;
  /** Emits to the main output, at the current record's timestamp unless `time` is given. */
  emit(value: O, time?: number): void;
  /** Emits to a side output. */
  output<X>(tag: OutputTag<X>, value: X, time?: number): void;
}

/**
 * Validates a timestamp a user function gives explicitly: finite, truncated to whole ms. A bad
 * one throws, which dead-letters the record being processed.
 */
export function explicitTime(time: number): number {
  if (typeof time !== 'number' || !Number.isFinite(time)) throw new RangeError(`an event time must be a finite number, got ${String(time)}`);
  return Math.floor(time);
}
