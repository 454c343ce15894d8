/**
 * `ClusterProcess` from the API, against the real broker: two processes of one job in this
 * process (each with its worker thread), their `/metrics` and `/api/cluster`, a join that moves
 * tasks (handed over with a final checkpoint, restored on the newcomer) and a leave that hands
 * them back; the output is the one-process result.
 */
import { Admin } from '@platformatic/kafka';
import { afterAll, expect, it } from 'vitest';
import { buildPipeline, loadPipelineModule } from '../api/define-pipeline.ts';
import { NexmarkGenerator } from '../nexmark/generator.ts';
import { createTopic, deleteTopics, KAFKA_BROKERS, produce, readCommitted, uniqueTopic } from '../../test/support/kafka.ts';
import { endMarker } from '../../test/support/cluster-nexmark-job.ts';
import { ClusterProcess, type TaskStatus } from './runner.ts';

const MODULE = new URL('../../test/support/cluster-nexmark-job.ts', import.meta.url).href;
const topics: string[] = [];
const processes: ClusterProcess[] = [];
let jobId = '';

afterAll(async () => {
  for (const p of processes) await p.stop().catch(() => undefined);
  const admin = new Admin({ clientId: 'spate-test', bootstrapBrokers: KAFKA_BROKERS });
  try {
    topics.push(...(await admin.listTopics()).filter((t) => t.startsWith(`spate.${jobId}.`)));
  } finally {
    await admin.close();
  }
  await deleteTopics(topics);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const running = (p: ClusterProcess): number[] => p.status().filter((t: TaskStatus) => t.phase === 'running').map((t) => t.task);

async function metric(p: ClusterProcess, line: RegExp): Promise<number | null> {
  const text = await (await fetch(`${p.metricsUrl}/metrics`)).text();
  for (const l of text.split('\n')) if (line.test(l)) return Number(l.slice(l.lastIndexOf(' ') + 1));
  return null;
}

it('two processes of one job from the API: metrics per task, a join moves tasks with their state, a leave hands them back; the output equals one process', async () => {
  const input = await createTopic(uniqueTopic('runner-in'), 4);
  const output = await createTopic(uniqueTopic('runner-out'), 1);
  const reference = await createTopic(uniqueTopic('runner-ref'), 1);
  topics.push(input, output, reference);
  jobId = `test-${input}`;
  const gen = new NexmarkGenerator({ rate: 1_000 });
  const events = Array.from({ length: 20_000 }, (_, i) => gen.event(i));
  const last = events.at(-1)!.dateTime;
  // Half the input now, half after the moves; then one end marker per partition.
  const half = events.length / 2;
  await produce(input, events.slice(0, half).map((e, i) => ({ value: e, partition: i % 4, timestamp: e.dateTime })));
  const args = [input, output, 'stream', '0', 'q5'];
  const connection = { brokers: KAFKA_BROKERS };

  const a = await ClusterProcess.start({ module: MODULE, args, jobId, connection, threads: 1, checkpointInterval: 300, metricsPort: 0, log: () => undefined });
  processes.push(a);
  await until(() => running(a).length === 4, 'the first process to run every task');
  expect(await metric(a, /^spate_cluster_tasks\{/)).toBe(4);
  expect(await metric(a, /^spate_cluster_task_phase\{.*task="2",phase="running"\}/)).toBe(1);
  expect(await metric(a, /^spate_cluster_task_restore_seconds\{.*task="2"\}/)).toBeGreaterThan(0);
  await sleep(1_000); // checkpoints with state in them

  const b = await ClusterProcess.start({ module: MODULE, args, jobId, connection, threads: 1, checkpointInterval: 300, metricsPort: 0, log: () => undefined });
  processes.push(b);
  await until(() => running(b).length === 2 && running(a).length === 2, 'the tasks to be divided');
  expect(await metric(a, /^spate_cluster_task_moves_total\{.*kind="revoked"\}/)).toBe(2);
  const moved = running(b);
  const state = (await (await fetch(`${b.metricsUrl}/api/cluster`)).json()) as { job: string; tasks: TaskStatus[] };
  expect(state.job).toBe(jobId);
  // The moved tasks resumed from the checkpoints their first owner took when it handed them over.
  for (const t of state.tasks) expect(t.restoredFrom, `task ${t.task}`).not.toBeNull();
  expect(state.tasks.map((t) => t.task).sort()).toEqual(moved);

  await produce(input, events.slice(half).map((e, i) => ({ value: e, partition: (half + i) % 4, timestamp: e.dateTime })));
  await produce(input, [0, 1, 2, 3].map((p) => ({ value: endMarker(last), partition: p, timestamp: last + 3_600_000 })));
  await b.stop(); // hands its tasks back
  await until(() => running(a).length === 4, 'the tasks to come back');

  const module = await loadPipelineModule(MODULE);
  await (await buildPipeline(module, [input, reference, 'bounded', '0', 'q5'])).run({ parallelism: 1, log: () => undefined });
  const want = (await readCommitted(reference)).map((r) => r.value).sort();
  expect(want.length).toBeGreaterThan(10);
  let got: string[] = [];
  await until(async () => (got = (await readCommitted(output, { waitStable: true })).map((r) => r.value).sort()).length >= want.length, 'the output', 60_000);
  await sleep(1_000);
  got = (await readCommitted(output, { waitStable: true })).map((r) => r.value).sort();
  expect(got).toEqual(want);
  await a.stop();
}, 180_000);

it('refuses a checkpoint interval a checkpoint’s Kafka transaction could not outlast', async () => {
  for (const checkpointInterval of [0, 300_001, Number.NaN]) {
    await expect(ClusterProcess.start({ module: 'file:///nowhere.ts', jobId: 'j', checkpointInterval })).rejects.toThrow(/checkpointInterval must be between 1 and 300000 ms/);
  }
});
