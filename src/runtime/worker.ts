/**
 * The entry of a worker thread of a parallel job (see worker-execution.ts): it loads the pipeline
 * module, rebuilds the plan, checks it against the coordinator's, runs instance `index` of every
 * task placed on workers, and talks to the coordinator over its parent port.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { buildPipeline, loadPipelineModule } from '../api/define-pipeline.ts';
import { checkpointDir, writeInstanceFile } from '../checkpoint/manifest.ts';
import { FileCheckpointStorage } from '../checkpoint/storage.ts';
import { physicalPlan } from '../plan/physical.ts';
import { systemClock } from '../time/clock.ts';
import type { Barrier } from './barrier.ts';
import { DeadLetterLog, errorMessage, StepFailure } from './dead-letters.ts';
import type { InstanceSnapshot, RuntimeEnv } from './env.ts';
import { Executor } from './executor.ts';
import { portChannels } from './port-channels.ts';
import type { FromWorker, ToWorker, WorkerInit } from './worker-protocol.ts';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker): void => port.postMessage(m);

async function main(): Promise<void> {
  const module = await loadPipelineModule(init.module);
  const p = await buildPipeline(module, init.args);
  p.graph.finalize();
  const fingerprint = p.graph.fingerprint();
  if (fingerprint !== init.fingerprint) {
    throw new Error(
      `the pipeline module built another plan in worker ${init.index} (fingerprint ${fingerprint}, expected ${init.fingerprint}): ` +
        'building must give the same steps, ids and edges every time (do not branch on the thread, the time or randomness)',
    );
  }
  const plan = physicalPlan(p.graph, init.options.parallelism);
  const storage = init.storage === null ? null : new FileCheckpointStorage(init.storage);
  const barriers = new Map<number, { barrier: Barrier; capture: boolean }>();
  const log = (line: string): void => post({ type: 'log', line });
  const send = async (id: number, step: string, instance: number, snapshot: InstanceSnapshot, pauseMs: number): Promise<void> => {
    const resolved: InstanceSnapshot = snapshot.operator instanceof Promise ? { ...snapshot, operator: await snapshot.operator } : snapshot;
    const b = barriers.get(id);
    if (storage !== null && b !== undefined && !b.capture) {
      const ref = await writeInstanceFile(storage, checkpointDir(id, b.barrier.kind), step, instance, resolved);
      post({ type: 'written', id, step, instance, ref, pauseMs });
    } else post({ type: 'snapshot', id, step, instance, snapshot: resolved, pauseMs });
  };
  const env: RuntimeEnv = {
    clock: systemClock,
    maxParallelism: init.options.maxParallelism,
    batchSize: init.options.batchSize,
    failFast: init.options.errors === 'fail',
    log,
    deadLetterLog: new DeadLetterLog(log),
    snapshots: {
      add: (id, step, instance, snapshot, pauseMs) => {
        send(id, step, instance, snapshot, pauseMs).catch((error: unknown) => post({ type: 'snapshot-failed', id, message: `step '${step}': ${errorMessage(error)}` }));
      },
    },
    allowDroppedState: init.options.allowDroppedState,
    warned: new Set(),
  };
  const executor: Executor = new Executor({
    graph: p.graph,
    plan,
    env,
    hosts: (task, instance) => task.placement === 'workers' && instance === init.index,
    channels: portChannels(init.writers, init.readers, env.batchSize, () => executor.wakeUp()),
    restore: init.restore,
    splits: (step) => init.splits[step] ?? [],
  });
  executor.build();
  executor.onEnded = () => post({ type: 'ended' });
  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'inject':
        barriers.set(m.barrier.id, { barrier: m.barrier, capture: m.capture });
        executor.injectBarrier(m.barrier);
        break;
      case 'complete':
        for (const id of barriers.keys()) if (id <= m.id) barriers.delete(id);
        executor.complete(m.id);
        break;
      case 'abort':
        barriers.delete(m.id);
        executor.abort(m.id);
        break;
      case 'pause':
        executor.pause();
        break;
      case 'halt':
        executor.halt();
        break;
      case 'finish':
        executor.finish();
        break;
    }
  });
  await executor.open();
  post({ type: 'opened' });
  const reporting = setInterval(() => post({ type: 'metrics', metrics: executor.metrics() }), 200);
  try {
    await executor.run();
  } catch (error) {
    clearInterval(reporting);
    await executor.close().catch(() => undefined);
    throw error;
  }
  clearInterval(reporting);
  await executor.close();
  post({ type: 'closed', metrics: executor.metrics() });
}

main().catch((error: unknown) => {
  const step = error instanceof StepFailure ? error.step : undefined;
  post({ type: 'failed', message: errorMessage(error), step, stack: (error as Error).stack });
});
