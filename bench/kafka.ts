/**
 * Kafka throughput and latency, against the broker of `SPATE_KAFKA_BROKERS` (default: the test
 * broker of scripts/services.sh).
 *
 * 1. Throughput: N NEXMark events (JSON, 2 partitions) are written to an input topic (by Spate's
 *    sink, at-least-once; that rate is printed too); then Kafka source → q0 → Kafka sink runs
 *    over them at parallelism 1 and 2 (worker threads), exactly-once (a transaction per
 *    checkpoint, every second) and at-least-once. Events/s count the whole run, from start to the
 *    last commit: read, decode, q0, encode, write, commit.
 * 2. Latency: a producer writes { sent: Date.now() } records at a fixed rate into a topic, a
 *    `spate run` process (source → q0-like pass-through → sink) copies them to another, and a
 *    read_committed reader measures, per record, the time from `sent` until it could read it:
 *    p50/p99/max, at-least-once and exactly-once (checkpoints every 100 ms).
 *
 * `npx tsx bench/kafka.ts [events=1000000] [rate=10000] [seconds=10]` prints markdown tables.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GeneratorSource, KafkaSink, Pipeline } from '../src/index.ts';
import { NexmarkSource } from '../src/nexmark/source.ts';
import { PlatformaticKafkaClient } from '../src/connectors/kafka/client.ts';
import { CommittedRecords } from '../src/connectors/kafka/records.ts';
import { createTopic, deleteTopics, uniqueTopic } from '../test/support/kafka.ts';

const n = Number(process.argv[2] ?? 1_000_000);
const rate = Number(process.argv[3] ?? 10_000);
const seconds = Number(process.argv[4] ?? 10);
const MODULE_URL = new URL('./kafka-pipeline.ts', import.meta.url);
const MODULE = fileURLToPath(MODULE_URL);
const BIN = fileURLToPath(new URL('../bin/spate.js', import.meta.url));
const topics: string[] = [];

async function topic(tag: string, partitions = 2): Promise<string> {
  const t = await createTopic(uniqueTopic(`bench-${tag}`), partitions);
  topics.push(t);
  return t;
}

async function throughput(): Promise<void> {
  const input = await topic('in');
  const p = new Pipeline();
  p.source(new NexmarkSource({ events: n }), { id: 'events' }).sink(new KafkaSink({ topic: input, guarantee: 'at-least-once' }), { id: 'in' });
  let started = performance.now();
  await p.run({ checkpointInterval: 1_000 });
  const fill = (performance.now() - started) / 1000;
  console.log(`Kafka source → q0 → Kafka sink, ${n.toLocaleString('en-US')} NEXMark events (JSON) in 2 partitions, checkpoint every second; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), Node ${process.version}\n`);
  console.log(`(writing the input: generator → Kafka sink at-least-once, one thread: ${Math.round(n / fill).toLocaleString('en-US')} events/s)\n`);
  console.log('| guarantee | parallelism | seconds | events/s | checkpoints |');
  console.log('|---|---:|---:|---:|---:|');
  for (const guarantee of ['exactly-once', 'at-least-once'] as const) {
    for (const parallelism of [1, 2]) {
      const output = await topic(`out-${guarantee}-${parallelism}`);
      const dir = mkdtempSync(join(tmpdir(), 'spate-bench-kafka-'));
      const job = new Pipeline();
      const { default: module } = await import(MODULE);
      await module.build(job, [input, output, guarantee, 'bounded']);
      started = performance.now();
      const result = await job.run({ parallelism, checkpointInterval: 1_000, checkpointDir: dir, workers: { module: MODULE_URL, args: [input, output, guarantee, 'bounded'] } });
      const s = (performance.now() - started) / 1000;
      rmSync(dir, { recursive: true, force: true });
      console.log(`| ${guarantee} | ${parallelism} | ${s.toFixed(2)} | ${Math.round(n / s).toLocaleString('en-US')} | ${result.checkpoints.length} |`);
    }
  }
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function latency(guarantee: 'exactly-once' | 'at-least-once'): Promise<string> {
  const input = await topic(`lat-in-${guarantee}`, 1);
  const output = await topic(`lat-out-${guarantee}`, 1);
  const dir = mkdtempSync(join(tmpdir(), 'spate-bench-kafka-lat-'));
  const job = spawn(process.execPath, [BIN, 'run', MODULE, '--parallelism', '1', '--checkpoint-interval', guarantee === 'exactly-once' ? '100' : '1000', '--checkpoint-dir', dir, '--', input, output, guarantee, 'unbounded'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await new Promise((r) => setTimeout(r, 3_000)); // the job starts and reaches the end of the (empty) input
  // The reader: read_committed, from the start of the output.
  const client = new PlatformaticKafkaClient({});
  const leaders = await client.leaders(output);
  const latencies: number[] = [];
  let reading = true;
  const reader = (async () => {
    let offset = 0;
    while (reading) {
      const [r] = await client.fetch(leaders[0]!, [{ topic: output, partition: 0, offset }], { maxWaitMs: 5, maxBytes: 16 << 20, partitionMaxBytes: 16 << 20 });
      const now = Date.now();
      const cursor = new CommittedRecords(r!.batches, r!.abortedTransactions, offset);
      while (cursor.next()) latencies.push(now - (JSON.parse(cursor.record!.value!.toString()) as { dateTime: number }).dateTime);
      offset = cursor.position;
    }
  })();
  // The producer: { dateTime: now } records (q0 passes bids through) at a fixed rate.
  const p = new Pipeline();
  const count = rate * seconds;
  p.source(new GeneratorSource({ count, ratePerSecond: rate, make: (i) => ({ type: 'bid', auction: i, bidder: 1, price: 1, dateTime: Date.now(), extra: '' }) }), { id: 'producer' }).sink(
    new KafkaSink({ topic: input, guarantee: 'at-least-once' }),
    { id: 'in' },
  );
  await p.run({ checkpointInterval: 50 });
  const deadline = Date.now() + 10_000;
  while (latencies.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  reading = false;
  await reader;
  job.kill('SIGTERM');
  await new Promise((r) => job.on('exit', r));
  await client.close();
  rmSync(dir, { recursive: true, force: true });
  // The first second warms up (JIT, connections): measured from then on.
  const measured = latencies.slice(rate).sort((a, b) => a - b);
  return `| ${guarantee} | ${rate.toLocaleString('en-US')} | ${latencies.length.toLocaleString('en-US')} / ${count.toLocaleString('en-US')} | ${percentile(measured, 0.5)} | ${percentile(measured, 0.99)} | ${measured[measured.length - 1]} |`;
}

try {
  await throughput();
  console.log(`\nEnd-to-end latency (produced → readable in the output topic, read_committed), ${seconds} s at a fixed rate, one partition\n`);
  console.log('| guarantee | events/s | records read | p50 ms | p99 ms | max ms |');
  console.log('|---|---:|---:|---:|---:|---:|');
  console.log(await latency('at-least-once'));
  console.log(await latency('exactly-once'));
} finally {
  await deleteTopics(topics);
}
