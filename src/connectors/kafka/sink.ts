import { compatibilityPartitioner } from '@platformatic/kafka';
import type { Batch } from '../../runtime/batch.ts';
import type { Committable, Sink, SinkContext } from '../../runtime/sink.ts';
import type { CheckpointTransaction, CheckpointTransactions, JoinsCheckpointTransactions } from './checkpoint-transactions.ts';
import { describeKafkaError, isRetriable, type KafkaClient, type KafkaConnection, KafkaError, KafkaErrors, PlatformaticKafkaClient, type ProduceRecord, type ProducerIdentity } from './client.ts';
import { type KafkaStats, newStats, Retrier, type RetryOptions } from './retry.ts';
import { type Lease, TransactionPool } from './transaction-pool.ts';

/** Options of {@link KafkaSink}. */
export interface KafkaSinkOptions<T> {
  /** The topic written (it must exist). */
  readonly topic: string;
  /** Brokers, TLS and SASL (default brokers: `SPATE_KAFKA_BROKERS`, else 127.0.0.1:9092). */
  readonly connection?: KafkaConnection;
  /**
   * `exactly-once` (default): records are written in a Kafka transaction per checkpoint and
   * instance, committed when the checkpoint completes, so `read_committed` consumers see each
   * record once across failures. `at-least-once`: an idempotent producer without transactions,
   * flushed at every checkpoint — faster and visible at once, but a restart re-writes what
   * followed the last checkpoint.
   */
  readonly guarantee?: 'exactly-once' | 'at-least-once';
  /** How values are serialized: `json` (default), `text` (a string), `bytes` (a Uint8Array/Buffer). */
  readonly format?: 'json' | 'text' | 'bytes';
  /** The value written for a record (default: the record itself), serialized by `format`. */
  readonly value?: (record: T) => unknown;
  /** The key of a record (strings are UTF-8; numbers as decimal text); none by default. */
  readonly key?: (record: T) => string | number | Uint8Array | null | undefined;
  /**
   * The partition of a record (given the topic's partition count). Default: by the key's hash,
   * as Kafka's Java producer does (murmur2), so records with one key land in one partition;
   * records without a key are spread round-robin, one write batch at a time.
   */
  readonly partition?: (record: T, partitions: number) => number;
  /** Headers of a record. */
  readonly headers?: (record: T) => Readonly<Record<string, string | Uint8Array>> | undefined;
  /** The record's Kafka timestamp: its event time (default) or the time it is written (`now`). */
  readonly timestamp?: 'event' | 'now';
  /**
   * Prefix of the transactional ids (default `spate-<step id>-<topic>`, then `-<task>` in a
   * cluster job's task); instance i writes with `<prefix>-<i>-<slot>`. Two jobs writing the same
   * topic from a step with the same id must set distinct prefixes, or each fences the other.
   */
  readonly transactionalIdPrefix?: string;
  /**
   * Kafka aborts a transaction left open this long (default 900 000 ms, the broker's default
   * maximum). A job that crashed must be restarted within it, or the output of its last checkpoint
   * is lost; a lingering transaction also holds `read_committed` readers back until then (or
   * until the job restarts and aborts it).
   */
  readonly transactionTimeoutMs?: number;
  /** Transactional ids per instance (default 5): the transaction being written and those waiting for their checkpoint to complete. */
  readonly transactionPoolSize?: number;
  /** Records buffered before the sink reports backpressure (default 20 000). */
  readonly maxBufferedRecords?: number;
  /** A serialized record larger than this is a dead letter (default 1 000 000 bytes, under the broker's default limit). */
  readonly maxRecordBytes?: number;
  /** Bytes per produce request (default 4 MiB; at most 1 MiB per partition). */
  readonly maxRequestBytes?: number;
  /** At most this many parallel instances. */
  readonly parallelism?: number;
  /** Backoff while the cluster is unreachable (default 100 ms doubling to 10 s). */
  readonly retry?: RetryOptions;
}

/** What the sink pre-committed for a checkpoint: a flushed, open transaction. */
export interface KafkaCommittable {
  readonly transactionalId: string;
  /** The producer id (a 64-bit integer, as text) and epoch that opened the transaction. */
  readonly producerId: string;
  readonly epoch: number;
  readonly records: number;
}

/** A failure the sink cannot get past; it fails the job at the next call. */
class KafkaSinkError extends Error {
  override readonly name = 'KafkaSinkError';
}

const PARTITION_BATCH_BYTES = 1_000_000;
const RECORD_OVERHEAD = 70;

/** A record serialized, waiting to be sent. */
interface Pending extends ProduceRecord {
  readonly size: number;
}

/** A transaction (or, at-least-once, the one stream of writes) and what it still has to send. */
interface Txn {
  /** The transactional id it was given by the sink's pool (none: idempotent, or a checkpoint transaction). */
  readonly lease: Lease | null;
  readonly transactionalId: string | null;
  producer: ProducerIdentity | null;
  /** With checkpoint transactions: the checkpoint whose transaction takes these records, and that transaction once begun. */
  checkpoint: number;
  shared: CheckpointTransaction | null;
  /** Records per partition not yet acknowledged. */
  readonly pending: Map<number, Pending[]>;
  /** Next sequence number per partition. */
  sequences: Map<number, number>;
  /**
   * Records at the head of a partition's pending list that were sent in a request whose outcome
   * is unknown (the response lost, or an error): the next request resends exactly them.
   */
  readonly inflight: Map<number, number>;
  readonly added: Set<number>;
  records: number;
  unsent: number;
  /** No more writes: pre-committed. */
  sealed: boolean;
  readonly flushed: Array<() => void>;
}

/**
 * Writes records to a Kafka topic, exactly once with Kafka transactions (or at least once with
 * an idempotent producer).
 *
 * **Exactly once.** Each instance writes the records between two checkpoints in one transaction.
 * `preCommit(n)` flushes it (every record acknowledged by the brokers, invisible to
 * `read_committed` readers) and returns `{ transactionalId, producerId, epoch }`, stored in
 * checkpoint n; when n completes, `commit` ends the transaction with EndTxn(commit) under that
 * producer id and epoch — which works from any process, so a transaction pre-committed before a
 * crash is committed after the restore (committing it again is harmless: Kafka answers a repeated
 * commit of a committed transaction with success). Transactional ids come from a small pool per
 * instance (`<prefix>-<instance>-<slot>`, a {@link TransactionPool}); an id is used again only
 * after its transaction committed and a new InitProducerId bumped its epoch, so a committable
 * restored from an old checkpoint can never commit a newer transaction (its epoch is stale: Kafka
 * refuses it, which the sink takes as "completed before"). On open, the sink aborts transactions it left open —
 * every open transaction with its prefix of the instances it now stands for, found with
 * ListTransactions, and InitProducerId on each of its own ids, which also fences zombie
 * instances of an earlier run. The transaction timeout must outlast a crash and its restart.
 *
 * **Checkpoint transactions.** In a cluster job's task the sink writes into the task's
 * {@link CheckpointTransactions} instead ({@link KafkaSink.joinCheckpointTransactions}): the
 * records before checkpoint n's barrier go into checkpoint n's transaction, which also holds the
 * task's state and input offsets and is committed by the checkpoint's manifest — `commit` then
 * has nothing left to do, and `abort` nothing either (opening the task's transactions fenced
 * every earlier owner).
 *
 * **Records.** The value is serialized by `format` (JSON by default); key, partition, headers
 * come from functions of the record; the Kafka timestamp is the record's event time. A record
 * that cannot be serialized or is too large is a dead letter of the sink; the rest are written.
 *
 * **Failures.** An unreachable cluster is retried with backoff, at open and while running (one
 * line on the log when it goes away and one when it answers again, counted in
 * {@link KafkaSink.stats}); records wait in a bounded buffer and the sink reports backpressure
 * when it is full, so the job slows down instead of growing memory; a produce request whose
 * outcome is unknown is sent again as it was — the same records with the same sequence numbers,
 * records written meanwhile held for the next request — which the broker deduplicates: nothing
 * is lost or duplicated.
 *
 * @example
 * p.source(new KafkaSource<Bid>({ topic: 'bids' }), { id: 'bids' })
 *   .filter((b) => b.price > 100)
 *   .sink(new KafkaSink<Bid>({ topic: 'big-bids', key: (b) => String(b.auction) }), { id: 'big-bids' });
 */
export class KafkaSink<T> implements Sink<T, KafkaCommittable>, JoinsCheckpointTransactions {
  readonly parallelism?: number;
  /** Trouble with the cluster, summed over the instances created in this thread. */
  readonly stats: KafkaStats = newStats();
  private ctx!: SinkContext;
  private client!: KafkaClient;
  private retrier!: Retrier;
  private readonly exactlyOnce: boolean;
  private readonly serialize: (value: unknown) => Buffer;
  private readonly maxBuffered: number;
  private readonly maxRecordBytes: number;
  private readonly maxRequestBytes: number;
  private readonly timeoutMs: number;
  private readonly poolSize: number;
  private prefix = '';
  private partitions = 0;
  private leaders: number[] = [];
  private pool: TransactionPool | null = null;
  /** Transactions in order: the first ones are sealed (pre-committed, flushing), the last one takes writes. */
  private readonly txns: Txn[] = [];
  /** Records written, not yet acknowledged (over all transactions). */
  private buffered = 0;
  private roundRobin = 0;
  private sending: Promise<void> | null = null;
  private pressure: { promise: Promise<void>; resolve: () => void } | null = null;
  private failure: Error | null = null;
  private closed = false;
  private idempotent: ProducerIdentity | null = null;
  private readonly idempotentSequences = new Map<number, number>();
  /** Transactions this process committed (`id/producer/epoch`), recent ones: a commit handed again is skipped. */
  private readonly committed = new Set<string>();
  /** The job's checkpoint transactions, when it writes through them; and the checkpoint the next records belong to. */
  private shared: CheckpointTransactions | null = null;
  private nextCheckpoint = 0;

  constructor(private readonly options: KafkaSinkOptions<T>) {
    if (typeof options.topic !== 'string' || options.topic.length === 0) throw new Error('KafkaSink: `topic` is required');
    const guarantee = options.guarantee ?? 'exactly-once';
    if (guarantee !== 'exactly-once' && guarantee !== 'at-least-once') throw new Error(`KafkaSink: guarantee must be 'exactly-once' or 'at-least-once', got ${String(guarantee)}`);
    this.exactlyOnce = guarantee === 'exactly-once';
    if (options.parallelism !== undefined) this.parallelism = options.parallelism;
    this.serialize = serializer(options.format ?? 'json');
    this.maxBuffered = options.maxBufferedRecords ?? 20_000;
    this.maxRecordBytes = options.maxRecordBytes ?? 1_000_000;
    this.maxRequestBytes = Math.max(options.maxRequestBytes ?? 4 << 20, PARTITION_BATCH_BYTES);
    this.timeoutMs = options.transactionTimeoutMs ?? 900_000;
    this.poolSize = options.transactionPoolSize ?? 5;
    if (!(Number.isInteger(this.poolSize) && this.poolSize >= 2)) throw new Error(`KafkaSink: transactionPoolSize must be an integer ≥ 2, got ${this.poolSize}`);
  }

  /**
   * Writes into the job's checkpoint transactions from now on, rather than transactions of its
   * own (exactly-once only; call it before the job starts). A cluster job's task does this for
   * every Kafka sink; see the class comment.
   */
  joinCheckpointTransactions(transactions: CheckpointTransactions): void {
    if (this.exactlyOnce) this.shared = transactions;
  }

  /** The prefix of this sink's transactional ids (known once open). */
  get transactionalIdPrefix(): string {
    return this.prefix;
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.prefix = (this.options.transactionalIdPrefix ?? `spate-${ctx.stepId}-${this.options.topic}`) + (ctx.scope === undefined ? '' : `-${ctx.scope}`);
    this.client = new PlatformaticKafkaClient(this.options.connection, `spate-${ctx.stepId}-${ctx.instance}`);
    this.retrier = new Retrier('Kafka sink', (l) => this.log(l), this.stats, this.options.retry, () => this.closed, () => this.client.refresh());
    const topic = this.options.topic;
    this.partitions = await this.retrier.run(`looking up topic ${topic}`, () => this.client.partitions(topic));
    this.leaders = await this.retrier.run(`looking up topic ${topic}`, () => this.client.leaders(topic));
    if (this.shared !== null) {
      this.nextCheckpoint = this.shared.firstCheckpointId;
    } else if (this.exactlyOnce) {
      const ids = Array.from({ length: this.poolSize }, (_, s) => `${this.prefix}-${ctx.instance}-${s}`);
      this.pool = new TransactionPool(ids, this.client, this.retrier, this.timeoutMs);
    } else {
      this.idempotent = await this.retrier.run('initializing the producer', () => this.client.initProducer(null, this.timeoutMs));
    }
  }

  write(batch: Batch<T>): void {
    if (this.failure !== null) throw this.failure;
    const { values, times, length } = batch;
    const txn = this.current();
    const { key, partition, headers, value } = this.options;
    const now = this.options.timestamp === 'now';
    const spread = this.roundRobin++ % this.partitions;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const record = values[i] as T;
          const bytes = this.serialize(value === undefined ? record : value(record));
          const k = key === undefined ? undefined : toBuffer(key(record));
          let p: number;
          if (partition !== undefined) {
            p = partition(record, this.partitions);
            if (!(Number.isInteger(p) && p >= 0 && p < this.partitions)) throw new Error(`partition() returned ${p}; ${this.options.topic} has partitions 0 to ${this.partitions - 1}`);
          } else p = k === undefined ? spread : compatibilityPartitioner(undefined as never, k) % this.partitions;
          let h: Map<Buffer, Buffer> | undefined;
          let size = bytes.length + (k?.length ?? 0) + RECORD_OVERHEAD;
          if (headers !== undefined) {
            const given = headers(record);
            if (given !== undefined) {
              h = new Map();
              for (const name of Object.keys(given)) {
                const hk = Buffer.from(name, 'utf8');
                const hv = toBuffer(given[name])!;
                h.set(hk, hv);
                size += hk.length + hv.length + 4;
              }
            }
          }
          if (size > this.maxRecordBytes) throw new Error(`the record is ${size} bytes serialized, larger than maxRecordBytes (${this.maxRecordBytes})`);
          const t = times[i]!;
          const timestamp = BigInt(now || !Number.isFinite(t) ? Date.now() : Math.floor(t));
          let list = txn.pending.get(p);
          if (list === undefined) txn.pending.set(p, (list = []));
          list.push({ key: k, value: bytes, headers: h, timestamp, size });
          txn.records++;
          txn.unsent++;
          this.buffered++;
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
    this.kick();
  }

  backpressure(): Promise<void> | undefined {
    if (this.buffered < this.maxBuffered || this.failure !== null || this.closed) return undefined;
    if (this.pressure === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.pressure = { promise, resolve };
    }
    return this.pressure.promise;
  }

  /**
   * Exactly-once: seals the open transaction, resolves once all its records are acknowledged, and
   * returns it (undefined if nothing was written since the last checkpoint). At-least-once: flushes.
   */
  preCommit(checkpointId = 0): Promise<KafkaCommittable | undefined> | undefined {
    if (this.failure !== null) throw this.failure;
    const txn = this.txns[this.txns.length - 1];
    if (this.shared !== null) this.nextCheckpoint = checkpointId + 1;
    if (txn === undefined || txn.sealed) return undefined;
    if (!this.exactlyOnce) {
      if (txn.unsent === 0) return undefined;
      // Later writes go to the next stream segment (same producer and sequences), so that the
      // flush waits for what came before the barrier only.
      txn.sealed = true;
      return this.flushed(txn).then(() => {
        if (this.failure !== null) throw this.failure;
        return undefined;
      });
    }
    if (txn.records === 0) {
      txn.checkpoint = checkpointId + 1; // nothing in it yet: it takes the next checkpoint's records
      return undefined;
    }
    if (this.shared !== null && txn.checkpoint !== checkpointId) {
      throw new KafkaSinkError(`records written for checkpoint ${txn.checkpoint} reached the barrier of checkpoint ${checkpointId}: the sink is out of step with the job's checkpoint transactions`);
    }
    txn.sealed = true;
    return this.flushed(txn).then(() => {
      if (this.failure !== null) throw this.failure;
      return { transactionalId: txn.transactionalId!, producerId: String(txn.producer!.producerId), epoch: txn.producer!.epoch, records: txn.records };
    });
  }

  /** Commits pre-committed transactions in checkpoint order (idempotent: see the class comment). */
  async commit(committables: ReadonlyArray<Committable<KafkaCommittable>>): Promise<void> {
    if (this.shared !== null) {
      // The checkpoints' manifests committed these transactions (and restored ones were committed with theirs).
      const upTo = committables.at(-1)?.checkpointId ?? -1; // in checkpoint order
      for (const t of this.txns.filter((x) => x.sealed && x.checkpoint <= upTo)) this.release(t);
      return;
    }
    for (const c of committables) {
      const { transactionalId, producerId, epoch } = c.data;
      const producer = { producerId: BigInt(producerId), epoch };
      const done = `${transactionalId}/${producerId}/${epoch}`;
      // The runtime may hand a committable again while its first commit runs (a later checkpoint completed meanwhile).
      if (this.committed.has(done)) continue;
      const live = this.txns.find((t) => t.sealed && t.transactionalId === transactionalId && t.producer?.producerId === producer.producerId && t.producer.epoch === epoch);
      try {
        await this.retrier.run(`committing the transaction of checkpoint ${c.checkpointId}`, () => this.client.endTxn(transactionalId, producer, true));
      } catch (error) {
        const code = (error as KafkaError).code;
        const stale = code === KafkaErrors.INVALID_PRODUCER_EPOCH || code === KafkaErrors.PRODUCER_FENCED || code === KafkaErrors.INVALID_TXN_STATE;
        if (!stale) throw error;
        if (live !== undefined) {
          // Our own transaction, fenced or timed out: its records are gone, and the checkpoint that holds them is complete.
          this.fail(
            new KafkaSinkError(
              `the transaction of checkpoint ${c.checkpointId} (${transactionalId}) could not be committed: ${describeKafkaError(error)} — ` +
                `another instance with the same transactional id fenced it, or it outlived transactionTimeoutMs (${this.timeoutMs} ms); its records are lost`,
            ),
          );
          return;
        }
        this.log(
          `the transaction of checkpoint ${c.checkpointId} (${transactionalId}, epoch ${epoch}) was completed before the restart ` +
            `(committed, or aborted by Kafka after transactionTimeoutMs); nothing to commit`,
        );
      }
      this.committed.add(done);
      if (this.committed.size > 256) this.committed.delete(this.committed.values().next().value!);
      if (live !== undefined) this.release(live);
    }
  }

  /**
   * On open: aborts the transactions this instance's ids left open (and, after rescaling, those of
   * old instances i ≡ this instance mod parallelism), fencing zombies of an earlier run.
   */
  async abort(): Promise<void> {
    if (!this.exactlyOnce || this.shared !== null) return;
    const { instance, parallelism } = this.ctx;
    const own = this.pool!.ids;
    const ids = new Set(own);
    const listed = await this.retrier.run('listing open transactions', () => this.client.listTransactions()).catch((error: unknown) => {
      this.log(`listing open transactions failed (${describeKafkaError(error)}); aborting only this instance's own transactional ids`);
      return [];
    });
    const ours = new RegExp(`^${escapeRegExp(this.prefix)}-(\\d+)-(\\d+)$`);
    for (const t of listed) {
      const m = ours.exec(t.transactionalId);
      if (m === null || Number(m[1]) % parallelism !== instance) continue;
      if (t.state === 'CompleteCommit' || t.state === 'CompleteAbort' || t.state === 'Empty' || t.state === 'Dead') continue;
      ids.add(t.transactionalId);
    }
    let aborted = 0;
    for (const id of ids) {
      await this.pool!.takeOver(id);
      if (!own.includes(id)) aborted++;
    }
    if (aborted > 0) this.log(`aborted the open transactions of ${aborted} transactional id(s) of earlier instances`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.retrier?.wakeAll();
    this.pressure?.resolve();
    const pool = this.pool?.close(); // wakes what waits for a transactional id
    for (const t of this.txns) for (const f of t.flushed) f();
    await this.sending?.catch(() => undefined);
    await this.client?.close().catch(() => undefined);
    await pool;
  }

  // ---- transactions ----

  /** The transaction taking writes (started if there is none). */
  private current(): Txn {
    const last = this.txns[this.txns.length - 1];
    if (last !== undefined && !last.sealed) return last;
    const txn: Txn = {
      lease: null,
      transactionalId: null,
      producer: this.exactlyOnce ? null : this.idempotent,
      checkpoint: this.nextCheckpoint,
      shared: null,
      pending: new Map(),
      // Idempotent (at-least-once) writes continue one sequence per partition across checkpoints.
      sequences: this.exactlyOnce ? new Map() : this.idempotentSequences,
      inflight: new Map(),
      added: new Set(),
      records: 0,
      unsent: 0,
      sealed: false,
      flushed: [],
    };
    this.txns.push(txn);
    return txn;
  }

  /** The transaction committed: its transactional id goes back to the pool. */
  private release(txn: Txn): void {
    const i = this.txns.indexOf(txn);
    if (i >= 0) this.txns.splice(i, 1);
    if (txn.lease !== null) this.pool!.release(txn.lease);
  }

  /** Gives `txn` its transactional id and producer epoch: the checkpoint's transaction, or an id of the sink's pool. */
  private async begin(txn: Txn): Promise<void> {
    if (this.shared !== null) {
      const t = await this.shared.transaction(txn.checkpoint);
      Object.assign(txn, { transactionalId: t.transactionalId, producer: t.producer, shared: t, sequences: t.sequences(this.options.topic) });
      return;
    }
    const lease = await this.pool!.lease();
    Object.assign(txn, { lease, transactionalId: lease.transactionalId, producer: lease.producer });
  }

  // ---- sending ----

  private kick(): void {
    if (this.sending !== null || this.closed) return;
    this.sending = this.sendLoop()
      .catch((error: unknown) => {
        if (!this.closed) this.fail(error instanceof Error ? error : new KafkaSinkError(String(error)));
      })
      .finally(() => {
        this.sending = null;
        if (!this.closed && this.failure === null && this.txns.some((t) => t.unsent > 0)) this.kick();
      });
  }

  /** Sends the transactions' records in order, one request per leader at a time. */
  private async sendLoop(): Promise<void> {
    for (;;) {
      if (this.closed || this.failure !== null) return;
      const txn = this.txns.find((t) => t.unsent > 0 || (t.sealed && t.flushed.length > 0));
      if (txn === undefined) return;
      if (txn.producer === null) await this.begin(txn);
      if (txn.unsent === 0) {
        this.resolveFlushed(txn);
        continue;
      }
      try {
        if (this.exactlyOnce) {
          const fresh = [...txn.pending.keys()].filter((p) => !txn.added.has(p) && txn.pending.get(p)!.length > 0);
          if (fresh.length > 0) {
            if (txn.shared !== null) await txn.shared.addPartitions(this.options.topic, fresh);
            else await this.client.addPartitionsToTxn(txn.transactionalId!, txn.producer!, this.options.topic, fresh);
            for (const p of fresh) txn.added.add(p);
          }
        }
        const byLeader = new Map<number, number[]>();
        for (const [p, list] of txn.pending) {
          if (list.length === 0) continue;
          const leader = this.leaders[p]!;
          let ps = byLeader.get(leader);
          if (ps === undefined) byLeader.set(leader, (ps = []));
          ps.push(p);
        }
        const sent = await Promise.all([...byLeader].map(([node, ps]) => this.sendTo(node, txn, ps)));
        this.retrier.succeeded();
        // Every partition with records is mid-request by another sink of the topic: wait for one to be given back.
        if (txn.shared !== null && !sent.includes(true)) await txn.shared.released();
      } catch (error) {
        if (this.closed) return;
        if (!isRetriable(error)) throw error;
        this.retrier.failed('writing', error);
        await this.retrier.sleep(this.retrier.backoff());
        this.leaders = await this.client.leaders(this.options.topic).catch(() => this.leaders);
      }
      if (txn.unsent === 0) this.resolveFlushed(txn);
    }
  }

  /**
   * One produce request to `node`: up to 1 MiB per partition and `maxRequestBytes` in all. False
   * if it sent nothing (in a checkpoint transaction, other sinks of the topic held the partitions).
   */
  private async sendTo(node: number, txn: Txn, partitions: readonly number[]): Promise<boolean> {
    const topic = this.options.topic;
    const parts: Array<{ topic: string; partition: number; records: Pending[]; firstSequence: number }> = [];
    let total = 0;
    for (const p of partitions) {
      const list = txn.pending.get(p)!;
      let bytes = 0;
      let n = txn.inflight.get(p) ?? 0;
      if (n > 0) {
        // Sent before, outcome unknown: the broker may hold the batch. It recognises a retry only
        // as the identical batch (same first and last sequence number) — records written since
        // wait for the next batch, or it refuses the sequence (OUT_OF_ORDER_SEQUENCE_NUMBER).
        for (let k = 0; k < n; k++) bytes += list[k]!.size;
        if (total > 0 && total + bytes > this.maxRequestBytes) continue; // in the next request
      } else {
        if (txn.shared !== null && !txn.shared.hold(topic, p, this)) continue; // another sink's request on it is out
        while (n < list.length && (n === 0 || (bytes + list[n]!.size <= PARTITION_BATCH_BYTES && total + bytes + list[n]!.size <= this.maxRequestBytes))) bytes += list[n++]!.size;
        if (n === 0) continue;
        txn.inflight.set(p, n);
      }
      // A copy: `write` may append to the list while the request is out.
      parts.push({ topic: this.options.topic, partition: p, records: list.slice(0, n), firstSequence: txn.sequences.get(p) ?? 0 });
      total += bytes;
      if (total >= this.maxRequestBytes) break;
    }
    if (parts.length === 0) return false;
    const codes = await this.client.produce(node, txn.producer!, txn.transactionalId, parts, 30_000);
    let retry: KafkaError | null = null;
    for (let k = 0; k < parts.length; k++) {
      const part = parts[k]!;
      const code = codes[k]!;
      // A duplicate sequence: the broker has these records already (a retry after an unknown outcome).
      if (code === 0 || code === KafkaErrors.DUPLICATE_SEQUENCE_NUMBER) {
        const n = part.records.length;
        txn.inflight.delete(part.partition);
        const list = txn.pending.get(part.partition)!;
        if (n === list.length) txn.pending.set(part.partition, []);
        else list.splice(0, n);
        txn.sequences.set(part.partition, (part.firstSequence + n) % 2 ** 31);
        txn.shared?.unhold(topic, part.partition, this);
        txn.unsent -= n;
        this.buffered -= n;
        continue;
      }
      if (code === KafkaErrors.INVALID_PRODUCER_EPOCH || code === KafkaErrors.PRODUCER_FENCED || code === KafkaErrors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED) {
        throw new KafkaSinkError(`writing to ${this.options.topic}:${part.partition} failed: Kafka error ${code} — fenced: another instance uses transactional id ${txn.transactionalId ?? '(idempotent producer)'}`);
      }
      if (code === KafkaErrors.MESSAGE_TOO_LARGE || code === KafkaErrors.RECORD_LIST_TOO_LARGE || code === KafkaErrors.INVALID_RECORD || code === KafkaErrors.OUT_OF_ORDER_SEQUENCE_NUMBER) {
        throw new KafkaSinkError(`writing to ${this.options.topic}:${part.partition} failed with Kafka error ${code}`);
      }
      retry ??= new KafkaError(`writing to ${this.options.topic}:${part.partition} failed with Kafka error ${code}`, code, true);
    }
    if (this.pressure !== null && this.buffered < this.maxBuffered) {
      this.pressure.resolve();
      this.pressure = null;
    }
    if (retry !== null) throw retry;
    return true;
  }

  private flushed(txn: Txn): Promise<void> {
    if (txn.unsent === 0 && txn.producer !== null) return Promise.resolve();
    return new Promise<void>((resolve) => {
      txn.flushed.push(resolve);
      this.kick();
    });
  }

  private resolveFlushed(txn: Txn): void {
    const list = txn.flushed.splice(0);
    for (const f of list) f();
    if (!this.exactlyOnce && txn.sealed) {
      const i = this.txns.indexOf(txn);
      if (i >= 0) this.txns.splice(i, 1);
    }
  }

  /** The sink cannot go on: the next `write` or `preCommit` throws `error`, failing the job. */
  private fail(error: Error): void {
    this.failure ??= error;
    this.pressure?.resolve();
    this.pressure = null;
    for (const t of this.txns) for (const f of t.flushed.splice(0)) f();
  }

  private log(line: string): void {
    if (this.ctx.log !== undefined) this.ctx.log(line);
    else process.stderr.write(`spate: step '${this.ctx.stepId}': ${line}\n`);
  }
}

function serializer(format: 'json' | 'text' | 'bytes'): (value: unknown) => Buffer {
  if (format === 'json') {
    return (value) => {
      const text = JSON.stringify(value);
      if (text === undefined) throw new Error(`a ${typeof value} cannot be serialized as JSON`);
      return Buffer.from(text, 'utf8');
    };
  }
  if (format === 'text') {
    return (value) => {
      if (typeof value !== 'string') throw new Error(`format 'text' needs a string value, got ${value === null ? 'null' : typeof value}`);
      return Buffer.from(value, 'utf8');
    };
  }
  if (format === 'bytes') {
    return (value) => {
      if (!(value instanceof Uint8Array)) throw new Error(`format 'bytes' needs a Uint8Array value, got ${value === null ? 'null' : typeof value}`);
      return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    };
  }
  throw new Error(`KafkaSink: format must be 'json', 'text' or 'bytes', got ${String(format)}`);
}

function toBuffer(value: string | number | Uint8Array | null | undefined): Buffer | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (typeof value === 'number') return Buffer.from(String(value), 'utf8');
  if (value instanceof Uint8Array) return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new Error(`a key or header must be a string, number or Uint8Array, got ${typeof value}`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
