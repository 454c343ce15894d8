import type { StateCodec } from '../state/codec.ts';

/**
 * An incremental aggregation: windows keep one accumulator per key and slice instead of the
 * records. `merge` combines slices of sliding windows and merging sessions.
 *
 * Accumulators may be immutable values (numbers) or mutable objects: `add` and `merge` return the
 * accumulator to keep, which may be their first argument mutated. `merge` must not change `b`.
 */
export interface Aggregator<T, A, R> {
  create(): A;
  add(acc: A, value: T): A;
  merge(a: A, b: A): A;
  result(acc: A): R;
  /** How accumulators are snapshotted (default: structured). */
  readonly codec?: StateCodec<A>;
}

/** Number of records. */
export function count(): Aggregator<unknown, number, number> {
  return { create: () => 0, add: (acc) => acc + 1, merge: (a, b) => a + b, result: (acc) => acc };
}

/** Sum of `field(record)`. */
export function sum<T>(field: (value: T) => number): Aggregator<T, number, number> {
  return { create: () => 0, add: (acc, v) => acc + field(v), merge: (a, b) => a + b, result: (acc) => acc };
}

/** Smallest `field(record)`. */
export function min<T>(field: (value: T) => number): Aggregator<T, number, number> {
  return {
    create: () => Infinity,
    add: (acc, v) => Math.min(acc, field(v)),
    merge: (a, b) => Math.min(a, b),
    result: (acc) => acc,
  };
}

/** Largest `field(record)`. */
export function max<T>(field: (value: T) => number): Aggregator<T, number, number> {
  return {
    create: () => -Infinity,
    add: (acc, v) => Math.max(acc, field(v)),
    merge: (a, b) => Math.max(a, b),
    result: (acc) => acc,
  };
}

/** Running sum and count, the accumulator of {@link avg}. */
export interface AvgAccumulator {
  sum: number;
  count: number;
}

/** Mean of `field(record)`. */
export function avg<T>(field: (value: T) => number): Aggregator<T, AvgAccumulator, number> {
  return {
    create: () => ({ sum: 0, count: 0 }),
    add: (acc, v) => {
      acc.sum += field(v);
      acc.count++;
      return acc;
    },
    merge: (a, b) => {
      a.sum += b.sum;
      a.count += b.count;
      return a;
    },
    result: (acc) => (acc.count === 0 ? NaN : acc.sum / acc.count),
  };
}

/** Folds records with `fn`; the first record of a window is the initial value. */
export function reduce<T>(fn: (a: T, b: T) => T): Aggregator<T, T | undefined, T> {
  return {
    create: () => undefined,
    add: (acc, v) => (acc === undefined ? v : fn(acc, v)),
    merge: (a, b) => (a === undefined ? b : b === undefined ? a : fn(a, b)),
    result: (acc) => acc as T,
  };
}

/** Records with the largest `field(record)`; ties are all kept. */
export interface TopAccumulator<T> {
  best: number;
  items: T[];
}

/** All records whose `field` equals the maximum (ties kept), e.g. the highest bids. */
export function maxBy<T>(field: (value: T) => number): Aggregator<T, TopAccumulator<T>, T[]> {
  return {
    create: () => ({ best: -Infinity, items: [] }),
    add: (acc, v) => {
      const f = field(v);
      if (f > acc.best) {
        acc.best = f;
        acc.items = [v];
      } else if (f === acc.best) acc.items.push(v);
      return acc;
    },
    merge: (a, b) => {
      if (b.best > a.best) {
        a.best = b.best;
        a.items = b.items.slice();
      } else if (b.best === a.best) for (const v of b.items) a.items.push(v);
      return a;
    },
    result: (acc) => acc.items,
  };
}

/** Every record of the window, in arrival order (what full-window functions receive). */
export function collectAll<T>(): Aggregator<T, T[], T[]> {
  return {
    create: () => [],
    add: (acc, v) => {
      acc.push(v);
      return acc;
    },
    merge: (a, b) => {
      for (const v of b) a.push(v);
      return a;
    },
    result: (acc) => acc,
  };
}
