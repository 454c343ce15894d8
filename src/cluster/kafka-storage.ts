/**
 * Checkpoint storage in one partition of a Kafka topic, for cluster jobs: task t of a job keeps
 * every object of its checkpoints in partition t of the job's checkpoint topic, written by one
 * transactional producer whose id belongs to the task. Opening the storage fences every earlier
 * owner of that id (a process presumed dead that may still be running: a zombie), so a task has
 * one writer at a time.
 *
 * **Records.** An object is one or more records keyed by its name: chunk 0 has the name itself as
 * key (UTF-8), chunk i > 0 the name, a NUL byte and i in decimal. Every chunk has the headers
 * `spate.chunk` = `i/n` (its index and the object's chunk count) and `spate.write` = an id drawn
 * for the write (16 hex digits), the same on every chunk of one write. Chunks hold at most
 * {@link CHUNK_BYTES} of the object, in order; an empty object is one empty chunk. A tombstone
 * (null value) removes a key. The topic is compacted, so only the latest record of each key is
 * sure to remain: an object is read from the latest records of its keys — chunk 0 gives the count
 * and the write id, chunks 1 … n − 1 must carry the same — which compaction never changes.
 *
 * **Transactions.** Every `write` and `deletePrefix` is one Kafka transaction (AddPartitionsToTxn,
 * Produce requests of at most ~1 MB, EndTxn commit), so an object appears whole or not at all
 * and a crash leaves nothing behind: its open transaction is aborted when the next owner opens
 * the storage (InitProducerId), or by Kafka after `transactionTimeoutMs`. A rewrite with fewer
 * chunks, and a deletion, write tombstones for the chunk keys no longer used, in the same
 * transaction, so that compaction removes them. Operations run one at a time, in call order.
 *
 * **Checkpoint transactions.** Given a job's {@link CheckpointTransactions} (a cluster task's),
 * the storage writes no transactions of its own: the objects of checkpoint n go into checkpoint
 * n's transaction — with the records the job's Kafka sinks wrote before n's barrier and its Kafka
 * sources' offsets — and writing n's manifest commits it, so output, state and input offsets
 * become visible together or not at all. Deletions (old checkpoints) are then tombstones written
 * with the next checkpoint's objects. Such a storage holds checkpoints only (objects under a
 * checkpoint directory).
 *
 * **Reading.** `open` reads the partition from its start, `read_committed` (the fetch stops at
 * the last stable offset; records of aborted transactions are dropped by `records.ts`), up to
 * the end of the log as it was once the earlier owners were fenced, and keeps the objects in
 * memory; reads are answered from memory (what `open` read, and this owner's writes).
 */
import { randomBytes } from 'node:crypto';
import { MANIFEST, parseCheckpointDir } from '../checkpoint/manifest.ts';
import { type CheckpointStorage, listUnder } from '../checkpoint/storage.ts';
import { type CheckpointTransactions, FencedError } from '../connectors/kafka/checkpoint-transactions.ts';
import { createTopic, describeKafkaError, type FetchedPartition, type KafkaClient, type KafkaConnection, KafkaError, KafkaErrors, PlatformaticKafkaClient, type ProduceRecord, type ProducerIdentity } from '../connectors/kafka/client.ts';
import { CommittedRecords, type KafkaWireRecord } from '../connectors/kafka/records.ts';
import { type KafkaStats, newStats, Retrier, type RetryOptions } from '../connectors/kafka/retry.ts';
import { isFenced } from '../connectors/kafka/transaction-pool.ts';

/** The largest chunk of an object in one record (objects above it are split): under the broker's default 1 MiB per record batch. */
export const CHUNK_BYTES = 900 * 1024;

/** Bytes of records in one produce request (one record batch): under the broker's default `max.message.bytes` (1 048 588). */
const BATCH_BYTES = 1_000_000;
/** Per-record overhead counted against {@link BATCH_BYTES} (record framing, timestamp and offset deltas). */
const RECORD_OVERHEAD = 64;
const HEADER_CHUNK = 'spate.chunk';
const HEADER_WRITE = 'spate.write';
const HEADER_CHUNK_BYTES = Buffer.from(HEADER_CHUNK);
const HEADER_WRITE_BYTES = Buffer.from(HEADER_WRITE);

/**
 * Configs of a checkpoint topic made by {@link ensureCheckpointTopic}: compacted (an object's
 * superseded records and deleted objects go), never deleted by time, and compacted within
 * minutes — segments roll after a minute and a record waits at most 5 minutes to be compacted.
 */
export const CHECKPOINT_TOPIC_CONFIGS: Readonly<Record<string, string>> = {
  'cleanup.policy': 'compact',
  'retention.ms': '-1',
  'segment.ms': '60000',
  'min.cleanable.dirty.ratio': '0.1',
  'max.compaction.lag.ms': '300000',
};

/** Options of {@link KafkaCheckpointStorage.open}. */
export interface KafkaCheckpointStorageOptions {
  /** Brokers, TLS and SASL (default brokers: `SPATE_KAFKA_BROKERS`, else 127.0.0.1:9092). */
  readonly connection?: KafkaConnection;
  /** The job's checkpoint topic; it must exist (see {@link ensureCheckpointTopic}). */
  readonly topic: string;
  /** The task's partition of the topic. */
  readonly partition: number;
  /**
   * The task's transactional id, e.g. `spate-<job>-checkpoints-<partition>`: opening the storage
   * calls InitProducerId on it, which fences every earlier owner. One id per partition, the same
   * for every process that may run the task. Not with `transactions`.
   */
  readonly transactionalId?: string;
  /**
   * The job's checkpoint transactions, opened (which fenced earlier owners): each checkpoint's
   * objects are written in its transaction, and its manifest commits it (see the module comment).
   * Instead of `transactionalId`.
   */
  readonly transactions?: CheckpointTransactions;
  /** Where retries and damaged objects are reported (default: stderr). */
  readonly log?: (line: string) => void;
  /** Backoff while the cluster is unreachable (default 100 ms doubling to 10 s). */
  readonly retry?: RetryOptions;
  /**
   * Kafka aborts a write's transaction left open this long (default 60 000 ms), and fences this
   * owner as it does so: a write must finish within it.
   */
  readonly transactionTimeoutMs?: number;
  /** For tests only: called in every transaction after its records were produced, before EndTxn commits it. */
  readonly testHooks?: { readonly beforeCommit?: (what: string) => void | Promise<void> };
}

export { FencedError };

/** The latest record of one key, as `open` applies the log. */
interface Chunk {
  readonly value: Buffer;
  /** From the `spate.chunk` header: index and count (-1 when missing or malformed). */
  readonly index: number;
  readonly count: number;
  readonly write: string;
}

/**
 * A {@link CheckpointStorage} in one partition of a Kafka topic, with zombie fencing: whoever
 * opens the storage of a task becomes its only writer, and an earlier owner's writes then reject
 * with {@link FencedError}. See the module comment for the record layout.
 *
 * Writes are atomic and durable (one Kafka transaction each, committed before `write` resolves)
 * and run one at a time in call order; reads, `list` included, are answered from memory.
 *
 * @example
 * await ensureCheckpointTopic(connection, 'spate-orders-checkpoints', tasks);
 * const storage = await KafkaCheckpointStorage.open({ connection, topic: 'spate-orders-checkpoints', partition: task, transactionalId: `spate-orders-checkpoints-${task}` });
 * const running = pipeline.start({ checkpointDir: storage });
 * await running.done;
 * await storage.close();
 */
export class KafkaCheckpointStorage implements CheckpointStorage {
  readonly location: string;
  /** How long `open` took (fencing included) and what it read: records (superseded ones and tombstones included) and their key and value bytes. */
  readonly openStats: { readonly ms: number; readonly bytes: number; readonly records: number } = { ms: 0, bytes: 0, records: 0 };
  /** Trouble with the cluster (retries, outages). */
  readonly stats: KafkaStats = newStats();

  private readonly topic: string;
  private readonly partition: number;
  private readonly transactionalId: string;
  private readonly shared: CheckpointTransactions | null;
  /** With checkpoint transactions: tombstones of deleted objects, written with the next checkpoint's objects. */
  private tombstones: ProduceRecord[] = [];
  private readonly timeoutMs: number;
  private readonly log: (line: string) => void;
  private readonly retrier: Retrier;
  private readonly objects = new Map<string, Buffer>();
  /** Objects whose chunks do not fit together (a damaged log): `read` rejects with the reason. */
  private readonly damaged = new Map<string, string>();
  /** Per name, how many chunk keys (0 … n − 1) may still hold a value: a rewrite or deletion tombstones those it no longer uses. */
  private readonly chunkKeys = new Map<string, number>();
  private producer: ProducerIdentity = { producerId: -1n, epoch: -1 };
  private sequence = 0;
  private leader = -1;
  private queue: Promise<unknown> = Promise.resolve();
  /** Set once fenced (a {@link FencedError}) or broken: every later write rejects with it. */
  private failure: Error | null = null;
  private closed = false;

  private constructor(
    private readonly options: KafkaCheckpointStorageOptions,
    private readonly client: KafkaClient,
    private readonly ownsClient: boolean,
  ) {
    this.topic = options.topic;
    this.partition = options.partition;
    this.shared = options.transactions ?? null;
    this.transactionalId = this.shared?.transactionalIds.join(', ') ?? options.transactionalId!;
    this.timeoutMs = options.transactionTimeoutMs ?? 60_000;
    this.location = `kafka://${options.topic}/${options.partition}`;
    this.log = options.log ?? ((line) => process.stderr.write(`spate: ${line}\n`));
    this.retrier = new Retrier(`checkpoint storage ${this.location}`, this.log, this.stats, options.retry, () => this.closed, () => {
      this.client.refresh();
      this.leader = -1;
    });
  }

  /**
   * Opens the storage of one task: fences earlier owners (InitProducerId on `transactionalId`:
   * the broker aborts their open transaction and bumps the epoch, so their writes fail from then
   * on), then reads the partition from its start up to the end of the log, `read_committed`,
   * into memory. It waits while the last stable offset is behind that end (a transaction of
   * another producer still open on the partition: the broker aborts it at its timeout).
   *
   * Rejects with a clear error if the topic or partition does not exist; an unreachable cluster is
   * waited for, with backoff. `client` is for tests and for sharing a connection (it is not closed
   * by {@link close}); by default the storage opens its own.
   */
  static async open(options: KafkaCheckpointStorageOptions, client?: KafkaClient): Promise<KafkaCheckpointStorage> {
    const { topic, partition, transactionalId } = options;
    if (typeof topic !== 'string' || topic.length === 0) throw new Error('KafkaCheckpointStorage: `topic` is required');
    if (!(Number.isInteger(partition) && partition >= 0)) throw new Error(`KafkaCheckpointStorage: \`partition\` must be a whole number >= 0, got ${String(partition)}`);
    if ((options.transactions === undefined) === (typeof transactionalId !== 'string' || transactionalId.length === 0)) throw new Error('KafkaCheckpointStorage: give it either `transactionalId` or `transactions`');
    const timeout = options.transactionTimeoutMs;
    if (timeout !== undefined && !(Number.isInteger(timeout) && timeout > 0)) throw new Error(`KafkaCheckpointStorage: transactionTimeoutMs must be a whole number > 0, got ${String(timeout)}`);
    const own = client === undefined;
    const storage = new KafkaCheckpointStorage(options, client ?? new PlatformaticKafkaClient(options.connection, `spate-checkpoints-${partition}`), own);
    try {
      await storage.load();
      return storage;
    } catch (error) {
      await storage.close();
      throw error;
    }
  }

  // ---- open: fence, then read ----

  private async load(): Promise<void> {
    const started = performance.now();
    let count: number;
    try {
      count = await this.retrier.run(`looking up topic ${this.topic}`, () => this.client.partitions(this.topic));
    } catch (error) {
      if ((error as KafkaError).code === KafkaErrors.UNKNOWN_TOPIC_OR_PARTITION) {
        throw new Error(`checkpoint topic ${this.topic} does not exist: create it first (ensureCheckpointTopic)`, { cause: error });
      }
      throw error;
    }
    if (this.partition >= count) {
      throw new Error(`checkpoint topic ${this.topic} has ${count} partition(s), so there is no partition ${this.partition} for this task (the job has more tasks than the topic has partitions)`);
    }
    // With checkpoint transactions, their `open` fenced the earlier owners.
    if (this.shared === null) this.producer = await this.retrier.run(`taking over transactional id ${this.transactionalId}`, () => this.client.initProducer(this.transactionalId, this.timeoutMs));
    const earliest = await this.retrier.run(`reading ${this.location}`, () => this.client.listOffsets(this.topic, [this.partition], 'earliest'));
    const latest = new Map<string, Map<number, Chunk | null>>();
    let offset = earliest.get(this.partition) ?? 0;
    let end = -1;
    let records = 0;
    let bytes = 0;
    let stalledSince = 0;
    let warned = false;
    let foreign = 0;
    for (;;) {
      // The first fetch does not wait: it only learns where the log ends (an empty partition is read at once).
      const from = offset;
      const r = await this.retrier.run(`reading ${this.location}`, () => this.fetchAt(from, end < 0 ? 0 : 100));
      // Everything the fenced owners committed is below the high watermark once InitProducerId has returned.
      if (end < 0) end = r.highWatermark;
      const cursor = new CommittedRecords(r.batches, r.abortedTransactions, offset);
      while (cursor.next()) {
        const record = cursor.record!;
        records++;
        bytes += (record.key?.length ?? 0) + (record.value?.length ?? 0);
        if (!applyRecord(latest, record)) foreign++;
      }
      const progressed = cursor.position > offset;
      offset = cursor.position;
      if (offset >= end) break;
      if (progressed) {
        stalledSince = 0;
        continue;
      }
      if (stalledSince === 0) stalledSince = performance.now();
      else if (!warned && performance.now() - stalledSince > 5_000) {
        warned = true;
        this.log(
          `${this.location}: waiting for a transaction open at offset ${r.lastStableOffset} to end (another producer's: ${this.transactionalId} was fenced); ` +
            `read_committed readers cannot read past it, and the log goes on to offset ${end}`,
        );
      }
    }
    if (foreign > 0) this.log(`${this.location}: ${foreign} record(s) not written by a Spate checkpoint storage (no key or no ${HEADER_CHUNK} header) were ignored`);
    this.assemble(latest);
    Object.assign(this.openStats, { ms: performance.now() - started, bytes, records });
  }

  /** One fetch at `offset` (its partition errors thrown, retriable ones as such). */
  private async fetchAt(offset: number, maxWaitMs: number): Promise<FetchedPartition> {
    const leader = await this.leaderOf();
    const results = await this.client.fetch(leader, [{ topic: this.topic, partition: this.partition, offset }], { maxWaitMs, maxBytes: 16 << 20, partitionMaxBytes: 16 << 20 });
    const r = results.find((x) => x.partition === this.partition);
    if (r === undefined) throw new KafkaError(`fetching ${this.location} returned nothing for the partition`, KafkaErrors.REQUEST_TIMED_OUT, true);
    if (r.errorCode === KafkaErrors.OFFSET_OUT_OF_RANGE) {
      throw new KafkaError(`offset ${offset} of ${this.location} is no longer in the log (it starts at ${r.logStartOffset}): its records were deleted — is the checkpoint topic compacted rather than deleted by retention?`, r.errorCode, false);
    }
    if (r.errorCode !== 0) throw new KafkaError(`fetching ${this.location} failed with Kafka error ${r.errorCode}`, r.errorCode);
    return r;
  }

  /** Objects from the latest record of every key. */
  private assemble(latest: ReadonlyMap<string, ReadonlyMap<number, Chunk | null>>): void {
    for (const [name, chunks] of latest) {
      let live = 0;
      for (const [i, c] of chunks) if (c !== null) live = Math.max(live, i + 1);
      if (live === 0) continue; // deleted
      this.chunkKeys.set(name, live);
      const head = chunks.get(0);
      // Chunks without their first one: left over from an object deleted by hand; not an object.
      if (head === null || head === undefined) continue;
      const parts: Buffer[] = [];
      let problem: string | null = head.index === 0 && head.count >= 1 ? null : `its first record has no valid ${HEADER_CHUNK} header`;
      for (let i = 0; problem === null && i < head.count; i++) {
        const c = chunks.get(i);
        if (c === null || c === undefined) problem = `chunk ${i + 1} of ${head.count} is missing`;
        else if (c.index !== i || c.count !== head.count || c.write !== head.write) problem = `chunk ${i + 1} of ${head.count} belongs to another write`;
        else parts.push(c.value);
      }
      if (problem === null) this.objects.set(name, Buffer.concat(parts));
      else {
        const reason = `checkpoint object '${name}' in ${this.location} is damaged: ${problem}`;
        this.damaged.set(name, reason);
        this.log(reason);
      }
    }
  }

  private async leaderOf(): Promise<number> {
    if (this.leader >= 0) return this.leader;
    const leaders = await this.client.leaders(this.topic);
    const leader = leaders[this.partition];
    if (leader === undefined) throw new KafkaError(`checkpoint topic ${this.topic} has no partition ${this.partition}`, KafkaErrors.UNKNOWN_TOPIC_OR_PARTITION, false);
    if (leader < 0) throw new KafkaError(`${this.location} has no leader`, KafkaErrors.LEADER_NOT_AVAILABLE, true);
    this.leader = leader;
    return leader;
  }

  // ---- the CheckpointStorage interface ----

  /**
   * Writes an object in one Kafka transaction (chunked above {@link CHUNK_BYTES}); resolves once
   * it is committed. Rejects with {@link FencedError} once another owner has opened the storage.
   */
  async write(name: string, data: Uint8Array): Promise<void> {
    checkName(name);
    const dir = name.slice(0, name.indexOf('/') + 1);
    const checkpoint = this.shared === null ? null : parseCheckpointDir(dir);
    if (this.shared !== null && checkpoint === null) throw new Error(`checkpoint storage ${this.location} writes through checkpoint transactions and holds checkpoints only, not '${name}'`);
    const copy = Buffer.from(data); // the caller may reuse its buffer once this returns
    return this.enqueue(async () => {
      const count = Math.max(1, Math.ceil(copy.length / CHUNK_BYTES));
      const write = Buffer.from(randomBytes(8).toString('hex'));
      const timestamp = BigInt(Date.now());
      const records: ProduceRecord[] = [];
      for (let i = 0; i < count; i++) {
        const headers = new Map([
          [HEADER_CHUNK_BYTES, Buffer.from(`${i}/${count}`)],
          [HEADER_WRITE_BYTES, write],
        ]);
        records.push({ key: chunkKey(name, i), value: copy.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES), headers, timestamp });
      }
      for (let i = count; i < (this.chunkKeys.get(name) ?? 0); i++) records.push({ key: chunkKey(name, i), value: undefined, headers: undefined, timestamp });
      if (checkpoint === null) await this.transaction(`writing '${name}'`, records);
      else await this.inCheckpoint(checkpoint.id, `writing '${name}'`, records, name === dir + MANIFEST);
      this.objects.set(name, copy);
      this.damaged.delete(name);
      this.chunkKeys.set(name, count);
    });
  }

  /** The object, from memory; rejects with an error whose `code` is 'ENOENT' if there is none. */
  async read(name: string): Promise<Uint8Array> {
    const data = this.objects.get(name);
    if (data !== undefined) return data;
    const damage = this.damaged.get(name);
    if (damage !== undefined) throw new Error(damage);
    throw Object.assign(new Error(`no checkpoint object '${name}' in ${this.location}`), { code: 'ENOENT' });
  }

  /** Names of objects directly under `prefix`, and of sub-prefixes ending in `/` (as {@link MemoryCheckpointStorage.list}). */
  async list(prefix: string): Promise<string[]> {
    return listUnder([...this.objects.keys(), ...this.damaged.keys()], prefix);
  }

  /**
   * Removes every object whose name starts with `prefix`: tombstones for all their records, in
   * one transaction (none if nothing matches). Rejects with {@link FencedError} once another
   * owner has opened the storage.
   */
  async deletePrefix(prefix: string): Promise<void> {
    if (typeof prefix !== 'string') throw new TypeError(`a checkpoint prefix must be a string, got ${typeof prefix}`);
    return this.enqueue(async () => {
      const names = [...this.chunkKeys.keys()].filter((n) => n.startsWith(prefix));
      if (names.length === 0) return;
      const timestamp = BigInt(Date.now());
      const records: ProduceRecord[] = [];
      for (const name of names) for (let i = 0; i < this.chunkKeys.get(name)!; i++) records.push({ key: chunkKey(name, i), value: undefined, headers: undefined, timestamp });
      if (this.shared !== null) this.tombstones.push(...records);
      else await this.transaction(`deleting ${names.length} object(s) under '${prefix}'`, records);
      for (const name of names) {
        this.objects.delete(name);
        this.damaged.delete(name);
        this.chunkKeys.delete(name);
      }
    });
  }

  /**
   * Stops: later writes reject, retries end, the connection is closed (unless it was given to
   * `open`). A write in flight may be cut off; its transaction is then aborted by the next owner,
   * or by Kafka after `transactionTimeoutMs`. Reads still answer from memory.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.retrier.wakeAll();
    if (this.ownsClient) await this.client.close().catch(() => undefined);
  }

  // ---- writing ----

  /** Runs `op` after every operation called before it. */
  private enqueue(op: () => Promise<void>): Promise<void> {
    const run = this.queue.then(async () => {
      if (this.failure !== null) throw this.failure;
      if (this.closed) throw new Error(`checkpoint storage ${this.location} is closed`);
      await op();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** One transaction: AddPartitionsToTxn, the records in produce requests of at most ~1 MB, EndTxn commit. */
  private async transaction(what: string, records: readonly ProduceRecord[]): Promise<void> {
    const producer = this.producer;
    try {
      await this.retrier.run(what, () => this.client.addPartitionsToTxn(this.transactionalId, producer, this.topic, [this.partition]));
      for (const batch of batches(records)) {
        const first = this.sequence;
        await this.retrier.run(what, () => this.produce(producer, batch, first));
        this.sequence = (first + batch.length) % 2 ** 31;
      }
      await this.options.testHooks?.beforeCommit?.(what);
      await this.retrier.run(what, () => this.client.endTxn(this.transactionalId, producer, true));
    } catch (error) {
      throw await this.failed(what, error);
    }
  }

  /**
   * Writes records into checkpoint `id`'s transaction (with the tombstones of deletions since the
   * last write), then commits the transaction if `commit` (the manifest was written).
   */
  private async inCheckpoint(id: number, what: string, records: readonly ProduceRecord[], commit: boolean): Promise<void> {
    const shared = this.shared!;
    try {
      const t = await shared.transaction(id);
      const all = this.tombstones.length === 0 ? records : [...this.tombstones, ...records];
      this.tombstones = [];
      await this.retrier.run(what, () => t.addPartitions(this.topic, [this.partition]));
      const sequences = t.sequences(this.topic);
      for (const batch of batches(all)) {
        const first = sequences.get(this.partition) ?? 0;
        await this.retrier.run(what, () => this.produce(t.producer, batch, first, t.transactionalId));
        sequences.set(this.partition, (first + batch.length) % 2 ** 31);
      }
      await this.options.testHooks?.beforeCommit?.(what);
      if (commit) await shared.commit(id);
    } catch (error) {
      if (isFenced(error)) throw this.fenced(what, error as KafkaError);
      if (error instanceof FencedError) throw (this.failure ??= error);
      // The transaction cannot be trusted any more: nothing more is written through this storage (the job fails; the next owner aborts it).
      this.failure ??= new Error(`checkpoint storage ${this.location}: ${what} failed: ${describeKafkaError(error)}`, { cause: error });
      throw this.failure;
    }
  }

  private async produce(producer: ProducerIdentity, records: readonly ProduceRecord[], firstSequence: number, transactionalId = this.transactionalId): Promise<void> {
    const leader = await this.leaderOf();
    const [code] = await this.client.produce(leader, producer, transactionalId, [{ topic: this.topic, partition: this.partition, records, firstSequence }], 30_000);
    // A duplicate sequence: the broker has these records already (a retry after an unknown outcome).
    if (code === 0 || code === KafkaErrors.DUPLICATE_SEQUENCE_NUMBER) return;
    throw new KafkaError(`writing to ${this.location} failed with Kafka error ${code}`, code ?? KafkaErrors.REQUEST_TIMED_OUT);
  }

  /**
   * The error a failed transaction rejects with. Fenced: a {@link FencedError}, for good. Else the
   * transaction is aborted, so that it holds no reader back; if even that fails, the storage is
   * unusable (a later write could not tell what the broker holds) until it is opened again.
   */
  private async failed(what: string, error: unknown): Promise<Error> {
    if (isFenced(error)) return this.fenced(what, error as KafkaError);
    if (this.closed) return new Error(`checkpoint storage ${this.location}: ${what} was cut off: the storage was closed`, { cause: error });
    const failure = new Error(`checkpoint storage ${this.location}: ${what} failed: ${describeKafkaError(error)}`, { cause: error });
    try {
      await this.client.endTxn(this.transactionalId, this.producer, false);
    } catch (abortError) {
      if (isFenced(abortError)) return this.fenced(what, abortError as KafkaError);
      // Nothing was open (the failure came before AddPartitionsToTxn took effect): nothing to abort.
      if ((abortError as KafkaError).code === KafkaErrors.INVALID_TXN_STATE) return failure;
      this.failure = new Error(`checkpoint storage ${this.location} is unusable: ${what} failed (${describeKafkaError(error)}) and its transaction could not be aborted (${describeKafkaError(abortError)}); open it again`, { cause: error });
    }
    return failure;
  }

  private fenced(what: string, error: KafkaError): FencedError {
    this.failure ??= new FencedError(
      `checkpoint storage ${this.location}: ${what} was refused (${describeKafkaError(error)}): the task was taken over — another process opened its checkpoints ` +
        `with transactional id ${this.transactionalId} since this one did (or a transaction outlived transactionTimeoutMs, ${this.timeoutMs} ms) — so this process may no longer write them`,
      error.code,
    );
    return this.failure as FencedError;
  }
}

/** Creates the job's checkpoint topic if missing, or checks an existing one; see {@link ensureCheckpointTopic}. */
export interface EnsureCheckpointTopicOptions {
  /** Where retries are reported (default: stderr). */
  readonly log?: (line: string) => void;
  /** Backoff while the cluster is unreachable (default 100 ms doubling to 10 s). */
  readonly retry?: RetryOptions;
  /** Replicas of each partition (default: the broker's `default.replication.factor`). */
  readonly replicas?: number;
}

/**
 * Creates the job's checkpoint topic if it is missing — `partitions` partitions (one per task),
 * with {@link CHECKPOINT_TOPIC_CONFIGS} (compacted, never deleted by time, compacted within
 * minutes) — or checks that an existing one has exactly `partitions` partitions (a clear error
 * otherwise: a task's checkpoints are in the partition of its number). Resolves once every
 * partition has a leader. Idempotent, and safe when several processes call it at once.
 *
 * @example
 * await ensureCheckpointTopic({ brokers: ['kafka-1:9092'] }, 'spate-orders-checkpoints', 4);
 */
export async function ensureCheckpointTopic(connection: KafkaConnection | undefined, topic: string, partitions: number, options: EnsureCheckpointTopicOptions = {}): Promise<void> {
  if (typeof topic !== 'string' || topic.length === 0) throw new Error('ensureCheckpointTopic: `topic` is required');
  if (!(Number.isInteger(partitions) && partitions >= 1)) throw new Error(`ensureCheckpointTopic: partitions must be a whole number >= 1, got ${String(partitions)}`);
  const client = new PlatformaticKafkaClient(connection, 'spate-checkpoints');
  const log = options.log ?? ((line: string) => process.stderr.write(`spate: ${line}\n`));
  const retrier = new Retrier(`checkpoint topic ${topic}`, log, newStats(), options.retry, () => false, () => client.refresh());
  try {
    if ((await retrier.run(`looking up topic ${topic}`, () => partitionsOf(client, topic))) === null) {
      const configs = { partitions, configs: CHECKPOINT_TOPIC_CONFIGS, ...(options.replicas === undefined ? {} : { replicas: options.replicas }) };
      await retrier.run(`creating topic ${topic}`, () => createTopic(connection, topic, configs));
    }
    // Created here or by another process just now: wait until the metadata shows it whole.
    const deadline = Date.now() + 30_000;
    for (;;) {
      client.refresh();
      const count = await retrier.run(`looking up topic ${topic}`, () => partitionsOf(client, topic));
      if (count !== null) {
        if (count !== partitions) {
          throw new Error(
            `checkpoint topic ${topic} has ${count} partition(s), but the job needs exactly ${partitions} (one per task: task t keeps its checkpoints in partition t); ` +
              `give the job another checkpoint topic, or delete this one (its checkpoints are lost)`,
          );
        }
        const leaders = await retrier.run(`looking up topic ${topic}`, () => client.leaders(topic));
        if (leaders.length === partitions && leaders.every((l) => l >= 0)) return;
      }
      if (Date.now() > deadline) throw new Error(`checkpoint topic ${topic} was created but ${count === null ? 'is not in the cluster metadata' : 'has partitions without a leader'} after 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** The topic's partition count, or null if it does not exist. */
async function partitionsOf(client: KafkaClient, topic: string): Promise<number | null> {
  try {
    return await client.partitions(topic);
  } catch (error) {
    if ((error as KafkaError).code === KafkaErrors.UNKNOWN_TOPIC_OR_PARTITION && !(error as KafkaError).retriable) return null;
    throw error;
  }
}

/** Names are non-empty, well-formed text without NUL (the key separates the chunk index with it). */
function checkName(name: string): void {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError(`a checkpoint object name must be a non-empty string, got ${JSON.stringify(name)}`);
  if (name.includes('\0') || Buffer.from(name, 'utf8').toString('utf8') !== name) throw new TypeError(`invalid checkpoint object name ${JSON.stringify(name)} (a NUL character or unpaired surrogate)`);
}

/** The key of chunk `index` of object `name`: the name (UTF-8), then for index > 0 a NUL byte and the index in decimal. */
function chunkKey(name: string, index: number): Buffer {
  return Buffer.from(index === 0 ? name : `${name}\0${index}`, 'utf8');
}

/** Applies one committed record to the latest record of its key; false if it is not one of ours (ignored). */
function applyRecord(latest: Map<string, Map<number, Chunk | null>>, record: KafkaWireRecord): boolean {
  const key = record.key;
  if (key === null) return false;
  const nul = key.indexOf(0);
  const name = key.toString('utf8', 0, nul < 0 ? key.length : nul);
  const index = nul < 0 ? 0 : Number(key.toString('latin1', nul + 1));
  if (!(Number.isInteger(index) && index >= 0) || name.length === 0) return false;
  let chunks = latest.get(name);
  if (chunks === undefined) latest.set(name, (chunks = new Map()));
  if (record.value === null) {
    chunks.set(index, null);
    return true;
  }
  let chunk: string | null = null;
  let write = '';
  for (const [k, v] of record.headers) {
    if (k === null || v === null) continue;
    if (k.equals(HEADER_CHUNK_BYTES)) chunk = v.toString('latin1');
    else if (k.equals(HEADER_WRITE_BYTES)) write = v.toString('latin1');
  }
  const m = chunk === null ? null : /^(\d+)\/(\d+)$/.exec(chunk);
  chunks.set(index, { value: record.value, index: m === null ? -1 : Number(m[1]), count: m === null ? -1 : Number(m[2]), write });
  return m !== null;
}

/** Records in groups of at most {@link BATCH_BYTES} (a chunk alone always fits), in order. */
function* batches(records: readonly ProduceRecord[]): Generator<ProduceRecord[]> {
  let batch: ProduceRecord[] = [];
  let bytes = 0;
  for (const r of records) {
    let size = (r.key?.length ?? 0) + (r.value?.length ?? 0) + RECORD_OVERHEAD;
    if (r.headers !== undefined) for (const [k, v] of r.headers) size += k.length + v.length + 4;
    if (batch.length > 0 && bytes + size > BATCH_BYTES) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(r);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}
