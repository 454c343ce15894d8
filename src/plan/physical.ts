import { type LogicalGraph, MAIN_PORT, type Partitioning, type StepNode } from './graph.ts';

/**
 * The physical plan: steps fused into tasks (operator chains) and the exchanges between tasks.
 * A step joins its upstream's chain when it has a single input, reads it forward, and is that
 * upstream's only consumer; keyed edges (hash) and fan-in/fan-out start a new task. Each task
 * runs as `parallelism` instances (global steps as one); in one process all tasks share a thread.
 */
export interface Task {
  readonly index: number;
  readonly steps: readonly StepNode[];
  readonly parallelism: number;
}

export interface Exchange {
  readonly from: Task;
  readonly to: Task;
  /** Output port of the last step of `from` that feeds `to`. */
  readonly port: string;
  readonly partitioning: Partitioning['type'];
}

export interface PhysicalPlan {
  readonly tasks: readonly Task[];
  readonly exchanges: readonly Exchange[];
}

/** Builds the physical plan of a graph at `parallelism`. */
export function physicalPlan(graph: LogicalGraph, parallelism: number): PhysicalPlan {
  const consumers = graph.consumers();
  const taskOf = new Map<StepNode, { steps: StepNode[]; global: boolean }>();
  const chains: Array<{ steps: StepNode[]; global: boolean }> = [];
  for (const node of graph.nodes) {
    const edge = node.inputs.length === 1 ? node.inputs[0]! : undefined;
    const upstream = edge?.from;
    const chainable =
      edge !== undefined &&
      upstream !== undefined &&
      edge.partitioning.type === 'forward' &&
      edge.port === MAIN_PORT &&
      consumers.get(upstream)!.length === 1;
    if (chainable) {
      const chain = taskOf.get(upstream)!;
      chain.steps.push(node);
      taskOf.set(node, chain);
    } else {
      const global = node.inputs.some((e) => e.partitioning.type === 'global');
      const chain = { steps: [node], global };
      chains.push(chain);
      taskOf.set(node, chain);
    }
  }
  const tasks: Task[] = chains.map((c, index) => ({ index, steps: c.steps, parallelism: c.global ? 1 : parallelism }));
  const byChain = new Map(chains.map((c, i) => [c, tasks[i]!]));
  const exchanges: Exchange[] = [];
  for (const node of graph.nodes) {
    const to = byChain.get(taskOf.get(node)!)!;
    for (const edge of node.inputs) {
      const from = byChain.get(taskOf.get(edge.from)!)!;
      if (from !== to) exchanges.push({ from, to, port: edge.port, partitioning: edge.partitioning.type });
    }
  }
  return { tasks, exchanges };
}

/** A readable rendering of the physical plan. */
export function explain(graph: LogicalGraph, parallelism: number): string {
  const plan = physicalPlan(graph, parallelism);
  const lines: string[] = [];
  for (const task of plan.tasks) {
    const steps = task.steps.map((s) => (s.id.startsWith(s.kind) ? s.id : `${s.id} (${s.kind})`)).join(' → ');
    lines.push(`task ${task.index} ×${task.parallelism}: ${steps}`);
    for (const ex of plan.exchanges.filter((e) => e.to === task)) {
      const port = ex.port === MAIN_PORT ? '' : ` [${ex.port}]`;
      lines.push(`  ⇐ task ${ex.from.index}${port} (${ex.partitioning})`);
    }
  }
  return lines.join('\n');
}
