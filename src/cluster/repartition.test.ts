/**
 * The repartition sink and source against the real broker (`scripts/services.sh up kafka`;
 * address from SPATE_KAFKA_BROKERS): routing by key-group ranges, records and time across the
 * topic, restore of the producers' watermarks, malformed values. Every test uses topics of its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Unpackr } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { KafkaSource } from '../connectors/kafka/source.ts';
import { Batch } from '../runtime/batch.ts';
import type { Job } from '../runtime/job.ts';
import type { SinkContext } from '../runtime/sink.ts';
import { CollectSink, GeneratorSource, Pipeline, count, tumbling, type WindowResult } from '../index.ts';
import { keyGroupOf, keyGroupRange } from '../state/key-group.ts';
import { systemClock } from '../time/clock.ts';
import { MAX_WATERMARK } from '../time/watermark.ts';
import { deleteTopics, KAFKA_BROKERS, produce, settleTransactions, uniqueTopic } from '../../test/support/kafka.ts';
import { ensureRepartitionTopic, partitionOfKeyGroup, RepartitionSink, RepartitionSource } from './repartition.ts';

const connection = { brokers: KAFKA_BROKERS };
const topics: string[] = [];
const dirs: string[] = [];

async function topic(tag: string, partitions: number): Promise<string> {
  const name = uniqueTopic(`rp-${tag}`);
  topics.push(name);
  await ensureRepartitionTopic(connection, name, partitions);
  return name;
}

function tempDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `spate-repartition-${tag}-`));
  dirs.push(d);
  return d;
}

afterAll(async () => {
  await deleteTopics(topics);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** An input record: a user and its number in its input. */
interface Ev {
  readonly user: string;
  readonly i: number;
}

type Count = WindowResult<string, number>;
const line = (r: Count): string => `${r.key}|${r.start}|${r.value}`;

/** Waits until `cond()` holds (polling), failing with `what` after `timeoutMs`. */
async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The source step's watermark and idleness in a running job. */
function sourceTime(job: Job, step = 'from-topic'): { watermark: number; idle: boolean; records: number } {
  const s = job.status().steps.find((m) => m.step === step)!;
  return { watermark: s.watermark, idle: s.idle, records: s.recordsOut };
}

/** A repartition sink driven by hand, as the runtime would: writes, watermarks, pre-commit and commit. */
class HandProducer {
  private checkpoint = 0;
  readonly dead: unknown[] = [];
  private constructor(readonly sink: RepartitionSink<Ev>) {}

  static async open(t: string, producer: number, producers: number, partitions: number): Promise<HandProducer> {
    const sink = new RepartitionSink<Ev>({ connection, topic: t, partitions, key: (e) => e.user, producer, producers });
    const hand = new HandProducer(sink);
    const ctx: SinkContext = { stepId: 'to-topic', instance: 0, parallelism: 1, clock: systemClock, restoredCheckpoint: undefined, deadLetter: (r) => hand.dead.push(r), log: () => undefined };
    await sink.open(ctx);
    await sink.abort();
    return hand;
  }

  write(records: ReadonlyArray<readonly [Ev, number]>): void {
    const b = new Batch<Ev>(Math.max(1, records.length));
    for (const [e, t] of records) b.push(e, t);
    this.sink.write(b);
  }

  /** Pre-commits and commits: what was written becomes visible to readers. */
  async commit(): Promise<void> {
    const id = ++this.checkpoint;
    const c = await this.sink.preCommit();
    if (c !== undefined) await this.sink.commit([{ checkpointId: id, instance: 0, data: c }]);
  }

  close(): Promise<void> {
    return this.sink.close();
  }
}

/** A consumer task: the source over `partitions`, keyBy user, tumbling count windows of `size` ms. */
function consumer(t: string, partitions: number[], producers: number, size: number, options: { bounded?: boolean } = {}): { p: Pipeline; out: CollectSink<Count> } {
  const p = new Pipeline();
  const out = p
    .source(new RepartitionSource<Ev>({ connection, topic: t, partitions, producers, bounded: options.bounded ?? false, kafka: { maxWaitMs: 50 } }), { id: 'from-topic' })
    .keyBy((e) => e.user)
    .window(tumbling(size))
    .aggregate(count(), { id: 'window' })
    .collect({ id: 'out' });
  return { p, out: out as CollectSink<Count> };
}

/** Counts per (user, window) computed directly: the expectation. */
function expectedCounts(records: ReadonlyArray<readonly [Ev, number]>, size: number): string[] {
  const m = new Map<string, number>();
  for (const [e, t] of records) {
    const k = `${e.user}|${Math.floor(t / size) * size}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return [...m].map(([k, n]) => `${k}|${n}`).sort();
}

describe('partitionOfKeyGroup', () => {
  it('gives each partition one contiguous, balanced range of key groups — the ranges keyed state is cut by — and everything to 0 with one partition', () => {
    for (const maxKeyGroups of [1, 7, 128, 1000]) {
      for (let partitions = 1; partitions <= Math.min(maxKeyGroups, 40); partitions++) {
        const owner = Array.from({ length: maxKeyGroups }, (_, kg) => partitionOfKeyGroup(kg, partitions, maxKeyGroups));
        const sizes = new Array<number>(partitions).fill(0);
        for (let kg = 0; kg < maxKeyGroups; kg++) {
          sizes[owner[kg]!]!++;
          // Contiguous and in order: the owner never goes back, and moves by at most one.
          if (kg > 0) expect(owner[kg]! - owner[kg - 1]!).toBeGreaterThanOrEqual(0);
          if (kg > 0) expect(owner[kg]! - owner[kg - 1]!).toBeLessThanOrEqual(1);
        }
        // Every partition gets some (covering all of them), as evenly as possible.
        expect(Math.min(...sizes)).toBeGreaterThanOrEqual(1);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        expect(owner[0]).toBe(0);
        expect(owner[maxKeyGroups - 1]).toBe(partitions - 1);
        // The key groups instance p of a keyed step at that parallelism holds state for.
        for (let p = 0; p < partitions; p++) {
          const { start, end } = keyGroupRange(p, partitions, maxKeyGroups);
          expect(owner.indexOf(p)).toBe(start);
          expect(owner.lastIndexOf(p) + 1).toBe(end);
        }
      }
    }
    expect(Array.from({ length: 128 }, (_, kg) => partitionOfKeyGroup(kg, 1))).toEqual(new Array(128).fill(0));
    expect(() => partitionOfKeyGroup(128, 2, 128)).toThrow(/keyGroup must be/);
    expect(() => partitionOfKeyGroup(0, 0, 128)).toThrow(/partitions must be/);
    expect(() => partitionOfKeyGroup(0, 129, 128)).toThrow(/partitions must be/);
  });
});

describe('ensureRepartitionTopic', () => {
  it('creates a missing topic once when called concurrently, and refuses an existing topic with another partition count', async () => {
    const name = uniqueTopic('rp-ensure');
    topics.push(name);
    const outcomes = await Promise.all([1, 2, 3].map(() => ensureRepartitionTopic(connection, name, 3)));
    expect(outcomes.filter((o) => o === 'created')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'exists')).toHaveLength(2);
    expect(await ensureRepartitionTopic(connection, name, 3)).toBe('exists');
    await expect(ensureRepartitionTopic(connection, name, 2)).rejects.toThrow(/exists with 3 partition\(s\); this exchange needs 2/);
  });
});

describe('RepartitionSink', () => {
  /** What each partition holds, in order: records as `r<i>@<time>`, marks as `m<producer>:<watermark>[:idle]`. */
  async function contents(t: string): Promise<Map<number, string[]>> {
    await settleTransactions(t);
    const p = new Pipeline();
    const raw = p
      .source(new KafkaSource<{ partition: number; value: Buffer }, Uint8Array>({ connection, topic: t, format: 'bytes', bounded: true, map: (m) => ({ partition: m.partition, value: Buffer.from(m.value) }) }), { id: 'raw' })
      .collect();
    await p.run();
    const u = new Unpackr({ moreTypes: true, mapsAsObjects: false });
    const out = new Map<number, string[]>();
    for (const { partition, value } of raw.values) {
      if (!out.has(partition)) out.set(partition, []);
      expect(value.readUInt32LE(4), 'the partition a value names').toBe(partition);
      if (value[3] === 2) {
        // A batch: n times, then the n values.
        const n = value.readUInt32LE(8);
        const records = u.unpack(value.subarray(12 + 8 * n)) as Ev[];
        records.forEach((r, k) => out.get(partition)!.push(`r${r.i}@${value.readDoubleLE(12 + 8 * k)}`));
      } else out.get(partition)!.push(`m${value.readUInt32LE(16)}:${value.readDoubleLE(8)}${value[24] === 1 ? ':idle' : ''}`);
    }
    return out;
  }

  it('a write larger than a Kafka record is split into several batches, in order, none lost', async () => {
    const t = await topic('big', 1);
    const sink = new RepartitionSink<Ev & { pad: string }>({ connection, topic: t, partitions: 1, key: (e) => e.user, producer: 0, producers: 1 });
    await sink.open({ stepId: 'to-topic', instance: 0, parallelism: 1, clock: systemClock, restoredCheckpoint: undefined, deadLetter: () => undefined });
    try {
      // 3 000 records of ~1 KB: 3 MB in one write, above the 1 MB a Kafka record may hold.
      const b = new Batch<Ev & { pad: string }>(3_000);
      for (let i = 0; i < 3_000; i++) b.push({ user: 'u', i, pad: 'x'.repeat(1_000) }, i);
      sink.write(b);
      const committable = await sink.preCommit();
      await sink.commit([{ checkpointId: 1, instance: 0, data: committable! }]);
    } finally {
      await sink.close();
    }
    const records = (await contents(t)).get(0)!.filter((r) => r.startsWith('r'));
    expect(records).toEqual(Array.from({ length: 3_000 }, (_, i) => `r${i}@${i}`));
  }, 30_000);

  it('without a key sends every record to partition 0, marks to every partition; throttles marks, writing the last one within the interval; dead-letters what it cannot encode', async () => {
    const t = await topic('global', 2);
    const sink = new RepartitionSink<Ev>({ connection, topic: t, partitions: 2, producer: 1, producers: 2, watermarkIntervalMs: 200 });
    const dead: Array<{ record: unknown; error: string }> = [];
    await sink.open({ stepId: 'to-topic', instance: 0, parallelism: 1, clock: systemClock, restoredCheckpoint: undefined, deadLetter: (record, error) => dead.push({ record, error: String(error) }) });
    const write = (records: Array<[Ev, number]>): void => {
      const b = new Batch<Ev>(records.length);
      for (const [e, time] of records) b.push(e, time);
      sink.write(b);
    };
    try {
      write([
        [{ user: 'a', i: 0 }, 1.5], // a fractional time crosses exactly
        [{ user: 'b', i: 1, f: () => 1 } as unknown as Ev, 2],
        [{ user: 'c', i: 2 }, 3],
      ]);
      sink.watermark(3); // the first one: at once
      for (let w = 4; w < 1_000; w++) sink.watermark(w); // within the interval: only the last one, later
      await new Promise((r) => setTimeout(r, 400));
      write([[{ user: 'd', i: 3 }, 1_000]]); // after the delayed mark
      sink.idle(true);
      const c1 = await sink.preCommit();
      await sink.commit([{ checkpointId: 1, instance: 0, data: c1! }]);
      // Active again: said before the records that follow (readers must count this producer for them).
      sink.idle(false);
      write([[{ user: 'e', i: 4 }, 1_001]]);
      const c2 = await sink.preCommit();
      await sink.commit([{ checkpointId: 2, instance: 0, data: c2! }]);
    } finally {
      await sink.close();
    }
    expect(dead).toHaveLength(1);
    expect(dead[0]!.record).toMatchObject({ user: 'b', i: 1 });
    expect(dead[0]!.error).toMatch(/function/);
    const parts = await contents(t);
    expect(parts.get(0)).toEqual(['r0@1.5', 'r2@3', 'm1:3', 'm1:999', 'r3@1000', 'm1:999:idle', 'm1:999', 'r4@1001']);
    expect(parts.get(1)).toEqual(['m1:3', 'm1:999', 'm1:999:idle', 'm1:999']);
  });
});

describe('RepartitionSink → RepartitionSource', () => {
  it('two producer jobs and two consumer jobs give the union a single pipeline computes: nothing lost, duplicated or dropped late', async () => {
    const t = await topic('e2e', 2);
    const n = 3_000;
    const size = 1_000;
    // Input k: event time ≈ 10 ms per record with up to 300 ms of disorder; producer 1 runs at half the speed of producer 0, so its time lags.
    const jitter = (i: number, k: number): number => ((i * 2_654_435_761 + k * 97) >>> 0) % 300;
    const timeOf = (i: number, k: number): number => i * 10 + jitter(i, k);
    const userOf = (i: number, k: number): string => `u${((i * 40_503 + k * 7) >>> 0) % 37}`;
    const inputs = [0, 1].map((k) => Array.from({ length: n }, (_, i) => [{ user: userOf(i, k), i }, timeOf(i, k)] as const));

    const producer = (k: number): Pipeline => {
      const p = new Pipeline();
      p.source(new GeneratorSource<Ev>({ count: n, make: (i) => ({ user: userOf(i, k), i }), time: (i) => timeOf(i, k), ratePerSecond: k === 0 ? 6_000 : 3_000, splits: 1 }), { id: 'input', outOfOrderness: 300 })
        .sink(new RepartitionSink<Ev>({ connection, topic: t, partitions: 2, key: (e) => e.user, producer: k, producers: 2 }), { id: 'to-topic' });
      return p;
    };
    const consumers = [0, 1].map((c) => consumer(t, [c], 2, size, { bounded: true }));
    const running = consumers.map((c) => c.p.run({ checkpointInterval: 100 }));
    const produced = await Promise.all([0, 1].map((k) => producer(k).run({ checkpointInterval: 100 })));
    for (const r of produced) expect(r.checkpoints.length).toBeGreaterThan(2); // time crossed in many transactions, not one
    const results = await Promise.all(running);

    // The oracle: one pipeline over both inputs.
    const single = new Pipeline();
    const oracle = single
      .fromArray([...inputs[0]!, ...inputs[1]!], { timestamp: ([, time]) => time, outOfOrderness: 100_000 })
      .map(([e]) => e)
      .keyBy((e) => e.user)
      .window(tumbling(size))
      .aggregate(count())
      .collect();
    await single.run();
    const want = (oracle.values as Count[]).map(line).sort();
    expect(want).toEqual(expectedCounts([...inputs[0]!, ...inputs[1]!], size));

    const got = consumers.flatMap((c) => c.out.values.map(line)).sort();
    expect(got).toEqual(want);
    for (const r of results) {
      const w = r.metrics.find((m) => m.step === 'window')!;
      expect(w.lateRecords).toBe(0);
      expect(r.deadLetters).toBe(0);
    }
    // Each consumer got exactly the keys of its partition's key groups.
    for (const [c, { out }] of consumers.entries()) {
      expect(out.values.length).toBeGreaterThan(0);
      for (const r of out.values) expect(partitionOfKeyGroup(keyGroupOf(r.key, 128), 2)).toBe(c);
    }
  }, 30_000);

  it('a consumer waits for every producer (one never heard from holds it back); a producer going idle no longer does', async () => {
    const t = await topic('wm', 1);
    const a = await HandProducer.open(t, 0, 2, 1);
    const b = await HandProducer.open(t, 1, 2, 1);
    const { p, out } = consumer(t, [0], 2, 10);
    const run = p.start();
    const ev = (user: string, i: number) => ({ user, i });
    try {
      // A is at 25; B has not written yet: nothing fires, the watermark stays at −∞.
      a.write([
        [ev('x', 0), 1],
        [ev('x', 1), 12],
        [ev('x', 2), 22],
      ]);
      a.sink.watermark(25);
      await a.commit();
      await until('A’s records', () => sourceTime(run.job).records === 3);
      await new Promise((r) => setTimeout(r, 400));
      expect(sourceTime(run.job).watermark).toBe(-Infinity);
      expect(out.values).toEqual([]);

      // B at 5: the watermark is the minimum, 5 — window [0, 10) does not fire yet.
      b.write([[ev('x', 3), 3]]);
      b.sink.watermark(5);
      await b.commit();
      await until('watermark 5', () => sourceTime(run.job).watermark === 5);
      expect(out.values).toEqual([]);

      // B passes the first window (its mark is written at pre-commit, whatever the throttle).
      b.sink.watermark(15);
      await b.commit();
      await until('watermark 15', () => sourceTime(run.job).watermark === 15);
      await until('window [0, 10)', () => out.values.length === 1);
      expect(out.values.map(line)).toEqual(['x|0|2']);

      // B goes idle: only A counts, at 25 — [10, 20) fires, [20, 30) does not.
      b.sink.idle(true);
      await b.commit();
      await until('watermark 25', () => sourceTime(run.job).watermark === 25);
      await until('window [10, 20)', () => out.values.length === 2);
      expect(out.values.map(line)).toEqual(['x|0|2', 'x|10|1']);
      expect(sourceTime(run.job).idle).toBe(false);

      // A idle too: every producer is idle, and so is the source.
      a.sink.idle(true);
      await a.commit();
      await until('the source idle', () => sourceTime(run.job).idle);
      expect(out.values).toHaveLength(2);

      // Both end: the final watermark fires the rest.
      a.sink.watermark(MAX_WATERMARK);
      b.sink.watermark(MAX_WATERMARK);
      await a.commit();
      await b.commit();
      await until('the final watermark', () => sourceTime(run.job).watermark === Infinity);
      await until('window [20, 30)', () => out.values.length === 3);
      expect(out.values.map(line)).toEqual(['x|0|2', 'x|10|1', 'x|20|1']);
    } finally {
      await run.stop();
      await a.close();
      await b.close();
    }
  }, 30_000);

  it('a restored consumer resumes with the producers’ watermarks of its checkpoint: the output equals an uninterrupted run’s', async () => {
    const t = await topic('restore', 2);
    const dir = tempDir('restore');
    const a = await HandProducer.open(t, 0, 2, 2);
    const b = await HandProducer.open(t, 1, 2, 2);
    const users = ['ann', 'bob', 'cat', 'dan', 'eve', 'fay'];
    const written: Array<readonly [Ev, number]> = [];
    const batch = (from: number, to: number, k: number): Array<readonly [Ev, number]> => {
      const out: Array<readonly [Ev, number]> = [];
      for (let time = from; time < to; time++) out.push([{ user: users[(time * 5 + k) % users.length]!, i: time }, time]);
      written.push(...out);
      return out;
    };
    try {
      // Before the checkpoint: A wrote up to 30 and is at 25; B up to 20, at 15.
      a.write(batch(0, 30, 0));
      a.sink.watermark(25);
      await a.commit();
      b.write(batch(0, 20, 1));
      b.sink.watermark(15);
      await b.commit();
      const first = consumer(t, [0, 1], 2, 10);
      const run1 = first.p.start({ checkpointDir: dir, checkpointInterval: 50 });
      try {
        await until('watermark 15', () => sourceTime(run1.job).watermark === 15);
        await until('a checkpoint after it', () => run1.job.checkpoints().filter((c) => c.status === 'completed').length >= 2);
      } finally {
        await run1.stop(); // a final checkpoint: what was read, and the marks, are in it
      }
      expect(first.out.values.length).toBeGreaterThan(0);
      expect(first.out.values.every((r) => r.start === 0)).toBe(true); // only [0, 10) fired

      // After it: only B writes, and its mark passes 25. A's 25 comes from the checkpoint (its
      // mark is not read again), so [10, 20) fires — and nothing earlier fires twice.
      b.write(batch(20, 30, 1));
      b.sink.watermark(35);
      await b.commit();
      const second = consumer(t, [0, 1], 2, 10);
      const run2 = second.p.start({ checkpointDir: dir, checkpointInterval: 50 });
      try {
        await until('watermark 25 (A’s, restored)', () => run2.job.status().phase === 'running' && sourceTime(run2.job).watermark === 25);
        await until('window [10, 20)', () => second.out.values.some((r) => r.start === 10));
        expect(second.out.values.every((r) => r.start === 10)).toBe(true);
        a.sink.watermark(MAX_WATERMARK);
        b.sink.watermark(MAX_WATERMARK);
        await a.commit();
        await b.commit();
        await until('window [20, 30)', () => second.out.values.some((r) => r.start === 20));
      } finally {
        await run2.stop();
      }

      // Uninterrupted: one bounded run over the whole topic.
      const whole = consumer(t, [0, 1], 2, 10, { bounded: true });
      await whole.p.run();
      const uninterrupted = whole.out.values.map(line).sort();
      expect(uninterrupted).toEqual(expectedCounts(written, 10));
      expect([...first.out.values, ...second.out.values].map(line).sort()).toEqual(uninterrupted);
    } finally {
      await a.close();
      await b.close();
    }
  }, 30_000);

  it('a value no repartition sink wrote is a dead letter with its place in the topic, and the job goes on', async () => {
    const t = await topic('bad', 1);
    const a = await HandProducer.open(t, 0, 1, 1);
    try {
      a.write([[{ user: 'x', i: 0 }, 1]]);
      await a.commit();
      await settleTransactions(t); // the commit marker is written before what follows
      await produce(t, [
        { value: 'not a repartition record' },
        // A batch of one record (time 1) whose value is cut short.
        { value: Buffer.from([0x53, 0x52, 2, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x92]) },
        // A mark (watermark 1) of producer 5 of 7.
        { value: Buffer.from([0x53, 0x52, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 5, 0, 0, 0, 7, 0, 0, 0, 0]) },
      ]);
      a.write([[{ user: 'x', i: 1 }, 2]]);
      a.sink.watermark(MAX_WATERMARK);
      await a.commit();

      const p = new Pipeline();
      const counts = p
        .source(new RepartitionSource<Ev>({ connection, topic: t, partitions: [0], producers: 1, bounded: true }), { id: 'from-topic' })
        .keyBy((e) => e.user)
        .window(tumbling(10))
        .aggregate(count())
        .collect();
      const dead = p.deadLetters().collect();
      const result = await p.run();
      expect((counts.values as Count[]).map(line)).toEqual(['x|0|2']);
      expect(result.deadLetters).toBe(3);
      const letters = dead.values.map((d) => ({ step: d.step, error: d.error, ...(d.record as { topic: string; partition: number; offset: number }) }));
      expect(letters.map((d) => [d.step, d.topic, d.partition])).toEqual(new Array(3).fill(['from-topic', t, 0]));
      expect(letters.map((d) => d.error)).toEqual([
        expect.stringMatching(/no repartition header/),
        expect.stringMatching(/cannot be decoded/),
        expect.stringMatching(/producer 5 of 7; this source reads 1/),
      ]);
      // Offsets 0 and 1 are A's first record and its commit marker.
      expect(letters.map((d) => d.offset)).toEqual([2, 3, 4]);
    } finally {
      await a.close();
    }
  }, 30_000);

  it('a source with no partitions (another task of a global exchange) has no splits, never emits, and is idle', async () => {
    const t = await topic('none', 1);
    const { p, out } = consumer(t, [], 1, 10);
    const run = p.start();
    try {
      await until('the source idle', () => run.job.status().phase === 'running' && sourceTime(run.job).idle);
      expect(out.values).toEqual([]);
    } finally {
      await run.stop();
    }
    const bounded = consumer(t, [], 1, 10, { bounded: true });
    await bounded.p.run();
    expect(bounded.out.values).toEqual([]);
  });

  it('a sink built for another partition count fails the job, naming both', async () => {
    const t = await topic('count', 3);
    const p = new Pipeline();
    p.fromArray([{ user: 'x', i: 0 }]).sink(new RepartitionSink<Ev>({ connection, topic: t, partitions: 2, key: (e) => e.user, producer: 0, producers: 1 }), { id: 'to-topic' });
    await expect(p.run()).rejects.toThrow(/has 3 partition\(s\); this exchange was built for 2/);
  });
});
