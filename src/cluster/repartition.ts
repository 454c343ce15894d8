/**
 * The two ends of an exchange between the tasks of a cluster job, through an internal Kafka
 * topic (a "repartition topic"): every task writes the records bound for the next step into the
 * partition that owns their key group ({@link RepartitionSink}), and task t reads partition t
 * ({@link RepartitionSource}). A global exchange (everything to one instance) is a topic of one
 * partition, read by task 0.
 *
 * Records cross exactly once: the sink is the Kafka sink (a transaction per checkpoint), the
 * source the Kafka source (`read_committed`, offsets in checkpoints). Time crosses too: each
 * writing task (a *producer*) writes its watermark and idleness into every partition, and a
 * reader's watermark is the minimum over the producers of its partitions.
 *
 * **Value layout** (little-endian), the same for every Kafka record of the topic. A Kafka record
 * carries a *batch* of the job's records bound for one partition — what one write of the sink
 * holds for it — so that Kafka's per-record costs (framing, varints, the client's buffers) are
 * paid once per batch, not per record: a record crosses in ~1 µs instead of ~7.
 *
 * ```
 * bytes 0–1   magic 0x53 0x52 ('SR')
 * byte  2     layout version (2)
 * byte  3     kind: 2 a batch of records, 1 a watermark mark
 * bytes 4–7   uint32: the partition it is written to
 * batch:      bytes 8–11 uint32 n; bytes 12…12+8n the n event times (float64); then the n
 *             values, one msgpack array (self-contained: record structures inline)
 * mark:       bytes 8–15 float64 watermark (±Infinity allowed); 16–19 uint32 producer,
 *             20–23 uint32 producers, byte 24 idle (0 or 1)
 * ```
 *
 * A batch is emitted whole between two polls of the source, so a checkpoint's position (a Kafka
 * offset) never falls inside one.
 */
import { Admin } from '@platformatic/kafka';
import { Packr, Unpackr } from 'msgpackr';
import { instanceOfKeyGroup } from '../runtime/exchange.ts';
import { Batch } from '../runtime/batch.ts';
import type { Committable, Sink, SinkContext } from '../runtime/sink.ts';
import type { Source, SourceContext, SourceOutput, SourceReader, SourceStatus, Split, SplitOutput } from '../runtime/source.ts';
import { checkKey, DEFAULT_MAX_PARALLELISM, type Key, keyGroupOf } from '../state/key-group.ts';
import { MAX_WATERMARK, MIN_WATERMARK } from '../time/watermark.ts';
import { previewOf } from '../connectors/format.ts';
import { brokersOf, describeKafkaError, isRetriable, type KafkaConnection, PlatformaticKafkaClient } from '../connectors/kafka/client.ts';
import type { CheckpointTransactions, JoinsCheckpointTransactions } from '../connectors/kafka/checkpoint-transactions.ts';
import { type KafkaCommittable, KafkaSink, type KafkaSinkOptions } from '../connectors/kafka/sink.ts';
import { type KafkaPosition, KafkaSource, type KafkaSourceOptions } from '../connectors/kafka/source.ts';
import { newStats, Retrier, type KafkaStats } from '../connectors/kafka/retry.ts';

// ---- value layout ----------------------------------------------------------------------------

const MAGIC_0 = 0x53;
const MAGIC_1 = 0x52;
const LAYOUT_VERSION = 2;
const KIND_MARK = 1;
const KIND_BATCH = 2;
const BATCH_HEADER_BYTES = 12;
const MARK_BYTES = 25;
/** Encoded bytes of a batch at most (the Kafka sink's default record limit is 1 000 000). */
const MAX_BATCH_BYTES = 900_000;
/** Key groups are routed as uint32 below {@link GLOBAL_ROUTE}; Flink's limit is 32 768. */
const MAX_KEY_GROUPS = 1 << 15;
/** Kafka's error code for CreateTopics on an existing topic. */
const TOPIC_ALREADY_EXISTS = 36;

/**
 * msgpack as the exchanges between threads write it (`runtime/batch-codec.ts`: `moreTypes`,
 * `mapsAsObjects: false`, records for plain objects, functions refused), so a record crosses a
 * repartition topic the way it crosses threads. Not the batch codec itself: its channels share
 * state in-band (shapes defined once, sequence numbers), which a topic read from a checkpoint's
 * offset, by several readers and written by several producers, cannot keep; each value here
 * stands alone.
 */
function msgpackOptions(): ConstructorParameters<typeof Packr>[0] {
  return {
    useRecords: true,
    moreTypes: true,
    mapsAsObjects: false,
    structuredClone: false,
    writeFunction: () => {
      throw new TypeError('a function cannot be written to a repartition topic');
    },
  } as ConstructorParameters<typeof Packr>[0];
}

// ---- routing ---------------------------------------------------------------------------------

/**
 * The partition of a repartition topic with `partitions` partitions that owns key group
 * `keyGroup` (of `maxKeyGroups`). Partition p owns the contiguous range of key groups that
 * instance p of a step at parallelism `partitions` owns (`keyGroupRange(p, partitions,
 * maxKeyGroups)`: [⌈p·K/P⌉, ⌈(p+1)·K/P⌉)), so the task reading partition p holds exactly the
 * keyed state of the records it reads — Flink's `KeyGroupRangeAssignment`, and the rule of the
 * in-process `hash` exchange (⌊kg·P/K⌋).
 *
 * @example
 * partitionOfKeyGroup(keyGroupOf('user-7', 128), 4, 128); // 0..3, the same for every producer
 * partitionOfKeyGroup(127, 1, 128); // 0: one partition owns everything
 */
export function partitionOfKeyGroup(keyGroup: number, partitions: number, maxKeyGroups: number = DEFAULT_MAX_PARALLELISM): number {
  if (!(Number.isInteger(maxKeyGroups) && maxKeyGroups >= 1 && maxKeyGroups <= MAX_KEY_GROUPS)) throw new RangeError(`maxKeyGroups must be an integer in [1, ${MAX_KEY_GROUPS}], got ${maxKeyGroups}`);
  if (!(Number.isInteger(partitions) && partitions >= 1 && partitions <= maxKeyGroups)) throw new RangeError(`partitions must be an integer in [1, maxKeyGroups = ${maxKeyGroups}], got ${partitions}`);
  if (!(Number.isInteger(keyGroup) && keyGroup >= 0 && keyGroup < maxKeyGroups)) throw new RangeError(`keyGroup must be an integer in [0, ${maxKeyGroups}), got ${keyGroup}`);
  return instanceOfKeyGroup(keyGroup, partitions, maxKeyGroups);
}

// ---- the sink --------------------------------------------------------------------------------

/** Options of {@link RepartitionSink}. */
export interface RepartitionSinkOptions<T> {
  /** Brokers, TLS and SASL (default brokers: `SPATE_KAFKA_BROKERS`, else 127.0.0.1:9092). */
  readonly connection?: KafkaConnection;
  /** The repartition topic (it must exist: {@link ensureRepartitionTopic}). */
  readonly topic: string;
  /** The topic's partitions: the parallelism of the step that reads it. Checked against the topic. */
  readonly partitions: number;
  /**
   * The key of a record, as `keyBy` would compute it. Absent: a global exchange, every record to
   * partition 0.
   */
  readonly key?: (value: T) => Key;
  /** Key groups (the job's `maxParallelism`; default 128): must match the reading side's. */
  readonly maxKeyGroups?: number;
  /** This task's index: the producer its watermark marks name, in [0, producers). */
  readonly producer: number;
  /** How many tasks write the topic (T): what every reader waits for. */
  readonly producers: number;
  /**
   * Watermark marks are written at most this often (default 200 ms), and always at a checkpoint,
   * at the end of input and when the input becomes idle or active.
   */
  readonly watermarkIntervalMs?: number;
  /** Options of the underlying {@link KafkaSink} (transactions, buffering, retries). */
  readonly kafka?: Pick<
    KafkaSinkOptions<Uint8Array>,
    'transactionalIdPrefix' | 'transactionTimeoutMs' | 'transactionPoolSize' | 'maxBufferedRecords' | 'maxRecordBytes' | 'maxRequestBytes' | 'retry'
  >;
}

/**
 * The writing end of an exchange through a repartition topic: routes each record to the
 * partition owning its key group ({@link partitionOfKeyGroup}; partition 0 without `key`) and
 * writes it, exactly once, with the {@link KafkaSink} — a Kafka transaction per checkpoint,
 * committed when the checkpoint completes, so `read_committed` readers see each record once
 * across failures. The value carries the record (msgpack) and its exact event time.
 *
 * **Time.** The sink hears its input's watermark and idleness (`Sink.watermark`, `Sink.idle`)
 * and writes a mark `{ producer, watermark, idle }` into *every* partition: when the watermark
 * advances (at most every `watermarkIntervalMs`; the latest one is also written at every
 * checkpoint's pre-commit, so a checkpoint carries it, and at once when the input ends with
 * `MAX_WATERMARK`), and whenever the input becomes idle or active again. A mark follows, in its
 * partition, every record it covers; it becomes visible with its transaction, like the records.
 *
 * One instance per producer (`parallelism: 1`): two instances writing marks under one producer
 * index would overwrite each other's watermark. Its transactional ids carry the task's scope
 * (`SinkContext.scope`), or `p<producer>` when the job runs without one, so the producers of one
 * topic never fence each other.
 *
 * @example
 * // Task `t` of T: what `keyBy(r => r.user)` would send to the next task.
 * stream.sink(new RepartitionSink<Click>({ topic: 'job-clicks-by-user', partitions: T, key: (r) => r.user, producer: t, producers: T }), { id: 'to-by-user' });
 */
export class RepartitionSink<T> implements Sink<T, KafkaCommittable>, JoinsCheckpointTransactions {
  readonly parallelism = 1;
  private readonly inner: KafkaSink<Uint8Array>;
  private readonly topic: string;
  private readonly partitions: number;
  private readonly maxKeyGroups: number;
  private readonly producer: number;
  private readonly producers: number;
  private readonly interval: number;
  private readonly keyOf: ((value: T) => Key) | undefined;
  /** Key group → partition. */
  private readonly owner: Uint32Array;
  private readonly packr = new Packr(msgpackOptions());
  private ctx!: SinkContext;
  /** The encoded batches of one write. */
  private out: Batch<Uint8Array>;
  /** Per partition, the records of the write in progress bound for it. */
  private readonly groups: Array<{ values: unknown[]; times: number[] }>;
  private readonly marks: Batch<Uint8Array>;
  /** The input's watermark and idleness now, and as last written. */
  private watermarkNow = MIN_WATERMARK;
  private idleNow = false;
  private watermarkWritten = MIN_WATERMARK;
  private idleWritten = false;
  private lastMarkAt = -Infinity;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** The topic does not have `partitions` partitions: the next call fails the job. */
  private mismatch: Error | null = null;
  private closed = false;

  constructor(options: RepartitionSinkOptions<T>) {
    const { topic, partitions, producer, producers } = options;
    if (typeof topic !== 'string' || topic.length === 0) throw new Error('RepartitionSink: `topic` is required');
    const maxKeyGroups = options.maxKeyGroups ?? DEFAULT_MAX_PARALLELISM;
    if (!(Number.isInteger(maxKeyGroups) && maxKeyGroups >= 1 && maxKeyGroups <= MAX_KEY_GROUPS)) throw new Error(`RepartitionSink: maxKeyGroups must be an integer in [1, ${MAX_KEY_GROUPS}], got ${String(maxKeyGroups)}`);
    if (!(Number.isInteger(partitions) && partitions >= 1)) throw new Error(`RepartitionSink: partitions must be an integer ≥ 1, got ${String(partitions)}`);
    if (options.key !== undefined && partitions > maxKeyGroups) throw new Error(`RepartitionSink: ${partitions} partitions but only ${maxKeyGroups} key groups; some partitions would get no key group`);
    if (!(Number.isInteger(producers) && producers >= 1)) throw new Error(`RepartitionSink: producers must be an integer ≥ 1, got ${String(producers)}`);
    if (!(Number.isInteger(producer) && producer >= 0 && producer < producers)) throw new Error(`RepartitionSink: producer must be an integer in [0, ${producers}), got ${String(producer)}`);
    const interval = options.watermarkIntervalMs ?? 200;
    if (!(interval >= 0)) throw new Error(`RepartitionSink: watermarkIntervalMs must be ≥ 0, got ${String(interval)}`);
    this.topic = topic;
    this.partitions = partitions;
    this.maxKeyGroups = maxKeyGroups;
    this.producer = producer;
    this.producers = producers;
    this.interval = interval;
    this.keyOf = options.key;
    this.owner = new Uint32Array(maxKeyGroups);
    if (options.key !== undefined) for (let kg = 0; kg < maxKeyGroups; kg++) this.owner[kg] = instanceOfKeyGroup(kg, partitions, maxKeyGroups);
    this.marks = new Batch<Uint8Array>(partitions);
    this.groups = Array.from({ length: partitions }, () => ({ values: [], times: [] }));
    this.out = new Batch<Uint8Array>(partitions);
    this.inner = new KafkaSink<Uint8Array>({
      ...options.kafka,
      topic,
      ...(options.connection === undefined ? {} : { connection: options.connection }),
      guarantee: 'exactly-once',
      format: 'bytes',
      partition: this.route,
      // Event time travels in the value; the Kafka timestamp is the write time, which retention goes by.
      timestamp: 'now',
    });
  }

  /** Trouble with the cluster (the underlying Kafka sink's counters). */
  get stats(): KafkaStats {
    return this.inner.stats;
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    await this.inner.open({
      stepId: ctx.stepId,
      instance: ctx.instance,
      parallelism: ctx.parallelism,
      clock: ctx.clock,
      restoredCheckpoint: ctx.restoredCheckpoint,
      // What the Kafka sink refuses (too large) is reported as the record, not its bytes.
      deadLetter: (record, error, time) => ctx.deadLetter(record instanceof Uint8Array ? describeValue(record) : record, error, time),
      ...(ctx.log === undefined ? {} : { log: ctx.log.bind(ctx) }),
      scope: ctx.scope ?? `p${this.producer}`,
    });
  }

  write(batch: Batch<T>): void {
    this.check();
    const { values, times, length } = batch;
    const keyOf = this.keyOf;
    const groups = this.groups;
    // Records to their partitions' groups (a record whose key fails is a dead letter).
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const g = groups[keyOf === undefined ? 0 : this.owner[keyGroupOf(checkKey(keyOf(values[i] as T)), this.maxKeyGroups)]!]!;
          g.values.push(values[i]);
          g.times.push(times[i]!);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
    this.out.length = 0;
    for (let p = 0; p < this.partitions; p++) {
      const g = groups[p]!;
      if (g.values.length === 0) continue;
      this.encodeGroup(p, g.values, g.times, 0, g.values.length);
      g.values.length = 0;
      g.times.length = 0;
    }
    // encodeGroup may have replaced `out` by a bigger batch.
    const out = this.out;
    if (out.length > 0) this.inner.write(out);
    out.length = 0;
    this.check();
  }

  /** The input's watermark advanced: written to every partition now, or within `watermarkIntervalMs`. */
  watermark(watermark: number): void {
    this.check();
    if (watermark <= this.watermarkNow) return;
    this.watermarkNow = watermark;
    const now = this.ctx.clock.now();
    if (watermark === MAX_WATERMARK || now - this.lastMarkAt >= this.interval) this.writeMarks();
    else if (this.timer === null) {
      this.timer = setTimeout(this.onTimer, Math.max(1, this.lastMarkAt + this.interval - now));
      this.timer.unref?.();
    }
  }

  /** The input became idle or active: written to every partition now. */
  idle(idle: boolean): void {
    this.check();
    this.idleNow = idle;
    if (idle !== this.idleWritten) this.writeMarks();
  }

  backpressure(): Promise<void> | undefined {
    return this.inner.backpressure();
  }

  /** Writes the latest watermark if it is not written yet, then pre-commits the Kafka transaction. */
  preCommit(checkpointId = 0): Promise<KafkaCommittable | undefined> | undefined {
    this.check();
    if (this.dirty()) this.writeMarks();
    return this.inner.preCommit(checkpointId);
  }

  /** Writes into the job's checkpoint transactions (see {@link KafkaSink.joinCheckpointTransactions}). */
  joinCheckpointTransactions(transactions: CheckpointTransactions): void {
    this.inner.joinCheckpointTransactions(transactions);
  }

  commit(committables: ReadonlyArray<Committable<KafkaCommittable>>): Promise<void> {
    return this.inner.commit(committables);
  }

  abort(): Promise<void> {
    return this.inner.abort();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.inner.close();
  }

  // ---- internals ----

  /** The partition of an encoded value (the Kafka sink's `partition`): read from its header. */
  private readonly route = (value: Uint8Array, partitions: number): number => {
    if (partitions !== this.partitions) {
      this.mismatch ??= new Error(`RepartitionSink: topic ${this.topic} has ${partitions} partition(s); this exchange was built for ${this.partitions} (a topic left by another job or parallelism?)`);
      return 0;
    }
    return (value as Buffer).readUInt32LE(4);
  };

  private readonly onTimer = (): void => {
    this.timer = null;
    if (this.closed || !this.dirty()) return;
    try {
      this.writeMarks();
    } catch {
      // The Kafka sink failed: its next write or pre-commit, in line with the job, fails the job.
    }
  };

  private dirty(): boolean {
    return this.watermarkNow !== this.watermarkWritten || this.idleNow !== this.idleWritten;
  }

  /** Writes a mark with the current watermark and idleness into every partition. */
  private writeMarks(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const marks = this.marks;
    const watermark = this.watermarkNow;
    const idle = this.idleNow;
    for (let p = 0; p < this.partitions; p++) {
      const b = Buffer.allocUnsafe(MARK_BYTES);
      b[0] = MAGIC_0;
      b[1] = MAGIC_1;
      b[2] = LAYOUT_VERSION;
      b[3] = KIND_MARK;
      b.writeUInt32LE(p, 4);
      b.writeDoubleLE(watermark, 8);
      b.writeUInt32LE(this.producer, 16);
      b.writeUInt32LE(this.producers, 20);
      b[24] = idle ? 1 : 0;
      marks.values[p] = b;
      marks.times[p] = 0;
    }
    marks.length = this.partitions;
    this.inner.write(marks);
    marks.length = 0;
    this.watermarkWritten = watermark;
    this.idleWritten = idle;
    this.lastMarkAt = this.ctx.clock.now();
    this.check();
  }

  /**
   * Encodes records [from, to) of a partition's group into batches on `this.out`: one if it fits
   * in {@link MAX_BATCH_BYTES}, else halves. A value that cannot be encoded is a dead letter and
   * the rest are encoded without it.
   */
  private encodeGroup(partition: number, values: unknown[], times: number[], from: number, to: number): void {
    let body: Buffer;
    try {
      body = this.packr.pack(from === 0 && to === values.length ? values : values.slice(from, to));
    } catch (error) {
      if (to - from === 1) {
        this.ctx.deadLetter(values[from], error, times[from]!);
        return;
      }
      const mid = (from + to) >>> 1;
      this.encodeGroup(partition, values, times, from, mid);
      this.encodeGroup(partition, values, times, mid, to);
      return;
    }
    const n = to - from;
    if (body.length + BATCH_HEADER_BYTES + 8 * n > MAX_BATCH_BYTES && n > 1) {
      const mid = (from + to) >>> 1;
      this.encodeGroup(partition, values, times, from, mid);
      this.encodeGroup(partition, values, times, mid, to);
      return;
    }
    const b = Buffer.allocUnsafe(BATCH_HEADER_BYTES + 8 * n + body.length);
    b[0] = MAGIC_0;
    b[1] = MAGIC_1;
    b[2] = LAYOUT_VERSION;
    b[3] = KIND_BATCH;
    b.writeUInt32LE(partition, 4);
    b.writeUInt32LE(n, 8);
    for (let k = 0; k < n; k++) b.writeDoubleLE(times[from + k]!, BATCH_HEADER_BYTES + 8 * k);
    body.copy(b, BATCH_HEADER_BYTES + 8 * n);
    const out = this.out;
    if (out.length === out.capacity) {
      const bigger = new Batch<Uint8Array>(out.capacity * 2);
      for (let k = 0; k < out.length; k++) {
        bigger.values[k] = out.values[k]!;
        bigger.times[k] = out.times[k]!;
      }
      bigger.length = out.length;
      this.out = bigger;
    }
    const o = this.out;
    o.values[o.length] = b;
    // The Kafka record's time is the write time (`timestamp: 'now'`); this one is not used.
    o.times[o.length++] = times[to - 1]!;
  }

  private check(): void {
    if (this.mismatch !== null) throw this.mismatch;
  }
}

// ---- the source ------------------------------------------------------------------------------

/** What a reader last heard from one producer in one partition. */
export interface ProducerMark {
  /** The producer's watermark (the highest it wrote). */
  readonly watermark: number;
  /** Whether its last mark said its input was idle. */
  readonly idle: boolean;
}

/**
 * The position of a partition of a repartition topic in a checkpoint: the next offset, and what
 * the marks before it said — one entry per producer, `null` for a producer not heard from yet —
 * since a restored reader does not read them again.
 */
export interface RepartitionPosition extends KafkaPosition {
  readonly producers: ReadonlyArray<ProducerMark | null>;
}

/** Options of {@link RepartitionSource}. */
export interface RepartitionSourceOptions {
  /** Brokers, TLS and SASL (default brokers: `SPATE_KAFKA_BROKERS`, else 127.0.0.1:9092). */
  readonly connection?: KafkaConnection;
  /** The repartition topic. */
  readonly topic: string;
  /** The partitions this task reads (task t of a keyed exchange: `[t]`; of a global one: `[0]` for task 0, `[]` for the others). */
  readonly partitions: readonly number[];
  /** How many tasks write the topic: the reader's watermark waits for all of them. */
  readonly producers: number;
  /**
   * End once every producer has ended (its final watermark, `MAX_WATERMARK`, read in every
   * partition), for jobs over bounded input. Default false: read until the job stops.
   */
  readonly bounded?: boolean;
  /** Options of the underlying {@link KafkaSource} (fetching, retries, the monitoring consumer group). */
  readonly kafka?: Pick<KafkaSourceOptions<Uint8Array>, 'maxWaitMs' | 'fetchMaxBytes' | 'partitionMaxBytes' | 'maxBufferedRecords' | 'retry' | 'groupId' | 'onMissingOffsets'>;
}

/**
 * The reading end of an exchange through a repartition topic: reads its partitions with the
 * {@link KafkaSource} (`read_committed`, one split per partition, offsets in checkpoints) and
 * emits each record with its exact event time. Watermarks are explicit, computed from the marks
 * the {@link RepartitionSink}s wrote: a partition's watermark is the minimum, over the producers,
 * of the last watermark each wrote into it, leaving out producers whose last mark said idle and
 * those that ended (`MAX_WATERMARK`); a producer not heard from yet holds it back. The source's
 * watermark is the minimum over its partitions whose producers are not all idle (as the runtime
 * combines input channels); when every producer of every partition is idle,
 * the source says so (`markIdle`) instead of waiting for a timeout. What the marks said is part of
 * each split's position ({@link RepartitionPosition}), so a restored reader resumes with it.
 *
 * A value the sink did not write (wrong magic, version or kind, a truncated or undecodable value,
 * a mark of an unknown producer) is a dead letter with its topic, partition, offset and start, and
 * reading goes on. A source given no partitions (tasks other than 0 of a global exchange) has no
 * splits, never emits, and is idle.
 *
 * The topic is read from its earliest offset on a fresh start: a job started without a checkpoint
 * needs a topic of its own (or an emptied one), or it reads an earlier run's records.
 *
 * @example
 * // Task `t` of T: the other end of the sink's example, then the keyed step itself.
 * p.source(new RepartitionSource<Click>({ topic: 'job-clicks-by-user', partitions: [t], producers: T }), { id: 'from-by-user' })
 *   .keyBy((r) => r.user)
 *   .window(tumbling(60_000))
 *   .aggregate(count());
 */
export class RepartitionSource<T> implements Source<T> {
  readonly bounded: boolean;
  readonly watermarks = 'explicit' as const;
  /** The reader knows when it is idle (every producer said so): silence alone never makes it idle. */
  readonly idleTimeout = 0;
  readonly topic: string;
  readonly partitions: readonly number[];
  readonly producers: number;
  private readonly kafka: KafkaSource<Uint8Array>;

  constructor(options: RepartitionSourceOptions) {
    const { topic, partitions, producers } = options;
    if (typeof topic !== 'string' || topic.length === 0) throw new Error('RepartitionSource: `topic` is required');
    if (!Array.isArray(partitions) || partitions.some((p) => !(Number.isInteger(p) && p >= 0))) throw new Error(`RepartitionSource: partitions must be an array of partition numbers, got ${JSON.stringify(partitions)}`);
    if (new Set(partitions).size !== partitions.length) throw new Error(`RepartitionSource: partitions has duplicates: ${JSON.stringify(partitions)}`);
    if (!(Number.isInteger(producers) && producers >= 1)) throw new Error(`RepartitionSource: producers must be an integer ≥ 1, got ${String(producers)}`);
    this.topic = topic;
    this.partitions = [...partitions];
    this.producers = producers;
    this.bounded = options.bounded ?? false;
    this.kafka = new KafkaSource<Uint8Array>({
      ...options.kafka,
      topic,
      ...(options.connection === undefined ? {} : { connection: options.connection }),
      format: 'bytes',
      // Anything the sink wrote fits (it refuses records above the broker's limit); larger is not ours.
      maxBytes: 64 << 20,
      startFrom: 'earliest',
      timestamps: 'none',
      // Idleness comes from the producers' marks, not from silence.
      idleTimeout: 0,
    });
  }

  /** Trouble with the cluster (the underlying Kafka source's counters). */
  get stats(): KafkaStats {
    return this.kafka.stats;
  }

  /** One split per assigned partition (`topic:partition`), from its earliest offset, no producer heard from. */
  async splits(ctx: SourceContext): Promise<Split<RepartitionPosition>[]> {
    if (this.partitions.length === 0) return [];
    const all = await this.kafka.splits(ctx);
    const byId = new Map(all.map((s) => [s.id, s]));
    return this.partitions.map((p) => {
      const s = byId.get(`${this.topic}:${p}`);
      if (s === undefined) throw new Error(`RepartitionSource: topic ${this.topic} has ${all.length} partition(s); partition ${p} does not exist`);
      return { id: s.id, position: { offset: (s.position as KafkaPosition).offset, producers: new Array<ProducerMark | null>(this.producers).fill(null) } };
    });
  }

  createReader(ctx: SourceContext): SourceReader<T> {
    return new RepartitionReader<T>(this, this.kafka.createReader(ctx));
  }
}

/** One assigned partition: what its producers' marks said, and its output towards the Kafka reader. */
interface PartitionState {
  readonly id: string;
  readonly partition: number;
  /** Per producer: the highest watermark it wrote (−∞: none), whether its last mark said idle, whether it was heard from. */
  readonly watermarks: Float64Array;
  readonly idle: Uint8Array;
  readonly heard: Uint8Array;
  /** Over the producers: the minimum over the active ones; all idle; all ended (watermark +∞). */
  watermark: number;
  allIdle: boolean;
  ended: boolean;
  readonly output: PartitionOutput;
}

/**
 * What the Kafka reader emits a partition's values on (its split output, proxied): each value is
 * decoded here — a record goes on to the job, a mark updates the partition's producers.
 */
class PartitionOutput implements SplitOutput<Uint8Array> {
  /** Set once the partition's state exists (the two refer to each other). */
  state!: PartitionState;

  constructor(private readonly reader: RepartitionReader<unknown>) {}

  emit(value: Uint8Array, _time?: number, origin?: number): void {
    this.reader.receive(this.state, value, origin ?? 0);
  }

  watermark(): void {
    // The Kafka reader's watermarks are derived by the runtime, never given: nothing to pass on.
  }

  deadLetter(raw: unknown, error: unknown): void {
    this.reader.deadLetter(raw, error);
  }

  markIdle(): void {
    // The Kafka reader runs without an idle timeout; idleness comes from the marks.
  }

  split(id: string): SplitOutput<Uint8Array> {
    return this.reader.split(id);
  }

  finish(): void {
    // Unbounded Kafka reads never finish a split.
  }
}

class RepartitionReader<T> implements SourceReader<T> {
  private readonly unpackr = new Unpackr(msgpackOptions() as ConstructorParameters<typeof Unpackr>[0]);
  private readonly producers: number;
  private readonly topic: string;
  private parts: PartitionState[] = [];
  private readonly byId = new Map<string, PartitionState>();
  /** The job's output during a poll. */
  private out!: SourceOutput<T>;
  /** Handed to the Kafka reader's poll: its split outputs are the partitions'. */
  private readonly proxy: SourceOutput<Uint8Array>;
  private sentWatermark = MIN_WATERMARK;
  private sentIdle = false;
  private started = false;

  constructor(
    private readonly source: RepartitionSource<T>,
    private readonly inner: SourceReader<Uint8Array>,
  ) {
    this.producers = source.producers;
    this.topic = source.topic;
    this.proxy = {
      emit: () => {
        throw new Error('RepartitionSource: the Kafka reader emitted outside a partition');
      },
      watermark: () => undefined,
      deadLetter: (raw, error) => this.deadLetter(raw, error),
      markIdle: () => undefined,
      split: (id) => this.split(id),
    };
  }

  open(splits: readonly Split[]): void | Promise<void> {
    this.parts = splits.map((s) => this.restoreSplit(s));
    for (const p of this.parts) {
      this.byId.set(p.id, p);
      this.combinePartition(p);
    }
    return this.inner.open(splits.map((s) => ({ id: s.id, position: { offset: (s.position as RepartitionPosition).offset } })));
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    this.out = out;
    if (!this.started) {
      // Restored marks (or a reader without partitions) set the time before any record.
      this.started = true;
      this.publishTime();
    }
    if (this.parts.length === 0) return this.source.bounded ? 'end' : 'wait';
    const status = this.inner.poll(this.proxy, max);
    if (this.source.bounded && this.parts.every((p) => p.ended)) return 'end';
    return status;
  }

  ready(): Promise<void> {
    return this.inner.ready?.() ?? Promise.resolve();
  }

  snapshot(checkpointId: number): Split<RepartitionPosition>[] {
    return this.inner.snapshot(checkpointId).map((s) => {
      const p = this.byId.get(s.id)!;
      const producers: Array<ProducerMark | null> = [];
      for (let k = 0; k < this.producers; k++) producers.push(p.heard[k] === 1 ? { watermark: p.watermarks[k]!, idle: p.idle[k] === 1 } : null);
      return { id: s.id, position: { offset: (s.position as KafkaPosition).offset, producers } };
    });
  }

  notifyCheckpointComplete(checkpointId: number): void | Promise<void> {
    return this.inner.notifyCheckpointComplete?.(checkpointId);
  }

  describe(origin: number): Record<string, unknown> {
    return this.inner.describe?.(origin) ?? {};
  }

  close(): void | Promise<void> {
    return this.inner.close?.();
  }

  // ---- called by the partition outputs ----

  split(id: string): SplitOutput<Uint8Array> {
    const p = this.byId.get(id);
    if (p === undefined) throw new Error(`RepartitionSource: the Kafka reader emitted on split ${id}, which is not assigned`);
    return p.output;
  }

  deadLetter(raw: unknown, error: unknown): void {
    this.out.deadLetter(raw, error);
  }

  /** One value of partition `p`, at `origin` (the Kafka reader's: offset × partitions + index). */
  receive(p: PartitionState, value: Uint8Array, origin: number): void {
    const b = value as Buffer;
    const problem = malformed(b);
    if (problem !== null) {
      this.refuse(p, b, origin, problem);
      return;
    }
    if (b[3] === KIND_BATCH) {
      const n = b.readUInt32LE(8);
      let records: unknown;
      try {
        records = this.unpackr.unpack(b.subarray(BATCH_HEADER_BYTES + 8 * n));
      } catch (error) {
        this.refuse(p, b, origin, `the value cannot be decoded: ${(error as Error).message}`);
        return;
      }
      if (!Array.isArray(records) || records.length !== n) {
        this.refuse(p, b, origin, `a batch of ${n} record(s) holds ${Array.isArray(records) ? records.length : 'no array'}`);
        return;
      }
      const out = this.out;
      for (let k = 0; k < n; k++) out.emit(records[k] as T, b.readDoubleLE(BATCH_HEADER_BYTES + 8 * k), origin);
      return;
    }
    const producer = b.readUInt32LE(16);
    const producers = b.readUInt32LE(20);
    if (producers !== this.producers || producer >= producers) {
      this.refuse(p, b, origin, `a watermark mark of producer ${producer} of ${producers}; this source reads ${this.producers} producer(s)`);
      return;
    }
    const watermark = b.readDoubleLE(8);
    const idle = b[24] === 1 ? 1 : 0;
    const before = p.watermarks[producer]!;
    if (p.heard[producer] === 1 && p.idle[producer] === idle && watermark <= before) return;
    // A watermark never goes back: a producer restored from a checkpoint repeats an older one until its input moves on.
    if (watermark > before) p.watermarks[producer] = watermark;
    p.heard[producer] = 1;
    p.idle[producer] = idle;
    this.combinePartition(p);
    this.publishTime();
  }

  // ---- time ----

  /**
   * A partition's watermark, idleness and end from its producers — as the runtime combines input
   * channels: ended producers (final watermark) are left out, and so are idle ones; the minimum
   * over the rest, or idle when every producer left is idle, or ended when none is left. A
   * producer not heard from yet holds the watermark at −∞.
   */
  private combinePartition(p: PartitionState): void {
    let min = Infinity;
    let open = 0;
    let active = 0;
    for (let k = 0; k < this.producers; k++) {
      const w = p.heard[k] === 0 ? MIN_WATERMARK : p.watermarks[k]!;
      if (w === MAX_WATERMARK) continue;
      open++;
      if (p.idle[k] === 1) continue;
      active++;
      if (w < min) min = w;
    }
    p.ended = open === 0;
    p.allIdle = open > 0 && active === 0;
    p.watermark = open === 0 ? MAX_WATERMARK : min;
  }

  /** Hands the job the minimum over the partitions (combined the same way), or says the source is idle. */
  private publishTime(): void {
    let min = Infinity;
    let open = 0;
    let active = 0;
    for (const p of this.parts) {
      if (p.ended) continue;
      open++;
      if (p.allIdle) continue;
      active++;
      if (p.watermark < min) min = p.watermark;
    }
    // No partitions (a global exchange's other tasks): nothing will ever come, and nothing is held back.
    if ((open > 0 && active === 0) || this.parts.length === 0) {
      if (!this.sentIdle) {
        this.sentIdle = true;
        this.out.markIdle();
      }
      return;
    }
    // Active again: the next advance (or record) ends the idleness downstream.
    this.sentIdle = false;
    const watermark = open === 0 ? MAX_WATERMARK : min;
    if (watermark > this.sentWatermark) {
      this.sentWatermark = watermark;
      this.out.watermark(watermark);
    }
  }

  // ---- positions and refusals ----

  private restoreSplit(s: Split): PartitionState {
    const colon = s.id.lastIndexOf(':');
    const partition = Number(s.id.slice(colon + 1));
    const position = s.position as Partial<RepartitionPosition> | null;
    if (position === null || typeof position !== 'object' || typeof position.offset !== 'number') throw new Error(`RepartitionSource: split ${s.id} has no repartition position: ${JSON.stringify(s.position)}`);
    const saved = position.producers ?? [];
    if (saved.length !== this.producers) {
      throw new Error(`RepartitionSource: split ${s.id} was checkpointed with ${saved.length} producer(s); this source reads ${this.producers} (the writing side's parallelism changed)`);
    }
    const state: PartitionState = {
      id: s.id,
      partition,
      watermarks: new Float64Array(this.producers).fill(MIN_WATERMARK),
      idle: new Uint8Array(this.producers),
      heard: new Uint8Array(this.producers),
      watermark: MIN_WATERMARK,
      allIdle: false,
      ended: false,
      output: new PartitionOutput(this as RepartitionReader<unknown>),
    };
    state.output.state = state;
    for (let k = 0; k < this.producers; k++) {
      const m = saved[k];
      if (m === null || m === undefined) continue;
      state.heard[k] = 1;
      state.watermarks[k] = m.watermark;
      state.idle[k] = m.idle ? 1 : 0;
    }
    return state;
  }

  private refuse(p: PartitionState, value: Buffer, origin: number, reason: string): void {
    const offset = Math.floor(origin / Math.max(1, this.parts.length));
    this.out.deadLetter({ topic: this.topic, partition: p.partition, offset, size: value.length, payload: previewOf(value) }, new Error(`not a record of a repartition sink: ${reason}`));
  }
}

/** Why `b` is not a value a repartition sink wrote (its header), or null. */
function malformed(b: Uint8Array): string | null {
  if (b.length < BATCH_HEADER_BYTES || b[0] !== MAGIC_0 || b[1] !== MAGIC_1) return 'no repartition header';
  if (b[2] !== LAYOUT_VERSION) return `layout version ${b[2]}, this reader knows ${LAYOUT_VERSION}`;
  if (b[3] === KIND_MARK) return b.length === MARK_BYTES ? null : `a watermark mark of ${b.length} bytes (${MARK_BYTES} expected)`;
  if (b[3] !== KIND_BATCH) return `unknown kind ${b[3]}`;
  const n = (b as Buffer).readUInt32LE(8);
  if (b.length < BATCH_HEADER_BYTES + 8 * n + 1) return `a batch of ${n} record(s) in ${b.length} bytes`;
  for (let k = 0; k < n; k++) if (!Number.isFinite((b as Buffer).readDoubleLE(BATCH_HEADER_BYTES + 8 * k))) return 'an event time is not finite';
  return null;
}

let deadLetterUnpackr: Unpackr | undefined;

/** An encoded value as a dead letter shows it: the record, or the mark. */
function describeValue(value: Uint8Array): unknown {
  const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (malformed(b) !== null) return { payload: previewOf(b), size: b.length };
  if (b[3] === KIND_MARK) return { producer: b.readUInt32LE(16), watermark: b.readDoubleLE(8), idle: b[24] === 1 };
  try {
    deadLetterUnpackr ??= new Unpackr(msgpackOptions() as ConstructorParameters<typeof Unpackr>[0]);
    return deadLetterUnpackr.unpack(b.subarray(BATCH_HEADER_BYTES + 8 * b.readUInt32LE(8)));
  } catch {
    return { payload: previewOf(b), size: b.length };
  }
}

// ---- the topic -------------------------------------------------------------------------------

/** Options of {@link ensureRepartitionTopic}. */
export interface RepartitionTopicOptions {
  /**
   * How long the topic keeps records (default 7 days). A reader only needs what follows its last
   * checkpoint, so this bounds how long a stopped job can stay stopped and still resume.
   */
  readonly retentionMs?: number;
  /** Replicas per partition (default: the brokers' `default.replication.factor`). */
  readonly replicationFactor?: number;
  /** Give up waiting for the topic's partitions to have leaders after this long (default 30 000 ms). */
  readonly timeoutMs?: number;
  /** Where a wait for an unreachable cluster is reported (default: stderr). */
  readonly log?: (line: string) => void;
}

/**
 * Makes sure repartition topic `topic` exists with `partitions` partitions and every partition
 * has a leader: creates it if it is missing (`cleanup.policy=delete`, `retention.ms` from the
 * options), and checks the partition count of a topic that exists (an error names both counts).
 * Safe when several tasks call it at once for the same topic: the losers of the creation race
 * find the topic and check it. Returns whether this call created it.
 *
 * @example
 * await ensureRepartitionTopic({ brokers: ['kafka:9092'] }, 'job-clicks-by-user', 4);
 */
export async function ensureRepartitionTopic(connection: KafkaConnection | undefined, topic: string, partitions: number, options: RepartitionTopicOptions = {}): Promise<'created' | 'exists'> {
  if (typeof topic !== 'string' || topic.length === 0) throw new Error('ensureRepartitionTopic: `topic` is required');
  if (!(Number.isInteger(partitions) && partitions >= 1)) throw new Error(`ensureRepartitionTopic: partitions must be an integer ≥ 1, got ${String(partitions)}`);
  const retentionMs = options.retentionMs ?? 7 * 24 * 3_600_000;
  if (!(Number.isInteger(retentionMs) && (retentionMs > 0 || retentionMs === -1))) throw new Error(`ensureRepartitionTopic: retentionMs must be a positive integer (or -1: forever), got ${String(retentionMs)}`);
  const log = options.log ?? ((line: string) => process.stderr.write(`spate: repartition topic ${topic}: ${line}\n`));
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const retrier = new Retrier('Kafka', log, newStats(), {}, () => Date.now() > deadline);
  const admin = new Admin({
    clientId: 'spate-repartition',
    bootstrapBrokers: brokersOf(connection),
    connectTimeout: connection?.connectTimeout ?? 5_000,
    timeout: connection?.requestTimeout ?? 30_000,
    retries: 0,
    ...(connection?.tls === undefined ? {} : { tls: connection.tls }),
    ...(connection?.sasl === undefined ? {} : { sasl: connection.sasl }),
  } as ConstructorParameters<typeof Admin>[0]);
  admin.on('error', () => undefined);
  let outcome: 'created' | 'exists' = 'created';
  try {
    await retrier.run(`creating topic ${topic}`, () =>
      admin.createTopics({
        topics: [topic],
        partitions,
        replicas: options.replicationFactor ?? -1,
        configs: [
          { name: 'cleanup.policy', value: 'delete' },
          { name: 'retention.ms', value: String(retentionMs) },
        ],
      }),
    );
  } catch (error) {
    if (!alreadyExists(error)) throw new Error(`ensureRepartitionTopic: creating topic ${topic} failed: ${describeKafkaError(error)}`, { cause: error });
    outcome = 'exists';
  } finally {
    await admin.close().catch(() => undefined);
  }
  // A new topic's metadata reaches the brokers shortly after the creation returns (and the
  // winner of a race may still be creating it): wait until every partition has a leader.
  const client = new PlatformaticKafkaClient(connection, 'spate-repartition');
  try {
    for (;;) {
      let found: number[] | null = null;
      let problem: unknown = null;
      try {
        found = await client.leaders(topic);
      } catch (error) {
        problem = error;
      }
      if (found !== null && found.length > 0 && found.length !== partitions) {
        throw new Error(`ensureRepartitionTopic: topic ${topic} exists with ${found.length} partition(s); this exchange needs ${partitions} (a topic left by another job, or by a run at another parallelism: delete it or use another name)`);
      }
      if (found !== null && found.length === partitions && found.every((l) => l >= 0)) return outcome;
      if (Date.now() > deadline) {
        throw new Error(`ensureRepartitionTopic: topic ${topic} has no leader for every partition after ${options.timeoutMs ?? 30_000} ms${problem === null ? '' : ` (${describeKafkaError(problem)})`}`);
      }
      if (problem !== null && isRetriable(problem)) retrier.failed(`looking up topic ${topic}`, problem);
      client.refresh();
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** Whether CreateTopics failed because the topic exists (error 36 in its response). */
function alreadyExists(error: unknown): boolean {
  const e = error as { response?: { topics?: Array<{ errorCode?: number }> }; errors?: Array<{ apiCode?: number }> } | null;
  if (e === null || typeof e !== 'object') return false;
  if (e.response?.topics?.some((t) => t.errorCode === TOPIC_ALREADY_EXISTS) === true) return true;
  return Array.isArray(e.errors) && e.errors.some((x) => x?.apiCode === TOPIC_ALREADY_EXISTS);
}
