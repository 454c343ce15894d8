import type { Source, SourceContext, SourceOutput, SourceReader, SourceStatus, Split } from '../../runtime/source.ts';

/**
 * A bounded source over an array. It reads as one split whose position is the index of the next
 * record, so a job restored from a checkpoint continues where it left off.
 *
 * @example
 * p.source(new ArraySource([1, 2, 3]));
 */
export class ArraySource<T> implements Source<T> {
  readonly bounded = true;
  readonly maxParallelism = 1;

  constructor(private readonly values: readonly T[]) {}

  splits(): Split<number>[] {
    return [{ id: 'array', position: 0 }];
  }

  createReader(): SourceReader<T> {
    return new ArrayReader(this.values);
  }
}

class ArrayReader<T> implements SourceReader<T> {
  private next = 0;
  private id = 'array';

  constructor(private readonly values: readonly T[]) {}

  open(splits: readonly Split[]): void {
    const s = splits[0];
    if (s === undefined) {
      this.next = this.values.length;
      return;
    }
    this.id = s.id;
    this.next = s.position as number;
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    const end = Math.min(this.values.length, this.next + max);
    for (let i = this.next; i < end; i++) out.emit(this.values[i] as T);
    this.next = end;
    return end >= this.values.length ? 'end' : 'more';
  }

  snapshot(): Split<number>[] {
    return [{ id: this.id, position: this.next }];
  }
}

/** Records buffered ahead of the pipeline when reading an async iterable. */
const ASYNC_BUFFER = 4096;

/**
 * A bounded source over a sync or async iterable, read as one split. Async iterables are read
 * ahead into a bounded buffer. The position is the number of records consumed; restoring iterates
 * again and skips that many, so only an iterable that yields the same records again can be
 * replayed: arrays, Sets, Maps and other re-iterable collections. An async iterable, or an
 * iterator that is its own iterable (a generator object), cannot: a job with durable checkpoints
 * refuses them.
 */
export class IterableSource<T> implements Source<T> {
  readonly bounded = true;
  readonly maxParallelism = 1;
  readonly replayable: boolean;

  constructor(private readonly iterable: Iterable<T> | AsyncIterable<T>) {
    // An object with `next` is an iterator: iterating it again continues rather than restarts.
    this.replayable = Symbol.iterator in iterable && typeof (iterable as { next?: unknown }).next !== 'function';
  }

  splits(): Split<number>[] {
    return [{ id: 'iterable', position: 0 }];
  }

  createReader(): SourceReader<T> {
    return new IterableReader(this.iterable);
  }
}

class IterableReader<T> implements SourceReader<T> {
  private consumed = 0;
  private skip = 0;
  private sync: Iterator<T> | null = null;
  private async: AsyncIterator<T> | null = null;
  private closed = false;
  private buffer: T[] = [];
  private head = 0;
  private done = false;
  private error: { error: unknown } | null = null;
  private notify: (() => void) | null = null;
  private resume: (() => void) | null = null;

  constructor(private readonly iterable: Iterable<T> | AsyncIterable<T>) {}

  open(splits: readonly Split[]): void {
    this.skip = (splits[0]?.position as number | undefined) ?? 0;
    this.consumed = this.skip;
    if (Symbol.iterator in this.iterable) {
      this.sync = (this.iterable as Iterable<T>)[Symbol.iterator]();
      for (; this.skip > 0; this.skip--) if (this.sync.next().done) break;
    } else {
      this.async = (this.iterable as AsyncIterable<T>)[Symbol.asyncIterator]();
      void this.pump(this.async);
    }
  }

  /**
   * Releases the iterator (its `finally` blocks run: cursors, file handles) when the job ends
   * before the input does, and stops reading ahead.
   */
  close(): void {
    this.closed = true;
    const r = this.resume;
    this.resume = null;
    r?.();
    if (this.sync !== null && !this.done) this.sync.return?.();
    // Not awaited: return() queues behind a pending next(), which may never settle.
    if (this.async !== null && !this.done) this.async.return?.()?.catch(() => undefined);
    this.done = true;
  }

  private async pump(it: AsyncIterator<T>): Promise<void> {
    try {
      for (;;) {
        if (this.closed) return;
        if (this.buffer.length - this.head >= ASYNC_BUFFER) {
          await new Promise<void>((resolve) => (this.resume = resolve));
          continue;
        }
        const r = await it.next();
        if (r.done) break;
        if (this.skip > 0) {
          this.skip--;
          continue;
        }
        this.buffer.push(r.value);
        this.wakeReader();
      }
    } catch (error) {
      this.error = { error };
    }
    this.done = true;
    this.wakeReader();
  }

  private wakeReader(): void {
    const n = this.notify;
    this.notify = null;
    n?.();
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    if (this.sync !== null) {
      for (let i = 0; i < max; i++) {
        const r = this.sync.next();
        if (r.done) {
          this.done = true;
          return 'end';
        }
        out.emit(r.value);
        this.consumed++;
      }
      return 'more';
    }
    if (this.error !== null) throw this.error.error;
    const available = Math.min(max, this.buffer.length - this.head);
    for (let i = 0; i < available; i++) out.emit(this.buffer[this.head++] as T);
    this.consumed += available;
    if (this.head > 1024 && this.head * 2 > this.buffer.length) {
      this.buffer = this.buffer.slice(this.head);
      this.head = 0;
    }
    const r = this.resume;
    this.resume = null;
    r?.();
    if (this.head < this.buffer.length) return 'more';
    return this.done ? 'end' : 'wait';
  }

  ready(): Promise<void> {
    if (this.done || this.head < this.buffer.length) return Promise.resolve();
    return new Promise((resolve) => (this.notify = resolve));
  }

  snapshot(): Split<number>[] {
    return [{ id: 'iterable', position: this.consumed }];
  }
}
