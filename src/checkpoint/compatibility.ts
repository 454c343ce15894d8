import type { LogicalGraph } from '../plan/graph.ts';
import { DeadLetterLog, errorMessage } from '../runtime/dead-letters.ts';
import type { RuntimeEnv } from '../runtime/env.ts';
import { OperatorNode } from '../runtime/operator-node.ts';
import { systemClock } from '../time/clock.ts';
import { instanceRestore, type JobSnapshot } from './snapshot.ts';

/** What restoring a checkpoint does to one state table of one step. */
export interface TableVerdict {
  readonly table: string;
  readonly action: 'restore' | 'migrate' | 'new' | 'drop' | 'refuse';
  readonly detail: string;
}

/** What restoring a checkpoint does to one step. */
export interface StepVerdict {
  readonly step: string;
  readonly kind: string;
  /** `restore`: state carried over; `new`: starts empty; `stateless`; `drop`: the step is gone; `refuse`: the restore would fail. */
  readonly action: 'restore' | 'new' | 'stateless' | 'drop' | 'refuse';
  readonly tables: readonly TableVerdict[];
  readonly detail: string;
}

/** The compatibility report of a pipeline against a checkpoint (`spate plan --against`). */
export interface CompatibilityReport {
  readonly checkpoint: { readonly id: number; readonly kind: string; readonly createdAt: number };
  readonly steps: readonly StepVerdict[];
  /** Whether the restore would succeed (with the given options). */
  readonly compatible: boolean;
}

/**
 * Works out, before anything runs, what restoring `snapshot` into the pipeline `graph` would do:
 * steps are matched by id; each operator step is instantiated and opened against its restored
 * state (as a real restore does, so version checks and `migrate` functions are exercised) with no
 * input and no side effects beyond the operator's own `open` — sinks and sources are not opened.
 */
export function compatibilityReport(graph: LogicalGraph, snapshot: JobSnapshot, options: { allowDroppedState?: boolean } = {}): CompatibilityReport {
  graph.finalize();
  const steps: StepVerdict[] = [];
  const env: RuntimeEnv = {
    clock: systemClock,
    maxParallelism: snapshot.maxParallelism,
    batchSize: 16,
    failFast: false,
    log: () => undefined,
    deadLetterLog: new DeadLetterLog(() => undefined),
    snapshots: { add: () => undefined },
    allowDroppedState: true,
    warned: new Set(),
  };
  const allow = options.allowDroppedState ?? false;
  for (const step of graph.nodes) {
    const saved = snapshot.steps.get(step.id);
    const spec = step.spec;
    if (spec.type === 'source') {
      const splits = saved?.instances.flatMap((i) => i.splits ?? []) ?? [];
      steps.push({
        step: step.id,
        kind: step.kind,
        action: saved === undefined ? 'new' : 'restore',
        tables: [],
        detail: saved === undefined ? 'reads from the start' : `resumes ${splits.length} split position(s)`,
      });
      continue;
    }
    if (spec.type === 'sink') {
      const committables = saved?.instances.filter((i) => i.operator !== undefined).length ?? 0;
      steps.push({
        step: step.id,
        kind: step.kind,
        action: saved === undefined ? 'new' : 'restore',
        tables: [],
        detail: committables > 0 ? `re-commits what ${committables} instance(s) pre-committed` : 'no pending commits',
      });
      continue;
    }
    const restore = instanceRestore(snapshot, step.id, 0, 1);
    const node = new OperatorNode({ stepId: step.id, kind: step.kind, instance: 0, parallelism: 1 }, spec.create(), step.inputs.map((_, i) => i), env, restore);
    const written = saved?.tables ?? {};
    let failure: string | null = null;
    try {
      const opened = node.open();
      if (opened instanceof Promise) opened.catch(() => undefined);
    } catch (error) {
      failure = errorMessage(error);
    }
    const declared = node.state.declared();
    const tables: TableVerdict[] = [];
    for (const [name, version] of Object.entries(declared)) {
      const w = written[name];
      if (w === undefined) tables.push({ table: name, action: 'new', detail: `version ${version}, starts empty` });
      else if (w === version) tables.push({ table: name, action: 'restore', detail: `version ${version}` });
      else if (failure !== null && failure.includes(`'${name}'`)) tables.push({ table: name, action: 'refuse', detail: failure });
      else tables.push({ table: name, action: 'migrate', detail: `version ${w} → ${version} by its migrate function` });
    }
    for (const [name, w] of Object.entries(written)) {
      if (declared[name] === undefined) tables.push({ table: name, action: allow ? 'drop' : 'refuse', detail: `version ${w}: no longer declared` });
    }
    const refused = failure !== null || tables.some((t) => t.action === 'refuse');
    const hasState = Object.keys(declared).length > 0 || Object.keys(written).length > 0;
    steps.push({
      step: step.id,
      kind: step.kind,
      action: refused ? 'refuse' : !hasState ? 'stateless' : saved === undefined || Object.keys(written).length === 0 ? 'new' : 'restore',
      tables,
      detail: failure ?? (saved === undefined ? 'not in the checkpoint' : `${saved.keyed.size} key group(s) of state`),
    });
  }
  for (const [id, saved] of snapshot.steps) {
    if (graph.nodes.some((n) => n.id === id)) continue;
    const stateful = Object.keys(saved.tables).length > 0 || saved.instances.some((i) => i.operator !== undefined || (i.splits?.length ?? 0) > 0);
    if (!stateful) continue;
    steps.push({
      step: id,
      kind: saved.kind,
      action: allow ? 'drop' : 'refuse',
      tables: Object.entries(saved.tables).map(([table, v]) => ({ table, action: allow ? 'drop' : 'refuse', detail: `version ${v}` })),
      detail: allow ? 'the pipeline no longer has this step: its state is dropped' : 'the pipeline no longer has this step (rename it back, or allow dropping state)',
    });
  }
  return {
    checkpoint: { id: snapshot.id, kind: snapshot.kind, createdAt: snapshot.createdAt },
    steps,
    compatible: !steps.some((s) => s.action === 'refuse'),
  };
}

/** The report as text, one line per step and table. */
export function formatReport(report: CompatibilityReport): string {
  const c = report.checkpoint;
  const lines = [`against ${c.kind} ${c.id} (${new Date(c.createdAt).toISOString()}):`];
  for (const s of report.steps) {
    lines.push(`  ${s.action.padEnd(9)} ${s.step} (${s.kind}): ${s.detail}`);
    for (const t of s.tables) lines.push(`    ${t.action.padEnd(9)} ${t.table}: ${t.detail}`);
  }
  lines.push(report.compatible ? 'compatible: the pipeline can start from this checkpoint' : 'NOT compatible: the restore would be refused (see "refuse" above)');
  return lines.join('\n');
}
