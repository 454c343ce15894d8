import type { Batch } from '../runtime/batch.ts';
import type { Committable, Sink, SinkContext } from '../runtime/sink.ts';
import type { Timed } from './operator-harness.ts';

/**
 * Where a {@link TransactionalCollectSink} reports its crash points (the test kit's crash injection).
 *
 * @example
 * new TransactionalCollectSink(store, { onPoint: (point: SinkPoint) => point === 'commit' && console.log('committed') });
 */
export type SinkPoint = 'write' | 'pre-commit' | 'commit';

/**
 * Details of a sink crash point.
 *
 * @example
 * const onPoint = (point: SinkPoint, d: SinkPointDetail) => console.log(`${d.step} ${point} of checkpoint ${d.checkpoint}: ${d.rows} rows`);
 */
export interface SinkPointDetail {
  /** The sink's step id. */
  readonly step: string;
  /** The checkpoint being pre-committed or committed. */
  readonly checkpoint?: number;
  /** A commit made while the job recovers (re-commit of the restored checkpoint's committables). */
  readonly recovery?: boolean;
  /** Rows concerned: written in the batch, pre-committed, or made visible by the commit. */
  readonly rows: number;
}

/**
 * What a {@link TransactionalCollectSink} pre-commits: a transaction of the store (stored in the
 * checkpoint as the sink's committable).
 *
 * @example
 * sink.preCommit(3); // { rows: 2 }: two rows pre-committed for checkpoint 3
 */
export interface PreparedTransaction {
  /** Rows in the transaction. */
  readonly rows: number;
}

interface Prepared<T> {
  readonly checkpointId: number;
  readonly instance: number;
  readonly rows: Array<Timed<T>>;
}

const never = (): Promise<never> => new Promise<never>(() => undefined);

/**
 * The durable side of a {@link TransactionalCollectSink}: what a transactional database keeps
 * across crashes of the job writing to it. It holds the committed rows (the visible output, in
 * commit order), the transactions pre-committed but not yet committed (durable and invisible),
 * and the set of committed transactions, so a commit is idempotent.
 *
 * A store outlives the jobs that write to it. {@link crash} simulates the death of the writing
 * process: every sink bound to the store before the call is fenced off — whatever a killed job
 * still tries to write, pre-commit, commit or abort is dropped — and sinks created afterwards
 * (by the restarted job) write normally.
 *
 * The store also checks the protocol: a commit of a transaction that was never pre-committed (or
 * was aborted) and a checkpoint id pre-committed again after it was committed are recorded in
 * {@link problems}.
 *
 * @example
 * const store = new CommittedStore<number>();
 * const p = new Pipeline();
 * p.fromArray([1, 2, 3]).sink(new TransactionalCollectSink(store));
 * await p.run({ checkpointDir: new MemoryCheckpointStorage() });
 * store.values; // [1, 2, 3]: committed by the run's final checkpoint
 */
export class CommittedStore<T> {
  /** Protocol violations seen (empty when every sink behaved). */
  readonly problems: string[] = [];
  private readonly rows: Array<Timed<T>> = [];
  private readonly prepared = new Map<string, Prepared<T>>();
  private readonly done = new Set<string>();
  private currentEpoch = 0;

  /** Incremented by {@link crash}; a sink writes only while its epoch is the current one. */
  get epoch(): number {
    return this.currentEpoch;
  }

  /** Simulates the death of the process writing to the store: fences off every sink bound so far. */
  crash(): void {
    this.currentEpoch++;
  }

  /** Committed rows with their timestamps, in commit order. */
  get records(): ReadonlyArray<Timed<T>> {
    return this.rows;
  }

  /** Committed values, in commit order. */
  get values(): T[] {
    return this.rows.map((r) => r.value);
  }

  /** Rows pre-committed and not (yet) committed: durable, invisible. */
  get preparedRows(): number {
    let n = 0;
    for (const p of this.prepared.values()) n += p.rows.length;
    return n;
  }

  /** Pre-commits `rows` as transaction (instance, checkpoint); false if `epoch` is fenced off. */
  prepare(epoch: number, instance: number, checkpointId: number, rows: Array<Timed<T>>): boolean {
    if (epoch !== this.currentEpoch) return false;
    const key = txn(instance, checkpointId);
    if (this.done.has(key)) {
      this.problems.push(`checkpoint ${checkpointId} (instance ${instance}) was pre-committed again after it had been committed: its new rows would be skipped`);
    }
    this.prepared.set(key, { checkpointId, instance, rows });
    return true;
  }

  /**
   * Commits transaction (instance, checkpoint): its rows become visible, once. Committing it again
   * does nothing. Returns the number of rows made visible, or null if `epoch` is fenced off.
   */
  commit(epoch: number, instance: number, checkpointId: number): number | null {
    if (epoch !== this.currentEpoch) return null;
    const key = txn(instance, checkpointId);
    if (this.done.has(key)) return 0;
    const p = this.prepared.get(key);
    if (p === undefined) {
      this.problems.push(`commit of checkpoint ${checkpointId} (instance ${instance}): nothing was pre-committed under it (lost or aborted): its rows are missing`);
      return 0;
    }
    for (const r of p.rows) this.rows.push(r);
    this.prepared.delete(key);
    this.done.add(key);
    return p.rows.length;
  }

  /**
   * Drops the transactions of `instance` pre-committed for checkpoints after `after` (all of them
   * if undefined): they belong to checkpoints that never completed. False if fenced off.
   */
  abortAfter(epoch: number, instance: number, after: number | undefined): boolean {
    if (epoch !== this.currentEpoch) return false;
    for (const [key, p] of this.prepared) {
      if (p.instance === instance && (after === undefined || p.checkpointId > after)) this.prepared.delete(key);
    }
    return true;
  }
}

function txn(instance: number, checkpointId: number): string {
  return `${instance}@${checkpointId}`;
}

/**
 * Options of {@link TransactionalCollectSink}.
 *
 * @example
 * const options: TransactionalCollectSinkOptions = { onPoint: (point, d) => trace.push(`${point}:${d.checkpoint}`) };
 */
export interface TransactionalCollectSinkOptions {
  /**
   * Called at the sink's crash points: after a batch is buffered (`write`), after the
   * pre-commit of a checkpoint is durable in the store (`pre-commit`), after each committed
   * transaction (`commit`). The test kit's crash injection kills the job from here.
   */
  readonly onPoint?: (point: SinkPoint, detail: SinkPointDetail) => void;
}

/**
 * An in-memory sink that takes part in checkpoints by two-phase commit, for exactly-once tests.
 * Written rows are buffered in the sink (lost if the job dies); `preCommit` moves them into the
 * {@link CommittedStore} as a transaction of the checkpoint (durable, invisible); `commit` makes
 * them visible, idempotently; on recovery `abort` drops the transactions of checkpoints that never
 * completed. The store is shared by the sinks of successive runs, as a database outlives the
 * process that writes to it, so `store.values` is exactly what a reader of the database would
 * see.
 *
 * Like every sink with `preCommit`/`commit`, it commits at checkpoints: give the job a checkpoint
 * directory or storage (a `MemoryCheckpointStorage` will do), or rely on the final checkpoint of
 * bounded input.
 *
 * @example
 * const store = new CommittedStore<string>();
 * const storage = new MemoryCheckpointStorage(); // stands in for the checkpoint directory
 * const p = new Pipeline();
 * p.fromArray(['a', 'b']).sink(new TransactionalCollectSink(store), { id: 'out' });
 * await p.run({ checkpointDir: storage });
 * store.values; // ['a', 'b']
 */
export class TransactionalCollectSink<T> implements Sink<T, PreparedTransaction> {
  readonly local = true;
  readonly parallelism = 1;
  /** The store's epoch when the sink was created: it writes only while that epoch lasts. */
  private readonly epoch: number;
  private buffer: Array<Timed<T>> = [];
  private instance = 0;
  private step = '';
  private recovering = false;

  constructor(
    readonly store: CommittedStore<T>,
    private readonly options: TransactionalCollectSinkOptions = {},
  ) {
    this.epoch = store.epoch;
  }

  /** Whether the store has not fenced this sink off (its job has not "crashed"). */
  get alive(): boolean {
    return this.store.epoch === this.epoch;
  }

  /** Rows written since the last pre-commit: what a crash now would lose (and replay would restore). */
  get buffered(): number {
    return this.buffer.length;
  }

  open(ctx: SinkContext): void {
    this.instance = ctx.instance;
    this.step = ctx.stepId;
    this.recovering = ctx.restoredCheckpoint !== undefined;
  }

  write(batch: Batch<T>): void {
    if (!this.alive) return;
    for (let i = 0; i < batch.length; i++) this.buffer.push({ value: batch.values[i] as T, time: batch.times[i]! });
    this.options.onPoint?.('write', { step: this.step, rows: batch.length });
  }

  preCommit(checkpointId: number): PreparedTransaction | undefined {
    if (!this.alive) return undefined;
    const rows = this.buffer;
    this.buffer = [];
    if (rows.length > 0) this.store.prepare(this.epoch, this.instance, checkpointId, rows);
    this.options.onPoint?.('pre-commit', { step: this.step, checkpoint: checkpointId, rows: rows.length });
    return rows.length === 0 ? undefined : { rows: rows.length };
  }

  async commit(committables: ReadonlyArray<Committable<PreparedTransaction>>): Promise<void> {
    for (const c of committables) {
      // A fenced-off sink belongs to a dead process: it never finishes anything.
      const rows = this.store.commit(this.epoch, c.instance, c.checkpointId);
      if (rows === null) return never();
      this.options.onPoint?.('commit', { step: this.step, checkpoint: c.checkpointId, recovery: this.recovering, rows });
      if (!this.alive) return never();
    }
  }

  abort(after: number | undefined): void | Promise<void> {
    this.recovering = false;
    if (!this.store.abortAfter(this.epoch, this.instance, after)) return never();
    // Rows written but not pre-committed were in the old process's memory: already gone.
  }
}
