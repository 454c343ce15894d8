/**
 * A cluster task's checkpoint transactions against the real broker (`scripts/services.sh up
 * kafka`; address from SPATE_KAFKA_BROKERS): what two Kafka sinks write to one topic, the state
 * objects of a KafkaCheckpointStorage and a Kafka source's offsets are one Kafka transaction per
 * checkpoint — invisible until the checkpoint's manifest is written, visible together after —
 * and a new owner's open aborts what a checkpoint that never completed had written, and fences
 * the old owner. Every test uses topics of its own.
 */
import { Admin } from '@platformatic/kafka';
import { afterAll, describe, expect, it } from 'vitest';
import { CheckpointCoordinator } from '../checkpoint/coordinator.ts';
import { checkpointDir, MANIFEST } from '../checkpoint/manifest.ts';
import { CheckpointTransactions } from '../connectors/kafka/checkpoint-transactions.ts';
import { KafkaSink } from '../connectors/kafka/sink.ts';
import { KafkaSource } from '../connectors/kafka/source.ts';
import { systemClock } from '../time/clock.ts';
import { sinkContext } from '../../test/support/postgres.ts';
import { createTopic, deleteTopics, KAFKA_BROKERS, readCommitted, uniqueTopic } from '../../test/support/kafka.ts';
import { ensureCheckpointTopic, FencedError, KafkaCheckpointStorage } from './kafka-storage.ts';

const connection = { brokers: KAFKA_BROKERS };
const topics: string[] = [];
const closing: Array<{ close(): Promise<void> }> = [];

afterAll(async () => {
  for (const c of closing) await c.close().catch(() => undefined);
  await deleteTopics(topics);
});

const batch = (from: number, n: number) => {
  const values = Array.from({ length: n }, (_, k) => ({ i: from + k }));
  return { values, times: new Float64Array(n).fill(5), length: n, capacity: n } as never;
};

/** The offsets committed to `group` for `topic`, by partition. */
async function groupOffsets(group: string, topic: string): Promise<Record<number, number>> {
  const admin = new Admin({ clientId: 'spate-test', bootstrapBrokers: KAFKA_BROKERS });
  try {
    const [g] = await admin.listConsumerGroupOffsets({ groups: [group] });
    const out: Record<number, number> = {};
    for (const t of g?.topics ?? []) if (t.name === topic) for (const p of t.partitions) if (Number(p.committedOffset) >= 0) out[p.partitionIndex] = Number(p.committedOffset);
    return out;
  } finally {
    await admin.close();
  }
}

/** A task: its checkpoint transactions (opened: earlier owners fenced), its storage on them, two sinks of one topic and a source reader, all joined. */
async function task(prefix: string, checkpoints: string, out: string, input: string, group: string) {
  const transactions = new CheckpointTransactions({ connection, transactionalIdPrefix: prefix, log: () => undefined });
  closing.push(transactions);
  await transactions.open();
  const storage = await KafkaCheckpointStorage.open({ connection, topic: checkpoints, partition: 0, transactions, log: () => undefined });
  closing.push(storage);
  // As a task does: the job's first checkpoint is one more than the newest in its storage.
  transactions.firstCheckpointId = await CheckpointCoordinator.firstId(storage, undefined);
  const sinks = ['a', 'b'].map((step) => {
    const sink = new KafkaSink<{ i: number }>({ topic: out, connection, key: (r) => String(r.i) });
    sink.joinCheckpointTransactions(transactions);
    closing.push(sink);
    return { sink, ctx: sinkContext({ stepId: step }) };
  });
  for (const s of sinks) await s.sink.open(s.ctx);
  const source = new KafkaSource<string>({ topic: input, connection, format: 'text', groupId: group });
  source.joinCheckpointTransactions(transactions);
  const reader = source.createReader({ stepId: 'in', clock: systemClock, instance: 0, parallelism: 1, restoredCheckpoint: undefined, log: () => undefined });
  closing.push(reader as { close(): Promise<void> });
  return { transactions, storage, sinks: sinks.map((s) => s.sink), reader };
}

describe('checkpoint transactions', () => {
  it('hold two sinks’ records, the state and the source offsets of a checkpoint: nothing visible before its manifest, all of it after; a new owner aborts an incomplete checkpoint and fences the old one', { timeout: 60_000 }, async () => {
    const out = await createTopic(uniqueTopic('ctx-out'), 3);
    const input = await createTopic(uniqueTopic('ctx-in'), 2);
    const checkpoints = uniqueTopic('ctx-chk');
    topics.push(out, input, checkpoints);
    await ensureCheckpointTopic(connection, checkpoints, 1);
    const group = `${input}-group`;
    const prefix = `${out}-task-0`; // contains the output topic's name: readCommitted({ settled }) waits for its markers

    const first = await task(prefix, checkpoints, out, input, group);
    expect(first.transactions.firstCheckpointId).toBe(1);
    first.reader.open([
      { id: `${input}:0`, position: { offset: 7 } },
      { id: `${input}:1`, position: { offset: 3 } },
    ]);
    const [a, b] = first.sinks as [KafkaSink<{ i: number }>, KafkaSink<{ i: number }>];

    // Checkpoint 1: both sinks write the same partitions of one topic, interleaved.
    for (let k = 0; k < 10; k++) {
      a.write(batch(k * 100, 30));
      b.write(batch(k * 100 + 50, 30));
    }
    first.reader.snapshot(1);
    const [ca, cb] = await Promise.all([a.preCommit(1), b.preCommit(1)]);
    expect(ca?.transactionalId).toBe(cb?.transactionalId); // one transaction
    // Records after the barrier belong to checkpoint 2.
    a.write(batch(5000, 4));
    await first.storage.write(`${checkpointDir(1, 'checkpoint')}state`, Buffer.from('state of 1'));
    await new Promise((r) => setTimeout(r, 300));
    expect(await readCommitted(out), 'output before the manifest').toEqual([]);
    expect(await groupOffsets(group, input), 'offsets before the manifest').toEqual({});

    await first.storage.write(`${checkpointDir(1, 'checkpoint')}${MANIFEST}`, Buffer.from('manifest of 1'));
    const visible = (await readCommitted(out, { settled: true })).map((r) => JSON.parse(r.value).i as number).sort((x, y) => x - y);
    const expected = Array.from({ length: 10 }, (_, k) => [...Array.from({ length: 30 }, (_, j) => k * 100 + j), ...Array.from({ length: 30 }, (_, j) => k * 100 + 50 + j)]).flat().sort((x, y) => x - y);
    expect(visible, 'checkpoint 1: every record of both sinks once').toEqual(expected);
    expect(await groupOffsets(group, input)).toEqual({ 0: 7, 1: 3 });
    await Promise.all([a.commit([{ checkpointId: 1, instance: 0, data: ca! }]), b.commit([{ checkpointId: 1, instance: 0, data: cb! }])]);

    // Checkpoint 2 is written but its manifest never is: the process dies.
    first.reader.snapshot(2);
    expect(await a.preCommit(2)).toBeDefined();
    expect(await b.preCommit(2)).toBeUndefined(); // nothing written since checkpoint 1
    await first.storage.write(`${checkpointDir(2, 'checkpoint')}state`, Buffer.from('state of 2'));

    // A new owner takes the task over: checkpoint 2 is gone, with its records and offsets.
    const second = await task(prefix, checkpoints, out, input, group);
    expect(await second.storage.list('')).toEqual([checkpointDir(1, 'checkpoint')]);
    expect(Buffer.from(await second.storage.read(`${checkpointDir(1, 'checkpoint')}state`)).toString()).toBe('state of 1');
    expect((await readCommitted(out, { waitStable: true })).length, 'the incomplete checkpoint’s records were aborted').toBe(expected.length);
    expect(await groupOffsets(group, input)).toEqual({ 0: 7, 1: 3 });

    // The old owner is fenced: it can neither complete checkpoint 2 nor write more.
    await expect(first.storage.write(`${checkpointDir(2, 'checkpoint')}${MANIFEST}`, Buffer.from('zombie'))).rejects.toBeInstanceOf(FencedError);
    b.write(batch(9000, 5));
    await expect(Promise.resolve().then(() => b.preCommit(3))).rejects.toThrow(/fenced|taken over/i);
    expect((await readCommitted(out, { waitStable: true })).length).toBe(expected.length);

    // The new owner goes on from checkpoint 2 (its first id: one more than the newest it found).
    expect(second.transactions.firstCheckpointId).toBe(2);
    second.reader.open([
      { id: `${input}:0`, position: { offset: 9 } },
      { id: `${input}:1`, position: { offset: 3 } },
    ]);
    const [c] = second.sinks as [KafkaSink<{ i: number }>];
    c.write(batch(7000, 3));
    second.reader.snapshot(2);
    await c.preCommit(2);
    await second.storage.write(`${checkpointDir(2, 'checkpoint')}state`, Buffer.from('state of 2, again'));
    await second.storage.write(`${checkpointDir(2, 'checkpoint')}${MANIFEST}`, Buffer.from('manifest of 2'));
    const after = (await readCommitted(out, { settled: true })).map((r) => JSON.parse(r.value).i as number);
    expect(after.length).toBe(expected.length + 3);
    expect(after.filter((i) => i >= 7000).sort()).toEqual([7000, 7001, 7002]);
    expect(await groupOffsets(group, input)).toEqual({ 0: 9, 1: 3 });
  });

  it('refuses to commit a checkpoint while an earlier one’s transaction is open: its records would be lost', async () => {
    const out = await createTopic(uniqueTopic('ctx-order'), 1);
    topics.push(out);
    const transactions = new CheckpointTransactions({ connection, transactionalIdPrefix: `${out}-task`, log: () => undefined });
    closing.push(transactions);
    await transactions.open();
    const sink = new KafkaSink<{ i: number }>({ topic: out, connection });
    sink.joinCheckpointTransactions(transactions);
    closing.push(sink);
    await sink.open(sinkContext({ stepId: 'out' }));
    sink.write(batch(0, 3));
    await sink.preCommit(1);
    await transactions.transaction(2);
    await expect(transactions.commit(2)).rejects.toThrow(/checkpoint 1 never completed/);
  });
});
