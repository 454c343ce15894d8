import type { Source, SourceOutput, SourceReader, SourceStatus, Split } from '../runtime/source.ts';

type Item<T> =
  | { readonly kind: 'record'; readonly value: T; readonly time: number }
  | { readonly kind: 'watermark'; readonly time: number }
  | { readonly kind: 'idle' }
  | { readonly kind: 'end' };

/**
 * A scripted source for pipeline tests: records with explicit timestamps, explicit watermarks,
 * idleness and end of input, in the order given. Items can be added before the run or while it
 * runs; without `end()` the source stays open (stop the job to finish).
 *
 * @example
 * const src = new TestSource<number>().record(1, 1000).record(2, 1500).watermark(1999).record(3, 500).end();
 * const out = p.source(src).collect();
 */
export class TestSource<T> implements Source<T> {
  readonly watermarks = 'explicit' as const;
  readonly maxParallelism = 1;
  private readonly items: Item<T>[] = [];
  private ended = false;
  private readonly waiting = new Set<() => void>();

  /** Whether the script ends (set by {@link end}); a source without end is unbounded. */
  get bounded(): boolean {
    return this.ended;
  }

  record(value: T, time: number): this {
    return this.add({ kind: 'record', value, time });
  }

  /** Adds several records, each with its timestamp. */
  records(records: Iterable<{ value: T; time: number }>): this {
    for (const r of records) this.record(r.value, r.time);
    return this;
  }

  watermark(time: number): this {
    return this.add({ kind: 'watermark', time });
  }

  idle(): this {
    return this.add({ kind: 'idle' });
  }

  end(): this {
    this.ended = true;
    return this.add({ kind: 'end' });
  }

  private add(item: Item<T>): this {
    this.items.push(item);
    for (const w of this.waiting) w();
    this.waiting.clear();
    return this;
  }

  /** One split: the script, from its first item. */
  splits(): Split<number>[] {
    return [{ id: 'script', position: 0 }];
  }

  createReader(): SourceReader<T> {
    return new TestSourceReader(this.items, this.waiting);
  }
}

/** Plays a {@link TestSource}'s script; its position is the index of the next item. */
class TestSourceReader<T> implements SourceReader<T> {
  private next = 0;

  constructor(
    private readonly items: readonly Item<T>[],
    private readonly waiting: Set<() => void>,
  ) {}

  open(splits: readonly Split[]): void {
    this.next = (splits[0]?.position as number | undefined) ?? this.items.length;
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    // Restored from a checkpoint taken after the script's end: it has ended.
    if (this.next > 0 && this.items[this.next - 1]!.kind === 'end') return 'end';
    let n = 0;
    while (this.next < this.items.length && n < max) {
      const item = this.items[this.next++]!;
      switch (item.kind) {
        case 'record':
          out.emit(item.value, item.time);
          n++;
          break;
        case 'watermark':
          out.watermark(item.time);
          break;
        case 'idle':
          out.markIdle();
          break;
        case 'end':
          return 'end';
      }
    }
    return this.next < this.items.length ? 'more' : 'wait';
  }

  ready(): Promise<void> {
    if (this.next < this.items.length) return Promise.resolve();
    return new Promise((resolve) => this.waiting.add(resolve));
  }

  snapshot(): Split<number>[] {
    return [{ id: 'script', position: this.next }];
  }
}
