/**
 * The JetStream source and sink while the NATS server stops and starts again
 * (`scripts/services.sh down|up nats`). Disruptive: it stops the shared test server, so it runs
 * after every other test file (see vitest.config.ts), and always starts the server again.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GeneratorSource, Pipeline } from '../../index.ts';
import { JetStreamSink } from './sink.ts';
import { JetStreamSource } from './source.ts';
import { cleanupStreams, NATS_URL, publish, readAll, testStream } from '../../../test/support/nats.ts';

const exec = promisify(execFile);
const SERVICES = fileURLToPath(new URL('../../../scripts/services.sh', import.meta.url));
const services = (...args: string[]): Promise<unknown> => exec('bash', [SERVICES, ...args], { timeout: 120_000 });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const connection = { servers: NATS_URL };
const retryMs = { first: 50, max: 500 };
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, k) => from + k);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'spate-nats-restart-'));
});
afterAll(async () => {
  await services('up', 'nats'); // whatever happened
  await cleanupStreams();
  rmSync(dir, { recursive: true, force: true });
}, 150_000);

/** The job's result, or after 60 s a failure that shows the job's log (what it was waiting for). */
async function finished<R>(done: Promise<R>, lines: readonly string[]): Promise<R> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the job did not finish within 60 s; its log:\n${lines.join('\n')}`)), 60_000);
  });
  try {
    return await Promise.race([done, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Rec {
  readonly i: number;
}

/** Input stream → a step taking `costMs` per record → output subject, exactly once. */
function job(input: string, subject: string, costMs: number): Pipeline & { source: JetStreamSource<Rec> } {
  const p = new Pipeline();
  const source = new JetStreamSource<Rec>({ connection, stream: input, bounded: true, batch: 256, retryMs, heartbeatMs: 500 });
  p.source(source, { id: 'in' })
    .map((r) => {
      const t = performance.now();
      while (performance.now() - t < costMs);
      return { i: r.i, twice: 2 * r.i };
    }, { id: 'work' })
    .sink(new JetStreamSink<{ i: number; twice: number }>({ connection, subject, retryMs, ackTimeoutMs: 1_000 }), { id: 'out' });
  return Object.assign(p, { source });
}

async function expectExactlyOnce(stream: string, n: number): Promise<void> {
  const got = (await readAll(stream)).map((m) => JSON.parse(m.data) as { i: number; twice: number });
  expect(got.map((r) => r.i).sort((a, b) => a - b)).toEqual(range(0, n));
  for (const r of got) expect(r.twice).toBe(2 * r.i);
}

it('the server is down when the job starts: source and sink wait for it, saying so, then everything goes through once', async () => {
  const input = await testStream('late_in', { storage: 'file' as never });
  const output = await testStream('late_out', { storage: 'file' as never });
  const n = 5_000;
  await publish(range(0, n).map((i) => ({ subject: input.subject('x'), data: JSON.stringify({ i }) })), 1_024);
  const lines: string[] = [];
  let running: ReturnType<Pipeline['start']>;
  try {
    await services('down', 'nats');
    const late = job(input.name, output.subject('out'), 0);
    running = late.start({ checkpointDir: join(dir, 'late'), checkpointInterval: 100, log: (l) => lines.push(l) });
    await sleep(2_000);
    expect(late.source.stats).toMatchObject({ outages: 1, waiting: true });
  } finally {
    await services('up', 'nats');
  }
  const result = await finished(running.done, lines);
  expect(result.deadLetters).toBe(0);
  await expectExactlyOnce(output.name, n);
  expect(lines.filter((l) => /JetStream source .*connecting: NATS is unavailable \(.*refused/.test(l))).toHaveLength(1);
  expect(lines.some((l) => /JetStream source .*connecting: NATS answers again, after \d+ failed attempt/.test(l))).toBe(true);
}, 150_000);

it('the server stops for a few seconds while a job reads and writes: it waits, resumes by itself, and nothing is lost or doubled', async () => {
  const input = await testStream('restart_in', { storage: 'file' as never });
  const output = await testStream('restart_out', { storage: 'file' as never, duplicate_window: 120e9 });
  const n = 15_000;
  await publish(range(0, n).map((i) => ({ subject: input.subject('x'), data: JSON.stringify({ i }) })), 1_024);
  const lines: string[] = [];
  // A few thousand records a second: the job is mid-way when the server goes.
  const p = job(input.name, output.subject('out'), 0.2);
  const running = p.start({ checkpointDir: join(dir, 'restart'), checkpointInterval: 100, log: (l) => lines.push(l) });
  const metric = (step: string): number => running.job.metrics().find((m) => m.step === step)?.recordsIn ?? 0;
  await sleep(1_500);
  let before = 0;
  let during = 0;
  try {
    await services('down', 'nats');
    before = metric('out');
    await sleep(3_000);
    during = metric('out') - before;
  } finally {
    await services('up', 'nats');
  }
  const result = await finished(running.done, lines);
  expect(result.deadLetters).toBe(0);
  expect(before).toBeGreaterThan(0);
  expect(before).toBeLessThan(n);
  // While the server was away the job drained what its source had buffered, then waited: commits
  // fell behind, and backpressure held the rest (the source cannot read either).
  expect(during).toBeLessThanOrEqual(4 * 256 + 2 * 1024);
  await expectExactlyOnce(output.name, n);
  expect(p.source.stats.reconnects).toBeGreaterThanOrEqual(1);
  expect(p.source.stats.consumerResets).toBeGreaterThanOrEqual(1); // the server forgot the consumer
  expect(p.source.stats.waiting).toBe(false);
  expect(lines.some((l) => /JetStream source .*disconnected from NATS/.test(l))).toBe(true);
  expect(lines.some((l) => /JetStream source .*reconnected to NATS/.test(l))).toBe(true);
  expect(lines.some((l) => /JetStream sink .*reconnected to NATS/.test(l))).toBe(true);
}, 150_000);

it('a sink whose server is away holds the job back (bounded memory) in both delivery modes, then publishes everything', async () => {
  for (const delivery of ['exactly-once', 'at-least-once'] as const) {
    const output = await testStream(`away_${delivery.replace(/-/g, '_')}`, { storage: 'file' as never });
    const n = 15_000;
    const rate = 5_000;
    const p = new Pipeline();
    p.source(new GeneratorSource<Rec>({ count: n, make: (i) => ({ i }), ratePerSecond: rate }), { id: 'numbers' }).sink(
      new JetStreamSink<Rec>({ connection, subject: output.subject('out'), delivery, retryMs, ackTimeoutMs: 1_000, maxInFlight: 256 }),
      { id: 'out' },
    );
    const lines: string[] = [];
    const running = p.start({ checkpointDir: join(dir, `away-${delivery}`), checkpointInterval: 100, log: (l) => lines.push(l) });
    const sinkIn = (): number => running.job.metrics().find((m) => m.step === 'out')!.recordsIn;
    await sleep(1_000);
    let during = 0;
    try {
      await services('down', 'nats');
      const before = sinkIn();
      await sleep(3_000);
      during = sinkIn() - before;
    } finally {
      await services('up', 'nats');
    }
    await finished(running.done, lines);
    // 3 s at 5 000/s would be 15 000 records; the sink took what a few checkpoints (exactly once)
    // or its window of unacknowledged messages (at least once) allow, and a batch or two.
    expect(during, delivery).toBeLessThan(rate * 0.5 + 2 * 1024);
    const got = (await readAll(output.name)).map((m) => (JSON.parse(m.data) as Rec).i);
    // Each exactly once; not necessarily in order: a message resent after the outage comes after
    // those sent since (Publisher's documented order).
    if (delivery === 'exactly-once') expect([...got].sort((a, b) => a - b)).toEqual(range(0, n));
    else expect([...new Set(got)].sort((a, b) => a - b)).toEqual(range(0, n)); // nothing lost
    expect(lines.some((l) => /JetStream sink .*disconnected from NATS/.test(l)), delivery).toBe(true);
  }
}, 150_000);
