import { readFileSync } from 'node:fs';
import { siblingEntry, startModuleWorker } from '../util/module-worker.ts';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import type { CheckpointCoordinator } from '../checkpoint/coordinator.ts';
import { type JobSnapshot, type StepSnapshot } from '../checkpoint/snapshot.ts';
import { FileCheckpointStorage, type CheckpointStorage } from '../checkpoint/storage.ts';
import type { LogicalGraph } from '../plan/graph.ts';
import type { PhysicalPlan, Task } from '../plan/physical.ts';
import { keyGroupRange } from '../state/key-group.ts';
import { selectKeyGroups } from '../state/snapshot.ts';
import type { Barrier } from './barrier.ts';
import { StepFailure } from './dead-letters.ts';
import type { RuntimeEnv, SavedSplit } from './env.ts';
import type { Execution } from './execution.ts';
import type { OperatorNode } from './operator-node.ts';
import { Executor, type InstanceMetrics } from './executor.ts';
import { portChannels } from './port-channels.ts';
import { loadedHere } from '../api/define-pipeline.ts';
import type { ChannelEnd, FromWorker, ToWorker, WorkerInit } from './worker-protocol.ts';

/** Where a task instance runs: the main thread, or worker `n`. */
type Thread = 'main' | number;

function threadOf(task: Task, instance: number): Thread {
  return task.placement === 'main' ? 'main' : instance;
}

/** Whether sender instance `s` feeds receiver instance `r` over an edge shipped as `ship`. */
function feeds(ship: string, s: number, r: number): boolean {
  if (ship === 'chain' || ship === 'forward') return s === r;
  if (ship === 'gather') return r === 0;
  return true;
}

/** How a job in worker threads is set up. */
export interface WorkerExecutionOptions {
  readonly module: string;
  readonly args: readonly string[];
  readonly storage: CheckpointStorage | null;
  readonly coordinator: () => CheckpointCoordinator;
  readonly options: WorkerInit['options'];
}

/**
 * Runs a job's instances in worker threads: worker n runs instance n of every task placed on
 * workers (so chained steps and same-index forward edges stay in one thread), and the thread that
 * built the pipeline runs the local sinks. Each worker loads the pipeline module and rebuilds the
 * plan (checked against this one by its fingerprint); exchanges between threads go over
 * MessagePort channels with credit-based flow control; checkpoints are driven from here — workers
 * inject barriers, write their own state files and report them. A worker that fails fails the
 * job: every worker is terminated and the error, with its step, is the job's.
 */
export class WorkerExecution implements Execution {
  onEnded: () => void = () => undefined;
  private readonly workers: Worker[] = [];
  private readonly workerMetrics: InstanceMetrics[][] = [];
  private local: Executor | null = null;
  private ended = 0;
  private closed = 0;
  private failure: { error: unknown } | null = null;
  private workersDone: Promise<void> = Promise.resolve();
  private allClosed: (() => void) | null = null;

  constructor(
    private readonly graph: LogicalGraph,
    private readonly plan: PhysicalPlan,
    private readonly env: RuntimeEnv,
    private readonly setup: WorkerExecutionOptions,
  ) {}

  /** Number of worker threads: the most instances of any task on workers. */
  private get count(): number {
    let n = 0;
    for (const t of this.plan.tasks) if (t.placement === 'workers') n = Math.max(n, t.parallelism);
    return n;
  }

  async open(restore: JobSnapshot | null, splits: ReadonlyMap<string, SavedSplit[][]>): Promise<void> {
    const count = this.count;
    const writers: ChannelEnd[][] = Array.from({ length: count }, () => []);
    const readers: ChannelEnd[][] = Array.from({ length: count }, () => []);
    const mainWriters: ChannelEnd[] = [];
    const mainReaders: ChannelEnd[] = [];
    const endsOf = (thread: Thread, list: 'w' | 'r'): ChannelEnd[] => (thread === 'main' ? (list === 'w' ? mainWriters : mainReaders) : (list === 'w' ? writers : readers)[thread]!);
    this.plan.edges.forEach((edge, index) => {
      if (edge.ship === 'chain') return;
      const from = this.plan.taskOf.get(edge.from.id)!;
      const to = this.plan.taskOf.get(edge.to.id)!;
      for (let s = 0; s < from.parallelism; s++) {
        for (let r = 0; r < to.parallelism; r++) {
          if (!feeds(edge.ship, s, r)) continue;
          const ts = threadOf(from, s);
          const tr = threadOf(to, r);
          if (ts === tr) continue;
          const { port1, port2 } = new MessageChannel();
          endsOf(ts, 'w').push({ edge: index, sender: s, receiver: r, port: port1 });
          endsOf(tr, 'r').push({ edge: index, sender: s, receiver: r, port: port2 });
        }
      }
    });
    // The local sources and sinks run here.
    const local = new Executor({
      graph: this.graph,
      plan: this.plan,
      env: this.env,
      hosts: (task) => task.placement === 'main',
      channels: portChannels(mainWriters, mainReaders, this.env.batchSize, () => local.wakeUp()),
      restore,
      splits: (step, instance) => splits.get(step)?.[instance] ?? [],
    });
    local.build();
    local.onEnded = () => this.endedOne();
    this.local = local;
    const storage = this.setup.storage instanceof FileCheckpointStorage ? this.setup.storage.location : null;
    const opened: Array<Promise<void>> = [];
    const done: Array<Promise<void>> = [];
    for (let w = 0; w < count; w++) {
      const hosted = (task: Task, instance: number): boolean => task.placement === 'workers' && instance === w;
      const init: WorkerInit = {
        module: this.setup.module,
        args: this.setup.args,
        options: this.setup.options,
        index: w,
        signatures: [...this.graph.signatures()],
        sameLoader: loadedHere(this.setup.module),
        restore: restore === null ? null : cut(restore, this.plan, hosted),
        splits: Object.fromEntries([...splits].map(([step, per]) => [step, per[w] ?? []])),
        storage,
        writers: writers[w]!,
        readers: readers[w]!,
      };
      const ports = [...writers[w]!, ...readers[w]!].map((e) => e.port);
      const worker = startWorker(init, ports);
      this.workers.push(worker);
      this.workerMetrics.push([]);
      let markOpened!: () => void;
      let markDone!: () => void;
      opened.push(new Promise<void>((resolve) => (markOpened = resolve)));
      done.push(new Promise<void>((resolve) => (markDone = resolve)));
      let finished = false;
      worker.on('message', (m: FromWorker) => this.onMessage(w, m, markOpened, () => {
        finished = true;
        markDone();
      }));
      worker.on('error', (error) => {
        this.fail(error);
        markOpened();
        markDone();
      });
      worker.on('exit', (code) => {
        if (!finished) this.fail(new Error(`worker ${w} exited (code ${code}) before the job ended`));
        markOpened();
        markDone();
      });
    }
    this.workersDone = Promise.all(done).then(() => undefined);
    await Promise.all([local.open(), ...opened]);
    if (this.failure !== null) throw this.failure.error;
  }

  private onMessage(w: number, m: FromWorker, opened: () => void, closed: () => void): void {
    const coordinator = this.setup.coordinator();
    switch (m.type) {
      case 'opened':
        opened();
        break;
      case 'log':
        this.env.log(m.line);
        break;
      case 'snapshot':
        coordinator.add(m.id, m.step, m.instance, m.snapshot, m.pauseMs);
        break;
      case 'written':
        coordinator.addWritten(m.id, m.step, m.instance, m.ref, m.pauseMs);
        break;
      case 'snapshot-failed':
        coordinator.failed(m.id, new Error(m.message));
        break;
      case 'metrics':
        this.workerMetrics[w] = m.metrics;
        this.env.deadLetterLog.add(m.deadLetters);
        break;
      case 'ended':
        this.endedOne();
        break;
      case 'closed':
        this.workerMetrics[w] = m.metrics;
        this.env.deadLetterLog.add(m.deadLetters);
        closed();
        break;
      case 'failed': {
        const error = m.step === undefined ? new Error(m.message) : new StepFailure(m.step, undefined, new Error(m.message.replace(`step '${m.step}' failed: `, '')));
        if (m.stack !== undefined && process.env.SPATE_DEBUG) error.stack = m.stack;
        this.fail(error);
        opened();
        closed();
        break;
      }
    }
  }

  private endedOne(): void {
    if (++this.ended === this.workers.length + 1) this.onEnded();
  }

  private post(m: ToWorker): void {
    for (const w of this.workers) w.postMessage(m);
  }

  inject(barrier: Barrier, capture: boolean): void {
    this.post({ type: 'inject', barrier, capture });
    this.local!.injectBarrier(barrier);
  }

  complete(id: number): void {
    this.post({ type: 'complete', id });
    this.local!.complete(id);
  }

  abort(id: number): void {
    this.post({ type: 'abort', id });
    this.local!.abort(id);
  }

  pause(): void {
    this.post({ type: 'pause' });
    this.local?.pause();
  }

  halt(): void {
    this.post({ type: 'halt' });
    this.local?.halt();
  }

  /** Whether every thread has reported that its instances ended. */
  get quiet(): boolean {
    return this.ended >= this.workers.length + 1;
  }

  finish(): void {
    this.post({ type: 'finish' });
    this.local?.finish();
  }

  fail(error: unknown): void {
    if (this.failure !== null) return;
    this.failure = { error };
    this.local?.fail(error);
    // Every worker stops: a failed job leaves no thread behind.
    for (const w of this.workers) void w.terminate();
  }

  async run(): Promise<void> {
    try {
      await Promise.all([this.local!.run(), this.workersDone]);
    } catch (error) {
      this.fail(error);
    }
    if (this.failure !== null) throw this.failure.error;
  }

  metrics(): InstanceMetrics[] {
    return [...this.workerMetrics.flat(), ...(this.local?.metrics() ?? [])];
  }

  mainThreadOperators(): readonly OperatorNode[] {
    return this.local?.operators ?? [];
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    await this.local?.close();
  }
}

/** The part of a checkpoint the instances `hosted` need: their key groups and all instance states. */
function cut(snapshot: JobSnapshot, plan: PhysicalPlan, hosted: (task: Task, instance: number) => boolean): JobSnapshot {
  const steps = new Map<string, StepSnapshot>();
  for (const [id, step] of snapshot.steps) {
    const task = plan.taskOf.get(id);
    if (task === undefined) continue;
    const keyed = new Map<number, Uint8Array>();
    for (let i = 0; i < task.parallelism; i++) {
      if (!hosted(task, i)) continue;
      const range = keyGroupRange(i, task.parallelism, snapshot.maxParallelism);
      for (const [kg, blob] of selectKeyGroups(step.keyed, range.start, range.end)) keyed.set(kg, blob);
    }
    steps.set(id, { ...step, keyed });
  }
  return { ...snapshot, steps };
}

/** Starts a worker on its entry file, next to this one. */
function startWorker(init: WorkerInit, ports: ReadonlyArray<ChannelEnd['port']>): Worker {
  return startModuleWorker(siblingEntry(import.meta.url, 'worker'), { workerData: init, transferList: [...ports], stdout: false, stderr: false });
}

/** The default parallelism of a job in worker threads: one instance per core. */
export function defaultParallelism(): number {
  return availableParallelism();
}
