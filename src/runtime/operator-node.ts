import type { OutputTag } from '../api/output-tag.ts';
import { DEAD_LETTER_PORT, MAIN_PORT } from '../plan/graph.ts';
import { KeyedStateBackend } from '../state/keyed-state-backend.ts';
import type { Clock } from '../time/clock.ts';
import { MAX_WATERMARK, MIN_WATERMARK } from '../time/watermark.ts';
import type { Barrier } from './barrier.ts';
import { Batch } from './batch.ts';
import { Collector, type EdgeTarget } from './collector.ts';
import { errorMessage, StepFailure } from './dead-letters.ts';
import { type InstanceRestore, type RuntimeEnv, warnOnce } from './env.ts';
import type { DeadLetter, Operator, OperatorContext, OperatorMetrics, Output } from './operator.ts';

/** Counters of a fresh step. */
export function newMetrics(): OperatorMetrics {
  return { recordsIn: 0, recordsOut: 0, deadLetters: 0, lateRecords: 0, lateDropped: 0, duplicatesDropped: 0, keysBeyondMemoryBound: 0 };
}

/** An event that arrived on a channel blocked by barrier alignment, kept until the barrier aligns. */
type Held =
  | { readonly kind: 'batch'; readonly channel: number; readonly batch: Batch<unknown> }
  | { readonly kind: 'watermark'; readonly channel: number; readonly watermark: number }
  | { readonly kind: 'idle'; readonly channel: number; readonly idle: boolean }
  | { readonly kind: 'barrier'; readonly channel: number; readonly barrier: Barrier }
  | { readonly kind: 'end'; readonly channel: number };

/** Identity of a step instance in the running job. */
export interface NodeIdentity {
  readonly stepId: string;
  readonly kind: string;
  readonly instance: number;
  readonly parallelism: number;
}

/**
 * The runtime around one operator instance. It owns what every step shares, so operators do not
 * repeat it:
 *
 * - **Time.** Per input channel it tracks the watermark, idleness and end; the step's watermark
 *   is the minimum over channels that are neither idle nor ended. It is snapshotted with the step
 *   and restored before the operator opens.
 * - **Barriers.** A channel that delivered checkpoint n's barrier is blocked until n's barrier has
 *   arrived on every open channel (ended channels count as aligned; idle ones still carry
 *   barriers); then the operator prepares, the node snapshots its keyed state and operator state,
 *   forwards the barrier on every port, and replays what arrived on blocked channels meanwhile.
 * - **State.** The keyed state backend is created here, restored from the instance's share of a
 *   checkpoint, and snapshotted here — operators only declare tables.
 * - **Dead letters** go to the step's dead-letter port when the pipeline consumes them, else to
 *   the job's log; under fail-fast they fail the job.
 * - **Output** of every call is flushed after it returns, so records precede the watermark,
 *   barrier or end that follows them.
 */
export class OperatorNode implements EdgeTarget, OperatorContext<unknown> {
  readonly output: Collector<unknown>;
  readonly metrics = newMetrics();
  /** Output ports by id (main, side outputs, dead letters). */
  readonly ports = new Map<string, Collector<unknown>>();
  /** The step's input watermark. */
  watermark = MIN_WATERMARK;
  idle = false;
  ended = false;
  /** Earliest processing time the operator asked to be called at. */
  nextProcessingTime = Infinity;
  /** How long the last checkpoint snapshot held processing up (ms). */
  lastSnapshotPause = 0;
  /** Time its input from other threads waited because downstream could not take more (ms). */
  backpressureMs = 0;
  /** The last checkpoint this instance took its part of. */
  lastSnapshotId = 0;
  /**
   * Called once every input channel has ended, before the end is forwarded: the executor
   * snapshots a running checkpoint whose barrier never came.
   */
  onEnded: () => void = () => undefined;
  readonly restoredOperatorState: readonly unknown[];
  readonly restoredCheckpoint: number | undefined;
  readonly scope: string | undefined;
  readonly stepId: string;
  readonly instance: number;
  readonly parallelism: number;
  private readonly channelWatermarks: number[];
  private readonly channelIdle: boolean[];
  private readonly channelEnded: boolean[];
  private readonly channelBlocked: boolean[];
  private readonly portList: Collector<unknown>[] = [];
  private aligning: Barrier | null = null;
  private arrived = 0;
  private held: Held[] = [];
  private backend: KeyedStateBackend | null = null;
  private deadLetterPort: Collector<unknown> | null = null;
  private deadLetterFlushQueued = false;

  constructor(
    id: NodeIdentity,
    readonly operator: Operator<unknown, unknown>,
    /** The logical input (0-based) of each input channel. */
    private readonly inputOfChannel: readonly number[],
    private readonly env: RuntimeEnv,
    private readonly restore: InstanceRestore | null,
    /** Per logical input: whether it delivers partial aggregates (two-phase aggregation). */
    private readonly combinedInputs: readonly boolean[] = [],
  ) {
    this.stepId = id.stepId;
    this.instance = id.instance;
    this.parallelism = id.parallelism;
    const channels = inputOfChannel.length;
    this.output = this.port(MAIN_PORT);
    this.channelWatermarks = new Array<number>(channels).fill(MIN_WATERMARK);
    this.channelIdle = new Array<boolean>(channels).fill(false);
    this.channelEnded = new Array<boolean>(channels).fill(false);
    this.channelBlocked = new Array<boolean>(channels).fill(false);
    this.restoredOperatorState = restore?.operator ?? [];
    this.restoredCheckpoint = restore?.checkpointId;
    this.scope = env.scope;
    if (restore !== null) this.watermark = restore.watermark;
  }

  get clock(): Clock {
    return this.env.clock;
  }

  get maxParallelism(): number {
    return this.env.maxParallelism;
  }

  get state(): KeyedStateBackend {
    this.backend ??= new KeyedStateBackend(this.env.clock, this.env.maxParallelism, this.restore?.keyed ?? null);
    return this.backend;
  }

  /** The collector of port `id`, created on first use. */
  port(id: string): Collector<unknown> {
    let c = this.ports.get(id);
    if (c === undefined) {
      c = new Collector<unknown>(this.env.batchSize);
      this.ports.set(id, c);
      this.portList.push(c);
      if (id === DEAD_LETTER_PORT) this.deadLetterPort = c;
    }
    return c;
  }

  sideOutput<X>(tag: OutputTag<X>): Output<X> {
    return this.port(tag.id) as Collector<X>;
  }

  deadLetter(record: unknown, error: unknown, time: number): void {
    this.metrics.deadLetters++;
    // After the end of input the port is closed (a sink's last commit reports late): log it.
    reportDeadLetter(this.env, this.stepId, this.ended ? null : this.deadLetterPort, record, error, time);
    // Reported off the data path (a sink's asynchronous pre-commit or commit), no call's flush
    // follows: flush once the current synchronous work is done (a no-op if a call flushed it).
    if (!this.ended && this.deadLetterPort !== null && !this.deadLetterFlushQueued) {
      this.deadLetterFlushQueued = true;
      queueMicrotask(() => {
        this.deadLetterFlushQueued = false;
        if (!this.ended) this.deadLetterPort!.flush();
      });
    }
  }

  combined(input: number): boolean {
    return this.combinedInputs[input] ?? false;
  }

  requestProcessingTime(time: number): void {
    if (time < this.nextProcessingTime) this.nextProcessingTime = time;
  }

  warnOnce(message: string): void {
    warnOnce(this.env, `step '${this.stepId}': ${message}`);
  }

  log(line: string): void {
    this.env.log(`spate: step '${this.stepId}': ${line}`);
  }

  /**
   * Opens the operator (its state is restored as it declares it), then checks that every restored
   * table was claimed. Returns a promise only if the operator opens asynchronously.
   */
  open(): void | Promise<void> {
    const opened = this.operator.open(this);
    if (opened instanceof Promise) return opened.then(() => this.checkRestored());
    this.checkRestored();
  }

  private checkRestored(): void {
    if (this.restore?.keyed == null) return;
    const unclaimed = this.state.finishRestore();
    if (unclaimed.length > 0 && !this.env.allowDroppedState) {
      throw new Error(
        `step '${this.stepId}' was restored with state it no longer declares: ${unclaimed.join(', ')} ` +
          `(restore with the option to drop state to discard it)`,
      );
    }
  }

  /** Whether input channel `channel` waits for a barrier to align (remote readers hold its messages). */
  isBlocked(channel: number): boolean {
    return this.channelBlocked[channel]!;
  }

  pushBatch(batch: Batch<unknown>, channel: number): void {
    if (this.channelBlocked[channel]) {
      this.held.push({ kind: 'batch', channel, batch: copyBatch(batch) });
      return;
    }
    this.metrics.recordsIn += batch.length;
    try {
      this.operator.processBatch(batch, this.inputOfChannel[channel]!);
    } catch (error) {
      throw this.failure(error);
    }
    this.flush();
  }

  pushWatermark(watermark: number, channel: number): void {
    if (this.channelBlocked[channel]) {
      this.held.push({ kind: 'watermark', channel, watermark });
      return;
    }
    if (watermark <= this.channelWatermarks[channel]!) return;
    this.channelWatermarks[channel] = watermark;
    this.combine();
  }

  pushIdle(idle: boolean, channel: number): void {
    if (this.channelBlocked[channel]) {
      this.held.push({ kind: 'idle', channel, idle });
      return;
    }
    if (this.channelIdle[channel] === idle) return;
    this.channelIdle[channel] = idle;
    this.combine();
  }

  /** Every input channel's watermark, idleness and end (for the dashboard). */
  inputStates(): Array<{ watermark: number; idle: boolean; ended: boolean }> {
    return this.channelWatermarks.map((watermark, c) => ({ watermark, idle: this.channelIdle[c]!, ended: this.channelEnded[c]! }));
  }

  pushEnd(channel: number): void {
    if (this.channelBlocked[channel]) {
      this.held.push({ kind: 'end', channel });
      return;
    }
    if (this.channelEnded[channel]) return;
    this.channelEnded[channel] = true;
    this.combine();
    if (this.aligning !== null) this.checkAligned();
    if (this.channelEnded.every(Boolean)) {
      try {
        this.operator.endInput?.();
      } catch (error) {
        throw this.failure(error);
      }
      this.flush();
      this.ended = true;
      this.onEnded(); // before the end goes downstream: what a snapshot emits precedes it
      for (const port of this.portList) port.end();
    }
  }

  pushBarrier(barrier: Barrier, channel: number): void {
    if (this.channelEnded[channel]) return;
    if (this.channelBlocked[channel]) {
      this.held.push({ kind: 'barrier', channel, barrier });
      return;
    }
    const current = this.aligning;
    if (current !== null && barrier.id < current.id) return; // a barrier of an abandoned checkpoint
    if (current !== null && barrier.id > current.id) {
      // Checkpoint `current` was given up upstream: stop aligning it, start on the new one.
      this.release();
    }
    if (this.aligning === null) {
      this.aligning = barrier;
      this.arrived = 0;
    }
    this.channelBlocked[channel] = true;
    this.arrived++;
    this.checkAligned();
  }

  private checkAligned(): void {
    const barrier = this.aligning!;
    let open = 0;
    let arrived = 0;
    for (let c = 0; c < this.channelEnded.length; c++) {
      if (this.channelEnded[c]) continue;
      open++;
      if (this.channelBlocked[c]) arrived++;
    }
    if (arrived < open) return;
    this.snapshot(barrier);
    for (const port of this.portList) port.barrier(barrier);
    this.release();
  }

  /** Unblocks every channel and replays what they delivered while blocked, in order. */
  private release(): void {
    this.aligning = null;
    this.arrived = 0;
    this.channelBlocked.fill(false);
    const held = this.held;
    if (held.length === 0) return;
    this.held = [];
    for (const h of held) {
      switch (h.kind) {
        case 'batch':
          this.pushBatch(h.batch, h.channel);
          break;
        case 'watermark':
          this.pushWatermark(h.watermark, h.channel);
          break;
        case 'idle':
          this.pushIdle(h.idle, h.channel);
          break;
        case 'barrier':
          this.pushBarrier(h.barrier, h.channel);
          break;
        case 'end':
          this.pushEnd(h.channel);
          break;
      }
    }
  }

  /**
   * Takes this instance's part of checkpoint `barrier.id`: the operator emits what must precede
   * the barrier, then keyed state, operator state and the watermark are handed to the job.
   * Called at alignment, or directly for a step that has ended (it has no input left to align).
   */
  snapshot(barrier: Barrier): void {
    const started = performance.now();
    let keyed;
    let operator: unknown;
    try {
      this.operator.prepareSnapshotPreBarrier?.(barrier.id);
      this.flush();
      keyed = barrier.state ? this.backend?.snapshot() : undefined;
      operator = this.operator.snapshotOperatorState?.(barrier.id);
    } catch (error) {
      throw this.failure(error);
    }
    this.lastSnapshotPause = performance.now() - started;
    this.lastSnapshotId = barrier.id;
    this.env.snapshots.add(barrier.id, this.stepId, this.instance, { watermark: this.watermark, keyed, operator }, this.lastSnapshotPause);
  }

  /**
   * Recovery: sends the restored watermark downstream again, before any input, so that a step
   * with several inputs gets back what each input had reached (its channels start from scratch).
   * It never advances a downstream step past its own restored watermark: that was the minimum
   * over what its inputs had sent.
   */
  announceWatermark(): void {
    if (this.watermark === MIN_WATERMARK) return;
    for (const port of this.portList) port.watermark(this.watermark);
  }

  /** Calls the operator back if the clock reached the time it asked for. */
  firePendingProcessingTime(now: number): void {
    if (now < this.nextProcessingTime || this.ended) return;
    this.nextProcessingTime = Infinity;
    try {
      this.operator.onProcessingTime?.(now);
    } catch (error) {
      throw this.failure(error);
    }
    this.flush();
  }

  /** Hands every port's buffered records downstream and counts them. */
  flush(): void {
    const ports = this.portList;
    let out = 0;
    for (let i = 0; i < ports.length; i++) {
      const port = ports[i]!;
      port.flush();
      if (port !== this.deadLetterPort) out += port.emitted;
    }
    this.metrics.recordsOut = out;
  }

  /** An exception from the operator (or from a step downstream, already attributed) as a failure of the job. */
  private failure(error: unknown): StepFailure {
    return error instanceof StepFailure ? error : new StepFailure(this.stepId, undefined, error);
  }

  private setIdle(idle: boolean): void {
    if (this.idle === idle) return;
    this.idle = idle;
    if (this.operator.onIdle !== undefined) {
      try {
        this.operator.onIdle(idle);
      } catch (error) {
        throw this.failure(error);
      }
      this.flush();
    }
    for (const port of this.portList) port.idle(idle);
  }

  private combine(): void {
    let min = Infinity;
    let open = 0;
    let active = 0;
    const n = this.channelEnded.length;
    for (let i = 0; i < n; i++) {
      if (this.channelEnded[i]) continue;
      open++;
      if (this.channelIdle[i]) continue;
      active++;
      const w = this.channelWatermarks[i]!;
      if (w < min) min = w;
    }
    if (open === 0) min = MAX_WATERMARK;
    else if (active === 0) {
      // Every open input is idle: this step is idle too and holds nobody back downstream.
      this.setIdle(true);
      return;
    }
    this.setIdle(false);
    if (min > this.watermark) {
      this.watermark = min;
      try {
        this.operator.onWatermark?.(min);
      } catch (error) {
        throw this.failure(error);
      }
      this.flush();
      for (const port of this.portList) port.watermark(min);
    }
  }
}

/** A copy of a batch's records, for holding them past the call that delivered them. */
function copyBatch(batch: Batch<unknown>): Batch<unknown> {
  const copy = new Batch<unknown>(Math.max(1, batch.length));
  for (let i = 0; i < batch.length; i++) copy.push(batch.values[i], batch.times[i]!);
  return copy;
}

/**
 * Routes one dead letter: fail-fast fails the job; with a dead-letter port (the pipeline consumes
 * dead letters) it becomes a record on it; otherwise it goes to the job's log.
 */
export function reportDeadLetter(
  env: RuntimeEnv,
  step: string,
  port: Collector<unknown> | null,
  record: unknown,
  error: unknown,
  time: number,
): void {
  if (env.failFast) throw error instanceof StepFailure ? error : new StepFailure(step, record, error);
  env.deadLetterLog.remember(step, record, error, time);
  if (port !== null && port.connected) {
    const letter: DeadLetter = { step, error: errorMessage(error), record, time };
    port.emit(letter, Number.isFinite(time) ? time : env.clock.now());
    return;
  }
  env.deadLetterLog.report(step, record, error);
}
