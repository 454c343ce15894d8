import { hash32 } from '../util/hash.ts';

/**
 * Keys and key groups. A key hashes to one of `maxParallelism` key groups (default 128); key
 * groups, not keys, are assigned to parallel instances and are the unit in which keyed state is
 * snapshotted, restored and redistributed.
 */

/** The types a stream may be keyed by. Compose several fields into a string for compound keys. */
export type Key = string | number;

/** Throws unless `key` is a string or a number (key selectors written in JavaScript may return anything). */
export function checkKey(key: unknown): Key {
  if (typeof key === 'number' || typeof key === 'string') return key;
  throw new TypeError(`a key must be a string or a number, got ${key === null ? 'null' : typeof key}`);
}

/** Default number of key groups. */
export const DEFAULT_MAX_PARALLELISM = 128;

/** The key group of `key`; stable across processes and releases. */
export function keyGroupOf(key: Key, maxParallelism: number): number {
  return hash32(key, 0x5bd1e995) % maxParallelism;
}

/** A contiguous range of key groups [start, end), the share of one parallel instance. */
export interface KeyGroupRange {
  readonly start: number;
  readonly end: number;
}

/**
 * The key groups owned by instance `index` of `parallelism` (contiguous ranges, as evenly sized
 * as possible, so that rescaling moves whole ranges).
 */
export function keyGroupRange(index: number, parallelism: number, maxParallelism: number): KeyGroupRange {
  if (parallelism < 1 || parallelism > maxParallelism) {
    throw new RangeError(`parallelism must be in [1, ${maxParallelism}], got ${parallelism}`);
  }
  const start = Math.floor((index * maxParallelism + parallelism - 1) / parallelism);
  const end = Math.floor(((index + 1) * maxParallelism + parallelism - 1) / parallelism);
  return { start, end };
}
