import type { JobSnapshot } from '../checkpoint/snapshot.ts';
import type { LogicalGraph } from '../plan/graph.ts';
import type { PhysicalPlan } from '../plan/physical.ts';
import type { Barrier } from './barrier.ts';
import type { RuntimeEnv, SavedSplit } from './env.ts';
import { Executor, type InstanceMetrics } from './executor.ts';
import type { OperatorNode } from './operator-node.ts';

/**
 * Where and how a job's instances run: all in this thread, or in worker threads. The job drives
 * any execution the same way (checkpoints, stop, end); only the execution knows its threads.
 */
export interface Execution {
  /** Builds and opens every instance: state restored from `restore`, sources given their splits. */
  open(restore: JobSnapshot | null, splits: ReadonlyMap<string, SavedSplit[][]>): Promise<void>;
  /** Checkpoint `barrier.id` starts: sources inject the barrier between two polls. */
  inject(barrier: Barrier, capture: boolean): void;
  complete(id: number): void;
  abort(id: number): void;
  /** No source is polled any more (a stop is under way); data in flight still moves. */
  pause(): void;
  /** Sources stop now (a stop without checkpoint). */
  halt(): void;
  /** The run may end once nothing is left to do (the last checkpoint is done). */
  finish(): void;
  fail(error: unknown): void;
  /** Called once every instance has ended (bounded input consumed). */
  onEnded: () => void;
  /** Whether every source has ended or stopped. */
  readonly quiet: boolean;
  /** Runs until finished or failed. */
  run(): Promise<void>;
  /** Counters of every instance. */
  metrics(): InstanceMetrics[];
  /** The operator instances that run in the thread that built the pipeline (views, local sinks). */
  mainThreadOperators(): readonly OperatorNode[];
  close(): Promise<void>;
}

/** Every instance in this thread, on one {@link Executor}. */
export class InThreadExecution implements Execution {
  executor: Executor | null = null;
  onEnded: () => void = () => undefined;

  constructor(
    private readonly graph: LogicalGraph,
    private readonly plan: PhysicalPlan,
    private readonly env: RuntimeEnv,
    /** The test kit's hook, called at the top of every turn of the loop. */
    private readonly betweenPolls?: () => void | Promise<void>,
  ) {}

  /** Builds every instance (synchronously). */
  build(restore: JobSnapshot | null, splits: ReadonlyMap<string, SavedSplit[][]>): Executor {
    const executor = new Executor({
      graph: this.graph,
      plan: this.plan,
      env: this.env,
      hosts: () => true,
      channels: null,
      restore,
      splits: (step, instance) => splits.get(step)![instance] ?? [],
      betweenPolls: this.betweenPolls,
    });
    executor.build();
    executor.onEnded = () => this.onEnded();
    this.executor = executor;
    return executor;
  }

  async open(restore: JobSnapshot | null, splits: ReadonlyMap<string, SavedSplit[][]>): Promise<void> {
    await this.build(restore, splits).open();
  }

  inject(barrier: Barrier): void {
    this.executor!.injectBarrier(barrier);
  }

  complete(id: number): void {
    this.executor!.complete(id);
  }

  abort(id: number): void {
    this.executor!.abort(id);
  }

  pause(): void {
    this.executor?.pause();
  }

  halt(): void {
    this.executor?.halt();
  }

  finish(): void {
    this.executor?.finish();
  }

  fail(error: unknown): void {
    this.executor?.fail(error);
  }

  get quiet(): boolean {
    return this.executor?.quiet ?? true;
  }

  run(): Promise<void> {
    return this.executor!.run();
  }

  metrics(): InstanceMetrics[] {
    return this.executor?.metrics() ?? [];
  }

  mainThreadOperators(): readonly OperatorNode[] {
    return this.executor?.operators ?? [];
  }

  async close(): Promise<void> {
    await this.executor?.close();
  }
}
