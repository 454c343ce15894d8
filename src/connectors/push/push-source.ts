import { createHash, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import type { Source, SourceContext, SourceReader, Split, SplitOutput } from '../../runtime/source.ts';
import { type DecodeError, deadLetterOf, type Schema } from '../format.ts';
import { WalReader, type WalPosition } from '../wal/reader.ts';
import type { WriteAheadLog, WriteAheadLogOptions } from '../wal/write-ahead-log.ts';
import { decodeEntry, EntryKind, encodeEntry } from './entry.ts';
import { newPushMetrics, type PushMetrics, type RejectReason } from './metrics.ts';
import { type Part, type PayloadFormat, recordDecoder } from './payload.ts';

/** Options every push source shares. */
export interface PushSourceOptions<T> {
  /**
   * Directory of the source's write-ahead log. Default: `<checkpoint dir>/ingest/<step id>` when
   * the job checkpoints to a directory, else `.spate/ingest/<step id>` (relative to the working
   * directory). Keep it with the checkpoints: a checkpoint holds a position in this log.
   */
  readonly dir?: string;
  /** Options of the log (segment size). */
  readonly wal?: WriteAheadLogOptions;
  /**
   * Validates (and may transform) every record before it is accepted: a record it refuses is
   * answered as an error and becomes a dead letter. Any Standard Schema validator (zod, valibot,
   * arktype…) or a function that returns the record or throws. It runs again when the job reads
   * the log (a replay gives the same records), so it must be deterministic and synchronous.
   */
  readonly schema?: Schema<T>;
  /**
   * Event time of a record (default: when the endpoint received it, kept in the log, so a replay
   * gives the same times). The step's `timestamp` option, if given, takes precedence.
   */
  readonly time?: (record: T) => number;
  /**
   * Records appended to the log but not read by the job yet, at which the endpoint pushes back
   * (HTTP 429 with Retry-After, WebSocket retry-later replies and paused reads, MQTT acks held)
   * instead of buffering without limit. Default 100 000.
   */
  readonly maxBacklog?: number;
  /** Seconds a pushed-back client is told to wait (`Retry-After`; default 1). */
  readonly retryAfter?: number;
  /** Interface to listen on (default 127.0.0.1). Anything but loopback requires `token`. */
  readonly host?: string;
  /**
   * A bearer token clients must present (`Authorization: Bearer <token>`; MQTT: the password).
   * Required when `host` is not a loopback address: such a source refuses to be built without one.
   */
  readonly token?: string;
}

/** Where an endpoint listens. */
export interface EndpointAddress {
  readonly host: string;
  readonly port: number;
  /** e.g. `http://127.0.0.1:8080/ingest`, `ws://…`, `mqtt://…`. */
  readonly url: string;
}

/** An endpoint that listens: started by the reader's `open`, stopped by its `close`. */
export interface RunningEndpoint {
  readonly address: EndpointAddress;
  /** Stops accepting, lets requests under way finish (briefly), closes every connection. */
  stop(): Promise<void>;
}

/** What an append reports back to the client. */
export interface AppendResult {
  readonly accepted: number;
  readonly rejected: number;
  /** One per refused part: its line (NDJSON) or index (JSON array), the reason and the message. */
  readonly errors: ReadonlyArray<{ readonly line?: number; readonly index?: number; readonly reason: RejectReason; readonly error: string }>;
}

/**
 * The shared core of every push endpoint, created when the reader opens: appends what arrives
 * to the write-ahead log — records and rejected parts (as dead letters) in arrival order — and
 * resolves once it is durable, which is when the endpoint may acknowledge; measures the backlog
 * (appended, not yet read by the job) and says when to push back; counts.
 */
export class Ingest {
  private waiters: Array<() => void> = [];
  /** Set when the endpoint stops: waiting clients are released (and refused). */
  closing = false;

  constructor(
    readonly wal: WriteAheadLog,
    readonly metrics: PushMetrics,
    /** The reader's position: the next sequence number the job reads. */
    private readonly readPosition: () => number,
    /** Backlog at which to push back. */
    readonly maxBacklog: number,
    /** Seconds to tell a pushed-back client to wait. */
    readonly retryAfter: number,
    /** What dead letters name as their endpoint (`http`, `websocket`, `mqtt`). */
    readonly endpoint: string,
  ) {}

  /** Entries appended (durable or not yet) that the job has not read. */
  get backlog(): number {
    return this.wal.nextSequence - this.readPosition();
  }

  /** Whether to push back now. */
  get full(): boolean {
    return this.backlog >= this.maxBacklog;
  }

  /** Resolves once the backlog is down to three quarters of the limit (or the endpoint stops). */
  drained(): Promise<void> {
    if (this.closing || this.backlog < (this.maxBacklog * 3) / 4) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The job read entries: update the gauge, release waiting clients. */
  released(): void {
    const backlog = this.backlog;
    this.metrics.backlog = backlog;
    if (this.waiters.length > 0 && backlog < (this.maxBacklog * 3) / 4) this.wake();
  }

  close(): void {
    this.closing = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  /**
   * Appends the parts of one request or message, received at `receivedAt`: records as they came,
   * refused parts as dead letters (with `origin`: where they came from). Resolves once durable.
   * Rejects if the log cannot write (nothing may be acknowledged then).
   */
  async append(parts: ReadonlyArray<Part<unknown>>, receivedAt: number, meta: string, origin: Readonly<Record<string, unknown>>): Promise<AppendResult> {
    const entries: Buffer[] = [];
    const errors: Array<AppendResult['errors'][number]> = [];
    let accepted = 0;
    for (const part of parts) {
      if (part.ok) {
        entries.push(encodeEntry(EntryKind.Record, receivedAt, meta, part.raw));
        accepted++;
        continue;
      }
      const reason = part.error.reason;
      const at = part.index !== undefined ? { index: part.index } : part.error.line !== undefined ? { line: part.error.line } : {};
      entries.push(this.deadLetterEntry(part.error, reason, receivedAt, meta, { ...origin, ...at }));
      errors.push({ ...at, reason, error: part.error.message });
      this.count(reason);
    }
    try {
      await this.wal.append(entries);
    } catch (error) {
      this.metrics.appendFailures++;
      throw error;
    }
    this.metrics.accepted += accepted;
    this.metrics.backlog = this.backlog;
    return { accepted, rejected: errors.length, errors };
  }

  /** Appends one dead letter for a payload refused whole (too large, unsupported); resolves once durable. */
  async reject(error: DecodeError, reason: RejectReason, receivedAt: number, meta: string, origin: Readonly<Record<string, unknown>>): Promise<void> {
    this.count(reason);
    try {
      await this.wal.append([this.deadLetterEntry(error, reason, receivedAt, meta, origin)]);
    } catch (e) {
      this.metrics.appendFailures++;
      throw e;
    }
  }

  /** Counts a refusal that is not written (no token, backpressure is counted apart). */
  count(reason: RejectReason): void {
    this.metrics.rejected++;
    this.metrics.rejectedBy[reason]++;
  }

  private deadLetterEntry(error: DecodeError, reason: RejectReason, receivedAt: number, meta: string, origin: Readonly<Record<string, unknown>>): Buffer {
    const record = deadLetterOf(error, { endpoint: this.endpoint, reason, ...origin });
    return encodeEntry(EntryKind.DeadLetter, receivedAt, meta, Buffer.from(JSON.stringify({ error: error.message, record }), 'utf8'));
  }
}

/** The digest a token is compared by (in constant time, whatever its length). */
export function tokenDigest(token: string | Uint8Array): Buffer {
  return createHash('sha256').update(token).digest();
}

/** Whether `given` (a header's token, an MQTT password) is the token of `digest`. */
export function tokenMatches(given: string | Uint8Array, digest: Buffer): boolean {
  return timingSafeEqual(tokenDigest(given), digest);
}

/** Whether `host` names a loopback interface. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

/** The split of a push source: its one write-ahead log. */
const SPLIT = 'wal';

/**
 * The base of the push sources (HTTP, WebSocket, MQTT): one write-ahead log per source, read by
 * the shared {@link WalReader}; the endpoint starts in the reader's `open` — after the log is
 * open, in the thread that built the pipeline (`local`) — and stops in its `close`. Constructing
 * one has no side effect (a pipeline module is also evaluated in worker threads): options are
 * checked, nothing is bound or opened.
 */
export abstract class PushSource<T> implements Source<T> {
  readonly bounded = false;
  readonly local = true;
  readonly maxParallelism = 1;
  /** Counters of the endpoint (see {@link PushMetrics}); they accumulate over the runs of this object. */
  readonly metrics: PushMetrics = newPushMetrics();
  private address: EndpointAddress | null = null;
  private listeners: Array<(address: EndpointAddress) => void> = [];
  protected readonly maxBacklog: number;
  protected readonly retryAfter: number;
  protected readonly host: string;

  protected constructor(
    protected readonly base: PushSourceOptions<T>,
    /** What dead letters and logs name the endpoint. */
    protected readonly endpoint: string,
    /** How the log's record payloads are decoded again. */
    protected readonly format: PayloadFormat,
  ) {
    this.maxBacklog = base.maxBacklog ?? 100_000;
    if (!(Number.isInteger(this.maxBacklog) && this.maxBacklog > 0)) throw new RangeError(`${endpoint}: maxBacklog must be a positive integer, got ${String(base.maxBacklog)}`);
    this.retryAfter = base.retryAfter ?? 1;
    if (!(this.retryAfter >= 0)) throw new RangeError(`${endpoint}: retryAfter must be >= 0 seconds, got ${String(base.retryAfter)}`);
    this.host = base.host ?? '127.0.0.1';
    if (base.token !== undefined && base.token.length === 0) throw new Error(`${endpoint}: token is empty`);
    if (!isLoopback(this.host) && base.token === undefined) {
      throw new Error(`${endpoint}: listening on ${this.host} (not loopback) requires a token: clients would write to this job without one`);
    }
  }

  splits(): Split<WalPosition>[] {
    return [{ id: SPLIT, position: null }];
  }

  createReader(ctx: SourceContext): SourceReader<T> {
    const dir = this.base.dir ?? (ctx.checkpointDir !== undefined ? join(ctx.checkpointDir, 'ingest', ctx.stepId) : join('.spate', 'ingest', ctx.stepId));
    return new PushReader(this, ctx, dir, this.base.wal, { maxBacklog: this.maxBacklog, retryAfter: this.retryAfter, endpoint: this.endpoint });
  }

  /**
   * The address the endpoint listens on: at once while it listens, else when it next starts (the
   * job opening the source). With `port: 0` this says which port was chosen.
   */
  listening(): Promise<EndpointAddress> {
    if (this.address !== null) return Promise.resolve(this.address);
    return new Promise((resolve) => this.listeners.push(resolve));
  }

  /** Starts the endpoint on an open log, for step `stepId`. */
  protected abstract start(ingest: Ingest, log: (line: string) => void, stepId: string): Promise<RunningEndpoint>;

  /** The record of a decoded payload value (MQTT adds its topic from `meta`). */
  protected toRecord(value: unknown, _meta: string): T {
    return value as T;
  }

  /** @internal The reader's hooks. */
  startEndpoint(ingest: Ingest, log: (line: string) => void, stepId: string): Promise<RunningEndpoint> {
    return this.start(ingest, log, stepId);
  }

  /** @internal */
  announce(address: EndpointAddress | null): void {
    this.address = address;
    if (address === null) return;
    const l = this.listeners;
    this.listeners = [];
    for (const r of l) r(address);
  }

  /** @internal Turns the log's entries into records and dead letters. */
  entryHandler(): (entry: Uint8Array, out: SplitOutput<T>, sequence: number) => void {
    const decode = recordDecoder<unknown>(this.format, this.base.schema as Schema<unknown> | undefined);
    const time = this.base.time;
    const endpoint = this.endpoint;
    // The entry being decoded (fields, not an object per entry: this runs for every record).
    let out: SplitOutput<T> = null!;
    let sequence = 0;
    let receivedAt = 0;
    let meta = '';
    const emit = (value: unknown): void => {
      const record = this.toRecord(value, meta);
      out.emit(record, time === undefined ? receivedAt : time(record), sequence);
    };
    const fail = (error: DecodeError): void => {
      // Refused now though accepted at ingestion: the schema changed since.
      out.deadLetter(deadLetterOf(error, { endpoint, reason: error.reason, sequence }), error);
    };
    return (raw, o, seq) => {
      const entry = decodeEntry(raw);
      if (entry.kind === EntryKind.DeadLetter) {
        const { error, record } = JSON.parse(entry.payload.toString('utf8')) as { error: string; record: unknown };
        o.deadLetter(record, new Error(error));
        return;
      }
      out = o;
      sequence = seq;
      receivedAt = entry.receivedAt;
      meta = entry.meta;
      decode(entry.payload, emit, fail);
    };
  }
}

/** A push source's reader: the shared write-ahead log reader, with the endpoint around it. */
class PushReader<T> extends WalReader<T> {
  private ingest: Ingest | null = null;
  private running: RunningEndpoint | null = null;

  constructor(
    private readonly source: PushSource<T>,
    private readonly ctx: SourceContext,
    dir: string,
    options: WriteAheadLogOptions | undefined,
    private readonly settings: { readonly maxBacklog: number; readonly retryAfter: number; readonly endpoint: string },
  ) {
    super([{ id: SPLIT, dir, ...(options === undefined ? {} : { options }) }], source.entryHandler());
  }

  override async open(splits: readonly Split[]): Promise<void> {
    await super.open(splits);
    const l = this.logs[0];
    if (l === undefined) throw new Error(`push source '${this.ctx.stepId}': no write-ahead log assigned`);
    const s = this.settings;
    const ingest = new Ingest(l.log, this.source.metrics, () => l.cursor.position, s.maxBacklog, s.retryAfter, s.endpoint);
    this.ingest = ingest;
    const log = (line: string): void => (this.ctx.log !== undefined ? this.ctx.log(line) : void process.stderr.write(`spate: step '${this.ctx.stepId}': ${line}\n`));
    try {
      this.running = await this.source.startEndpoint(ingest, log, this.ctx.stepId);
    } catch (error) {
      await super.close();
      throw error;
    }
    log(`${s.endpoint} listening on ${this.running.address.url} (write-ahead log ${l.log.dir}, ${ingest.backlog} entries to read)`);
    this.source.announce(this.running.address);
  }

  protected override afterRead(): void {
    this.ingest?.released();
  }

  /** The endpoint's counters for the job's metrics: `rejected.<reason>` for each reason. */
  metrics(): Record<string, number> {
    const m = this.source.metrics;
    const out: Record<string, number> = {
      requests: m.requests,
      accepted: m.accepted,
      rejected: m.rejected,
      backpressured: m.backpressured,
      duplicates: m.duplicates,
      bytes: m.bytes,
      backlog: this.ingest === null ? m.backlog : this.ingest.backlog,
      connections: m.connections,
      appendFailures: m.appendFailures,
    };
    for (const [reason, n] of Object.entries(m.rejectedBy)) out[`rejected.${reason}`] = n;
    return out;
  }

  override async close(): Promise<void> {
    this.ingest?.close();
    const running = this.running;
    this.running = null;
    this.source.announce(null);
    try {
      await running?.stop();
    } finally {
      await super.close();
    }
  }
}
