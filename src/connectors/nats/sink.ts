import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import type { Batch } from '../../runtime/batch.ts';
import type { Committable, Sink, SinkContext } from '../../runtime/sink.ts';
import { connectNats, describe, retrying } from './config.ts';
import type { NatsConnectionOptions, PublisherStats, RetryOptions } from './options.ts';
import { Publisher } from './publisher.ts';

/** Options of {@link JetStreamSink}. */
export interface JetStreamSinkOptions<T> {
  /** The server and credentials (default `nats://127.0.0.1:4222`, no authentication). */
  readonly connection?: NatsConnectionOptions;
  /** The subject of every message, or of each record. A stream must capture it. */
  readonly subject: string | ((record: T) => string);
  /** The payload of a record (default: its JSON). A record it cannot encode is a dead letter. */
  readonly encode?: (record: T) => Uint8Array | string;
  /**
   * `exactly-once` (default): records of a checkpoint are published when it completes, from the
   * checkpoint itself, with message ids that make a re-commit store nothing twice.
   * `at-least-once`: records are published as they come and acknowledged at each checkpoint;
   * after a failure, what followed the last checkpoint is published again (faster, no delay).
   */
  readonly delivery?: 'exactly-once' | 'at-least-once';
  /**
   * The stream the subject goes to, to check its duplicate window at open (default: the stream
   * that captures `subject` when it is a string).
   */
  readonly stream?: string;
  /** The smallest duplicate window accepted without a warning (default 120 000 ms, NATS's default). */
  readonly minDuplicateWindowMs?: number;
  /** Names this sink's commit records (default: the step id). */
  readonly sinkId?: string;
  /** The key-value bucket of commit records (default `spate_commits`; created if missing). */
  readonly commitBucket?: string;
  /** How long commit records are kept (default 7 days): a restore from an older checkpoint may publish its last commit again. */
  readonly commitRecordTtlMs?: number;
  /** Messages in flight without acknowledgement (default 2 048). */
  readonly maxInFlight?: number;
  /** A message without acknowledgement after this long is sent again (default 5 000 ms). */
  readonly ackTimeoutMs?: number;
  /** At most this many parallel instances. */
  readonly parallelism?: number;
  /** Backoff while the server is away (default first 100 ms, at most 5 000 ms). */
  readonly retryMs?: RetryOptions;
}

/**
 * What the exactly-once sink pre-committed for one checkpoint: the checkpoint's messages
 * themselves (they live in the checkpoint until they are published), and a random nonce that,
 * with the message's index, makes its `Nats-Msg-Id`.
 */
export interface JetStreamCommittable {
  readonly nonce: string;
  /** When it was pre-committed (ms since the epoch): a late re-commit may fall outside the duplicate window. */
  readonly at: number;
  readonly count: number;
  /** The distinct subjects; `subjectOf` gives each message's index in it (u32 LE), absent when there is one. */
  readonly subjects: string[];
  readonly subjectOf?: Uint8Array;
  /** Payload sizes (u32 LE) and the payloads, concatenated. */
  readonly sizes: Uint8Array;
  readonly payloads: Uint8Array;
}

const encoder = new TextEncoder();
const json = (record: unknown): string => {
  const text = JSON.stringify(record);
  if (text === undefined) throw new Error(`cannot encode ${typeof record} as JSON`);
  return text;
};

/**
 * Publishes records to JetStream exactly once across failures.
 *
 * **Exactly once** (default) works like Flink's write-ahead sinks, with JetStream's message
 * deduplication as the idempotent commit. Records written between two checkpoints are encoded
 * and kept; `preCommit(n)` puts them into checkpoint n (the committable is the messages); when
 * checkpoint n is complete, `commit` publishes them with ids `<nonce>:<n>:<instance>:<index>`
 * and waits for every acknowledgement, then records the commit in a key-value bucket
 * (`spate_commits`). After a crash, the restored checkpoint's messages are published again with
 * the same ids: the server drops what it already stored (within the stream's duplicate window),
 * and a commit already recorded is skipped. Nothing is visible before its checkpoint is complete,
 * and a replay that differs from the first run (other interleavings of parallel inputs, other
 * processing times) cannot make two messages share an id, because ids belong to the content fixed
 * in the checkpoint. The price: output waits for the checkpoint (latency ≈ checkpoint interval)
 * and a checkpoint holds the output written since the previous one.
 *
 * **The duplicate window.** A commit cut short by a crash is completed by the restarted job; the
 * part published before the crash is recognised only within the stream's `duplicate_window`
 * (2 minutes by default). The sink checks the window at open and warns when it is shorter than
 * `minDuplicateWindowMs`, and warns when a re-commit comes later than the window. Give the
 * stream a window longer than the time a crashed job takes to restart.
 *
 * **At least once** publishes records as they come (many in flight, acknowledged by the
 * server; the sink applies backpressure when `maxInFlight` wait), and each checkpoint waits for
 * every acknowledgement; after a failure the records after the last checkpoint are published
 * again. Message ids still make the sink's own resends (after a timeout) stored once.
 *
 * **Failures.** A server that is away at open is waited for with backoff; while running,
 * messages without acknowledgement are sent again with backoff, and commits wait (the runtime
 * applies backpressure when they fall behind): the job resumes by itself, nothing is lost or
 * duplicated. Every outage is said on the job's log when it starts and when it ends.
 *
 * @example
 * // Hot readings from the stream READINGS to the subject ALERTS.hot, exactly once across failures.
 * const connection = { servers: process.env['SPATE_NATS_URL'] ?? 'nats://127.0.0.1:4222' };
 * const p = new Pipeline();
 * p.source(new JetStreamSource<{ device: string; temp: number }>({ connection, stream: 'READINGS', bounded: true }), { id: 'readings' })
 *   .filter((r) => r.temp > 30)
 *   .sink(new JetStreamSink<{ device: string; temp: number }>({ connection, subject: 'ALERTS.hot' }), { id: 'alerts' });
 * await p.run({ checkpointDir: 'checkpoints' });
 * // ALERTS.hot: every reading above 30 °C, once
 */
export class JetStreamSink<T> implements Sink<T, JetStreamCommittable> {
  readonly parallelism?: number;
  private ctx!: SinkContext;
  private nc: NatsConnection | null = null;
  private jsm: JetStreamManager | null = null;
  private kv: KV | null = null;
  private publisher: Publisher | null = null;
  private readonly exactlyOnce: boolean;
  private readonly subjectFn: ((record: T) => string) | null;
  private readonly encode: (record: T) => Uint8Array | string;
  private sinkId = '';
  private maxPayload = Infinity;
  private duplicateWindowMs = NaN;
  private recovering = true;
  private closed = false;
  // Exactly once: the messages of the current checkpoint.
  private subjects: string[] = [];
  private subjectIndex = new Map<string, number>();
  private subjectOf: number[] = [];
  private payloads: Uint8Array[] = [];
  private bytes = 0;
  // At least once: ids `<nonce>:<instance>:<sequence>`.
  private runNonce = '';
  private seq = 0;

  constructor(private readonly options: JetStreamSinkOptions<T>) {
    if (typeof options.subject !== 'function' && (typeof options.subject !== 'string' || options.subject.length === 0)) {
      throw new Error('JetStreamSink: `subject` is required (a string or a function of the record)');
    }
    if (typeof options.subject === 'string' && /[\s*>]/.test(options.subject)) throw new Error(`JetStreamSink: subject '${options.subject}' has a wildcard or a space`);
    for (const [name, value] of [
      ['maxInFlight', options.maxInFlight],
      ['ackTimeoutMs', options.ackTimeoutMs],
      ['parallelism', options.parallelism],
    ] as const) {
      if (value !== undefined && !(Number.isInteger(value) && value >= 1)) throw new Error(`JetStreamSink: \`${name}\` must be a positive integer, got ${value}`);
    }
    if (options.parallelism !== undefined) this.parallelism = options.parallelism;
    this.exactlyOnce = (options.delivery ?? 'exactly-once') === 'exactly-once';
    this.subjectFn = typeof options.subject === 'function' ? options.subject : null;
    if (typeof options.subject === 'string') this.subjectIndex.set(options.subject, 0), this.subjects.push(options.subject);
    this.encode = options.encode ?? json;
  }

  /** Counters of the publisher (acknowledged, deduplicated, resent messages). */
  get stats(): PublisherStats | undefined {
    return this.publisher?.stats;
  }

  /** Connects (waiting for the server with backoff), checks the stream's duplicate window, opens the commit bucket. */
  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    const o = this.options;
    this.sinkId = o.sinkId ?? ctx.stepId;
    this.runNonce = nonce();
    const stopped = (): boolean => this.closed;
    const log = (l: string): void => this.log(l);
    const nc = await connectNats(o.connection ?? {}, `spate ${ctx.stepId}[${ctx.instance}]`, log, o.retryMs, stopped);
    this.nc = nc;
    this.maxPayload = nc.info?.max_payload ?? Infinity;
    this.watchStatus(nc);
    this.jsm = await retrying('opening JetStream', () => jetstreamManager(nc, { timeout: 5_000 }), log, o.retryMs, stopped);
    await this.checkDuplicateWindow();
    if (this.exactlyOnce) {
      const bucket = o.commitBucket ?? 'spate_commits';
      const kvm = new Kvm(nc);
      this.kv = await retrying(
        'opening the commit bucket',
        () => kvm.create(bucket, { history: 1, ttl: o.commitRecordTtlMs ?? 7 * 24 * 3_600_000 }),
        log,
        o.retryMs,
        stopped,
      );
    }
    const retry = { first: o.retryMs?.first ?? 100, max: o.retryMs?.max ?? 5_000 };
    this.publisher = new Publisher(nc, log, o.maxInFlight ?? 2_048, o.ackTimeoutMs ?? 5_000, retry);
  }

  private async checkDuplicateWindow(): Promise<void> {
    const o = this.options;
    let stream = o.stream;
    try {
      if (stream === undefined && typeof o.subject === 'string') stream = await this.jsm!.streams.find(o.subject);
      if (stream === undefined) {
        this.log(`cannot check the duplicate window: the subject is a function; give \`stream\` to check it`);
        return;
      }
      const info = await retrying('reading the stream', () => this.jsm!.streams.info(stream!), (l) => this.log(l), o.retryMs, () => this.closed);
      this.duplicateWindowMs = (info.config.duplicate_window ?? 0) / 1e6;
    } catch (error) {
      this.log(`cannot check the duplicate window of ${stream ?? `the stream of ${String(o.subject)}`}: ${describe(error)}`);
      return;
    }
    const min = o.minDuplicateWindowMs ?? 120_000;
    if (this.duplicateWindowMs < min) {
      this.log(
        `stream ${stream} has a duplicate window of ${this.duplicateWindowMs / 1000} s, less than ${min / 1000} s: ` +
          `a job that crashes while committing must restart within it, or part of that commit may be stored twice (set the stream's duplicate_window)`,
      );
    }
  }

  private watchStatus(nc: NatsConnection): void {
    void (async () => {
      let since = 0;
      for await (const s of nc.status()) {
        if (this.closed) return;
        if (s.type === 'disconnect' && since === 0) {
          since = Date.now();
          this.log(`disconnected from NATS (${s.server}); reconnecting with backoff, publishing waits`);
        } else if (s.type === 'reconnect') {
          this.log(`reconnected to NATS (${s.server})${since > 0 ? ` after ${((Date.now() - since) / 1000).toFixed(1)} s` : ''}`);
          since = 0;
        }
      }
    })().catch(() => undefined);
  }

  write(batch: Batch<T>): void {
    this.recovering = false;
    const { values, times, length } = batch;
    const fn = this.subjectFn;
    for (let i = 0; i < length; i++) {
      const record = values[i] as T;
      let subject: string;
      let data: Uint8Array;
      try {
        subject = fn === null ? (this.options.subject as string) : fn(record);
        if (fn !== null && (typeof subject !== 'string' || subject.length === 0 || /[\s*>]/.test(subject))) {
          throw new Error(`subject function returned ${JSON.stringify(subject)}, not a subject`);
        }
        const encoded = this.encode(record);
        data = typeof encoded === 'string' ? encoder.encode(encoded) : encoded;
        if (data.length > this.maxPayload) throw new Error(`message of ${data.length} bytes is larger than the server's max_payload (${this.maxPayload})`);
      } catch (error) {
        this.ctx.deadLetter(record, error, times[i]!);
        continue;
      }
      if (this.exactlyOnce) {
        let s = this.subjectIndex.get(subject);
        if (s === undefined) {
          s = this.subjects.length;
          this.subjects.push(subject);
          this.subjectIndex.set(subject, s);
        }
        this.subjectOf.push(s);
        this.payloads.push(data);
        this.bytes += data.length;
      } else {
        this.publisher!.enqueue(subject, data, `${this.runNonce}:${this.ctx.instance}:${this.seq++}`);
      }
    }
  }

  backpressure(): Promise<void> | undefined {
    if (this.exactlyOnce || this.publisher === null) return undefined;
    return this.publisher.room(2 * (this.options.maxInFlight ?? 2_048));
  }

  /**
   * Exactly once: the checkpoint's messages, to be stored in it (no I/O). At least once: resolves
   * once every message published so far is acknowledged.
   */
  preCommit(): JetStreamCommittable | undefined | Promise<undefined> {
    if (!this.exactlyOnce) return this.publisher!.drained().then(() => undefined);
    const count = this.payloads.length;
    if (count === 0) return undefined;
    const sizes = Buffer.allocUnsafe(4 * count);
    const payloads = Buffer.allocUnsafe(this.bytes);
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const p = this.payloads[i]!;
      sizes.writeUInt32LE(p.length, 4 * i);
      payloads.set(p, offset);
      offset += p.length;
    }
    let subjectOf: Uint8Array | undefined;
    if (this.subjects.length > 1) {
      const b = Buffer.allocUnsafe(4 * count);
      for (let i = 0; i < count; i++) b.writeUInt32LE(this.subjectOf[i]!, 4 * i);
      subjectOf = b;
    }
    const committable: JetStreamCommittable = {
      nonce: nonce(),
      at: Date.now(),
      count,
      subjects: this.subjects.slice(),
      ...(subjectOf === undefined ? {} : { subjectOf }),
      sizes,
      payloads,
    };
    this.payloads = [];
    this.subjectOf = [];
    this.bytes = 0;
    if (this.subjectFn !== null) {
      this.subjects = [];
      this.subjectIndex.clear();
    }
    return committable;
  }

  /**
   * Publishes each checkpoint's messages (in checkpoint order) unless its commit record says it
   * was done, waits for every acknowledgement, and records the commit. Idempotent: message ids
   * come from the committable, so a re-commit stores nothing twice.
   */
  async commit(committables: ReadonlyArray<Committable<JetStreamCommittable>>): Promise<void> {
    const recovery = this.recovering;
    for (const c of committables) {
      const data = c.data;
      const key = `${keyPart(this.sinkId)}.${c.instance}.${c.checkpointId}.${data.nonce}`;
      const retry = this.options.retryMs;
      const done = await retrying('reading a commit record', () => this.kv!.get(key), (l) => this.log(l), retry, () => this.closed);
      if (done !== null && done.operation === 'PUT') continue;
      if (recovery) {
        const age = Date.now() - data.at;
        const window = this.duplicateWindowMs;
        const late = window === window && age > window;
        this.log(
          `committing checkpoint ${c.checkpointId} (instance ${c.instance}, ${data.count} messages) again after a restart` +
            (late
              ? `, ${(age / 1000).toFixed(0)} s after it was first committed — beyond the stream's duplicate window (${window / 1000} s): messages of it published before the crash may be stored twice`
              : ''),
        );
      }
      this.publishCommittable(c);
      await this.publisher!.drained();
      await retrying('writing a commit record', () => this.kv!.put(key, JSON.stringify({ count: data.count, at: Date.now() })), (l) => this.log(l), retry, () => this.closed);
    }
  }

  private publishCommittable(c: Committable<JetStreamCommittable>): void {
    const { nonce: n, count, subjects, subjectOf, sizes, payloads } = c.data;
    const sizeView = Buffer.from(sizes.buffer, sizes.byteOffset, sizes.byteLength);
    const subjectView = subjectOf === undefined ? null : Buffer.from(subjectOf.buffer, subjectOf.byteOffset, subjectOf.byteLength);
    const prefix = `${n}:${c.checkpointId}:${c.instance}:`;
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const size = sizeView.readUInt32LE(4 * i);
      const subject = subjects[subjectView === null ? 0 : subjectView.readUInt32LE(4 * i)]!;
      this.publisher!.enqueue(subject, payloads.subarray(offset, offset + size), prefix + i);
      offset += size;
    }
  }

  /** Nothing to drop: a checkpoint's messages are published only once it is complete. */
  abort(): void {
    this.recovering = false;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.publisher?.close();
    await this.nc?.close().catch(() => undefined);
  }

  private log(line: string): void {
    const message = `JetStream sink ${this.sinkId || this.ctx?.stepId}: ${line}`;
    if (this.ctx?.log !== undefined) this.ctx.log(message);
    else process.stderr.write(`spate: ${message}\n`);
  }
}

/** A random id of 10 characters (about 60 bits). */
function nonce(): string {
  return randomBytes(8).toString('base64url').slice(0, 10);
}

/** A sink id as a key token of the commit bucket (letters, digits, `-`, `_`, `=`). */
function keyPart(id: string): string {
  return id.replace(/[^A-Za-z0-9_=-]/g, (c) => `=${c.charCodeAt(0).toString(16)}`);
}
