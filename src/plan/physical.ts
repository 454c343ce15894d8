import type { Key } from '../state/key-group.ts';
import { type CombineSpec, DEAD_LETTER_PORT, type LogicalGraph, MAIN_PORT, type StepNode } from './graph.ts';

/**
 * The physical plan: what runs. Steps get a parallelism (carried along forward edges), are fused
 * into tasks (operator chains: a step joins its upstream's chain when it has one input, reads it
 * forward at the same parallelism and placement, and is its upstream's only consumer), and every
 * other edge becomes an exchange between task instances:
 *
 * - `forward`: instance i feeds instance i (same parallelism, not chained: fan-out, several inputs);
 * - `hash`: each record goes to the instance owning its key group (keyBy);
 * - `rebalance`: round-robin (a forward edge between different parallelisms, or asked for);
 * - `broadcast`: every record to every instance;
 * - `gather`: everything to the single instance of a step of parallelism 1.
 *
 * Placement: `local` sinks (collect, callbacks, DuckDB), sources (push endpoints) and views run
 * in the thread that built the pipeline (`main`) — a local sink as one instance unless it allows
 * more; everything else runs in the workers (or, for a job in one thread, in that thread). What
 * follows a local source does not inherit its single instance: it runs at the job's parallelism,
 * fed round-robin.
 */

export type Ship = 'chain' | 'forward' | 'hash' | 'rebalance' | 'broadcast' | 'gather';
export type Placement = 'workers' | 'main';

export interface Task {
  readonly index: number;
  readonly steps: readonly StepNode[];
  readonly parallelism: number;
  readonly placement: Placement;
  /** Why the task runs with fewer instances than the job's parallelism, if it does. */
  readonly note: string | undefined;
}

/** One edge of the logical graph, as it runs. */
export interface PhysicalEdge {
  readonly from: StepNode;
  readonly port: string;
  readonly to: StepNode;
  /** Which input of `to`. */
  readonly input: number;
  readonly ship: Ship;
  /** The key selector of a `hash` edge. */
  readonly key: ((value: unknown) => Key) | undefined;
}

export interface PhysicalPlan {
  readonly parallelism: number;
  readonly tasks: readonly Task[];
  readonly edges: readonly PhysicalEdge[];
  readonly taskOf: ReadonlyMap<string, Task>;
  /** Instances of each step. */
  readonly parallelismOf: ReadonlyMap<string, number>;
}

/** One input channel of a step instance: which edge and which instance of the upstream step feed it. */
export interface InputChannel {
  readonly edge: PhysicalEdge;
  /** The upstream step and its instance. */
  readonly step: string;
  readonly instance: number;
  /** Which input of the receiving step. */
  readonly input: number;
}

/**
 * The input channels of instance `instance` of step `step`, in channel order: per incoming edge,
 * one channel from the same instance (chain, forward) or one per upstream instance (the others).
 */
export function inputChannels(plan: PhysicalPlan, step: string, instance: number): InputChannel[] {
  const out: InputChannel[] = [];
  for (const edge of plan.edges) {
    if (edge.to.id !== step) continue;
    if (edge.ship === 'chain' || edge.ship === 'forward') out.push({ edge, step: edge.from.id, instance, input: edge.input });
    else for (let s = 0; s < plan.parallelismOf.get(edge.from.id)!; s++) out.push({ edge, step: edge.from.id, instance: s, input: edge.input });
  }
  return out;
}

/** What the planner needs to know about a step beyond the graph. */
interface Traits {
  /** Upper bound on instances, and why. */
  readonly max: number;
  readonly why: string | undefined;
  readonly local: boolean;
  /** Parallelism asked for on the step. */
  readonly requested: number | undefined;
}

function traits(step: StepNode): Traits {
  const spec = step.spec;
  if (spec.type === 'source') {
    const source = spec.create();
    if (source.local) return { max: 1, why: 'runs in the main thread (local source)', local: true, requested: undefined };
    const max = source.maxParallelism ?? Infinity;
    return { max, why: max === 1 ? 'the source cannot be split' : max < Infinity ? `the source has ${max} split(s) at most` : undefined, local: false, requested: spec.options.parallelism };
  }
  if (spec.type === 'sink') {
    const sink = spec.create();
    if (sink.local) {
      // A local sink runs in the thread that built the pipeline: one instance unless it says it
      // can take more (several instances sharing what that thread holds, e.g. one database file).
      const max = sink.parallelism ?? 1;
      return { max, why: max === 1 ? 'runs in the main thread (local sink)' : `a local sink of at most ${max} instances`, local: true, requested: spec.parallelism };
    }
    const max = sink.parallelism ?? Infinity;
    return { max, why: max === 1 ? 'the sink has one writer' : undefined, local: false, requested: spec.parallelism };
  }
  if (step.kind === 'dead-letters') return { max: 1, why: 'dead letters are gathered', local: false, requested: undefined };
  if (spec.local === true) return { max: 1, why: 'runs in the main thread (a view)', local: true, requested: undefined };
  return { max: Infinity, why: undefined, local: false, requested: spec.parallelism };
}

/** Builds the physical plan of a graph at `parallelism`. */
export function physicalPlan(graph: LogicalGraph, parallelism: number): PhysicalPlan {
  graph.finalize();
  const consumers = graph.consumers();
  const par = new Map<string, number>();
  const notes = new Map<string, string | undefined>();
  const local = new Map<string, boolean>();
  for (const node of graph.nodes) {
    const t = traits(node);
    local.set(node.id, t.local);
    // Parallelism is carried along forward edges: a step with one forward input runs like it.
    const single = node.inputs.length === 1 ? node.inputs[0]! : undefined;
    let p: number;
    let why: string | undefined;
    if (t.requested !== undefined) {
      p = t.requested;
      why = 'its parallelism is set on the step';
    } else if (node.inputs.some((e) => e.partitioning.type === 'global')) {
      p = 1;
      why = 'a global (non-keyed) step';
    } else if (single !== undefined && single.partitioning.type === 'forward' && !local.get(single.from.id)) {
      p = par.get(single.from.id)!;
      why = notes.get(single.from.id);
    } else p = parallelism;
    if (t.max <= p) {
      p = t.max;
      why = t.why ?? why;
    }
    par.set(node.id, p);
    notes.set(node.id, p < parallelism ? why : undefined);
  }
  const taskOf = new Map<string, { steps: StepNode[] }>();
  const chains: Array<{ steps: StepNode[] }> = [];
  for (const node of graph.nodes) {
    const edge = node.inputs.length === 1 ? node.inputs[0]! : undefined;
    const upstream = edge?.from;
    const chainable =
      edge !== undefined &&
      upstream !== undefined &&
      edge.partitioning.type === 'forward' &&
      edge.port === MAIN_PORT &&
      consumers.get(upstream)!.length === 1 &&
      par.get(upstream.id) === par.get(node.id) &&
      local.get(upstream.id) === local.get(node.id);
    if (chainable) {
      const chain = taskOf.get(upstream.id)!;
      chain.steps.push(node);
      taskOf.set(node.id, chain);
    } else {
      const chain = { steps: [node] };
      chains.push(chain);
      taskOf.set(node.id, chain);
    }
  }
  const tasks: Task[] = chains.map((c, index) => {
    const head = c.steps[0]!;
    return {
      index,
      steps: c.steps,
      parallelism: par.get(head.id)!,
      placement: local.get(head.id) ? 'main' : 'workers',
      note: notes.get(head.id),
    };
  });
  const byChain = new Map(chains.map((c, i) => [c, tasks[i]!]));
  const finalTaskOf = new Map<string, Task>();
  for (const [id, chain] of taskOf) finalTaskOf.set(id, byChain.get(chain)!);
  const edges: PhysicalEdge[] = [];
  for (const node of graph.nodes) {
    node.inputs.forEach((edge, input) => {
      const from = edge.from;
      const pf = par.get(from.id)!;
      const pt = par.get(node.id)!;
      let ship: Ship;
      const type = edge.partitioning.type;
      if (finalTaskOf.get(from.id) === finalTaskOf.get(node.id)) ship = 'chain';
      else if (type === 'broadcast') ship = pt === 1 && pf === 1 ? 'forward' : 'broadcast';
      else if (pt === 1) ship = pf === 1 ? 'forward' : 'gather';
      else if (type === 'hash') ship = 'hash';
      else if (type === 'rebalance') ship = 'rebalance';
      else ship = pf === pt ? 'forward' : 'rebalance';
      const key = edge.partitioning.type === 'hash' ? edge.partitioning.key : undefined;
      edges.push({ from, port: edge.port, to: node, input, ship, key });
    });
  }
  return { parallelism, tasks, edges, taskOf: finalTaskOf, parallelismOf: par };
}

/**
 * The pre-aggregation an edge applies: offered by its receiving step (a window with an incremental
 * aggregate), used where records cross to other instances by key or are gathered.
 */
export function combineOf(edge: PhysicalEdge): CombineSpec | undefined {
  if (edge.ship !== 'hash' && edge.ship !== 'gather') return undefined;
  const spec = edge.to.spec;
  return spec.type === 'operator' ? spec.combine : undefined;
}

/** A readable rendering of the physical plan: tasks, their instances, chained steps and exchanges. */
export function explain(graph: LogicalGraph, parallelism: number): string {
  const plan = physicalPlan(graph, parallelism);
  const lines: string[] = [];
  for (const task of plan.tasks) {
    const steps = task.steps.map((s) => (s.id.startsWith(s.kind) ? s.id : `${s.id} (${s.kind})`)).join(' → ');
    const where = task.placement === 'main' && parallelism > 1 ? ', main thread' : '';
    const note = task.note === undefined || parallelism === 1 ? '' : ` [${task.note}]`;
    lines.push(`task ${task.index} ×${task.parallelism}${where}: ${steps}${note}`);
    for (const e of plan.edges.filter((x) => x.to === task.steps[0] || (task.steps.includes(x.to) && x.ship !== 'chain'))) {
      if (e.ship === 'chain') continue;
      if (e.port === DEAD_LETTER_PORT) continue;
      const port = e.port === MAIN_PORT ? '' : ` [${e.port}]`;
      const combined = combineOf(e) === undefined ? '' : ', pre-aggregated';
      lines.push(`  ⇐ task ${plan.taskOf.get(e.from.id)!.index}${port} (${e.ship}${combined})`);
    }
    const dl = plan.edges.filter((x) => task.steps.includes(x.to) && x.port === DEAD_LETTER_PORT).length;
    if (dl > 0) lines.push(`  ⇐ dead letters of ${dl} step(s) (${dl === 1 ? 'one input' : 'gathered'})`);
  }
  return lines.join('\n');
}
