import type { Source, SourceContext, SourceOutput, SourceReader, SourceStatus, Split } from '../runtime/source.ts';
import { DEFAULT_STRIDE_SPLITS, StrideCursor, strideSplits } from '../connectors/generator/source.ts';
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
   * Number of generator splits (default 16): split k of n generates events k, k + n, … — as
   * NEXMark's multiple generators divide one sequence — and a restored job can run at most this
   * many instances of the source.
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
 * seed and n. The event sequence is dealt into stride splits (split k of n generates events k,
 * k + n, …); an instance generates the events of its splits in increasing order, so one instance
 * generates exactly the sequence 0, 1, 2, …, whatever the number of splits. A split's position is
 * its next event number and the events it holds back (disorder), so a restored job regenerates
 * exactly the events after its checkpoint, at any parallelism.
 */
export class NexmarkSource implements Source<NexmarkEvent> {
  readonly bounded: boolean;
  readonly maxParallelism: number;
  readonly generator: NexmarkGenerator;

  constructor(private readonly options: NexmarkSourceOptions = {}) {
    this.generator = new NexmarkGenerator(options);
    this.bounded = Number.isFinite(options.events ?? Infinity);
    this.maxParallelism = options.splits ?? DEFAULT_STRIDE_SPLITS;
    const disorder = options.disorder ?? 0;
    if (!(disorder >= 0)) throw new RangeError(`disorder must be >= 0, got ${options.disorder}`);
  }

  splits(): Split<NexmarkPosition>[] {
    return strideSplits(this.maxParallelism).map((s) => ({ id: s.id, position: { next: s.position, pending: [] } }));
  }

  createReader(ctx: SourceContext): SourceReader<NexmarkEvent> {
    return new NexmarkReader(this.generator, this.options, ctx.clock);
  }
}

/** Generates the events of its splits in order, holding some back (disorder). */
class NexmarkReader implements SourceReader<NexmarkEvent> {
  private cursor = new StrideCursor([]);
  /** Held-back events (disorder): a binary min-heap of (arrival key, event number). */
  private keys: number[] = [];
  private ids: number[] = [];
  private readonly count: number;
  private readonly disorder: number;
  private readonly live: boolean;

  constructor(
    private readonly gen: NexmarkGenerator,
    options: NexmarkSourceOptions,
    private readonly clock: SourceContext['clock'],
  ) {
    this.count = options.events ?? Infinity;
    this.disorder = options.disorder ?? 0;
    this.live = options.live ?? false;
  }

  open(splits: readonly Split[]): void {
    this.cursor = new StrideCursor(splits.map((s) => ({ id: s.id, position: (s.position as NexmarkPosition).next })));
    for (const s of splits) for (const id of (s.position as NexmarkPosition).pending) this.hold(id);
  }

  poll(out: SourceOutput<NexmarkEvent>, max: number): SourceStatus {
    const gen = this.gen;
    const cursor = this.cursor;
    let limit = this.count;
    if (this.live) {
      // Only events whose time has come: up to the event number due now.
      limit = Math.min(limit, Math.floor((this.clock.now() - gen.baseTime) * (gen.rate / 1000)) + 1);
    }
    let n = cursor.next();
    if (this.disorder === 0) {
      let k = 0;
      for (; k < max && n < limit; k++) {
        out.emit(gen.event(n), gen.time(n));
        cursor.advance();
        n = cursor.next();
      }
      if (n >= this.count) return 'end';
      return n >= limit ? 'wait' : 'more';
    }
    let emitted = 0;
    while (emitted < max) {
      if (n < limit) {
        const t = gen.time(n);
        while (this.ids.length > 0 && this.keys[0]! < t && emitted < max) {
          const id = this.pop();
          out.emit(gen.event(id), gen.time(id));
          emitted++;
        }
        if (emitted >= max) break;
        this.hold(n);
        cursor.advance();
        n = cursor.next();
      } else if (n >= this.count && this.ids.length > 0) {
        // End of input: deliver what is held back.
        const id = this.pop();
        out.emit(gen.event(id), gen.time(id));
        emitted++;
      } else break;
    }
    if (n >= this.count && this.ids.length === 0) return 'end';
    return n >= limit && emitted < max ? 'wait' : 'more';
  }

  /** Live mode: resolves when the next event is due. */
  ready(): Promise<void> {
    const next = this.cursor.next();
    const due = next === Infinity ? this.clock.now() : this.gen.time(next);
    const delay = Math.max(1, due - this.clock.now());
    return new Promise((resolve) => setTimeout(resolve, Math.min(delay, 50)));
  }

  snapshot(): Split<NexmarkPosition>[] {
    return this.cursor.positions().map((s) => ({
      id: s.id,
      position: { next: s.position, pending: this.ids.filter((id) => this.cursor.splitOf(id) === s.id) },
    }));
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
