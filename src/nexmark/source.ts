import type { Source, SourceContext, SourceOutput, SourceStatus } from '../runtime/source.ts';
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
}

/**
 * NEXMark events as a source, with event times. Deterministic: its position is the next event
 * number (and, with disorder, the events held back), so a restored job regenerates exactly the
 * events after its snapshot. Parallel instances generate disjoint event numbers.
 */
export class NexmarkSource implements Source<NexmarkEvent> {
  readonly bounded: boolean;
  readonly generator: NexmarkGenerator;
  private readonly count: number;
  private readonly disorder: number;
  private next = -1;
  private step = 1;
  /** Held-back events (disorder): a binary min-heap of (arrival key, event number). */
  private keys: number[] = [];
  private ids: number[] = [];
  private restored: { next: number; pending: number[] } | null = null;
  private readonly live: boolean;
  private clock: SourceContext['clock'] | null = null;

  constructor(options: NexmarkSourceOptions = {}) {
    this.generator = new NexmarkGenerator(options);
    this.count = options.events ?? Infinity;
    this.bounded = Number.isFinite(this.count);
    this.disorder = options.disorder ?? 0;
    if (!(this.disorder >= 0)) throw new RangeError(`disorder must be >= 0, got ${options.disorder}`);
    this.live = options.live ?? false;
  }

  open(ctx: SourceContext): void {
    this.step = ctx.parallelism;
    this.clock = ctx.clock;
    if (this.restored !== null) {
      this.next = this.restored.next;
      for (const id of this.restored.pending) this.hold(id);
    } else this.next = ctx.instance;
  }

  poll(out: SourceOutput<NexmarkEvent>, max: number): SourceStatus {
    const gen = this.generator;
    const step = this.step;
    let n = this.next;
    let count = this.count;
    if (this.live) {
      // Only events whose time has come: at most up to the event number due now.
      const due = Math.floor((this.clock!.now() - gen.baseTime) * (gen.rate / 1000)) + 1;
      if (due <= n && n < count) return 'wait';
      count = Math.min(count, due);
    }
    if (this.disorder === 0) {
      for (let k = 0; k < max && n < count; k++, n += step) out.emit(gen.event(n), gen.time(n));
      this.next = n;
      return n >= this.count ? 'end' : n >= count ? 'wait' : 'more';
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
    if (n >= this.count && this.ids.length === 0) return 'end';
    return n >= count && emitted < max ? 'wait' : 'more';
  }

  /** Live mode: resolves when the next event is due. */
  ready(): Promise<void> {
    const due = this.generator.time(this.next);
    const delay = Math.max(1, due - (this.clock?.now() ?? due));
    return new Promise((resolve) => setTimeout(resolve, Math.min(delay, 50)));
  }

  snapshot(): { next: number; pending: number[] } {
    return { next: this.next, pending: this.ids.slice() };
  }

  restore(state: unknown): void {
    this.restored = state as { next: number; pending: number[] };
  }

  /** Arrival key of event n: its time plus a jitter in [0, disorder]. */
  private arrival(n: number): number {
    const jitter = fmix32((n >>> 0) ^ fmix32(this.generator.seed + 0x51ed27)) % (this.disorder + 1);
    return this.generator.time(n) + jitter;
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
