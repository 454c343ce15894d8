import type { Key } from '../state/key-group.ts';
import type { Operator } from '../runtime/operator.ts';
import type { Sink } from '../runtime/sink.ts';
import type { Source } from '../runtime/source.ts';
import type { WatermarkOptions } from '../time/watermark.ts';

/**
 * The logical plan: a DAG of named steps built by the API. Every step has a stable id that keys
 * its state, metrics and dashboard node. Edges say how records are partitioned between the
 * parallel instances of the two steps; the planner turns forward edges into operator chains and
 * key-changing edges into exchanges.
 */

/** The main output port of a step; side outputs use their tag id. */
export const MAIN_PORT = 'main';

/** How records cross an edge between parallel instances. */
export type Partitioning =
  /** Instance i feeds instance i (same parallelism): chained, no exchange. */
  | { readonly type: 'forward' }
  /** By key: each record goes to the instance owning its key group. */
  | { readonly type: 'hash'; readonly key: (value: unknown) => Key }
  /** Everything to one instance (non-keyed global steps). */
  | { readonly type: 'global' };

export interface InputEdge {
  readonly from: StepNode;
  /** Output port of `from`: {@link MAIN_PORT} or a side-output tag id. */
  readonly port: string;
  readonly partitioning: Partitioning;
}

/** Options of a source step. */
export interface SourceStepOptions<T> extends WatermarkOptions {
  /** Event time of a record; default: the time the source gives, else ingestion time. */
  timestamp?: (value: T) => number;
}

export type StepSpec =
  | { readonly type: 'source'; readonly create: () => Source<unknown>; readonly options: SourceStepOptions<unknown> }
  | { readonly type: 'operator'; readonly create: () => Operator<unknown, unknown>; readonly keyed: boolean }
  | { readonly type: 'sink'; readonly create: () => Sink<unknown> };

export class StepNode {
  /** Ports other than main that consumers read (side outputs). */
  readonly sidePorts = new Set<string>();

  constructor(
    /** Stable unique id. */
    readonly id: string,
    /** What the step does, for display (`map`, `window`, `interval-join`, ...). */
    readonly kind: string,
    readonly inputs: readonly InputEdge[],
    readonly spec: StepSpec,
  ) {}

  get isSource(): boolean {
    return this.spec.type === 'source';
  }
}

/** The steps of a pipeline, in creation order (which is a topological order). */
export class LogicalGraph {
  readonly nodes: StepNode[] = [];
  private readonly ids = new Set<string>();
  private readonly counters = new Map<string, number>();

  /** A fresh id for a step of `kind` (`map-1`, `map-2`, ...), or validates a user-given one. */
  stepId(kind: string, requested?: string): string {
    if (requested !== undefined) {
      if (!/^[A-Za-z0-9_.:-]+$/.test(requested)) {
        throw new Error(`step id '${requested}' may only contain letters, digits and _ . : -`);
      }
      if (this.ids.has(requested)) throw new Error(`step id '${requested}' is used twice`);
      return requested;
    }
    for (;;) {
      const n = (this.counters.get(kind) ?? 0) + 1;
      this.counters.set(kind, n);
      const id = `${kind}-${n}`;
      if (!this.ids.has(id)) return id;
    }
  }

  add(node: StepNode): StepNode {
    if (this.ids.has(node.id)) throw new Error(`step id '${node.id}' is used twice`);
    this.ids.add(node.id);
    this.nodes.push(node);
    for (const edge of node.inputs) if (edge.port !== MAIN_PORT) edge.from.sidePorts.add(edge.port);
    return node;
  }

  /** Consumers of each node, in creation order. */
  consumers(): Map<StepNode, Array<{ node: StepNode; input: number; edge: InputEdge }>> {
    const out = new Map<StepNode, Array<{ node: StepNode; input: number; edge: InputEdge }>>();
    for (const node of this.nodes) out.set(node, []);
    for (const node of this.nodes) {
      node.inputs.forEach((edge, input) => out.get(edge.from)!.push({ node, input, edge }));
    }
    return out;
  }
}
