import { KeyedProcessOperator, type KeyedCoProcessSpec, type KeyedProcessSpec } from '../operators/keyed-process.ts';
import { DedupeOperator, type DedupeOptions } from '../operators/dedupe.ts';
import { ViewOperator } from '../operators/view.ts';
import type { InputEdge, Partitioning } from '../plan/graph.ts';
import type { Operator } from '../runtime/operator.ts';
import type { StateSpec } from '../state/descriptors.ts';
import type { Key } from '../state/key-group.ts';
import type { Aggregator } from '../window/aggregators.ts';
import type { WindowAssigner } from '../window/assigners.ts';
import { intervalJoinSpec, type IntervalJoinBounds, regularJoinSpec, type RegularJoinOptions } from '../join/joins.ts';
import type { Stream, StepOptions } from './stream.ts';
import { WindowedStream, WindowJoin } from './windowed-stream.ts';

/** The running result of {@link KeyedStream.aggregate}. */
export interface KeyedResult<K, R> {
  readonly key: K;
  readonly value: R;
}

/**
 * A stream partitioned by key. Stateful steps on it keep state per key and see records of one
 * key in order.
 */
export class KeyedStream<T, K extends Key> {
  constructor(
    readonly stream: Stream<T>,
    readonly key: (value: T) => K,
    private readonly partitioning: Partitioning = { type: 'hash', key: key as (value: unknown) => Key },
  ) {}

  /** The edge that reads this stream, partitioned by key. */
  edge(): InputEdge {
    return this.stream.edge(this.partitioning);
  }

  /** Declares keyed state for the next `process` (state is declared up front, by name). */
  state<S extends StateSpec>(spec: S): StatefulKeyedStream<T, K, S> {
    return new StatefulKeyedStream(this, spec);
  }

  /** A keyed process function without state (timers only); see {@link state} for state. */
  process<O>(spec: KeyedProcessSpec<T, K, O, Record<never, never>>, options?: StepOptions): Stream<O> {
    return this.state({}).process<O>(spec, options);
  }

  /**
   * A running aggregate per key: every record updates its key's accumulator and emits the new
   * result.
   *
   * @example
   * bids.keyBy((b) => b.bidder).aggregate(sum((b) => b.price)); // Stream<{ key, value }>
   */
  aggregate<A, R>(agg: Aggregator<T, A, R>, options?: StepOptions): Stream<KeyedResult<K, R>>;
  aggregate<A, R, O>(agg: Aggregator<T, A, R>, project: (key: K, result: R) => O, options?: StepOptions): Stream<O>;
  aggregate<A, R, O>(
    agg: Aggregator<T, A, R>,
    project?: ((key: K, result: R) => O) | StepOptions,
    options?: StepOptions,
  ): Stream<O> {
    const fn = typeof project === 'function' ? project : (key: K, value: R) => ({ key, value }) as O;
    const opts = typeof project === 'function' ? options : project;
    const codec = agg.codec;
    return this.keyedStep<O>(
      'aggregate',
      opts,
      [this],
      [
        (value, ctx) => {
          const state = ctx.state as { acc: { get(): A | undefined; set(v: A): void } };
          const acc = agg.add(state.acc.get() ?? agg.create(), value as T);
          state.acc.set(acc);
          ctx.emit(fn(ctx.key as K, agg.result(acc)));
        },
      ],
      undefined,
      { acc: { kind: 'value', options: codec === undefined ? {} : { codec } } } as StateSpec,
      [agg, fn],
    );
  }

  /**
   * Drops records whose key was already emitted within `options.within` ms of their event time,
   * whatever the arrival order: a record is dropped if a record with the same key was emitted at
   * an event time at most `within` before or after its own, even when the input is out of order by
   * far more than `within`; a key emitted 2·`within` or more away in event time is forgotten. A
   * record whose key was not emitted within that range is wrongly dropped with probability at
   * most `falsePositiveRate` (default 1e-6), however many distinct keys arrive — until the
   * filters reach `maxMemoryBytes` (default 256 MiB per parallel instance), which is counted
   * (`keysBeyondMemoryBound` metric) and warned about once.
   *
   * How: scalable Bloom filters per key group and per event-time bucket of `within` ms; a record
   * is looked up in its bucket and the two neighbouring ones. The watermark only frees memory:
   * buckets older than watermark − `allowedLateness` − `within` are dropped, so memory stays
   * bounded over time. A record more than `allowedLateness` (default 0) behind the watermark is
   * counted in `lateRecords` and deduplicated as if it were at watermark − `allowedLateness`; it
   * is never dropped for being late. Dropped repeats are counted in `duplicatesDropped`.
   *
   * @example
   * orders.keyBy((o) => o.orderId).dedupe({ within: 3_600_000 });
   */
  dedupe(options: DedupeOptions & StepOptions): Stream<T> {
    const key = this.key as (value: unknown) => Key;
    return this.stream.pipeline.addOperator<T>('dedupe', options, [this.edge()], () => new DedupeOperator(key, options), { keyed: true });
  }

  /** Groups the keyed stream into windows. */
  window(assigner: WindowAssigner): WindowedStream<T, K> {
    return new WindowedStream<T, K>(this, assigner);
  }

  /**
   * Two keyed streams processed together with shared keyed state and timers.
   *
   * @example
   * auctions.keyBy((a) => a.id).connect(bids.keyBy((b) => b.auction)).state({ best: valueState<number>() }).process<Row>({
   *   onLeft(auction, ctx) { ... },
   *   onRight(bid, ctx) { ... },
   * });
   */
  connect<R>(other: KeyedStream<R, K>): ConnectedKeyedStreams<T, R, K> {
    return new ConnectedKeyedStreams(this, other);
  }

  /**
   * Regular (unwindowed) inner join: each record joins every record of the other side with the
   * same key seen so far, whichever arrives first. State grows with the input unless
   * `retention` bounds it.
   */
  join<R, O>(other: KeyedStream<R, K>, fn: (left: T, right: R) => O, options: RegularJoinOptions & StepOptions = {}): Stream<O> {
    const spec = regularJoinSpec<T, R, O>(fn, false, options);
    return coProcess(this, other, 'join', spec.process as KeyedCoProcessSpec<T, R, K, O, StateSpec>, spec.state, options, [fn]);
  }

  /**
   * Regular left outer join. Matches are emitted as they happen; a left record that never
   * matched is emitted once with `undefined` when it leaves the state: after `retention`, or at
   * the end of bounded input. (No result is ever retracted.)
   */
  leftJoin<R, O>(
    other: KeyedStream<R, K>,
    fn: (left: T, right: R | undefined) => O,
    options: RegularJoinOptions & StepOptions = {},
  ): Stream<O> {
    const spec = regularJoinSpec<T, R, O>(fn, true, options);
    return coProcess(this, other, 'left-join', spec.process as KeyedCoProcessSpec<T, R, K, O, StateSpec>, spec.state, options, [fn]);
  }

  /**
   * Interval join: pairs (l, r) of the same key with l.time + lower <= r.time <= l.time + upper.
   * Each side is buffered until the watermark passes the last time it can match; records behind
   * the watermark are late and dropped (counted).
   */
  intervalJoin<R, O>(
    other: KeyedStream<R, K>,
    bounds: IntervalJoinBounds,
    fn: (left: T, right: R) => O,
    options?: StepOptions,
  ): Stream<O> {
    const spec = intervalJoinSpec<T, R, O>(bounds, fn);
    return coProcess(this, other, 'interval-join', spec.process as KeyedCoProcessSpec<T, R, K, O, StateSpec>, spec.state, options, [fn]);
  }

  /**
   * Keeps the latest record of every key as a queryable view named `name` (see {@link View}):
   * `job.view(name)` in the API, `GET /views/<name>/<key>` on the dashboard of `spate run --ui`.
   * Checkpointed with the job; runs in the thread that built the pipeline.
   *
   * @example
   * stats.keyBy((s) => s.device).view('device-stats');
   */
  view(name: string, options?: StepOptions): void {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`a view name is letters, digits, '_', '.' and '-', got '${name}'`);
    const key = this.key as (value: T) => Key;
    this.stream.pipeline.addOperator('view', { id: options?.id ?? `view-${name}`, ...options }, [this.edge()], () => new ViewOperator<T>(name, key) as Operator<unknown, unknown>, {
      keyed: true,
      local: true,
      view: name,
      code: [key, name],
    });
  }

  /** Window join: records of both sides with the same key in the same window. */
  windowJoin<R>(other: KeyedStream<R, K>, assigner: WindowAssigner): WindowJoin<T, R, K> {
    return new WindowJoin(this, other, assigner);
  }

  /** Adds a keyed step with one handler per input (internal; the public methods build on it). */
  keyedStep<O>(
    kind: string,
    options: StepOptions | undefined,
    inputs: ReadonlyArray<KeyedStream<unknown, K>> | ReadonlyArray<KeyedStream<T, K>>,
    handlers: ReadonlyArray<(value: unknown, ctx: KeyedProcessOperator) => void>,
    onTimer: ((time: number, ctx: KeyedProcessOperator) => void) | undefined,
    state: StateSpec,
    /** The user's functions or handler object (for the step's signature). */
    code: readonly unknown[],
  ): Stream<O> {
    const keys = inputs.map((s) => s.key as (value: unknown) => Key);
    return this.stream.pipeline.addOperator<O>(
      kind,
      options,
      inputs.map((s) => s.edge()),
      () => new KeyedProcessOperator(keys, handlers, onTimer, state) as Operator<unknown, unknown>,
      { keyed: true, code },
    );
  }
}

/** State goes in `.state({...})` before `.process()`; JavaScript callers get told so. */
function rejectInlineState(spec: object): void {
  if ('state' in spec) {
    throw new Error('declare keyed state with .state({ ... }) before .process(), not as a `state` field of the process function');
  }
}

/** A keyed stream with declared state, ready for `process`. */
export class StatefulKeyedStream<T, K extends Key, S extends StateSpec> {
  constructor(
    private readonly keyed: KeyedStream<T, K>,
    private readonly spec: S,
  ) {}

  /** Runs a keyed process function with the declared state and timers. */
  process<O>(spec: KeyedProcessSpec<T, K, O, S>, options?: StepOptions): Stream<O> {
    rejectInlineState(spec);
    const onTimer = spec.onTimer;
    return this.keyed.keyedStep<O>(
      'process',
      options,
      [this.keyed],
      [spec.onElement.bind(spec) as unknown as (value: unknown, ctx: KeyedProcessOperator) => void],
      onTimer === undefined ? undefined : (onTimer.bind(spec) as unknown as (time: number, ctx: KeyedProcessOperator) => void),
      this.spec,
      [spec],
    );
  }
}

/** Two keyed streams with the same key type, for {@link ConnectedKeyedStreams.process}. */
export class ConnectedKeyedStreams<L, R, K extends Key> {
  constructor(
    readonly left: KeyedStream<L, K>,
    readonly right: KeyedStream<R, K>,
    private readonly spec: StateSpec = {},
  ) {
    if (left.stream.pipeline !== right.stream.pipeline) throw new Error('connect: streams belong to different pipelines');
  }

  /** Declares keyed state shared by both inputs. */
  state<S extends StateSpec>(spec: S): ConnectedKeyedStreamsWithState<L, R, K, S> {
    return new ConnectedKeyedStreamsWithState(this.left, this.right, spec);
  }

  /** Runs a two-input keyed process function without state. */
  process<O>(spec: KeyedCoProcessSpec<L, R, K, O, Record<never, never>>, options?: StepOptions): Stream<O> {
    return this.state(this.spec as Record<never, never>).process<O>(spec, options);
  }
}

/** Connected keyed streams with declared state. */
export class ConnectedKeyedStreamsWithState<L, R, K extends Key, S extends StateSpec> {
  constructor(
    private readonly left: KeyedStream<L, K>,
    private readonly right: KeyedStream<R, K>,
    private readonly spec: S,
  ) {}

  /** Runs a two-input keyed process function with the declared state and timers. */
  process<O>(spec: KeyedCoProcessSpec<L, R, K, O, S>, options?: StepOptions): Stream<O> {
    rejectInlineState(spec);
    return coProcess(this.left, this.right, 'co-process', spec, this.spec, options, [spec]);
  }
}

/** Adds a two-input keyed process step (co-process functions and joins). */
function coProcess<L, R, K extends Key, O, S extends StateSpec>(
  left: KeyedStream<L, K>,
  right: KeyedStream<R, K>,
  kind: string,
  spec: KeyedCoProcessSpec<L, R, K, O, S>,
  state: S,
  options: StepOptions | undefined,
  code: readonly unknown[],
): Stream<O> {
  if (left.stream.pipeline !== right.stream.pipeline) throw new Error(`${kind}: streams belong to different pipelines`);
  const onTimer = spec.onTimer;
  type H = (value: unknown, ctx: KeyedProcessOperator) => void;
  return left.keyedStep<O>(
    kind,
    options,
    [left as unknown as KeyedStream<unknown, K>, right as unknown as KeyedStream<unknown, K>],
    [spec.onLeft.bind(spec) as unknown as H, spec.onRight.bind(spec) as unknown as H],
    onTimer === undefined ? undefined : (onTimer.bind(spec) as unknown as (time: number, ctx: KeyedProcessOperator) => void),
    state,
    code,
  );
}
