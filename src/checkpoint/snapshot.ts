import type { InstanceRestore, InstanceSnapshot, SavedSplit } from '../runtime/env.ts';
import { packState, unpackState } from '../state/codec.ts';
import { keyGroupRange } from '../state/key-group.ts';
import { selectKeyGroups } from '../state/snapshot.ts';

/** The non-keyed part of one step instance's state in a checkpoint. */
export interface InstanceState {
  /** The instance's watermark at the checkpoint. */
  readonly watermark: number;
  /** Operator state (a sink's committables), if any. */
  readonly operator?: unknown;
  /** Sources: every split the instance read, with its position. */
  readonly splits?: readonly SavedSplit[];
}

/** One step's state in a checkpoint, independent of the parallelism it ran at. */
export interface StepSnapshot {
  readonly kind: string;
  /** Parallelism the step ran at (instances are listed in order). */
  readonly parallelism: number;
  /** State tables the step declared, name → version. */
  readonly tables: Readonly<Record<string, number>>;
  /** Keyed state of all instances, by key group. */
  readonly keyed: ReadonlyMap<number, Uint8Array>;
  readonly instances: readonly InstanceState[];
}

/**
 * A whole job's state at one checkpoint: what a restart, a savepoint restore or a rescale starts
 * from. Keyed state is kept by key group and non-keyed state by old instance, so it can be cut
 * for any new parallelism ({@link instanceRestore}).
 */
export interface JobSnapshot {
  readonly id: number;
  readonly kind: 'checkpoint' | 'savepoint';
  /** Wall-clock time the checkpoint was triggered (epoch ms). */
  readonly createdAt: number;
  /** Fingerprint of the plan that wrote it. */
  readonly fingerprint: string;
  readonly maxParallelism: number;
  readonly steps: ReadonlyMap<string, StepSnapshot>;
}

/** Collects the instance snapshots of one checkpoint and builds the {@link JobSnapshot}. */
export class SnapshotAssembler {
  private readonly steps = new Map<string, { kind: string; parallelism: number; instances: Array<InstanceSnapshot | undefined> }>();

  constructor(
    readonly id: number,
    readonly kind: 'checkpoint' | 'savepoint',
    readonly createdAt: number,
    readonly fingerprint: string,
    readonly maxParallelism: number,
  ) {}

  /** Declares a step so that it appears even if it has no state. */
  expect(step: string, kind: string, parallelism: number): void {
    if (!this.steps.has(step)) this.steps.set(step, { kind, parallelism, instances: new Array(parallelism).fill(undefined) });
  }

  add(step: string, instance: number, snapshot: InstanceSnapshot): void {
    const s = this.steps.get(step);
    if (s === undefined) throw new Error(`checkpoint ${this.id}: unexpected step '${step}'`);
    s.instances[instance] = snapshot;
  }

  /** Ids of the expected steps. */
  stepIds(): string[] {
    return [...this.steps.keys()];
  }

  /** The snapshots reported so far by instances of `step`. */
  instancesOf(step: string): Array<[number, InstanceSnapshot]> {
    const out: Array<[number, InstanceSnapshot]> = [];
    this.steps.get(step)?.instances.forEach((s, i) => s !== undefined && out.push([i, s]));
    return out;
  }

  /** Whether some reported operator state is still a promise (a pre-commit in progress). */
  hasPromises(): boolean {
    for (const s of this.steps.values()) if (s.instances.some((i) => i?.operator instanceof Promise)) return true;
    return false;
  }

  /** Whether every expected instance has reported. */
  get complete(): boolean {
    for (const s of this.steps.values()) if (s.instances.some((i) => i === undefined)) return false;
    return true;
  }

  /** The steps or instances that have not reported (for error messages). */
  missing(): string[] {
    const out: string[] = [];
    for (const [id, s] of this.steps) s.instances.forEach((i, n) => i === undefined && out.push(`${id}#${n}`));
    return out;
  }

  finish(): JobSnapshot {
    const steps = new Map<string, StepSnapshot>();
    for (const [id, s] of this.steps) {
      const keyed = new Map<number, Uint8Array>();
      const tables: Record<string, number> = {};
      const instances: InstanceState[] = [];
      for (const inst of s.instances) {
        if (inst === undefined) throw new Error(`checkpoint ${this.id}: step '${id}' did not report every instance`);
        if (inst.operator instanceof Promise) throw new Error(`checkpoint ${this.id}: step '${id}' has unfinished operator state`);
        for (const [kg, blob] of inst.keyed?.keyed ?? []) keyed.set(kg, blob);
        Object.assign(tables, inst.keyed?.tables);
        instances.push(stripUndefined({ watermark: inst.watermark, operator: inst.operator, splits: inst.splits }));
      }
      steps.set(id, { kind: s.kind, parallelism: s.parallelism, tables, keyed, instances });
    }
    return { id: this.id, kind: this.kind, createdAt: this.createdAt, fingerprint: this.fingerprint, maxParallelism: this.maxParallelism, steps };
  }
}

function stripUndefined(state: { watermark: number; operator: unknown; splits: readonly SavedSplit[] | undefined }): InstanceState {
  const out: { watermark: number; operator?: unknown; splits?: readonly SavedSplit[] } = { watermark: state.watermark };
  if (state.operator !== undefined) out.operator = state.operator;
  if (state.splits !== undefined) out.splits = state.splits;
  return out;
}

/**
 * What instance `instance` of `parallelism` restores of a step: the key groups it owns, the
 * lowest watermark of the old instances (they agree for steps behind aligned barriers), the
 * operator state of old instances i ≡ instance (mod parallelism), and its share of the splits
 * (kept where they were at the same parallelism, dealt round-robin otherwise).
 */
export function instanceRestore(snapshot: JobSnapshot, stepId: string, instance: number, parallelism: number): InstanceRestore | null {
  const step = snapshot.steps.get(stepId);
  if (step === undefined) return null;
  const range = keyGroupRange(instance, parallelism, snapshot.maxParallelism);
  let watermark = Infinity;
  for (const i of step.instances) watermark = Math.min(watermark, i.watermark);
  if (step.instances.length === 0) watermark = -Infinity;
  const operator: unknown[] = [];
  step.instances.forEach((s, i) => {
    if (i % parallelism === instance && s.operator !== undefined) operator.push(s.operator);
  });
  let splits: SavedSplit[] | null = null;
  if (step.instances.some((s) => s.splits !== undefined)) {
    if (step.parallelism === parallelism) splits = [...(step.instances[instance]?.splits ?? [])];
    else {
      const all = step.instances.flatMap((s) => s.splits ?? []);
      splits = all.filter((_, k) => k % parallelism === instance);
    }
  }
  const keyed = Object.keys(step.tables).length === 0 ? null : { keyed: selectKeyGroups(step.keyed, range.start, range.end), tables: step.tables };
  return { checkpointId: snapshot.id, watermark, keyed, operator, splits };
}

/** A snapshot as bytes (msgpack), e.g. to keep it outside the process. */
export function encodeSnapshot(snapshot: JobSnapshot): Uint8Array {
  return packState({ format: 1, ...snapshot, steps: [...snapshot.steps].map(([id, s]) => [id, { ...s, keyed: [...s.keyed] }]) });
}

/** Reads what {@link encodeSnapshot} wrote. */
export function decodeSnapshot(bytes: Uint8Array): JobSnapshot {
  const raw = unpackState(bytes) as Omit<JobSnapshot, 'steps'> & { format: number; steps: Array<[string, Omit<StepSnapshot, 'keyed'> & { keyed: Array<[number, Uint8Array]> }]> };
  if (raw.format !== 1) throw new Error(`not a Spate snapshot (format ${String(raw.format)})`);
  const steps = new Map<string, StepSnapshot>(raw.steps.map(([id, s]) => [id, { ...s, keyed: new Map(s.keyed) }]));
  return { id: raw.id, kind: raw.kind, createdAt: raw.createdAt, fingerprint: raw.fingerprint, maxParallelism: raw.maxParallelism, steps };
}
