import { FilterOperator } from '../operators/filter.ts';
import { FlatMapOperator } from '../operators/flat-map.ts';
import { MapOperator } from '../operators/map.ts';
import { type ProcessFunction, ProcessOperator } from '../operators/process.ts';
import { UnionOperator } from '../operators/union.ts';
import { CollectSink } from '../connectors/memory/sink.ts';
import type { Emitter } from '../operators/emitter.ts';
import { type InputEdge, MAIN_PORT, type StepNode } from '../plan/graph.ts';
import type { Operator } from '../runtime/operator.ts';
import type { Sink } from '../runtime/sink.ts';
import type { Key } from '../state/key-group.ts';
import type { WindowAssigner } from '../window/assigners.ts';
import { KeyedStream } from './keyed-stream.ts';
import type { OutputTag } from './output-tag.ts';
import type { Pipeline } from './pipeline.ts';
import type { WindowedStream } from './windowed-stream.ts';

/** Options every step accepts. */
export interface StepOptions {
  /**
   * Stable id of the step: it names the step's state in snapshots, its metrics and its node in
   * the dashboard. Default: `<kind>-<n>` in creation order; give stateful steps an explicit id so
   * that editing the pipeline does not orphan their state.
   */
  readonly id?: string;
  /** Instances of this step (default: the job's parallelism, carried along forward edges). */
  readonly parallelism?: number;
}

/**
 * A stream of records of type `T`: the output port of one step. Every method adds a step to the
 * pipeline and returns the stream of its output; nothing runs until `pipeline.run()`.
 *
 * @example
 * const p = new Pipeline();
 * const out = p.fromArray([1, 2, 3, 4]).filter((n) => n % 2 === 0).map((n) => n * 10).collect();
 * await p.run();
 * out.values; // [20, 40]
 */
export class Stream<T> {
  /** Type carrier only; never set. */
  declare readonly __type?: T;

  constructor(
    readonly pipeline: Pipeline,
    readonly node: StepNode,
    readonly port: string = MAIN_PORT,
    private readonly partitioning: InputEdge['partitioning'] = { type: 'forward' },
  ) {}

  /** The edge that reads this stream, partitioned as given (by default as the stream says). */
  edge(partitioning: InputEdge['partitioning'] = this.partitioning): InputEdge {
    return { from: this.node, port: this.port, partitioning };
  }

  /**
   * The same stream, dealt round-robin to the instances of the next step (to spread the load of a
   * source that cannot be split, or of a skewed one).
   */
  rebalance(): Stream<T> {
    return new Stream<T>(this.pipeline, this.node, this.port, { type: 'rebalance' });
  }

  /** The same stream, every record sent to every instance of the next step (rules, configuration). */
  broadcast(): Stream<T> {
    return new Stream<T>(this.pipeline, this.node, this.port, { type: 'broadcast' });
  }

  /** Adds a one-input step of `kind` reading this stream. */
  protected then<U>(kind: string, options: StepOptions | undefined, create: () => Operator<T, U>, fn: unknown): Stream<U> {
    return this.pipeline.addOperator<U>(kind, options, [this.edge()], create as () => Operator<unknown, unknown>, { code: [fn] });
  }

  /** One output per record. */
  map<U>(fn: (value: T) => U, options?: StepOptions): Stream<U> {
    return this.then('map', options, () => new MapOperator(fn), fn);
  }

  /** Keeps the records for which `predicate` holds. */
  filter<S extends T>(predicate: (value: T) => value is S, options?: StepOptions): Stream<S>;
  filter(predicate: (value: T) => boolean, options?: StepOptions): Stream<T>;
  filter(predicate: (value: T) => boolean, options?: StepOptions): Stream<T> {
    return this.then('filter', options, () => new FilterOperator(predicate), predicate);
  }

  /** Zero or more outputs per record, emitted with `out.emit`. */
  flatMap<U>(fn: (value: T, out: Emitter<U>) => void, options?: StepOptions): Stream<U> {
    return this.then('flat-map', options, () => new FlatMapOperator(fn), fn);
  }

  /**
   * A function with access to the record's timestamp, the watermark and side outputs.
   *
   * @example
   * const invalid = new OutputTag<Reading>('invalid');
   * const valid = readings.process<Reading>((r, ctx) => (r.value >= 0 ? ctx.emit(r) : ctx.output(invalid, r)));
   * valid.sideOutput(invalid).sink(new ConsoleSink());
   */
  process<O>(fn: ProcessFunction<T, O>, options?: StepOptions): Stream<O> {
    return this.then('process', options, () => new ProcessOperator(fn), fn);
  }

  /** The records this stream's step sent to side output `tag`. */
  sideOutput<X>(tag: OutputTag<X>): Stream<X> {
    return new Stream<X>(this.pipeline, this.node, tag.id);
  }

  /** Merges this stream with others of the same type. */
  union(...others: Stream<T>[]): Stream<T> {
    for (const o of others) {
      if (o.pipeline !== this.pipeline) throw new Error('union: streams belong to different pipelines');
    }
    return this.pipeline.addOperator<T>(
      'union',
      undefined,
      [this, ...others].map((s) => s.edge()),
      () => new UnionOperator<T>() as Operator<unknown, unknown>,
    );
  }

  /**
   * Partitions the stream by key: stateful steps downstream keep state per key, and parallel
   * instances each own the keys of their key groups.
   */
  keyBy<K extends Key>(key: (value: T) => K): KeyedStream<T, K> {
    return new KeyedStream<T, K>(this, key);
  }

  /** Windows over the whole stream (one global key; runs on a single instance). */
  windowAll(assigner: WindowAssigner): WindowedStream<T, number> {
    return new KeyedStream<T, number>(this, () => 0, { type: 'global' }).window(assigner);
  }

  /** Collects every record in memory (shorthand for `sink(new CollectSink())`, for tests). */
  collect(options?: StepOptions): CollectSink<T> {
    const sink = new CollectSink<T>();
    this.sink(sink, options);
    return sink;
  }

  /** Sends every record to `sink`. */
  sink(sink: Sink<T> | (() => Sink<T>), options?: StepOptions): void {
    const create = typeof sink === 'function' ? sink : () => sink;
    this.pipeline.addSink(options, this.edge(), create as () => Sink<unknown>);
  }
}
