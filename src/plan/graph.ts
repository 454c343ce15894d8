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

/** The port on which a step emits its dead letters (connected when the pipeline consumes them). */
export const DEAD_LETTER_PORT = '#dead-letters';

/** Id of the step that merges every step's dead letters (`pipeline.deadLetters()`). */
export const DEAD_LETTER_STEP = 'dead-letters';

/** How records cross an edge between parallel instances. */
export type Partitioning =
  /** Instance i feeds instance i (same parallelism): chained, no exchange. */
  | { readonly type: 'forward' }
  /** By key: each record goes to the instance owning its key group. */
  | { readonly type: 'hash'; readonly key: (value: unknown) => Key }
  /** Everything to one instance (non-keyed global steps). */
  | { readonly type: 'global' }
  /** Round-robin over the instances (spreads load; asked for with `stream.rebalance()`). */
  | { readonly type: 'rebalance' }
  /** Every record to every instance (`stream.broadcast()`). */
  | { readonly type: 'broadcast' };

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
  /** Instances of the source (default: the job's parallelism, at most the source allows). */
  readonly parallelism?: number;
}

/**
 * How records bound for a step can be pre-aggregated before they cross an exchange (two-phase
 * aggregation): the sender folds the records of each batch into one partial per (key, pane), and
 * the step merges partials instead of records. Windows with an incremental aggregate offer it.
 */
export interface CombineSpec {
  readonly key: (value: unknown) => Key;
  /** The pane (slice of time) a record's time falls in; a partial carries its pane's start as its time. */
  readonly pane: (time: number) => number;
  readonly create: () => unknown;
  readonly add: (acc: unknown, value: unknown) => unknown;
  /** An accumulator as it travels (the aggregate's codec, or itself). */
  readonly encode: (acc: unknown) => unknown;
}

/** A pre-aggregated record: key, encoded accumulator, and how many records it folds. */
export interface Partial {
  readonly k: Key;
  readonly a: unknown;
  readonly n: number;
}

export type StepSpec =
  | { readonly type: 'source'; readonly create: () => Source<unknown>; readonly options: SourceStepOptions<unknown> }
  | {
      readonly type: 'operator';
      readonly create: () => Operator<unknown, unknown>;
      readonly keyed: boolean;
      readonly parallelism?: number | undefined;
      /** Offered pre-aggregation of the step's (single, keyed) input. */
      readonly combine?: CombineSpec | undefined;
      /** Runs as one instance in the thread that built the pipeline (a queryable view). */
      readonly local?: boolean | undefined;
      /** The name of the view the step keeps (`KeyedStream.view`). */
      readonly view?: string | undefined;
    }
  | { readonly type: 'sink'; readonly create: () => Sink<unknown>; readonly parallelism?: number | undefined };

export class StepNode {
  /** Ports other than main that consumers read (side outputs). */
  readonly sidePorts = new Set<string>();

  constructor(
    /** Stable unique id. */
    readonly id: string,
    /** What the step does, for display (`map`, `window`, `interval-join`, ...). */
    readonly kind: string,
    /** Inputs; the dead-letter step's are computed when the plan is finalized. */
    public inputs: readonly InputEdge[],
    readonly spec: StepSpec,
    /** The source text of the step's user functions (key selectors, mappers, handlers). */
    readonly code: string = '',
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

  /** Consumers of each node, in plan order. */
  consumers(): Map<StepNode, Array<{ node: StepNode; input: number; edge: InputEdge }>> {
    const out = new Map<StepNode, Array<{ node: StepNode; input: number; edge: InputEdge }>>();
    for (const node of this.nodes) out.set(node, []);
    for (const node of this.nodes) {
      node.inputs.forEach((edge, input) => out.get(edge.from)!.push({ node, input, edge }));
    }
    return out;
  }

  /**
   * Completes the plan before a run: the dead-letter step (if the pipeline consumes dead letters)
   * gets one input per step that is not downstream of it — a step fed by dead letters reports its
   * own failures to the log, never back into the stream it reads — and the steps are put in a
   * topological order. Idempotent: steps added later are taken into account on the next call.
   */
  finalize(): void {
    const dl = this.nodes.find((n) => n.id === DEAD_LETTER_STEP && n.kind === 'dead-letters');
    if (dl !== undefined) {
      dl.inputs = [];
      const downstream = this.downstreamOf(dl);
      dl.inputs = this.nodes
        .filter((n) => n !== dl && !downstream.has(n))
        .map((n) => ({ from: n, port: DEAD_LETTER_PORT, partitioning: { type: 'forward' } as const }));
      for (const e of dl.inputs) e.from.sidePorts.add(DEAD_LETTER_PORT);
    }
    const order: StepNode[] = [];
    const placed = new Set<StepNode>();
    const visit = (n: StepNode): void => {
      if (placed.has(n)) return;
      placed.add(n);
      for (const e of n.inputs) visit(e.from);
      order.push(n);
    };
    for (const n of this.nodes) visit(n);
    this.nodes.splice(0, this.nodes.length, ...order);
  }

  /** Every step reachable from `start` (excluding it). */
  private downstreamOf(start: StepNode): Set<StepNode> {
    const consumers = this.consumers();
    const seen = new Set<StepNode>();
    const stack = [start];
    while (stack.length > 0) {
      for (const c of consumers.get(stack.pop()!)!) {
        if (!seen.has(c.node)) {
          seen.add(c.node);
          stack.push(c.node);
        }
      }
    }
    return seen;
  }

  /**
   * Each step's signature: its kind, its inputs with their partitioning (and key selector), and the
   * source text of its functions. Workers rebuild the pipeline and compare: a step built otherwise
   * in another thread is named.
   */
  signatures(): Map<string, StepSignature> {
    const out = new Map<string, StepSignature>();
    for (const n of this.nodes) {
      const inputs = n.inputs.map((e) => [e.from.id, e.port, e.partitioning.type]);
      const keys = n.inputs.map((e) => (e.partitioning.type === 'hash' ? e.partitioning.key.toString() : ''));
      out.set(n.id, { structure: hashString(JSON.stringify([n.kind, inputs])), code: hashString(JSON.stringify([keys, n.code])) });
    }
    return out;
  }

  /** A fingerprint of the plan's shape (step order, kinds, edges), recorded in checkpoints. */
  fingerprint(): string {
    return hashString(JSON.stringify([...this.signatures()].map(([id, s]) => [id, s.structure])));
  }
}

/** What identifies a step across rebuilds: its shape, and the source text of its functions. */
export interface StepSignature {
  readonly structure: string;
  readonly code: string;
}

/** The source text of user functions and of the methods of user objects, for step signatures. */
export function codeOf(parts: readonly unknown[]): string {
  const out: string[] = [];
  for (const part of parts) {
    if (typeof part === 'function') out.push(part.toString());
    else if (typeof part === 'object' && part !== null) {
      for (const key of Object.keys(part).sort()) {
        const v = (part as Record<string, unknown>)[key];
        if (typeof v === 'function') out.push(`${key}:${v.toString()}`);
      }
    }
  }
  return out.join('\n');
}

/** 64-bit FNV-1a of a string, as 16 hex digits. */
function hashString(s: string): string {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < s.length; i++) {
    h ^= BigInt(s.charCodeAt(i));
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, '0');
}
