import type { Emitter } from '../operators/emitter.ts';
import type { Operator } from '../runtime/operator.ts';
import type { Key } from '../state/key-group.ts';
import { type Aggregator, collectAll } from '../window/aggregators.ts';
import { maxWindowTime, paneOf, type WindowAssigner, type WindowInfo } from '../window/assigners.ts';
import type { CombineSpec } from '../plan/graph.ts';
import { DROP_LATE, type LatePolicy } from '../window/late-policy.ts';
import { SessionWindowOperator } from '../window/session-window-operator.ts';
import { type WindowAccumulator, type WindowInput, SlicedWindowOperator } from '../window/sliced-window-operator.ts';
import type { WindowFunction } from '../window/window-function.ts';
import type { KeyedStream } from './keyed-stream.ts';
import type { Stream, StepOptions } from './stream.ts';

/** The default row of a windowed aggregate. */
export interface WindowResult<K, R> {
  readonly key: K;
  readonly start: number;
  readonly end: number;
  readonly value: R;
}

function addStep<O>(
  first: KeyedStream<unknown, Key>,
  kind: string,
  options: StepOptions | undefined,
  keyed: ReadonlyArray<KeyedStream<unknown, Key>>,
  create: () => Operator<unknown, unknown>,
  code: readonly unknown[],
  combine?: CombineSpec,
): Stream<O> {
  return first.stream.pipeline.addOperator<O>(kind, options, keyed.map((k) => k.edge()), create, { keyed: true, combine, code });
}

function windowOperator(
  assigner: WindowAssigner,
  inputs: readonly WindowInput[],
  acc: WindowAccumulator,
  fn: WindowFunction<Key, unknown, unknown>,
  late: LatePolicy<unknown>,
): Operator<unknown, unknown> {
  return assigner.kind === 'session'
    ? new SessionWindowOperator(assigner, inputs, acc, fn, late)
    : new SlicedWindowOperator(assigner, inputs, acc, fn, late);
}

/**
 * A keyed stream grouped into windows. Choose what happens to late records with `onLate`, then
 * reduce each window with `aggregate` (incremental) or `process` (all records at once).
 */
export class WindowedStream<T, K extends Key> {
  constructor(
    private readonly keyed: KeyedStream<T, K>,
    private readonly assigner: WindowAssigner,
    private readonly late: LatePolicy<T> = DROP_LATE,
  ) {}

  /**
   * Sets the late-data policy (default: drop, counted).
   *
   * @example
   * const late = new OutputTag<Bid>('late');
   * windowed.onLate({ policy: 'side-output', tag: late });
   * windowed.onLate({ policy: 'update', allowedLateness: 60_000 });
   */
  onLate(policy: LatePolicy<T>): WindowedStream<T, K> {
    return new WindowedStream(this.keyed, this.assigner, policy);
  }

  /** Aggregates each window incrementally; emits `{ key, start, end, value }` per key and window. */
  aggregate<A, R>(agg: Aggregator<T, A, R>, options?: StepOptions): Stream<WindowResult<K, R>>;
  /** Aggregates each window incrementally; `project` builds the output row. */
  aggregate<A, R, O>(agg: Aggregator<T, A, R>, project: (key: K, result: R, window: WindowInfo) => O, options?: StepOptions): Stream<O>;
  aggregate<A, R, O>(
    agg: Aggregator<T, A, R>,
    project?: ((key: K, result: R, window: WindowInfo) => O) | StepOptions,
    options?: StepOptions,
  ): Stream<O> {
    const build =
      typeof project === 'function'
        ? project
        : (key: K, value: R, w: WindowInfo) => ({ key, start: w.start, end: w.end, value }) as O;
    const fn: WindowFunction<K, R, O> = (key, result, window, out) => out.emit(build(key, result, window));
    return this.apply(agg, fn, typeof project === 'function' ? options : project, true);
  }

  /** Calls `fn` with every record of a key's window when it fires. */
  process<O>(
    fn: (key: K, elements: readonly T[], window: WindowInfo, out: Emitter<O>) => void,
    options?: StepOptions,
  ): Stream<O> {
    return this.apply(collectAll<T>(), fn as WindowFunction<K, T[], O>, options, false);
  }

  /**
   * Adds the window step. An incremental aggregate (`combinable`) over tumbling or sliding windows
   * whose late records are dropped is pre-aggregated per batch before a keyed exchange, so
   * parallel instances exchange partial aggregates rather than records.
   */
  private apply<A, R, O>(agg: Aggregator<T, A, R>, fn: WindowFunction<K, R, O>, options: StepOptions | undefined, combinable: boolean): Stream<O> {
    const keyed = this.keyed as unknown as KeyedStream<unknown, Key>;
    const input: WindowInput = {
      key: keyed.key,
      add: agg.add as (acc: unknown, value: unknown) => unknown,
    };
    const acc = agg as unknown as WindowAccumulator;
    const assigner = this.assigner;
    const late = this.late as LatePolicy<unknown>;
    const kindName = assigner.kind === 'session' ? 'session-window' : `${assigner.kind}-window`;
    maxWindowTime(assigner); // refuses a hand-built assigner with bad lengths, before anything uses them
    // Pre-aggregated records cannot be sent to a side output or dead-lettered one by one, nor
    // update a fired window once per late record: only windows that drop late records combine.
    const combine: CombineSpec | undefined =
      combinable && assigner.kind !== 'session' && late.policy === 'drop'
        ? {
            key: keyed.key,
            pane: paneOf(assigner),
            create: agg.create as () => unknown,
            add: agg.add as (acc: unknown, value: unknown) => unknown,
            encode: agg.codec === undefined ? (a) => a : (a) => agg.codec!.encode(a as A),
          }
        : undefined;
    return addStep<O>(
      keyed,
      kindName,
      options,
      [keyed],
      () => windowOperator(assigner, [input], acc, fn as WindowFunction<Key, unknown, unknown>, late),
      [agg, fn],
      combine,
    );
  }
}

/** Records of both sides of a window join, for one key and window. */
interface JoinAccumulator<L, R> {
  left: L[];
  right: R[];
}

/**
 * A window join being defined: records of two keyed streams with the same key in the same window.
 * Late records are dropped (counted); set another policy with `onLate`.
 */
export class WindowJoin<L, R, K extends Key> {
  constructor(
    private readonly left: KeyedStream<L, K>,
    private readonly right: KeyedStream<R, K>,
    private readonly assigner: WindowAssigner,
    private readonly late: LatePolicy<L | R> = DROP_LATE,
  ) {
    if (left.stream.pipeline !== right.stream.pipeline) throw new Error('windowJoin: streams belong to different pipelines');
  }

  /** Sets the late-data policy. */
  onLate(policy: LatePolicy<L | R>): WindowJoin<L, R, K> {
    return new WindowJoin(this.left, this.right, this.assigner, policy);
  }

  /** Emits `fn(l, r, window)` for every pair of the key's window. */
  apply<O>(fn: (left: L, right: R, window: WindowInfo) => O, options?: StepOptions): Stream<O> {
    return this.coGroup<O>((_key, lefts, rights, window, out) => {
      for (const l of lefts) for (const r of rights) out.emit(fn(l, r, window));
    }, options);
  }

  /**
   * Calls `fn` once per key and window with the records of both sides (either may be empty):
   * for outer joins, semi-joins and per-window de-duplication.
   */
  coGroup<O>(
    fn: (key: K, left: readonly L[], right: readonly R[], window: WindowInfo, out: Emitter<O>) => void,
    options?: StepOptions,
  ): Stream<O> {
    const left = this.left as unknown as KeyedStream<unknown, Key>;
    const right = this.right as unknown as KeyedStream<unknown, Key>;
    const inputs: WindowInput[] = [
      { key: left.key, add: (acc, v) => ((acc as JoinAccumulator<L, R>).left.push(v as L), acc) },
      { key: right.key, add: (acc, v) => ((acc as JoinAccumulator<L, R>).right.push(v as R), acc) },
    ];
    const acc: WindowAccumulator = {
      create: (): JoinAccumulator<L, R> => ({ left: [], right: [] }),
      merge: (a, b) => {
        const x = a as JoinAccumulator<L, R>;
        const y = b as JoinAccumulator<L, R>;
        for (const v of y.left) x.left.push(v);
        for (const v of y.right) x.right.push(v);
        return x;
      },
      result: (a) => a,
    };
    const windowFn: WindowFunction<Key, unknown, unknown> = (key, a, window, out) => {
      const j = a as JoinAccumulator<L, R>;
      fn(key as K, j.left, j.right, window, out as Emitter<O>);
    };
    const assigner = this.assigner;
    const late = this.late as LatePolicy<unknown>;
    return addStep<O>(left, 'window-join', options, [left, right], () => windowOperator(assigner, inputs, acc, windowFn, late), [fn]);
  }
}
