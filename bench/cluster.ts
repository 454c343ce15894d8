/**
 * Cluster jobs (`spate run --cluster`) against the broker of `SPATE_KAFKA_BROKERS` (default: the
 * test broker of scripts/services.sh), on this machine:
 *
 * 1. Throughput with 1 and 2 processes (one worker thread each): N NEXMark events in a topic of 4
 *    partitions (4 tasks), then the job over them — `q2` (a filter, no exchange), `q2-keyed` (the
 *    same after a keyed exchange of every event: the cost of an exchange topic per record) and
 *    `q5,q8` (windows and a window join behind keyed exchanges). Two rates: steady — the input
 *    consumed between 40 % and 90 % of it, from the offsets the sources commit to a monitoring
 *    group at their checkpoints (past the start, where tasks still move between processes) — and
 *    end to end — from the moment every task runs to the moment the output holds every result
 *    (committed, read_committed; as many as a plain one-thread run of the same module gives).
 * 2. Rebalance pause: one process runs the job; a second joins; for each task that moves, the time
 *    from the first process stopping it (final checkpoint) to the second running it (restored).
 * 3. Failover: the second process is killed with SIGKILL; the time until its tasks run again on
 *    the first (the group's session timeout, then fencing and restore).
 *
 * `npm run bench:cluster [events=4000000] ['q2 q2-keyed q5,q8']` prints markdown tables. The broker shares the cores.
 */
import { cpus } from 'node:os';
import { Admin } from '@platformatic/kafka';
import { buildPipeline, loadPipelineModule } from '../src/api/define-pipeline.ts';
import { KafkaSink, Pipeline } from '../src/index.ts';
import { NexmarkSource } from '../src/nexmark/source.ts';
import { createTopic, deleteTopics, KAFKA_BROKERS, produce, readCommitted, uniqueTopic } from '../test/support/kafka.ts';
import { endMarker } from '../test/support/cluster-nexmark-job.ts';
import { type ClusterMember, clusterMember } from '../test/support/cluster.ts';

const n = Number(process.argv[2] ?? 4_000_000);
/** The jobs measured (default all): `q2`, `q2-keyed`, `q5,q8`, separated by spaces in one argument. */
const measured = (process.argv[3] ?? 'q2 q2-keyed q5,q8').split(' ').filter((j) => j.length > 0);
const PARTITIONS = 4;
const MODULE_URL = new URL('../test/support/cluster-nexmark-job.ts', import.meta.url);
const topics: string[] = [];
const jobs: string[] = [];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A process of the job (one worker thread). */
const member = (jobId: string, args: readonly string[]): ClusterMember => clusterMember(jobId, args);

/** When each task last started running on `m` (after `since`). */
function runningAt(m: ClusterMember, task: number, since = 0): number | undefined {
  return m.lines.find((l) => l.at > since && new RegExp(`task ${task} running on worker`).test(l.line))?.at;
}

async function untilTrue(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function count(topic: string): Promise<number> {
  return (await readCommitted(topic)).length;
}

async function stopAll(members: readonly ClusterMember[]): Promise<void> {
  for (const m of members) m.child.kill('SIGTERM');
  await Promise.all(members.map((m) => Promise.race([m.done, sleep(30_000).then(() => m.child.kill('SIGKILL'))])));
}

async function main(): Promise<void> {
  const input = await createTopic(uniqueTopic('bench-cluster-in'), PARTITIONS);
  topics.push(input);
  const fill = new Pipeline();
  fill.source(new NexmarkSource({ events: n }), { id: 'events' }).sink(new KafkaSink({ topic: input, guarantee: 'at-least-once', partition: (e: { dateTime: number }, p) => Math.floor(e.dateTime / 7) % p }), { id: 'in' });
  await fill.run({ checkpointInterval: 1_000 });
  const last = (await readCommitted(input)).reduce((max, r) => Math.max(max, r.timestamp), 0);
  await produce(input, Array.from({ length: PARTITIONS }, (_, p) => ({ value: endMarker(last), partition: p, timestamp: last + 3_600_000 })));

  console.log(`Cluster jobs: ${n.toLocaleString('en-US')} NEXMark events in ${PARTITIONS} partitions (${PARTITIONS} tasks), one worker thread per process, checkpoints every second; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}) shared with the Kafka broker, Node ${process.version}\n`);
  console.log('| queries | plain job, 1 thread | 1 process, steady | 2 processes, steady | 2 / 1 | 1 process, end to end | 2 processes, end to end | 2 / 1 |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  const perEvent: Record<string, number> = {};
  const admin = new Admin({ clientId: 'spate-bench', bootstrapBrokers: KAFKA_BROKERS });
  /** The input consumed so far: the offsets the tasks' sources committed to `group` at their checkpoints. */
  const consumed = async (group: string): Promise<number> => {
    const [g] = await admin.listConsumerGroupOffsets({ groups: [group] });
    return (g?.topics ?? []).filter((t) => t.name === input).flatMap((t) => t.partitions).reduce((sum, p) => sum + Math.max(0, Number(p.committedOffset)), 0);
  };
  for (const queries of measured) {
    const module = await loadPipelineModule(MODULE_URL.href);
    const reference = await createTopic(uniqueTopic('bench-cluster-ref'), 1);
    topics.push(reference);
    const p = await buildPipeline(module, [input, reference, 'bounded', '0', queries]);
    const started = Date.now();
    await p.run({ parallelism: 1, log: () => undefined });
    const plain = n / ((Date.now() - started) / 1000);
    const want = await count(reference);
    const steady: number[] = [];
    const total: number[] = [];
    for (const processes of [1, 2]) {
      const jobId = `bench-${queries.replace(/,/g, '-')}-${processes}-${Date.now().toString(36)}`;
      jobs.push(jobId);
      const output = await createTopic(uniqueTopic('bench-cluster-out'), 1);
      topics.push(output);
      const group = `spate-bench-progress-${jobId}`;
      const members = Array.from({ length: processes }, () => member(jobId, [input, output, 'stream', '0', queries, group]));
      await untilTrue(() => Array.from({ length: PARTITIONS }, (_, t) => t).every((t) => members.some((m) => runningAt(m, t) !== undefined)), 120_000, 'every task to run');
      const running = Date.now();
      // Progress samples until every result is committed. The output is read (which costs the
      // broker and this process CPU the job would otherwise have) only once the input is consumed.
      const samples: Array<{ at: number; done: number }> = [];
      let lastCheck = 0;
      for (;;) {
        const done = await consumed(group);
        samples.push({ at: Date.now(), done });
        if (done >= n && Date.now() - lastCheck > 500) {
          lastCheck = Date.now();
          if ((await count(output)) >= want) break;
        }
        if (Date.now() - running > 600_000) throw new Error(`timed out waiting for ${want} results`);
        await sleep(100);
      }
      total.push(n / ((Date.now() - running) / 1000));
      // The steady rate: from 40 % to 90 % of the input (past the start, where tasks may still move between processes).
      const at = (fraction: number): number => samples.find((x) => x.done >= fraction * n)?.at ?? NaN;
      steady.push((0.5 * n) / ((at(0.9) - at(0.4)) / 1000));
      await stopAll(members);
      if (queries !== 'q5,q8') perEvent[queries] = 1e6 / steady[0]!;
    }
    const f = (x: number): string => Math.round(x).toLocaleString('en-US');
    console.log(`| ${queries} | ${f(plain)} | ${f(steady[0]!)} | ${f(steady[1]!)} | ${(steady[1]! / steady[0]!).toFixed(2)}× | ${f(total[0]!)} | ${f(total[1]!)} | ${(total[1]! / total[0]!).toFixed(2)}× |`);
  }
  await admin.close();
  console.log('\nEvents per second. Steady: the input consumed between 40 % and 90 % of it (offsets the sources commit at their checkpoints). End to end: from the moment every task runs to the moment the output holds every result (exchanges, windows and the last commits included).');
  if (perEvent['q2-keyed'] !== undefined && perEvent['q2'] !== undefined) {
    console.log(`An exchange topic per event (q2-keyed − q2, one process, steady): ${(perEvent['q2-keyed'] - perEvent['q2']).toFixed(2)} µs (written in a transaction, committed, fetched and decoded).\n`);
  }

  // Rebalance pause and failover, on q5,q8 slowed down so that both land mid-stream.
  const jobId = `bench-moves-${Date.now().toString(36)}`;
  jobs.push(jobId);
  const output = await createTopic(uniqueTopic('bench-cluster-moves'), 1);
  topics.push(output);
  const slow = [input, output, 'stream', '20', 'q5,q8'];
  const first = member(jobId, slow);
  await untilTrue(() => Array.from({ length: PARTITIONS }, (_, t) => t).every((t) => runningAt(first, t) !== undefined), 120_000, 'the first process to run every task');
  await sleep(2_000);
  const joinedAt = Date.now();
  const second = member(jobId, slow);
  await untilTrue(() => Array.from({ length: PARTITIONS }, (_, t) => t).some((t) => runningAt(second, t) !== undefined), 60_000, 'the second process to run a task');
  await sleep(3_000);
  const moved = Array.from({ length: PARTITIONS }, (_, t) => t).filter((t) => runningAt(second, t) !== undefined);
  const pauses = moved.map((t) => {
    const stopped = first.lines.find((l) => l.at > joinedAt && new RegExp(`task ${t} handed over`).test(l.line))!.at;
    return runningAt(second, t)! - stopped;
  });
  const killedAt = Date.now();
  second.child.kill('SIGKILL');
  await second.done;
  await untilTrue(() => moved.every((t) => runningAt(first, t, killedAt) !== undefined), 60_000, 'the survivor to run the killed process’s tasks');
  const failover = Math.max(...moved.map((t) => runningAt(first, t, killedAt)! - killedAt));
  await stopAll([first]);
  console.log('| event | tasks | time (ms) |');
  console.log('|---|---:|---:|');
  console.log(`| a process joins: a moved task stops (final checkpoint) → runs on the new process (restored), max | ${moved.length} | ${Math.round(Math.max(...pauses))} |`);
  console.log(`| a process joins: from its start to its first task running | ${moved.length} | ${Math.round(Math.min(...moved.map((t) => runningAt(second, t)!)) - joinedAt)} |`);
  console.log(`| kill -9 of a process → its tasks run again elsewhere (restored), max | ${moved.length} | ${Math.round(failover)} |`);
}

async function cleanup(): Promise<void> {
  const admin = new Admin({ clientId: 'spate-bench', bootstrapBrokers: KAFKA_BROKERS });
  try {
    const all = await admin.listTopics();
    topics.push(...all.filter((t) => jobs.some((j) => t.startsWith(`spate.${j}.`))));
  } finally {
    await admin.close();
  }
  await deleteTopics(topics);
}

main()
  .then(cleanup)
  .catch(async (error: unknown) => {
    console.error(error);
    await cleanup().catch(() => undefined);
    process.exit(1);
  });
