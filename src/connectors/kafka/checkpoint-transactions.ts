/**
 * One Kafka transaction per checkpoint for everything a job writes to Kafka — what its Kafka
 * sinks write (output and exchange topics), its checkpoint's state objects (a
 * `KafkaCheckpointStorage` given these transactions) and its Kafka sources' input offsets — so
 * that all of it becomes visible at once, when the checkpoint's manifest commits the
 * transaction, or not at all. This is Kafka's consume–process–produce transaction, with the
 * checkpoint as its unit; a cluster job's task uses one.
 *
 * **Which transaction.** Checkpoint n's transaction holds the records its sinks wrote after their
 * pre-commit of the previous checkpoint and up to their pre-commit of n, the state objects and
 * manifest of n, and the source offsets snapshotted at n. Participants ask for it by checkpoint
 * id ({@link CheckpointTransactions.transaction}); records written after a sink's pre-commit of
 * n belong to n + 1 (a sink learns the id of its first checkpoint from
 * {@link CheckpointTransactions.firstCheckpointId}). Transactions of two checkpoints are open at
 * once while one is being written and the next receives records, so they run on a small pool of
 * transactional ids, `<prefix>.<slot>`; a slot is used again only after its transaction committed
 * and InitProducerId gave it a new epoch (sequence numbers start again at 0).
 *
 * **Commit.** {@link CheckpointTransactions.commit} — called by the checkpoint storage once the
 * manifest is written, after every participant's pre-commit finished (the runtime writes the
 * manifest last) — waits for the offsets, then EndTxn(commit): the commit point of the
 * checkpoint. Checkpoints commit in order; one whose transaction is open when a later one
 * commits never completed, and its records would be lost, so that fails the job (a job on these
 * transactions must not tolerate failed checkpoints).
 *
 * **Fencing.** {@link CheckpointTransactions.open} calls InitProducerId on every slot: Kafka
 * aborts whatever an earlier owner left open — records, state and offsets of a checkpoint that
 * never completed — and refuses that owner's later writes (PRODUCER_FENCED or
 * INVALID_PRODUCER_EPOCH), so a zombie can neither publish output nor commit a checkpoint.
 */
import { describeKafkaError, type FetchPosition, type KafkaClient, type KafkaConnection, KafkaError, KafkaErrors, PlatformaticKafkaClient, type ProducerIdentity } from './client.ts';
import { type KafkaStats, newStats, Retrier, type RetryOptions } from './retry.ts';
import { isFenced, type Lease, TransactionPool } from './transaction-pool.ts';

/**
 * A write refused because another owner took the same task's transactional ids over (opened its
 * checkpoint storage or its checkpoint transactions) since this one did: this process is a zombie
 * and must stop writing. Every later write and deletion of the storage rejects with it too. (Only a write whose commit was
 * sent, its answer lost, and retried after the takeover can have been committed all the same: the
 * new owner then saw it when it opened.)
 */
export class FencedError extends Error {
  override readonly name = 'FencedError';
  constructor(
    message: string,
    /** The Kafka error code that said so (INVALID_PRODUCER_EPOCH, PRODUCER_FENCED). */
    readonly code: number,
  ) {
    super(message);
  }
}

/** Options of {@link CheckpointTransactions}. */
export interface CheckpointTransactionsOptions {
  /** Brokers, TLS and SASL (default brokers: `SPATE_KAFKA_BROKERS`, else 127.0.0.1:9092). */
  readonly connection?: KafkaConnection;
  /** Prefix of the pool's transactional ids (`<prefix>.<slot>`): one per task, the same in every process that may run it. */
  readonly transactionalIdPrefix: string;
  /** Transactional ids in the pool (default 4; at least 2: the checkpoint being written and the next one). */
  readonly poolSize?: number;
  /** Kafka aborts a transaction left open this long (default 60 000 ms): longer than a checkpoint interval plus a checkpoint's writing. */
  readonly transactionTimeoutMs?: number;
  /** Where retries are reported (default: stderr). */
  readonly log?: (line: string) => void;
  /** Backoff while the cluster is unreachable (default 100 ms doubling to 10 s). */
  readonly retry?: RetryOptions;
}

/** The Kafka transaction of one checkpoint, as its participants write into it. */
export interface CheckpointTransaction {
  readonly checkpointId: number;
  readonly transactionalId: string;
  readonly producer: ProducerIdentity;
  /**
   * The next sequence number per partition of `topic` in this transaction, advanced by whoever
   * holds the partition ({@link hold}) as its records are acknowledged.
   */
  sequences(topic: string): Map<number, number>;
  /**
   * Takes partition `partition` of `topic` for `writer` (true), or says another writer has it
   * (false): several sinks may write one topic, and a partition's sequence numbers must follow
   * each other in the order the broker receives them, so one produce request at a time per
   * partition — held from sending until its outcome is known (acknowledged, or given up).
   */
  hold(topic: string, partition: number, writer: object): boolean;
  /** Gives the partition back (its sequence numbers advanced, if the records were acknowledged). */
  unhold(topic: string, partition: number, writer: object): void;
  /** Resolves when a partition is given back next. */
  released(): Promise<void>;
  /** AddPartitionsToTxn for the partitions not yet in the transaction. */
  addPartitions(topic: string, partitions: readonly number[]): Promise<void>;
}

/** Something (a Kafka sink or source) that can write into a job's checkpoint transactions instead of its own. */
export interface JoinsCheckpointTransactions {
  joinCheckpointTransactions(transactions: CheckpointTransactions): void;
}

/** Whether `x` can join checkpoint transactions. */
export function joinsCheckpointTransactions(x: unknown): x is JoinsCheckpointTransactions {
  return typeof (x as Partial<JoinsCheckpointTransactions> | null)?.joinCheckpointTransactions === 'function';
}

/** A checkpoint's transaction being written. */
class Entry implements CheckpointTransaction {
  transactionalId = '';
  producer: ProducerIdentity = { producerId: -1n, epoch: -1 };
  lease: Lease | null = null;
  /** Resolves once the transaction has its transactional id and producer epoch. */
  ready!: Promise<CheckpointTransaction>;
  /** Offset commits in flight. */
  readonly pending: Array<Promise<void>> = [];
  private readonly bySequence = new Map<string, Map<number, number>>();
  private readonly added = new Map<string, Set<number>>();
  private readonly holders = new Map<string, object>();
  private waiting: { promise: Promise<void>; resolve: () => void } | null = null;
  private readonly adding = new Map<string, Promise<void>>();

  constructor(
    readonly checkpointId: number,
    private readonly owner: CheckpointTransactions,
  ) {}

  sequences(topic: string): Map<number, number> {
    let map = this.bySequence.get(topic);
    if (map === undefined) this.bySequence.set(topic, (map = new Map()));
    return map;
  }

  hold(topic: string, partition: number, writer: object): boolean {
    const key = `${topic}:${partition}`;
    const holder = this.holders.get(key);
    if (holder !== undefined) return holder === writer;
    this.holders.set(key, writer);
    return true;
  }

  unhold(topic: string, partition: number, writer: object): void {
    const key = `${topic}:${partition}`;
    if (this.holders.get(key) !== writer) return;
    this.holders.delete(key);
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.resolve();
  }

  released(): Promise<void> {
    if (this.waiting === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.waiting = { promise, resolve };
    }
    return this.waiting.promise;
  }

  async addPartitions(topic: string, partitions: readonly number[]): Promise<void> {
    // One AddPartitionsToTxn at a time per topic: a second caller waits, then adds what is left.
    for (;;) {
      const running = this.adding.get(topic);
      if (running === undefined) break;
      await running.catch(() => undefined);
    }
    let added = this.added.get(topic);
    if (added === undefined) this.added.set(topic, (added = new Set()));
    const fresh = partitions.filter((p) => !added.has(p));
    if (fresh.length === 0) return;
    const run = this.owner.addPartitionsTo(this, topic, fresh);
    this.adding.set(topic, run);
    try {
      await run;
      for (const p of fresh) added.add(p);
    } finally {
      this.adding.delete(topic);
    }
  }
}

/**
 * The checkpoint transactions of one job (a cluster task): see the module comment. Open it
 * (fencing earlier owners) before anything writes; give it to the checkpoint storage and to the
 * Kafka sinks and sources ({@link JoinsCheckpointTransactions}); close it when the job ended.
 */
export class CheckpointTransactions {
  /** Trouble with the cluster (retries, outages). */
  readonly stats: KafkaStats = newStats();
  /**
   * The id of the job's first checkpoint from here on (the runtime's: one more than the newest
   * checkpoint in its storage), which a sink's first records belong to. Set before the job starts.
   */
  firstCheckpointId = 1;
  private readonly client: KafkaClient;
  private readonly retrier: Retrier;
  private readonly timeoutMs: number;
  private readonly pool: TransactionPool;
  private readonly entries = new Map<number, Entry>();
  private lastCommitted = 0;
  private opened = false;
  private closed = false;
  private failure: Error | null = null;
  private readonly ownsClient: boolean;

  constructor(options: CheckpointTransactionsOptions, client?: KafkaClient) {
    const prefix = options.transactionalIdPrefix;
    if (typeof prefix !== 'string' || prefix.length === 0) throw new Error('CheckpointTransactions: `transactionalIdPrefix` is required');
    const size = options.poolSize ?? 4;
    if (!(Number.isInteger(size) && size >= 2)) throw new Error(`CheckpointTransactions: poolSize must be a whole number ≥ 2, got ${String(size)}`);
    this.timeoutMs = options.transactionTimeoutMs ?? 60_000;
    this.client = client ?? new PlatformaticKafkaClient(options.connection, `spate-${prefix}`);
    this.ownsClient = client === undefined;
    const log = options.log ?? ((line: string) => process.stderr.write(`spate: ${line}\n`));
    this.retrier = new Retrier(`checkpoint transactions ${prefix}`, log, this.stats, options.retry, () => this.closed, () => this.client.refresh());
    this.pool = new TransactionPool(
      Array.from({ length: size }, (_, k) => `${prefix}.${k}`),
      this.client,
      this.retrier,
      this.timeoutMs,
    );
  }

  /** The pool's transactional ids. */
  get transactionalIds(): string[] {
    return this.pool.ids;
  }

  /**
   * Takes the pool over: InitProducerId on every transactional id, which aborts what an earlier
   * owner left open and fences it. Waits, with backoff, while the cluster is unreachable.
   */
  async open(): Promise<void> {
    await Promise.all(this.pool.ids.map((id) => this.pool.takeOver(id)));
    this.opened = true;
  }

  /** Checkpoint `checkpointId`'s transaction (begun on a free id of the pool at the first call; waits while every id is leased). */
  transaction(checkpointId: number): Promise<CheckpointTransaction> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (!this.opened) return Promise.reject(new Error('CheckpointTransactions: open() them before writing'));
    if (this.closed) return Promise.reject(new Error('CheckpointTransactions: closed'));
    let entry = this.entries.get(checkpointId);
    if (entry !== undefined) return entry.ready;
    if (checkpointId <= this.lastCommitted) return Promise.reject(new Error(`the transaction of checkpoint ${checkpointId} was committed already (checkpoint ${this.lastCommitted} is committed): a participant is out of step`));
    entry = new Entry(checkpointId, this);
    this.entries.set(checkpointId, entry);
    entry.ready = this.begin(entry);
    return entry.ready;
  }

  /** Commits `offsets` of consumer group `groupId` in checkpoint `checkpointId`'s transaction (the group must have no members); `commit` waits for it. */
  commitOffsets(checkpointId: number, groupId: string, offsets: readonly FetchPosition[]): void {
    if (offsets.length === 0) return;
    const send = this.transaction(checkpointId).then((t) =>
      this.retrier.run(`committing offsets of group ${groupId} in checkpoint ${checkpointId}'s transaction`, () => this.client.txnCommitOffsets(t.transactionalId, t.producer, groupId, offsets)),
    );
    send.catch(() => undefined); // reported by commit
    this.entries.get(checkpointId)?.pending.push(send);
  }

  /**
   * Commits checkpoint `checkpointId`'s transaction (EndTxn): everything written into it becomes
   * visible. Call it once the checkpoint's manifest is written into it. Rejects if an earlier
   * checkpoint's transaction is still open (it never completed: its records would be lost), if
   * the transaction was fenced (another owner opened the pool), or on a failure Kafka does not
   * let pass; the job must then stop.
   */
  async commit(checkpointId: number): Promise<void> {
    const entry = this.entries.get(checkpointId);
    if (entry === undefined) throw new Error(`checkpoint ${checkpointId} has no open transaction to commit`);
    for (const id of this.entries.keys()) {
      if (id < checkpointId) {
        throw this.fail(
          new Error(
            `checkpoint ${id} never completed but its Kafka transaction is open, so what it holds would be lost when checkpoint ${checkpointId} commits; ` +
              'a job writing through checkpoint transactions cannot go on after a failed checkpoint (set toleratedCheckpointFailures to 0)',
          ),
        );
      }
    }
    const t = await entry.ready;
    for (const p of entry.pending) await p;
    try {
      await this.retrier.run(`committing the transaction of checkpoint ${checkpointId}`, () => this.client.endTxn(t.transactionalId, t.producer, true));
    } catch (error) {
      throw this.fail(isFenced(error) ? this.fencedError(t, error as KafkaError) : new Error(`committing the Kafka transaction of checkpoint ${checkpointId} (${t.transactionalId}) failed: ${describeKafkaError(error)}`, { cause: error }));
    }
    this.entries.delete(checkpointId);
    this.lastCommitted = checkpointId;
    if (entry.lease !== null) this.pool.release(entry.lease);
  }

  /**
   * Aborts the open transactions (best effort: the next owner's `open` aborts them anyway, but
   * until then `read_committed` readers of their partitions wait) and closes the connection.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.retrier.wakeAll();
    const pool = this.pool.close(); // a transaction still waiting for an id gives up
    const open = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(
      open.map(async (e) => {
        const t = await e.ready.catch(() => null);
        if (t !== null) await this.client.endTxn(t.transactionalId, t.producer, false).catch(() => undefined);
      }),
    );
    await pool;
    if (this.ownsClient) await this.client.close().catch(() => undefined);
  }

  /** AddPartitionsToTxn for `entry` (called by {@link Entry.addPartitions}). */
  addPartitionsTo(entry: Entry, topic: string, partitions: readonly number[]): Promise<void> {
    return this.retrier
      .run(`adding ${topic} to checkpoint ${entry.checkpointId}'s transaction`, () => this.client.addPartitionsToTxn(entry.transactionalId, entry.producer, topic, partitions))
      .catch((error: unknown) => {
        throw isFenced(error) ? this.fencedError(entry, error as KafkaError) : error;
      });
  }

  /** The error for a write refused because another owner took the pool over. */
  fencedError(t: CheckpointTransaction, error: KafkaError): FencedError {
    return new FencedError(
      `the Kafka transaction of checkpoint ${t.checkpointId} (${t.transactionalId}) was fenced (${describeKafkaError(error)}): the task was taken over — ` +
        `another process opened its transactions since this one did (or the transaction outlived transactionTimeoutMs, ${this.timeoutMs} ms)`,
      error.code,
    );
  }

  // ---- transactional ids ----

  private async begin(entry: Entry): Promise<CheckpointTransaction> {
    try {
      entry.lease = await this.pool.lease();
    } catch (error) {
      throw isFenced(error) ? this.fail(this.fencedError(entry, error as KafkaError)) : error;
    }
    entry.transactionalId = entry.lease.transactionalId;
    entry.producer = entry.lease.producer;
    return entry;
  }

  private fail(error: Error): Error {
    this.failure ??= error;
    return this.failure;
  }
}
