import type { CheckpointTransactions, JoinsCheckpointTransactions } from './checkpoint-transactions.ts';
import { decoder, type DecodeError, deadLetterOf, type FormatOptions } from '../format.ts';
import type { Source, SourceContext, SourceOutput, SourceReader, SourceStatus, Split, SplitOutput } from '../../runtime/source.ts';
import { type FetchPosition, isRetriable, type KafkaClient, type KafkaConnection, KafkaError, KafkaErrors, PlatformaticKafkaClient } from './client.ts';
import { CommittedRecords } from './records.ts';
import { type KafkaStats, newStats, Retrier, type RetryOptions } from './retry.ts';

/** A Kafka record as {@link KafkaSourceOptions.map} sees it. */
export interface KafkaMessage<V> {
  /** The decoded value. */
  readonly value: V;
  /** The key's bytes (null when the record has none). */
  readonly key: Buffer | null;
  /** Headers in record order; a header may repeat. */
  readonly headers: ReadonlyArray<readonly [string, Buffer | null]>;
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  /** The record's timestamp (ms): create time, or log append time if the topic says so. */
  readonly timestamp: number;
}

/** Where a fresh job (no checkpoint) starts reading a partition. */
export type KafkaStartFrom = 'earliest' | 'latest' | { readonly timestamp: number };

/** Options of {@link KafkaSource}. */
export interface KafkaSourceOptions<T, V = T> extends FormatOptions<V> {
  /** The topic, or topics, to read: one split per partition. */
  readonly topic: string | readonly string[];
  /** Brokers, TLS and SASL (default brokers: `SPATE_KAFKA_BROKERS`, else 127.0.0.1:9092). */
  readonly connection?: KafkaConnection;
  /** Where a fresh job starts (default `earliest`); a restored job resumes from its checkpoint. */
  readonly startFrom?: KafkaStartFrom;
  /**
   * The offsets a restored job resumes from no longer exist (deleted by retention, or the topic
   * was recreated): `fail` (default) stops the job with a clear error; `earliest` or `latest`
   * resumes there, saying on the log how many offsets were skipped.
   */
  readonly onMissingOffsets?: 'fail' | 'earliest' | 'latest';
  /**
   * The record from a Kafka message, when the key, headers, offset or timestamp are needed
   * (default: the decoded value). Throwing makes the message a dead letter.
   */
  readonly map?: (message: KafkaMessage<V>) => T;
  /**
   * Event time: `kafka` (default) the record's timestamp; `none`: none from the source (the
   * step's `timestamp` function, else ingestion time). A step `timestamp` function always wins.
   */
  readonly timestamps?: 'kafka' | 'none';
  /**
   * Stop at the end of each partition as found when the job first started (a bounded read, for
   * backfills, tests and benchmarks). Default false: read forever.
   */
  readonly bounded?: boolean;
  /**
   * The consumer group the source commits its checkpointed offsets to when a checkpoint
   * completes — for monitoring (lag) only: positions live in checkpoints, and partitions are
   * assigned by the job, not by the group. Default `spate-<step id>`; `false` commits nothing.
   */
  readonly groupId?: string | false;
  /**
   * A partition that has caught up with the end of its log (its last stable offset) and received
   * nothing for this long is idle: it no longer holds the watermark back (default 10 000 ms;
   * 0: never idle). A partition that is behind is never idle.
   */
  readonly idleTimeout?: number;
  /** Wait for data at the broker at most this long per fetch (default 200 ms). */
  readonly maxWaitMs?: number;
  /** Bytes per fetch response and per partition in it (default 8 MiB and 2 MiB). */
  readonly fetchMaxBytes?: number;
  readonly partitionMaxBytes?: number;
  /** Records fetched ahead of the job per reader before fetching pauses (default 100 000). */
  readonly maxBufferedRecords?: number;
  /** Backoff while the cluster is unreachable (default 100 ms doubling to 10 s). */
  readonly retry?: RetryOptions;
}

/** The position of a partition in a checkpoint: the next offset to read, and where a bounded read ends. */
export interface KafkaPosition {
  readonly offset: number;
  readonly end?: number;
}

const DEFAULT_IDLE = 10_000;

/**
 * Reads Kafka topics, exactly once with checkpoints: every partition is a split, assigned to
 * the job's parallel instances by the runtime (not by a consumer group); its position — the next
 * offset — is stored in checkpoints, so a restored job replays exactly what followed the
 * checkpoint, at any parallelism. Offsets are committed to a consumer group on checkpoint
 * completion only so that lag can be monitored with Kafka's tools — or, in a cluster job's task,
 * in the checkpoint's Kafka transaction, with the output and the state.
 *
 * Reads `read_committed`: records of aborted transactions and transaction markers are skipped
 * (by Spate itself, with the Java consumer's algorithm), and nothing beyond the last stable offset
 * is read. Messages are decoded by format (`json` by default, `ndjson`, `text`, `bytes`) and
 * validated by an optional schema (Standard Schema or a function); a message that fails — too
 * large, invalid UTF-8, malformed JSON, refused by the schema or by `map` — becomes a dead letter
 * with the step id, topic, partition, offset, size, the start of its payload and the error, and
 * the job goes on. Event time is the record's Kafka timestamp unless the step gives a timestamp
 * function. Per-partition watermarks; a partition is idle only when it has caught up with the end
 * of its log (and stayed silent for `idleTimeout`).
 *
 * An unreachable cluster is waited for, with backoff, at start and while running (one line on the
 * log when it goes away and one when it is back; counted in {@link KafkaSource.stats}). Offsets of
 * a checkpoint that retention has deleted fail the job with a clear error unless
 * `onMissingOffsets` says where to resume.
 *
 * @example
 * const p = new Pipeline();
 * p.source(new KafkaSource<Click>({ topic: 'clicks', startFrom: 'earliest' }), { id: 'clicks', outOfOrderness: 1_000 })
 *   .filter((c) => c.kind === 'buy')
 *   .sink(new KafkaSink<Click>({ topic: 'buys', key: (c) => c.user }), { id: 'buys' });
 */
export class KafkaSource<T, V = T> implements Source<T>, JoinsCheckpointTransactions {
  readonly bounded: boolean;
  readonly watermarks = 'derived' as const;
  /** Trouble with the cluster, summed over the readers created in this thread. */
  readonly stats: KafkaStats = newStats();
  readonly topics: readonly string[];
  /** The job's checkpoint transactions, when its offsets are committed in them. */
  transactions: CheckpointTransactions | null = null;

  constructor(readonly options: KafkaSourceOptions<T, V>) {
    this.topics = typeof options.topic === 'string' ? [options.topic] : [...options.topic];
    if (this.topics.length === 0 || this.topics.some((t) => typeof t !== 'string' || t.length === 0)) throw new Error('KafkaSource: `topic` is required');
    if (options.onMissingOffsets !== undefined && !['fail', 'earliest', 'latest'].includes(options.onMissingOffsets)) {
      throw new Error(`KafkaSource: onMissingOffsets must be 'fail', 'earliest' or 'latest', got ${String(options.onMissingOffsets)}`);
    }
    const start = options.startFrom;
    if (start !== undefined && start !== 'earliest' && start !== 'latest' && !(typeof start === 'object' && Number.isFinite(start.timestamp))) {
      throw new Error(`KafkaSource: startFrom must be 'earliest', 'latest' or { timestamp }, got ${JSON.stringify(start)}`);
    }
    decoder(options); // validates the format options now
    this.bounded = options.bounded ?? false;
  }

  /** One split per partition of every topic, positioned by `startFrom` (and the end, if bounded). */
  async splits(ctx: SourceContext): Promise<Split<KafkaPosition>[]> {
    const client = new PlatformaticKafkaClient(this.options.connection, `spate-${ctx.stepId}`);
    const log = ctx.log ?? ((line: string) => process.stderr.write(`spate: step '${ctx.stepId}': ${line}\n`));
    const retrier = new Retrier('Kafka source', log, this.stats, this.options.retry, () => false, () => client.refresh());
    try {
      const out: Split<KafkaPosition>[] = [];
      for (const topic of this.topics) {
        const count = await retrier.run(`listing partitions of ${topic}`, () => client.partitions(topic));
        const all = Array.from({ length: count }, (_, i) => i);
        const start = this.options.startFrom ?? 'earliest';
        const at = typeof start === 'object' ? start.timestamp : start;
        const offsets = await retrier.run(`listing offsets of ${topic}`, () => client.listOffsets(topic, all, at));
        const ends = this.bounded ? await retrier.run(`listing offsets of ${topic}`, () => client.listOffsets(topic, all, 'latest')) : undefined;
        for (const p of all) {
          const offset = offsets.get(p)!;
          out.push({ id: splitId(topic, p), position: ends === undefined ? { offset } : { offset, end: ends.get(p)! } });
        }
      }
      return out;
    } finally {
      await client.close().catch(() => undefined);
    }
  }

  createReader(ctx: SourceContext): SourceReader<T> {
    return new KafkaReader<T, V>(this, ctx);
  }

  /**
   * Commits the offsets of each checkpoint to the consumer group inside the checkpoint's Kafka
   * transaction (with its output and state: see {@link CheckpointTransactions}) rather than after
   * it completes. A cluster job's task does this for its Kafka sources; call it before the job starts.
   */
  joinCheckpointTransactions(transactions: CheckpointTransactions): void {
    this.transactions = transactions;
  }
}

/** `topic:partition` (a topic name cannot contain ':'). */
function splitId(topic: string, partition: number): string {
  return `${topic}:${partition}`;
}

function parseSplitId(id: string): { topic: string; partition: number } {
  const colon = id.lastIndexOf(':');
  const partition = Number(id.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(partition) || partition < 0) throw new Error(`KafkaSource: split id '${id}' is not topic:partition`);
  return { topic: id.slice(0, colon), partition };
}

/** One assigned partition. */
interface Partition {
  readonly id: string;
  readonly topic: string;
  readonly partition: number;
  /** Index among this reader's partitions (dead-letter origins). */
  readonly index: number;
  /** The next offset to emit: the checkpoint position. */
  position: number;
  /** The next offset to fetch. */
  fetchOffset: number;
  readonly end: number | undefined;
  /** Fetched, not yet emitted. */
  readonly queue: CommittedRecords[];
  buffered: number;
  /** The last fetch reached the last stable offset. */
  caughtUp: boolean;
  /** When it last had a record (or became caught up). */
  lastData: number;
  idleMarked: boolean;
  finished: boolean;
  out: SplitOutput<unknown> | null;
  leader: number;
}

class KafkaReader<T, V> implements SourceReader<T> {
  private readonly options: KafkaSourceOptions<T, V>;
  private client!: KafkaClient;
  private parts: Partition[] = [];
  private readonly byId = new Map<string, Partition>();
  private readonly decode: ReturnType<typeof decoder<V>>;
  private readonly map: ((message: KafkaMessage<V>) => T) | undefined;
  private readonly kafkaTime: boolean;
  private readonly idleTimeout: number;
  private readonly maxBuffered: number;
  private buffered = 0;
  private failure: Error | null = null;
  private closed = false;
  private fetching: Promise<void> | null = null;
  private waiter: { promise: Promise<void>; resolve: () => void } | null = null;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private turn = 0;
  /** Split outputs of every partition registered (at the first poll). */
  private registered = false;
  private retrier!: Retrier;
  private readonly recorded = new Map<number, FetchPosition[]>();
  private groupId: string | null;
  private commitWarned = false;
  /** Leaders are looked up again before the next fetch. */
  private stale = true;
  private resumed = false;

  // The record being decoded (decode callbacks read them: no closure per record).
  private cur!: CommittedRecords;
  private curPart!: Partition;
  private curOut!: SplitOutput<unknown>;
  private emitted = 0;

  constructor(
    private readonly source: KafkaSource<T, V>,
    private readonly ctx: SourceContext,
  ) {
    this.options = source.options;
    this.decode = decoder<V>(this.options);
    this.map = this.options.map;
    this.kafkaTime = (this.options.timestamps ?? 'kafka') === 'kafka';
    this.idleTimeout = this.options.idleTimeout ?? DEFAULT_IDLE;
    this.maxBuffered = this.options.maxBufferedRecords ?? 100_000;
    this.groupId = this.options.groupId === false ? null : (this.options.groupId ?? `spate-${ctx.stepId}`);
  }

  private log(line: string): void {
    if (this.ctx.log !== undefined) this.ctx.log(line);
    else process.stderr.write(`spate: step '${this.ctx.stepId}': ${line}\n`);
  }

  open(splits: readonly Split[]): void {
    this.client = new PlatformaticKafkaClient(this.options.connection, `spate-${this.ctx.stepId}-${this.ctx.instance}`);
    this.retrier = new Retrier('Kafka source', (l) => this.log(l), this.source.stats, this.options.retry, () => this.closed, () => {
      this.client.refresh();
      this.stale = true;
    });
    this.resumed = this.ctx.restoredCheckpoint !== undefined;
    const now = this.ctx.clock.now();
    this.parts = splits.map((s, index) => {
      const { topic, partition } = parseSplitId(s.id);
      const pos = s.position as KafkaPosition | number;
      const offset = typeof pos === 'number' ? pos : pos.offset;
      const end = typeof pos === 'number' ? undefined : pos.end;
      const p: Partition = {
        id: s.id,
        topic,
        partition,
        index,
        position: offset,
        fetchOffset: offset,
        end,
        queue: [],
        buffered: 0,
        caughtUp: false,
        lastData: now,
        idleMarked: false,
        finished: false,
        out: null,
        leader: -1,
      };
      this.byId.set(s.id, p);
      return p;
    });
    this.startFetching();
  }

  // ---- fetching (asynchronous, ahead of the job, bounded) ----

  private startFetching(): void {
    if (this.fetching !== null || this.closed || this.failure !== null) return;
    this.fetching = this.fetchLoop()
      .catch((error: unknown) => {
        if (!this.closed) this.failure ??= error instanceof Error ? error : new Error(String(error));
      })
      .finally(() => {
        this.fetching = null;
        // A failure must reach poll. Otherwise the loop stopped with nothing to fetch (no
        // partitions, or bounded ones read to their end) or a full buffer (poll has records and
        // restarts it): waking `ready()` here would make a reader without partitions — more
        // instances than partitions — spin between poll and ready, starving its thread.
        if (this.failure !== null || this.closed) this.wake();
      });
  }

  /** Whether a partition should be fetched now. */
  private wanted(p: Partition): boolean {
    if (p.end !== undefined && p.fetchOffset >= p.end) return false;
    return true;
  }

  private async fetchLoop(): Promise<void> {
    while (!this.closed && this.failure === null) {
      const wanted = this.parts.filter((p) => this.wanted(p));
      if (wanted.length === 0 || this.buffered >= this.maxBuffered) return; // resumed by poll
      try {
        if (this.stale) await this.lookUpLeaders(wanted);
        const byLeader = new Map<number, Partition[]>();
        for (const p of wanted) {
          let list = byLeader.get(p.leader);
          if (list === undefined) byLeader.set(p.leader, (list = []));
          list.push(p);
        }
        await Promise.all([...byLeader].map(([node, list]) => this.fetchFrom(node, list)));
        this.retrier.succeeded();
      } catch (error) {
        if (this.closed) return;
        if (!isRetriable(error)) throw error;
        this.retrier.failed('fetching', error);
        await this.retrier.sleep(this.retrier.backoff());
      }
    }
  }

  private async lookUpLeaders(parts: readonly Partition[]): Promise<void> {
    const topics = new Set(parts.map((p) => p.topic));
    for (const topic of topics) {
      const leaders = await this.client.leaders(topic);
      for (const p of parts) {
        if (p.topic !== topic) continue;
        const leader = leaders[p.partition];
        if (leader === undefined) throw new KafkaError(`topic ${topic} has no partition ${p.partition} (was it recreated with fewer partitions?)`, KafkaErrors.UNKNOWN_TOPIC_OR_PARTITION, false);
        p.leader = leader;
      }
    }
    this.stale = false;
  }

  private async fetchFrom(node: number, parts: readonly Partition[]): Promise<void> {
    const positions = parts.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.fetchOffset }));
    const results = await this.client.fetch(node, positions, {
      maxWaitMs: this.options.maxWaitMs ?? 200,
      maxBytes: this.options.fetchMaxBytes ?? 8 << 20,
      partitionMaxBytes: this.options.partitionMaxBytes ?? 2 << 20,
    });
    let arrived = false;
    let retry: KafkaError | null = null;
    for (const r of results) {
      const p = this.byId.get(splitId(r.topic, r.partition));
      if (p === undefined) continue;
      if (r.errorCode === KafkaErrors.OFFSET_OUT_OF_RANGE) {
        await this.offsetsMissing(p, r.logStartOffset, r.highWatermark);
        arrived = true;
        continue;
      }
      if (r.errorCode !== 0) {
        retry ??= new KafkaError(`fetching ${p.id} failed with Kafka error ${r.errorCode}`, r.errorCode);
        continue;
      }
      const from = p.fetchOffset;
      let next = from;
      for (const b of r.batches) next = Math.max(next, Number(b.firstOffset) + b.lastOffsetDelta + 1);
      if (p.end !== undefined && next > p.end) next = Math.max(from, p.end);
      if (next > from) {
        const cursor = new CommittedRecords(r.batches, r.abortedTransactions, from, p.end);
        const count = cursor.count;
        p.queue.push(cursor);
        p.buffered += count;
        this.buffered += count;
        p.fetchOffset = next;
        arrived = true;
      }
      const caughtUp = p.fetchOffset >= r.lastStableOffset;
      if (caughtUp && !p.caughtUp) p.lastData = Math.max(p.lastData, this.ctx.clock.now());
      p.caughtUp = caughtUp;
    }
    if (arrived) this.wake();
    if (retry !== null) throw retry;
    this.scheduleIdleCheck();
  }

  /** The fetch offset is outside the log: deleted by retention (or the log was truncated). */
  private async offsetsMissing(p: Partition, logStart: number, end: number): Promise<void> {
    const policy = this.options.onMissingOffsets ?? 'fail';
    // An error response may not carry the log's bounds: ask.
    if (logStart < 0 || end < 0) {
      logStart = (await this.client.listOffsets(p.topic, [p.partition], 'earliest')).get(p.partition)!;
      end = (await this.client.listOffsets(p.topic, [p.partition], 'latest')).get(p.partition)!;
    }
    const where = `offset ${p.fetchOffset} of ${p.id}`;
    const range = `the log holds offsets ${logStart} to ${end - 1}`;
    if (policy === 'fail') {
      throw new KafkaError(
        `${where}${this.resumed ? ', where the checkpoint resumes,' : ''} no longer exists (${range}: deleted by retention, or the topic was recreated); ` +
          `set onMissingOffsets: 'earliest' or 'latest' to resume there, accepting the gap`,
        KafkaErrors.OFFSET_OUT_OF_RANGE,
        false,
      );
    }
    const offsets = await this.client.listOffsets(p.topic, [p.partition], policy);
    const to = offsets.get(p.partition)!;
    this.log(`${where} no longer exists (${range}); resuming at the ${policy} offset ${to} as onMissingOffsets says` + (to > p.fetchOffset ? `, skipping ${to - p.fetchOffset} offset(s)` : ''));
    // Reached once what was fetched before is emitted: moves the position there.
    p.queue.push(new CommittedRecords([], [], to));
    p.fetchOffset = to;
  }

  private wake(): void {
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w.resolve();
    }
  }

  /** Wakes the job when a caught-up partition's idle timeout passes. */
  private scheduleIdleCheck(): void {
    if (this.idleTimeout <= 0 || this.idleTimer !== null || this.closed) return;
    let due = Infinity;
    for (const p of this.parts) if (p.caughtUp && !p.idleMarked && !p.finished && p.queue.length === 0) due = Math.min(due, p.lastData + this.idleTimeout);
    if (due === Infinity) return;
    const delay = Math.max(0, due - this.ctx.clock.now());
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      this.wake();
    }, delay + 1);
    this.idleTimer.unref?.();
  }

  // ---- the job's side: synchronous ----

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    if (this.failure !== null) throw this.failure;
    this.emitted = 0;
    const parts = this.parts;
    const n = parts.length;
    const now = this.ctx.clock.now();
    if (!this.registered) {
      // Every partition holds the watermark back from the start — not only once its first fetch
      // came back — or a partition read first would make the others' records late.
      this.registered = true;
      for (const p of parts) if (!p.finished) p.out ??= out.split(p.id) as SplitOutput<unknown>;
    }
    for (let k = 0; k < n && this.emitted < max; k++) {
      const p = parts[(this.turn + k) % n]!;
      if (p.queue.length === 0) continue;
      const o = (p.out ??= out.split(p.id) as SplitOutput<unknown>);
      this.curPart = p;
      this.curOut = o;
      while (p.queue.length > 0 && this.emitted < max) {
        const cursor = p.queue[0]!;
        this.cur = cursor;
        const before = this.emitted;
        while (this.emitted < max && cursor.next()) this.deliver(cursor);
        if (this.emitted > before) {
          p.lastData = now;
          p.idleMarked = false;
        }
        p.position = cursor.position;
        if (cursor.done) {
          p.queue.shift();
          p.buffered -= cursor.count;
          this.buffered -= cursor.count;
        }
      }
    }
    this.turn = (this.turn + 1) % Math.max(1, n);
    if (this.buffered < this.maxBuffered) this.startFetching();
    // Finished (bounded) and idle partitions.
    let active = 0;
    for (const p of parts) {
      if (p.finished) continue;
      if (p.end !== undefined && p.position >= p.end && p.queue.length === 0) {
        p.finished = true;
        (p.out ??= out.split(p.id) as SplitOutput<unknown>).finish();
        continue;
      }
      active++;
      if (this.idleTimeout > 0 && !p.idleMarked && p.caughtUp && p.queue.length === 0 && now - p.lastData >= this.idleTimeout) {
        p.idleMarked = true;
        (p.out ??= out.split(p.id) as SplitOutput<unknown>).markIdle();
      }
    }
    if (active === 0 && this.source.bounded) return 'end';
    if (this.emitted > 0) return 'more';
    for (const p of parts) if (p.queue.length > 0) return 'more';
    this.scheduleIdleCheck();
    return 'wait';
  }

  /** Decodes the cursor's record and emits it (or dead-letters it). */
  private deliver(cursor: CommittedRecords): void {
    const r = cursor.record!;
    const value = r.value;
    if (value === null) {
      if (this.map !== undefined) {
        this.onValue(null as V);
        return;
      }
      this.curOut.deadLetter({ topic: this.curPart.topic, partition: this.curPart.partition, offset: cursor.offset, size: 0, payload: null }, new Error('the record has no value (a tombstone)'));
      return;
    }
    this.decode(value, this.onValue, this.onFail);
  }

  private readonly onValue = (decoded: V): void => {
    const c = this.cur;
    const p = this.curPart;
    let record: T;
    if (this.map !== undefined) {
      const r = c.record!;
      try {
        record = this.map({
          value: decoded,
          key: r.key,
          headers: r.headers.map(([k, v]) => [k === null ? '' : k.toString('utf8'), v] as const),
          topic: p.topic,
          partition: p.partition,
          offset: c.offset,
          timestamp: c.timestamp,
        });
      } catch (error) {
        this.curOut.deadLetter({ topic: p.topic, partition: p.partition, offset: c.offset, size: r.value?.length ?? 0, value: decoded }, error);
        return;
      }
    } else record = decoded as unknown as T;
    this.emitted++;
    const origin = c.offset * this.parts.length + p.index;
    if (this.kafkaTime && c.timestamp >= 0) this.curOut.emit(record, c.timestamp, origin);
    else this.curOut.emit(record, undefined, origin);
  };

  private readonly onFail = (error: DecodeError): void => {
    const p = this.curPart;
    const c = this.cur;
    const key = c.record!.key;
    this.curOut.deadLetter(deadLetterOf(error, { topic: p.topic, partition: p.partition, offset: c.offset, ...(key === null ? {} : { key: key.toString('utf8') }) }), error);
  };

  ready(): Promise<void> {
    if (this.failure !== null || this.closed) return Promise.resolve();
    for (const p of this.parts) if (p.queue.length > 0) return Promise.resolve();
    if (this.waiter === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.waiter = { promise, resolve };
    }
    this.startFetching();
    this.scheduleIdleCheck();
    return this.waiter.promise;
  }

  snapshot(checkpointId: number): Split<KafkaPosition>[] {
    if (this.groupId !== null) {
      const offsets = this.parts.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.position }));
      if (this.source.transactions !== null) this.source.transactions.commitOffsets(checkpointId, this.groupId, offsets);
      else this.recorded.set(checkpointId, offsets);
    }
    return this.parts.map((p) => ({ id: p.id, position: p.end === undefined ? { offset: p.position } : { offset: p.position, end: p.end } }));
  }

  /** Commits the checkpoint's offsets to the consumer group, for monitoring; a failure is logged, never fatal. */
  async notifyCheckpointComplete(checkpointId: number): Promise<void> {
    const offsets = this.recorded.get(checkpointId);
    for (const id of [...this.recorded.keys()]) if (id <= checkpointId) this.recorded.delete(id);
    if (offsets === undefined || offsets.length === 0 || this.groupId === null || this.closed) return;
    try {
      await this.client.commitOffsets(this.groupId, offsets);
    } catch (error) {
      if (!this.commitWarned) {
        this.commitWarned = true;
        this.log(`committing offsets to consumer group ${this.groupId} (for monitoring only) failed: ${(error as Error).message}; positions are kept in checkpoints, the job goes on`);
      }
    }
  }

  describe(origin: number): Record<string, unknown> {
    const n = Math.max(1, this.parts.length);
    const p = this.parts[origin % n];
    return { topic: p?.topic, partition: p?.partition, offset: Math.floor(origin / n) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.retrier?.wakeAll();
    this.wake();
    await this.client?.close().catch(() => undefined);
  }
}

