import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { LogicalGraph, StepNode } from '../plan/graph.ts';
import { DEFAULT_MAX_PARALLELISM } from '../state/key-group.ts';
import { EMPTY_SNAPSHOT, type JobSnapshot, type OperatorSnapshot } from '../state/snapshot.ts';
import { packState, unpackState } from '../state/codec.ts';
import { type Clock, systemClock } from '../time/clock.ts';
import { DEFAULT_BATCH_SIZE } from './batch.ts';
import type { Collector, EdgeTarget } from './collector.ts';
import { DeadLetterChannel } from './dead-letters.ts';
import type { DeadLetter, OperatorMetrics } from './operator.ts';
import { OperatorNode } from './operator-node.ts';
import { validateJobOptions } from './options.ts';
import { SinkOperator } from './sink-operator.ts';
import { SourceNode } from './source-node.ts';

/** Options of a job run. */
export interface JobOptions {
  /** Records per batch (default 1024). */
  batchSize?: number;
  /** Number of key groups (default 128). */
  maxParallelism?: number;
  /** Processing-time clock (default: the wall clock). */
  clock?: Clock;
  /**
   * What a failing user function does: `dead-letter` (default) sends the record, the step id and
   * the error to the dead-letter output and goes on; `fail` stops the job with the error.
   */
  errors?: 'dead-letter' | 'fail';
  /** Resume from this snapshot (every step's state and every source's position). */
  restoreFrom?: JobSnapshot;
  /** Where dead letters are logged when no dead-letter stream is consumed (default stderr). */
  log?: (line: string) => void;
}

/** Per-step counters and watermark, as reported by {@link LocalJob.metrics}. */
export interface StepMetrics extends OperatorMetrics {
  readonly step: string;
  readonly kind: string;
  readonly watermark: number;
  readonly idle: boolean;
}

/** The outcome of a finished run. */
export interface JobResult {
  /** Wall-clock duration of the run in milliseconds. */
  readonly durationMs: number;
  readonly metrics: readonly StepMetrics[];
  readonly deadLetters: number;
}

/** Key under which a source's position is stored in its step snapshot. */
const SOURCE_STATE = 'source';

/**
 * Runs a pipeline's steps in this thread: one instance per step, wired by synchronous calls, so
 * a batch travels the whole graph before the next one is polled. Sources are polled in turn; the
 * loop awaits only when no source has data, or to let I/O and timers run every few milliseconds.
 *
 * Because all steps run in one thread between polls, a snapshot taken between two polls is a
 * consistent cut of the whole job: every record before it is fully processed, none after it.
 */
export class LocalJob {
  readonly clock: Clock;
  readonly maxParallelism: number;
  readonly batchSize: number;
  readonly sources: SourceNode[] = [];
  readonly operators: OperatorNode[] = [];
  readonly sinks: SinkOperator[] = [];
  private readonly byStep = new Map<string, SourceNode | OperatorNode>();
  private readonly kinds = new Map<string, string>();
  readonly deadLetters: DeadLetterChannel;
  private deadLetterOutput: Collector<DeadLetter> | null = null;
  private deadLetterStepId: string | undefined;
  private stopRequested = false;
  private failure: { error: unknown } | null = null;
  private wake: (() => void) | null = null;
  /** Set by a wake-up that may have come before the loop went to sleep. */
  private woken = false;
  private opened = false;

  constructor(
    readonly graph: LogicalGraph,
    readonly options: JobOptions = {},
    /** The step that dead letters flow out of, if a pipeline consumes them. */
    deadLetterStep?: StepNode,
  ) {
    validateJobOptions(options);
    this.clock = options.clock ?? systemClock;
    this.maxParallelism = options.maxParallelism ?? DEFAULT_MAX_PARALLELISM;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    this.deadLetters = new DeadLetterChannel(options.errors === 'fail', this.clock, options.log);
    this.build(deadLetterStep);
  }

  private build(deadLetterStep: StepNode | undefined): void {
    for (const step of this.graph.nodes) {
      this.kinds.set(step.id, step.kind);
      const spec = step.spec;
      if (spec.type === 'source') {
        const node = new SourceNode(step.id, spec.create(), spec.options, this.clock, this.batchSize, this.deadLetters);
        if (step === deadLetterStep) {
          this.deadLetterOutput = node.output as Collector<DeadLetter>;
          this.deadLetterStepId = step.id;
        } else this.sources.push(node);
        this.byStep.set(step.id, node);
      } else {
        const operator = spec.type === 'sink' ? new SinkOperator(spec.create()) : spec.create();
        const node = new OperatorNode(
          step.id,
          operator,
          step.inputs.length,
          this.clock,
          this.maxParallelism,
          this.batchSize,
          this.deadLetters,
        );
        if (operator instanceof SinkOperator) this.sinks.push(operator);
        this.operators.push(node);
        this.byStep.set(step.id, node);
      }
    }
    for (const step of this.graph.nodes) {
      const target = this.byStep.get(step.id)!;
      step.inputs.forEach((edge, input) => {
        const from = this.byStep.get(edge.from.id)!;
        const port = from instanceof OperatorNode ? from.port(edge.port) : from.ports.get(edge.port);
        if (port === undefined) throw new Error(`step '${edge.from.id}' has no output '${edge.port}'`);
        port.connect(target as EdgeTarget, input);
      });
    }
    if (this.deadLetterOutput !== null) this.deadLetters.attach(this.deadLetterOutput);
  }

  /** Opens every operator and sink and restores their state; sources are opened by `open`. */
  private openOperators(): Array<Promise<void>> {
    const restore = this.options.restoreFrom;
    if (restore !== undefined) {
      // State of a step that no longer exists would be silently lost: refuse, naming it.
      const unknown = [...restore.keys()].filter((id) => !this.byStep.has(id));
      if (unknown.length > 0) {
        throw new Error(`the snapshot has state for steps this pipeline does not have: ${unknown.join(', ')} (were they renamed? give stateful steps stable ids)`);
      }
    }
    for (const node of this.operators) {
      node.open();
      const snap = restore?.get(node.stepId);
      if (snap !== undefined) {
        if (node.operator.restore === undefined) throw new Error(`step '${node.stepId}' has no state to restore`);
        node.operator.restore(snap);
      }
    }
    const pending: Array<Promise<void>> = [];
    for (const sink of this.sinks) {
      const r = sink.openSink();
      if (r !== undefined) pending.push(r);
    }
    // Dead letters carry no event-time progress: their stream never holds a watermark back.
    this.deadLetterOutput?.idle(true);
    return pending;
  }

  /**
   * Opens operators and sinks synchronously, leaving sources closed: for the test harness, which
   * feeds source steps directly. Fails if a sink opens asynchronously.
   */
  openSync(): void {
    if (this.opened) return;
    this.opened = true;
    if (this.openOperators().length > 0) throw new Error('openSync: a sink opens asynchronously');
  }

  /** Opens every step, restores state and source positions; called by `run`. */
  async open(): Promise<void> {
    if (this.opened) return;
    this.opened = true;
    await Promise.all(this.openOperators());
    const restore = this.options.restoreFrom;
    for (const node of this.sources) {
      const snap = restore?.get(node.stepId);
      if (snap?.operator !== undefined && node.source.restore !== undefined) {
        node.source.restore((unpackState(snap.operator) as Record<string, unknown>)[SOURCE_STATE]);
      }
      await node.source.open?.({ stepId: node.stepId, clock: this.clock, instance: 0, parallelism: 1 });
    }
  }

  /** Runs until every source ends (bounded input) or {@link stop} is called. */
  async run(): Promise<JobResult> {
    const started = performance.now();
    let lastYield = performance.now();
    try {
      await this.open();
      while (!this.stopRequested) {
        if (this.failure !== null) throw this.failure.error;
        let progressed = false;
        let live = 0;
        for (const node of this.sources) {
          if (node.ended) continue;
          if (node.waiting === null) {
            const status = node.poll(this.batchSize);
            if (status === 'more') progressed = true;
            else if (status === 'wait') this.awaitSource(node);
          }
          if (!node.ended) live++;
        }
        if (live === 0) break;
        const now = this.clock.now();
        this.fireProcessingTime(now);
        for (const node of this.sources) node.checkIdle(now);
        await this.relieveBackpressure();
        if (!progressed) await this.sleep(now);
        else if (performance.now() - lastYield > 10) {
          await yieldToEventLoop();
          lastYield = performance.now();
        }
      }
      // A source that failed while the job was being stopped still fails the job.
      if (this.failure !== null) throw this.failure.error;
      if (!this.stopRequested) this.finishDeadLetters();
      for (const sink of this.sinks) await sink.flushSink();
    } catch (error) {
      // The job's own failure is what the caller needs to see, not a failure to close after it.
      await this.close().catch(() => undefined);
      throw error;
    }
    await this.close();
    return {
      durationMs: performance.now() - started,
      metrics: this.metrics(),
      deadLetters: this.deadLetters.count,
    };
  }

  /** Asks a running job to stop after the current batch (no final watermark). */
  stop(): void {
    this.stopRequested = true;
    this.wakeUp();
  }

  /** Ends the current sleep, or makes the next one return at once (no lost wake-ups). */
  private wakeUp(): void {
    this.woken = true;
    this.wake?.();
  }

  /**
   * A consistent snapshot of every stateful step and every source position. Call it between
   * polls (from the harness, or from a sink or timer callback; never from inside a step).
   */
  snapshot(): JobSnapshot {
    const out = new Map<string, OperatorSnapshot>();
    for (const node of this.operators) {
      const snap = node.operator.snapshot?.();
      if (snap !== undefined && snap !== EMPTY_SNAPSHOT) out.set(node.stepId, snap);
    }
    for (const node of this.sources) {
      const state = node.source.snapshot?.();
      if (state !== undefined) out.set(node.stepId, { keyed: new Map(), operator: packState({ [SOURCE_STATE]: state }) });
    }
    return out;
  }

  /** Current counters of every step, in plan order. */
  metrics(): StepMetrics[] {
    const out: StepMetrics[] = [];
    for (const [step, node] of this.byStep) {
      if (step === this.deadLetterStepId) continue;
      out.push({
        step,
        kind: this.kinds.get(step)!,
        ...node.metrics,
        watermark: node instanceof SourceNode ? node.currentWatermark : node.watermark,
        idle: node.idle,
      });
    }
    return out;
  }

  /** The runtime node of a step (tests and the harness). */
  node(stepId: string): SourceNode | OperatorNode {
    const node = this.byStep.get(stepId);
    if (node === undefined) throw new Error(`no step '${stepId}'`);
    return node;
  }

  /** Fires processing-time callbacks that are due. */
  fireProcessingTime(now: number): void {
    for (const node of this.operators) node.firePendingProcessingTime(now);
  }

  /** Ends the dead-letter stream once every source has ended. */
  finishDeadLetters(): void {
    const out = this.deadLetterOutput;
    if (out !== null) {
      out.idle(false);
      out.watermark(Infinity);
      out.end();
      this.deadLetterOutput = null;
    }
  }

  private awaitSource(node: SourceNode): void {
    const ready = node.source.ready?.() ?? Promise.resolve();
    node.waiting = ready.then(
      () => {
        node.waiting = null;
        this.wakeUp();
      },
      (error: unknown) => {
        // A source that fails while reading fails the job (from the run loop).
        this.failure ??= { error };
        this.wakeUp();
      },
    );
  }

  private async relieveBackpressure(): Promise<void> {
    for (const sink of this.sinks) {
      const pending = sink.backpressure();
      if (pending !== undefined) await pending;
    }
  }

  /** Waits until a source is ready, a timer is due, a source may turn idle, or stop. */
  private async sleep(now: number): Promise<void> {
    let deadline = Infinity;
    for (const node of this.operators) if (node.nextProcessingTime < deadline) deadline = node.nextProcessingTime;
    for (const node of this.sources) deadline = Math.min(deadline, node.idleDeadline());
    if (this.clock !== systemClock && deadline !== Infinity) {
      // A virtual clock does not move by itself: poll again soon rather than sleep on it.
      deadline = now;
    }
    const delay = deadline === Infinity ? 1000 : Math.max(0, Math.min(1000, deadline - now));
    if (this.woken || this.stopRequested || this.failure !== null) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, delay);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
    this.wake = null;
    this.woken = false;
  }

  /** Closes every step, also after a failed or partial open; the first error wins. */
  private async close(): Promise<void> {
    let first: { error: unknown } | null = null;
    const attempt = async (fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (error) {
        first ??= { error };
      }
    };
    for (const node of this.operators) await attempt(() => node.operator.close?.());
    for (const node of this.sources) await attempt(() => node.source.close?.());
    for (const sink of this.sinks) await attempt(() => sink.closeSink());
    if (first !== null) throw (first as { error: unknown }).error;
  }
}
