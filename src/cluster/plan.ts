import type { Pipeline } from '../api/pipeline.ts';
import type { KafkaClient, KafkaConnection } from '../connectors/kafka/client.ts';
import { type CheckpointTransactions, joinsCheckpointTransactions } from '../connectors/kafka/checkpoint-transactions.ts';
import { KafkaSource } from '../connectors/kafka/source.ts';
import { type InputEdge, MAIN_PORT, StepNode } from '../plan/graph.ts';
import type { Sink } from '../runtime/sink.ts';
import type { Source, SourceContext, Split } from '../runtime/source.ts';
import { RepartitionSink, RepartitionSource } from './repartition.ts';

/**
 * How one pipeline runs as a cluster job: `tasks` tasks, task t reading partition t of every
 * input topic (that has it) and partition t of every keyed repartition topic, each task one
 * Spate job of its own (parallelism 1) with its checkpoints in partition t of the checkpoint
 * topic. Computed the same way by every process from the pipeline and the input topics.
 */
export interface ClusterPlan {
  readonly jobId: string;
  readonly tasks: number;
  readonly maxKeyGroups: number;
  readonly checkpointTopic: string;
  /** The consumer group whose members divide the tasks (the checkpoint topic's partitions). */
  readonly groupId: string;
  readonly inputs: ReadonlyArray<{ readonly step: string; readonly topics: ReadonlyArray<{ readonly topic: string; readonly partitions: number }> }>;
  /** One internal topic per exchange between tasks: keyed (`tasks` partitions) or global (1). */
  readonly exchanges: ReadonlyArray<{ readonly step: string; readonly input: number; readonly topic: string; readonly partitions: number; readonly keyed: boolean }>;
}

/** A job id: letters, digits, `.`, `_` and `-` (it names topics, a group and transactional ids). */
export function checkJobId(jobId: string): string {
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(jobId)) throw new Error(`job id '${jobId}' may only contain letters, digits, '.', '_' and '-' (1 to 100 of them)`);
  return jobId;
}

/** The part of a topic name that stands for a step id (topic names allow no ':'). */
const topicPart = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, '_');

/**
 * Plans a cluster job from a built pipeline (not yet run): finds its Kafka sources and their
 * partition counts, and the exchanges that must cross processes. Refuses, naming the step, what
 * cannot be divided between processes: a source other than Kafka, a broadcast.
 */
export async function planCluster(p: Pipeline, jobId: string, client: KafkaClient): Promise<ClusterPlan> {
  checkJobId(jobId);
  p.graph.finalize();
  const inputs: Array<{ step: string; topics: Array<{ topic: string; partitions: number }> }> = [];
  for (const node of p.graph.nodes) {
    if (node.spec.type !== 'source') continue;
    const source = node.spec.create();
    if (!(source instanceof KafkaSource)) {
      throw new Error(`step '${node.id}' reads a ${source.constructor.name}, which cannot be divided between the processes of a cluster job; only Kafka sources can (their partitions are the job's tasks)`);
    }
    const topics = [];
    for (const topic of source.topics) topics.push({ topic, partitions: await client.partitions(topic) });
    inputs.push({ step: node.id, topics });
  }
  if (inputs.length === 0) throw new Error('a cluster job needs a Kafka source: its partitions are the tasks the processes divide');
  const tasks = Math.max(...inputs.flatMap((i) => i.topics.map((t) => t.partitions)));
  const maxKeyGroups = p.options.maxParallelism ?? 128;
  if (tasks > maxKeyGroups) throw new Error(`the input topics have ${tasks} partitions, more than the job's ${maxKeyGroups} key groups (maxParallelism): raise maxParallelism`);
  const exchanges: Array<{ step: string; input: number; topic: string; partitions: number; keyed: boolean }> = [];
  for (const node of p.graph.nodes) {
    node.inputs.forEach((edge, input) => {
      const type = edge.partitioning.type;
      if (type === 'broadcast') throw new Error(`step '${node.id}' reads a broadcast stream, which a cluster job cannot send between processes yet`);
      if (type !== 'hash' && type !== 'global') return;
      const topic = `spate.${jobId}.exchange.${topicPart(node.id)}.${input}`;
      exchanges.push({ step: node.id, input, topic, partitions: type === 'hash' ? tasks : 1, keyed: type === 'hash' });
    });
  }
  return { jobId, tasks, maxKeyGroups, checkpointTopic: `spate.${jobId}.checkpoints`, groupId: `spate.${jobId}`, inputs, exchanges };
}

/**
 * Turns a freshly built pipeline into task `task` of the cluster job: its Kafka sources read
 * partition `task` of their topics only; every exchange of the plan becomes a sink into the
 * exchange's topic (records to the partition owning their key group) and a source reading the
 * task's partition of it (task 0 reads a global exchange's only partition); its Kafka sources,
 * Kafka sinks and exchange sinks write into the task's checkpoint transactions (offsets, output
 * and exchange records in the transaction of each checkpoint, which its manifest commits). The
 * pipeline must have been built by the same module and arguments as the one `plan` came from (the
 * step ids are checked).
 */
export function rewriteForTask(p: Pipeline, plan: ClusterPlan, task: number, connection: KafkaConnection | undefined, transactions: CheckpointTransactions): void {
  const graph = p.graph;
  graph.finalize();
  const joined = <X>(x: X): X => {
    if (joinsCheckpointTransactions(x)) x.joinCheckpointTransactions(transactions);
    return x;
  };
  for (const input of plan.inputs) {
    const node = graph.nodes.find((n) => n.id === input.step);
    if (node === undefined || node.spec.type !== 'source') throw new Error(`the pipeline differs from the cluster plan: no source step '${input.step}'`);
    const create = node.spec.create;
    replaceSpec(node, { ...node.spec, create: () => new TaskPartitionSource(joined(create()), task) });
  }
  // The task's Kafka sinks write into its checkpoint transactions (as the exchange sinks below do).
  for (const node of graph.nodes) {
    if (node.spec.type !== 'sink') continue;
    const create = node.spec.create;
    replaceSpec(node, { ...node.spec, create: () => joined(create()) });
  }
  for (const ex of plan.exchanges) {
    const node = graph.nodes.find((n) => n.id === ex.step);
    const edge = node?.inputs[ex.input];
    if (node === undefined || edge === undefined) throw new Error(`the pipeline differs from the cluster plan: no input ${ex.input} of step '${ex.step}'`);
    const key = edge.partitioning.type === 'hash' ? edge.partitioning.key : undefined;
    const reach = connection === undefined ? {} : { connection };
    const sinkOptions = { ...reach, topic: ex.topic, partitions: ex.partitions, maxKeyGroups: plan.maxKeyGroups, producer: task, producers: plan.tasks, ...(key === undefined ? {} : { key }) };
    graph.add(
      new StepNode(`${ex.step}.${ex.input}.to-exchange`, 'exchange-sink', [{ from: edge.from, port: edge.port, partitioning: { type: 'forward' } }], {
        type: 'sink',
        create: () => joined(new RepartitionSink(sinkOptions)) as Sink<unknown>,
      }),
    );
    const partitions = ex.keyed ? [task] : task === 0 ? [0] : [];
    const source = graph.add(
      new StepNode(`${ex.step}.${ex.input}.from-exchange`, 'exchange-source', [], {
        type: 'source',
        create: () => new RepartitionSource({ ...reach, topic: ex.topic, partitions, producers: plan.tasks }) as Source<unknown>,
        options: {},
      }),
    );
    const inputs = [...node.inputs];
    inputs[ex.input] = { from: source, port: MAIN_PORT, partitioning: edge.partitioning } satisfies InputEdge;
    node.inputs = inputs;
  }
  graph.finalize();
}

/** Replaces a step's spec (steps are built once by the API; only the cluster rewrite changes them). */
function replaceSpec(node: StepNode, spec: StepNode['spec']): void {
  (node as { spec: StepNode['spec'] }).spec = spec;
}

/** A Kafka source reading only partition `task` of its topics: the task's share of the input. */
export class TaskPartitionSource<T> implements Source<T> {
  readonly bounded: boolean;
  readonly watermarks?: 'explicit' | 'derived';
  readonly idleTimeout?: number;

  constructor(
    private readonly inner: Source<T>,
    private readonly task: number,
  ) {
    this.bounded = inner.bounded;
    if (inner.watermarks !== undefined) this.watermarks = inner.watermarks;
    if (inner.idleTimeout !== undefined) this.idleTimeout = inner.idleTimeout;
  }

  async splits(ctx: SourceContext): Promise<readonly Split[]> {
    // Kafka splits are `topic:partition`.
    return (await this.inner.splits(ctx)).filter((s) => Number(s.id.slice(s.id.lastIndexOf(':') + 1)) === this.task);
  }

  createReader(ctx: SourceContext): ReturnType<Source<T>['createReader']> {
    return this.inner.createReader(ctx);
  }
}

/** The `scope` of task t's job (JobOptions.scope → SinkContext.scope). */
export function taskScope(task: number): string {
  return `t${task}`;
}
