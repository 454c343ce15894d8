import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext } from '../runtime/operator.ts';
import type { Key } from '../state/key-group.ts';
import { KeyedTable } from '../state/keyed-table.ts';

/** The latest record of a key in a {@link View}, with its event time and when it arrived. */
export interface ViewEntry<T> {
  readonly key: Key;
  readonly value: T;
  /** The record's event time. */
  readonly time: number;
  /** When the view received it (epoch ms, processing time). */
  readonly updatedAt: number;
}

/**
 * A queryable result view: the latest record of every key of a keyed stream, kept by the job
 * (`keyedStream.view(name)`) in the thread that built the pipeline, checkpointed and restored
 * with the job. Read it with `job.view(name)` — or over HTTP from the dashboard
 * (`GET /views/<name>/<key>`) — while the job runs; listeners hear every update.
 *
 * What a view shows is what the job has processed, not only what its sinks committed: after a
 * restart it goes back to the checkpoint and catches up as the input is replayed.
 */
export interface View<T> {
  readonly name: string;
  /** The latest record of `key`, or undefined. */
  get(key: Key): ViewEntry<T> | undefined;
  /** Number of keys. */
  readonly size: number;
  /** Every entry (in no particular order), at most `limit`. */
  entries(limit?: number): ViewEntry<T>[];
  /** Calls `listener` with the entries updated by each batch; returns the unsubscribe function. */
  subscribe(listener: (updates: readonly ViewEntry<T>[]) => void): () => void;
}

/** The step behind `KeyedStream.view`: keyed state holding the latest record of every key. */
export class ViewOperator<T> implements Operator<T, never>, View<T> {
  private table!: KeyedTable<ViewEntry<T>>;
  private ctx!: OperatorContext<never>;
  private readonly listeners = new Set<(updates: readonly ViewEntry<T>[]) => void>();

  constructor(
    readonly name: string,
    private readonly key: (value: T) => Key,
  ) {}

  open(ctx: OperatorContext<never>): void {
    this.ctx = ctx;
    this.table = ctx.state.registerTable(new KeyedTable<ViewEntry<T>>(`view:${this.name}`, {}, ctx.clock));
  }

  processBatch(batch: Batch<T>): void {
    const { values, times, length } = batch;
    const now = this.ctx.clock.now();
    const updates: ViewEntry<T>[] | null = this.listeners.size > 0 ? [] : null;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const key = this.key(values[i] as T);
          const entry: ViewEntry<T> = { key, value: values[i] as T, time: times[i]!, updatedAt: now };
          this.table.set(key, entry);
          updates?.push(entry);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
    if (updates !== null && updates.length > 0) {
      for (const l of this.listeners) l(updates);
    }
  }

  get(key: Key): ViewEntry<T> | undefined {
    return this.table.get(key);
  }

  get size(): number {
    return this.table.size();
  }

  entries(limit = Infinity): ViewEntry<T>[] {
    const out: ViewEntry<T>[] = [];
    for (const key of this.table.map.keys()) {
      if (out.length >= limit) break;
      const e = this.table.get(key);
      if (e !== undefined) out.push(e);
    }
    return out;
  }

  subscribe(listener: (updates: readonly ViewEntry<T>[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
