/**
 * KafkaCheckpointStorage against the real broker (`scripts/services.sh up kafka`; address from
 * SPATE_KAFKA_BROKERS): the storage interface against MemoryCheckpointStorage as an oracle,
 * fencing of an earlier owner, a write cut between Produce and EndTxn, independent partitions,
 * ensureCheckpointTopic, and a whole job restored from it. Every test uses topics of its own.
 */
import { Admin } from '@platformatic/kafka';
import { afterAll, describe, expect, it } from 'vitest';
import { checkpointDir } from '../checkpoint/manifest.ts';
import { MemoryCheckpointStorage } from '../checkpoint/storage.ts';
import { CallbackSink, GeneratorSource, Pipeline, valueState } from '../index.ts';
import { PlatformaticKafkaClient } from '../connectors/kafka/client.ts';
import { deleteTopics, KAFKA_BROKERS, produce, readCommitted, uniqueTopic } from '../../test/support/kafka.ts';
import { CHUNK_BYTES, ensureCheckpointTopic, FencedError, KafkaCheckpointStorage, type KafkaCheckpointStorageOptions } from './kafka-storage.ts';
import { seededRandom } from '../util/random.ts';

const connection = { brokers: KAFKA_BROKERS };
const topics: string[] = [];
const opened: KafkaCheckpointStorage[] = [];
const logged: string[] = [];

afterAll(async () => {
  for (const s of opened) await s.close();
  await deleteTopics(topics);
});

async function checkpointTopic(tag: string, partitions = 1): Promise<string> {
  const topic = uniqueTopic(tag);
  topics.push(topic);
  await ensureCheckpointTopic(connection, topic, partitions);
  return topic;
}

/** Opens the storage of task `partition` of `topic`, with the task's one transactional id. */
async function open(topic: string, partition = 0, extra: Partial<KafkaCheckpointStorageOptions> = {}): Promise<KafkaCheckpointStorage> {
  const storage = await KafkaCheckpointStorage.open({ connection, topic, partition, transactionalId: `${topic}-checkpoints-${partition}`, log: (l) => logged.push(l), ...extra });
  opened.push(storage);
  return storage;
}

const bytes = (text: string): Uint8Array => Buffer.from(text, 'utf8');
const text = async (s: KafkaCheckpointStorage, name: string): Promise<string> => Buffer.from(await s.read(name)).toString('utf8');

/** Every object name, found by walking `list` from the root as the checkpoint code does. */
async function allNames(s: { list(prefix: string): Promise<string[]> }, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await s.list(prefix)) {
    if (entry.endsWith('/')) out.push(...(await allNames(s, prefix + entry)));
    else out.push(prefix + entry);
  }
  return out.sort();
}

/** `size` bytes that differ at every 4-byte word and from one `tag` to another (a misplaced chunk shows). */
function content(size: number, tag: number): Uint8Array {
  const data = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) data.writeUInt32LE((Math.imul(i, 2654435761) + tag) >>> 0, i);
  for (let i = size - (size % 4); i < size; i++) data[i] = tag & 0xff;
  return data;
}

describe('KafkaCheckpointStorage', () => {
  it('behaves as MemoryCheckpointStorage on random operations, chunked objects and reopening included', async () => {
    const seed = Number(process.env['SPATE_TEST_SEED'] ?? Math.floor(Math.random() * 2 ** 32));
    const rnd = seededRandom(seed);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
    const names = ['chk-1/_MANIFEST', 'chk-1/source.0.state', 'chk-1/window.1.state', 'chk-2/_MANIFEST', 'chk-2/window.0.state', 'chk-10/a', 'savepoint-3/_MANIFEST', 'top', 'a/b/c/deep', 'ünï/cödé'];
    const prefixes = ['', 'chk-1/', 'chk-1', 'chk-', 'chk-2/', 'a/', 'a/b/', 'savepoint-3/', 'nope/', 'chk-1/window', 'ünï/'];
    const bigSizes = [CHUNK_BYTES, CHUNK_BYTES + 1, 1_500_000, 2_800_000];
    const topic = await checkpointTopic('oracle');
    const oracle = new MemoryCheckpointStorage();
    let storage = await open(topic);
    let tag = 0;
    const at = (step: number | string): string => `seed ${seed}, step ${step}`;

    const same = async (step: number | string): Promise<void> => {
      const expected = await allNames(oracle);
      expect(await allNames(storage), at(step)).toEqual(expected);
      for (const name of expected) expect(Buffer.compare(Buffer.from(await storage.read(name)), Buffer.from(await oracle.read(name))), `${at(step)}: ${name}`).toBe(0);
    };
    const reopen = async (step: number | string): Promise<void> => {
      await storage.close();
      storage = await open(topic);
      await same(`${step} (reopened)`);
    };
    const write = (name: string, size: number): Array<Promise<void>> => {
      const data = content(size, ++tag);
      return [storage.write(name, data), oracle.write(name, data)];
    };

    // An object over several chunks, rewritten smaller (its unused chunk keys get tombstones) and bigger again.
    await Promise.all(write('chk-1/window.1.state', 2_800_000));
    await Promise.all(write('chk-1/_MANIFEST', 0));
    await reopen('big');
    await Promise.all(write('chk-1/window.1.state', 10));
    await reopen('rewritten smaller');
    await Promise.all(write('chk-1/window.1.state', 1_500_000));
    await reopen('rewritten bigger');

    let bigWrites = 0;
    for (let step = 0; step < 70; step++) {
      const r = rnd();
      if (r < 0.4) {
        const big = rnd() < 0.1 && bigWrites < 6;
        if (big) bigWrites++;
        await Promise.all(write(pick(names), big ? pick(bigSizes) : rnd() < 0.15 ? 0 : Math.floor(rnd() * 300)));
      } else if (r < 0.55) {
        const name = pick(names);
        const want = await oracle.read(name).then((d) => Buffer.from(d), () => null);
        if (want === null) await expect(storage.read(name), at(step)).rejects.toMatchObject({ code: 'ENOENT' });
        else expect(Buffer.compare(Buffer.from(await storage.read(name)), want), at(step)).toBe(0);
      } else if (r < 0.68) {
        const prefix = pick(prefixes);
        expect((await storage.list(prefix)).sort(), `${at(step)}: list '${prefix}'`).toEqual((await oracle.list(prefix)).sort());
      } else if (r < 0.8) {
        const prefix = pick(prefixes.filter((p) => p !== '' || rnd() < 0.3));
        await Promise.all([storage.deletePrefix(prefix), oracle.deletePrefix(prefix)]);
      } else if (r < 0.93) {
        // Several operations at once: they must apply in call order, as they do on the oracle.
        const started: Array<Promise<void>> = [];
        for (let k = 0; k < 4; k++) {
          if (rnd() < 0.7) started.push(...write(pick(names), Math.floor(rnd() * 100)));
          else {
            const prefix = pick(prefixes.slice(1));
            started.push(storage.deletePrefix(prefix), oracle.deletePrefix(prefix));
          }
        }
        await Promise.all(started);
      } else {
        await reopen(step);
        continue;
      }
      await same(step);
    }
    await reopen('end');

    // What compaction keeps — the latest record of every key — is exactly the chunks of the
    // objects there are: rewrites and deletions left tombstones on every key they stopped using.
    const latest = new Map<string, boolean>();
    for (const r of await readCommitted(topic, { waitStable: true })) latest.set(r.key!, r.headers['spate.chunk'] !== undefined);
    const expected: string[] = [];
    for (const name of await allNames(oracle)) {
      const chunks = Math.max(1, Math.ceil((await oracle.read(name)).length / CHUNK_BYTES));
      for (let i = 0; i < chunks; i++) expected.push(i === 0 ? name : `${name}\0${i}`);
    }
    expect([...latest].filter(([, live]) => live).map(([key]) => key).sort(), `seed ${seed}`).toEqual(expected.sort());
  });

  it('fences the earlier owner: B sees what A wrote, A can no longer write, and what A tried is not visible', async () => {
    const topic = await checkpointTopic('fence');
    const a = await open(topic);
    await a.write('chk-1/_MANIFEST', bytes('a1'));
    await a.write('chk-1/op.0.state', bytes('a-state'));
    const b = await open(topic);
    expect(await allNames(b)).toEqual(['chk-1/_MANIFEST', 'chk-1/op.0.state']);
    expect(await text(b, 'chk-1/_MANIFEST')).toBe('a1');

    const zombie = a.write('chk-2/_MANIFEST', bytes('zombie'));
    await expect(zombie).rejects.toBeInstanceOf(FencedError);
    await expect(zombie).rejects.toThrow(/taken over/);
    await expect(a.write('chk-1/_MANIFEST', bytes('zombie again'))).rejects.toBeInstanceOf(FencedError);
    await expect(a.deletePrefix('chk-1/')).rejects.toBeInstanceOf(FencedError);

    await b.write('chk-2/op.0.state', bytes('b-state'));
    const c = await open(topic);
    expect(await allNames(c)).toEqual(['chk-1/_MANIFEST', 'chk-1/op.0.state', 'chk-2/op.0.state']);
    expect(await text(c, 'chk-1/_MANIFEST')).toBe('a1');
    await expect(c.read('chk-2/_MANIFEST')).rejects.toMatchObject({ code: 'ENOENT' });
    // B was fenced by C in turn.
    await expect(b.write('chk-3/_MANIFEST', bytes('b'))).rejects.toBeInstanceOf(FencedError);
  });

  it('never shows a write cut between Produce and EndTxn, and a new owner opens without waiting for it', { timeout: 20_000 }, async () => {
    const topic = await checkpointTopic('crash');
    let reached!: () => void;
    const produced = new Promise<void>((resolve) => (reached = resolve));
    let release!: () => void;
    const hung = new Promise<void>((resolve) => (release = resolve));
    const a = await open(topic, 0, {
      testHooks: {
        beforeCommit: async (what) => {
          if (!what.includes('chk-2')) return;
          reached();
          await hung; // the process "dies" here: its transaction stays open
        },
      },
    });
    await a.write('chk-1/_MANIFEST', bytes('committed'));
    const cut = a.write('chk-2/_MANIFEST', content(2 * CHUNK_BYTES + 5, 1));
    await produced;

    const started = performance.now();
    const b = await open(topic);
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(await allNames(b)).toEqual(['chk-1/_MANIFEST']);
    expect(b.openStats.records).toBe(1);
    await b.write('chk-3/_MANIFEST', bytes('b'));

    // The "dead" process wakes up: its commit is refused.
    release();
    await expect(cut).rejects.toBeInstanceOf(FencedError);
    const c = await open(topic);
    expect(await allNames(c)).toEqual(['chk-1/_MANIFEST', 'chk-3/_MANIFEST']);
    expect(c.openStats.records).toBe(2);
  });

  it('ignores records it did not write, and reports an object whose records do not fit together as damaged', async () => {
    const topic = await checkpointTopic('foreign');
    const a = await open(topic);
    await a.write('chk-1/_MANIFEST', bytes('ok'));
    await a.write('chk-1/big.state', content(CHUNK_BYTES + 10, 1));
    // Someone else's records in the partition (a compacted topic takes none without a key): one
    // keyed like an object but without the chunk header, and a chunk 1 of the big object from another write.
    await produce(topic, [{ value: 'no header', key: 'chk-1/op.0.state' }, { value: 'stray chunk', key: 'chk-1/big.state\u00001', headers: { 'spate.chunk': '1/2', 'spate.write': '0123456789abcdef' } }]);
    logged.length = 0;
    const b = await open(topic);
    expect(await allNames(b)).toEqual(['chk-1/_MANIFEST', 'chk-1/big.state', 'chk-1/op.0.state']);
    expect(await text(b, 'chk-1/_MANIFEST')).toBe('ok');
    await expect(b.read('chk-1/op.0.state')).rejects.toThrow(`checkpoint object 'chk-1/op.0.state' in kafka://${topic}/0 is damaged: its first record has no valid spate.chunk header`);
    await expect(b.read('chk-1/big.state')).rejects.toThrow(/is damaged: chunk 2 of 2 belongs to another write/);
    expect(logged).toContain(`kafka://${topic}/0: 1 record(s) not written by a Spate checkpoint storage (no key or no spate.chunk header) were ignored`);
    // Rewriting or deleting a damaged object repairs it.
    await b.write('chk-1/op.0.state', bytes('repaired'));
    await b.deletePrefix('chk-1/big');
    const c = await open(topic);
    expect(await allNames(c)).toEqual(['chk-1/_MANIFEST', 'chk-1/op.0.state']);
    expect(await text(c, 'chk-1/op.0.state')).toBe('repaired');
    // Names its keys cannot hold are refused (a rejection, as every failure of the interface).
    await expect(c.write('chk-1/a\u0000b', bytes('x'))).rejects.toThrow(/invalid checkpoint object name/);
    await expect(c.write('', bytes('x'))).rejects.toThrow(/must be a non-empty string/);
  });

  it('keeps the partitions of two tasks apart', async () => {
    const topic = await checkpointTopic('tasks', 2);
    const t0 = await open(topic, 0);
    const t1 = await open(topic, 1);
    await Promise.all([t0.write('chk-1/_MANIFEST', bytes('zero')), t1.write('chk-1/_MANIFEST', bytes('one')), t1.write('chk-1/only-one', bytes('x'))]);
    await t0.deletePrefix('');
    expect(await allNames(t0)).toEqual([]);
    // A new owner of task 0 fences task 0 only.
    const r0 = await open(topic, 0);
    expect(await allNames(r0)).toEqual([]);
    await t1.write('chk-2/_MANIFEST', bytes('still mine'));
    const r1 = await open(topic, 1);
    expect(await allNames(r1)).toEqual(['chk-1/_MANIFEST', 'chk-1/only-one', 'chk-2/_MANIFEST']);
    expect(await text(r1, 'chk-1/_MANIFEST')).toBe('one');
  });

  it('ensureCheckpointTopic creates a compacted topic, is idempotent and concurrent-safe, and refuses a wrong partition count', async () => {
    const topic = uniqueTopic('ensure');
    topics.push(topic);
    await Promise.all([1, 2, 3].map(() => ensureCheckpointTopic(connection, topic, 3)));
    await ensureCheckpointTopic(connection, topic, 3);
    const client = new PlatformaticKafkaClient(connection);
    const admin = new Admin({ clientId: 'spate-test', bootstrapBrokers: KAFKA_BROKERS });
    try {
      expect(await client.partitions(topic)).toBe(3);
      const [described] = await admin.describeConfigs({ resources: [{ resourceType: 2, resourceName: topic, configurationKeys: ['cleanup.policy', 'retention.ms', 'segment.ms'] }] });
      const configs = Object.fromEntries(described!.configs.map((c) => [c.name, c.value]));
      expect(configs).toMatchObject({ 'cleanup.policy': 'compact', 'retention.ms': '-1', 'segment.ms': '60000' });
    } finally {
      await admin.close();
      await client.close();
    }
    await expect(ensureCheckpointTopic(connection, topic, 2)).rejects.toThrow(`checkpoint topic ${topic} has 3 partition(s), but the job needs exactly 2`);
    await expect(ensureCheckpointTopic(connection, topic, 4)).rejects.toThrow(/has 3 partition\(s\), but the job needs exactly 4 \(one per task/);

    await expect(open(topic, 3)).rejects.toThrow(`checkpoint topic ${topic} has 3 partition(s), so there is no partition 3 for this task`);
    const missing = uniqueTopic('missing');
    await expect(open(missing)).rejects.toThrow(`checkpoint topic ${missing} does not exist: create it first (ensureCheckpointTopic)`);
  });

  it('a job checkpoints to it, stops, and a job on a freshly opened storage resumes with the results of an uninterrupted run', async () => {
    const count = 6_000;
    const build = (out: string[], ratePerSecond?: number): Pipeline => {
      const p = new Pipeline({ batchSize: 64 });
      p.source(() => new GeneratorSource({ count, make: (i) => i, time: (i) => i, ...(ratePerSecond === undefined ? {} : { ratePerSecond }) }), { id: 'numbers' })
        .keyBy((i) => i % 7)
        .state({ sum: valueState<number>() })
        .process<string>(
          {
            onElement(i, ctx) {
              const sum = (ctx.state.sum.get() ?? 0) + i;
              ctx.state.sum.set(sum);
              ctx.emit(`${i % 7}:${i}:${sum}`);
            },
          },
          { id: 'sums' },
        )
        .sink(new CallbackSink<string>((s) => out.push(s)), { id: 'out' });
      return p;
    };
    const reference: string[] = [];
    await build(reference).run();
    expect(reference).toHaveLength(count);

    const topic = await checkpointTopic('job', 2);
    const lines: string[] = [];
    const first: string[] = [];
    const storage1 = await open(topic, 1);
    const running = build(first, 4_000).start({ checkpointDir: storage1, checkpointInterval: 100, log: (l) => lines.push(l) });
    const deadline = Date.now() + 20_000;
    while (running.job.status().checkpoints.filter((c) => c.status === 'completed' && c.durable).length < 3) {
      if (Date.now() > deadline) throw new Error(`no 3 checkpoints in 20 s: ${JSON.stringify(running.job.status().checkpoints)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await running.stop();
    await storage1.close();
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThan(count);
    const last = running.job.status().checkpoints.at(-1)!;
    expect(last).toMatchObject({ status: 'completed', durable: true });

    const second: string[] = [];
    const storage2 = await open(topic, 1);
    expect(storage2.openStats.records).toBeGreaterThan(0);
    expect(await storage2.list('')).toContain(checkpointDir(last.id, 'checkpoint'));
    const resumed = build(second).start({ checkpointDir: storage2, checkpointInterval: 100, log: (l) => lines.push(l) });
    await resumed.done;
    expect(resumed.job.status().restoredFrom).toEqual({ id: last.id, kind: 'checkpoint' });
    expect(lines.some((l) => l.startsWith(`spate: resuming from checkpoint ${last.id} in kafka://${topic}/1 `)), lines.join('\n')).toBe(true);
    expect([...first, ...second]).toEqual(reference);
    // The other task's partition holds nothing.
    expect(await allNames(await open(topic, 0))).toEqual([]);
  });
});
