/**
 * A batch of records with their event timestamps: the unit that moves between operators.
 *
 * Batches are reused. A batch handed to an operator or sink is valid only for the duration of the
 * call; keep the values you need, never the batch or its arrays.
 */
export class Batch<T> {
  /** Record values; only the first `length` slots are meaningful. */
  readonly values: T[];
  /** Event timestamps (epoch ms), parallel to `values`. */
  readonly times: Float64Array;
  /** Number of records in the batch. */
  length = 0;

  constructor(readonly capacity: number) {
    this.values = new Array<T>(capacity);
    this.times = new Float64Array(capacity);
  }

  /** Appends a record; the caller checks capacity. */
  push(value: T, time: number): void {
    const n = this.length;
    this.values[n] = value;
    this.times[n] = time;
    this.length = n + 1;
  }

  /** Copies the records out as `{ value, time }` pairs (tests and debugging, not the hot path). */
  toArray(): Array<{ value: T; time: number }> {
    const out: Array<{ value: T; time: number }> = [];
    for (let i = 0; i < this.length; i++) out.push({ value: this.values[i] as T, time: this.times[i]! });
    return out;
  }
}

/** Default number of records per batch. */
export const DEFAULT_BATCH_SIZE = 1024;
