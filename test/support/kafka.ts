/**
 * Helpers for tests against the real Kafka broker (`scripts/services.sh up kafka`): the brokers
 * from `SPATE_KAFKA_BROKERS`, topics with unique names, producing test input, and reading a topic
 * back as a `read_committed` consumer.
 */
import { Admin, Producer } from '@platformatic/kafka';
import { PlatformaticKafkaClient, type ProducerIdentity } from '../../src/connectors/kafka/client.ts';
import { CommittedRecords } from '../../src/connectors/kafka/records.ts';

export const KAFKA_BROKERS = (process.env['SPATE_KAFKA_BROKERS'] ?? '127.0.0.1:9092').split(',');

let counter = 0;

/** A topic name no other test (or run) uses. */
export function uniqueTopic(tag: string): string {
  return `spate-test-${tag}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
}

/**
 * Creates a topic (with optional topic configs) and waits until it has leaders. Time-based
 * retention is off unless configured: tests write records with old timestamps (NEXMark's are
 * from 2023), which the broker would otherwise delete within seconds.
 */
export async function createTopic(name: string, partitions = 1, configs: Record<string, string> = {}): Promise<string> {
  const admin = new Admin({ clientId: 'spate-test', bootstrapBrokers: KAFKA_BROKERS });
  try {
    const all = { 'retention.ms': '-1', ...configs };
    await admin.createTopics({ topics: [name], partitions, replicas: 1, configs: Object.entries(all).map(([name, value]) => ({ name, value })) });
  } finally {
    await admin.close();
  }
  const client = new PlatformaticKafkaClient({ brokers: KAFKA_BROKERS });
  try {
    for (let i = 0; i < 100; i++) {
      try {
        const leaders = await client.leaders(name);
        if (leaders.length === partitions && leaders.every((l) => l >= 0)) return name;
      } catch {
        // not yet
      }
      client.refresh();
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await client.close();
  }
  throw new Error(`topic ${name} has no leaders`);
}

export async function deleteTopics(names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  const admin = new Admin({ clientId: 'spate-test', bootstrapBrokers: KAFKA_BROKERS });
  try {
    await admin.deleteTopics({ topics: [...names] });
  } catch {
    // best effort
  } finally {
    await admin.close();
  }
}

/** A message to produce: value bytes or text (JSON-encoded if not a string or bytes). */
export interface TestMessage {
  readonly value: unknown;
  readonly key?: string;
  readonly partition?: number;
  readonly timestamp?: number;
  readonly headers?: Record<string, string>;
}

function bytesOf(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** Produces messages (plain, acks all) with the library's own producer. */
export async function produce(topic: string, messages: readonly TestMessage[]): Promise<void> {
  // Idempotent: a send retried after a timeout must not write its records twice.
  const producer = new Producer({ clientId: 'spate-test', bootstrapBrokers: KAFKA_BROKERS, idempotent: true });
  try {
    for (let i = 0; i < messages.length; i += 5_000) {
      await producer.send({
        messages: messages.slice(i, i + 5_000).map((m) => ({
          topic,
          value: bytesOf(m.value),
          partition: m.partition ?? 0,
          ...(m.key === undefined ? {} : { key: Buffer.from(m.key) }),
          ...(m.timestamp === undefined ? {} : { timestamp: BigInt(m.timestamp) }),
          ...(m.headers === undefined ? {} : { headers: new Map(Object.entries(m.headers).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])) }),
        })),
        acks: -1,
      });
    }
  } finally {
    await producer.close();
  }
}

/** A transactional producer driven by hand (one transactional id), to write committed and aborted transactions. */
export class TestTransactions {
  private readonly client = new PlatformaticKafkaClient({ brokers: KAFKA_BROKERS });
  private producer: ProducerIdentity | null = null;
  private readonly sequences = new Map<string, number>();

  constructor(private readonly id: string) {}

  /** Writes `values` (to partition `partition`) in one transaction, then commits or aborts it. */
  async transaction(topic: string, values: readonly unknown[], outcome: 'commit' | 'abort', partition = 0): Promise<void> {
    this.producer ??= await this.client.initProducer(this.id, 60_000);
    await this.client.addPartitionsToTxn(this.id, this.producer, topic, [partition]);
    const key = `${topic}:${partition}`;
    const first = this.sequences.get(key) ?? 0;
    const leaders = await this.client.leaders(topic);
    const records = values.map((v) => ({ key: undefined, value: bytesOf(v), headers: undefined, timestamp: BigInt(Date.now()) }));
    const codes = await this.client.produce(leaders[partition]!, this.producer, this.id, [{ topic, partition, records, firstSequence: first }], 30_000);
    if (codes[0] !== 0) throw new Error(`produce failed with Kafka error ${codes[0]}`);
    this.sequences.set(key, first + values.length);
    await this.client.endTxn(this.id, this.producer, outcome === 'commit');
  }

  /** Opens a transaction, writes, and leaves it open (a crashed writer). */
  async openTransaction(topic: string, values: readonly unknown[], partition = 0): Promise<void> {
    this.producer ??= await this.client.initProducer(this.id, 60_000);
    await this.client.addPartitionsToTxn(this.id, this.producer, topic, [partition]);
    const key = `${topic}:${partition}`;
    const first = this.sequences.get(key) ?? 0;
    const leaders = await this.client.leaders(topic);
    const records = values.map((v) => ({ key: undefined, value: bytesOf(v), headers: undefined, timestamp: BigInt(Date.now()) }));
    await this.client.produce(leaders[partition]!, this.producer, this.id, [{ topic, partition, records, firstSequence: first }], 30_000);
    this.sequences.set(key, first + values.length);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

/** A record read back. */
export interface ReadRecord {
  readonly partition: number;
  readonly offset: number;
  readonly key: string | null;
  readonly value: string;
  readonly timestamp: number;
  readonly headers: Record<string, string>;
}

/**
 * Waits (up to 30 s) until no transaction whose transactional id contains `text` is between its
 * end and its markers. EndTxn returns once the coordinator has logged the decision; the markers
 * that make a committed transaction visible to `read_committed` readers (or drop an aborted one)
 * are written to the partitions afterwards — a reader right after a commit may not see it yet.
 */
export async function settleTransactions(text: string, client?: PlatformaticKafkaClient): Promise<void> {
  const own = client ?? new PlatformaticKafkaClient({ brokers: KAFKA_BROKERS });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ending = (await own.listTransactions(['PrepareCommit', 'PrepareAbort'])).filter((t) => t.transactionalId.includes(text));
      if (ending.length === 0) return;
      if (Date.now() > deadline) throw new Error(`transactions still being ended after 30 s: ${ending.map((t) => `${t.transactionalId} (${t.state})`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    if (client === undefined) await own.close();
  }
}

/**
 * Reads every partition of a topic from the start up to its last stable offset, as a
 * `read_committed` consumer: what readers of the topic see. With `waitStable`, first waits (up to
 * 30 s) until no transaction is open on the topic (LSO = high watermark). With `settled`, first
 * waits until the transactions whose transactional ids contain the topic's name (the sink's
 * default prefix does) have their markers written: every commit that returned is visible.
 */
export async function readCommitted(topic: string, options: { waitStable?: boolean; settled?: boolean } = {}): Promise<ReadRecord[]> {
  const client = new PlatformaticKafkaClient({ brokers: KAFKA_BROKERS });
  try {
    if (options.settled) await settleTransactions(topic, client);
    const n = await client.partitions(topic);
    const leaders = await client.leaders(topic);
    const out: ReadRecord[] = [];
    const earliest = await client.listOffsets(topic, Array.from({ length: n }, (_, p) => p), 'earliest');
    for (let p = 0; p < n; p++) {
      let offset = earliest.get(p)!;
      const deadline = Date.now() + 30_000;
      for (;;) {
        const [r] = await client.fetch(leaders[p]!, [{ topic, partition: p, offset }], { maxWaitMs: 10, maxBytes: 16 << 20, partitionMaxBytes: 16 << 20 });
        if (r!.errorCode !== 0) throw new Error(`fetch ${topic}:${p} at ${offset} failed with Kafka error ${r!.errorCode} (log ${r!.logStartOffset}..${r!.highWatermark}, LSO ${r!.lastStableOffset})`);
        if (options.waitStable && r!.lastStableOffset < r!.highWatermark) {
          if (Date.now() > deadline) throw new Error(`${topic}:${p} has an open transaction (LSO ${r!.lastStableOffset} < HW ${r!.highWatermark})`);
          await new Promise((res) => setTimeout(res, 100));
          continue;
        }
        const cursor = new CommittedRecords(r!.batches, r!.abortedTransactions, offset);
        while (cursor.next()) {
          const rec = cursor.record!;
          const headers: Record<string, string> = {};
          for (const [k, v] of rec.headers) headers[k?.toString() ?? ''] = v?.toString() ?? '';
          out.push({ partition: p, offset: cursor.offset, key: rec.key?.toString() ?? null, value: rec.value?.toString() ?? '', timestamp: cursor.timestamp, headers });
        }
        offset = cursor.position;
        if (offset >= r!.lastStableOffset) break;
      }
    }
    return out;
  } finally {
    await client.close();
  }
}

/** Deletes records before `offset` of a partition (what retention does). */
export async function deleteRecordsBefore(topic: string, partition: number, offset: number): Promise<void> {
  const admin = new Admin({ clientId: 'spate-test', bootstrapBrokers: KAFKA_BROKERS });
  try {
    await admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition, offset: BigInt(offset) }] }] } as never);
  } finally {
    await admin.close();
  }
}
