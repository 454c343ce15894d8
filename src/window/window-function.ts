import type { Emitter } from '../operators/emitter.ts';
import type { WindowInfo } from './assigners.ts';

/**
 * Turns a window's result for one key into output records. Records emitted here carry the
 * window's end - 1 as timestamp. A throwing function dead-letters that key's result.
 */
export type WindowFunction<K, R, O> = (key: K, result: R, window: WindowInfo, out: Emitter<O>) => void;
