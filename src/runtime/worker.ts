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
import type { StepSignature } from '../plan/graph.ts';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker): void => port.postMessage(m);

const log0 = (line: string): void => post({ type: 'log', line });

async function main(): Promise<void> {
  const module = await loadPipelineModule(init.module);
  const p = await buildPipeline(module, init.args);
  p.graph.finalize();
  checkSamePlan([...p.graph.signatures()], init.signatures, init.index, init.sameLoader, log0);
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
    ...(init.options.scope === undefined ? {} : { scope: init.options.scope }),
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
  const reporting = setInterval(() => post({ type: 'metrics', metrics: executor.metrics(), deadLetters: env.deadLetterLog.takeFresh() }), 200);
  try {
    await executor.run();
  } catch (error) {
    clearInterval(reporting);
    await executor.close().catch(() => undefined);
    throw error;
  }
  clearInterval(reporting);
  await executor.close();
  post({ type: 'closed', metrics: executor.metrics(), deadLetters: env.deadLetterLog.takeFresh() });
}

/**
 * Refuses a worker whose rebuild of the pipeline differs from the coordinator's: a step missing,
 * added, moved, or built with other functions or inputs — the signature of a step whose code
 * depends on the thread (a value only the main thread sets, the time, randomness) differs.
 */
function checkSamePlan(
  mine: ReadonlyArray<readonly [string, StepSignature]>,
  theirs: ReadonlyArray<readonly [string, StepSignature]>,
  index: number,
  compareCode: boolean,
  log: (line: string) => void,
): void {
  const expected = new Map(theirs);
  const built = new Map(mine);
  for (const [id] of theirs) {
    if (!built.has(id)) throw new Error(`worker ${index} built the pipeline module without step '${id}': building must not depend on the thread`);
  }
  for (const [id, signature] of mine) {
    const want = expected.get(id);
    if (want === undefined) throw new Error(`worker ${index} built the pipeline module with a step '${id}' the main thread does not have: building must not depend on the thread`);
    const why = 'a step must be built the same in every thread — not from a value set only in the main thread, the time or randomness';
    if (want.structure !== signature.structure) throw new StepFailure(id, undefined, new Error(`built differently in worker ${index} (its inputs or partitioning differ): ${why}`));
    if (want.code !== signature.code) {
      const message = `built differently in worker ${index} (the code of its functions differs): ${why}`;
      // Function text compares only if both threads loaded the module the same way.
      if (compareCode) throw new StepFailure(id, undefined, new Error(message));
      log(`spate: warning: step '${id}' may be ${message} (or the main thread's copy of the module was transpiled by another loader)`);
    }
  }
  if (mine.map(([id]) => id).join() !== theirs.map(([id]) => id).join()) throw new Error(`worker ${index} built the steps of the pipeline module in another order`);
}

main().catch((error: unknown) => {
  const step = error instanceof StepFailure ? error.step : undefined;
  post({ type: 'failed', message: errorMessage(error), step, stack: (error as Error).stack });
});
