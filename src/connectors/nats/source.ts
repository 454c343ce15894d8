import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { createInbox } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstreamManager, type JetStreamManager, ReplayPolicy, type StreamInfo } from '@nats-io/jetstream';
import type { Source, SourceContext, SourceOutput, SourceReader, SourceStatus, Split, SplitOutput } from '../../runtime/source.ts';
import { type DecodeError, deadLetterOf, decoder, type FormatOptions } from '../format.ts';
import { connectNats, describe, nanos, retrying } from './config.ts';
import type { JetStreamSourceStats, NatsConnectionOptions, RetryOptions } from './options.ts';

/** Where a fresh job starts reading (a restored job resumes from its checkpoint). */
export type JetStreamStart =
  /** The stream's first message (default). */
  | 'first'
  /** Messages published after the job started. */
  | 'new'
  /** The message with this stream sequence, and what follows. */
  | { readonly sequence: number }
  /** The first message stored at or after this time (ms since the epoch, or a Date). */
  | { readonly time: number | Date };

/** Options of {@link JetStreamSource}. */
export interface JetStreamSourceOptions<T> extends FormatOptions<T> {
  /** The server and credentials (default `nats://127.0.0.1:4222`, no authentication). */
  readonly connection?: NatsConnectionOptions;
  /** The stream to read (it must exist). */
  readonly stream: string;
  /**
   * Subject filters, one split each, read in parallel by up to as many instances: e.g.
   * `['orders.0.>', 'orders.1.>']` for a stream whose subjects are partitioned by a subject
   * mapping. Filters must not overlap (a message matching two is read twice). Default: one split,
   * the whole stream.
   */
  readonly subjects?: readonly string[];
  /** Where a fresh job starts (default `'first'`); a restored job resumes where its checkpoint says. */
  readonly start?: JetStreamStart;
  /**
   * Bounded: read up to the stream's last message as of the moment the reader opens, then end
   * (a batch run over what the stream holds). Default: unbounded, follow the stream.
   */
  readonly bounded?: boolean;
  /**
   * Event time: `'message'` (default) — when the server stored the message; `'ingestion'` — when
   * Spate read it. The step's `timestamp` option (a function of the record) overrides both.
   */
  readonly time?: 'message' | 'ingestion';
  /**
   * When resuming, the messages after the checkpoint may have been deleted by the stream's
   * retention limits before they were read. `'fail'` (default) fails the job with a clear error;
   * `'skip'` logs the gap and goes on from the stream's first message.
   */
  readonly onRetentionGap?: 'fail' | 'skip';
  /** Messages asked for per pull request (default 4096: the server delivers faster in large batches). */
  readonly batch?: number;
  /** Messages buffered per split before pulling stops (default 4 × batch). */
  readonly maxBuffered?: number;
  /** The server sends a heartbeat this often while a pull waits (default 2 000 ms); three missed ones mean the consumer is lost. */
  readonly heartbeatMs?: number;
  /** Backoff while the server is away (default first 100 ms, at most 5 000 ms). */
  readonly retryMs?: RetryOptions;
}

/** The position of a split: the stream sequence of the last message read (0: none yet). */
export type JetStreamPosition = number;

/**
 * Reads a JetStream stream, exactly once across failures: positions are stream sequences kept in
 * Spate's checkpoints, and a restored job reads exactly the messages that followed them.
 *
 * **How it reads.** Each split (the stream, or one subject filter of it) is read by an ephemeral,
 * unacknowledged pull consumer created at the split's position + 1 — what the JetStream clients
 * call an *ordered consumer*: the server delivers the stream's messages in sequence order, once,
 * and the reader checks every delivery's consumer sequence. A gap (messages lost in flight while
 * the connection broke), a consumer the server no longer knows (restarted, or removed after a
 * long pause) or missed heartbeats make the reader replace the consumer by a new one starting
 * right after the last message it received; so it never skips or repeats a message, whatever
 * happens to the connection. Messages are pulled in batches (`batch`), buffered up to
 * `maxBuffered` per split — a slow job stops pulling instead of growing memory — and handed to
 * the job by `poll`, with no promise per message.
 *
 * **Why no acknowledgements.** The read position lives in the checkpoint, like a Kafka source's
 * offsets: restoring needs nothing from the server but the stream itself, and restoring an older
 * checkpoint or savepoint works. So the source needs a stream that keeps messages by limits
 * (`retention: limits`, the default: age, count or size); work-queue and interest streams delete
 * what is acknowledged, and are refused. Nothing on the server has to be confirmed when a
 * checkpoint completes, and no acknowledgement traffic slows reading. If retention deletes
 * messages the job has not yet read (a job stopped longer than `max_age`), resuming fails
 * clearly (or skips the gap with `onRetentionGap: 'skip'`).
 *
 * **Splits and parallelism.** Without `subjects`, the stream is one split (one reader). With
 * `subjects`, each filter is a split and readers share them round-robin.
 *
 * **Records.** Payloads are decoded by `format` (json, ndjson, text, bytes) and validated by
 * `schema`; a message that fails (malformed JSON, invalid UTF-8, larger than `maxBytes`, refused by
 * the schema) becomes a dead letter `{ stream, subject, sequence, size, payload }` with the error,
 * and the job goes on. A record's event time is the message's time by default. A split that has
 * read everything (no message pending on the server) is idle, so it does not hold the watermark
 * back.
 *
 * **Failures.** A server that is away at start or while running is waited for with backoff, and
 * said on the job's log when it goes and when it comes back; reading resumes by itself.
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
export class JetStreamSource<T> implements Source<T> {
  readonly bounded: boolean;
  readonly maxParallelism: number;
  /** Counters of the readers this source created in this thread (reconnections, consumer resets, outages). */
  readonly stats: JetStreamSourceStats = { reconnects: 0, consumerResets: 0, outages: 0, waiting: false };

  constructor(private readonly options: JetStreamSourceOptions<T>) {
    validateSourceOptions(options);
    this.bounded = options.bounded === true;
    this.maxParallelism = options.subjects?.length ?? 1;
    decoder(options); // checks the format options now, not in the reader
  }

  /** One split per subject filter (or the whole stream), at the starting position. */
  async splits(ctx: SourceContext): Promise<Split<JetStreamPosition>[]> {
    const o = this.options;
    const log = (line: string): void => logLine(ctx.log, `JetStream source ${o.stream}: ${line}`);
    const onOutage = (down: boolean): void => {
      if (down) this.stats.outages++;
      this.stats.waiting = down;
    };
    const nc = await connectNats(o.connection ?? {}, `spate ${ctx.stepId}`, log, o.retryMs, undefined, onOutage);
    try {
      const jsm = await retrying('reading the stream', () => jetstreamManager(nc, { timeout: 5_000 }), log, o.retryMs, undefined, onOutage);
      const info = await retrying('reading the stream', () => jsm.streams.info(o.stream), log, o.retryMs, undefined, onOutage);
      checkRetention(info);
      const position = await startPosition(nc, jsm, info, o.start ?? 'first');
      return splitIds(o).map((id) => ({ id, position }));
    } finally {
      await nc.close().catch(() => undefined);
    }
  }

  createReader(ctx: SourceContext): SourceReader<T> {
    return new JetStreamReader<T>(this.options, ctx, this.stats);
  }
}

function validateSourceOptions<T>(o: JetStreamSourceOptions<T>): void {
  if (typeof o.stream !== 'string' || o.stream.length === 0) throw new Error('JetStreamSource: `stream` is required');
  if (o.subjects !== undefined) {
    if (o.subjects.length === 0) throw new Error('JetStreamSource: `subjects` is empty');
    const dup = o.subjects.find((s, i) => o.subjects!.indexOf(s) !== i);
    if (dup !== undefined) throw new Error(`JetStreamSource: subject filter '${dup}' is listed twice`);
  }
  for (const [name, value] of [
    ['batch', o.batch],
    ['maxBuffered', o.maxBuffered],
    ['heartbeatMs', o.heartbeatMs],
  ] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value >= 1)) throw new Error(`JetStreamSource: \`${name}\` must be a positive integer, got ${value}`);
  }
  const start = o.start;
  if (start !== undefined && typeof start === 'object' && 'sequence' in start && !(Number.isInteger(start.sequence) && start.sequence >= 1)) {
    throw new Error(`JetStreamSource: start sequence must be an integer ≥ 1, got ${start.sequence}`);
  }
}

function splitIds<T>(o: JetStreamSourceOptions<T>): string[] {
  return o.subjects === undefined ? [o.stream] : o.subjects.map((s) => `${o.stream}:${s}`);
}

function checkRetention(info: StreamInfo): void {
  const retention = info.config.retention;
  if (retention !== undefined && retention !== 'limits') {
    throw new Error(
      `JetStreamSource: stream ${info.config.name} has retention '${retention}', which deletes acknowledged messages; ` +
        `the source keeps its positions in checkpoints and needs a stream with retention 'limits'`,
    );
  }
}

/** The position (sequence of the last message considered read) where a fresh job starts. */
async function startPosition(nc: NatsConnection, jsm: JetStreamManager, info: StreamInfo, start: JetStreamStart): Promise<number> {
  const { first_seq, last_seq } = info.state;
  if (start === 'first') return Math.max(0, first_seq - 1);
  if (start === 'new') return last_seq;
  if ('sequence' in start) return start.sequence - 1;
  // The first message at or after a time: ask a consumer starting there for one message.
  const time = start.time instanceof Date ? start.time : new Date(start.time);
  const ci = await jsm.consumers.add(info.config.name, {
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: time.toISOString(),
    inactive_threshold: nanos(10_000),
    mem_storage: true,
    num_replicas: 1,
  });
  try {
    if (ci.num_pending === 0) return last_seq;
    // A delivered message keeps its own subject, so the reply cannot go through `request`'s shared inbox.
    const inbox = createInbox();
    const first = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new Error(`no answer from JetStream for the first message of ${info.config.name} after ${time.toISOString()}`));
      }, 5_000);
      const sub = nc.subscribe(inbox, {
        callback: (_err, m) => {
          const fields = new Float64Array(4);
          clearTimeout(timer);
          sub.unsubscribe();
          resolve(m.reply !== undefined && ackFields(m.reply, fields) ? fields[0]! : last_seq + 1);
        },
      });
      nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${info.config.name}.${ci.name}`, JSON.stringify({ batch: 1, expires: nanos(2_000) }), { reply: inbox });
    });
    return first - 1;
  } finally {
    await jsm.consumers.delete(info.config.name, ci.name).catch(() => undefined);
  }
}

function logLine(log: ((line: string) => void) | undefined, line: string): void {
  if (log !== undefined) log(line);
  else process.stderr.write(`spate: ${line}\n`);
}

const DOT = 46;

/**
 * Reads `[stream sequence, consumer sequence, time in ms, pending]` from a JetStream message's
 * reply subject, without splitting it: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
 * <consumer seq>.<time ns>.<pending>` (9 tokens), or the newer form with a domain and account
 * hash after `$JS.ACK` (11 tokens) and possibly a random token at the end (12).
 */
export function ackFields(reply: string, out: Float64Array): boolean {
  let dots = 0;
  for (let i = 0; i < reply.length; i++) if (reply.charCodeAt(i) === DOT) dots++;
  let end = reply.length;
  if (dots === 11) end = reply.lastIndexOf('.', end - 1);
  else if (dots !== 8 && dots !== 10) return false;
  let dot = reply.lastIndexOf('.', end - 1);
  out[3] = Number(reply.slice(dot + 1, end)); // pending
  end = dot;
  dot = reply.lastIndexOf('.', end - 1);
  // Nanoseconds beyond 2^53: take the milliseconds from the digits instead.
  out[2] = end - dot - 1 > 6 ? Number(reply.slice(dot + 1, end - 6)) : 0;
  end = dot;
  dot = reply.lastIndexOf('.', end - 1);
  out[1] = Number(reply.slice(dot + 1, end)); // consumer sequence
  end = dot;
  dot = reply.lastIndexOf('.', end - 1);
  out[0] = Number(reply.slice(dot + 1, end)); // stream sequence
  return out[0] === out[0] && out[1] === out[1];
}

/** One split being read: its consumer, what it has received and what is buffered. */
class SplitState {
  /** Stream sequence of the last message emitted: the split's position. */
  last: number;
  /** Stream sequence of the last message received (buffered or emitted). */
  received: number;
  /** Consumer sequence of the last delivery of the current consumer. */
  cseq = 0;
  /** Incremented when the consumer is replaced; deliveries of older ones are ignored. */
  generation = 0;
  consumer: string | null = null;
  sub: Subscription | null = null;
  inbox = '';
  /** Buffered messages, from `head`: the message, its stream sequence and time. */
  msgs: Msg[] = [];
  seqs: number[] = [];
  times: number[] = [];
  head = 0;
  /** Messages asked for by pull requests and not yet delivered or expired. */
  credits = 0;
  /** Messages the server says are still pending after the last delivery (-1: unknown). */
  serverPending = -1;
  lastHeard = 0;
  resetting: Promise<void> | null = null;
  /** Bounded reading stops after this sequence. */
  endSeq = Infinity;
  finished = false;
  idle = false;
  out: SplitOutput<unknown> | null = null;

  constructor(
    readonly id: string,
    readonly filter: string | undefined,
    position: number,
  ) {
    this.last = position;
    this.received = position;
  }

  get buffered(): number {
    return this.msgs.length - this.head;
  }

  /** Drops consumed entries once they are most of the arrays. */
  compact(): void {
    if (this.head === this.msgs.length) {
      this.msgs.length = 0;
      this.seqs.length = 0;
      this.times.length = 0;
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.msgs.length) {
      this.msgs = this.msgs.slice(this.head);
      this.seqs = this.seqs.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }
}

class JetStreamReader<T> implements SourceReader<T> {
  private nc: NatsConnection | null = null;
  private jsm: JetStreamManager | null = null;
  private splits: SplitState[] = [];
  private turn = 0;
  private closed = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly fields = new Float64Array(4);
  private readonly decode: ReturnType<typeof decoder<T>>;
  private readonly batch: number;
  private readonly maxBuffered: number;
  private readonly heartbeat: number;
  private readonly messageTime: boolean;
  // The message being decoded, for the decoder's callbacks (no closure per message).
  private cur: SplitState | null = null;
  private curOut: SourceOutput<T> | null = null;
  private curSeq = 0;
  private curTime = 0;
  private curSubject = '';
  private emitted = 0;

  constructor(
    private readonly options: JetStreamSourceOptions<T>,
    private readonly ctx: SourceContext,
    private readonly stats: JetStreamSourceStats,
  ) {
    this.decode = decoder(options);
    this.batch = options.batch ?? 4096;
    this.maxBuffered = Math.max(options.maxBuffered ?? 4 * this.batch, this.batch);
    this.heartbeat = options.heartbeatMs ?? 2_000;
    this.messageTime = (options.time ?? 'message') === 'message';
  }

  private log(line: string): void {
    logLine(this.ctx.log, `JetStream source ${this.options.stream}: ${line}`);
  }

  private readonly onOutage = (down: boolean): void => {
    if (down) this.stats.outages++;
    this.stats.waiting = down;
  };

  async open(splits: readonly Split[]): Promise<void> {
    const o = this.options;
    const filters = new Map(splitIds(o).map((id, i) => [id, o.subjects?.[i]]));
    this.splits = splits.map((s) => {
      if (!filters.has(s.id)) throw new Error(`JetStreamSource: the checkpoint has split '${s.id}', which the source's stream and subjects do not name`);
      return new SplitState(s.id, filters.get(s.id), s.position as number);
    });
    if (this.splits.length === 0) return;
    const stopped = (): boolean => this.closed;
    const nc = await connectNats(o.connection ?? {}, `spate ${this.ctx.stepId}[${this.ctx.instance}]`, (l) => this.log(l), o.retryMs, stopped, this.onOutage);
    this.nc = nc;
    this.watchStatus(nc);
    this.jsm = await retrying('reading the stream', () => jetstreamManager(nc, { timeout: 5_000 }), (l) => this.log(l), o.retryMs, stopped, this.onOutage);
    const info = await retrying('reading the stream', () => this.jsm!.streams.info(o.stream), (l) => this.log(l), o.retryMs, stopped, this.onOutage);
    checkRetention(info);
    for (const s of this.splits) {
      if (s.last + 1 < info.state.first_seq && info.state.messages > 0) {
        const gap = `split ${s.id} resumes after sequence ${s.last}, but the stream's first message is now ${info.state.first_seq}: messages were deleted by the stream's retention limits before they were read`;
        if ((o.onRetentionGap ?? 'fail') === 'fail') throw new Error(`JetStreamSource: ${gap} (onRetentionGap: 'skip' goes on from the first message)`);
        this.log(`${gap}; skipping them (onRetentionGap: 'skip')`);
        s.last = s.received = info.state.first_seq - 1;
      }
      if (o.bounded === true) {
        s.endSeq = info.state.last_seq;
        if (s.last >= s.endSeq) s.finished = true;
      }
    }
    await Promise.all(this.splits.filter((s) => !s.finished).map((s) => this.startConsumer(s)));
    this.timer = setInterval(() => this.checkLiveness(), this.heartbeat);
    this.timer.unref?.();
  }

  /** Logs disconnections and replaces every consumer after a reconnection. */
  private watchStatus(nc: NatsConnection): void {
    void (async () => {
      let downSince = 0;
      for await (const s of nc.status()) {
        if (this.closed) return;
        if (s.type === 'disconnect' && downSince === 0) {
          downSince = Date.now();
          this.log(`disconnected from NATS (${s.server}); reconnecting with backoff, reading waits`);
        } else if (s.type === 'reconnect') {
          this.stats.reconnects++;
          this.log(`reconnected to NATS (${s.server})${downSince > 0 ? ` after ${((Date.now() - downSince) / 1000).toFixed(1)} s` : ''}; resuming each split after its last message`);
          downSince = 0;
          // In-flight deliveries may have been lost, and the server may have restarted without
          // the (in-memory) consumers: start again after what was received.
          for (const s of this.splits) if (!s.finished) this.reset(s);
        }
      }
    })().catch(() => undefined);
  }

  /** Creates the split's consumer at `received + 1` and starts pulling. */
  private async startConsumer(s: SplitState): Promise<void> {
    const o = this.options;
    const generation = ++s.generation;
    s.credits = 0;
    s.cseq = 0;
    s.sub?.unsubscribe();
    s.sub = null;
    const old = s.consumer;
    s.consumer = null;
    if (old !== null) void this.jsm?.consumers.delete(o.stream, old).catch(() => undefined);
    const ci = await retrying(
      `creating a consumer for ${s.id}`,
      () =>
        this.jsm!.consumers.add(o.stream, {
          ack_policy: AckPolicy.None,
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: s.received + 1,
          replay_policy: ReplayPolicy.Instant,
          ...(s.filter === undefined ? {} : { filter_subject: s.filter }),
          // Removed by the server if the job goes away without deleting it.
          inactive_threshold: nanos(Math.max(60_000, 10 * this.heartbeat)),
          mem_storage: true,
          num_replicas: 1,
        }),
      (l) => this.log(l),
      o.retryMs,
      () => this.closed,
      this.onOutage,
    );
    if (generation !== s.generation || this.closed) {
      void this.jsm?.consumers.delete(o.stream, ci.name).catch(() => undefined);
      return;
    }
    s.consumer = ci.name;
    s.serverPending = ci.num_pending;
    s.lastHeard = Date.now();
    s.inbox = createInbox();
    s.sub = this.nc!.subscribe(s.inbox, { callback: (_err, m) => this.onMessage(s, generation, m) });
    this.pump(s);
    this.signal();
  }

  /** Replaces the split's consumer (once at a time). */
  private reset(s: SplitState): void {
    if (s.resetting !== null || this.closed) return;
    this.stats.consumerResets++;
    s.resetting = this.startConsumer(s)
      .catch((error: unknown) => {
        if (!this.closed) this.failure ??= error instanceof Error ? error : new Error(String(error));
      })
      .finally(() => {
        s.resetting = null;
        this.signal();
      });
  }

  /** Asks for another batch while the split has room for it. */
  private pump(s: SplitState): void {
    if (s.consumer === null || s.sub === null || this.closed || s.finished || s.received >= s.endSeq) return;
    const nc = this.nc!;
    if (nc.isClosed() || nc.isDraining()) return;
    while (s.buffered + s.credits + this.batch <= this.maxBuffered && s.credits < 2 * this.batch) {
      nc.publish(
        `$JS.API.CONSUMER.MSG.NEXT.${this.options.stream}.${s.consumer}`,
        JSON.stringify({ batch: this.batch, expires: nanos(30_000), idle_heartbeat: nanos(this.heartbeat) }),
        { reply: s.inbox },
      );
      s.credits += this.batch;
    }
  }

  private onMessage(s: SplitState, generation: number, m: Msg): void {
    if (generation !== s.generation || this.closed) return;
    s.lastHeard = Date.now();
    if (m.reply === undefined || m.reply === '') {
      this.onStatus(s, m);
      return;
    }
    const f = this.fields;
    if (!ackFields(m.reply, f)) return;
    const sseq = f[0]!;
    const cseq = f[1]!;
    if (cseq !== s.cseq + 1) {
      // A delivery was lost in flight: start again after the last message received.
      this.reset(s);
      return;
    }
    s.cseq = cseq;
    s.credits--;
    if (sseq <= s.received) return;
    if (sseq > s.endSeq) {
      s.serverPending = 0;
      this.signal();
      return;
    }
    s.received = sseq;
    s.serverPending = f[3]!;
    s.msgs.push(m);
    s.seqs.push(sseq);
    s.times.push(f[2]!);
    if (s.buffered === 1) this.signal();
  }

  private onStatus(s: SplitState, m: Msg): void {
    const h = m.headers;
    const code = h?.code ?? 0;
    if (code === 100) {
      // An idle heartbeat says the last consumer sequence delivered: more than we saw means loss.
      const last = Number(h?.get('Nats-Last-Consumer') ?? s.cseq);
      if (last > s.cseq) this.reset(s);
      return;
    }
    if (code === 408 || code === 409) {
      // A pull request ended (expired, or cut short): its undelivered messages no longer count.
      const left = Number(h?.get('Nats-Pending-Messages') ?? NaN);
      if (left === left) s.credits = Math.max(0, s.credits - left);
      else s.credits = 0;
      if (code === 409 && /consumer (is )?deleted|consumer not found/i.test(h?.description ?? '')) {
        this.reset(s);
        return;
      }
      this.pump(s);
      return;
    }
    if (code === 404) {
      s.credits = 0;
      this.pump(s);
      return;
    }
    // 503 (no responders: the consumer or JetStream is gone) and anything unexpected: start again.
    this.reset(s);
  }

  /** Replaces consumers that went silent (no message or heartbeat for three heartbeat periods). */
  private checkLiveness(): void {
    const now = Date.now();
    for (const s of this.splits) {
      if (s.finished || s.resetting !== null || s.consumer === null || s.credits === 0) continue;
      if (now - s.lastHeard > 3 * this.heartbeat) {
        s.lastHeard = now;
        this.reset(s);
      }
    }
  }

  private signal(): void {
    const w = this.wake;
    if (w !== null) {
      this.wake = null;
      w();
    }
  }

  private readonly onRecord = (record: T): void => {
    this.curOut!.emit(record, this.messageTime ? this.curTime : undefined, this.curSeq);
    this.emitted++;
  };

  private readonly onBad = (error: DecodeError): void => {
    this.curOut!.deadLetter(deadLetterOf(error, { stream: this.options.stream, subject: this.curSubject, sequence: this.curSeq }), error);
  };

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    if (this.failure !== null) throw this.failure;
    const n = this.splits.length;
    if (n === 0) return this.options.bounded === true ? 'end' : 'wait';
    this.emitted = 0;
    let more = false;
    let live = 0;
    // Splits take turns at being first, so that one busy split does not starve the others.
    const first = this.turn;
    this.turn = (first + 1) % n;
    for (let k = 0; k < n; k++) {
      const s = this.splits[(first + k) % n]!;
      if (s.finished) continue;
      live++;
      if (s.buffered > 0 && this.emitted < max) {
        const o = (s.out ??= out.split(s.id)) as SplitOutput<T>;
        this.cur = s;
        this.curOut = o;
        const end = Math.min(s.msgs.length, s.head + (max - this.emitted));
        let i = s.head;
        try {
          for (; i < end; i++) {
            const m = s.msgs[i]!;
            this.curSeq = s.seqs[i]!;
            this.curTime = s.times[i]!;
            this.curSubject = m.subject;
            this.decode(m.data, this.onRecord, this.onBad);
          }
        } finally {
          // A throw (a dead letter under errors: 'fail') leaves the failing message consumed.
          if (i < end) i++;
          for (let j = s.head; j < i; j++) s.msgs[j] = undefined as unknown as Msg;
          if (i > s.head) s.last = s.seqs[i - 1]!;
          s.head = i;
          s.compact();
        }
        s.idle = false;
      }
      if (s.buffered > 0) more = true;
      else if (s.received >= s.endSeq || (this.options.bounded === true && s.serverPending === 0 && s.resetting === null && s.consumer !== null)) {
        s.finished = true;
        (s.out ??= out.split(s.id)).finish();
        live--;
        continue;
      } else if (s.serverPending === 0 && !s.idle) {
        // Caught up with the stream: idle until a message comes, so the watermark is not held back.
        s.idle = true;
        (s.out ??= out.split(s.id)).markIdle();
      }
      this.pump(s);
    }
    if (live === 0 && this.options.bounded === true) return 'end';
    return more || this.emitted > 0 ? 'more' : 'wait';
  }

  ready(): Promise<void> {
    if (this.failure !== null || this.closed) return Promise.resolve();
    for (const s of this.splits) if (s.buffered > 0 || (s.finished === false && this.options.bounded === true && s.serverPending === 0 && s.consumer !== null)) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  snapshot(): Split<JetStreamPosition>[] {
    return this.splits.map((s) => ({ id: s.id, position: s.last }));
  }

  describe(origin: number): Record<string, unknown> {
    return { stream: this.options.stream, sequence: origin };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.signal();
    const nc = this.nc;
    if (nc === null) return;
    for (const s of this.splits) s.sub?.unsubscribe();
    // Delete the consumers now rather than leave them to the inactivity threshold.
    if (!nc.isClosed()) {
      await Promise.race([
        Promise.all(this.splits.map((s) => (s.consumer === null ? undefined : this.jsm?.consumers.delete(this.options.stream, s.consumer).catch(() => undefined)))),
        new Promise((r) => setTimeout(r, 1_000)),
      ]);
    }
    await nc.close().catch((error: unknown) => this.log(`closing the connection: ${describe(error)}`));
  }
}
