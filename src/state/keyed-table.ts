import type { Clock } from '../time/clock.ts';
import { defaultCodec, type StateCodec } from './codec.ts';
import type { ListState, MapState, StateOptions, ValueState } from './descriptors.ts';
import type { Key } from './key-group.ts';
import type { KeyedSnapshotReader, KeyedSnapshotWriter } from './snapshot.ts';
import type { StateTable } from './keyed-state-backend.ts';

/** Where state handles read the current key from. */
export interface CurrentKey {
  currentKey: Key;
}

interface TtlEntry<E> {
  value: E;
  expires: number;
}

/** Key → entry map of one declared state, with optional TTL. */
/**
 * Key → entry map of one declared state (a value, a list or a map per key), with optional TTL.
 * Entries of a state with a TTL are kept in the Map in order of expiry (a write moves the entry to
 * the end), so expired entries are found at the front and removed without a scan.
 */
export class KeyedTable<E> implements StateTable {
  readonly map = new Map<Key, E | TtlEntry<E>>();
  readonly ttl: number;
  private readonly refreshOnRead: boolean;
  private readonly codec: StateCodec<E>;
  readonly version: number;

  constructor(
    readonly name: string,
    private readonly options: StateOptions<E>,
    private readonly clock: Clock,
  ) {
    this.version = checkVersion(name, options.version);
    this.ttl = options.ttl ?? 0;
    if (!(this.ttl >= 0)) throw new RangeError(`state ttl must be >= 0, got ${options.ttl}`);
    this.refreshOnRead = options.ttlRefreshOnRead ?? false;
    this.codec = options.codec ?? defaultCodec<E>();
  }

  get(key: Key): E | undefined {
    if (this.ttl === 0) return this.map.get(key) as E | undefined;
    const entry = this.map.get(key) as TtlEntry<E> | undefined;
    if (entry === undefined) return undefined;
    const now = this.clock.now();
    if (entry.expires <= now) {
      this.map.delete(key);
      return undefined;
    }
    if (this.refreshOnRead) this.refresh(key, entry, now);
    return entry.value;
  }

  set(key: Key, value: E): void {
    if (this.ttl === 0) {
      this.map.set(key, value);
      return;
    }
    const entry = this.map.get(key) as TtlEntry<E> | undefined;
    if (entry === undefined) {
      this.map.set(key, { value, expires: this.clock.now() + this.ttl });
    } else {
      entry.value = value;
      this.refresh(key, entry, this.clock.now());
    }
  }

  /** Marks the entry of `key` as written (after an in-place mutation of a list or map). */
  touch(key: Key): void {
    if (this.ttl === 0) return;
    const entry = this.map.get(key) as TtlEntry<E> | undefined;
    if (entry !== undefined) this.refresh(key, entry, this.clock.now());
  }

  delete(key: Key): void {
    this.map.delete(key);
  }

  private refresh(key: Key, entry: TtlEntry<E>, now: number): void {
    entry.expires = now + this.ttl;
    // Re-insert to move the entry to the end: the map stays in expiry order.
    this.map.delete(key);
    this.map.set(key, entry);
  }

  expire(): number {
    if (this.ttl === 0) return 0;
    const now = this.clock.now();
    let removed = 0;
    for (const [key, entry] of this.map) {
      if ((entry as TtlEntry<E>).expires > now) break;
      this.map.delete(key);
      removed++;
    }
    return removed;
  }

  nextExpiry(): number {
    if (this.ttl === 0) return Infinity;
    for (const entry of this.map.values()) return (entry as TtlEntry<E>).expires;
    return Infinity;
  }

  /**
   * Entries go to section `<name>` as (key, value) runs, or with a TTL to `<name>#ttl` as
   * (key, value, expiry) runs, so a restore reads the layout it was written with even if the TTL
   * setting changed in between.
   */
  snapshot(writer: KeyedSnapshotWriter): void {
    const name = this.name;
    const now = this.clock.now();
    for (const [key, stored] of this.map) {
      if (this.ttl === 0) {
        writer.add(name, key, this.codec.encode(stored as E));
      } else {
        const entry = stored as TtlEntry<E>;
        if (entry.expires > now) writer.add(`${name}#ttl`, key, this.codec.encode(entry.value), entry.expires);
      }
    }
  }

  restore(reader: KeyedSnapshotReader, writtenVersion: number): void {
    const migrate = this.options.migrate;
    if (writtenVersion !== this.version && migrate === undefined) {
      throw new StateVersionError(this.name, writtenVersion, this.version);
    }
    const decode = writtenVersion === this.version ? (encoded: unknown) => this.codec.decode(encoded) : (encoded: unknown) => migrate!(encoded, writtenVersion);
    const put = (key: Key, encoded: unknown, expires: number | undefined): void => {
      const value = decode(encoded);
      if (this.ttl === 0) this.map.set(key, value);
      // Entries written without a TTL start a fresh one.
      else this.map.set(key, { value, expires: expires ?? this.clock.now() + this.ttl });
    };
    reader.forEach(this.name, (flat) => {
      for (let i = 0; i < flat.length; i += 2) put(flat[i] as Key, flat[i + 1], undefined);
    });
    reader.forEach(`${this.name}#ttl`, (flat) => {
      for (let i = 0; i < flat.length; i += 3) put(flat[i] as Key, flat[i + 1], flat[i + 2] as number);
    });
    if (this.ttl !== 0) this.sortByExpiry();
  }

  /** Number of keys with an entry. */
  size(): number {
    return this.map.size;
  }

  private sortByExpiry(): void {
    const entries = [...this.map] as Array<[Key, TtlEntry<E>]>;
    entries.sort((a, b) => a[1].expires - b[1].expires);
    this.map.clear();
    for (const [k, e] of entries) this.map.set(k, e);
  }
}

const EMPTY: readonly never[] = Object.freeze([]);

export class HeapValueState<V> implements ValueState<V> {
  constructor(private readonly backend: CurrentKey, private readonly table: KeyedTable<V>) {}
  get(): V | undefined {
    return this.table.get(this.backend.currentKey);
  }
  set(value: V): void {
    this.table.set(this.backend.currentKey, value);
  }
  clear(): void {
    this.table.delete(this.backend.currentKey);
  }
}

export class HeapListState<V> implements ListState<V> {
  constructor(private readonly backend: CurrentKey, private readonly table: KeyedTable<V[]>) {}
  get(): readonly V[] {
    return this.table.get(this.backend.currentKey) ?? EMPTY;
  }
  add(value: V): void {
    const key = this.backend.currentKey;
    const list = this.table.get(key);
    if (list === undefined) this.table.set(key, [value]);
    else {
      list.push(value);
      this.table.touch(key);
    }
  }
  update(values: V[]): void {
    if (values.length === 0) this.table.delete(this.backend.currentKey);
    else this.table.set(this.backend.currentKey, values);
  }
  clear(): void {
    this.table.delete(this.backend.currentKey);
  }
}

const EMPTY_MAP: ReadonlyMap<unknown, unknown> = new Map();

export class HeapMapState<UK, UV> implements MapState<UK, UV> {
  constructor(private readonly backend: CurrentKey, private readonly table: KeyedTable<Map<UK, UV>>) {}
  private current(): ReadonlyMap<UK, UV> {
    return this.table.get(this.backend.currentKey) ?? (EMPTY_MAP as ReadonlyMap<UK, UV>);
  }
  get(key: UK): UV | undefined {
    return this.current().get(key);
  }
  set(key: UK, value: UV): void {
    const k = this.backend.currentKey;
    const map = this.table.get(k);
    if (map === undefined) this.table.set(k, new Map([[key, value]]));
    else {
      map.set(key, value);
      this.table.touch(k);
    }
  }
  has(key: UK): boolean {
    return this.current().has(key);
  }
  delete(key: UK): boolean {
    const k = this.backend.currentKey;
    const map = this.table.get(k);
    if (map === undefined || !map.delete(key)) return false;
    if (map.size === 0) this.table.delete(k);
    else this.table.touch(k);
    return true;
  }
  size(): number {
    return this.current().size;
  }
  entries(): IterableIterator<[UK, UV]> {
    return this.current().entries();
  }
  keys(): IterableIterator<UK> {
    return this.current().keys();
  }
  values(): IterableIterator<UV> {
    return this.current().values();
  }
  clear(): void {
    this.table.delete(this.backend.currentKey);
  }
}

/** A state was written with another version than the pipeline declares, and cannot be migrated. */
export class StateVersionError extends Error {
  constructor(
    readonly state: string,
    readonly written: number,
    readonly declared: number,
  ) {
    super(
      `state '${state}' was written with version ${written} but is declared with version ${declared} and no migrate function: ` +
        `give the state a migrate(old, fromVersion) function, or keep version ${written}`,
    );
    this.name = 'StateVersionError';
  }
}

/** Validates a declared state version (a positive integer, default 1). */
export function checkVersion(name: string, version: number | undefined): number {
  const v = version ?? 1;
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`state '${name}': version must be a positive integer, got ${String(version)}`);
  return v;
}
