/**
 * End to end across SIGKILLs (issue 9 point 9, Kafka): NEXMark events in a Kafka topic, a job
 * reading it with parallelism 2 (worker threads, `spate run`) computing q5 and q7 into a Kafka
 * topic with transactions; killed with SIGKILL mid-run and restarted from its checkpoints, its
 * committed output (read_committed) equals a failure-free run's, record for record.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { NexmarkGenerator } from '../../src/nexmark/generator.ts';
import { createTopic, deleteTopics, produce, readCommitted, uniqueTopic } from '../support/kafka.ts';

const BIN = fileURLToPath(new URL('../../bin/spate.js', import.meta.url));
const JOB = fileURLToPath(new URL('../support/kafka-nexmark-job.ts', import.meta.url));
const topics: string[] = [];
const dirs: string[] = [];

afterAll(async () => {
  await deleteTopics(topics);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function run(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, [BIN, 'run', JOB, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
  return { child, done };
}

const checkpoints = (dir: string): string[] => {
  try {
    return readdirSync(dir).filter((f) => /^chk-/.test(f) || /checkpoint/.test(f));
  } catch {
    return [];
  }
};

it('q5 and q7 from Kafka to Kafka at parallelism 2: SIGKILLed mid-run and restarted, the committed output equals a failure-free run', async () => {
  const n = 60_000;
  // Events from 2023: createTopic turns time-based retention off, or the broker would delete them.
  const input = await createTopic(uniqueTopic('nexmark-in'), 2);
  const reference = await createTopic(uniqueTopic('nexmark-ref'), 1);
  const crashed = await createTopic(uniqueTopic('nexmark-crash'), 1);
  topics.push(input, reference, crashed);
  const gen = new NexmarkGenerator({ rate: 2_000 });
  const events = Array.from({ length: n }, (_, i) => gen.event(i));
  await produce(input, events.map((e, i) => ({ value: e, partition: i % 2, timestamp: e.dateTime })));

  const common = ['--parallelism', '2', '--checkpoint-interval', '100'];
  const refDir = mkdtempSync(join(tmpdir(), 'spate-kafka-nx-ref-'));
  const dir = mkdtempSync(join(tmpdir(), 'spate-kafka-nx-'));
  dirs.push(refDir, dir);

  const ref = await run([...common, '--checkpoint-dir', refDir, '--', input, reference]).done;
  expect(ref.code, ref.stderr).toBe(0);

  // Slowed down so that the kill lands mid-run: 60 000 events × 50 µs over two workers ≈ 1.5 s.
  const first = run([...common, '--checkpoint-dir', dir, '--', input, crashed, '50']);
  const deadline = Date.now() + 30_000;
  while (checkpoints(dir).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  first.child.kill('SIGKILL');
  const killed = await first.done;
  expect(killed.signal, killed.stderr).toBe('SIGKILL');
  const partial = await readCommitted(crashed);

  const second = await run([...common, '--checkpoint-dir', dir, '--', input, crashed]).done;
  expect(second.code, second.stderr).toBe(0);
  expect(second.stderr).toMatch(/restor|resum/i);

  const key = (r: { value: string }) => r.value;
  const want = (await readCommitted(reference, { waitStable: true })).map(key).sort();
  const got = (await readCommitted(crashed, { waitStable: true })).map(key).sort();
  expect(want.filter((v) => v.startsWith('{"q":"q5"')).length).toBeGreaterThan(10);
  expect(want.filter((v) => v.startsWith('{"q":"q7"')).length).toBeGreaterThan(2);
  expect(partial.length).toBeLessThan(want.length);
  expect(got).toEqual(want);
}, 120_000);
