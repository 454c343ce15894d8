import type { StateTable } from './keyed-state-backend.ts';
import type { KeyedSnapshotReader, KeyedSnapshotWriter } from './snapshot.ts';
import { StateVersionError } from './keyed-table.ts';

/** How a per-key-group value is written into a snapshot. */
export interface KeyGroupCodec<V> {
  encode(value: V): unknown;
  decode(encoded: unknown): V;
}

/**
 * State kept per key group rather than per key (filters that summarise many keys, such as
 * dedupe's Bloom filters). It still splits and rescales with the key groups.
 */
export class KeyGroupTable<V> implements StateTable {
  readonly groups = new Map<number, V>();

  constructor(
    readonly name: string,
    private readonly codec: KeyGroupCodec<V>,
    readonly version = 1,
  ) {}

  snapshot(writer: KeyedSnapshotWriter): void {
    for (const [kg, v] of this.groups) writer.addToGroup(kg, this.name, this.codec.encode(v));
  }

  restore(reader: KeyedSnapshotReader, writtenVersion: number): void {
    if (writtenVersion !== this.version) throw new StateVersionError(this.name, writtenVersion, this.version);
    reader.forEach(this.name, (flat, kg) => this.groups.set(kg, this.codec.decode(flat[0])));
  }
}
