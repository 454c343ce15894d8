import type { CombineSpec, Partial } from '../plan/graph.ts';
import type { Ship } from '../plan/physical.ts';
import { checkKey, type Key, keyGroupOf } from '../state/key-group.ts';
import type { Barrier } from './barrier.ts';
import { Batch } from './batch.ts';
import type { Collector, EdgeTarget } from './collector.ts';
import type { RuntimeEnv } from './env.ts';
import type { OperatorMetrics } from './operator.ts';
import { reportDeadLetter } from './operator-node.ts';

/**
 * The sending side of an exchange channel to another thread: a target like any other, which
 * encodes batches and sends them, in order with watermarks, barriers and end markers, within the
 * credits the receiver granted. While it waits for credit (`blocked`), the tasks that feed it take
 * no more input — credit-based backpressure, so memory stays bounded when a receiver is slow.
 */
export interface RemoteWriter extends EdgeTarget {
  readonly blocked: boolean;
  /** Sends what was written since the last flush (the loop flushes after every turn). */
  flush(): void;
  /** Resolves once `blocked` has turned false (or right away if it is). */
  unblocked(): Promise<void>;
}

/** The receiving side of an exchange channel from another thread. */
export interface RemoteReader {
  /** Whether messages are waiting. */
  readonly pending: boolean;
  /** Delivers up to `max` waiting messages to the target node; returns how many it delivered. */
  deliver(max: number): number;
  /** Returns the credit of what was processed (the loop flushes after every turn). */
  flush(): void;
}

/** Creates the channels of a job's exchanges that cross threads. */
export interface ChannelFactory {
  /**
   * The writer of exchange edge `edge` from sender instance `sender` to receiver instance
   * `receiver`; a record it cannot encode goes to `unencodable` (the sender's dead letters).
   */
  writer(edge: number, sender: number, receiver: number, unencodable: (record: unknown, error: unknown, time: number) => void): RemoteWriter;
  /** The reader of that channel, delivering into `target`'s input channel `channel`. */
  reader(edge: number, sender: number, receiver: number, target: EdgeTarget & { isBlocked(channel: number): boolean }, channel: number): RemoteReader;
}

/** Which receiver instance owns key group `kg` (the inverse of `keyGroupRange`). */
export function instanceOfKeyGroup(kg: number, parallelism: number, maxParallelism: number): number {
  return Math.floor((kg * parallelism) / maxParallelism);
}

/**
 * Routes each record of an output port to the instances of the next step — by key group (`hash`),
 * round-robin (`rebalance`), to all (`broadcast`) or to the one instance (`gather`) — into one
 * batch per target, handed over when full and at the end of every incoming batch; watermarks,
 * idleness, barriers and end go to every target, after the records before them. A record whose
 * key cannot be computed is a dead letter of the receiving (keyed) step.
 *
 * With a combiner (two-phase aggregation), records are not sent but folded into one partial
 * aggregate per (pane, key) of the batch; the partials go out at the end of the batch,
 * each with its pane's start as time, so they meet the same watermark the records would have.
 */
/** A key's partial aggregate in a combining partitioner. */
interface PartialEntry {
  readonly k: Key;
  acc: unknown;
  n: number;
  /** Pane. */
  p: number;
  /** Target instance. */
  readonly t: number;
  /** The batch the partial belongs to. */
  epoch: number;
}

/** Partials kept between batches at most (beyond, all are dropped after a batch). */
const MAX_KEPT_PARTIALS = 8192;

export class Partitioner implements EdgeTarget {
  private readonly buffers: Array<Batch<unknown>>;
  private rr = 0;
  /**
   * Key → its partial (combining only): accumulator, count, pane, target instance, and the batch
   * it belongs to. Entries are kept across batches (a key's target is computed once, no entry is
   * allocated per batch) and dropped together when there are more than {@link MAX_KEPT_PARTIALS}.
   */
  private readonly partials = new Map<Key, PartialEntry>();
  /** Entries in use in the batch being folded, in first-use order. */
  private readonly used: PartialEntry[] = [];
  private epoch = 0;

  constructor(
    private readonly ship: Exclude<Ship, 'chain' | 'forward'>,
    private readonly key: ((value: unknown) => Key) | undefined,
    /** One per receiver instance: a node's input channel, or a remote writer. */
    private readonly targets: ReadonlyArray<{ target: EdgeTarget; channel: number }>,
    private readonly env: RuntimeEnv,
    /** The step that keys the records, for dead letters. */
    private readonly receivingStep: string,
    /** Where that step's dead letters go from here (the sender's dead-letter port), and its counters. */
    private readonly deadLetterPort: Collector<unknown> | null,
    readonly metrics: OperatorMetrics,
    private readonly combiner: CombineSpec | undefined,
  ) {
    this.buffers = targets.map(() => new Batch<unknown>(env.batchSize));
  }

  /** The targets (for the executor's analysis of what feeds what). */
  targetsList(): EdgeTarget[] {
    return this.targets.map((t) => t.target);
  }

  pushBatch(batch: Batch<unknown>): void {
    if (this.combiner !== undefined) {
      this.combine(batch, this.combiner);
      return;
    }
    const { values, times, length } = batch;
    const buffers = this.buffers;
    const n = buffers.length;
    if (this.ship === 'gather') {
      this.targets[0]!.target.pushBatch(batch, this.targets[0]!.channel);
      return;
    }
    if (this.ship === 'broadcast') {
      for (let t = 0; t < n; t++) this.targets[t]!.target.pushBatch(batch, this.targets[t]!.channel);
      return;
    }
    if (this.ship === 'rebalance') {
      let rr = this.rr;
      for (let i = 0; i < length; i++) {
        const b = buffers[rr]!;
        b.push(values[i], times[i]!);
        if (b.length === b.capacity) this.hand(rr);
        rr = rr + 1 === n ? 0 : rr + 1;
      }
      this.rr = rr;
    } else {
      const keyOf = this.key!;
      const maxP = this.env.maxParallelism;
      let i = 0;
      while (i < length) {
        try {
          for (; i < length; i++) {
            const t = instanceOfKeyGroup(keyGroupOf(checkKey(keyOf(values[i])), maxP), n, maxP);
            const b = buffers[t]!;
            b.push(values[i], times[i]!);
            if (b.length === b.capacity) this.hand(t);
          }
        } catch (error) {
          this.metrics.deadLetters++;
          reportDeadLetter(this.env, this.receivingStep, this.deadLetterPort, values[i], error, times[i]!);
          i++;
        }
      }
    }
    this.handAll();
  }

  /**
   * Folds the batch into one partial per key and pane, then sends the partials. The key's target
   * instance is computed once per key and batch; a record of a later pane than its key's partial
   * sends that partial on and starts a new one (disorder across panes is rare, so one map suffices).
   */
  private combine(batch: Batch<unknown>, c: CombineSpec): void {
    const { values, times, length } = batch;
    const n = this.targets.length;
    const maxP = this.env.maxParallelism;
    const partials = this.partials;
    const used = this.used;
    const epoch = ++this.epoch;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const v = values[i];
          const k = c.key(v);
          const p = c.pane(times[i]!);
          let e = partials.get(k);
          if (e !== undefined && e.epoch === epoch) {
            if (e.p === p) {
              e.acc = c.add(e.acc, v);
              e.n++;
              continue;
            }
            this.emitPartial(e, c);
            e.p = p;
            e.acc = c.add(c.create(), v);
            e.n = 1;
            continue;
          }
          if (e === undefined) {
            checkKey(k);
            const t = n === 1 ? 0 : instanceOfKeyGroup(keyGroupOf(k, maxP), n, maxP);
            e = { k, acc: c.add(c.create(), v), n: 1, p, t, epoch };
            partials.set(k, e);
          } else {
            e.epoch = epoch;
            e.p = p;
            e.acc = c.add(c.create(), v);
            e.n = 1;
          }
          used.push(e);
        }
      } catch (error) {
        this.metrics.deadLetters++;
        reportDeadLetter(this.env, this.receivingStep, this.deadLetterPort, values[i], error, times[i]!);
        i++;
      }
    }
    for (let j = 0; j < used.length; j++) this.emitPartial(used[j]!, c);
    used.length = 0;
    if (partials.size > MAX_KEPT_PARTIALS) partials.clear();
    this.handAll();
  }

  private emitPartial(e: PartialEntry, c: CombineSpec): void {
    const b = this.buffers[e.t]!;
    b.push({ k: e.k, a: c.encode(e.acc), n: e.n } satisfies Partial, e.p);
    if (b.length === b.capacity) this.hand(e.t);
  }

  private hand(t: number): void {
    const b = this.buffers[t]!;
    if (b.length === 0) return;
    this.targets[t]!.target.pushBatch(b, this.targets[t]!.channel);
    b.length = 0;
  }

  private handAll(): void {
    for (let t = 0; t < this.buffers.length; t++) this.hand(t);
  }

  pushWatermark(watermark: number): void {
    this.handAll();
    for (const t of this.targets) t.target.pushWatermark(watermark, t.channel);
  }

  pushIdle(idle: boolean): void {
    this.handAll();
    for (const t of this.targets) t.target.pushIdle(idle, t.channel);
  }

  pushBarrier(barrier: Barrier): void {
    this.handAll();
    for (const t of this.targets) t.target.pushBarrier(barrier, t.channel);
  }

  pushEnd(): void {
    this.handAll();
    for (const t of this.targets) t.target.pushEnd(t.channel);
  }
}
