import { DEAD_LETTER_PORT } from '../plan/graph.ts';
import { combineOf, type PhysicalPlan, type Ship } from '../plan/physical.ts';

/** A step as the dashboard draws it. */
export interface GraphStep {
  readonly id: string;
  readonly kind: string;
  /** Index of its task in {@link JobGraph.tasks}. */
  readonly task: number;
  readonly parallelism: number;
  /** Whether the step is the result view `keyedStream.view(name)`: its name. */
  readonly view?: string;
}

/** A task (a chain of steps that run as one) and where the dashboard draws it. */
export interface GraphTask {
  readonly index: number;
  /** Its steps, in chain order. */
  readonly steps: readonly string[];
  readonly parallelism: number;
  /** `workers` (worker threads, or this thread for a job in one thread) or `main` (the thread that built the pipeline). */
  readonly placement: 'workers' | 'main';
  /** Why it has fewer instances than the job's parallelism. */
  readonly note?: string;
  /** Column (longest path of exchanges from a source) and row in the layout. */
  readonly layer: number;
  readonly row: number;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** An edge between two steps: `chain` inside a task, otherwise an exchange. */
export interface GraphEdge {
  readonly from: string;
  readonly to: string;
  /** Output port of `from`: `main`, a side output's tag, or the dead-letter port. */
  readonly port: string;
  readonly input: number;
  readonly ship: Ship;
  /** The edge carries dead letters. */
  readonly deadLetters: boolean;
  /** The exchange carries partial aggregates (two-phase aggregation), not records. */
  readonly preAggregated: boolean;
}

/** The job graph of a physical plan, laid out in layers (left to right) for an SVG drawing. */
export interface JobGraph {
  readonly parallelism: number;
  /** Whether the instances run in worker threads (placement matters) or all in one thread. */
  readonly threads: 'workers' | 'single';
  readonly tasks: readonly GraphTask[];
  readonly steps: readonly GraphStep[];
  readonly edges: readonly GraphEdge[];
  readonly width: number;
  readonly height: number;
}

/** Layout constants (px), shared with the page's drawing code through the graph itself. */
export const LAYOUT = { taskWidth: 214, stepHeight: 46, header: 24, padding: 6, gapX: 64, gapY: 20, margin: 12 } as const;

/**
 * The graph the dashboard draws: tasks as boxes of chained steps, placed in columns by the
 * longest path of exchanges from a source (a simple layered layout: tasks keep plan order within
 * a column; dead-letter edges do not count), and every edge with how it ships records.
 */
export function jobGraph(plan: PhysicalPlan, threads: 'workers' | 'single' = 'single'): JobGraph {
  const taskIndex = new Map<string, number>();
  for (const t of plan.tasks) for (const s of t.steps) taskIndex.set(s.id, t.index);
  // Plan order is topological (a step is added after its inputs), so one pass finds the layers.
  const layer = new Array<number>(plan.tasks.length).fill(0);
  for (const t of plan.tasks) {
    for (const e of plan.edges) {
      // Dead letters flow from (almost) every step into one gathering step: placing it after all
      // of them would stretch the graph, so it starts a column of its own.
      if (e.ship === 'chain' || e.port === DEAD_LETTER_PORT || taskIndex.get(e.to.id) !== t.index) continue;
      const from = taskIndex.get(e.from.id)!;
      if (from !== t.index) layer[t.index] = Math.max(layer[t.index]!, layer[from]! + 1);
    }
  }
  const { taskWidth, stepHeight, header, padding, gapX, gapY, margin } = LAYOUT;
  const columnY = new Map<number, number>();
  const rows = new Map<number, number>();
  let width = 0;
  let height = 0;
  const tasks: GraphTask[] = plan.tasks.map((t) => {
    const l = layer[t.index]!;
    const row = rows.get(l) ?? 0;
    rows.set(l, row + 1);
    const h = header + t.steps.length * stepHeight + padding;
    const x = margin + l * (taskWidth + gapX);
    const y = columnY.get(l) ?? margin;
    columnY.set(l, y + h + gapY);
    width = Math.max(width, x + taskWidth + margin);
    height = Math.max(height, y + h + margin);
    return {
      index: t.index,
      steps: t.steps.map((s) => s.id),
      parallelism: t.parallelism,
      placement: t.placement,
      ...(t.note === undefined ? {} : { note: t.note }),
      layer: l,
      row,
      x,
      y,
      width: taskWidth,
      height: h,
    };
  });
  const steps: GraphStep[] = plan.tasks.flatMap((t) =>
    t.steps.map((s) => {
      const view = s.spec.type === 'operator' ? s.spec.view : undefined;
      return { id: s.id, kind: s.kind, task: t.index, parallelism: t.parallelism, ...(view === undefined ? {} : { view }) };
    }),
  );
  const edges: GraphEdge[] = plan.edges.map((e) => ({
    from: e.from.id,
    to: e.to.id,
    port: e.port,
    input: e.input,
    ship: e.ship,
    deadLetters: e.port === DEAD_LETTER_PORT,
    preAggregated: combineOf(e) !== undefined,
  }));
  return { parallelism: plan.parallelism, threads, tasks, steps, edges, width, height };
}

