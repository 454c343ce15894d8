import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import type { Barrier } from './barrier.ts';
import { Batch } from './batch.ts';
import { BatchDecoder, BatchEncoder, RecordEncodeError } from './batch-codec.ts';
import type { EdgeTarget } from './collector.ts';
import type { ChannelFactory, RemoteReader, RemoteWriter } from './exchange.ts';
import type { ChannelEnd } from './worker-protocol.ts';

/**
 * Exchange channels between threads over MessagePorts, with credit-based flow control: the
 * receiver grants a number of batches; the sender spends one per batch and stops (its upstream
 * takes no more input) at zero; the receiver returns credit once it has processed a batch — not
 * when it merely received it — so a slow or blocked (aligning) receiver bounds what is in flight
 * at `CREDITS` batches per channel. Watermarks, idleness, barriers and end markers travel in order
 * with the batches and need no credit.
 */

/** Batches in flight per channel. */
export const CREDITS = 16;

/** A message on a data channel. */
export type ChannelMessage =
  | { readonly t: 'b'; readonly buf: ArrayBuffer }
  | { readonly t: 'w'; readonly w: number }
  | { readonly t: 'i'; readonly idle: boolean }
  | { readonly t: 'r'; readonly barrier: Barrier }
  | { readonly t: 'e' };

/** Credit returned by the receiver. */
interface Credit {
  readonly c: number;
}

/** What goes over a port in one postMessage: the channel messages of one turn of the sender's loop. */
interface Packet {
  readonly m: ChannelMessage[];
}

/** The sending end of a channel. */
export class PortWriter implements RemoteWriter {
  private credits = CREDITS;
  private readonly queue: Array<{ message: ChannelMessage; transfer: ArrayBuffer[] }> = [];
  /** Sendable (credited) messages not yet posted: one postMessage per turn carries them all. */
  private outbox: ChannelMessage[] = [];
  private outboxTransfer: ArrayBuffer[] = [];
  private readonly encoder: BatchEncoder;
  private waiters: Array<() => void> = [];
  /** Records sent (for metrics). */
  sent = 0;

  constructor(
    private readonly port: MessagePort,
    /** Where a record that cannot be encoded goes (the sending step's dead letters). */
    private readonly unencodable: (record: unknown, error: unknown, time: number) => void,
  ) {
    this.encoder = new BatchEncoder();
    port.on('message', (m: Credit) => {
      this.credits += m.c;
      this.drain();
    });
    port.unref();
  }

  get blocked(): boolean {
    if (this.credits <= 0) {
      // Take returned credit now: a busy thread runs its message handlers only when it yields.
      for (let m = receiveMessageOnPort(this.port); m !== undefined; m = receiveMessageOnPort(this.port)) this.credits += (m.message as Credit).c;
      if (this.credits > 0) this.drain();
    }
    return this.queue.length > 0 || this.credits <= 0;
  }

  unblocked(): Promise<void> {
    if (!this.blocked) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  pushBatch(batch: Batch<unknown>): void {
    this.encode(batch, 0, batch.length);
  }

  /** Sends records [from, to): a record that cannot be encoded is a dead letter, the others go. */
  private encode(batch: Batch<unknown>, from: number, to: number): void {
    if (from >= to) return;
    let buf: ArrayBuffer;
    try {
      buf = this.encoder.encode(batch.values, batch.times, from, to);
    } catch (error) {
      if (!(error instanceof RecordEncodeError)) throw error;
      this.unencodable(error.record, new Error(`cannot be sent to another thread: ${(error.cause as Error)?.message ?? error.message}`), batch.times[error.index]!);
      this.encode(batch, from, error.index);
      this.encode(batch, error.index + 1, to);
      return;
    }
    this.sent += to - from;
    this.send({ t: 'b', buf }, [buf]);
  }

  pushWatermark(w: number): void {
    this.send({ t: 'w', w }, []);
  }

  pushIdle(idle: boolean): void {
    this.send({ t: 'i', idle }, []);
  }

  pushBarrier(barrier: Barrier): void {
    this.send({ t: 'r', barrier }, []);
  }

  pushEnd(): void {
    this.send({ t: 'e' }, []);
  }

  private send(message: ChannelMessage, transfer: ArrayBuffer[]): void {
    this.queue.push({ message, transfer });
    this.drain();
  }

  private drain(): void {
    const q = this.queue;
    while (q.length > 0) {
      const head = q[0]!;
      if (head.message.t === 'b') {
        if (this.credits <= 0) break;
        this.credits--;
      }
      q.shift();
      this.outbox.push(head.message);
      for (const t of head.transfer) this.outboxTransfer.push(t);
    }
    if (!this.blocked && this.waiters.length > 0) {
      const w = this.waiters;
      this.waiters = [];
      for (const r of w) r();
    }
  }

  /** Posts what is ready to go, as one message (called at the end of every turn of the loop). */
  flush(): void {
    if (this.outbox.length === 0) return;
    const packet: Packet = { m: this.outbox };
    const transfer = this.outboxTransfer;
    this.outbox = [];
    this.outboxTransfer = [];
    this.port.postMessage(packet, transfer);
  }

  close(): void {
    this.port.close();
  }
}

/** The receiving end of a channel: queues what arrives, delivers it when the loop asks. */
export class PortReader implements RemoteReader {
  private readonly queue: ChannelMessage[] = [];
  private head = 0;
  /** Credit earned by processed batches, returned at the end of the loop's turn. */
  private owed = 0;
  private readonly decoder: BatchDecoder;
  private readonly batch: Batch<unknown>;

  constructor(
    private readonly port: MessagePort,
    private readonly target: EdgeTarget & { isBlocked(channel: number): boolean },
    private readonly channel: number,
    batchSize: number,
    wake: () => void,
  ) {
    this.decoder = new BatchDecoder();
    this.batch = new Batch<unknown>(batchSize);
    port.on('message', (p: Packet) => {
      for (const m of p.m) this.queue.push(m);
      wake();
    });
    port.unref();
  }

  get pending(): boolean {
    if (this.head === this.queue.length) this.pull(1);
    return this.head < this.queue.length;
  }

  /** Takes up to `max` arrived messages now (a busy thread runs its message handlers only when it yields). */
  private pull(max: number): void {
    for (let i = 0; i < max; i++) {
      const p = receiveMessageOnPort(this.port);
      if (p === undefined) return;
      for (const m of (p.message as Packet).m) this.queue.push(m);
    }
  }

  deliver(max: number): number {
    this.pull(max);
    let n = 0;
    let credits = 0;
    const target = this.target;
    const channel = this.channel;
    while (n < max && this.head < this.queue.length) {
      // A channel blocked by barrier alignment keeps its messages here (and its credit unreturned).
      if (target.isBlocked(channel)) break;
      const m = this.queue[this.head]!;
      this.queue[this.head++] = undefined as never;
      n++;
      switch (m.t) {
        case 'b': {
          const b = this.batch;
          b.length = 0;
          this.decoder.decode(m.buf, b);
          target.pushBatch(b, channel);
          credits++;
          break;
        }
        case 'w':
          target.pushWatermark(m.w, channel);
          break;
        case 'i':
          target.pushIdle(m.idle, channel);
          break;
        case 'r':
          target.pushBarrier(m.barrier, channel);
          break;
        case 'e':
          target.pushEnd(channel);
          break;
      }
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.owed += credits;
    return n;
  }

  /** Returns the credit earned this turn (one message, however many batches were processed). */
  flush(): void {
    if (this.owed === 0) return;
    this.port.postMessage({ c: this.owed } satisfies Credit);
    this.owed = 0;
  }

  close(): void {
    this.port.close();
  }
}

/** The channels of one thread, from the channel ends handed to it. */
export function portChannels(writers: readonly ChannelEnd[], readers: readonly ChannelEnd[], batchSize: number, wake: () => void): ChannelFactory {
  const find = (list: readonly ChannelEnd[], edge: number, s: number, r: number): MessagePort => {
    const end = list.find((e) => e.edge === edge && e.sender === s && e.receiver === r);
    if (end === undefined) throw new Error(`no channel for edge ${edge} from instance ${s} to instance ${r}`);
    return end.port;
  };
  return {
    writer: (edge, s, r, unencodable) => new PortWriter(find(writers, edge, s, r), unencodable),
    reader: (edge, s, r, target, channel) => new PortReader(find(readers, edge, s, r), target, channel, batchSize, wake),
  };
}
