import type { OutputTag } from '../api/output-tag.ts';
import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext, Output } from '../runtime/operator.ts';
import type { StateHandles, StateSpec } from '../state/descriptors.ts';
import type { KeyedStateBackend } from '../state/keyed-state-backend.ts';
import { checkKey, type Key } from '../state/key-group.ts';
import { TimerQueue } from '../time/timer-queue.ts';
import { explicitTime } from './emitter.ts';

/** What a keyed process function sees while handling a record or a timer. */
export interface KeyedContext<K, O, S> {
  /** The key of the current record or timer. */
  readonly key: K;
  /** Event time of the current record, or the time of the firing timer. */
  readonly timestamp: number;
  /** The step's current watermark. */
  readonly watermark: number;
  /** The declared state, scoped to the current key. */
  readonly state: S;
  /** Current processing time. */
  now(): number;
  /** Emits to the main output, at the current timestamp unless `time` is given. */
  emit(value: O, time?: number): void;
  /** Emits to a side output. */
  output<X>(tag: OutputTag<X>, value: X, time?: number): void;
  /** Calls `onTimer` for the current key once the watermark reaches `time` (one timer per key and time). */
  registerEventTimer(time: number): void;
  deleteEventTimer(time: number): void;
  /** Calls `onTimer` for the current key once the processing-time clock reaches `time`. */
  registerProcessingTimer(time: number): void;
  deleteProcessingTimer(time: number): void;
}

/** The context of `onTimer`: which clock fired. */
export interface TimerContext<K, O, S> extends KeyedContext<K, O, S> {
  readonly timeDomain: 'event-time' | 'processing-time';
}

/**
 * A keyed process function: per-key state (declared up front with `.state()`) and timers.
 *
 * @example
 * // Count events per user; a minute after a user's last event, emit the count and forget it.
 * events.keyBy((e) => e.user).state({ count: valueState<number>() }).process<{ user: string; count: number }>({
 *   onElement(e, ctx) {
 *     ctx.state.count.set((ctx.state.count.get() ?? 0) + 1);
 *     ctx.registerEventTimer(ctx.timestamp + 60_000);
 *   },
 *   onTimer(time, ctx) {
 *     ctx.emit({ user: ctx.key, count: ctx.state.count.get() ?? 0 });
 *     ctx.state.count.clear();
 *   },
 * });
 */
export interface KeyedProcessSpec<T, K, O, S extends StateSpec> {
  onElement(value: T, ctx: KeyedContext<K, O, StateHandles<S>>): void;
  onTimer?(time: number, ctx: TimerContext<K, O, StateHandles<S>>): void;
}

/** A keyed process function over two inputs keyed alike (joins, enrichment). */
export interface KeyedCoProcessSpec<L, R, K, O, S extends StateSpec> {
  onLeft(value: L, ctx: KeyedContext<K, O, StateHandles<S>>): void;
  onRight(value: R, ctx: KeyedContext<K, O, StateHandles<S>>): void;
  onTimer?(time: number, ctx: TimerContext<K, O, StateHandles<S>>): void;
}

type Handler = (value: unknown, ctx: KeyedProcessOperator) => void;
type TimerHandler = (time: number, ctx: KeyedProcessOperator) => void;

/**
 * The keyed-stateful primitive: one or more inputs keyed alike, heap state, and event- and
 * processing-time timers. Keyed process functions, regular and interval joins and rolling
 * aggregates all run on it. The operator is its own context object (one per instance), so
 * handling a record allocates nothing.
 */
export class KeyedProcessOperator implements Operator<unknown, unknown>, TimerContext<Key, unknown, unknown> {
  key: Key = 0;
  timestamp = 0;
  timeDomain: 'event-time' | 'processing-time' = 'event-time';
  state: unknown;
  private ctx!: OperatorContext<unknown>;
  private out!: Output<unknown>;
  private backend!: KeyedStateBackend;
  private eventTimers!: TimerQueue;
  private processingTimers!: TimerQueue;
  private expiryScheduled = Infinity;
  /** The watermark before the current advance: the lower bound for timestamps of timer output. */
  private previousWatermark = -Infinity;
  private readonly fireEvent = (key: Key, time: number): void => this.fire(key, time, 'event-time');
  private readonly fireProcessing = (key: Key, time: number): void => this.fire(key, time, 'processing-time');

  constructor(
    private readonly keys: ReadonlyArray<(value: unknown) => Key>,
    private readonly handlers: readonly Handler[],
    private readonly onTimer: TimerHandler | undefined,
    private readonly stateSpec: StateSpec,
  ) {}

  open(ctx: OperatorContext<unknown>): void {
    this.ctx = ctx;
    this.out = ctx.output;
    this.backend = ctx.state;
    this.state = this.backend.register(this.stateSpec);
    this.eventTimers = this.backend.registerTable(new TimerQueue('timers:event'));
    this.processingTimers = this.backend.registerTable(new TimerQueue('timers:processing'));
    this.previousWatermark = ctx.watermark;
    this.scheduleExpiry();
  }

  /** The step's watermark (the runtime's; restored with the step). */
  get watermark(): number {
    return this.ctx.watermark;
  }

  now(): number {
    return this.ctx.clock.now();
  }

  emit(value: unknown, time?: number): void {
    this.out.emit(value, time === undefined ? this.timestamp : explicitTime(time));
  }

  output<X>(tag: OutputTag<X>, value: X, time?: number): void {
    this.ctx.sideOutput(tag).emit(value, time === undefined ? this.timestamp : explicitTime(time));
  }

  registerEventTimer(time: number): void {
    this.eventTimers.register(this.key, time);
  }

  deleteEventTimer(time: number): void {
    this.eventTimers.delete(this.key, time);
  }

  registerProcessingTimer(time: number): void {
    this.processingTimers.register(this.key, time);
    this.ctx.requestProcessingTime(this.processingTimers.peek());
  }

  deleteProcessingTimer(time: number): void {
    this.processingTimers.delete(this.key, time);
  }

  /** Counts a record dropped for being behind the watermark (joins). */
  dropLate(): void {
    this.ctx.metrics.lateRecords++;
    this.ctx.metrics.lateDropped++;
    if (this.ctx.metrics.lateDropped === 1) {
      this.ctx.warnOnce(`drops late records (the first at event time ${this.timestamp}, behind the watermark ${this.ctx.watermark}); they are counted in lateRecords and lateDropped`);
    }
  }

  processBatch(batch: Batch<unknown>, input: number): void {
    const { values, times, length } = batch;
    const keyOf = this.keys[input]!;
    const handle = this.handlers[input]!;
    const backend = this.backend;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const v = values[i];
          const k = checkKey(keyOf(v));
          this.key = k;
          backend.currentKey = k;
          this.timestamp = times[i]!;
          handle(v, this);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
    // Entries written with a TTL must be swept even if nothing else asks for processing time.
    if (backend.hasTtl && backend.nextExpiry() < this.expiryScheduled) this.scheduleExpiry();
  }

  onWatermark(watermark: number): void {
    if (this.eventTimers.size > 0) this.eventTimers.advance(watermark, this.fireEvent);
    this.previousWatermark = watermark;
  }

  /** The watermark at which the next event-time timer fires, or Infinity. */
  nextEventTime(): number {
    return this.eventTimers.peek();
  }

  onProcessingTime(now: number): void {
    this.processingTimers.advance(now, this.fireProcessing);
    this.backend.expire();
    this.scheduleExpiry();
  }

  private scheduleExpiry(): void {
    const next = Math.min(this.processingTimers.peek(), this.backend.nextExpiry());
    this.expiryScheduled = next;
    if (next !== Infinity) this.ctx.requestProcessingTime(next);
  }

  private fire(key: Key, time: number, domain: 'event-time' | 'processing-time'): void {
    const handler = this.onTimer;
    if (handler === undefined) return;
    this.key = key;
    this.backend.currentKey = key;
    // An event-time timer emits at its own time; a timer at +∞ (end of input) just after the
    // last finite watermark, so that its output is not late downstream.
    this.timestamp = domain === 'processing-time' ? this.ctx.clock.now() : time === Infinity ? this.previousWatermark + 1 : time;
    this.timeDomain = domain;
    try {
      handler(time, this);
    } catch (error) {
      this.ctx.deadLetter({ timer: time, key, domain }, error, time);
    }
  }
}
