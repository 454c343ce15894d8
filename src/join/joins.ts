import type { KeyedCoProcessSpec, KeyedContext } from '../operators/keyed-process.ts';
import {
  listState,
  type ListState,
  type ListStateDescriptor,
  valueState,
  type ValueState,
  type ValueStateDescriptor,
} from '../state/descriptors.ts';
import { MAX_WATERMARK } from '../time/watermark.ts';

/**
 * Regular and interval joins, built on the keyed two-input process primitive: each side's
 * records are kept in list state per key and matched against the other side's.
 */

/** Options of regular joins. */
export interface RegularJoinOptions {
  /**
   * How long (event time, ms) a record stays joinable: it leaves the state once the watermark
   * passes its time + retention. Default: forever (state grows with the input).
   */
  readonly retention?: number;
}

/** A buffered record with its event time (and, for outer joins, whether it ever matched). */
interface Entry<T> {
  readonly value: T;
  readonly time: number;
  matched: boolean;
}

type JoinState<L, R> = {
  left: ListStateDescriptor<Entry<L>>;
  right: ListStateDescriptor<Entry<R>>;
  /** Time of the key's pending cleanup timer: the earliest expiry of its entries. */
  cleanup: ValueStateDescriptor<number>;
};
type JoinHandles<L, R> = { left: ListState<Entry<L>>; right: ListState<Entry<R>>; cleanup: ValueState<number> };
type JoinContext<L, R, O> = KeyedContext<unknown, O, JoinHandles<L, R>>;

function joinState<L, R>(): JoinState<L, R> {
  return { left: listState<Entry<L>>(), right: listState<Entry<R>>(), cleanup: valueState<number>() };
}

/**
 * Makes sure the key's cleanup timer fires by `expiry`. One timer per key, at the earliest expiry
 * of its entries: eviction scans a key's lists once per watermark advance that crosses an
 * expiry, not once per record.
 */
function scheduleCleanup<L, R, O>(ctx: JoinContext<L, R, O>, expiry: number): void {
  const pending = ctx.state.cleanup.get();
  if (pending !== undefined && pending <= expiry) return;
  if (pending !== undefined) ctx.deleteEventTimer(pending);
  ctx.registerEventTimer(expiry);
  ctx.state.cleanup.set(expiry);
}

/**
 * Keeps the entries with `expiry(e) > watermark`; hands the others to `evicted`. Returns the
 * earliest expiry kept (Infinity if none).
 */
function evict<T>(
  list: ListState<Entry<T>>,
  watermark: number,
  expiry: (e: Entry<T>) => number,
  evicted?: (e: Entry<T>) => void,
): number {
  const kept: Entry<T>[] = [];
  let next = Infinity;
  for (const e of list.get()) {
    const x = expiry(e);
    if (x > watermark) {
      kept.push(e);
      if (x < next) next = x;
    } else evicted?.(e);
  }
  list.update(kept);
  return next;
}

/** After eviction: re-arm the cleanup timer at the earliest remaining expiry. */
function rescheduleCleanup<L, R, O>(ctx: JoinContext<L, R, O>, next: number): void {
  ctx.state.cleanup.clear();
  if (next !== Infinity) scheduleCleanup(ctx, next);
}

/** A join as a keyed two-input process function and the state it declares. */
export interface JoinSpec<L, R, O> {
  readonly state: JoinState<L, R>;
  readonly process: KeyedCoProcessSpec<L, R, unknown, O, JoinState<L, R>>;
}

/** The spec of a regular inner or left join. */
export function regularJoinSpec<L, R, O>(fn: (left: L, right: R) => O, outer: boolean, options: RegularJoinOptions): JoinSpec<L, R, O> {
  const retention = options.retention ?? Infinity;
  if (!(retention > 0)) throw new RangeError(`join retention must be > 0 ms, got ${retention}`);
  // A record timed t can leave once the watermark passes t + retention; without retention the
  // left join's timer sits at the end of input, where unmatched left records are emitted.
  const expiry = (e: Entry<unknown>): number => e.time + retention;
  const process: JoinSpec<L, R, O>['process'] = {
    onLeft(l, ctx) {
      let matched = false;
      for (const r of ctx.state.right.get()) {
        ctx.emit(fn(l, r.value));
        r.matched = true;
        matched = true;
      }
      ctx.state.left.add({ value: l, time: ctx.timestamp, matched });
      if (retention !== Infinity) scheduleCleanup(ctx, ctx.timestamp + retention);
      else if (outer) ctx.registerEventTimer(MAX_WATERMARK);
    },
    onRight(r, ctx) {
      let matched = false;
      for (const l of ctx.state.left.get()) {
        ctx.emit(fn(l.value, r));
        l.matched = true;
        matched = true;
      }
      ctx.state.right.add({ value: r, time: ctx.timestamp, matched });
      if (retention !== Infinity) scheduleCleanup(ctx, ctx.timestamp + retention);
    },
    onTimer(_time, ctx) {
      const wm = ctx.watermark;
      // Emitted when the record leaves state, timed so that it is not behind the watermark
      // downstream: at its expiry (time + retention), or at the end of input just after the
      // last watermark.
      const unmatched = (e: Entry<L>): void => {
        if (!e.matched) ctx.emit(fn(e.value, undefined as R), retention === Infinity ? Math.max(e.time, ctx.timestamp) : e.time + retention);
      };
      const next = Math.min(evict(ctx.state.left, wm, expiry, outer ? unmatched : undefined), evict(ctx.state.right, wm, expiry));
      if (retention !== Infinity) rescheduleCleanup(ctx, next);
    },
  };
  return { state: joinState<L, R>(), process };
}

/** Relative time bounds of an interval join, in ms: l.time + lower <= r.time <= l.time + upper. */
export interface IntervalJoinBounds {
  readonly lower: number;
  readonly upper: number;
}

/** The spec of an interval join. Output records carry the later of the two timestamps. */
export function intervalJoinSpec<L, R, O>(bounds: IntervalJoinBounds, fn: (left: L, right: R) => O): JoinSpec<L, R, O> {
  const { lower, upper } = bounds;
  if (!(lower <= upper)) throw new RangeError(`interval join needs lower <= upper, got [${lower}, ${upper}]`);
  type Ctx = JoinContext<L, R, O> & { dropLate?(): void };
  const late = (ctx: Ctx): boolean => {
    if (ctx.timestamp > ctx.watermark) return false;
    ctx.dropLate?.();
    return true;
  };
  // A left record can match rights up to its time + upper; a right record lefts down to its
  // time - lower: once the watermark passes that, no record that could match can still come.
  const leftExpiry = (e: Entry<unknown>): number => e.time + upper;
  const rightExpiry = (e: Entry<unknown>): number => e.time - lower;
  const process: JoinSpec<L, R, O>['process'] = {
    onLeft(l, ctx) {
      if (late(ctx)) return;
      const t = ctx.timestamp;
      for (const r of ctx.state.right.get()) {
        if (r.time >= t + lower && r.time <= t + upper) ctx.emit(fn(l, r.value), Math.max(t, r.time));
      }
      ctx.state.left.add({ value: l, time: t, matched: false });
      scheduleCleanup(ctx, t + upper);
    },
    onRight(r, ctx) {
      if (late(ctx)) return;
      const t = ctx.timestamp;
      for (const l of ctx.state.left.get()) {
        if (t >= l.time + lower && t <= l.time + upper) ctx.emit(fn(l.value, r), Math.max(t, l.time));
      }
      ctx.state.right.add({ value: r, time: t, matched: false });
      scheduleCleanup(ctx, t - lower);
    },
    onTimer(_time, ctx) {
      const wm = ctx.watermark;
      rescheduleCleanup(ctx, Math.min(evict(ctx.state.left, wm, leftExpiry), evict(ctx.state.right, wm, rightExpiry)));
    },
  };
  return { state: joinState<L, R>(), process };
}
