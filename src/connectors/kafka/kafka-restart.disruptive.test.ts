/**
 * The Kafka source and sink while the broker stops and starts again (`scripts/services.sh
 * down|up kafka`). Disruptive: it stops the shared test broker, so it runs after every other test
 * file (see vitest.config.ts), and always starts the broker again. Run by hand under
 * `flock /tmp/spate-disruptive.lock`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Pipeline } from '../../index.ts';
import { createTopic, deleteTopics, produce, readCommitted, uniqueTopic } from '../../../test/support/kafka.ts';
import { KafkaSink } from './sink.ts';
import { KafkaSource } from './source.ts';

const exec = promisify(execFile);
const SERVICES = fileURLToPath(new URL('../../../scripts/services.sh', import.meta.url));
const services = (...args: string[]): Promise<unknown> => exec('bash', [SERVICES, ...args], { timeout: 180_000 });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const retry = { first: 50, max: 500 };

let dir: string;
const topics: string[] = [];

beforeAll(async () => {
  await services('up', 'kafka');
  dir = mkdtempSync(join(tmpdir(), 'spate-kafka-restart-'));
});
afterAll(async () => {
  await services('up', 'kafka'); // whatever happened
  await deleteTopics(topics);
  rmSync(dir, { recursive: true, force: true });
}, 200_000);

/** Kafka → (slowed) → Kafka, exactly once: records { i }. */
function job(input: string, output: string, spinUs = 0): { p: Pipeline; source: KafkaSource<{ i: number }>; sink: KafkaSink<{ i: number }> } {
  const p = new Pipeline();
  const source = new KafkaSource<{ i: number }>({ topic: input, bounded: true, retry });
  const sink = new KafkaSink<{ i: number }>({ topic: output, retry, maxBufferedRecords: 2_000, key: (r) => String(r.i) });
  let s = p.source(source, { id: 'in' });
  if (spinUs > 0) {
    s = s.map((r) => {
      const until = performance.now() + spinUs / 1000;
      while (performance.now() < until);
      return r;
    }, { id: 'slow' });
  }
  s.sink(sink, { id: 'out' });
  return { p, source, sink };
}

async function expectExactlyOnce(topic: string, n: number): Promise<void> {
  const values = (await readCommitted(topic, { waitStable: true })).map((r) => (JSON.parse(r.value) as { i: number }).i);
  expect(values.length).toBe(n);
  expect(new Set(values).size).toBe(n);
  expect(Math.min(...values)).toBe(0);
  expect(Math.max(...values)).toBe(n - 1);
}

it('the broker is down when the job starts: source and sink wait for it, saying so once each, then everything is written exactly once', async () => {
  const n = 5_000;
  const input = await createTopic(uniqueTopic('late-in'), 2);
  const output = await createTopic(uniqueTopic('late-out'), 2);
  topics.push(input, output);
  await produce(input, Array.from({ length: n }, (_, i) => ({ value: { i }, partition: i % 2 })));
  const lines: string[] = [];
  const { p, source, sink } = job(input, output);
  let running: ReturnType<Pipeline['start']>;
  try {
    await services('down', 'kafka');
    running = p.start({ checkpointDir: join(dir, 'late'), checkpointInterval: 100, log: (l) => lines.push(l) });
    await sleep(2_000);
    expect(source.stats.unavailable).toBe(true);
    expect(source.stats.retries).toBeGreaterThan(1);
  } finally {
    await services('up', 'kafka');
  }
  const result = await running.done;
  expect(result.deadLetters).toBe(0);
  await expectExactlyOnce(output, n);
  expect(lines.filter((l) => /step 'in': Kafka source: .*Kafka is unavailable/.test(l)), lines.join('\n')).toHaveLength(1);
  expect(lines.some((l) => /step 'in': Kafka source: .*Kafka answers again, after \d+ failed attempt/.test(l))).toBe(true);
  expect(source.stats.unavailable).toBe(false);
  expect(sink.stats.outages).toBeLessThanOrEqual(1);
}, 200_000);

it('the broker stops for a few seconds while a job runs: the sink backs up, the source waits, and the output is exactly once', async () => {
  const n = 20_000;
  const input = await createTopic(uniqueTopic('restart-in'), 2);
  const output = await createTopic(uniqueTopic('restart-out'), 2);
  topics.push(input, output);
  await produce(input, Array.from({ length: n }, (_, i) => ({ value: { i }, partition: i % 2 })));
  const lines: string[] = [];
  // About 5 000 records/s: the job runs for about 4 s without the outage.
  const { p, source, sink } = job(input, output, 200);
  const running = p.start({ checkpointDir: join(dir, 'restart'), checkpointInterval: 100, log: (l) => lines.push(l) });
  const sinkIn = (): number => running.job.metrics().find((m) => m.step === 'out')!.recordsIn;
  await sleep(1_000);
  let during: number;
  try {
    await services('down', 'kafka');
    const before = sinkIn();
    await sleep(3_000);
    during = sinkIn() - before;
  } finally {
    await services('up', 'kafka');
  }
  const result = await running.done;
  expect(result.deadLetters).toBe(0);
  // While the broker was down the sink took at most its buffer (and a batch or two), not the ~15 000 records of 3 s.
  expect(during).toBeLessThan(2_000 + 2 * 1024);
  await expectExactlyOnce(output, n);
  expect(sink.stats.outages + source.stats.outages).toBeGreaterThan(0);
  expect(lines.some((l) => /step '(in|out)': Kafka (sink|source): .*Kafka is unavailable/.test(l))).toBe(true);
  expect(lines.some((l) => /Kafka answers again/.test(l))).toBe(true);
}, 200_000);
