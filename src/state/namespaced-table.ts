import { defaultCodec, type StateCodec } from './codec.ts';
import type { Key } from './key-group.ts';
import type { StateTable } from './keyed-state-backend.ts';
import type { KeyedSnapshotReader, KeyedSnapshotWriter } from './snapshot.ts';
import { StateVersionError } from './keyed-table.ts';

/**
 * Keyed state under numeric namespaces — window panes: namespace (pane start) → key → value.
 * Namespaces are kept sorted, so an operator walks them in time order and drops the oldest from the
 * front. Snapshot runs are (key, namespace, value).
 */
export class NamespacedTable<V> implements StateTable {
  readonly version = 1;
  private readonly byNamespace = new Map<number, Map<Key, V>>();
  /** Namespaces, ascending. */
  readonly namespaces: number[] = [];

  constructor(
    readonly name: string,
    private readonly codec: StateCodec<V> = defaultCodec<V>(),
  ) {}

  /** The entries of namespace `ns`, or undefined. */
  get(ns: number): Map<Key, V> | undefined {
    return this.byNamespace.get(ns);
  }

  /** The entries of namespace `ns`, created empty if missing. */
  getOrCreate(ns: number): Map<Key, V> {
    let map = this.byNamespace.get(ns);
    if (map === undefined) {
      map = new Map<Key, V>();
      this.byNamespace.set(ns, map);
      const list = this.namespaces;
      let i = list.length;
      while (i > 0 && list[i - 1]! > ns) i--;
      list.splice(i, 0, ns);
    }
    return map;
  }

  /** Removes the `count` oldest namespaces. */
  dropOldest(count: number): void {
    for (let i = 0; i < count; i++) this.byNamespace.delete(this.namespaces[i]!);
    this.namespaces.splice(0, count);
  }

  get size(): number {
    return this.byNamespace.size;
  }

  snapshot(writer: KeyedSnapshotWriter): void {
    for (const ns of this.namespaces) {
      for (const [k, v] of this.byNamespace.get(ns)!) writer.add(this.name, k, ns, this.codec.encode(v));
    }
  }

  restore(reader: KeyedSnapshotReader, writtenVersion: number): void {
    if (writtenVersion !== this.version) throw new StateVersionError(this.name, writtenVersion, this.version);
    reader.forEach(this.name, (flat) => {
      for (let i = 0; i < flat.length; i += 3) this.getOrCreate(flat[i + 1] as number).set(flat[i] as Key, this.codec.decode(flat[i + 2]));
    });
  }
}
