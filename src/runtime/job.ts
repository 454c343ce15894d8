import { CheckpointCoordinator, type CheckpointRecord, type Participant } from '../checkpoint/coordinator.ts';
import { loadLatest } from '../checkpoint/manifest.ts';
import { instanceRestore, type JobSnapshot } from '../checkpoint/snapshot.ts';
import { type CheckpointStorage, FileCheckpointStorage } from '../checkpoint/storage.ts';
import type { LogicalGraph } from '../plan/graph.ts';
import { type PhysicalPlan, physicalPlan } from '../plan/physical.ts';
import { DEFAULT_MAX_PARALLELISM } from '../state/key-group.ts';
import { type Clock, systemClock } from '../time/clock.ts';
import { DEFAULT_BATCH_SIZE } from './batch.ts';
import { DeadLetterLog, errorMessage, type RecentDeadLetter } from './dead-letters.ts';
import { attribute, type Executor, type InstanceMetrics, withStep } from './executor.ts';
import { type Execution, InThreadExecution } from './execution.ts';
import { type View, ViewOperator } from '../operators/view.ts';
import { WorkerExecution } from './worker-execution.ts';
import type { RuntimeEnv, SavedSplit } from './env.ts';
import type { OperatorMetrics } from './operator.ts';
import type { OperatorNode } from './operator-node.ts';
import type { SourceContext, Split } from './source.ts';
import type { SourceNode } from './source-node.ts';
import { validateJobOptions } from './options.ts';

/** Options of a job run. */
export interface JobOptions {
  /** Records per batch (default 1024). */
  batchSize?: number;
  /** Number of key groups (default 128): the most instances a keyed step can ever run as. */
  maxParallelism?: number;
  /** Processing-time clock (default: the wall clock). */
  clock?: Clock;
  /**
   * What a failing user function does: `dead-letter` (default) sends the record, the step id and
   * the error to the dead-letter output and goes on; `fail` stops the job with the error.
   */
  errors?: 'dead-letter' | 'fail';
  /** Where warnings and dead letters without a consumer are logged (default stderr). */
  log?: (line: string) => void;
  /**
   * Durable checkpoints: a directory (or another storage). A job started with a directory that
   * holds a complete checkpoint resumes from the newest one, and says so on the log. Without it,
   * checkpoints only commit the sinks, and nothing survives the process.
   */
  checkpointDir?: string | CheckpointStorage;
  /** Milliseconds between checkpoints (default 1000; 0 turns periodic checkpoints off). */
  checkpointInterval?: number;
  /** Complete checkpoints kept in the directory (default 3); savepoints are never deleted. */
  retainedCheckpoints?: number;
  /** Consecutive failed checkpoints tolerated before the job fails (default: no limit). */
  toleratedCheckpointFailures?: number;
  /** A checkpoint not complete after this many ms fails (default 600 000). */
  checkpointTimeout?: number;
  /**
   * Instances of every step (default 1), all in this thread: exchanges, barrier alignment and
   * rescaling run as they do across worker threads. Steps may ask for fewer instances; a source
   * that cannot be split runs as one.
   */
  parallelism?: number;
  /**
   * Run the instances in worker threads (one per instance index), each loading this pipeline
   * module — the file whose default export is `definePipeline(...)` that built this pipeline —
   * with these arguments; every worker's plan must match this one (checked). Local sinks
   * (collect, callbacks) still run in this thread.
   */
  workers?: { readonly module: string | URL; readonly args?: readonly string[] };
  /**
   * Which of several jobs running one pipeline at once this is — a task of a cluster job
   * (`src/cluster/`), `t3` — handed to sinks as `SinkContext.scope`, so that identities they
   * hold outside the job (Kafka transactional ids) differ between the jobs.
   */
  scope?: string;
  /** Resume from this snapshot instead of the newest checkpoint in `checkpointDir`. */
  restoreFrom?: JobSnapshot;
  /**
   * Restoring a changed pipeline may drop state that no step declares any more (removed steps,
   * renamed states); without it such a restore is refused with the list of step ids.
   */
  allowDroppedState?: boolean;
  /**
   * Test hooks, for `spate/testing`'s crash injection ({@link JobTestHooks}); not for
   * production use. Jobs in this thread only.
   */
  testHooks?: JobTestHooks;
}

/**
 * Hooks through which the test kit (`runWithCrashes` in `spate/testing`) drives a job: it
 * counts polls, advances a virtual clock, triggers checkpoints and kills the job at chosen
 * points. They run from the job's loop only — once per iteration, never per record — and cost
 * nothing when absent.
 *
 * @example
 * let polls = 0;
 * const job = p.createJob({ testHooks: { betweenPolls: (j) => { if (++polls === 100) j.kill(new Error('simulated crash')); } } });
 */
export interface JobTestHooks {
  /**
   * Called at the top of every iteration of the run loop: between two polls of the sources,
   * before a pending checkpoint barrier is injected. It may trigger a checkpoint
   * ({@link Job.checkpoint}) or kill the job ({@link Job.kill}); an exception fails the job. A
   * returned promise is awaited before the loop goes on (the test kit yields to the event loop
   * there, so that checkpoint I/O in flight progresses at a steady pace per poll).
   */
  betweenPolls?(job: Job): void | Promise<void>;
}

/** Per-step counters and watermark, as reported by {@link Job.metrics}. */
export interface StepMetrics extends OperatorMetrics {
  readonly step: string;
  readonly kind: string;
  readonly watermark: number;
  readonly idle: boolean;
  /** How long this step's last checkpoint snapshot held up processing (ms). */
  readonly checkpointPauseMs: number;
  /** Time its instances waited for downstream, summed (ms); a rate of 1 per instance is fully backpressured. */
  readonly backpressureMs: number;
  /** Instances of the step. */
  readonly instances: number;
  /** Sources that keep counters of their own (`SourceReader.metrics`): them, summed over instances. */
  readonly source?: Readonly<Record<string, number>>;
}

/** Where a job is in its life. */
export type JobPhase = 'created' | 'opening' | 'restoring' | 'running' | 'stopping' | 'finished' | 'failed';

/** Everything a dashboard shows about a running job, as of now (see {@link Job.status}). */
export interface JobStatus {
  readonly phase: JobPhase;
  /** When `run` was called (epoch ms). */
  readonly startedAt: number;
  /** The checkpoint it resumed from, if any, and how long opening took (restoring state included). */
  readonly restoredFrom: { readonly id: number; readonly kind: string } | null;
  readonly openMs: number | null;
  readonly parallelism: number;
  /** Per step (instances summed), in plan order. */
  readonly steps: readonly StepMetrics[];
  /** Per step instance: watermarks of every input channel and split, backpressure, next due time. */
  readonly instances: readonly InstanceMetrics[];
  readonly checkpoints: readonly CheckpointRecord[];
  /** The latest dead letters of every step, oldest first. */
  readonly deadLetters: readonly RecentDeadLetter[];
  /** The error that failed the job. */
  readonly error?: string;
}

/** The outcome of a finished run. */
export interface JobResult {
  /** Wall-clock duration of the run in milliseconds, from the moment every step was open. */
  readonly durationMs: number;
  /** How long opening took (restoring state, starting workers, opening steps), in ms; not in `durationMs`. */
  readonly openMs: number;
  readonly metrics: readonly StepMetrics[];
  /** Dead letters reported by every step. */
  readonly deadLetters: number;
  /** The checkpoint history of the run. */
  readonly checkpoints: readonly CheckpointRecord[];
}

/** How to stop a running job. */
export interface StopOptions {
  /**
   * Take a final checkpoint first (default true): sources stop after it, sinks commit everything
   * written so far, and a restart from the checkpoint directory neither loses nor re-reads input.
   * False stops at once, leaving uncommitted output to the next run.
   */
  readonly checkpoint?: boolean;
}

/**
 * A running pipeline: it plans the steps (`parallelism` instances, chains, exchanges), restores
 * them from a checkpoint, runs them — all in this thread, or in worker threads when the job is
 * given its pipeline module (`workers`) — and drives checkpoints, stops and the end of input.
 *
 * Checkpoints follow the protocol that holds across threads and processes: the coordinator
 * triggers, each source injects a barrier between two polls, steps snapshot as the barrier aligns
 * on their inputs, state files are written off the data path, the manifest commits the checkpoint,
 * and only then do sinks commit.
 */
export class Job {
  readonly clock: Clock;
  readonly maxParallelism: number;
  readonly batchSize: number;
  readonly parallelism: number;
  /** The checkpoint the job resumed from, if any. */
  restoredFrom: JobSnapshot | null = null;
  readonly plan: PhysicalPlan;
  private readonly execution: Execution;
  private readonly env: RuntimeEnv;
  private readonly storage: CheckpointStorage | null;
  private coordinator: CheckpointCoordinator | null = null;
  private stopRequested = false;
  private opened = false;
  private phase: JobPhase = 'created';
  private startedAt = 0;
  private openMs: number | null = null;
  private interval: NodeJS.Timeout | null = null;
  /** A stop took its own final checkpoint. */
  private stoppedWithCheckpoint = false;
  /** Every source has ended or stopped: no more periodic checkpoints. */
  private ending = false;
  private closed = false;
  private failure: { error: unknown } | null = null;
  /** Set by {@link kill}: the job is dead and does nothing more. */
  private killed: { error: unknown } | null = null;
  private readonly log: (line: string) => void;

  constructor(
    readonly graph: LogicalGraph,
    readonly options: JobOptions = {},
  ) {
    validateJobOptions(options);
    graph.finalize();
    this.clock = options.clock ?? systemClock;
    this.maxParallelism = options.maxParallelism ?? DEFAULT_MAX_PARALLELISM;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    this.parallelism = options.parallelism ?? 1;
    if (this.parallelism > this.maxParallelism) {
      throw new RangeError(`parallelism ${this.parallelism} is more than maxParallelism ${this.maxParallelism} (the number of key groups)`);
    }
    this.log = options.log ?? ((line) => process.stderr.write(line + '\n'));
    const dir = options.checkpointDir;
    this.storage = dir === undefined ? null : typeof dir === 'string' ? new FileCheckpointStorage(dir) : dir;
    const collector = { add: (...args: Parameters<CheckpointCoordinator['add']>) => this.coordinator?.add(...args) };
    this.env = {
      clock: this.clock,
      maxParallelism: this.maxParallelism,
      batchSize: this.batchSize,
      failFast: options.errors === 'fail',
      log: this.log,
      deadLetterLog: new DeadLetterLog(this.log),
      snapshots: collector,
      allowDroppedState: options.allowDroppedState ?? false,
      warned: new Set(),
      ...(this.storage instanceof FileCheckpointStorage ? { checkpointDir: this.storage.location } : {}),
      ...(options.scope === undefined ? {} : { scope: options.scope }),
    };
    this.plan = physicalPlan(graph, this.parallelism);
    const workers = options.workers;
    if (workers !== undefined) {
      if (options.clock !== undefined) throw new Error('a job in worker threads runs on the wall clock: leave out the clock option');
      if (options.testHooks !== undefined) throw new Error('test hooks drive a job in this thread only: leave out the workers option');
      this.execution = new WorkerExecution(graph, this.plan, this.env, {
        module: workers.module.toString(),
        args: workers.args ?? [],
        storage: this.storage,
        coordinator: () => this.coordinator!,
        options: {
          batchSize: this.batchSize,
          maxParallelism: this.maxParallelism,
          parallelism: this.parallelism,
          errors: options.errors ?? 'dead-letter',
          allowDroppedState: options.allowDroppedState ?? false,
          ...(options.scope === undefined ? {} : { scope: options.scope }),
        },
      });
    } else {
      // (Read at every turn: a test may set or remove its hook while the job runs.)
      const hooks = options.testHooks;
      this.execution = new InThreadExecution(graph, this.plan, this.env, hooks === undefined ? undefined : () => hooks.betweenPolls?.(this));
    }
  }

  /** The in-thread executor (tests and the harness); fails for a job in worker threads. */
  private get local(): Executor {
    if (!(this.execution instanceof InThreadExecution) || this.execution.executor === null) {
      throw new Error('this job does not run in this thread (or is not open)');
    }
    return this.execution.executor;
  }

  /** Every source instance of an in-thread run (after `open`). */
  get sources(): readonly SourceNode[] {
    return this.local.sources;
  }

  /** Every operator instance of an in-thread run (after `open`). */
  get operators(): readonly OperatorNode[] {
    return this.local.operators;
  }

  /**
   * The snapshot to resume from: `restoreFrom`, else the newest valid checkpoint in the
   * checkpoint directory (damaged ones are skipped with a warning), else none.
   */
  private async findRestore(): Promise<JobSnapshot | null> {
    if (this.options.restoreFrom !== undefined) return this.options.restoreFrom;
    if (this.storage === null) return null;
    const latest = await loadLatest(this.storage, this.log);
    if (latest !== null) {
      const age = Math.max(0, Date.now() - latest.createdAt);
      this.log(`spate: resuming from ${latest.kind} ${latest.id} in ${this.storage.location} (taken ${formatAge(age)} ago)`);
    }
    return latest;
  }

  private coordinatorFor(firstId: number): CheckpointCoordinator {
    const coordinator = new CheckpointCoordinator({
      storage: this.storage,
      fingerprint: this.graph.fingerprint(),
      maxParallelism: this.maxParallelism,
      participants: this.graph.nodes.map((n) => ({ step: n.id, kind: n.kind, parallelism: this.plan.parallelismOf.get(n.id)! })),
      retain: this.options.retainedCheckpoints ?? 3,
      toleratedFailures: this.options.toleratedCheckpointFailures ?? Infinity,
      timeout: this.options.checkpointTimeout ?? 600_000,
      firstId,
      log: this.log,
      fail: (error) => this.fail(error),
    });
    // A killed job hears nothing more: a checkpoint whose writes were in flight when the process
    // died never tells its sinks to commit.
    coordinator.attach({
      inject: (barrier) => {
        if (this.killed === null) this.execution.inject(barrier, coordinator.captures(barrier.id));
      },
      complete: (id) => {
        if (this.killed === null) this.execution.complete(id);
      },
      abort: (id) => {
        if (this.killed === null) this.execution.abort(id);
      },
    });
    return coordinator;
  }

  /** Opens operators synchronously and leaves sources unopened: for the test harness, which feeds sources directly. */
  openSync(): void {
    if (this.opened) return;
    this.opened = true;
    if (!(this.execution instanceof InThreadExecution)) throw new Error('openSync: the job runs in worker threads');
    const restore = this.options.restoreFrom ?? null;
    if (restore !== null) checkRestorable(restore, this.graph, this.maxParallelism, this.options.allowDroppedState ?? false);
    this.restoredFrom = restore;
    const prepared = assignSplits(this.graph, this.plan, restore, this.storage !== null, this.clock, this.env.log);
    for (const [id, p] of prepared) if (p instanceof Promise) throw new Error(`openSync: source '${id}' lists its splits asynchronously`);
    this.coordinator = this.coordinatorFor((restore?.id ?? 0) + 1);
    this.execution.build(restore, prepared as ReadonlyMap<string, SavedSplit[][]>).openSync();
  }

  /** Opens every step, restoring state and source positions; called by `run`. */
  async open(): Promise<void> {
    if (this.opened) return;
    this.opened = true;
    this.phase = 'opening';
    const restore = await this.findRestore();
    if (restore !== null) checkRestorable(restore, this.graph, this.maxParallelism, this.options.allowDroppedState ?? false);
    this.restoredFrom = restore;
    if (restore !== null) this.phase = 'restoring';
    const prepared = assignSplits(this.graph, this.plan, restore, this.storage !== null, this.clock, this.env.log);
    const splits = new Map<string, SavedSplit[][]>();
    for (const [id, p] of prepared) splits.set(id, await p);
    this.coordinator = this.coordinatorFor(await CheckpointCoordinator.firstId(this.storage, restore?.id));
    await this.execution.open(restore, splits);
  }

  private fail(error: unknown): void {
    this.failure ??= { error };
    this.execution.fail(error);
  }

  /**
   * The job as of now — phase, per-step and per-instance metrics (watermarks of every input
   * channel and split, backpressure, the next due event time), checkpoint history and the latest
   * dead letters: what the dashboard of `spate run --ui` shows. Metrics of instances in worker
   * threads are at most 200 ms old.
   */
  status(): JobStatus {
    const instances = this.execution.metrics();
    const error = this.failure === null ? undefined : errorMessage(this.failure.error);
    return {
      phase: this.phase,
      startedAt: this.startedAt,
      restoredFrom: this.restoredFrom === null ? null : { id: this.restoredFrom.id, kind: this.restoredFrom.kind },
      openMs: this.openMs,
      parallelism: this.parallelism,
      steps: aggregateMetrics(this.graph, instances),
      instances,
      checkpoints: this.checkpoints(),
      deadLetters: this.env.deadLetterLog.recent.slice(),
      ...(error === undefined ? {} : { error }),
    };
  }

  /**
   * The view named `name` (`keyedStream.view(name)`), once the job is open — undefined while it
   * opens or restores (see {@link status} for which), or if there is no such view.
   */
  view<T = unknown>(name: string): View<T> | undefined {
    if (this.phase === 'created' || this.phase === 'opening' || this.phase === 'restoring') return undefined;
    for (const node of this.execution.mainThreadOperators()) {
      if (node.operator instanceof ViewOperator && node.operator.name === name) return node.operator as ViewOperator<T>;
    }
    return undefined;
  }

  /** The names of the pipeline's views. */
  viewNames(): string[] {
    const names: string[] = [];
    for (const n of this.graph.nodes) if (n.spec.type === 'operator' && n.spec.view !== undefined) names.push(n.spec.view);
    return names;
  }

  /** Runs until every source ends (bounded input) or {@link stop} is called. */
  async run(): Promise<JobResult> {
    const opening = performance.now();
    this.startedAt = Date.now();
    let started = opening;
    try {
      await this.open();
      if (this.killed !== null) throw this.killed.error;
      started = performance.now();
      this.openMs = started - opening;
      this.phase = 'running';
      const every = this.options.checkpointInterval ?? 1000;
      if (every > 0) {
        this.interval = setInterval(() => {
          if (this.coordinator!.busy || this.stopRequested || this.ending) return;
          this.coordinator!.trigger('checkpoint').catch(() => undefined); // logged by the coordinator
        }, every);
      }
      // Every source has ended: one last checkpoint commits what the sinks still hold, then the
      // job ends.
      this.execution.onEnded = () => this.finish(!this.stoppedWithCheckpoint);
      if (this.stopRequested && !this.stoppedWithCheckpoint) {
        this.execution.halt();
        this.execution.finish();
      }
      await this.execution.run();
      if (this.failure !== null) throw this.failure.error;
    } catch (error) {
      this.phase = 'failed';
      this.failure ??= { error };
      // A killed job closes nothing: a process that dies flushes nothing either.
      if (this.killed !== null) throw this.killed.error;
      // The job's own failure is what the caller needs to see, not a failure to close after it.
      await this.close().catch(() => undefined);
      throw error;
    }
    await this.close();
    this.phase = 'finished';
    return {
      durationMs: performance.now() - started,
      openMs: started - opening,
      metrics: this.metrics(),
      deadLetters: this.deadLetterCount(),
      checkpoints: this.checkpoints(),
    };
  }

  /** Ends the run: after a last checkpoint if `checkpoint`, once any checkpoint in flight is done. */
  private finish(checkpoint: boolean): void {
    this.ending = true;
    this.phase = 'stopping';
    const ending = async (): Promise<void> => {
      while (this.coordinator!.busy) await new Promise((r) => setTimeout(r, 1));
      if (checkpoint) await this.coordinator!.trigger('checkpoint');
      this.execution.finish();
    };
    ending().catch((error: unknown) => this.fail(error));
  }

  /**
   * Stops the job. By default it first takes a final checkpoint (nothing more is read, sources
   * inject its barrier and stop, sinks commit); `done` resolves once it is committed and every
   * step is closed.
   */
  stop(options: StopOptions = {}): void {
    if (this.stopRequested) return;
    this.stopRequested = true;
    if (this.phase === 'running') this.phase = 'stopping';
    if (!this.opened || this.coordinator === null) return; // run() halts at once
    if (options.checkpoint !== false && !this.execution.quiet) {
      this.execution.pause();
      this.stoppedWithCheckpoint = true;
      this.ending = true;
      const stopping = async (): Promise<void> => {
        while (this.coordinator!.busy) await new Promise((r) => setTimeout(r, 1));
        await this.coordinator!.trigger('checkpoint', { stop: true });
        this.execution.finish();
      };
      stopping().catch((error: unknown) => this.fail(error));
    } else {
      this.execution.halt();
      this.execution.finish();
    }
  }

  /**
   * Takes a checkpoint now, as the periodic timer would (with a checkpoint directory it is
   * written there and counts for recovery and retention); resolves with its record once it is
   * complete, rejects if it fails.
   */
  async checkpoint(): Promise<CheckpointRecord> {
    await this.takeCheckpoint('checkpoint', false);
    return this.checkpoints().filter((c) => c.kind === 'checkpoint').pop()!;
  }

  /** Whether a checkpoint (or savepoint) is in progress. */
  get checkpointing(): boolean {
    return this.coordinator?.busy ?? false;
  }

  /**
   * Test hook: simulates the process dying at this instant (`kill -9`). The run loop stops at
   * its next step — no final checkpoint, no sink commit, no `close` of any step, no flush — and
   * `run()` rejects with `reason` (if it is past `open`; a job killed while opening never
   * settles, as a dead process never answers). A checkpoint in flight never completes. Work
   * already under way in promises (a storage write, a sink commit) cannot be recalled: the test
   * kit fences its storage and sinks so that they drop whatever a killed job still does.
   * Used by `runWithCrashes` in `spate/testing`.
   */
  kill(reason: Error): void {
    if (this.killed !== null) return;
    this.killed = { error: reason };
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
    this.execution.fail(reason);
  }

  /** Whether {@link kill} was called. */
  get dead(): boolean {
    return this.killed !== null;
  }

  /**
   * Takes a checkpoint now and returns the job's state in memory — a consistent cut by barriers,
   * whatever calls it (a sink, a timer, another task). Also written to the checkpoint directory,
   * as a savepoint, if the job has one.
   */
  snapshot(): Promise<JobSnapshot> {
    return this.takeCheckpoint('savepoint', true) as Promise<JobSnapshot>;
  }

  /** Takes a savepoint now (kept until deleted by hand); resolves when it is complete. */
  async savepoint(): Promise<CheckpointRecord> {
    await this.takeCheckpoint('savepoint', false);
    return this.checkpoints().filter((c) => c.kind === 'savepoint').pop()!;
  }

  private async takeCheckpoint(kind: 'checkpoint' | 'savepoint', capture: boolean): Promise<JobSnapshot | null> {
    // A job that is still opening takes the checkpoint once it runs.
    while (this.coordinator === null || this.coordinator.busy) {
      if (this.failure !== null || this.closed) throw new Error('the job is not running');
      await new Promise((r) => setTimeout(r, 1));
    }
    if (this.ending) throw new Error('the job is ending: its final checkpoint is the last one');
    return this.coordinator.trigger(kind, { capture });
  }

  /** The checkpoint history of this run, oldest first. */
  checkpoints(): CheckpointRecord[] {
    return this.coordinator?.history.slice() ?? [];
  }

  /** Dead letters reported by every step. */
  deadLetterCount(): number {
    return this.execution.metrics().reduce((n, m) => n + m.deadLetters, 0);
  }

  /** Current counters of every step (summed over its instances), in plan order. */
  metrics(): StepMetrics[] {
    return aggregateMetrics(this.graph, this.execution.metrics());
  }

  /** The runtime node of a step's instance, in an in-thread run (tests and the harness). */
  node(stepId: string, instance = 0): SourceNode | OperatorNode {
    const node = this.local.nodes.get(stepId)?.[instance];
    if (node === undefined) throw new Error(`no step '${stepId}' (instance ${instance})`);
    return node;
  }

  /** Fires processing-time callbacks that are due, in an in-thread run. */
  fireProcessingTime(now: number): void {
    this.local.fireProcessingTime(now);
  }

  /**
   * Takes a checkpoint synchronously, in memory: for the test harness, whose sources are fed by
   * hand (there is nothing in flight between calls). Fails if a step pre-commits asynchronously.
   */
  snapshotNow(): JobSnapshot {
    if (this.coordinator === null) throw new Error('the job is not open');
    let error: unknown = null;
    const before = this.coordinator.lastCaptured;
    this.coordinator.trigger('savepoint', { capture: true }).catch((e: unknown) => (error = e));
    this.local.injectPendingBarrier();
    if (error !== null) throw error;
    const result = this.coordinator.lastCaptured;
    if (result === null || result === before) throw new Error('snapshotNow: a step snapshots asynchronously');
    return result;
  }

  /** Closes every step, also after a failed or partial open; the first error wins. */
  private async close(): Promise<void> {
    this.closed = true;
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
    this.coordinator?.shutdown();
    await this.execution.close();
  }
}

/** Per-step metrics: instances summed, the lowest watermark, idle only if every instance is. */
export function aggregateMetrics(graph: LogicalGraph, instances: readonly InstanceMetrics[]): StepMetrics[] {
  const out: StepMetrics[] = [];
  for (const node of graph.nodes) {
    const mine = instances.filter((m) => m.step === node.id);
    const live = mine.filter((m) => m.instance >= 0);
    out.push({
      step: node.id,
      kind: node.kind,
      recordsIn: sum(mine, 'recordsIn'),
      recordsOut: sum(mine, 'recordsOut'),
      deadLetters: sum(mine, 'deadLetters'),
      lateRecords: sum(mine, 'lateRecords'),
      lateDropped: sum(mine, 'lateDropped'),
      duplicatesDropped: sum(mine, 'duplicatesDropped'),
      keysBeyondMemoryBound: sum(mine, 'keysBeyondMemoryBound'),
      watermark: live.length === 0 ? -Infinity : Math.min(...live.map((m) => m.watermark)),
      idle: live.length > 0 && live.every((m) => m.idle),
      checkpointPauseMs: live.length === 0 ? 0 : Math.max(...live.map((m) => m.checkpointPauseMs)),
      backpressureMs: live.reduce((n, m) => n + m.backpressureMs, 0),
      instances: live.length,
      ...sourceMetrics(mine),
    });
  }
  return out;
}

/** The sources' own counters of a step's instances, summed by name; nothing if none keeps any. */
function sourceMetrics(list: readonly InstanceMetrics[]): { source?: Record<string, number> } {
  let out: Record<string, number> | undefined;
  for (const m of list) {
    if (m.source === undefined) continue;
    out ??= {};
    for (const [name, value] of Object.entries(m.source)) out[name] = (out[name] ?? 0) + value;
  }
  return out === undefined ? {} : { source: out };
}

function sum(list: readonly InstanceMetrics[], field: keyof OperatorMetrics): number {
  let n = 0;
  for (const m of list) n += m[field];
  return n;
}

/**
 * The splits each instance of each source reads: on restore, the checkpoint's positions cut for
 * the new parallelism; on a fresh start, the source's splits (maybe listed asynchronously) dealt
 * round-robin.
 */
export function assignSplits(
  graph: LogicalGraph,
  plan: PhysicalPlan,
  restore: JobSnapshot | null,
  durable: boolean,
  clock: Clock,
  log?: (line: string) => void,
): Map<string, SavedSplit[][] | Promise<SavedSplit[][]>> {
  const out = new Map<string, SavedSplit[][] | Promise<SavedSplit[][]>>();
  for (const step of graph.nodes) {
    const spec = step.spec;
    if (spec.type !== 'source') continue;
    const p = plan.parallelismOf.get(step.id)!;
    const source = withStep(step.id, () => spec.create());
    if (durable && source.replayable === false) {
      throw new Error(`source '${step.id}' cannot replay its input, so it cannot run with durable checkpoints (exactly-once); use a replayable source or run without a checkpoint directory`);
    }
    const saved = restore === null ? null : restore.steps.get(step.id);
    if (saved !== null && saved !== undefined && saved.instances.some((i) => i.splits !== undefined)) {
      out.set(step.id, Array.from({ length: p }, (_, i) => [...(instanceRestore(restore!, step.id, i, p)?.splits ?? [])]));
      continue;
    }
    const ctx: SourceContext = {
      stepId: step.id,
      clock,
      instance: 0,
      parallelism: p,
      restoredCheckpoint: restore?.id,
      ...(log === undefined ? {} : { log: (line: string) => log(`spate: step '${step.id}': ${line}`) }),
    };
    const deal = (found: readonly Split[]): SavedSplit[][] => {
      const per: SavedSplit[][] = Array.from({ length: p }, () => []);
      found.forEach((s, k) => per[k % p]!.push({ ...s, maxTime: -Infinity }));
      return per;
    };
    const found = withStep(step.id, () => source.splits(ctx));
    out.set(step.id, found instanceof Promise ? attribute(step.id, found).then(deal) : deal(found));
  }
  return out;
}

/** Refuses a snapshot that cannot be restored into `graph` (other key groups, state of missing steps unless allowed). */
export function checkRestorable(restore: JobSnapshot, graph: LogicalGraph, maxParallelism: number, allowDropped: boolean): void {
  if (restore.maxParallelism !== maxParallelism) {
    throw new Error(`the checkpoint was taken with maxParallelism ${restore.maxParallelism}; this job has ${maxParallelism} (key groups cannot change)`);
  }
  if (allowDropped) return;
  const orphans = [...restore.steps].filter(([id, s]) => !graph.nodes.some((n) => n.id === id) && hasState(s)).map(([id]) => id);
  if (orphans.length > 0) {
    throw new Error(
      `the checkpoint has state for steps this pipeline does not have: ${orphans.join(', ')} ` +
        `(were they renamed? give stateful steps stable ids; or restore with allowDroppedState to drop it)`,
    );
  }
}

/** Whether a step snapshot holds anything that a missing step would lose. */
function hasState(s: { tables: Readonly<Record<string, number>>; instances: ReadonlyArray<{ operator?: unknown; splits?: unknown }> }): boolean {
  return Object.keys(s.tables).length > 0 || s.instances.some((i) => i.operator !== undefined || (i.splits !== undefined && (i.splits as unknown[]).length > 0));
}

function formatAge(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

