import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext } from '../runtime/operator.ts';
import { defaultCodec, type StateCodec } from '../state/codec.ts';
import { checkKey, type Key } from '../state/key-group.ts';
import { NamespacedTable } from '../state/namespaced-table.ts';
import type { Partial } from '../plan/graph.ts';
import { TimedEmitter } from '../operators/emitter.ts';
import { gcd, maxWindowTime, type SlidingWindows, timeOutOfRange, type TumblingWindows, type WindowInfo } from './assigners.ts';
import { LateHandler, type LatePolicy } from './late-policy.ts';
import type { WindowFunction } from './window-function.ts';

/** One input of a window operator: how to key a record and fold it into an accumulator. */
export interface WindowInput {
  readonly key: (value: unknown) => Key;
  readonly add: (acc: unknown, value: unknown) => unknown;
  /** How many records a value stands for (partial aggregates: their count; default 1). */
  readonly weight?: (value: unknown) => number;
}

/** The accumulator side of a window operator (an {@link Aggregator} minus `add`). */
export interface WindowAccumulator {
  readonly create: () => unknown;
  readonly merge: (a: unknown, b: unknown) => unknown;
  readonly result: (acc: unknown) => unknown;
  readonly codec?: StateCodec<unknown> | undefined;
}

function mod(a: number, m: number): number {
  const r = a % m;
  return r < 0 ? r + m : r;
}

/**
 * Tumbling and sliding windows over slices ("panes") of gcd(size, slide): a record is folded
 * into the accumulator of its key in its pane, once; a window's result merges the accumulators
 * of its panes when it fires. Tumbling windows are the one-pane case and merge nothing.
 *
 * State: pane start → (key → accumulator), plus the sorted pane starts. Windows fire in order of
 * end as the watermark passes end - 1; a pane is dropped once every window containing it is
 * past end - 1 + allowed lateness.
 */
export class SlicedWindowOperator implements Operator<unknown, unknown> {
  private readonly size: number;
  private readonly slide: number;
  private readonly offset: number;
  private readonly pane: number;
  /** Largest |event time| accepted: window arithmetic beyond it is inexact (see maxWindowTime). */
  private readonly maxTime: number;
  /** Pane start → key → accumulator (the operator's keyed state). */
  private panes!: NamespacedTable<unknown>;
  /** Pane starts, ascending (the table's). */
  private starts!: number[];
  /** Every window ending before this has fired. */
  private nextEnd = -Infinity;
  private ctx!: OperatorContext<unknown>;
  private late!: LateHandler;
  private lateness = 0;
  private emitter!: TimedEmitter<unknown>;
  private readonly codec: StateCodec<unknown>;
  // The pane of the previous record: consecutive records mostly share one.
  private cStart = NaN;
  private cMap: Map<Key, unknown> | undefined = undefined;
  private cFirstEnd = 0;
  private cLastEnd = 0;
  // Reused while firing.
  private window: WindowInfo = { start: 0, end: 0, late: false };

  constructor(
    private readonly assigner: TumblingWindows | SlidingWindows,
    private inputs: readonly WindowInput[],
    private readonly acc: WindowAccumulator,
    private readonly fn: WindowFunction<Key, unknown, unknown>,
    private readonly policy: LatePolicy<unknown>,
  ) {
    this.maxTime = maxWindowTime(assigner); // also checks a hand-built assigner before gcd sees it
    this.size = assigner.size;
    this.slide = assigner.slide;
    this.offset = assigner.offset;
    this.pane = gcd(assigner.size, assigner.slide);
    this.codec = acc.codec ?? defaultCodec();
  }

  open(ctx: OperatorContext<unknown>): void {
    this.ctx = ctx;
    this.late = new LateHandler(this.policy, ctx);
    this.lateness = this.late.allowedLateness;
    this.emitter = new TimedEmitter(ctx.output);
    this.panes = ctx.state.registerTable(new NamespacedTable<unknown>('panes', this.codec));
    // Inputs that cross an exchange pre-aggregated deliver partials: merge them, count their records.
    this.inputs = this.inputs.map((input, i) => (ctx.combined(i) ? combinedInput(this.acc, this.codec) : input));
    this.starts = this.panes.namespaces;
    // Windows that fired before a checkpoint never fire again: they end at or before the
    // restored watermark + 1.
    this.nextEnd = this.firstEndAfter(ctx.watermark);
  }

  /** Start of the latest window containing the pane that starts at `p`. */
  private lastWindowEnd(p: number): number {
    return p - mod(p - this.offset, this.slide) + this.size;
  }

  private firstWindowEnd(p: number): number {
    const sLast = p - mod(p - this.offset, this.slide);
    const k = Math.ceil((sLast - p + this.size) / this.slide) - 1;
    return sLast - k * this.slide + this.size;
  }

  private selectPane(p: number): void {
    this.cStart = p;
    this.cMap = this.panes.get(p);
    this.cFirstEnd = this.firstWindowEnd(p);
    this.cLastEnd = this.lastWindowEnd(p);
  }


  processBatch(batch: Batch<unknown>, input: number): void {
    const { values, times, length } = batch;
    const { key: keyOf, add, weight } = this.inputs[input]!;
    const create = this.acc.create;
    const pane = this.pane;
    const offset = this.offset;
    const wm = this.ctx.watermark;
    const lateness = this.lateness;
    const maxTime = this.maxTime;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const v = values[i];
          const t = times[i]!;
          // Beyond maxTime, end = start + size can round to start and the firing loop never ends.
          if (!(Math.abs(t) <= maxTime)) throw timeOutOfRange(t, this.assigner, maxTime);
          const p = t - mod(t - offset, pane);
          if (p !== this.cStart) this.selectPane(p);
          if (this.cFirstEnd - 1 <= wm) {
            // At least one window of this pane has fired.
            if (this.cLastEnd - 1 + lateness <= wm) {
              this.late.rejected(v, t, weight === undefined ? 1 : weight(v));
              continue;
            }
            if (!this.late.updates) {
              if (this.cLastEnd - 1 <= wm) {
                this.late.rejected(v, t, weight === undefined ? 1 : weight(v));
                continue;
              }
            } else {
              const k = checkKey(keyOf(v));
              this.fold(p, k, v, add, create);
              this.late.updated(weight === undefined ? 1 : weight(v));
              this.refire(p, k);
              continue;
            }
          }
          this.fold(p, checkKey(keyOf(v)), v, add, create);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }

  private fold(p: number, k: Key, v: unknown, add: (acc: unknown, value: unknown) => unknown, create: () => unknown): void {
    let map = this.cMap;
    if (map === undefined) {
      map = this.panes.getOrCreate(p);
      this.cMap = map;
    }
    const acc = map.get(k);
    const next = add(acc === undefined ? create() : acc, v);
    if (next !== acc) map.set(k, next);
  }

  onWatermark(watermark: number): void {
    this.cStart = NaN;
    const starts = this.starts;
    let j = 0;
    for (;;) {
      while (j < starts.length && this.lastWindowEnd(starts[j]!) < this.nextEnd) j++;
      if (j >= starts.length) break;
      const end = Math.max(this.nextEnd, this.firstWindowEnd(starts[j]!));
      if (end - 1 > watermark) break;
      this.fireWindow(end, j);
      this.nextEnd = end + this.slide;
    }
    this.nextEnd = Math.max(this.nextEnd, this.firstEndAfter(watermark));
    // Drop panes whose every window is past its allowed lateness.
    let drop = 0;
    while (drop < starts.length && this.lastWindowEnd(starts[drop]!) - 1 + this.lateness <= watermark) drop++;
    if (drop > 0) this.panes.dropOldest(drop);
  }

  /** The watermark at which the next window fires (its end − 1), or Infinity when none holds records. */
  nextEventTime(): number {
    const starts = this.starts;
    for (let j = 0; j < starts.length; j++) {
      if (this.lastWindowEnd(starts[j]!) < this.nextEnd) continue;
      return Math.max(this.nextEnd, this.firstWindowEnd(starts[j]!)) - 1;
    }
    return Infinity;
  }

  /** The end of the first window that has not fired at `watermark`. */
  private firstEndAfter(watermark: number): number {
    if (watermark === Infinity) return Infinity;
    if (watermark === -Infinity) return -Infinity;
    const x = watermark + 1 - this.size;
    return x - mod(x - this.offset, this.slide) + this.slide + this.size;
  }

  /** Fires the window ending at `end`; `first` indexes the first pane it contains. */
  private fireWindow(end: number, first: number): void {
    const start = end - this.size;
    this.window = { start, end, late: false };
    this.emitter.time = end - 1;
    const starts = this.starts;
    if (this.pane === this.size && !this.late.updates) {
      // The pane is dropped right after this: its accumulators can be handed out as they are.
      this.panes.get(starts[first]!)!.forEach(this.emitResult);
      return;
    }
    // Otherwise panes outlive the firing (shared with other windows, or kept for late
    // updates): results are built from fresh accumulators so later updates cannot change rows
    // already emitted.
    const { create, merge } = this.acc;
    const merged = new Map<Key, unknown>();
    for (let j = first; j < starts.length && starts[j]! < end; j++) {
      for (const [k, acc] of this.panes.get(starts[j]!)!) {
        const m = merged.get(k);
        merged.set(k, merge(m === undefined ? create() : m, acc));
      }
    }
    merged.forEach(this.emitResult);
  }

  private readonly emitResult = (acc: unknown, key: Key): void => {
    try {
      this.fn(key, this.acc.result(acc), this.window, this.emitter);
    } catch (error) {
      this.ctx.deadLetter({ key, window: this.window }, error, this.window.end - 1);
    }
  };

  /** Emits updated results of `key` for the fired windows containing pane `p`. */
  private refire(p: number, key: Key): void {
    const { create, merge } = this.acc;
    const wm = this.ctx.watermark;
    for (let end = this.firstWindowEnd(p); end <= this.lastWindowEnd(p); end += this.slide) {
      if (end - 1 > wm || end - 1 + this.lateness <= wm) continue;
      const start = end - this.size;
      let acc: unknown = undefined;
      for (let q = start; q < end; q += this.pane) {
        const part = this.panes.get(q)?.get(key);
        if (part !== undefined) acc = merge(acc === undefined ? create() : acc, part);
      }
      if (acc === undefined) continue;
      this.window = { start, end, late: true };
      this.emitter.time = end - 1;
      this.emitResult(acc, key);
    }
  }
}

/** The input of a window whose records arrive as partial aggregates (two-phase aggregation). */
function combinedInput(acc: WindowAccumulator, codec: StateCodec<unknown>): WindowInput {
  const merge = acc.merge;
  return {
    key: (p) => (p as Partial).k,
    add: (a, p) => merge(a, codec.decode((p as Partial).a)),
    weight: (p) => (p as Partial).n,
  };
}
