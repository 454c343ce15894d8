/**
 * Window assigners. Windows are aligned to the epoch (plus an optional offset) and half-open:
 * [start, end) holds the records with start <= time < end. A window fires when the watermark
 * reaches end - 1; its results carry timestamp end - 1.
 */

/** Fixed-size, non-overlapping windows. */
export interface TumblingWindows {
  readonly kind: 'tumbling';
  readonly size: number;
  readonly slide: number;
  readonly offset: number;
}

/**
 * Fixed-size windows starting every `slide`. Records are stored once per slice (pane) of
 * gcd(size, slide), never copied into every overlapping window.
 */
export interface SlidingWindows {
  readonly kind: 'sliding';
  readonly size: number;
  readonly slide: number;
  readonly offset: number;
}

/**
 * Per-key windows of activity: a record at time t opens [t, t + gap); windows that overlap merge.
 * A session ends `gap` after its last record. Records exactly `gap` apart start a new session.
 */
export interface SessionWindows {
  readonly kind: 'session';
  readonly gap: number;
}

export type WindowAssigner = TumblingWindows | SlidingWindows | SessionWindows;

/** Windows with start and end, as passed to window functions. */
export interface WindowInfo {
  readonly start: number;
  readonly end: number;
  /** True when this is an update of a window that already fired (late data, `update` policy). */
  readonly late: boolean;
}

function positive(name: string, value: number): void {
  if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a positive number of milliseconds, got ${value}`);
}

/**
 * Tumbling windows of `size` ms.
 *
 * @example
 * bids.keyBy((b) => b.auction).window(tumbling(10_000)).aggregate(count());
 */
export function tumbling(size: number, offset = 0): TumblingWindows {
  positive('tumbling window size', size);
  return { kind: 'tumbling', size, slide: size, offset: offset % size };
}

/**
 * Sliding windows of `size` ms every `slide` ms.
 *
 * @example
 * bids.keyBy((b) => b.auction).window(sliding(10_000, 2_000)).aggregate(count());
 */
export function sliding(size: number, slide: number, offset = 0): SlidingWindows {
  positive('sliding window size', size);
  positive('sliding window slide', slide);
  if (slide > size) throw new RangeError(`sliding window slide (${slide}) must not exceed its size (${size})`);
  return { kind: 'sliding', size, slide, offset: offset % slide };
}

/**
 * Session windows closing after `gap` ms without records.
 *
 * @example
 * bids.keyBy((b) => b.bidder).window(session(10_000)).aggregate(count());
 */
export function session(gap: number): SessionWindows {
  positive('session gap', gap);
  return { kind: 'session', gap };
}

/** Greatest common divisor (pane size of sliding windows). */
export function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
