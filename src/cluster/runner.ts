import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { buildPipeline, loadPipelineModule } from '../api/define-pipeline.ts';
import { type KafkaConnection, PlatformaticKafkaClient } from '../connectors/kafka/client.ts';
import { siblingEntry, startModuleWorker } from '../util/module-worker.ts';
import { ensureCheckpointTopic } from './kafka-storage.ts';
import { GroupMembership } from './membership.ts';
import { type ClusterPlan, planCluster } from './plan.ts';
import { ensureRepartitionTopic } from './repartition.ts';
import type { TaskWorkerInit } from './task-worker.ts';
import { type ClusterCounts, clusterPrometheusText, PROMETHEUS_CONTENT_TYPE } from '../ui/prometheus.ts';

/** Messages to a task worker. */
export type ToTaskWorker = { type: 'start'; task: number } | { type: 'stop'; task: number; checkpoint: boolean } | { type: 'status' };

/** Messages from a task worker. */
export type FromTaskWorker =
  | { type: 'ready' }
  | { type: 'log'; line: string }
  | { type: 'started'; task: number; restoredFrom: number | null; ms: number; stateBytes: number }
  | { type: 'stopped'; task: number }
  | { type: 'failed'; task: number; error: string }
  | { type: 'status'; tasks: Array<{ task: number; phase: string; lastCheckpoint: number | null }> };

/** Options of {@link ClusterProcess.start}. */
/**
 * The longest checkpoint interval of a cluster job (5 minutes): a checkpoint's Kafka transaction
 * stays open for about one interval plus its writing, under the broker's default
 * `transaction.max.timeout.ms` (15 minutes).
 */
export const MAX_CLUSTER_CHECKPOINT_INTERVAL = 300_000;

export interface ClusterOptions {
  /** The pipeline module (a file URL), built by every process and every worker thread. */
  readonly module: string;
  readonly args?: readonly string[];
  /** Processes started with the same job id (and module) are one job. */
  readonly jobId: string;
  readonly connection?: KafkaConnection;
  /** Worker threads running this process's tasks (default: the number of cores). */
  readonly threads?: number;
  /**
   * Milliseconds between each task's checkpoints (default 1000, at most {@link MAX_CLUSTER_CHECKPOINT_INTERVAL}):
   * a task's output becomes visible at its checkpoints, and each checkpoint is a Kafka transaction
   * that stays open for about one interval (Kafka caps how long a transaction may stay open).
   */
  readonly checkpointInterval?: number;
  /**
   * Serve `/metrics` (Prometheus text: each task's phase, restore time and bytes, task moves) and
   * `/api/cluster` (the tasks as JSON) on this port of 127.0.0.1 (0: any free port; see
   * {@link ClusterProcess.metricsUrl}).
   */
  readonly metricsPort?: number;
  readonly log?: (line: string) => void;
}

/** A task of this process, as the dashboard and the log see it. */
export interface TaskStatus {
  readonly task: number;
  /** `restoring`: its state is being read back from Kafka; `running`; `stopping` (handing over). */
  readonly phase: 'restoring' | 'running' | 'stopping';
  readonly since: number;
  /** The checkpoint it resumed from (null: a fresh start), and how long opening and restoring took. */
  readonly restoredFrom: number | null;
  readonly restoreMs: number | null;
  readonly stateBytes: number | null;
  readonly worker: number;
}

interface TaskEntry {
  status: TaskStatus;
  stopped: Array<() => void>;
  failures: number;
}

/**
 * One process of a cluster job (`spate run --cluster kafka://… --job-id ID`). Processes with the
 * same job id divide the job's tasks — task t is partition t of the input topics — through a
 * Kafka consumer group (KIP-848: a join or a leave moves only the tasks that change hands). Each
 * task runs as a job of its own in one of this process's worker threads; exchanges between tasks
 * go through the job's internal topics, and each task's checkpoints (state, positions, the
 * sinks' pre-committed transactions) through its partition of the checkpoint topic, so a task
 * restarts on any process from nothing but Kafka. Handing a task over: the old owner stops it
 * with a final checkpoint; the new owner opens its checkpoint storage, which fences the old one,
 * restores and replays from the checkpointed positions. A task that fails is restarted from its
 * last checkpoint (with backoff) as long as this process owns it.
 */
export class ClusterProcess {
  private readonly workers: Worker[] = [];
  private readonly tasks = new Map<number, TaskEntry>();
  private membership: GroupMembership | null = null;
  private readonly client: PlatformaticKafkaClient;
  private readonly log: (line: string) => void;
  private stopping: Promise<void> | null = null;
  private readonly counts: { -readonly [K in keyof ClusterCounts]: number } = { assigned: 0, revoked: 0, lost: 0, failed: 0 };
  private server: Server | null = null;
  /** Where `/metrics` and `/api/cluster` are served (with `metricsPort`), else null. */
  metricsUrl: string | null = null;
  private failure: ((error: Error) => void) | null = null;
  /** Resolves when the process has left the job (stop), rejects when a worker thread dies. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  private constructor(
    readonly plan: ClusterPlan,
    private readonly options: ClusterOptions,
  ) {
    this.log = options.log ?? ((line) => void process.stderr.write(line + '\n'));
    this.client = new PlatformaticKafkaClient(options.connection ?? {}, `spate-${plan.jobId}`);
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.failure = reject;
    });
    this.done.catch(() => undefined);
  }

  /** Plans the job, creates its internal topics if missing, starts the worker threads and joins the group. */
  static async start(options: ClusterOptions): Promise<ClusterProcess> {
    const interval = options.checkpointInterval;
    if (interval !== undefined && !(interval >= 1 && interval <= MAX_CLUSTER_CHECKPOINT_INTERVAL)) {
      throw new Error(`ClusterProcess: checkpointInterval must be between 1 and ${MAX_CLUSTER_CHECKPOINT_INTERVAL} ms, got ${String(interval)}`);
    }
    const module = await loadPipelineModule(options.module);
    const p = await buildPipeline(module, options.args ?? []);
    const client = new PlatformaticKafkaClient(options.connection ?? {}, 'spate-cluster-plan');
    let plan: ClusterPlan;
    try {
      plan = await planCluster(p, options.jobId, client);
    } finally {
      await client.close();
    }
    await ensureCheckpointTopic(options.connection, plan.checkpointTopic, plan.tasks);
    for (const ex of plan.exchanges) await ensureRepartitionTopic(options.connection, ex.topic, ex.partitions);
    const cluster = new ClusterProcess(plan, options);
    try {
      if (options.metricsPort !== undefined) await cluster.serveMetrics(options.metricsPort);
      await cluster.startWorkers(options.threads ?? availableParallelism());
    } catch (error) {
      // A port taken, a module that fails in a worker: nothing may stay open.
      cluster.stopping = Promise.resolve();
      await cluster.closeWorkers();
      throw error;
    }
    cluster.join();
    return cluster;
  }

  /** The Prometheus text of `/metrics`. */
  metrics(): string {
    return clusterPrometheusText(this.plan.jobId, this.status(), this.counts);
  }

  private async serveMetrics(port: number): Promise<void> {
    const server = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      if (request.method === 'GET' && path === '/metrics') {
        response.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(this.metrics());
      } else if (request.method === 'GET' && path === '/api/cluster') {
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ job: this.plan.jobId, tasks: this.status(), counts: this.counts }));
      } else {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /metrics and /api/cluster are served here\n');
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.metricsUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.log(`spate: job ${this.plan.jobId}: metrics at ${this.metricsUrl}/metrics`);
  }

  /** This process's tasks now. */
  status(): readonly TaskStatus[] {
    return [...this.tasks.values()].map((t) => t.status).sort((a, b) => a.task - b.task);
  }

  /**
   * Leaves the job: every task stops with a final checkpoint and the group hands it to the other
   * processes at once. Resolves when done.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.membership?.leave();
      await this.closeWorkers();
      this.resolveDone();
    })();
    return this.stopping;
  }

  private async startWorkers(n: number): Promise<void> {
    const init: TaskWorkerInit = {
      module: this.options.module,
      args: this.options.args ?? [],
      plan: this.plan,
      connection: this.options.connection ?? {},
      checkpointInterval: this.options.checkpointInterval ?? 1_000,
    };
    const ready: Array<Promise<void>> = [];
    for (let w = 0; w < n; w++) {
      const worker = startModuleWorker(siblingEntry(import.meta.url, 'task-worker'), { workerData: init });
      this.workers.push(worker);
      ready.push(
        new Promise((resolve, reject) => {
          worker.on('message', (m: FromTaskWorker) => {
            if (m.type === 'ready') resolve();
            else this.onMessage(w, m);
          });
          worker.once('error', (error) => {
            reject(error);
            this.fail(new Error(`worker thread ${w} of the cluster process failed: ${error.stack ?? error.message}`));
          });
          worker.once('exit', (code) => {
            if (this.stopping === null) this.fail(new Error(`worker thread ${w} of the cluster process exited (code ${code})`));
          });
        }),
      );
    }
    await Promise.all(ready);
  }

  private join(): void {
    this.membership = new GroupMembership(this.client, { groupId: this.plan.groupId, topic: this.plan.checkpointTopic, log: this.log }, {
      assigned: (partitions) => {
        for (const task of partitions) this.startTask(task);
      },
      revoked: async (partitions) => {
        await Promise.all(partitions.map((task) => this.stopTask(task, true)));
      },
      lost: async (partitions) => {
        await Promise.all(partitions.map((task) => this.stopTask(task, false)));
      },
    });
    this.membership.start();
  }

  private startTask(task: number, failures = 0): void {
    // The worker with the fewest tasks.
    const load = this.workers.map(() => 0);
    for (const t of this.tasks.values()) load[t.status.worker]!++;
    const worker = load.indexOf(Math.min(...load));
    this.tasks.set(task, { status: { task, phase: 'restoring', since: Date.now(), restoredFrom: null, restoreMs: null, stateBytes: null, worker }, stopped: [], failures });
    if (failures === 0) this.counts.assigned++;
    this.log(`spate: job ${this.plan.jobId}: task ${task} assigned to this process; restoring its state from ${this.plan.checkpointTopic}[${task}]`);
    this.post(worker, { type: 'start', task });
  }

  private stopTask(task: number, checkpoint: boolean): Promise<void> {
    const entry = this.tasks.get(task);
    if (entry === undefined) return Promise.resolve();
    entry.status = { ...entry.status, phase: 'stopping', since: Date.now() };
    if (checkpoint) this.counts.revoked++;
    else this.counts.lost++;
    this.log(`spate: job ${this.plan.jobId}: task ${task} ${checkpoint ? 'handed over: stopping it with a final checkpoint' : 'lost: stopping it at once'}`);
    return new Promise((resolve) => {
      entry.stopped.push(resolve);
      this.post(entry.status.worker, { type: 'stop', task, checkpoint });
    });
  }

  private onMessage(worker: number, m: FromTaskWorker): void {
    switch (m.type) {
      case 'log':
        this.log(m.line);
        return;
      case 'started': {
        const entry = this.tasks.get(m.task);
        if (entry === undefined) return;
        // Handed over while it opened: it stops at once (task-worker.ts), never runs here.
        if (entry.status.phase === 'stopping') return;
        entry.status = { ...entry.status, phase: 'running', restoredFrom: m.restoredFrom, restoreMs: m.ms, stateBytes: m.stateBytes };
        this.log(
          `spate: job ${this.plan.jobId}: task ${m.task} running on worker ${worker}: ${m.restoredFrom === null ? 'fresh start' : `restored checkpoint ${m.restoredFrom} (${m.stateBytes} bytes read from Kafka)`} in ${Math.round(m.ms)} ms`,
        );
        return;
      }
      case 'stopped': {
        const entry = this.ended(m.task);
        if (entry !== undefined && entry.status.phase !== 'stopping') this.log(`spate: job ${this.plan.jobId}: task ${m.task} ended`);
        return;
      }
      case 'failed': {
        const entry = this.ended(m.task);
        if (entry === undefined) return;
        this.counts.failed++;
        const owned = this.membership?.partitions.includes(m.task) === true && this.stopping === null && entry.status.phase !== 'stopping';
        if (/taken over|fenced/i.test(m.error)) {
          this.log(`spate: job ${this.plan.jobId}: task ${m.task} was taken over by another process; this process no longer runs it`);
          return;
        }
        if (!owned) return;
        const delay = Math.min(30_000, 500 * 2 ** entry.failures);
        this.log(`spate: job ${this.plan.jobId}: task ${m.task} failed; restarting it from its last checkpoint in ${delay} ms: ${m.error}`);
        setTimeout(() => {
          if (this.stopping === null && this.membership?.partitions.includes(m.task) === true && !this.tasks.has(m.task)) this.startTask(m.task, entry.failures + 1);
        }, delay).unref();
        return;
      }
      default:
        return;
    }
  }

  /** A task's job has ended in its worker: forgotten, and whoever waits for its stop is told. */
  private ended(task: number): TaskEntry | undefined {
    const entry = this.tasks.get(task);
    if (entry === undefined) return undefined;
    this.tasks.delete(task);
    for (const resolve of entry.stopped) resolve();
    return entry;
  }

  private post(worker: number, m: ToTaskWorker): void {
    this.workers[worker]!.postMessage(m);
  }

  private fail(error: Error): void {
    if (this.stopping !== null) return;
    this.stopping = (async () => {
      this.membership?.abandon();
      await this.closeWorkers();
    })();
    this.failure?.(error);
  }

  private async closeWorkers(): Promise<void> {
    this.server?.close();
    await Promise.all(this.workers.map((w) => w.terminate()));
    await this.client.close().catch(() => undefined);
  }
}
