/**
 * Watermarks: a watermark W asserts that no more records with timestamp <= W will arrive.
 * Timers and windows fire when the watermark reaches their time: a window [start, end) fires at
 * W >= end - 1. Bounded inputs end with {@link MAX_WATERMARK}, which fires everything.
 */

/** The watermark before any input has been seen. */
export const MIN_WATERMARK = -Infinity;

/** The final watermark, sent when a bounded input ends. */
export const MAX_WATERMARK = Infinity;

/** How a source derives watermarks and detects idleness. */
export interface WatermarkOptions {
  /**
   * Records may arrive up to this many milliseconds behind the highest timestamp seen; the
   * watermark trails the highest timestamp by this bound (bounded out-of-orderness). Default 0.
   */
  outOfOrderness?: number;
  /**
   * A source that emits nothing for this long (processing time) is marked idle and stops
   * holding back downstream watermarks until it emits again. Default 10 000 ms; 0 disables.
   */
  idleTimeout?: number;
  /**
   * Opt-in guard against poisoned time: a record more than this many milliseconds ahead of the
   * source's current watermark is a dead letter instead of dragging the watermark (and making
   * every later record late). Applies once the source has a watermark. Default: no limit.
   */
  maxTimeSkew?: number;
}

/** Default idle timeout of sources, in milliseconds. */
export const DEFAULT_IDLE_TIMEOUT = 10_000;
