/**
 * One job on three processes (issue 11 point 5): NEXMark events produced over time into a topic
 * of 6 partitions; `spate run --cluster` processes compute q5, q7 and q8 into an output topic.
 * One process is killed with SIGKILL mid-stream, later a new one joins, later one leaves
 * cleanly (SIGTERM): the committed output equals a single-process run's as a multiset, and the
 * test reports how long the tasks of the killed process produced nothing (failover).
 *
 * Disruptive only in load (four processes on the machine's cores): it runs alone.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { buildPipeline, loadPipelineModule } from '../../src/api/define-pipeline.ts';
import { NexmarkGenerator } from '../../src/nexmark/generator.ts';
import { createTopic, deleteTopics, produce, readCommitted, uniqueTopic } from '../support/kafka.ts';
import { endMarker } from '../support/cluster-nexmark-job.ts';
import { type ClusterMember, clusterMember } from '../support/cluster.ts';

const PARTITIONS = 6;
const topics: string[] = [];
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await deleteTopics(topics);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A process of the job, remembered so that a failed test kills it. */
function member(jobId: string, args: readonly string[]): ClusterMember {
  const m = clusterMember(jobId, args, { checkpointInterval: 500 });
  children.push(m.child);
  return m;
}

/** The tasks a process runs now, from its log. */
function tasksOf(m: ClusterMember): Set<number> {
  const out = new Set<number>();
  for (const { line } of m.lines) {
    const running = /task (\d+) running on worker/.exec(line);
    if (running !== null) out.add(Number(running[1]));
    const gone = /task (\d+) (handed over|lost|was taken over)/.exec(line);
    if (gone !== null) out.delete(Number(gone[1]));
  }
  return out;
}

/** The rows of `a` not in `b`, as multisets (at most 20, to read). */
function difference(a: readonly string[], b: readonly string[]): string[] {
  const left = new Map<string, number>();
  for (const r of b) left.set(r, (left.get(r) ?? 0) + 1);
  const out: string[] = [];
  for (const r of a) {
    const k = left.get(r) ?? 0;
    if (k > 0) left.set(r, k - 1);
    else if (out.length < 20) out.push(r);
  }
  return out;
}

/** The rows of an output topic, as sorted comparable strings. */
async function rows(topic: string): Promise<string[]> {
  return (await readCommitted(topic, { waitStable: true })).map((r) => r.value).sort();
}

it('three processes, one killed, one joining, one leaving: the committed output equals a single-process run', async () => {
  const input = await createTopic(uniqueTopic('cluster-in'), PARTITIONS);
  const reference = await createTopic(uniqueTopic('cluster-ref'), 1);
  const output = await createTopic(uniqueTopic('cluster-out'), 3);
  topics.push(input, reference, output);
  const jobId = `test-${input}`;

  // 90 s of event time at 1 000 events/s, produced in 30 chunks over ~12 s: partition i % 6.
  const gen = new NexmarkGenerator({ rate: 1_000 });
  const events = Array.from({ length: 90_000 }, (_, i) => gen.event(i));
  const last = events.at(-1)!.dateTime;
  const chunk = events.length / 30;

  const a = member(jobId, [input, output, 'stream', '60']);
  const b = member(jobId, [input, output, 'stream', '60']);
  const c = member(jobId, [input, output, 'stream', '60']);
  const producing = (async () => {
    for (let k = 0; k < 30; k++) {
      const part = events.slice(k * chunk, (k + 1) * chunk);
      await produce(input, part.map((e, i) => ({ value: e, partition: (k * chunk + i) % PARTITIONS, timestamp: e.dateTime })));
      await sleep(400);
    }
    await produce(input, Array.from({ length: PARTITIONS }, (_, p) => ({ value: endMarker(last), partition: p, timestamp: last + 3_600_000 })));
  })();
  topics.push(...[0, 1].map((i) => `spate.${jobId}.exchange.q8.${i}`), `spate.${jobId}.exchange.q5-counts.0`, `spate.${jobId}.exchange.q5-hottest.0`, `spate.${jobId}.exchange.q7-highest.0`, `spate.${jobId}.checkpoints`);

  // Every task running somewhere, then some output committed.
  const deadline = Date.now() + 60_000;
  while (tasksOf(a).size + tasksOf(b).size + tasksOf(c).size < PARTITIONS && Date.now() < deadline) await sleep(100);
  expect(tasksOf(a).size + tasksOf(b).size + tasksOf(c).size, [...a.lines, ...b.lines, ...c.lines].map((l) => l.line).join('\n')).toBe(PARTITIONS);
  await sleep(3_000);

  // kill -9 the process with the most tasks.
  const victim = [a, b, c].sort((x, y) => tasksOf(y).size - tasksOf(x).size)[0]!;
  const survivors = [a, b, c].filter((m) => m !== victim);
  const orphaned = [...tasksOf(victim)];
  expect(orphaned.length).toBeGreaterThan(0);
  const killedAt = Date.now();
  victim.child.kill('SIGKILL');
  await victim.done;
  while (!orphaned.every((t) => survivors.some((s) => tasksOf(s).has(t))) && Date.now() < killedAt + 40_000) await sleep(50);
  const takenAt = (t: number): number => Math.min(...survivors.map((s) => s.lines.find((l) => l.at > killedAt && new RegExp(`task ${t} running on worker`).test(l.line))?.at ?? Infinity));
  const failover = Math.max(...orphaned.map(takenAt)) - killedAt;
  console.log(`cluster: the ${orphaned.length} task(s) of the killed process ran again elsewhere after ${failover} ms (restored from their checkpoints in Kafka)`);
  const logs = (): string => [a, b, c].map((m, i) => m.lines.map((l) => `${'abc'[i]} ${l.at - killedAt} ${l.line}`).join('\n')).join('\n');
  expect(failover, logs()).toBeLessThan(15_000);
  const restoreLines = survivors.flatMap((s) => s.lines).filter((l) => l.at > killedAt && /restored checkpoint/.test(l.line));
  expect(restoreLines.length, `the orphaned tasks restored their state\n${logs()}`).toBeGreaterThanOrEqual(orphaned.length);

  // A new process joins: the group gives it some tasks, handed over with final checkpoints.
  const d = member(jobId, [input, output, 'stream', '60']);
  const joinedAt = Date.now();
  while (tasksOf(d).size === 0 && Date.now() < joinedAt + 30_000) await sleep(50);
  expect(tasksOf(d).size, d.lines.map((l) => l.line).join('\n')).toBeGreaterThan(0);
  console.log(`cluster: a joining process ran its first task after ${Date.now() - joinedAt} ms`);

  // One of the first processes leaves cleanly.
  const leaver = survivors[0]!;
  leaver.child.kill('SIGTERM');
  const left = await leaver.done;
  expect(left.code, leaver.lines.map((l) => l.line).join('\n')).toBe(0);
  await producing;

  // The single-process reference: the same module, bounded, in this process.
  const module = await loadPipelineModule(new URL('../support/cluster-nexmark-job.ts', import.meta.url).href);
  const p = await buildPipeline(module, [input, reference, 'bounded']);
  await p.run({ parallelism: 1, log: () => undefined });
  const want = await rows(reference);
  expect(want.filter((v) => v.includes('"q5"')).length).toBeGreaterThan(20);
  expect(want.filter((v) => v.includes('"q7"')).length).toBeGreaterThan(5);
  expect(want.filter((v) => v.includes('"q8"')).length).toBeGreaterThan(5);

  // The cluster's output grows to the reference's (the remaining processes finish the input).
  let got: string[] = [];
  const end = Date.now() + 90_000;
  while (Date.now() < end) {
    got = await rows(output);
    if (got.length >= want.length) break;
    await sleep(1_000);
  }
  await sleep(2_000);
  got = await rows(output);
  for (const m of [survivors[1]!, d]) m.child.kill('SIGTERM');
  const perQuery = (rs: readonly string[]): string => ['q5', 'q7', 'q8'].map((q) => `${q} ${rs.filter((r) => r.includes(`"q":"${q}"`)).length}`).join(', ');
  expect({ extra: difference(got, want), missing: difference(want, got) }, `cluster: ${perQuery(got)}; reference: ${perQuery(want)}`).toEqual({ extra: [], missing: [] });
}, 240_000);
