import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { instanceRestore, type JobSnapshot } from '../checkpoint/snapshot.ts';
import { DEAD_LETTER_PORT, type LogicalGraph, type StepNode } from '../plan/graph.ts';
import { combineOf, type PhysicalEdge, type PhysicalPlan, type Task } from '../plan/physical.ts';
import { type Clock, systemClock } from '../time/clock.ts';
import type { Barrier } from './barrier.ts';
import type { Collector, EdgeTarget } from './collector.ts';
import { StepFailure } from './dead-letters.ts';
import type { RuntimeEnv, SavedSplit } from './env.ts';
import { type ChannelFactory, Partitioner, type RemoteReader, type RemoteWriter } from './exchange.ts';
import type { OperatorMetrics } from './operator.ts';
import { newMetrics, OperatorNode } from './operator-node.ts';
import { SinkOperator } from './sink-operator.ts';
import type { SourceContext } from './source.ts';
import { SourceNode } from './source-node.ts';

/** Per-instance counters and watermark of a step, as an executor reports them. */
export interface InstanceMetrics extends OperatorMetrics {
  readonly step: string;
  readonly kind: string;
  readonly instance: number;
  readonly watermark: number;
  readonly idle: boolean;
  readonly ended: boolean;
  /** How long this instance's last checkpoint snapshot held up processing (ms). */
  readonly checkpointPauseMs: number;
}

/** What an executor is built from. */
export interface ExecutorInit {
  readonly graph: LogicalGraph;
  readonly plan: PhysicalPlan;
  readonly env: RuntimeEnv;
  /** Whether this executor runs instance `instance` of `task`. */
  readonly hosts: (task: Task, instance: number) => boolean;
  /** Channels to instances that run elsewhere; null when every instance runs here. */
  readonly channels: ChannelFactory | null;
  readonly restore: JobSnapshot | null;
  /** The splits (with positions) that instance `instance` of source step `step` reads. */
  readonly splits: (step: string, instance: number) => SavedSplit[];
}

type Node = SourceNode | OperatorNode;

/** What gates a source or an exchange reader: the remote writers and sinks its input reaches in this thread. */
interface Gate {
  readonly writers: RemoteWriter[];
  readonly sinks: OperatorNode[];
}

/**
 * Runs the task instances of a job that live in one thread: one node per step instance, wired by
 * synchronous calls along chains and between local instances, and by channels to instances in
 * other threads. The loop polls sources and delivers channel messages while their downstream can
 * take input (no remote writer waiting for credit, no sink reporting backpressure); it awaits only
 * when nothing can progress — until a source is ready, a message arrives, credit returns, a timer
 * is due, or a source may turn idle — and yields every few milliseconds to let I/O run.
 */
export class Executor {
  readonly sources: SourceNode[] = [];
  readonly operators: OperatorNode[] = [];
  readonly nodes = new Map<string, Node[]>();
  readonly clock: Clock;
  private readonly readers: RemoteReader[] = [];
  private readonly writers: RemoteWriter[] = [];
  private readonly extraMetrics: Array<{ step: string; metrics: OperatorMetrics }> = [];
  private readonly gates = new Map<SourceNode | RemoteReader, Gate>();
  private pendingBarrier: Barrier | null = null;
  private wake: (() => void) | null = null;
  private woken = false;
  private finished = false;
  private failure: { error: unknown } | null = null;
  private readonly completions = new Set<Promise<void>>();
  private endedReported = false;
  private paused = false;
  /** Called once every step instance here has ended (bounded input consumed). */
  onEnded: () => void = () => undefined;

  constructor(private readonly init: ExecutorInit) {
    this.clock = init.env.clock;
  }

  /** Creates the nodes of the hosted instances and wires them (synchronously). */
  build(): void {
    const { graph, plan, env, restore } = this.init;
    for (const step of graph.nodes) {
      const task = plan.taskOf.get(step.id)!;
      const p = task.parallelism;
      const list: Node[] = [];
      for (let i = 0; i < p; i++) {
        if (!this.init.hosts(task, i)) continue;
        const r = restore === null ? null : instanceRestore(restore, step.id, i, p);
        const id = { stepId: step.id, kind: step.kind, instance: i, parallelism: p };
        const spec = step.spec;
        let node: Node;
        if (spec.type === 'source') {
          const source = withStep(step.id, () => spec.create());
          const ctx: SourceContext = {
            stepId: step.id,
            clock: env.clock,
            instance: i,
            parallelism: p,
            restoredCheckpoint: restore?.id,
            log: (line) => env.log(`spate: step '${step.id}': ${line}`),
          };
          const reader = withStep(step.id, () => source.createReader(ctx));
          node = new SourceNode(id, source, reader, this.init.splits(step.id, i), spec.options, env, r);
          this.sources.push(node);
        } else {
          const operator = withStep(step.id, () => (spec.type === 'sink' ? new SinkOperator(spec.create()) : spec.create()));
          const combined = step.inputs.map((_, input) => plan.edges.some((e) => e.to === step && e.input === input && combineOf(e) !== undefined));
          node = new OperatorNode(id, operator, this.inputOfChannels(step), env, r, combined);
          this.operators.push(node);
        }
        list[i] = node;
      }
      this.nodes.set(step.id, list);
    }
    plan.edges.forEach((edge, index) => this.wire(edge, index));
    for (const node of this.sources) this.gates.set(node, this.gateOf(node));
  }

  /** The logical input of each input channel of `step`, in channel order. */
  private inputOfChannels(step: StepNode): number[] {
    const out: number[] = [];
    for (const edge of this.init.plan.edges) {
      if (edge.to !== step) continue;
      const senders = edge.ship === 'chain' || edge.ship === 'forward' ? 1 : this.init.plan.parallelismOf.get(edge.from.id)!;
      for (let s = 0; s < senders; s++) out.push(edge.input);
    }
    return out;
  }

  /** The channel of `to` that edge `edge` feeds from sender instance `sender`. */
  private channelOf(edge: PhysicalEdge, sender: number): number {
    let base = 0;
    for (const e of this.init.plan.edges) {
      if (e.to !== edge.to) continue;
      if (e === edge) return edge.ship === 'chain' || edge.ship === 'forward' ? base : base + sender;
      base += e.ship === 'chain' || e.ship === 'forward' ? 1 : this.init.plan.parallelismOf.get(e.from.id)!;
    }
    throw new Error(`edge ${edge.from.id} → ${edge.to.id} not in the plan`);
  }

  private wire(edge: PhysicalEdge, index: number): void {
    const { plan, env } = this.init;
    const senders = this.nodes.get(edge.from.id)!;
    const receivers = this.nodes.get(edge.to.id)! as OperatorNode[];
    const pf = plan.parallelismOf.get(edge.from.id)!;
    const pt = plan.parallelismOf.get(edge.to.id)!;
    const channels = this.init.channels;
    // Receiving ends of channels from senders that run elsewhere.
    for (let r = 0; r < pt; r++) {
      const target = receivers[r];
      if (target === undefined) continue;
      for (let s = 0; s < pf; s++) {
        if (senders[s] !== undefined || !feeds(edge.ship, s, r)) continue;
        if (channels === null) throw new Error(`instance ${s} of step '${edge.from.id}' runs nowhere`);
        this.readers.push(channels.reader(index, s, r, target, this.channelOf(edge, s)));
      }
    }
    // Sending ends.
    for (let s = 0; s < pf; s++) {
      const sender = senders[s];
      if (sender === undefined) continue;
      const port = portOf(sender, edge.port, edge.from.id);
      const targetOf = (r: number): { target: EdgeTarget; channel: number } => {
        const local = receivers[r];
        if (local !== undefined) return { target: local, channel: this.channelOf(edge, s) };
        if (channels === null) throw new Error(`instance ${r} of step '${edge.to.id}' runs nowhere`);
        const writer = channels.writer(index, s, r, (record, error, time) => sender.deadLetter(record, error, time));
        this.writers.push(writer);
        return { target: writer, channel: this.channelOf(edge, s) };
      };
      const combine = combineOf(edge);
      if (edge.ship === 'chain' || edge.ship === 'forward' || (edge.ship === 'gather' && combine === undefined)) {
        const t = targetOf(edge.ship === 'gather' ? 0 : s);
        port.connect(t.target, t.channel);
      } else {
        // A partitioner: by key, round-robin, to all — or gathering partials to a step that pre-aggregates.
        const targets = Array.from({ length: edge.ship === 'gather' ? 1 : pt }, (_, r) => targetOf(r));
        const metrics = newMetrics();
        this.extraMetrics.push({ step: edge.to.id, metrics });
        // The sender's dead-letter port (connected if the pipeline consumes dead letters).
        const dl = portOf(sender, DEAD_LETTER_PORT, edge.from.id);
        port.connect(new Partitioner(edge.ship, edge.key, targets, env, edge.to.id, dl, metrics, combine), 0);
      }
    }
  }

  /** The remote writers and backpressuring sinks that input entering at `start` reaches in this thread. */
  private gateOf(start: SourceNode | EdgeTarget): Gate {
    const writers = new Set<RemoteWriter>();
    const sinks = new Set<OperatorNode>();
    const seen = new Set<unknown>();
    const visit = (t: unknown): void => {
      if (seen.has(t)) return;
      seen.add(t);
      if (this.writers.includes(t as RemoteWriter)) {
        writers.add(t as RemoteWriter);
        return;
      }
      if (t instanceof OperatorNode && t.operator.backpressure !== undefined) sinks.add(t);
      const ports = t instanceof OperatorNode || t instanceof SourceNode ? [...t.ports.values()] : [];
      for (const port of ports) for (const next of port.targetsList()) visit(next);
      if (t instanceof Partitioner) for (const next of t.targetsList()) visit(next);
    };
    visit(start);
    return { writers: [...writers], sinks: [...sinks] };
  }

  /** Opens every hosted operator (state restored as declared) and then every source reader. */
  async open(): Promise<void> {
    const opening: Array<Promise<void>> = [];
    for (const node of this.operators) {
      const r = withStep(node.stepId, () => node.open());
      if (r instanceof Promise) opening.push(attribute(node.stepId, r));
    }
    await Promise.all(opening);
    for (const node of this.sources) await attribute(node.stepId, Promise.resolve(node.reader.open(node.splits)));
    for (const reader of this.readers) this.gates.set(reader, this.gateOf(reader as unknown as EdgeTarget));
  }

  /**
   * Opens operators synchronously and leaves source readers unopened: for the test harness, which
   * feeds the source nodes directly. Fails if a step opens asynchronously.
   */
  openSync(): void {
    for (const node of this.operators) {
      if (withStep(node.stepId, () => node.open()) instanceof Promise) throw new Error(`openSync: step '${node.stepId}' opens asynchronously`);
    }
  }

  /** Injects `barrier` at every hosted source at the next point between polls. */
  injectBarrier(barrier: Barrier): void {
    this.pendingBarrier = barrier;
    this.wakeUp();
  }

  /** Injects a pending barrier at every source here, and snapshots the steps here that have ended. */
  injectPendingBarrier(): void {
    const barrier = this.pendingBarrier;
    if (barrier === null) return;
    this.pendingBarrier = null;
    for (const node of this.sources) withStep(node.stepId, () => node.injectBarrier(barrier));
    // Ended steps receive no barrier: they have no input left, so their state is final.
    for (const node of this.operators) if (node.ended) withStep(node.stepId, () => node.snapshot(barrier));
  }

  /** Checkpoint `id` is complete: steps commit, sources confirm. */
  complete(id: number): void {
    const track = (step: string, p: void | Promise<void>): void => {
      if (!(p instanceof Promise)) return;
      const tracked = attribute(step, p).catch((error: unknown) => this.fail(error));
      this.completions.add(tracked);
      void tracked.finally(() => this.completions.delete(tracked));
    };
    for (const node of this.operators) track(node.stepId, withStep(node.stepId, () => node.operator.notifyCheckpointComplete?.(id)));
    for (const node of this.sources) track(node.stepId, withStep(node.stepId, () => node.reader.notifyCheckpointComplete?.(id)));
  }

  /** Checkpoint `id` failed. */
  abort(id: number): void {
    for (const node of this.operators) node.operator.notifyCheckpointAborted?.(id);
  }

  /** Polls no source any more (a stop is under way); exchanges keep delivering. */
  pause(): void {
    this.paused = true;
  }

  /** Stops the sources here at once (no final checkpoint). */
  halt(): void {
    for (const node of this.sources) node.stopped = true;
    this.wakeUp();
  }

  /** Lets the loop end once it has nothing left to do (the job's last checkpoint is done). */
  finish(): void {
    this.finished = true;
    this.wakeUp();
  }

  fail(error: unknown): void {
    this.failure ??= { error };
    this.wakeUp();
  }

  /** Whether every hosted step instance has ended. */
  get ended(): boolean {
    return this.sources.every((s) => s.ended) && this.operators.every((o) => o.ended);
  }

  /** Whether every hosted source has ended or stopped (nothing more will be read here). */
  get quiet(): boolean {
    return this.sources.every((s) => s.ended || s.stopped);
  }

  /** Runs until `finish`, `halt` and quiet, or a failure. */
  async run(): Promise<void> {
    const { batchSize } = this.init.env;
    let lastYield = performance.now();
    while (this.failure === null) {
      this.injectPendingBarrier();
      let progressed = false;
      for (const reader of this.readers) {
        if (!reader.pending || this.gated(reader)) continue;
        if (reader.deliver(16) > 0) progressed = true;
      }
      for (const node of this.sources) {
        if (this.paused || node.ended || node.stopped || node.waiting !== null || this.gated(node)) continue;
        const status = withStep(node.stepId, () => node.poll(batchSize));
        if (status === 'more') progressed = true;
        else if (status === 'wait') this.awaitSource(node);
      }
      const now = this.clock.now();
      this.fireProcessingTime(now);
      for (const node of this.sources) node.checkIdle(now);
      for (const w of this.writers) w.flush();
      for (const r of this.readers) r.flush();
      if (!this.endedReported && this.ended) {
        this.endedReported = true;
        this.onEnded();
      }
      if (this.finished && !progressed && !this.readers.some((r) => r.pending)) break;
      if (!progressed) await this.sleep(now);
      else if (performance.now() - lastYield > 10) {
        await yieldToEventLoop();
        lastYield = performance.now();
      }
    }
    if (this.failure !== null) throw this.failure.error;
    await Promise.all(this.completions);
    if (this.failure !== null) throw (this.failure as { error: unknown }).error;
  }

  /** Whether input entering at `from` must wait (downstream waits for credit or a sink is busy); arranges a wake-up for when it may go on. */
  private gated(from: SourceNode | RemoteReader): boolean {
    const gate = this.gates.get(from);
    if (gate === undefined) return false;
    for (const w of gate.writers) {
      if (w.blocked) {
        void w.unblocked().then(() => this.wakeUp());
        return true;
      }
    }
    for (const s of gate.sinks) {
      const pending = s.operator.backpressure!();
      if (pending !== undefined) {
        void pending.then(
          () => this.wakeUp(),
          () => this.wakeUp(),
        );
        return true;
      }
    }
    return false;
  }

  /** Fires processing-time callbacks that are due. */
  fireProcessingTime(now: number): void {
    for (const node of this.operators) withStep(node.stepId, () => node.firePendingProcessingTime(now));
  }

  private awaitSource(node: SourceNode): void {
    const ready = node.reader.ready?.() ?? Promise.resolve();
    node.waiting = ready.then(
      () => {
        node.waiting = null;
        this.wakeUp();
      },
      // A source that fails while reading fails the job (from the run loop).
      (error: unknown) => this.fail(new StepFailure(node.stepId, undefined, error)),
    );
  }

  /** Ends the current sleep, or makes the next one return at once (no lost wake-ups). */
  wakeUp(): void {
    this.woken = true;
    this.wake?.();
  }

  /** Waits until something may progress: a wake-up, a timer, an idle deadline. */
  private async sleep(now: number): Promise<void> {
    let deadline = Infinity;
    for (const node of this.operators) if (node.nextProcessingTime < deadline) deadline = node.nextProcessingTime;
    for (const node of this.sources) deadline = Math.min(deadline, node.idleDeadline());
    if (this.clock !== systemClock && deadline !== Infinity) {
      // A virtual clock does not move by itself: poll again soon rather than sleep on it.
      deadline = now;
    }
    const delay = deadline === Infinity ? 1000 : Math.max(0, Math.min(1000, deadline - now));
    if (this.woken || this.failure !== null || this.pendingBarrier !== null) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, delay);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
    this.wake = null;
    this.woken = false;
  }

  /** Counters of every hosted instance, plus dead letters counted by exchanges for their receiving step. */
  metrics(): InstanceMetrics[] {
    const out: InstanceMetrics[] = [];
    for (const [step, list] of this.nodes) {
      for (const node of list) {
        if (node === undefined) continue;
        out.push({
          step,
          kind: node instanceof SourceNode ? 'source' : (this.init.graph.nodes.find((n) => n.id === step)?.kind ?? 'operator'),
          instance: node.instance,
          ...node.metrics,
          watermark: node instanceof SourceNode ? node.currentWatermark : node.watermark,
          idle: node.idle,
          ended: node.ended,
          checkpointPauseMs: node.lastSnapshotPause,
        });
      }
    }
    for (const { step, metrics } of this.extraMetrics) {
      if (metrics.deadLetters === 0) continue;
      const kind = this.init.graph.nodes.find((n) => n.id === step)?.kind ?? 'operator';
      out.push({ step, kind, instance: -1, ...metrics, watermark: Infinity, idle: true, ended: true, checkpointPauseMs: 0 });
    }
    return out;
  }

  /** Closes every hosted step, also after a failed or partial open; the first error wins. */
  async close(): Promise<void> {
    let first: { error: unknown } | null = null;
    const attempt = async (step: string, fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (error) {
        first ??= { error: error instanceof StepFailure ? error : new StepFailure(step, undefined, error) };
      }
    };
    for (const node of this.operators) await attempt(node.stepId, () => node.operator.close?.());
    for (const node of this.sources) await attempt(node.stepId, () => node.reader.close?.());
    if (first !== null) throw (first as { error: unknown }).error;
  }
}

/** Whether sender instance `s` feeds receiver instance `r` over an edge shipped as `ship`. */
function feeds(ship: PhysicalEdge['ship'], s: number, r: number): boolean {
  if (ship === 'chain' || ship === 'forward') return s === r;
  if (ship === 'gather') return r === 0;
  return true;
}

function portOf(node: Node, port: string, stepId: string): Collector<unknown> {
  const p = node instanceof OperatorNode ? node.port(port) : node.ports.get(port);
  if (p === undefined) throw new Error(`step '${stepId}' has no output '${port}'`);
  return p;
}

/** Runs `fn`, attributing an exception to `step`. */
export function withStep<T>(step: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw error instanceof StepFailure ? error : new StepFailure(step, undefined, error);
  }
}

/** Attributes a rejection to `step`. */
export function attribute<T>(step: string, p: Promise<T>): Promise<T> {
  return p.catch((error: unknown) => {
    throw error instanceof StepFailure ? error : new StepFailure(step, undefined, error);
  });
}
