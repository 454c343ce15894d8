import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { CheckpointCoordinator, type CheckpointRecord, type Participant } from '../checkpoint/coordinator.ts';
import { loadLatest } from '../checkpoint/manifest.ts';
import { instanceRestore, type JobSnapshot } from '../checkpoint/snapshot.ts';
import { type CheckpointStorage, FileCheckpointStorage } from '../checkpoint/storage.ts';
import type { LogicalGraph, StepNode } from '../plan/graph.ts';
import { DEFAULT_MAX_PARALLELISM } from '../state/key-group.ts';
import { type Clock, systemClock } from '../time/clock.ts';
import type { Barrier } from './barrier.ts';
import { DEFAULT_BATCH_SIZE } from './batch.ts';
import type { Collector } from './collector.ts';
import { DeadLetterLog, errorMessage, StepFailure } from './dead-letters.ts';
import type { RuntimeEnv } from './env.ts';
import type { OperatorMetrics } from './operator.ts';
import { OperatorNode } from './operator-node.ts';
import { SinkOperator } from './sink-operator.ts';
import type { SourceContext } from './source.ts';
import { SourceNode } from './source-node.ts';
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
  /** Resume from this snapshot instead of the newest checkpoint in `checkpointDir`. */
  restoreFrom?: JobSnapshot;
  /**
   * Restoring a changed pipeline may drop state that no step declares any more (removed steps,
   * renamed states); without it such a restore is refused with the list of step ids.
   */
  allowDroppedState?: boolean;
  /**
   * Test hooks, for `spate/testing`'s crash injection ({@link JobTestHooks}); not for
   * production use.
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
   * ({@link LocalJob.checkpoint}) or kill the job ({@link LocalJob.kill}); an exception fails
   * the job. A returned promise is awaited before the loop goes on (the test kit yields to the
   * event loop there, so that checkpoint I/O in flight progresses at a steady pace per poll).
   */
  betweenPolls?(job: LocalJob): void | Promise<void>;
}

/** Per-step counters and watermark, as reported by {@link LocalJob.metrics}. */
export interface StepMetrics extends OperatorMetrics {
  readonly step: string;
  readonly kind: string;
  readonly watermark: number;
  readonly idle: boolean;
  /** How long this step's last checkpoint snapshot held up processing (ms). */
  readonly checkpointPauseMs: number;
}

/** The outcome of a finished run. */
export interface JobResult {
  /** Wall-clock duration of the run in milliseconds. */
  readonly durationMs: number;
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
 * Runs a pipeline's steps in this thread: one instance per step, wired by synchronous calls, so
 * a batch travels the whole graph before the next one is polled. Sources are polled in turn; the
 * loop awaits only when no source has data, to relieve sink backpressure, or every few
 * milliseconds to let I/O and timers run.
 *
 * Checkpoints follow the protocol that also holds across threads and processes: the coordinator
 * triggers, each source injects a barrier between two polls, steps snapshot as the barrier aligns
 * on their inputs, state files are written off the data path, the manifest commits the checkpoint,
 * and only then do sinks commit.
 */
export class LocalJob {
  readonly clock: Clock;
  readonly maxParallelism: number;
  readonly batchSize: number;
  readonly sources: SourceNode[] = [];
  readonly operators: OperatorNode[] = [];
  /** The checkpoint the job resumed from, if any. */
  restoredFrom: JobSnapshot | null = null;
  private readonly byStep = new Map<string, SourceNode | OperatorNode>();
  private readonly kinds = new Map<string, string>();
  private readonly env: RuntimeEnv;
  private readonly storage: CheckpointStorage | null;
  private coordinator: CheckpointCoordinator | null = null;
  private stopRequested = false;
  private failure: { error: unknown } | null = null;
  /** Set by {@link kill}: the job is dead and does nothing more. */
  private killed: { error: unknown } | null = null;
  private wake: (() => void) | null = null;
  /** Set by a wake-up that may have come before the loop went to sleep. */
  private woken = false;
  private opened = false;
  private built = false;
  private pendingBarrier: Barrier | null = null;
  private interval: NodeJS.Timeout | null = null;
  private readonly completions = new Set<Promise<void>>();
  /** Set once the run's last checkpoint is done (or skipped): the loop may end. */
  private finalDone = false;
  /** A stop took its own final checkpoint. */
  private stoppedWithCheckpoint = false;
  /** Every source has ended or stopped: no more periodic checkpoints. */
  private ending = false;
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
    };
  }

  /** Steps and instances that report to each checkpoint. */
  private participants(): Participant[] {
    return this.graph.nodes.map((n) => ({ step: n.id, kind: n.kind, parallelism: 1 }));
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

  /** Builds one runtime node per step, restored from `restore`, and wires them. */
  private async build(restore: JobSnapshot | null, sync: boolean): Promise<void> {
    if (this.built) return;
    this.built = true;
    this.restoredFrom = restore;
    if (restore !== null) this.checkRestorable(restore);
    for (const step of this.graph.nodes) {
      this.kinds.set(step.id, step.kind);
      const spec = step.spec;
      const r = restore === null ? null : instanceRestore(restore, step.id, 0, 1);
      const id = { stepId: step.id, kind: step.kind, instance: 0, parallelism: 1 };
      if (spec.type === 'source') {
        const source = spec.create();
        if (this.storage !== null && source.replayable === false) {
          throw new Error(`source '${step.id}' cannot replay its input, so it cannot run with durable checkpoints (exactly-once); use a replayable source or run without a checkpoint directory`);
        }
        const ctx: SourceContext = { stepId: step.id, clock: this.clock, instance: 0, parallelism: 1, restoredCheckpoint: restore?.id };
        let splits = r?.splits ?? null;
        if (splits === null) {
          const found = source.splits(ctx);
          if (found instanceof Promise) {
            if (sync) throw new Error(`source '${step.id}' lists its splits asynchronously`);
            splits = (await withStep(step.id, found)).map((s) => ({ ...s, maxTime: -Infinity }));
          } else splits = found.map((s) => ({ ...s, maxTime: -Infinity }));
        }
        const node = new SourceNode(id, source, source.createReader(ctx), splits, spec.options, this.env, r);
        this.sources.push(node);
        this.byStep.set(step.id, node);
      } else {
        const operator = spec.type === 'sink' ? new SinkOperator(spec.create()) : spec.create();
        const node = new OperatorNode(id, operator, step.inputs.map((_, i) => i), this.env, r);
        this.operators.push(node);
        this.byStep.set(step.id, node);
      }
    }
    for (const step of this.graph.nodes) {
      const target = this.byStep.get(step.id)!;
      step.inputs.forEach((edge, channel) => {
        const from = this.byStep.get(edge.from.id)!;
        const port = from instanceof OperatorNode ? from.port(edge.port) : from.ports.get(edge.port);
        if (port === undefined) throw new Error(`step '${edge.from.id}' has no output '${edge.port}'`);
        port.connect(target as OperatorNode, channel);
      });
    }
  }

  /** Refuses a snapshot holding state of steps this pipeline does not have (unless allowed). */
  private checkRestorable(restore: JobSnapshot): void {
    if (restore.maxParallelism !== this.maxParallelism) {
      throw new Error(`the checkpoint was taken with maxParallelism ${restore.maxParallelism}; this job has ${this.maxParallelism} (key groups cannot change)`);
    }
    if (this.options.allowDroppedState) return;
    const orphans = [...restore.steps]
      .filter(([id, s]) => !this.graph.nodes.some((n) => n.id === id) && hasState(s))
      .map(([id]) => id);
    if (orphans.length > 0) {
      throw new Error(
        `the checkpoint has state for steps this pipeline does not have: ${orphans.join(', ')} ` +
          `(were they renamed? give stateful steps stable ids; or restore with allowDroppedState to drop it)`,
      );
    }
  }

  /** Opens operators synchronously and leaves sources unopened: for the test harness, which feeds sources directly. */
  openSync(): void {
    if (this.opened) return;
    this.opened = true;
    void this.build(this.options.restoreFrom ?? null, true);
    for (const node of this.operators) {
      if (withStepSync(node.stepId, () => node.open()) instanceof Promise) throw new Error(`openSync: step '${node.stepId}' opens asynchronously`);
    }
    this.announceRestoredWatermarks();
    this.coordinator = new CheckpointCoordinator({
      storage: null,
      fingerprint: this.graph.fingerprint(),
      maxParallelism: this.maxParallelism,
      participants: this.participants(),
      retain: 0,
      toleratedFailures: Infinity,
      timeout: 600_000,
      firstId: (this.restoredFrom?.id ?? 0) + 1,
      log: this.log,
      fail: (error) => this.fail(error),
    });
    this.coordinator.attach(this.target());
  }

  /** Opens every step, restoring state and source positions; called by `run`. */
  async open(): Promise<void> {
    if (this.opened) return;
    this.opened = true;
    const restore = await this.findRestore();
    await this.build(restore, false);
    this.coordinator = new CheckpointCoordinator({
      storage: this.storage,
      fingerprint: this.graph.fingerprint(),
      maxParallelism: this.maxParallelism,
      participants: this.participants(),
      retain: this.options.retainedCheckpoints ?? 3,
      toleratedFailures: this.options.toleratedCheckpointFailures ?? Infinity,
      timeout: this.options.checkpointTimeout ?? 600_000,
      firstId: await CheckpointCoordinator.firstId(this.storage, restore?.id),
      log: this.log,
      fail: (error) => this.fail(error),
    });
    this.coordinator.attach(this.target());
    const opening: Array<Promise<void>> = [];
    for (const node of this.operators) {
      const r = withStepSync(node.stepId, () => node.open());
      if (r instanceof Promise) opening.push(withStep(node.stepId, r));
    }
    await Promise.all(opening);
    this.announceRestoredWatermarks();
    for (const node of this.sources) await withStep(node.stepId, Promise.resolve(node.reader.open(node.splits)));
  }

  /**
   * After a restore, every step sends its restored watermark downstream before any input flows:
   * the watermark of a step with several inputs is the minimum over them, and its input channels
   * start from scratch, so without this it would stay behind until every input had advanced past
   * its old watermark — and judge late records differently than the run that was interrupted.
   */
  private announceRestoredWatermarks(): void {
    if (this.restoredFrom === null) return;
    for (const node of this.sources) withStepSync(node.stepId, () => node.announceWatermark());
    for (const node of this.operators) withStepSync(node.stepId, () => node.announceWatermark());
  }

  /** What the coordinator drives. */
  private target(): { inject(b: Barrier): void; complete(id: number): void; abort(id: number): void } {
    // A killed job hears nothing more: a checkpoint whose writes were in flight when the process
    // died never tells its sinks to commit.
    return {
      inject: (barrier) => {
        if (this.killed !== null) return;
        this.pendingBarrier = barrier;
        this.wakeUp();
      },
      complete: (id) => {
        if (this.killed === null) this.notifyComplete(id);
      },
      abort: (id) => {
        if (this.killed !== null) return;
        for (const node of this.operators) node.operator.notifyCheckpointAborted?.(id);
      },
    };
  }

  /** Injects a pending barrier at every source, and snapshots steps that have ended. */
  private injectPendingBarrier(): void {
    const barrier = this.pendingBarrier;
    if (barrier === null) return;
    this.pendingBarrier = null;
    for (const node of this.sources) withStepSync(node.stepId, () => node.injectBarrier(barrier));
    // Ended steps receive no barrier: they have no input left, so their state is final.
    for (const node of this.operators) if (node.ended) withStepSync(node.stepId, () => node.snapshot(barrier));
  }

  private notifyComplete(id: number): void {
    const track = (step: string, p: void | Promise<void>): void => {
      if (!(p instanceof Promise)) return;
      const tracked = withStep(step, p).catch((error: unknown) => this.fail(error));
      this.completions.add(tracked);
      void tracked.finally(() => this.completions.delete(tracked));
    };
    for (const node of this.operators) track(node.stepId, withStepSync(node.stepId, () => node.operator.notifyCheckpointComplete?.(id)));
    for (const node of this.sources) track(node.stepId, withStepSync(node.stepId, () => node.reader.notifyCheckpointComplete?.(id)));
  }

  private fail(error: unknown): void {
    this.failure ??= { error };
    this.wakeUp();
  }

  /** Runs until every source ends (bounded input) or {@link stop} is called. */
  async run(): Promise<JobResult> {
    const started = performance.now();
    let lastYield = performance.now();
    try {
      await this.open();
      if (this.killed !== null) throw this.killed.error;
      const every = this.options.checkpointInterval ?? 1000;
      if (every > 0) {
        this.interval = setInterval(() => {
          if (this.coordinator!.busy || this.stopRequested || this.ending) return;
          this.coordinator!.trigger('checkpoint').catch(() => undefined); // logged by the coordinator
        }, every);
      }
      let final: Promise<unknown> | null = null;
      const hooks = this.options.testHooks;
      while (this.failure === null && this.killed === null) {
        if (hooks?.betweenPolls !== undefined) {
          const pause = hooks.betweenPolls(this);
          if (pause !== undefined) await pause;
          if (this.killed !== null || this.failure !== null) break;
        }
        this.injectPendingBarrier();
        let progressed = false;
        let live = 0;
        for (const node of this.sources) {
          if (node.ended || node.stopped) continue;
          if (node.waiting === null) {
            const status = withStepSync(node.stepId, () => node.poll(this.batchSize));
            if (status === 'more') progressed = true;
            else if (status === 'wait') this.awaitSource(node);
          }
          if (!node.ended && !node.stopped) live++;
        }
        if (live === 0) {
          // Every source has ended (or stopped after a final barrier): one last checkpoint commits
          // what the sinks still hold, then the job ends.
          this.ending = true;
          final ??= this.finalCheckpoint();
          if (this.finalDone) break;
        }
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
      // (The loop's condition makes TypeScript narrow these to null; a hook or a wake-up set them.)
      const killed = this.killed as { error: unknown } | null;
      if (killed !== null) throw killed.error;
      if (this.failure !== null) throw this.failure.error;
      await Promise.all(this.completions);
      if (this.failure !== null) throw (this.failure as { error: unknown }).error;
    } catch (error) {
      // A killed job closes nothing: a process that dies flushes nothing either.
      if (this.killed !== null) throw this.killed.error;
      // The job's own failure is what the caller needs to see, not a failure to close after it.
      await this.close().catch(() => undefined);
      throw error;
    }
    await this.close();
    return {
      durationMs: performance.now() - started,
      metrics: this.metrics(),
      deadLetters: this.deadLetterCount(),
      checkpoints: this.checkpoints(),
    };
  }

  /** The last checkpoint of a run that ends: waits for a stop checkpoint in flight, or takes one. */
  private async finalCheckpoint(): Promise<void> {
    try {
      while (this.coordinator!.busy) await new Promise((r) => setTimeout(r, 1));
      if (!this.stoppedWithCheckpoint) await this.coordinator!.trigger('checkpoint');
    } catch (error) {
      this.fail(error);
    } finally {
      this.finalDone = true;
      this.wakeUp();
    }
  }

  /**
   * Stops the job. By default it first takes a final checkpoint (sources stop after injecting
   * its barrier, sinks commit); `done` resolves once it is committed and every step is closed.
   */
  stop(options: StopOptions = {}): void {
    if (this.stopRequested) return;
    this.stopRequested = true;
    if (options.checkpoint !== false && this.coordinator !== null && this.sources.some((s) => !s.ended)) {
      this.stoppedWithCheckpoint = true;
      const stopping = async (): Promise<void> => {
        while (this.coordinator!.busy) await new Promise((r) => setTimeout(r, 1));
        await this.coordinator!.trigger('checkpoint', { stop: true });
      };
      stopping().catch((error: unknown) => this.fail(error));
    } else {
      for (const node of this.sources) node.stopped = true;
      this.finalDone = true;
    }
    this.wakeUp();
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
    this.wakeUp();
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
    if (this.coordinator === null) throw new Error('the job is not running');
    while (this.coordinator.busy) await new Promise((r) => setTimeout(r, 1));
    return this.coordinator.trigger(kind, { capture });
  }

  /** The checkpoint history of this run, oldest first. */
  checkpoints(): CheckpointRecord[] {
    return this.coordinator?.history.slice() ?? [];
  }

  /** Ends the current sleep, or makes the next one return at once (no lost wake-ups). */
  private wakeUp(): void {
    this.woken = true;
    this.wake?.();
  }

  /** Dead letters reported by every step. */
  deadLetterCount(): number {
    let n = 0;
    for (const node of this.byStep.values()) n += node.metrics.deadLetters;
    return n;
  }

  /** Current counters of every step, in plan order. */
  metrics(): StepMetrics[] {
    const out: StepMetrics[] = [];
    for (const [step, node] of this.byStep) {
      out.push({
        step,
        kind: this.kinds.get(step)!,
        ...node.metrics,
        watermark: node instanceof SourceNode ? node.currentWatermark : node.watermark,
        idle: node.idle,
        checkpointPauseMs: node.lastSnapshotPause,
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
    for (const node of this.operators) withStepSync(node.stepId, () => node.firePendingProcessingTime(now));
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
    this.injectPendingBarrier();
    if (error !== null) throw error;
    const result = this.coordinator.lastCaptured;
    if (result === null || result === before) throw new Error('snapshotNow: a step snapshots asynchronously');
    return result;
  }

  private awaitSource(node: SourceNode): void {
    const ready = node.reader.ready?.() ?? Promise.resolve();
    node.waiting = ready.then(
      () => {
        node.waiting = null;
        this.wakeUp();
      },
      // A source that fails while reading fails the job (from the run loop).
      (error: unknown) => this.fail(new StepFailure(node.stepId, undefined, error)),
    );
  }

  private async relieveBackpressure(): Promise<void> {
    for (const node of this.operators) {
      const pending = node.operator.backpressure?.();
      if (pending !== undefined) await Promise.race([pending, this.failed()]);
    }
  }

  /** Resolves when the job fails (so that waits on a sink never outlive a failure). */
  private failed(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.failure !== null || this.killed !== null || this.stopRequested) resolve();
        else setTimeout(check, 50).unref();
      };
      check();
    });
  }

  /** Waits until a source is ready, a timer is due, a source may turn idle, a barrier is due, or stop. */
  private async sleep(now: number): Promise<void> {
    let deadline = Infinity;
    for (const node of this.operators) if (node.nextProcessingTime < deadline) deadline = node.nextProcessingTime;
    for (const node of this.sources) deadline = Math.min(deadline, node.idleDeadline());
    if (this.clock !== systemClock && deadline !== Infinity) {
      // A virtual clock does not move by itself: poll again soon rather than sleep on it.
      deadline = now;
    }
    const delay = deadline === Infinity ? 1000 : Math.max(0, Math.min(1000, deadline - now));
    if (this.woken || this.failure !== null || this.killed !== null || this.pendingBarrier !== null) {
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
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
    this.coordinator?.shutdown();
    let first: { error: unknown } | null = null;
    const attempt = async (step: string, fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (error) {
        first ??= { error: error instanceof StepFailure ? error : new StepFailure(step, undefined, error) };
      }
    };
    for (const node of this.operators) await attempt(node.stepId, () => node.operator.close?.());
    for (const node of this.sources) await attempt(node.stepId, () => node.reader.close?.());
    if (first !== null) throw (first as { error: unknown }).error;
  }
}

/** Whether a step snapshot holds anything that a missing step would lose. */
function hasState(s: { tables: Readonly<Record<string, number>>; instances: ReadonlyArray<{ operator?: unknown; splits?: unknown }> }): boolean {
  return Object.keys(s.tables).length > 0 || s.instances.some((i) => i.operator !== undefined || (i.splits !== undefined && (i.splits as unknown[]).length > 0));
}

/** Runs `fn`, attributing an exception to `step`. */
function withStepSync<T>(step: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw error instanceof StepFailure ? error : new StepFailure(step, undefined, error);
  }
}

/** Attributes a rejection to `step`. */
function withStep<T>(step: string, p: Promise<T>): Promise<T> {
  return p.catch((error: unknown) => {
    throw error instanceof StepFailure ? error : new StepFailure(step, undefined, error);
  });
}

function formatAge(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

export { errorMessage };
export type { Collector, StepNode };
