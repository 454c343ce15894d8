import type { Batch } from './batch.ts';
import { errorMessage } from './dead-letters.ts';
import type { Operator, OperatorContext } from './operator.ts';
import type { Committable, Sink } from './sink.ts';

/** Pre-committed checkpoints whose commit may lag before the sink reports backpressure. */
const MAX_UNCOMMITTED = 2;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 30_000;

/**
 * Runs a {@link Sink} as a step under the operator contract: `write` per batch, the step's
 * watermark and idleness to `watermark` and `idle` (for the sinks that take them), `preCommit` in
 * the checkpoint snapshot (its committables become the step's operator state, so they are stored
 * in the checkpoint), `commit` when the checkpoint completes, and on recovery a re-commit of the
 * restored committables followed by `abort` of anything newer.
 *
 * Commits run one after another, in checkpoint order, off the data path; a failing commit is
 * retried with backoff (the committables stay pending and in every later checkpoint), and while
 * more than two checkpoints wait to be committed the sink reports backpressure, so a destination
 * that is down slows the job instead of growing memory.
 */
export class SinkOperator implements Operator<unknown, never> {
  private ctx!: OperatorContext<never>;
  /** Pre-committed, not yet committed, in checkpoint order. */
  private pending: Array<Committable<unknown>> = [];
  /** The commit in progress (commits are chained). */
  private committing: Promise<void> | null = null;
  private closed = false;

  constructor(readonly sink: Sink<unknown>) {}

  open(ctx: OperatorContext<never>): void | Promise<void> {
    this.ctx = ctx;
    const sink = this.sink;
    const opened = sink.open?.({
      stepId: ctx.stepId,
      instance: ctx.instance,
      parallelism: ctx.parallelism,
      clock: ctx.clock,
      restoredCheckpoint: ctx.restoredCheckpoint,
      deadLetter: (record, error, time) => ctx.deadLetter(record, error, time),
      log: (line) => ctx.log(line),
      ...(ctx.scope === undefined ? {} : { scope: ctx.scope }),
    });
    const restored = (ctx.restoredOperatorState as Array<ReadonlyArray<Committable<unknown>>>).flat();
    restored.sort((a, b) => a.checkpointId - b.checkpointId || a.instance - b.instance);
    if (opened === undefined && restored.length === 0 && sink.abort === undefined) return;
    return (async () => {
      await opened;
      // Recovery: what the restored checkpoint pre-committed may or may not have been committed
      // before the crash; commits are idempotent, so commit it (again).
      if (restored.length > 0 && sink.commit !== undefined) await this.commitWithRetry(restored);
      await sink.abort?.(ctx.restoredCheckpoint);
    })();
  }

  processBatch(batch: Batch<unknown>): void {
    this.sink.write(batch);
  }

  /** Passes the watermark on to a sink that takes it ({@link Sink.watermark}). */
  onWatermark(watermark: number): void {
    this.sink.watermark?.(watermark);
  }

  /** Passes idleness on to a sink that takes it ({@link Sink.idle}). */
  onIdle(idle: boolean): void {
    this.sink.idle?.(idle);
  }

  snapshotOperatorState(checkpointId: number): unknown {
    const data = this.sink.preCommit?.(checkpointId);
    const record = (d: unknown): ReadonlyArray<Committable<unknown>> => {
      if (d !== undefined && this.sink.commit !== undefined) this.pending.push({ checkpointId, instance: this.ctx.instance, data: d });
      return this.pending.slice();
    };
    if (data instanceof Promise) return data.then(record);
    const list = record(data);
    return list.length === 0 ? undefined : list;
  }

  notifyCheckpointComplete(checkpointId: number): Promise<void> | void {
    const due = this.pending.filter((c) => c.checkpointId <= checkpointId);
    if (due.length === 0) return;
    const previous = this.committing ?? Promise.resolve();
    const next = previous.then(async () => {
      await this.commitWithRetry(due);
      this.pending = this.pending.filter((c) => !due.includes(c));
    });
    this.committing = next;
    void next.finally(() => {
      if (this.committing === next) this.committing = null;
    });
    return next;
  }

  backpressure(): Promise<void> | undefined {
    const own = this.sink.backpressure?.();
    if (own !== undefined) return own;
    if (this.committing !== null && this.pending.length > MAX_UNCOMMITTED) return this.committing;
    return undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.committing;
    } finally {
      await this.sink.close?.();
    }
  }

  /** Commits, retrying with backoff until it succeeds or the sink is closed. */
  private async commitWithRetry(committables: ReadonlyArray<Committable<unknown>>): Promise<void> {
    let delay = RETRY_FIRST_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.sink.commit!(committables);
        return;
      } catch (error) {
        if (this.closed) throw error;
        this.ctx.warnOnce(`commit failed, retrying with backoff: ${errorMessage(error)}`);
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(RETRY_MAX_MS, delay * 2);
      }
    }
  }
}
