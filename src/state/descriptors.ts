import type { StateCodec } from './codec.ts';

/**
 * Keyed state is declared up front, by name, when a keyed step is defined: the name keys the
 * state in snapshots, so keep it stable across versions of a job.
 *
 * @example
 * bids.keyBy((b) => b.bidder)
 *   .state({ total: valueState<number>(), seen: mapState<number, number>(), recent: listState<Bid>({ ttl: 60_000 }) })
 *   .process<number>({
 *     onElement(bid, ctx) {
 *       ctx.state.total.set((ctx.state.total.get() ?? 0) + bid.price);
 *     },
 *   });
 */

/** Options common to every kind of keyed state. */
export interface StateOptions<T> {
  /** How values are written into snapshots; default: structured (msgpack). */
  codec?: StateCodec<T>;
  /**
   * Time to live in milliseconds of processing time. A key's entry (a value, a whole list or a
   * whole map) that has not been written for this long reads as absent and is removed.
   */
  ttl?: number;
  /** Whether reads also refresh the TTL (default: only writes do). */
  ttlRefreshOnRead?: boolean;
  /**
   * Version of the state's layout (default 1). Raise it when the shape of the values changes; a
   * checkpoint written with another version is then restored through `migrate`, or refused.
   */
  version?: number;
  /**
   * Converts a value written by an older version of the pipeline: `old` is what that version's
   * codec encoded (the value itself with the default codec).
   *
   * @example
   * // v1 stored a number of cents; v2 stores { cents, currency }.
   * valueState<Price>({ version: 2, migrate: (old) => ({ cents: old as number, currency: 'USD' }) })
   */
  migrate?: (old: unknown, fromVersion: number) => T;
}

/** Declares a single value per key. */
export interface ValueStateDescriptor<V> {
  readonly kind: 'value';
  readonly options: StateOptions<V>;
  /** Type carrier only; never set. */
  readonly __value?: V;
}

/** Declares a map per key. */
export interface MapStateDescriptor<UK, UV> {
  readonly kind: 'map';
  readonly options: StateOptions<Map<UK, UV>>;
  readonly __key?: UK;
  readonly __value?: UV;
}

/** Declares a list per key. */
export interface ListStateDescriptor<V> {
  readonly kind: 'list';
  readonly options: StateOptions<V[]>;
  readonly __value?: V;
}

/** Any state descriptor. */
export type StateDescriptor = ValueStateDescriptor<unknown> | MapStateDescriptor<unknown, unknown> | ListStateDescriptor<unknown>;

/** A named set of state declarations. */
export type StateSpec = Record<string, StateDescriptor>;

/** Declares a value state. */
export function valueState<V>(options: StateOptions<V> = {}): ValueStateDescriptor<V> {
  return { kind: 'value', options };
}

/** Declares a map state. */
export function mapState<UK, UV>(options: StateOptions<Map<UK, UV>> = {}): MapStateDescriptor<UK, UV> {
  return { kind: 'map', options };
}

/** Declares a list state. */
export function listState<V>(options: StateOptions<V[]> = {}): ListStateDescriptor<V> {
  return { kind: 'list', options };
}

/** A single value for the current key. */
export interface ValueState<V> {
  /** The value for the current key, or undefined. */
  get(): V | undefined;
  /** Sets the value for the current key. */
  set(value: V): void;
  /** Removes the value for the current key. */
  clear(): void;
}

/** A map for the current key. */
export interface MapState<UK, UV> {
  get(key: UK): UV | undefined;
  set(key: UK, value: UV): void;
  has(key: UK): boolean;
  delete(key: UK): boolean;
  /** Number of entries for the current key. */
  size(): number;
  entries(): IterableIterator<[UK, UV]>;
  keys(): IterableIterator<UK>;
  values(): IterableIterator<UV>;
  /** Removes the whole map of the current key. */
  clear(): void;
}

/** A list for the current key. */
export interface ListState<V> {
  /** The list of the current key (empty if none). Do not mutate it; use add/update. */
  get(): readonly V[];
  add(value: V): void;
  /** Replaces the list of the current key. */
  update(values: V[]): void;
  /** Removes the list of the current key. */
  clear(): void;
}

/** The state handles a spec declares, as seen by user functions. */
export type StateHandles<S extends StateSpec> = {
  [P in keyof S]: S[P] extends ValueStateDescriptor<infer V>
    ? ValueState<V>
    : S[P] extends MapStateDescriptor<infer UK, infer UV>
      ? MapState<UK, UV>
      : S[P] extends ListStateDescriptor<infer V>
        ? ListState<V>
        : never;
};
