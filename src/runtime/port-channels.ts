import type { MessagePort } from 'node:worker_threads';
import type { Barrier } from './barrier.ts';
import { Batch } from './batch.ts';
import { type BatchDecoder, type BatchEncoder, createChannelCodec } from './batch-codec.ts';
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
export const CREDITS = 4;

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

/** The sending end of a channel. */
export class PortWriter implements RemoteWriter {
  private credits = CREDITS;
  private readonly queue: Array<{ message: ChannelMessage; transfer: ArrayBuffer[] }> = [];
  private readonly encoder: BatchEncoder;
  private waiters: Array<() => void> = [];
  /** Records sent (for metrics). */
  sent = 0;

  constructor(private readonly port: MessagePort) {
    this.encoder = createChannelCodec().encoder;
    port.on('message', (m: Credit) => {
      this.credits += m.c;
      this.drain();
    });
    port.unref();
  }

  get blocked(): boolean {
    return this.queue.length > 0 || this.credits <= 0;
  }

  unblocked(): Promise<void> {
    if (!this.blocked) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  pushBatch(batch: Batch<unknown>): void {
    if (batch.length === 0) return;
    const buf = this.encoder.encode(batch.values, batch.times, 0, batch.length);
    this.sent += batch.length;
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
      this.port.postMessage(head.message, head.transfer);
    }
    if (!this.blocked && this.waiters.length > 0) {
      const w = this.waiters;
      this.waiters = [];
      for (const r of w) r();
    }
  }

  close(): void {
    this.port.close();
  }
}

/** The receiving end of a channel: queues what arrives, delivers it when the loop asks. */
export class PortReader implements RemoteReader {
  private readonly queue: ChannelMessage[] = [];
  private head = 0;
  private readonly decoder: BatchDecoder;
  private readonly batch: Batch<unknown>;

  constructor(
    private readonly port: MessagePort,
    private readonly target: EdgeTarget & { isBlocked(channel: number): boolean },
    private readonly channel: number,
    batchSize: number,
    wake: () => void,
  ) {
    this.decoder = createChannelCodec().decoder;
    this.batch = new Batch<unknown>(batchSize);
    port.on('message', (m: ChannelMessage) => {
      this.queue.push(m);
      wake();
    });
    port.unref();
  }

  get pending(): boolean {
    return this.head < this.queue.length;
  }

  deliver(max: number): number {
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
    if (credits > 0) this.port.postMessage({ c: credits } satisfies Credit);
    return n;
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
    writer: (edge, s, r) => new PortWriter(find(writers, edge, s, r)),
    reader: (edge, s, r, target, channel) => new PortReader(find(readers, edge, s, r), target, channel, batchSize, wake),
  };
}
