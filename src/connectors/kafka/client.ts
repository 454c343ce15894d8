/**
 * The Kafka wire operations Spate needs, behind a small interface of its own ({@link KafkaClient})
 * so that the client library can be swapped. The implementation here uses `@platformatic/kafka`
 * 1.x — its connection handling (TLS, SASL), API version negotiation and protocol codecs — but
 * not its consumer and producer: Spate owns partition assignment, offsets (in checkpoints), the
 * filtering of aborted transactions, and transactions that outlive the process that opened them,
 * which those clients do not offer.
 */
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import { Admin, Base, kGetApi, kGetConnection, listTransactionsV1, type Connection, type SASLOptions } from '@platformatic/kafka';
import type { KafkaBatch } from './records.ts';

/** How to reach the cluster: passed through to the client library. */
export interface KafkaConnection {
  /** Bootstrap brokers, `host:port` (default: `SPATE_KAFKA_BROKERS`, comma-separated, else `127.0.0.1:9092`). */
  readonly brokers?: readonly string[] | string;
  /** Client id the brokers see (default `spate`). */
  readonly clientId?: string;
  /** TLS: Node's TLS options (`ca`, `cert`, `key`, `rejectUnauthorized`, `servername`, …). */
  readonly tls?: TlsOptions;
  /**
   * SASL authentication, e.g. `{ mechanism: 'SCRAM-SHA-512', username, password }`; mechanisms
   * PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (username, password and token may be functions).
   */
  readonly sasl?: { readonly mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512' | 'OAUTHBEARER' | 'GSSAPI'; readonly username?: string | (() => string | Promise<string>); readonly password?: string | (() => string | Promise<string>); readonly token?: string | (() => string | Promise<string>) };
  /** Milliseconds to wait for a connection (default 5 000) and for a response (default 30 000). */
  readonly connectTimeout?: number;
  readonly requestTimeout?: number;
}

/** The brokers of `connection`, or of the environment, or the local default. */
export function brokersOf(connection: KafkaConnection | undefined): string[] {
  const given = connection?.brokers ?? process.env['SPATE_KAFKA_BROKERS'] ?? '127.0.0.1:9092';
  const list = (typeof given === 'string' ? given.split(',') : [...given]).map((b) => b.trim()).filter((b) => b.length > 0);
  if (list.length === 0) throw new Error('Kafka: no brokers given');
  return list;
}

/** Kafka error codes the connectors react to. */
export const KafkaErrors = {
  NONE: 0,
  OFFSET_OUT_OF_RANGE: 1,
  CORRUPT_MESSAGE: 2,
  UNKNOWN_TOPIC_OR_PARTITION: 3,
  LEADER_NOT_AVAILABLE: 5,
  NOT_LEADER_OR_FOLLOWER: 6,
  REQUEST_TIMED_OUT: 7,
  MESSAGE_TOO_LARGE: 10,
  COORDINATOR_LOAD_IN_PROGRESS: 14,
  COORDINATOR_NOT_AVAILABLE: 15,
  NOT_COORDINATOR: 16,
  RECORD_LIST_TOO_LARGE: 18,
  NOT_ENOUGH_REPLICAS: 19,
  NOT_ENOUGH_REPLICAS_AFTER_APPEND: 20,
  INVALID_PRODUCER_EPOCH: 47,
  INVALID_TXN_STATE: 48,
  OUT_OF_ORDER_SEQUENCE_NUMBER: 45,
  DUPLICATE_SEQUENCE_NUMBER: 46,
  CONCURRENT_TRANSACTIONS: 51,
  TRANSACTION_COORDINATOR_FENCED: 52,
  TOPIC_AUTHORIZATION_FAILED: 29,
  GROUP_AUTHORIZATION_FAILED: 30,
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 53,
  UNKNOWN_PRODUCER_ID: 59,
  FENCED_LEADER_EPOCH: 74,
  UNKNOWN_LEADER_EPOCH: 75,
  OFFSET_NOT_AVAILABLE: 78,
  PRODUCER_FENCED: 90,
  UNSTABLE_OFFSET_COMMIT: 88,
  INVALID_RECORD: 87,
  UNKNOWN_TOPIC_ID: 100,
  INCONSISTENT_TOPIC_ID: 103,
  TRANSACTION_ABORTABLE: 120,
  UNKNOWN_MEMBER_ID: 25,
  FENCED_MEMBER_EPOCH: 110,
  UNRELEASED_INSTANCE_ID: 111,
  GROUP_MAX_SIZE_REACHED: 81,
} as const;

/** Errors that go away by themselves (a leader election, a coordinator loading, a broker restarting). */
const RETRIABLE_CODES = new Set<number>([
  KafkaErrors.CORRUPT_MESSAGE,
  KafkaErrors.UNKNOWN_TOPIC_OR_PARTITION,
  KafkaErrors.LEADER_NOT_AVAILABLE,
  KafkaErrors.NOT_LEADER_OR_FOLLOWER,
  KafkaErrors.REQUEST_TIMED_OUT,
  KafkaErrors.COORDINATOR_LOAD_IN_PROGRESS,
  KafkaErrors.COORDINATOR_NOT_AVAILABLE,
  KafkaErrors.NOT_COORDINATOR,
  KafkaErrors.NOT_ENOUGH_REPLICAS,
  KafkaErrors.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
  KafkaErrors.CONCURRENT_TRANSACTIONS,
  KafkaErrors.FENCED_LEADER_EPOCH,
  KafkaErrors.UNKNOWN_LEADER_EPOCH,
  KafkaErrors.OFFSET_NOT_AVAILABLE,
  KafkaErrors.UNSTABLE_OFFSET_COMMIT,
  KafkaErrors.UNKNOWN_TOPIC_ID,
  KafkaErrors.INCONSISTENT_TOPIC_ID,
]);

/** An error response from Kafka, with its code. */
export class KafkaError extends Error {
  override readonly name = 'KafkaError';
  constructor(
    message: string,
    readonly code: number,
    readonly retriable: boolean = RETRIABLE_CODES.has(code),
  ) {
    super(message);
  }
}

/** Whether an error is worth retrying: the network, a broker restarting, a retriable Kafka code. */
export function isRetriable(error: unknown): boolean {
  if (error instanceof KafkaError) return error.retriable;
  const e = error as { code?: unknown; canRetry?: unknown; errors?: unknown[]; message?: unknown } | null;
  if (e === null || typeof e !== 'object') return false;
  // A Kafka error code of our own errors (FencedError): the code decides, not the message.
  if (typeof e.code === 'number') return RETRIABLE_CODES.has(e.code);
  if (typeof e.code === 'string' && /^(ECONN|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|PLT_KFK_NETWORK|PLT_KFK_TIMEOUT)/.test(e.code)) return true;
  // A response the codec could not read: the library's parsers of Produce v10+ and Fetch v16+ fail
  // on the tagged leader hints a broker adds to NOT_LEADER errors while leadership moves. Retried
  // after a metadata refresh (produce requests are resent with the same sequence numbers).
  if (e.code === 'OUT_OF_BOUNDS') return true;
  if (Array.isArray(e.errors) && e.errors.length > 0) return e.errors.some((x) => isRetriable(x));
  return /ECONNREFUSED|ECONNRESET|socket|Connection closed|connection.*(closed|lost)|timed? ?out|Cannot connect/i.test(String(e.message ?? ''));
}

/** A one-line description of an error from the client (nested causes flattened). */
export function describeKafkaError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const nested = (error as { errors?: unknown[] }).errors;
  if (Array.isArray(nested) && nested.length > 0) {
    const inner = [...new Set(nested.map((e) => describeKafkaError(e)))].join('; ');
    return inner.length > 0 ? inner : error.message;
  }
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && !error.message.includes(code) && !code.startsWith('PLT_KFK') ? `${error.message} (${code})` : error.message;
}

/** A topic partition and the offset to fetch from. */
export interface FetchPosition {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

/** What a fetch returned for one partition. */
export interface FetchedPartition {
  readonly topic: string;
  readonly partition: number;
  /** 0 or a Kafka error code (OFFSET_OUT_OF_RANGE, NOT_LEADER_OR_FOLLOWER, …). */
  readonly errorCode: number;
  readonly highWatermark: number;
  /** The end of what `read_committed` may read: the first offset of the oldest open transaction, or the high watermark. */
  readonly lastStableOffset: number;
  readonly logStartOffset: number;
  /** Transactions aborted in the fetched range (read_committed): producer id and first offset. */
  readonly abortedTransactions: ReadonlyArray<{ readonly producerId: bigint; readonly firstOffset: number }>;
  readonly batches: readonly KafkaBatch[];
}

/** A record to produce. */
export interface ProduceRecord {
  readonly key: Buffer | undefined;
  readonly value: Buffer | undefined;
  readonly headers: Map<Buffer, Buffer> | undefined;
  readonly timestamp: bigint;
}

/** The identity a producer writes under (idempotence, transactions). */
export interface ProducerIdentity {
  readonly producerId: bigint;
  readonly epoch: number;
}

/** The records of one partition in one produce request, with their first sequence number. */
export interface PartitionRecords {
  readonly topic: string;
  readonly partition: number;
  readonly records: readonly ProduceRecord[];
  readonly firstSequence: number;
}

/** A transaction as the transaction coordinators list it. */
export interface ListedTransaction {
  readonly transactionalId: string;
  readonly producerId: bigint;
  readonly state: string;
}

/**
 * The operations of Kafka's protocol the connectors use. Every method may throw a
 * {@link KafkaError} (with the Kafka error code) or a network error; {@link isRetriable} tells
 * which are worth retrying. Partition errors of `fetch` and `produce` are returned, not thrown.
 */
export interface KafkaClient {
  /** Partitions of a topic (fails if it does not exist). */
  partitions(topic: string): Promise<number>;
  /** The leader broker of each partition of a topic. */
  leaders(topic: string): Promise<number[]>;
  /** Forgets cached metadata (after a leader change). */
  refresh(): void;
  /**
   * Offsets of partitions: `earliest` (log start), `latest` (for read_committed, the last stable
   * offset) or the first offset with a timestamp ≥ the given one (or the end if none).
   */
  listOffsets(topic: string, partitions: readonly number[], at: 'earliest' | 'latest' | number): Promise<Map<number, number>>;
  /** One fetch from one broker, `read_committed`, raw: control batches and aborted data included. */
  fetch(node: number, positions: readonly FetchPosition[], options: { readonly maxWaitMs: number; readonly maxBytes: number; readonly partitionMaxBytes: number }): Promise<FetchedPartition[]>;
  /** Commits offsets for a group outside group membership (monitoring). */
  commitOffsets(groupId: string, offsets: readonly FetchPosition[]): Promise<void>;
  /**
   * InitProducerId: a fresh producer id and epoch for an idempotent producer (null id) or a
   * transactional id (fencing its earlier epochs and aborting its open transaction). With
   * `current`, the identity the caller last had (KIP-360): Kafka bumps the epoch only if that is
   * still the id's current one, and answers PRODUCER_FENCED if another owner took the id since —
   * so a zombie learns it was fenced instead of fencing the new owner back.
   */
  initProducer(transactionalId: string | null, transactionTimeoutMs: number, current?: ProducerIdentity): Promise<ProducerIdentity>;
  /** AddPartitionsToTxn. */
  addPartitionsToTxn(transactionalId: string, producer: ProducerIdentity, topic: string, partitions: readonly number[]): Promise<void>;
  /** One produce request to one broker (acks all); the error code of every partition, in order. */
  produce(node: number, producer: ProducerIdentity, transactionalId: string | null, parts: readonly PartitionRecords[], timeoutMs: number): Promise<number[]>;
  /**
   * Commits a group's offsets inside a transaction: AddOffsetsToTxn, then TxnOffsetCommit to the
   * group's coordinator (outside group membership: generation -1, so the group must have no
   * members). They become visible when the transaction commits, and vanish if it aborts.
   */
  txnCommitOffsets(transactionalId: string, producer: ProducerIdentity, groupId: string, offsets: readonly FetchPosition[]): Promise<void>;
  /** EndTxn: commits or aborts the transaction that (transactionalId, producer id, epoch) opened. */
  endTxn(transactionalId: string, producer: ProducerIdentity, commit: boolean): Promise<void>;
  /**
   * Transactions in the given states (default: open, `Ongoing`) on every broker (empty if the
   * brokers do not support listing them). Other states: `PrepareCommit` and `PrepareAbort` (ended,
   * markers not yet written: not yet visible to `read_committed` readers), `CompleteCommit`, …
   */
  listTransactions(states?: readonly string[]): Promise<ListedTransaction[]>;
  /** The id Kafka gave a topic (group assignments name topics by id). */
  topicId(topic: string): Promise<string>;
  /**
   * One heartbeat of the consumer-group protocol of KIP-848 (ConsumerGroupHeartbeat): joins with
   * epoch 0, reports the partitions the member owns, receives its target assignment; epoch -1
   * leaves. Group errors are returned in the response, not thrown.
   */
  groupHeartbeat(request: GroupHeartbeatRequest): Promise<GroupHeartbeatResponse>;
  close(): Promise<void>;
}

/** A heartbeat of a member of a KIP-848 consumer group. */
export interface GroupHeartbeatRequest {
  readonly groupId: string;
  readonly memberId: string;
  /** 0 to join, -1 to leave, else the epoch of the last response. */
  readonly memberEpoch: number;
  readonly rebalanceTimeoutMs: number;
  /** Topics subscribed (null: unchanged since the last heartbeat). */
  readonly topics: readonly string[] | null;
  /** Partitions the member owns now, by topic id. */
  readonly owned: ReadonlyArray<{ readonly topicId: string; readonly partitions: readonly number[] }>;
}

/** The coordinator's answer: the member's epoch, when to beat next, and (when it changed) its target assignment. */
export interface GroupHeartbeatResponse {
  readonly errorCode: number;
  readonly errorMessage: string | null;
  readonly memberEpoch: number;
  readonly heartbeatIntervalMs: number;
  readonly assignment: ReadonlyArray<{ readonly topicId: string; readonly partitions: readonly number[] }> | null;
}

type Api = ((connection: Connection, ...args: unknown[]) => void) & { async: (connection: Connection, ...args: unknown[]) => Promise<unknown> };

const READ_COMMITTED = 1;
const COORDINATOR_GROUP = 0;
const COORDINATOR_TRANSACTION = 1;

/** {@link KafkaClient} over `@platformatic/kafka`. */
export class PlatformaticKafkaClient implements KafkaClient {
  private readonly base: Base;
  private readonly topicIds = new Map<string, string>();
  private readonly coordinators = new Map<string, number>();

  constructor(connection: KafkaConnection = {}, clientId?: string) {
    const options: Record<string, unknown> = {
      clientId: (clientId ?? connection.clientId ?? 'spate').replace(/[^A-Za-z0-9._-]/g, '_'),
      bootstrapBrokers: brokersOf(connection),
      connectTimeout: connection.connectTimeout ?? 5_000,
      timeout: connection.requestTimeout ?? 30_000,
      // Retries are Spate's (with backoff and a log line), not hidden in the client.
      retries: 0,
      retryDelay: 100,
      metadataMaxAge: 60_000,
    };
    if (connection.tls !== undefined) options['tls'] = connection.tls;
    if (connection.sasl !== undefined) options['sasl'] = connection.sasl as SASLOptions;
    this.base = new Base(options as never);
    // The client emits 'error' on connection failures that reach no request; they are reported through requests.
    this.base.on('error', () => undefined);
  }

  private api(name: string): Promise<Api> {
    return new Promise((resolve, reject) =>
      (this.base as unknown as Record<symbol, (name: string, cb: (e: Error | null, api?: Api) => void) => void>)[kGetApi]!.call(this.base, name, (e, api) => (e ? reject(e) : resolve(api!))),
    );
  }

  private async connection(node: number | 'any'): Promise<Connection> {
    const metadata = await this.base.metadata({ topics: [] });
    const broker = node === 'any' ? [...metadata.brokers.values()][0] : metadata.brokers.get(node);
    if (broker === undefined) {
      this.base.clearMetadata();
      throw new KafkaError(`broker ${node} is not in the cluster metadata`, KafkaErrors.LEADER_NOT_AVAILABLE, true);
    }
    return new Promise((resolve, reject) =>
      (this.base as unknown as Record<symbol, (b: unknown, cb: (e: Error | null, c?: Connection) => void) => void>)[kGetConnection]!.call(this.base, broker, (e, c) => (e ? reject(e) : resolve(c!))),
    );
  }

  /** Calls `name` on `node`; a response with errors is returned (with its codes) rather than thrown. */
  private async call<R>(name: string, node: number | 'any', ...args: unknown[]): Promise<R> {
    let [api, connection] = await Promise.all([this.api(name), this.connection(node)]);
    // The library's parser of ListTransactions v2 reads a field v2 does not have; v1 answers the same.
    if (name === 'ListTransactions' && (api as unknown as { version: number }).version === 2) api = listTransactionsV1.api as unknown as Api;
    try {
      return (await api.async(connection, ...args)) as R;
    } catch (error) {
      const response = (error as { response?: unknown }).response;
      if (response !== undefined && response !== null) return response as R;
      throw error;
    }
  }

  private async topicMetadata(topic: string): Promise<{ id: string; partitions: Array<{ leader: number }> }> {
    const metadata = await this.base.metadata({ topics: [topic] });
    const t = metadata.topics.get(topic);
    if (t === undefined) throw new KafkaError(`topic ${topic} does not exist`, KafkaErrors.UNKNOWN_TOPIC_OR_PARTITION, false);
    this.topicIds.set(topic, t.id);
    return t;
  }

  async partitions(topic: string): Promise<number> {
    try {
      return (await this.topicMetadata(topic)).partitions.length;
    } catch (error) {
      if (/Unknown topic/i.test(String((error as Error).message))) throw new KafkaError(`topic ${topic} does not exist`, KafkaErrors.UNKNOWN_TOPIC_OR_PARTITION, false);
      throw error;
    }
  }

  async leaders(topic: string): Promise<number[]> {
    return (await this.topicMetadata(topic)).partitions.map((p) => p.leader);
  }

  refresh(): void {
    this.base.clearMetadata();
  }

  async listOffsets(topic: string, partitions: readonly number[], at: 'earliest' | 'latest' | number): Promise<Map<number, number>> {
    const leaders = await this.leaders(topic);
    const timestamp = at === 'earliest' ? -2n : at === 'latest' ? -1n : BigInt(Math.floor(at));
    const byNode = new Map<number, number[]>();
    for (const p of partitions) {
      const node = leaders[p];
      if (node === undefined) throw new KafkaError(`topic ${topic} has no partition ${p}`, KafkaErrors.UNKNOWN_TOPIC_OR_PARTITION, false);
      let list = byNode.get(node);
      if (list === undefined) byNode.set(node, (list = []));
      list.push(p);
    }
    const out = new Map<number, number>();
    const timestamped: number[] = [];
    for (const [node, list] of byNode) {
      const response = await this.call<{ topics: Array<{ partitions: Array<{ partitionIndex: number; errorCode: number; offset: bigint }> }> }>('ListOffsets', node, -1, READ_COMMITTED, [
        { name: topic, partitions: list.map((p) => ({ partitionIndex: p, currentLeaderEpoch: -1, timestamp })) },
      ]);
      for (const p of response.topics[0]?.partitions ?? []) {
        if (p.errorCode !== 0) {
          if (RETRIABLE_CODES.has(p.errorCode)) this.refresh();
          throw new KafkaError(`listing offsets of ${topic}:${p.partitionIndex} failed with Kafka error ${p.errorCode}`, p.errorCode);
        }
        if (p.offset < 0n) timestamped.push(p.partitionIndex);
        else out.set(p.partitionIndex, Number(p.offset));
      }
    }
    // No record at or after the timestamp: start at the end.
    if (timestamped.length > 0) for (const [p, o] of await this.listOffsets(topic, timestamped, 'latest')) out.set(p, o);
    return out;
  }

  async fetch(node: number, positions: readonly FetchPosition[], options: { readonly maxWaitMs: number; readonly maxBytes: number; readonly partitionMaxBytes: number }): Promise<FetchedPartition[]> {
    const byTopic = new Map<string, FetchPosition[]>();
    for (const p of positions) {
      let list = byTopic.get(p.topic);
      if (list === undefined) byTopic.set(p.topic, (list = []));
      list.push(p);
    }
    const topics: unknown[] = [];
    const nameOf = new Map<string, string>();
    for (const [topic, list] of byTopic) {
      let id = this.topicIds.get(topic);
      if (id === undefined) id = (await this.topicMetadata(topic)).id;
      nameOf.set(id, topic);
      topics.push({
        topicId: id,
        partitions: list.map((p) => ({ partition: p.partition, currentLeaderEpoch: -1, fetchOffset: BigInt(p.offset), lastFetchedEpoch: -1, partitionMaxBytes: options.partitionMaxBytes })),
      });
    }
    const response = await this.call<{
      errorCode: number;
      responses: Array<{
        topicId: string;
        partitions: Array<{
          partitionIndex: number;
          errorCode: number;
          highWatermark: bigint;
          lastStableOffset: bigint;
          logStartOffset: bigint;
          abortedTransactions: Array<{ producerId: bigint; firstOffset: bigint }> | null;
          records?: KafkaBatch[];
        }>;
      }>;
    }>('Fetch', node, options.maxWaitMs, 1, options.maxBytes, READ_COMMITTED, 0, -1, topics, [], '');
    if (response.errorCode !== 0 && response.errorCode !== undefined) throw new KafkaError(`fetch failed with Kafka error ${response.errorCode}`, response.errorCode);
    const out: FetchedPartition[] = [];
    for (const t of response.responses) {
      const topic = nameOf.get(t.topicId) ?? t.topicId;
      for (const p of t.partitions) {
        out.push({
          topic,
          partition: p.partitionIndex,
          errorCode: p.errorCode,
          highWatermark: Number(p.highWatermark),
          lastStableOffset: Number(p.lastStableOffset),
          logStartOffset: Number(p.logStartOffset),
          abortedTransactions: (p.abortedTransactions ?? []).map((a) => ({ producerId: a.producerId, firstOffset: Number(a.firstOffset) })),
          batches: p.records ?? [],
        });
      }
    }
    return out;
  }

  private async coordinator(key: string, type: number): Promise<number> {
    const cacheKey = `${type}:${key}`;
    const cached = this.coordinators.get(cacheKey);
    if (cached !== undefined) return cached;
    const response = await this.call<{ coordinators: Array<{ key: string; nodeId: number; errorCode: number }> }>('FindCoordinator', 'any', type, [key]);
    const c = response.coordinators.find((x) => x.key === key) ?? response.coordinators[0];
    if (c === undefined || c.errorCode !== 0) throw new KafkaError(`no coordinator for ${key} (Kafka error ${c?.errorCode})`, c?.errorCode ?? KafkaErrors.COORDINATOR_NOT_AVAILABLE);
    this.coordinators.set(cacheKey, c.nodeId);
    return c.nodeId;
  }

  /**
   * Runs a request on a coordinator. A moved coordinator is looked up again; a transaction still
   * completing (CONCURRENT_TRANSACTIONS, just after EndTxn) or a coordinator loading its state is
   * waited for, briefly: these last milliseconds. Other failures are the caller's to retry.
   */
  private async onCoordinator<R>(key: string, type: number, fn: (node: number) => Promise<R>): Promise<R> {
    let delay = 5;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(await this.coordinator(key, type));
      } catch (error) {
        const code = (error as KafkaError).code;
        const moved = code === KafkaErrors.NOT_COORDINATOR || code === KafkaErrors.COORDINATOR_NOT_AVAILABLE;
        if (moved || isRetriable(error)) this.coordinators.delete(`${type}:${key}`);
        const brief = moved || code === KafkaErrors.CONCURRENT_TRANSACTIONS || code === KafkaErrors.COORDINATOR_LOAD_IN_PROGRESS;
        if (!brief || attempt >= 40) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 250);
      }
    }
  }

  async commitOffsets(groupId: string, offsets: readonly FetchPosition[]): Promise<void> {
    const topics = offsetTopics(offsets);
    await this.onCoordinator(groupId, COORDINATOR_GROUP, async (node) => {
      const response = await this.call<{ topics: Array<{ partitions: Array<{ errorCode: number }> }> }>('OffsetCommit', node, groupId, -1, '', null, topics);
      const code = response.topics.flatMap((t) => t.partitions).find((p) => p.errorCode !== 0)?.errorCode;
      if (code !== undefined) throw new KafkaError(`committing offsets of group ${groupId} failed with Kafka error ${code}`, code);
    });
  }

  async txnCommitOffsets(transactionalId: string, producer: ProducerIdentity, groupId: string, offsets: readonly FetchPosition[]): Promise<void> {
    await this.onCoordinator(transactionalId, COORDINATOR_TRANSACTION, async (node) => {
      const r = await this.call<{ errorCode: number }>('AddOffsetsToTxn', node, transactionalId, producer.producerId, producer.epoch, groupId);
      if (r.errorCode !== 0) throw new KafkaError(`AddOffsetsToTxn ${transactionalId} for group ${groupId} failed with Kafka error ${r.errorCode}`, r.errorCode);
    });
    const topics = offsetTopics(offsets);
    await this.onCoordinator(groupId, COORDINATOR_GROUP, async (node) => {
      const response = await this.call<{ topics: Array<{ partitions: Array<{ errorCode: number }> }> }>('TxnOffsetCommit', node, transactionalId, groupId, producer.producerId, producer.epoch, -1, '', null, topics);
      const code = response.topics.flatMap((t) => t.partitions).find((p) => p.errorCode !== 0)?.errorCode;
      if (code !== undefined) throw new KafkaError(`committing offsets of group ${groupId} in transaction ${transactionalId} failed with Kafka error ${code}`, code);
    });
  }

  async initProducer(transactionalId: string | null, transactionTimeoutMs: number, current?: ProducerIdentity): Promise<ProducerIdentity> {
    const run = async (node: number | 'any'): Promise<ProducerIdentity> => {
      const r = await this.call<{ errorCode: number; producerId: bigint; producerEpoch: number }>('InitProducerId', node, transactionalId, transactionTimeoutMs, current?.producerId ?? -1n, current?.epoch ?? -1);
      if (r.errorCode !== 0) throw new KafkaError(`InitProducerId${transactionalId === null ? '' : ` for ${transactionalId}`} failed with Kafka error ${r.errorCode}`, r.errorCode);
      return { producerId: r.producerId, epoch: r.producerEpoch };
    };
    if (transactionalId === null) return run('any');
    return this.onCoordinator(transactionalId, COORDINATOR_TRANSACTION, run);
  }

  async addPartitionsToTxn(transactionalId: string, producer: ProducerIdentity, topic: string, partitions: readonly number[]): Promise<void> {
    await this.onCoordinator(transactionalId, COORDINATOR_TRANSACTION, async (node) => {
      const r = await this.call<{ errorCode: number; resultsByTransaction?: Array<{ topicResults: Array<{ resultsByPartition: Array<{ partitionErrorCode: number }> }> }>; results?: unknown }>(
        'AddPartitionsToTxn',
        node,
        [{ transactionalId, producerId: producer.producerId, producerEpoch: producer.epoch, verifyOnly: false, topics: [{ name: topic, partitions: [...partitions] }] }],
      );
      let code = r.errorCode ?? 0;
      if (code === 0) code = (r.resultsByTransaction ?? []).flatMap((t) => t.topicResults.flatMap((x) => x.resultsByPartition)).find((p) => p.partitionErrorCode !== 0)?.partitionErrorCode ?? 0;
      if (code !== 0) throw new KafkaError(`AddPartitionsToTxn ${transactionalId} ${topic} failed with Kafka error ${code}`, code);
    });
  }

  async produce(node: number, producer: ProducerIdentity, transactionalId: string | null, parts: readonly PartitionRecords[], timeoutMs: number): Promise<number[]> {
    // The codec takes one message list and a sequence per partition; it writes one batch per partition.
    const messages: unknown[] = [];
    const sequences = new SequenceMap();
    for (const part of parts) {
      sequences.set(`${part.topic}:${part.partition}`, part.firstSequence);
      for (const r of part.records) messages.push({ topic: part.topic, partition: part.partition, key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp });
    }
    const response = await this.call<{ responses: Array<{ name: string; partitionResponses: Array<{ index: number; errorCode: number }> }> }>('Produce', node, -1, timeoutMs, messages, {
      transactionalId,
      producerId: producer.producerId,
      producerEpoch: producer.epoch,
      sequences,
      compression: 'none',
    });
    const codes = new Map<string, number>();
    for (const t of response.responses) for (const p of t.partitionResponses) codes.set(`${t.name}:${p.index}`, p.errorCode);
    return parts.map((p) => codes.get(`${p.topic}:${p.partition}`) ?? KafkaErrors.REQUEST_TIMED_OUT);
  }

  async endTxn(transactionalId: string, producer: ProducerIdentity, commit: boolean): Promise<void> {
    await this.onCoordinator(transactionalId, COORDINATOR_TRANSACTION, async (node) => {
      const r = await this.call<{ errorCode: number }>('EndTxn', node, transactionalId, producer.producerId, producer.epoch, commit);
      if (r.errorCode !== 0) throw new KafkaError(`${commit ? 'committing' : 'aborting'} transaction ${transactionalId} failed with Kafka error ${r.errorCode}`, r.errorCode);
    });
  }

  async listTransactions(states: readonly string[] = ['Ongoing']): Promise<ListedTransaction[]> {
    const metadata = await this.base.metadata({ topics: [] });
    const out: ListedTransaction[] = [];
    for (const node of metadata.brokers.keys()) {
      let r: { errorCode: number; transactionStates: Array<{ transactionalId: string; producerId: bigint; transactionState: string }> };
      try {
        r = await this.call('ListTransactions', node, [...states], [], -1n, null);
      } catch (error) {
        if (/Unsupported API/i.test(String((error as Error).message))) return [];
        throw error;
      }
      if (r.errorCode !== 0) throw new KafkaError(`ListTransactions failed with Kafka error ${r.errorCode}`, r.errorCode);
      for (const t of r.transactionStates) out.push({ transactionalId: t.transactionalId, producerId: t.producerId, state: t.transactionState });
    }
    return out;
  }

  async topicId(topic: string): Promise<string> {
    return this.topicIds.get(topic) ?? (await this.topicMetadata(topic)).id;
  }

  async groupHeartbeat(request: GroupHeartbeatRequest): Promise<GroupHeartbeatResponse> {
    const run = async (node: number): Promise<GroupHeartbeatResponse> => {
      const r = await this.call<{ errorCode: number; errorMessage: string | null; memberEpoch: number; heartbeatIntervalMs: number; assignment: { topicPartitions: Array<{ topicId: string; partitions: number[] }> } | null }>(
        'ConsumerGroupHeartbeat',
        node,
        request.groupId,
        request.memberId,
        request.memberEpoch,
        null,
        null,
        request.rebalanceTimeoutMs,
        request.topics === null ? null : [...request.topics],
        null,
        null,
        request.owned.map((o) => ({ topicId: o.topicId, partitions: [...o.partitions] })),
      );
      // A moved coordinator is looked up again (by onCoordinator); other group errors are the caller's.
      if (r.errorCode === KafkaErrors.NOT_COORDINATOR || r.errorCode === KafkaErrors.COORDINATOR_NOT_AVAILABLE || r.errorCode === KafkaErrors.COORDINATOR_LOAD_IN_PROGRESS) {
        throw new KafkaError(`ConsumerGroupHeartbeat of ${request.groupId}: Kafka error ${r.errorCode}`, r.errorCode);
      }
      return { errorCode: r.errorCode, errorMessage: r.errorMessage, memberEpoch: r.memberEpoch, heartbeatIntervalMs: r.heartbeatIntervalMs, assignment: r.assignment?.topicPartitions ?? null };
    };
    return this.onCoordinator(request.groupId, COORDINATOR_GROUP, run);
  }

  async close(): Promise<void> {
    await this.base.close();
  }
}

/** The map of first sequence numbers the record codec reads (`topic:partition` → sequence). */
class SequenceMap extends Map<string, number> {
  getWithDefault(key: string, fallback: number): number {
    return this.get(key) ?? fallback;
  }
}

/** Options of {@link createTopic}. */
/** Offsets grouped by topic, as OffsetCommit and TxnOffsetCommit take them. */
function offsetTopics(offsets: readonly FetchPosition[]): Array<{ name: string; partitions: Array<{ partitionIndex: number; committedOffset: bigint; committedLeaderEpoch: number; committedMetadata: null }> }> {
  const byTopic = new Map<string, FetchPosition[]>();
  for (const o of offsets) {
    let list = byTopic.get(o.topic);
    if (list === undefined) byTopic.set(o.topic, (list = []));
    list.push(o);
  }
  return [...byTopic].map(([name, list]) => ({
    name,
    partitions: list.map((o) => ({ partitionIndex: o.partition, committedOffset: BigInt(o.offset), committedLeaderEpoch: -1, committedMetadata: null })),
  }));
}

export interface CreateTopicOptions {
  readonly partitions: number;
  /** Replicas of each partition (default: the broker's `default.replication.factor`). */
  readonly replicas?: number;
  /** Topic configs, e.g. `{ 'cleanup.policy': 'compact' }`. */
  readonly configs?: Readonly<Record<string, string>>;
}

/**
 * Creates a topic with the library's admin client (CreateTopics). Resolves true if it created the
 * topic, false if the topic existed already (TOPIC_ALREADY_EXISTS: another process may have
 * created it meanwhile — the caller checks it is the topic it wants). Other failures reject with
 * the client's error; {@link isRetriable} tells which are worth retrying. The topic may take a
 * moment to have leaders on every partition after this resolves.
 */
export async function createTopic(connection: KafkaConnection | undefined, topic: string, options: CreateTopicOptions): Promise<boolean> {
  const given = connection ?? {};
  const adminOptions: Record<string, unknown> = {
    clientId: (given.clientId ?? 'spate').replace(/[^A-Za-z0-9._-]/g, '_'),
    bootstrapBrokers: brokersOf(given),
    connectTimeout: given.connectTimeout ?? 5_000,
    timeout: given.requestTimeout ?? 30_000,
    retries: 0,
  };
  if (given.tls !== undefined) adminOptions['tls'] = given.tls;
  if (given.sasl !== undefined) adminOptions['sasl'] = given.sasl as SASLOptions;
  const admin = new Admin(adminOptions as never);
  try {
    await admin.createTopics({
      topics: [topic],
      partitions: options.partitions,
      ...(options.replicas === undefined ? {} : { replicas: options.replicas }),
      configs: Object.entries(options.configs ?? {}).map(([name, value]) => ({ name, value })),
    });
    return true;
  } catch (error) {
    if (/TOPIC_ALREADY_EXISTS|already exists/i.test(errorCodes(error))) return false;
    throw error;
  } finally {
    await admin.close().catch(() => undefined);
  }
}

/** The codes and messages of an error from the client library and of its nested errors, as one string. */
function errorCodes(error: unknown): string {
  const e = error as { code?: unknown; apiId?: unknown; message?: unknown; errors?: unknown[] } | null;
  if (e === null || typeof e !== 'object') return String(error);
  const own = [e.code, e.apiId, e.message].filter((x) => x !== undefined).map(String).join(' ');
  return Array.isArray(e.errors) ? [own, ...e.errors.map(errorCodes)].join(' ') : own;
}
