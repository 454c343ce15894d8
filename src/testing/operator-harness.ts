import { DEAD_LETTER_STEP } from '../plan/graph.ts';
import type { OutputTag } from '../api/output-tag.ts';
import { Pipeline } from '../api/pipeline.ts';
import type { Stream } from '../api/stream.ts';
import { CollectSink } from '../connectors/memory/sink.ts';
import type { StepMetrics } from '../runtime/job.ts';
import type { Job } from '../runtime/job.ts';
import type { DeadLetter } from '../runtime/operator.ts';
import type { Source } from '../runtime/source.ts';
import type { SourceNode } from '../runtime/source-node.ts';
import type { OperatorNode } from '../runtime/operator-node.ts';
import type { JobSnapshot } from '../checkpoint/snapshot.ts';
import { VirtualClock } from '../time/clock.ts';

/** Options of {@link OperatorHarness}. */
export interface HarnessOptions {
  /** Side outputs of the built stream's step to capture. */
  readonly sideOutputs?: ReadonlyArray<OutputTag<unknown>>;
  /** Processing time at start (default 0), or a shared virtual clock. */
  readonly clock?: VirtualClock;
  /** Fail on user-function errors instead of dead-lettering (default: dead-letter). */
  readonly errors?: 'dead-letter' | 'fail';
  /** Number of key groups (default 128). */
  readonly maxParallelism?: number;
  /** Where warnings and unconsumed dead letters are logged (default stderr). */
  readonly log?: (line: string) => void;
}

/** A record with its timestamp, as the harness reports output. */
export interface Timed<T> {
  readonly value: T;
  readonly time: number;
}

type Streams<I extends readonly unknown[]> = { [K in keyof I]: Stream<I[K]> };

/** A source the harness feeds directly (its reader is never polled). */
const manualSource: () => Source<unknown> = () => ({
  bounded: false,
  watermarks: 'explicit',
  maxParallelism: 1,
  splits: () => [],
  createReader: () => ({ open: () => undefined, poll: () => 'wait', snapshot: () => [] }),
});

/**
 * Drives a piece of pipeline synchronously with virtual time: push records and watermarks into
 * its inputs, advance processing time, read what it emitted, snapshot its state and restore it
 * into fresh operator instances. `I` is the tuple of input types.
 *
 * @example
 * const h = OperatorHarness.of<[Bid], WindowResult<number, number>>((bids) =>
 *   bids.keyBy((b) => b.auction).window(tumbling(10)).aggregate(count()),
 * );
 * h.push(bid, 3);
 * h.watermark(9);
 * h.values(); // [{ key: bid.auction, start: 0, end: 10, value: 1 }]
 * const h2 = h.restore(h.snapshot()); // same state, fresh operators
 */
export class OperatorHarness<I extends readonly unknown[], O> {
  readonly clock: VirtualClock;
  private readonly job: Job;
  private readonly inputs: SourceNode[];
  private readonly main = new CollectSink<O>();
  private readonly sides = new Map<string, CollectSink<unknown>>();
  private readonly dead = new CollectSink<DeadLetter>();

  private constructor(
    private readonly build: (...inputs: Streams<I>) => Stream<O>,
    private readonly arity: number,
    private readonly options: HarnessOptions,
    restoreFrom: JobSnapshot | undefined,
  ) {
    this.clock = options.clock ?? new VirtualClock(0);
    const p = new Pipeline();
    const streams = Array.from({ length: arity }, (_, i) => p.source(manualSource, { id: `input-${i}`, idleTimeout: 0 }));
    const out = build(...(streams as unknown as Streams<I>));
    out.sink(this.main, { id: 'harness-output' });
    for (const [i, tag] of (options.sideOutputs ?? []).entries()) {
      const sink = new CollectSink<unknown>();
      this.sides.set(tag.id, sink);
      out.sideOutput(tag).sink(sink, { id: `harness-side-${i}` });
    }
    p.deadLetters().sink(this.dead, { id: 'harness-dead-letters' });
    this.job = p.createJob({
      clock: this.clock,
      errors: options.errors ?? 'dead-letter',
      maxParallelism: options.maxParallelism,
      log: options.log,
      restoreFrom,
    });
    this.job.openSync();
    this.inputs = streams.map((s) => this.job.node(s.node.id) as SourceNode);
  }

  /** A harness over a pipeline fragment with one or more inputs (one per parameter of `build`). */
  static of<I extends readonly unknown[], O>(build: (...inputs: Streams<I>) => Stream<O>, options: HarnessOptions = {}): OperatorHarness<I, O> {
    return new OperatorHarness(build, Math.max(1, build.length), options, undefined);
  }

  /** Pushes a record with timestamp `time` into input 0. */
  push(value: I[0], time: number): this {
    return this.pushTo(0, value, time);
  }

  /** Pushes a record into input `input`. */
  pushTo<N extends number>(input: N, value: I[N], time: number): this {
    const node = this.input(input);
    node.emit(value, time);
    node.publish();
    return this;
  }

  /** Advances the watermark of one input, or of every input when `input` is omitted. */
  watermark(time: number, input?: number): this {
    for (const node of this.select(input)) node.watermark(time);
    return this;
  }

  /** Marks an input (or all) idle. */
  idle(input?: number): this {
    for (const node of this.select(input)) node.markIdle();
    return this;
  }

  /** Ends an input (or all): final watermark, then end of input. */
  endInput(input?: number): this {
    for (const node of this.select(input)) node.finish();
    return this;
  }

  /** Advances processing time and fires what became due. */
  advanceProcessingTime(ms: number): this {
    this.clock.advance(ms);
    this.job.fireProcessingTime(this.clock.now());
    return this;
  }

  /** Everything emitted on the main output so far, with timestamps. */
  output(): Array<Timed<O>> {
    return this.main.records.slice();
  }

  /** The values emitted on the main output so far. */
  values(): O[] {
    return this.main.values;
  }

  /** Removes and returns the values emitted so far. */
  take(): O[] {
    return this.main.take();
  }

  /** Values sent to a captured side output. */
  sideOutput<X>(tag: OutputTag<X>): X[] {
    const sink = this.sides.get(tag.id);
    if (sink === undefined) throw new Error(`side output '${tag.id}' is not captured: pass it in options.sideOutputs`);
    return sink.values as X[];
  }

  /** Dead letters reported so far. */
  deadLetters(): DeadLetter[] {
    return this.dead.values;
  }

  /** Counters of every step. */
  metrics(): StepMetrics[] {
    return this.job.metrics();
  }

  /** The counters of the step `id`, or of the built stream's step when omitted. */
  stepMetrics(id?: string): StepMetrics {
    const all = this.metrics().filter((m) => !m.step.startsWith('input-') && !m.step.startsWith('harness-') && m.step !== DEAD_LETTER_STEP);
    const m = id === undefined ? all[all.length - 1] : all.find((x) => x.step === id);
    if (m === undefined) throw new Error(`no step '${id}'`);
    return m;
  }

  /**
   * Number of keys holding keyed state in the memory of step `id` (default: the built stream's
   * step) — entries of a state with a TTL that expired but were not swept yet included, so a
   * test can tell a sweep that frees memory from reads that merely hide expired values.
   *
   * @example
   * h.advanceProcessingTime(ttl);
   * h.stateSize(); // 0 once the expired entries are swept
   */
  stateSize(id?: string): number {
    const step = id ?? this.stepMetrics().step;
    return (this.job.node(step) as OperatorNode).state.size();
  }

  /**
   * A checkpoint of every step, taken now: a barrier from every input passes through the steps
   * (as in a running job), each snapshots its state, and the whole is returned in memory.
   */
  snapshot(): JobSnapshot {
    return this.job.snapshotNow();
  }

  /**
   * A new harness with fresh operator instances restored from `snapshot`, sharing this one's
   * clock. Output already collected here is not carried over.
   */
  restore(snapshot: JobSnapshot): OperatorHarness<I, O> {
    return new OperatorHarness(this.build, this.arity, { ...this.options, clock: this.clock }, snapshot);
  }

  private input(i: number): SourceNode {
    const node = this.inputs[i];
    if (node === undefined) throw new Error(`the harness has ${this.inputs.length} input(s); no input ${i}`);
    return node;
  }

  private select(input: number | undefined): SourceNode[] {
    return input === undefined ? this.inputs : [this.input(input)];
  }
}
