import { packState, unpackState } from './codec.ts';
import { type Key, keyGroupOf } from './key-group.ts';

/**
 * The state of one operator instance at a checkpoint: keyed state split by key group, plus
 * operator (non-keyed) state such as source offsets. Restoring takes any subset of key groups, so
 * state can be redistributed to another parallelism.
 */
export interface OperatorSnapshot {
  /** One encoded blob per non-empty key group. */
  readonly keyed: ReadonlyMap<number, Uint8Array>;
  /** Encoded operator state, if the operator has any. */
  readonly operator?: Uint8Array | undefined;
}

/** A snapshot of every stateful step of a job, by step id. */
export type JobSnapshot = ReadonlyMap<string, OperatorSnapshot>;

/** The snapshot of an operator with no state. */
export const EMPTY_SNAPSHOT: OperatorSnapshot = { keyed: new Map() };

type Sections = Record<string, unknown[]>;

/**
 * Collects keyed state into per-key-group sections while an operator snapshots itself. Each
 * section is a flat array of `key, value...` runs with a stride the operator chooses.
 */
export class KeyedSnapshotWriter {
  private readonly groups = new Map<number, Sections>();

  constructor(readonly maxParallelism: number) {}

  /** Appends `key` followed by `values` to `section` of the key's key group. */
  add(section: string, key: Key, ...values: unknown[]): void {
    this.addToGroup(keyGroupOf(key, this.maxParallelism), section, key, ...values);
  }

  /** Appends `values` to `section` of key group `kg` (state kept per key group, not per key). */
  addToGroup(kg: number, section: string, ...values: unknown[]): void {
    let sections = this.groups.get(kg);
    if (sections === undefined) {
      sections = {};
      this.groups.set(kg, sections);
    }
    let list = sections[section];
    if (list === undefined) {
      list = [];
      sections[section] = list;
    }
    for (const v of values) list.push(v);
  }

  /** Encodes every key group. */
  finish(operator?: unknown): OperatorSnapshot {
    const keyed = new Map<number, Uint8Array>();
    for (const [kg, sections] of this.groups) keyed.set(kg, packState(sections));
    return { keyed, operator: operator === undefined ? undefined : packState(operator) };
  }
}

/**
 * Reads what {@link KeyedSnapshotWriter} wrote, across all key-group blobs handed to an instance.
 */
export class KeyedSnapshotReader {
  private readonly decoded: Sections[] = [];
  private readonly groups: number[] = [];

  constructor(readonly snapshot: OperatorSnapshot) {
    for (const [kg, blob] of snapshot.keyed) {
      this.groups.push(kg);
      this.decoded.push(unpackState(blob) as Sections);
    }
  }

  /** Calls `fn` with each flat run array of `section`, one per key group that has it. */
  forEach(section: string, fn: (flat: readonly unknown[], keyGroup: number) => void): void {
    for (let i = 0; i < this.decoded.length; i++) {
      const flat = this.decoded[i]![section];
      if (flat !== undefined) fn(flat, this.groups[i]!);
    }
  }

  /** The decoded operator state, or undefined. */
  operatorState(): unknown {
    return this.snapshot.operator === undefined ? undefined : unpackState(this.snapshot.operator);
  }
}

/**
 * Keeps only the key groups in [start, end) of a snapshot: what an instance that owns that range
 * restores from.
 */
export function selectKeyGroups(snapshot: OperatorSnapshot, start: number, end: number): OperatorSnapshot {
  const keyed = new Map<number, Uint8Array>();
  for (const [kg, blob] of snapshot.keyed) if (kg >= start && kg < end) keyed.set(kg, blob);
  return { keyed, operator: snapshot.operator };
}
