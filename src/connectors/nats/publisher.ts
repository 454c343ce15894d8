import { createInbox, headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { describe } from './config.ts';
import type { PublisherStats } from './options.ts';

export type { PublisherStats };

/** A message to publish to JetStream, with its deduplication id. */
interface Outgoing {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly id: string;
  /** The reply token of its latest sending (0: not in flight). */
  token: number;
  sentAt: number;
}

/**
 * Publishes messages to JetStream asynchronously: many in flight (`maxInFlight`), each with a
 * `Nats-Msg-Id`, acknowledgements received on one inbox subscription — no promise per message.
 * A message whose acknowledgement does not come within `ackTimeoutMs` (the connection broke, the
 * server restarted) or that the server refuses (no stream for its subject while JetStream
 * restarts, say) is sent again, after a backoff; its id makes the server store it once, within
 * the stream's duplicate window. `drained()` resolves once everything enqueued is acknowledged.
 * Order is publishing order, except that a message sent again comes after the ones sent since.
 */
export class Publisher {
  readonly stats: PublisherStats = { acked: 0, duplicates: 0, resent: 0 };
  private readonly queue: Outgoing[] = [];
  private head = 0;
  private readonly inflight = new Map<number, Outgoing>();
  private nextToken = 1;
  private readonly prefix: string;
  private readonly sub: Subscription;
  private waiters: Array<() => void> = [];
  private roomWaiters: Array<() => void> = [];
  private roomLimit = 0;
  private pausedUntil = 0;
  private backoff = 0;
  private pauseTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly timer: ReturnType<typeof setInterval>;
  /** When the current run of failures started (0: none), for one log line per outage. */
  private failingSince = 0;
  private failures = 0;
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: (line: string) => void,
    private readonly maxInFlight: number,
    private readonly ackTimeoutMs: number,
    private readonly retry: { readonly first: number; readonly max: number },
  ) {
    this.prefix = createInbox();
    this.sub = nc.subscribe(`${this.prefix}.*`, { callback: (_err, m) => this.onAck(m) });
    this.timer = setInterval(() => this.checkTimeouts(), Math.max(50, ackTimeoutMs / 4));
    this.timer.unref?.();
  }

  /** Messages enqueued and not yet acknowledged. */
  get outstanding(): number {
    return this.queue.length - this.head + this.inflight.size;
  }

  enqueue(subject: string, data: Uint8Array, id: string): void {
    this.queue.push({ subject, data, id, token: 0, sentAt: 0 });
    this.pump();
  }

  /** Resolves once every enqueued message is acknowledged. */
  drained(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Resolves once fewer than `limit` messages are outstanding. */
  room(limit: number): Promise<void> | undefined {
    if (this.outstanding < limit || this.closed) return undefined;
    this.roomLimit = limit;
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Sends queued messages while the window has room. */
  private pump(): void {
    if (this.closed || this.nc.isClosed()) return;
    const now = Date.now();
    if (now < this.pausedUntil) {
      this.wakeAt(this.pausedUntil - now);
      return;
    }
    while (this.head < this.queue.length && this.inflight.size < this.maxInFlight) {
      const m = this.queue[this.head]!;
      this.queue[this.head++] = undefined as unknown as Outgoing;
      const token = this.nextToken++;
      m.token = token;
      m.sentAt = now;
      this.inflight.set(token, m);
      const h = natsHeaders();
      h.set('Nats-Msg-Id', m.id);
      try {
        this.nc.publish(m.subject, m.data, { reply: `${this.prefix}.${token}`, headers: h });
      } catch (error) {
        // The client refuses at once (closed, or a payload over the server's limit): retry later.
        this.inflight.delete(token);
        this.requeue(m);
        this.failed(`publishing to ${m.subject}: ${describe(error)}`);
        break;
      }
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.notify();
  }

  private onAck(m: Msg): void {
    const dot = m.subject.lastIndexOf('.');
    const token = Number(m.subject.slice(dot + 1));
    const out = this.inflight.get(token);
    if (out === undefined) return; // a late acknowledgement of a message already sent again
    this.inflight.delete(token);
    const code = m.headers?.code ?? 0;
    if (code >= 300) {
      // 503: no responders — no stream takes the subject (JetStream restarting, or a wrong subject).
      this.requeue(out);
      this.failed(code === 503 ? `no JetStream stream answered for ${out.subject} (no stream captures it, or JetStream is unavailable)` : `${code} ${m.headers?.description ?? ''}`);
      return;
    }
    let ack: { error?: { code?: number; description?: string }; duplicate?: boolean };
    try {
      ack = m.json();
    } catch {
      ack = { error: { description: `unreadable acknowledgement: ${m.string().slice(0, 200)}` } };
    }
    if (ack.error !== undefined) {
      this.requeue(out);
      this.failed(`the server refused a message for ${out.subject}: ${ack.error.description ?? JSON.stringify(ack.error)}`);
      return;
    }
    this.stats.acked++;
    if (ack.duplicate === true) this.stats.duplicates++;
    if (this.failingSince !== 0) {
      this.log(`publishing works again, after ${this.failures} failure(s) over ${((Date.now() - this.failingSince) / 1000).toFixed(1)} s`);
      this.failingSince = 0;
      this.failures = 0;
      this.backoff = 0;
    }
    if (this.head < this.queue.length) this.pump();
    else this.notify();
  }

  /** Puts a message back to be sent again (after the ones already queued). */
  private requeue(m: Outgoing): void {
    m.token = 0;
    this.stats.resent++;
    this.queue.push(m);
  }

  /** A failure: pause sending with backoff; say so when a run of failures starts. */
  private failed(why: string): void {
    this.failures++;
    if (this.failingSince === 0) {
      this.failingSince = Date.now();
      this.log(`${why}; sending again with backoff up to ${this.retry.max / 1000} s apart (message ids make resent messages stored once)`);
    }
    this.backoff = this.backoff === 0 ? this.retry.first : Math.min(this.retry.max, this.backoff * 2);
    this.pausedUntil = Date.now() + this.backoff;
    this.wakeAt(this.backoff);
  }

  /** Pumps again after `ms` (a pause that a later failure extended re-arms itself in `pump`). */
  private wakeAt(ms: number): void {
    if (this.pauseTimer !== null || this.closed) return;
    this.pauseTimer = setTimeout(() => {
      this.pauseTimer = null;
      this.pump();
    }, ms);
  }

  /** Messages without an acknowledgement for `ackTimeoutMs` are sent again. */
  private checkTimeouts(): void {
    if (this.inflight.size === 0) return;
    const limit = Date.now() - this.ackTimeoutMs;
    let expired = 0;
    for (const [token, m] of this.inflight) {
      if (m.sentAt > limit) break; // in sending order: the rest are younger
      this.inflight.delete(token);
      this.requeue(m);
      expired++;
    }
    if (expired > 0) {
      this.failed(`${expired} message(s) without acknowledgement after ${this.ackTimeoutMs} ms (is NATS down?)`);
    }
  }

  private notify(): void {
    if (this.roomWaiters.length > 0 && this.outstanding < this.roomLimit) {
      const w = this.roomWaiters;
      this.roomWaiters = [];
      for (const r of w) r();
    }
    if (this.waiters.length > 0 && this.outstanding === 0) {
      const w = this.waiters;
      this.waiters = [];
      for (const r of w) r();
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    if (this.pauseTimer !== null) clearTimeout(this.pauseTimer);
    this.sub.unsubscribe();
    for (const r of this.roomWaiters) r();
    this.roomWaiters = [];
  }
}
