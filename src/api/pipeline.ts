import { codeOf, type CombineSpec, DEAD_LETTER_STEP, type InputEdge, LogicalGraph, type SourceStepOptions, StepNode } from '../plan/graph.ts';
import { explain } from '../plan/physical.ts';
import { type JobOptions, type JobResult, Job, type StopOptions } from '../runtime/job.ts';
import type { JobSnapshot } from '../checkpoint/snapshot.ts';
import type { CheckpointRecord } from '../checkpoint/coordinator.ts';
import { UnionOperator } from '../operators/union.ts';
import type { DeadLetter, Operator } from '../runtime/operator.ts';
import { validateSourceOptions } from '../runtime/options.ts';
import type { Sink } from '../runtime/sink.ts';
import type { Source } from '../runtime/source.ts';
import { ArraySource, IterableSource } from '../connectors/memory/source.ts';
import { Stream, type StepOptions } from './stream.ts';

/** Options of a pipeline (defaults for every run). */
export type PipelineOptions = JobOptions;

/** Options of a source step. */
export interface SourceOptions<T> extends SourceStepOptions<T>, StepOptions {}

/** A running job started with {@link Pipeline.start}. */
export interface RunningJob {
  readonly job: Job;
  /** Resolves when the job ends (bounded input consumed, or stopped). */
  readonly done: Promise<JobResult>;
  /**
   * Stops the job: by default after a final checkpoint, so sinks commit everything written so
   * far. `done` resolves once every step is closed.
   */
  stop(options?: StopOptions): Promise<JobResult>;
  /** The job's state now, as a consistent cut by checkpoint barriers (see {@link Job.snapshot}). */
  snapshot(): Promise<JobSnapshot>;
  /** Takes a savepoint in the checkpoint directory. */
  savepoint(): Promise<CheckpointRecord>;
}

/**
 * A dataflow pipeline: add sources, transform the streams they return, attach sinks, then run.
 * Bounded inputs run to completion (batch mode, same API); unbounded ones until stopped.
 *
 * @example
 * const p = new Pipeline();
 * const counts = p
 *   .fromArray(bids, { timestamp: (b) => b.dateTime })
 *   .keyBy((b) => b.auction)
 *   .window(tumbling(10_000))
 *   .aggregate(count())
 *   .collect();
 * await p.run();
 */
export class Pipeline {
  readonly graph = new LogicalGraph();
  private deadLetterStep: StepNode | undefined;

  constructor(readonly options: PipelineOptions = {}) {}

  /** Adds a source. Pass a factory when the pipeline may run more than once. */
  source<T>(source: Source<T> | (() => Source<T>), options: SourceOptions<T> = {}): Stream<T> {
    const create = typeof source === 'function' ? source : () => source;
    const id = this.graph.stepId('source', options.id);
    validateSourceOptions(id, options);
    const node = this.graph.add(
      new StepNode(
        id,
        'source',
        [],
        {
          type: 'source',
          create: create as () => Source<unknown>,
          options: options as SourceStepOptions<unknown>,
        },
        codeOf([create, options.timestamp]),
      ),
    );
    return new Stream<T>(this, node);
  }

  /** A bounded source over an array (records get `options.timestamp`, else ingestion time). */
  fromArray<T>(values: readonly T[], options: SourceOptions<T> = {}): Stream<T> {
    return this.source(() => new ArraySource(values), options);
  }

  /** A source over a sync or async iterable; bounded, since iterables end. */
  fromIterable<T>(iterable: Iterable<T> | AsyncIterable<T>, options: SourceOptions<T> = {}): Stream<T> {
    return this.source(() => new IterableSource(iterable), options);
  }

  /**
   * Records that some step could not process (user function threw, malformed input, late data
   * under the `dead-letter` policy), with the step id and the error. Without a consumer they are
   * logged to stderr and counted.
   */
  deadLetters(): Stream<DeadLetter> {
    // Every step gets a dead-letter output; this step merges them (its inputs are wired when the
    // job is built, so steps added later are included).
    this.deadLetterStep ??= this.graph.add(
      new StepNode(DEAD_LETTER_STEP, 'dead-letters', [], {
        type: 'operator',
        create: () => new UnionOperator<unknown>() as Operator<unknown, unknown>,
        keyed: false,
      }),
    );
    return new Stream<DeadLetter>(this, this.deadLetterStep);
  }

  /** Adds an operator step (used by the stream classes). */
  addOperator<O>(
    kind: string,
    options: StepOptions | undefined,
    inputs: InputEdge[],
    create: () => Operator<unknown, unknown>,
    traits: { readonly keyed?: boolean; readonly combine?: CombineSpec | undefined; readonly code?: readonly unknown[]; readonly local?: boolean; readonly view?: string } = {},
  ): Stream<O> {
    const parallelism = checkParallelism(options?.parallelism);
    const spec = { type: 'operator', create, keyed: traits.keyed ?? false, parallelism, combine: traits.combine, local: traits.local, view: traits.view } as const;
    const node = this.graph.add(new StepNode(this.graph.stepId(kind, options?.id), kind, inputs, spec, codeOf(traits.code ?? [])));
    return new Stream<O>(this, node);
  }

  /** Adds a sink step (used by the stream classes). */
  addSink(options: StepOptions | undefined, input: InputEdge, create: () => Sink<unknown>): void {
    const parallelism = checkParallelism(options?.parallelism);
    this.graph.add(new StepNode(this.graph.stepId('sink', options?.id), 'sink', [input], { type: 'sink', create, parallelism }, codeOf([create])));
  }

  /** Creates the job without running it (the test harness drives it directly). */
  createJob(options: JobOptions = {}): Job {
    if (this.graph.nodes.length === 0) throw new Error('the pipeline has no steps');
    return new Job(this.graph, { ...this.options, ...options });
  }

  /** Runs the pipeline until its bounded inputs are consumed. */
  run(options: JobOptions = {}): Promise<JobResult> {
    return this.createJob(options).run();
  }

  /** Starts the pipeline and returns a handle to stop it. */
  start(options: JobOptions = {}): RunningJob {
    const job = this.createJob(options);
    const done = job.run();
    // The caller may await `done` later (or only call stop()): a failure must not surface as an
    // unhandled rejection meanwhile. Awaiting `done` still rejects.
    done.catch(() => undefined);
    return {
      job,
      done,
      stop: (stopOptions?: StopOptions) => {
        job.stop(stopOptions);
        return done;
      },
      snapshot: () => job.snapshot(),
      savepoint: () => job.savepoint(),
    };
  }

  /** The physical plan: operator chains, exchanges and step ids. */
  explain(parallelism = 1): string {
    checkParallelism(parallelism);
    return explain(this.graph, parallelism);
  }
}

/** Validates a parallelism given on a step or a run. */
function checkParallelism(p: number | undefined): number | undefined {
  if (p !== undefined && !(Number.isInteger(p) && p >= 1)) throw new RangeError(`parallelism must be a whole number >= 1, got ${String(p)}`);
  return p;
}
