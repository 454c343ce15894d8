import type { Clock } from '../time/clock.ts';
import type { StateHandles, StateSpec } from './descriptors.ts';
import type { Key } from './key-group.ts';
import { type CurrentKey, HeapListState, HeapMapState, HeapValueState, KeyedTable } from './keyed-table.ts';
import { type KeyGroupBlobs, KeyedSnapshotReader, KeyedSnapshotWriter } from './snapshot.ts';

/**
 * A named piece of keyed state that the backend snapshots and restores: declared state (value,
 * map, list), timers, window panes, per-key-group filters. Every table writes its entries under
 * its own name, split by key group, so the backend alone decides when state is written and read.
 */
export interface StateTable {
  /** Unique within the step; keys the table in snapshots. Keep it stable across versions. */
  readonly name: string;
  /** Layout version; a snapshot written with another version is handed to `restore` to migrate or refuse. */
  readonly version: number;
  /** Writes every live entry. Must not change the table. */
  snapshot(writer: KeyedSnapshotWriter): void;
  /** Loads entries written by `snapshot` (any subset of key groups); `writtenVersion` is the version that wrote them. */
  restore(reader: KeyedSnapshotReader, writtenVersion: number): void;
}

/** The keyed state of one step instance in a snapshot. */
export interface KeyedStateSnapshot {
  /** One blob per non-empty key group. */
  readonly keyed: KeyGroupBlobs;
  /** Name → version of every table that was declared, empty or not. */
  readonly tables: Readonly<Record<string, number>>;
}

/**
 * The keyed state of one step instance, on the JavaScript heap. Operators register their tables
 * when they open; a table declared by a restored step is filled from the snapshot right when it is
 * registered, so state is restored before the operator sees any input and never by the operator's
 * own code. Snapshots are taken by the runtime through {@link snapshot}, per key group.
 *
 * User code reads and writes the entry of {@link currentKey}, which the operator sets before each
 * call.
 */
export class KeyedStateBackend implements CurrentKey {
  currentKey: Key = 0;
  private readonly tables = new Map<string, StateTable>();
  private readonly ttlTables: Array<KeyedTable<unknown>> = [];
  private reader: KeyedSnapshotReader | null = null;

  constructor(
    readonly clock: Clock,
    readonly maxParallelism: number,
    private restored: KeyedStateSnapshot | null = null,
  ) {}

  /** Registers a table, restoring its entries if the step was restored with state under its name. */
  registerTable<T extends StateTable>(table: T): T {
    if (this.tables.has(table.name)) throw new Error(`state '${table.name}' is declared twice`);
    this.tables.set(table.name, table);
    const written = this.restored?.tables[table.name];
    if (written !== undefined) {
      this.reader ??= new KeyedSnapshotReader(this.restored!.keyed);
      table.restore(this.reader, written);
    }
    if (table instanceof KeyedTable && table.ttl > 0) this.ttlTables.push(table as KeyedTable<unknown>);
    return table;
  }

  /** Creates the handles of declared user state (`state:<name>` tables). */
  register<S extends StateSpec>(spec: S): StateHandles<S> {
    const handles: Record<string, unknown> = {};
    for (const [name, descriptor] of Object.entries(spec)) {
      const table = this.registerTable(new KeyedTable<unknown>(`state:${name}`, descriptor.options as never, this.clock));
      switch (descriptor.kind) {
        case 'value':
          handles[name] = new HeapValueState(this, table);
          break;
        case 'map':
          handles[name] = new HeapMapState(this, table as KeyedTable<Map<unknown, unknown>>);
          break;
        case 'list':
          handles[name] = new HeapListState(this, table as KeyedTable<unknown[]>);
          break;
      }
    }
    return handles as StateHandles<S>;
  }

  /**
   * Names of restored tables that no table claimed after the operator opened: state of the old
   * pipeline that this one does not declare. Frees the decoded snapshot.
   */
  finishRestore(): string[] {
    const restored = this.restored;
    this.restored = null;
    this.reader = null;
    if (restored === null) return [];
    return Object.keys(restored.tables).filter((name) => !this.tables.has(name));
  }

  /** Name → version of every registered table (for compatibility reports). */
  declared(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, table] of this.tables) out[name] = table.version;
    return out;
  }

  /** Writes every table, per key group. */
  snapshot(): KeyedStateSnapshot {
    const writer = new KeyedSnapshotWriter(this.maxParallelism);
    for (const table of this.tables.values()) table.snapshot(writer);
    return { keyed: writer.finish(), tables: this.declared() };
  }

  /** Removes expired entries of TTL states; returns how many were removed. */
  expire(): number {
    let removed = 0;
    for (const table of this.ttlTables) removed += table.expire();
    return removed;
  }

  /** The earliest time an entry expires, or Infinity when no state has a TTL entry. */
  nextExpiry(): number {
    let next = Infinity;
    for (const table of this.ttlTables) next = Math.min(next, table.nextExpiry());
    return next;
  }

  /** Whether any declared state has a TTL. */
  get hasTtl(): boolean {
    return this.ttlTables.length > 0;
  }

  /** Number of keys holding an entry in any declared state (for metrics and tests). */
  size(): number {
    const keys = new Set<Key>();
    for (const table of this.tables.values()) if (table instanceof KeyedTable) for (const k of table.map.keys()) keys.add(k);
    return keys.size;
  }
}
