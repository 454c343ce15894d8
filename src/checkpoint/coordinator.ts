import type { Barrier } from '../runtime/barrier.ts';
import { errorMessage } from '../runtime/dead-letters.ts';
import type { InstanceSnapshot, SnapshotCollector } from '../runtime/env.ts';
import { checkpointDir, type InstanceRef, listCheckpoints, type Manifest, type StepRef, writeInstanceFile, writeManifest } from './manifest.ts';
import { type JobSnapshot, SnapshotAssembler } from './snapshot.ts';
import type { CheckpointStorage } from './storage.ts';

/** One checkpoint as the job's history reports it (the dashboard reads this). */
export interface CheckpointRecord {
  readonly id: number;
  readonly kind: 'checkpoint' | 'savepoint';
  status: 'in-progress' | 'completed' | 'failed';
  /** Wall-clock time it was triggered (epoch ms). */
  readonly triggeredAt: number;
  /** Phase durations in ms: barriers to every step and snapshots taken; state files written; manifest committed. */
  readonly phases: { align: number; write: number; commit: number };
  /** Longest time one step instance held up processing to take its snapshot (ms). */
  pauseMs: number;
  /** Sum over step instances of the time snapshots held up processing (ms). */
  totalPauseMs: number;
  /** Bytes written, in all and per step (0 for checkpoints that only commit sinks). */
  bytes: number;
  readonly stepBytes: Record<string, number>;
  /** Whether it was written to durable storage. */
  readonly durable: boolean;
  error?: string;
}

/** A step of the job and how many instances report to each checkpoint. */
export interface Participant {
  readonly step: string;
  readonly kind: string;
  readonly parallelism: number;
}

/** What the coordinator asks of the job's runtime. */
export interface CheckpointTarget {
  /** Starts a checkpoint: every source instance injects `barrier` at its next point between polls. */
  inject(barrier: Barrier): void;
  /** The checkpoint is durable everywhere: steps commit. */
  complete(id: number): void;
  /** The checkpoint failed: steps drop what they prepared only for it. */
  abort(id: number): void;
}

/** Options of the coordinator. */
export interface CoordinatorOptions {
  readonly storage: CheckpointStorage | null;
  readonly fingerprint: string;
  readonly maxParallelism: number;
  readonly participants: readonly Participant[];
  /** Completed checkpoints kept in storage (savepoints are never deleted). */
  readonly retain: number;
  /** Consecutive failures tolerated; one more fails the job. */
  readonly toleratedFailures: number;
  /** A checkpoint that takes longer than this fails (ms). */
  readonly timeout: number;
  /** The first id to use (one past the restored checkpoint, at least). */
  readonly firstId: number;
  readonly log: (line: string) => void;
  /** Called when failures exceed the tolerance. */
  readonly fail: (error: Error) => void;
}

interface Pending {
  readonly barrier: Barrier;
  readonly record: CheckpointRecord;
  readonly started: number;
  readonly assembler: SnapshotAssembler;
  readonly writes: Array<Promise<[string, number, InstanceRef]>>;
  readonly capture: boolean;
  remaining: number;
  alignedAt: number;
  readonly resolve: (snapshot: JobSnapshot | null) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

const HISTORY = 100;

/**
 * Runs checkpoints for one job (after Flink's CheckpointCoordinator): triggers a barrier at the
 * sources, collects every step instance's snapshot as the barrier passes it, has the state files
 * written (asynchronously: only taking the snapshot pauses processing), then commits the manifest
 * atomically — and only then tells every step that the checkpoint is complete, so sinks commit
 * what they pre-committed. One checkpoint runs at a time; a failed one is counted, cleaned up and
 * never touches the last complete one.
 */
export class CheckpointCoordinator implements SnapshotCollector {
  readonly history: CheckpointRecord[] = [];
  /** The last checkpoint captured in memory (see `trigger`'s `capture`). */
  lastCaptured: JobSnapshot | null = null;
  private nextId: number;
  private pending: Pending | null = null;
  private consecutiveFailures = 0;
  private target: CheckpointTarget | null = null;
  private stopped = false;

  constructor(private readonly options: CoordinatorOptions) {
    this.nextId = options.firstId;
  }

  /** Ids continue after every checkpoint already in storage, so they never repeat. */
  static async firstId(storage: CheckpointStorage | null, restored: number | undefined): Promise<number> {
    let max = restored ?? 0;
    if (storage !== null) for (const c of await listCheckpoints(storage)) max = Math.max(max, c.id);
    return max + 1;
  }

  attach(target: CheckpointTarget): void {
    this.target = target;
  }

  /** Whether a checkpoint is running. */
  get busy(): boolean {
    return this.pending !== null;
  }

  /**
   * Triggers a checkpoint. Resolves with its snapshot in memory when `capture` is set (or when
   * there is no storage), else null, once it is complete; rejects if it fails.
   */
  trigger(kind: 'checkpoint' | 'savepoint', options: { stop?: boolean; capture?: boolean } = {}): Promise<JobSnapshot | null> {
    if (this.pending !== null) return Promise.reject(new Error(`checkpoint ${this.pending.barrier.id} is still in progress`));
    if (this.stopped) return Promise.reject(new Error('the job is stopping'));
    const id = this.nextId++;
    const durable = this.options.storage !== null;
    const capture = options.capture ?? false;
    const barrier: Barrier = { id, kind, stop: options.stop ?? false, state: durable || capture };
    const assembler = new SnapshotAssembler(id, kind, Date.now(), this.options.fingerprint, this.options.maxParallelism);
    let remaining = 0;
    for (const p of this.options.participants) {
      assembler.expect(p.step, p.kind, p.parallelism);
      remaining += p.parallelism;
    }
    const record: CheckpointRecord = {
      id,
      kind,
      status: 'in-progress',
      triggeredAt: Date.now(),
      phases: { align: 0, write: 0, commit: 0 },
      pauseMs: 0,
      totalPauseMs: 0,
      bytes: 0,
      stepBytes: {},
      durable,
    };
    this.history.push(record);
    if (this.history.length > HISTORY) this.history.shift();
    return new Promise<JobSnapshot | null>((resolve, reject) => {
      const timer = setTimeout(() => this.failPending(id, new Error(`checkpoint ${id} did not complete within ${this.options.timeout} ms`)), this.options.timeout);
      timer.unref();
      this.pending = { barrier, record, started: performance.now(), assembler, writes: [], capture, remaining, alignedAt: 0, resolve, reject, timer };
      this.target!.inject(barrier);
    });
  }

  /** The barrier of the running checkpoint `id` (for threads that write their own state files). */
  barrierOf(id: number): Barrier | null {
    return this.pending?.barrier.id === id ? this.pending.barrier : null;
  }

  /** Whether checkpoint `id` is kept in memory as well (then instances send their state, not files). */
  captures(id: number): boolean {
    return this.pending?.barrier.id === id && (this.pending.capture || this.options.storage === null);
  }

  /** A step instance took its snapshot for checkpoint `id`. */
  add(id: number, step: string, instance: number, snapshot: InstanceSnapshot, pauseMs: number): void {
    const p = this.pending;
    if (p === null || p.barrier.id !== id) return; // a straggler of a checkpoint that failed
    p.assembler.add(step, instance, snapshot);
    if (this.options.storage !== null) {
      const storage = this.options.storage;
      const dir = checkpointDir(id, p.barrier.kind);
      p.writes.push(writeInstanceFile(storage, dir, step, instance, snapshot).then((ref) => [step, instance, ref]));
    }
    this.reported(p, pauseMs);
  }

  /**
   * A step instance in another thread took its snapshot for checkpoint `id` and wrote its state
   * file itself (durable, not captured checkpoints).
   */
  addWritten(id: number, step: string, instance: number, ref: InstanceRef, pauseMs: number): void {
    const p = this.pending;
    if (p === null || p.barrier.id !== id) return;
    p.assembler.add(step, instance, { watermark: ref.watermark });
    p.writes.push(Promise.resolve([step, instance, ref]));
    this.reported(p, pauseMs);
  }

  /** A step instance could not take or write its snapshot for checkpoint `id`. */
  failed(id: number, error: Error): void {
    this.failPending(id, error);
  }

  private reported(p: Pending, pauseMs: number): void {
    p.record.pauseMs = Math.max(p.record.pauseMs, pauseMs);
    p.record.totalPauseMs += pauseMs;
    if (--p.remaining === 0) {
      p.alignedAt = performance.now();
      p.record.phases.align = p.alignedAt - p.started;
      if (this.options.storage === null && !p.assembler.hasPromises()) this.completeInMemory(p);
      else void this.finishPending(p);
    }
  }

  /** Completes a checkpoint with nothing to write or wait for, synchronously. */
  private completeInMemory(p: Pending): void {
    try {
      const snapshot = p.assembler.finish();
      this.succeed(p, snapshot);
    } catch (error) {
      this.failPending(p.barrier.id, error instanceof Error ? error : new Error(String(error)));
    }
  }

  private succeed(p: Pending, snapshot: JobSnapshot | null): void {
    clearTimeout(p.timer);
    this.pending = null;
    p.record.status = 'completed';
    this.consecutiveFailures = 0;
    if (p.capture) this.lastCaptured = snapshot;
    this.target!.complete(p.barrier.id);
    p.resolve(p.capture ? snapshot : null);
    if (this.options.storage !== null) void this.retain();
  }

  private async finishPending(p: Pending): Promise<void> {
    const id = p.barrier.id;
    try {
      let snapshot: JobSnapshot | null = null;
      if (this.options.storage !== null) {
        const refs = await Promise.all(p.writes);
        const written = performance.now();
        p.record.phases.write = written - p.alignedAt;
        const steps: Record<string, { kind: string; parallelism: number; instances: InstanceRef[] }> = {};
        for (const part of this.options.participants) {
          steps[part.step] = { kind: part.kind, parallelism: part.parallelism, instances: new Array<InstanceRef>(part.parallelism) };
        }
        for (const [step, instance, ref] of refs) {
          steps[step]!.instances[instance] = ref;
          p.record.stepBytes[step] = (p.record.stepBytes[step] ?? 0) + ref.size;
          p.record.bytes += ref.size;
        }
        if (this.pending !== p) return; // timed out meanwhile
        const manifest: Manifest = {
          format: 1,
          id,
          kind: p.barrier.kind,
          createdAt: p.record.triggeredAt,
          fingerprint: this.options.fingerprint,
          maxParallelism: this.options.maxParallelism,
          steps: steps as Record<string, StepRef>,
        };
        p.record.bytes += await writeManifest(this.options.storage, manifest);
        p.record.phases.commit = performance.now() - written;
      }
      if (p.capture || this.options.storage === null) {
        await this.resolveOperatorState(p);
        snapshot = p.assembler.finish();
        if (p.record.phases.write === 0) p.record.phases.write = performance.now() - p.alignedAt;
      }
      if (this.pending !== p) return;
      this.succeed(p, snapshot);
    } catch (error) {
      this.failPending(id, error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Waits for pre-commits (promised operator state) to finish before assembling in memory. */
  private async resolveOperatorState(p: Pending): Promise<void> {
    for (const step of p.assembler.stepIds()) {
      for (const [instance, snap] of p.assembler.instancesOf(step)) {
        if (snap.operator instanceof Promise) p.assembler.add(step, instance, { ...snap, operator: await snap.operator });
      }
    }
  }

  private failPending(id: number, error: Error): void {
    const p = this.pending;
    if (p === null || p.barrier.id !== id) return;
    clearTimeout(p.timer);
    this.pending = null;
    p.record.status = 'failed';
    p.record.error = error.message;
    this.consecutiveFailures++;
    if (!this.stopped) this.options.log(`spate: checkpoint ${id} failed: ${error.message}`);
    this.target!.abort(id);
    if (this.options.storage !== null) {
      // Never leave a partial checkpoint that looks like one; the last complete one is untouched.
      void this.options.storage.deletePrefix(checkpointDir(id, p.barrier.kind)).catch(() => undefined);
    }
    p.reject(error);
    if (!this.stopped && this.consecutiveFailures > this.options.toleratedFailures) {
      this.options.fail(new Error(`${this.consecutiveFailures} checkpoints in a row failed; the last: ${error.message}`));
    }
  }

  /** Deletes completed checkpoints beyond the newest `retain` (never savepoints). */
  private async retain(): Promise<void> {
    const storage = this.options.storage!;
    try {
      const checkpoints = (await listCheckpoints(storage)).filter((c) => c.kind === 'checkpoint');
      const pendingId = this.pending?.barrier.id;
      let kept = 0;
      for (const c of checkpoints) {
        if (c.id === pendingId) continue;
        if (kept < this.options.retain) {
          kept++;
          continue;
        }
        await storage.deletePrefix(c.dir);
      }
    } catch (error) {
      this.options.log(`spate: warning: could not delete old checkpoints: ${errorMessage(error)}`);
    }
  }

  /** Fails the running checkpoint (the job is stopping without it) and refuses new ones. */
  shutdown(): void {
    this.stopped = true;
    const p = this.pending;
    if (p !== null) this.failPending(p.barrier.id, new Error('the job stopped'));
  }
}
