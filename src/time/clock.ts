/**
 * Processing time. Every operator reads the time through a clock, so tests can drive it.
 */
export interface Clock {
  /** Current processing time in epoch milliseconds. */
  now(): number;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

/**
 * A clock that moves only when told to. Use it with the operator harness or a pipeline run to
 * test processing-time timers, TTL and idleness deterministically.
 *
 * @example
 * const clock = new VirtualClock(1000);
 * clock.advance(500);
 * clock.now(); // 1500
 */
export class VirtualClock implements Clock {
  constructor(private time = 0) {}

  now(): number {
    return this.time;
  }

  /** Moves the clock forward by `ms` (never backward). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`VirtualClock.advance: ms must be >= 0, got ${ms}`);
    this.time += ms;
  }

  /** Sets the clock to `time`, which must not be earlier than the current time. */
  set(time: number): void {
    if (time < this.time) throw new RangeError(`VirtualClock.set: cannot go back from ${this.time} to ${time}`);
    this.time = time;
  }
}
