import type { Source, SourceContext, SourceOutput, SourceReader, SourceStatus, Split, SplitOutput } from '../runtime/source.ts';
import { openStrides, strideSplits } from '../connectors/generator/source.ts';
import { fmix32 } from '../util/hash.ts';
import { type NexmarkConfig, NexmarkGenerator } from './generator.ts';
import type { NexmarkEvent } from './model.ts';

/** Options of {@link NexmarkSource}. */
export interface NexmarkSourceOptions extends NexmarkConfig {
  /** Number of events; default unbounded. */
  readonly events?: number;
  /**
   * Events arrive shuffled within this many ms of event time: event n is delivered once the
   * generator has passed time(n) + jitter(n), jitter uniform in [0, disorder]. Use a watermark
   * out-of-orderness of at least `disorder` and no event is late.
   */
  readonly disorder?: number;
  /**
   * Live mode: emit no event before the processing-time clock reaches its event time (start the
   * generator at `baseTime` = now). Default: as fast as possible.
   */
  readonly live?: boolean;
  /**
   * Number of generator splits (default: the source's parallelism at the first start): split k of
   * n generates events k, k + n, … — as NEXMark's multiple generators divide one sequence.
   */
  readonly splits?: number;
}

/** Position of one split: the next event number, and the events held back for disorder. */
interface NexmarkPosition {
  readonly next: number;
  readonly pending: number[];
}

/**
 * NEXMark events as a source, with event times. Deterministic: event n is a pure function of the
 * seed and n, and the event sequence is dealt into stride splits (split k of n generates events
 * k, k + n, …), each with its own disorder and watermark. A split's position is its next event
 * number and the events it holds back, so a restored job regenerates exactly the events after its
 * checkpoint, at any parallelism.
 */
export class NexmarkSource implements Source<NexmarkEvent> {
  readonly bounded: boolean;
  readonly generator: NexmarkGenerator;

  constructor(private readonly options: NexmarkSourceOptions = {}) {
    this.generator = new NexmarkGenerator(options);
    this.bounded = Number.isFinite(options.events ?? Infinity);
    const disorder = options.disorder ?? 0;
    if (!(disorder >= 0)) throw new RangeError(`disorder must be >= 0, got ${options.disorder}`);
  }

  splits(ctx: SourceContext): Split<NexmarkPosition>[] {
    return strideSplits(this.options.splits ?? ctx.parallelism).map((s) => ({ id: s.id, position: { next: s.position, pending: [] } }));
  }

  createReader(ctx: SourceContext): SourceReader<NexmarkEvent> {
    return new NexmarkReader(this.generator, this.options, ctx.clock);
  }
}

class NexmarkReader implements SourceReader<NexmarkEvent> {
  private splits: NexmarkSplit[] = [];
  private registered = false;

  constructor(
    private readonly generator: NexmarkGenerator,
    private readonly options: NexmarkSourceOptions,
    private readonly clock: SourceContext['clock'],
  ) {}

  open(splits: readonly Split[]): void {
    const strides = openStrides(splits.map((s) => ({ id: s.id, position: (s.position as NexmarkPosition).next })));
    this.splits = strides.map((st, i) => new NexmarkSplit(st.id, st.n, (splits[i]!.position as NexmarkPosition), this.generator, this.options, this.clock));
  }

  poll(out: SourceOutput<NexmarkEvent>, max: number): SourceStatus {
    if (!this.registered) {
      // Every split holds the watermark back from the start, not only once it is first polled.
      this.registered = true;
      for (const s of this.splits) s.register(out);
    }
    let waiting = false;
    // One split per poll (a batch holds events of one split): the one furthest behind first, so
    // the order follows from the positions alone and a restored job goes on exactly as before.
    const order = this.splits.filter((s) => !s.ended).sort((a, b) => a.next - b.next);
    for (const s of order) {
      const status = s.poll(out, max);
      if (status === 'more') return 'more';
      if (status === 'wait') waiting = true;
    }
    if (this.splits.every((s) => s.ended)) return 'end';
    return waiting ? 'wait' : 'more';
  }

  /** Live mode: resolves when the next event is due. */
  ready(): Promise<void> {
    let due = Infinity;
    for (const s of this.splits) if (!s.ended) due = Math.min(due, this.generator.time(s.next));
    const delay = due === Infinity ? 1 : Math.max(1, due - this.clock.now());
    return new Promise((resolve) => setTimeout(resolve, Math.min(delay, 50)));
  }

  snapshot(): Split<NexmarkPosition>[] {
    return this.splits.map((s) => ({ id: s.id, position: { next: s.next, pending: s.ids.slice() } }));
  }
}

/** One stride of the event sequence, with its held-back events. */
class NexmarkSplit {
  next: number;
  ended = false;
  /** Held-back events (disorder): a binary min-heap of (arrival key, event number). */
  private keys: number[] = [];
  ids: number[] = [];
  private out: SplitOutput<NexmarkEvent> | null = null;
  private readonly count: number;
  private readonly disorder: number;
  private readonly live: boolean;

  constructor(
    readonly id: string,
    private readonly step: number,
    position: NexmarkPosition,
    private readonly gen: NexmarkGenerator,
    options: NexmarkSourceOptions,
    private readonly clock: SourceContext['clock'],
  ) {
    this.next = position.next;
    this.count = options.events ?? Infinity;
    this.disorder = options.disorder ?? 0;
    this.live = options.live ?? false;
    for (const id of position.pending) this.hold(id);
  }

  /** Registers the split's output (it holds the watermark back from now on), finished if it already is. */
  register(parent: SourceOutput<NexmarkEvent>): void {
    const out = (this.out ??= parent.split(this.id));
    if (this.next >= this.count && this.ids.length === 0) this.end(out);
  }

  poll(parent: SourceOutput<NexmarkEvent>, max: number): SourceStatus {
    const out = (this.out ??= parent.split(this.id));
    const gen = this.gen;
    const step = this.step;
    let n = this.next;
    let count = this.count;
    if (this.live) {
      // Only events whose time has come: at most up to the event number due now.
      const due = Math.floor((this.clock.now() - gen.baseTime) * (gen.rate / 1000)) + 1;
      if (due <= n && n < count) return 'wait';
      count = Math.min(count, due);
    }
    if (this.disorder === 0) {
      for (let k = 0; k < max && n < count; k++, n += step) out.emit(gen.event(n), gen.time(n));
      this.next = n;
      if (n >= this.count) return this.end(out);
      return n >= count ? 'wait' : 'more';
    }
    let emitted = 0;
    while (emitted < max) {
      if (n < count) {
        const t = gen.time(n);
        while (this.ids.length > 0 && this.keys[0]! < t && emitted < max) {
          const id = this.pop();
          out.emit(gen.event(id), gen.time(id));
          emitted++;
        }
        if (emitted >= max) break;
        this.hold(n);
        n += step;
      } else if (n >= this.count && this.ids.length > 0) {
        // End of input: deliver what is held back.
        const id = this.pop();
        out.emit(gen.event(id), gen.time(id));
        emitted++;
      } else break;
    }
    this.next = n;
    if (n >= this.count && this.ids.length === 0) return this.end(out);
    return n >= count && emitted < max ? 'wait' : 'more';
  }

  private end(out: SplitOutput<NexmarkEvent>): SourceStatus {
    this.ended = true;
    out.finish();
    return 'end';
  }

  /** Arrival key of event n: its time plus a jitter in [0, disorder]. */
  private arrival(n: number): number {
    const jitter = fmix32((n >>> 0) ^ fmix32(this.gen.seed + 0x51ed27)) % (this.disorder + 1);
    return this.gen.time(n) + jitter;
  }

  private hold(n: number): void {
    const key = this.arrival(n);
    const keys = this.keys;
    const ids = this.ids;
    let i = ids.length;
    keys.push(key);
    ids.push(n);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (keys[p]! < key || (keys[p] === key && ids[p]! < n)) break;
      keys[i] = keys[p]!;
      ids[i] = ids[p]!;
      i = p;
    }
    keys[i] = key;
    ids[i] = n;
  }

  private pop(): number {
    const keys = this.keys;
    const ids = this.ids;
    const top = ids[0]!;
    const lastKey = keys.pop()!;
    const lastId = ids.pop()!;
    const size = ids.length;
    if (size > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= size) break;
        const r = l + 1;
        let c = l;
        if (r < size && (keys[r]! < keys[l]! || (keys[r] === keys[l] && ids[r]! < ids[l]!))) c = r;
        if (keys[c]! > lastKey || (keys[c] === lastKey && ids[c]! > lastId)) break;
        keys[i] = keys[c]!;
        ids[i] = ids[c]!;
        i = c;
      }
      keys[i] = lastKey;
      ids[i] = lastId;
    }
    return top;
  }
}
