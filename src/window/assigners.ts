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

/**
 * Longest window size, slide or session gap: 2^50 ms, about 35 700 years. Longer windows would
 * leave too little room for event times below {@link Number.MAX_SAFE_INTEGER} (see
 * {@link maxWindowTime}).
 */
export const MAX_WINDOW_LENGTH = 2 ** 50;

/**
 * Throws unless `value` is a whole number of milliseconds in [1, {@link MAX_WINDOW_LENGTH}].
 * Window bounds are derived from event times (whole milliseconds) by adding sizes: a fractional
 * length gives fractional bounds and result timestamps, and a tiny one gives t + length === t.
 */
function length(name: string, value: number): void {
  if (!(Number.isInteger(value) && value >= 1 && value <= MAX_WINDOW_LENGTH)) {
    throw new RangeError(`${name} must be a whole number of milliseconds from 1 to ${MAX_WINDOW_LENGTH} (2^50), got ${String(value)}`);
  }
}

/** Throws unless `value` is a whole number of milliseconds (any sign). */
function offsetOf(name: string, value: number, period: number): number {
  if (!Number.isSafeInteger(value)) throw new RangeError(`${name} must be a whole number of milliseconds, got ${String(value)}`);
  return value % period;
}

/**
 * Checks an assigner, also one built by hand rather than by {@link tumbling}, {@link sliding} or
 * {@link session}; throws a RangeError naming the bad field.
 */
export function checkAssigner(assigner: WindowAssigner): void {
  switch (assigner?.kind) {
    case 'session':
      length('session gap', assigner.gap);
      return;
    case 'tumbling':
    case 'sliding': {
      const name = `${assigner.kind} window`;
      length(`${name} size`, assigner.size);
      length(`${name} slide`, assigner.slide);
      if (assigner.kind === 'tumbling' && assigner.slide !== assigner.size) {
        throw new RangeError(`tumbling window slide (${assigner.slide}) must equal its size (${assigner.size})`);
      }
      if (assigner.slide > assigner.size) throw new RangeError(`sliding window slide (${assigner.slide}) must not exceed its size (${assigner.size})`);
      offsetOf(`${name} offset`, assigner.offset, assigner.slide);
      // tumbling() and sliding() reduce the offset modulo the slide; maxWindowTime counts on it.
      if (Math.abs(assigner.offset) >= assigner.slide) {
        throw new RangeError(`${name} offset (${assigner.offset}) must be less than its slide (${assigner.slide}) in magnitude`);
      }
      return;
    }
    default:
      throw new RangeError(`unknown window kind '${String((assigner as { kind?: unknown } | undefined)?.kind)}': use tumbling(), sliding() or session()`);
  }
}

/**
 * The largest |event time| in milliseconds that windows of `assigner` accept; records beyond it
 * are dead letters. Every time a window operator derives from a record's time t must be an
 * exact integer, that is at most {@link Number.MAX_SAFE_INTEGER} in magnitude: beyond it doubles
 * are 2 or more apart, so t + size can equal t (a zero-length window) and end + slide can equal
 * end (a firing loop that never advances). The farthest such times are, for sliced windows, the
 * end of the window after the record's last one (t + size + slide) and the start of its first
 * window's pane arithmetic (t − size − slide − pane); for sessions, t + gap.
 *
 * Allowed lateness is deliberately not subtracted: end − 1 + lateness is only compared with the
 * watermark to decide when state is dropped, never stepped through, and may be Infinity.
 *
 * For windows of minutes or hours the limit is about 9.007 × 10^15 ms (year 287 000): any real
 * millisecond timestamp passes, a nanosecond one (≈ 1.7 × 10^18) does not.
 *
 * @example
 * maxWindowTime(tumbling(10_000)); // Number.MAX_SAFE_INTEGER - 30_000
 */
export function maxWindowTime(assigner: WindowAssigner): number {
  checkAssigner(assigner);
  const reach = assigner.kind === 'session' ? assigner.gap : assigner.size + assigner.slide + gcd(assigner.size, assigner.slide);
  return Number.MAX_SAFE_INTEGER - reach;
}

const MS_PER_YEAR = 365.2425 * 86_400_000;

/** The error of a record whose time is beyond {@link maxWindowTime}. */
export function timeOutOfRange(time: number, assigner: WindowAssigner, limit: number): RangeError {
  const what =
    assigner.kind === 'session' ? `session windows with a gap of ${assigner.gap} ms` : `${assigner.kind} windows of ${assigner.size} ms`;
  return new RangeError(
    `event time ${String(time)} is out of range for ${what}: |time| must be at most ${limit} ms ` +
      `(about ${Math.floor(limit / MS_PER_YEAR).toLocaleString('en-US')} years from 1970) for window bounds to be exact; ` +
      'is it in microseconds or nanoseconds instead of milliseconds?',
  );
}

/**
 * Tumbling windows of `size` ms.
 *
 * @example
 * bids.keyBy((b) => b.auction).window(tumbling(10_000)).aggregate(count());
 */
export function tumbling(size: number, offset = 0): TumblingWindows {
  length('tumbling window size', size);
  return { kind: 'tumbling', size, slide: size, offset: offsetOf('tumbling window offset', offset, size) };
}

/**
 * Sliding windows of `size` ms every `slide` ms.
 *
 * @example
 * bids.keyBy((b) => b.auction).window(sliding(10_000, 2_000)).aggregate(count());
 */
export function sliding(size: number, slide: number, offset = 0): SlidingWindows {
  length('sliding window size', size);
  length('sliding window slide', slide);
  if (slide > size) throw new RangeError(`sliding window slide (${slide}) must not exceed its size (${size})`);
  return { kind: 'sliding', size, slide, offset: offsetOf('sliding window offset', offset, slide) };
}

/**
 * Session windows closing after `gap` ms without records.
 *
 * @example
 * bids.keyBy((b) => b.bidder).window(session(10_000)).aggregate(count());
 */
export function session(gap: number): SessionWindows {
  length('session gap', gap);
  return { kind: 'session', gap };
}

/** Greatest common divisor of two safe integers (pane size of sliding windows). */
export function gcd(a: number, b: number): number {
  // Euclid on NaN or Infinity never reaches 0 (x % NaN is NaN), and on fractions it ends in a
  // rounding residue: refuse both rather than loop or return a pane of 1e-16 ms.
  if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b)) throw new RangeError(`gcd needs whole numbers, got ${a} and ${b}`);
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** The pane (slice) start of a time for tumbling or sliding windows: panes are gcd(size, slide) long. */
export function paneOf(assigner: TumblingWindows | SlidingWindows): (time: number) => number {
  const pane = gcd(assigner.size, assigner.slide);
  const offset = assigner.offset;
  return (t) => {
    const r = (t - offset) % pane;
    return t - (r < 0 ? r + pane : r);
  };
}
