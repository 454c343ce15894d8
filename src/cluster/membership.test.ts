/**
 * Group membership (KIP-848) against the real broker of `scripts/services.sh` (SPATE_KAFKA_BROKERS):
 * members divide a topic's partitions, a join moves only some of them, a revocation is released
 * before the new owner gets the partition, and a member that stops heartbeating loses its
 * partitions to the others after the session timeout.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { PlatformaticKafkaClient } from '../connectors/kafka/client.ts';
import { createTopic, deleteTopics, KAFKA_BROKERS, uniqueTopic } from '../../test/support/kafka.ts';
import { GroupMembership, type MembershipListener } from './membership.ts';

const topics: string[] = [];
const clients: PlatformaticKafkaClient[] = [];
afterAll(async () => {
  for (const c of clients) await c.close();
  await deleteTopics(topics);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A member that records what it runs, and when it got and gave up each partition. */
class Member implements MembershipListener {
  readonly running = new Set<number>();
  readonly events: Array<{ at: number; what: 'assigned' | 'revoked' | 'lost'; partition: number }> = [];
  readonly membership: GroupMembership;
  releaseDelayMs = 0;

  constructor(group: string, topic: string) {
    const client = new PlatformaticKafkaClient({ brokers: KAFKA_BROKERS });
    clients.push(client);
    this.membership = new GroupMembership(client, { groupId: group, topic, sessionTimeoutMs: 6_000 }, this);
  }

  assigned(partitions: readonly number[]): void {
    for (const p of partitions) {
      this.running.add(p);
      this.events.push({ at: Date.now(), what: 'assigned', partition: p });
    }
  }

  async revoked(partitions: readonly number[]): Promise<void> {
    await sleep(this.releaseDelayMs);
    for (const p of partitions) {
      this.running.delete(p);
      this.events.push({ at: Date.now(), what: 'revoked', partition: p });
    }
  }

  async lost(partitions: readonly number[]): Promise<void> {
    for (const p of partitions) {
      this.running.delete(p);
      this.events.push({ at: Date.now(), what: 'lost', partition: p });
    }
  }
}

/** Every partition is run by exactly one member. */
function exactlyOnce(members: readonly Member[], partitions: number): boolean {
  const all = members.flatMap((m) => [...m.running]).sort((a, b) => a - b);
  return JSON.stringify(all) === JSON.stringify(Array.from({ length: partitions }, (_, i) => i));
}

describe('GroupMembership', () => {
  it('divides the partitions; a join moves some of them, each released before its new owner starts it; a leave hands them back', async () => {
    const topic = await createTopic(uniqueTopic('members'), 6);
    topics.push(topic);
    const group = `spate-test-group-${topic}`;
    const a = new Member(group, topic);
    a.membership.start();
    await until(() => a.running.size === 6, 'the first member to own every partition');
    const b = new Member(group, topic);
    a.releaseDelayMs = 2_500; // a final checkpoint, say, longer than a heartbeat interval: the group waits for it
    b.membership.start();
    await until(() => b.running.size > 0 && exactlyOnce([a, b], 6), 'the partitions to be divided');
    await sleep(1_500); // settled
    expect(exactlyOnce([a, b], 6)).toBe(true);
    expect(a.running.size).toBe(3);
    // Cooperative: a kept the partitions it still owns, and gave up each moved one before b got it.
    expect(a.events.filter((e) => e.what === 'assigned')).toHaveLength(6);
    for (const moved of b.running) {
      const released = a.events.find((e) => e.what === 'revoked' && e.partition === moved)!;
      const taken = b.events.find((e) => e.what === 'assigned' && e.partition === moved)!;
      expect(released.at).toBeLessThanOrEqual(taken.at);
    }
    await b.membership.leave();
    expect(b.running.size).toBe(0);
    await until(() => a.running.size === 6, 'the partitions to come back');
    await a.membership.leave();
  }, 60_000);

  it('a member that stops heartbeating loses its partitions to the others after the session timeout', async () => {
    const topic = await createTopic(uniqueTopic('members-dead'), 4);
    topics.push(topic);
    const group = `spate-test-group-${topic}`;
    const a = new Member(group, topic);
    const b = new Member(group, topic);
    a.membership.start();
    b.membership.start();
    await until(() => a.running.size === 2 && b.running.size === 2, 'the partitions to be divided');
    const killed = Date.now();
    b.membership.abandon(); // as kill -9 would: no leave
    await until(() => a.running.size === 4, 'the survivor to take over', 20_000);
    const failover = Date.now() - killed;
    expect(failover).toBeLessThan(10_000);
    expect(failover).toBeGreaterThan(2_000); // the session timeout, not a leave
    await a.membership.leave();
  }, 60_000);
});
