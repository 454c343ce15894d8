import type { KeyedCoProcessSpec, KeyedContext } from '../operators/keyed-process.ts';
import { listState, type ListState, type ListStateDescriptor } from '../state/descriptors.ts';
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
};
type JoinHandles<L, R> = { left: ListState<Entry<L>>; right: ListState<Entry<R>> };

function joinState<L, R>(): JoinState<L, R> {
  return { left: listState<Entry<L>>(), right: listState<Entry<R>>() };
}

/** Keeps the entries still joinable at `watermark`; hands the others to `evicted`. */
function evict<T>(list: ListState<Entry<T>>, stillNeeded: (e: Entry<T>) => boolean, evicted?: (e: Entry<T>) => void): void {
  const kept: Entry<T>[] = [];
  for (const e of list.get()) {
    if (stillNeeded(e)) kept.push(e);
    else evicted?.(e);
  }
  list.update(kept);
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
  type Ctx = KeyedContext<unknown, O, JoinHandles<L, R>>;
  const expire = (ctx: Ctx, time: number): void => {
    // A record timed t can leave once the watermark passes t + retention; without retention
    // the timer sits at the end of input, where unmatched left records are emitted.
    ctx.registerEventTimer(retention === Infinity ? MAX_WATERMARK : time + retention);
  };
  const process: JoinSpec<L, R, O>['process'] = {
    onLeft(l, ctx) {
      let matched = false;
      for (const r of ctx.state.right.get()) {
        ctx.emit(fn(l, r.value));
        r.matched = true;
        matched = true;
      }
      ctx.state.left.add({ value: l, time: ctx.timestamp, matched });
      if (outer || retention !== Infinity) expire(ctx, ctx.timestamp);
    },
    onRight(r, ctx) {
      let matched = false;
      for (const l of ctx.state.left.get()) {
        ctx.emit(fn(l.value, r));
        l.matched = true;
        matched = true;
      }
      ctx.state.right.add({ value: r, time: ctx.timestamp, matched });
      if (retention !== Infinity) expire(ctx, ctx.timestamp);
    },
    onTimer(_time, ctx) {
      const wm = ctx.watermark;
      const needed = (e: Entry<unknown>): boolean => wm !== MAX_WATERMARK && e.time + retention > wm;
      // Emitted when the record leaves state, timed so that it is not behind the watermark
      // downstream: at its expiry (time + retention), or at the end of input just after the
      // last watermark.
      const unmatched = (e: Entry<L>): void => {
        if (!e.matched) ctx.emit(fn(e.value, undefined as R), retention === Infinity ? Math.max(e.time, ctx.timestamp) : e.time + retention);
      };
      evict(ctx.state.left, needed, outer ? unmatched : undefined);
      evict(ctx.state.right, needed);
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
  type Ctx = KeyedContext<unknown, O, JoinHandles<L, R>> & { dropLate?(): void };
  const late = (ctx: Ctx): boolean => {
    if (ctx.timestamp > ctx.watermark) return false;
    ctx.dropLate?.();
    return true;
  };
  const process: JoinSpec<L, R, O>['process'] = {
    onLeft(l, ctx) {
      if (late(ctx)) return;
      const t = ctx.timestamp;
      for (const r of ctx.state.right.get()) {
        if (r.time >= t + lower && r.time <= t + upper) ctx.emit(fn(l, r.value), Math.max(t, r.time));
      }
      ctx.state.left.add({ value: l, time: t, matched: false });
      ctx.registerEventTimer(t + upper);
    },
    onRight(r, ctx) {
      if (late(ctx)) return;
      const t = ctx.timestamp;
      for (const l of ctx.state.left.get()) {
        if (t >= l.time + lower && t <= l.time + upper) ctx.emit(fn(l.value, r), Math.max(t, l.time));
      }
      ctx.state.right.add({ value: r, time: t, matched: false });
      ctx.registerEventTimer(t - lower);
    },
    onTimer(_time, ctx) {
      const wm = ctx.watermark;
      evict(ctx.state.left, (e) => e.time + upper > wm);
      evict(ctx.state.right, (e) => e.time - lower > wm);
    },
  };
  return { state: joinState<L, R>(), process };
}
