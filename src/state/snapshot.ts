import { packState, unpackState } from './codec.ts';
import { type Key, keyGroupOf } from './key-group.ts';

/**
 * Keyed state in snapshots: one encoded blob per non-empty key group, so that an instance
 * restores exactly the key groups it owns, at any parallelism. A blob holds named sections, each a
 * flat array of runs (`key, value...`, with a stride chosen by the state table that wrote it).
 */
export type KeyGroupBlobs = ReadonlyMap<number, Uint8Array>;

type Sections = Record<string, unknown[]>;

/** Collects keyed state into per-key-group sections while a state backend snapshots itself. */
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
  finish(): Map<number, Uint8Array> {
    const keyed = new Map<number, Uint8Array>();
    for (const [kg, sections] of this.groups) keyed.set(kg, packState(sections));
    return keyed;
  }
}

/** Reads what {@link KeyedSnapshotWriter} wrote, across all key-group blobs handed to an instance. */
export class KeyedSnapshotReader {
  private readonly decoded: Sections[] = [];
  private readonly groups: number[] = [];

  constructor(blobs: KeyGroupBlobs) {
    for (const [kg, blob] of blobs) {
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
}

/** The key groups in [start, end) of `blobs`: what an instance owning that range restores. */
export function selectKeyGroups(blobs: KeyGroupBlobs, start: number, end: number): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  for (const [kg, blob] of blobs) if (kg >= start && kg < end) out.set(kg, blob);
  return out;
}
