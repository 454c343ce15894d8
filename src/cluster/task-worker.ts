/**
 * A worker thread of a cluster process (see runner.ts): it loads the pipeline module once and
 * runs the tasks the process places on it, each as a job of its own (parallelism 1) whose
 * checkpoints live in the task's partition of the checkpoint topic.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { buildPipeline, loadPipelineModule } from '../api/define-pipeline.ts';
import type { RunningJob } from '../api/pipeline.ts';
import { CheckpointCoordinator } from '../checkpoint/coordinator.ts';
import { CheckpointTransactions } from '../connectors/kafka/checkpoint-transactions.ts';
import type { KafkaConnection } from '../connectors/kafka/client.ts';
import { KafkaCheckpointStorage } from './kafka-storage.ts';
import { type ClusterPlan, rewriteForTask, taskScope } from './plan.ts';
import type { FromTaskWorker, ToTaskWorker } from './runner.ts';

/** What a task worker is started with. */
export interface TaskWorkerInit {
  readonly module: string;
  readonly args: readonly string[];
  readonly plan: ClusterPlan;
  readonly connection: KafkaConnection;
  readonly checkpointInterval: number;
}

const init = workerData as TaskWorkerInit;
const port = parentPort!;
const post = (m: FromTaskWorker): void => port.postMessage(m);

interface Task {
  running: RunningJob | null;
  transactions: CheckpointTransactions | null;
  storage: KafkaCheckpointStorage | null;
  /** Asked to stop while opening: stop once open. */
  stop: { checkpoint: boolean } | null;
}

const tasks = new Map<number, Task>();

async function start(task: number): Promise<void> {
  const entry: Task = { running: null, transactions: null, storage: null, stop: null };
  tasks.set(task, entry);
  const log = (line: string): void => post({ type: 'log', line: line.startsWith('spate: ') ? `spate: task ${task}: ${line.slice(7)}` : `spate: task ${task}: ${line}` });
  const opening = performance.now();
  try {
    // One Kafka transaction per checkpoint holds the task's output, exchange records, state and
    // input offsets; opening the task's transactional ids fences (and aborts) every earlier owner.
    entry.transactions = new CheckpointTransactions({
      connection: init.connection,
      transactionalIdPrefix: `spate.${init.plan.jobId}.task.${task}`,
      // Open for about one interval plus the checkpoint's writing (at most 5 + 1 minutes: under the broker's 15-minute cap).
      transactionTimeoutMs: 2 * init.checkpointInterval + 60_000,
      log,
    });
    await entry.transactions.open();
    entry.storage = await KafkaCheckpointStorage.open({ connection: init.connection, topic: init.plan.checkpointTopic, partition: task, transactions: entry.transactions, log });
    entry.transactions.firstCheckpointId = await CheckpointCoordinator.firstId(entry.storage, undefined);
    if (entry.stop !== null) throw new Error('stopped while opening');
    const module = await loadPipelineModule(init.module);
    const p = await buildPipeline(module, init.args);
    rewriteForTask(p, init.plan, task, init.connection, entry.transactions);
    // A checkpoint that fails is not tolerated: the storage refuses writes once another process
    // took the task over (and retries what is transient), so this task is a zombie — it stops.
    const running = p.start({ parallelism: 1, checkpointDir: entry.storage, checkpointInterval: init.checkpointInterval, toleratedCheckpointFailures: 0, scope: taskScope(task), log });
    entry.running = running;
    const status = await waitRunning(running);
    post({
      type: 'started',
      task,
      restoredFrom: status.restoredFrom,
      ms: performance.now() - opening,
      stateBytes: entry.storage.openStats.bytes,
    });
    // Asked to stop while it opened (TypeScript cannot see that `stop` changed meanwhile).
    const asked = entry.stop as { checkpoint: boolean } | null;
    if (asked !== null) running.stop(asked.checkpoint ? {} : { checkpoint: false }).catch(() => undefined);
    await running.done;
    await entry.storage.close();
    await entry.transactions.close();
    tasks.delete(task);
    post({ type: 'stopped', task });
  } catch (error) {
    tasks.delete(task);
    await entry.storage?.close().catch(() => undefined);
    await entry.transactions?.close().catch(() => undefined);
    if (entry.stop !== null) post({ type: 'stopped', task });
    else post({ type: 'failed', task, error: (error as Error).stack ?? String(error) });
  }
}

/** Resolves once the job has opened every step (restored its state), or ended. */
async function waitRunning(running: RunningJob): Promise<{ restoredFrom: number | null }> {
  let ended = false;
  running.done.then(
    () => (ended = true),
    () => (ended = true),
  );
  for (;;) {
    const status = running.job.status();
    if (status.phase === 'running' || ended || status.phase === 'finished' || status.phase === 'failed') return { restoredFrom: status.restoredFrom?.id ?? null };
    await new Promise((r) => setTimeout(r, 20));
  }
}

function stop(task: number, checkpoint: boolean): void {
  const entry = tasks.get(task);
  if (entry === undefined) {
    post({ type: 'stopped', task });
    return;
  }
  entry.stop = { checkpoint };
  entry.running?.stop(checkpoint ? {} : { checkpoint: false }).catch(() => undefined);
}

port.on('message', (m: ToTaskWorker) => {
  if (m.type === 'start') void start(m.task);
  else if (m.type === 'stop') stop(m.task, m.checkpoint);
  else if (m.type === 'status') {
    post({
      type: 'status',
      tasks: [...tasks].map(([task, t]) => {
        const s = t.running?.job.status();
        const last = s?.checkpoints.at(-1);
        return { task, phase: s?.phase ?? 'restoring', lastCheckpoint: last?.id ?? null };
      }),
    });
  }
});
post({ type: 'ready' });
