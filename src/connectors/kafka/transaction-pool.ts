import { type KafkaClient, KafkaError, KafkaErrors, type ProducerIdentity } from './client.ts';
import type { Retrier } from './retry.ts';

/** A transactional id of a pool, taken for one transaction. */
export interface Lease {
  readonly transactionalId: string;
  /** The producer id and epoch the transaction is written under (fresh from InitProducerId: sequences start at 0). */
  readonly producer: ProducerIdentity;
}

/** A transactional id of the pool and its state. */
interface Slot {
  readonly id: string;
  /** A fresh producer id and epoch, unused (after InitProducerId); null: needs one. */
  fresh: ProducerIdentity | null;
  /** The identity it had last: the next InitProducerId names it (KIP-360). */
  last: ProducerIdentity | null;
  /** Leased: a transaction on it is open (written or waiting for its commit). */
  busy: boolean;
  /** When it was last given back (the least recently used free id is leased next). */
  releasedAt: number;
  /** InitProducerId in flight for it. */
  preparing: Promise<void> | null;
}

/**
 * A pool of transactional ids, so that the transaction of one checkpoint can wait for its commit
 * while the next one takes records: each transaction leases an id with a fresh producer epoch,
 * and the id is leased again only after its transaction ended and InitProducerId gave it a new
 * epoch (asked for in the background as soon as it is given back). Every InitProducerId after the
 * first names the identity the id had last (KIP-360): if another owner has taken the id since,
 * Kafka answers PRODUCER_FENCED instead of fencing that owner — so a zombie learns it was fenced
 * rather than taking the id back.
 */
export class TransactionPool {
  private readonly slots: Slot[];
  private waiters: Array<() => void> = [];
  private closed = false;

  constructor(
    ids: readonly string[],
    private readonly client: KafkaClient,
    private readonly retrier: Retrier,
    private readonly timeoutMs: number,
  ) {
    this.slots = ids.map((id) => ({ id, fresh: null, last: null, busy: false, releasedAt: 0, preparing: null }));
  }

  /** The pool's transactional ids. */
  get ids(): string[] {
    return this.slots.map((s) => s.id);
  }

  /**
   * Takes `id` over (InitProducerId without a previous identity): Kafka aborts what an earlier
   * owner left open on it and fences that owner. An id of the pool keeps the fresh epoch for its
   * next lease; any other id (a former instance's) is only fenced.
   */
  async takeOver(id: string): Promise<void> {
    const producer = await this.retrier.run(`taking over transactional id ${id}`, () => this.client.initProducer(id, this.timeoutMs));
    const slot = this.slots.find((s) => s.id === id);
    if (slot !== undefined) slot.fresh = slot.last = producer;
  }

  /**
   * Leases the least recently used free id with a fresh epoch (waits while every id is leased).
   * Rejects with the Kafka error (PRODUCER_FENCED or INVALID_PRODUCER_EPOCH) if another owner took
   * the id over since this pool last had it.
   */
  async lease(): Promise<Lease> {
    let slot: Slot | undefined;
    for (;;) {
      slot = undefined;
      for (const s of this.slots) if (!s.busy && (slot === undefined || s.releasedAt < slot.releasedAt)) slot = s;
      if (slot !== undefined) break;
      if (this.closed) throw new Error('the transaction pool was closed');
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const chosen = slot;
    chosen.busy = true;
    try {
      await chosen.preparing;
      const producer = chosen.fresh ?? (await this.retrier.run(`beginning a transaction on ${chosen.id}`, () => this.client.initProducer(chosen.id, this.timeoutMs, chosen.last ?? undefined)));
      chosen.fresh = null;
      chosen.last = producer;
      return { transactionalId: chosen.id, producer };
    } catch (error) {
      this.giveBack(chosen);
      throw error;
    }
  }

  /** Gives a lease back once its transaction ended; the id's next epoch is asked for now, in the background. */
  release(lease: Lease): void {
    const slot = this.slots.find((s) => s.id === lease.transactionalId);
    if (slot === undefined) return;
    slot.fresh = null;
    if (!this.closed) {
      slot.preparing = this.client
        .initProducer(slot.id, this.timeoutMs, lease.producer)
        .then((producer) => {
          slot.fresh = slot.last = producer; // `lease` takes it once this settled
        })
        .catch(() => undefined) // asked again, with retries, when the id is leased
        .finally(() => (slot.preparing = null));
    }
    this.giveBack(slot);
  }

  /** Stops: waiting leases reject; background InitProducerIds are waited for. */
  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    await Promise.all(this.slots.map((s) => s.preparing));
  }

  private giveBack(slot: Slot): void {
    slot.busy = false;
    slot.releasedAt = performance.now();
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** Whether Kafka refused a producer because another owner took its transactional id over. */
export function isFenced(error: unknown): boolean {
  const code = (error as KafkaError | null)?.code;
  return error instanceof KafkaError && (code === KafkaErrors.INVALID_PRODUCER_EPOCH || code === KafkaErrors.PRODUCER_FENCED);
}
