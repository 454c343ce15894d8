import type { SourceStepOptions } from '../plan/graph.ts';
import type { JobOptions } from './job.ts';

/**
 * Validation of the options a user passes to a job and to its sources. Every check throws a
 * RangeError or TypeError that names the option and the value, so that a typo or a unit mistake
 * fails where the job is created instead of hanging it (a batch size of 0 never fills a batch)
 * or corrupting it quietly (a fractional key-group count).
 */

/** Largest `batchSize`: 2^20 records (each port of each step buffers one batch). */
export const MAX_BATCH_SIZE = 1 << 20;

/**
 * Largest `maxParallelism` (number of key groups): 2^15, as in Flink. Key groups are the unit of
 * state in every snapshot, so more of them costs per checkpoint without adding parallelism.
 */
export const MAX_KEY_GROUPS = 1 << 15;

/** How a bad value is shown in an error: strings quoted, so that `'10'` differs from `10`. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return `'${value}' (a string)`;
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) return String(value);
  if (typeof value === 'function') return 'a function';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** Throws unless `value` is a whole number in [min, max]. */
export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be a whole number from ${min} to ${max}, got ${describeValue(value)}`);
  }
  return value;
}

/** Throws unless `value` is a number >= 0 (Infinity allowed when `infinite` says what it means). */
export function checkDuration(name: string, value: unknown, infinite?: string): number {
  const ok = typeof value === 'number' && value >= 0 && (infinite !== undefined || value !== Infinity);
  if (!ok) {
    const range = infinite === undefined ? 'a finite number of milliseconds >= 0' : `a number of milliseconds >= 0 (${infinite})`;
    throw new RangeError(`${name} must be ${range}, got ${describeValue(value)}`);
  }
  return value;
}

function checkFunction(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${describeValue(value)}`);
}

/**
 * Checks the options of a job run; called where a job is created. Throws naming the first bad
 * option; options left out are not checked (their defaults are valid).
 *
 * @example
 * validateJobOptions({ batchSize: 0 }); // RangeError: batchSize must be a whole number from 1 to 1048576, got 0
 */
export function validateJobOptions(options: JobOptions | undefined): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object') throw new TypeError(`job options must be an object, got ${describeValue(options)}`);
  if (options.batchSize !== undefined) checkInteger('batchSize', options.batchSize, 1, MAX_BATCH_SIZE);
  if (options.maxParallelism !== undefined) checkInteger('maxParallelism', options.maxParallelism, 1, MAX_KEY_GROUPS);
  if (options.parallelism !== undefined) checkInteger('parallelism', options.parallelism, 1, MAX_KEY_GROUPS);
  if (options.errors !== undefined && options.errors !== 'dead-letter' && options.errors !== 'fail') {
    throw new RangeError(`errors must be 'dead-letter' or 'fail', got ${describeValue(options.errors)}`);
  }
  if (options.clock !== undefined && typeof (options.clock as { now?: unknown } | null)?.now !== 'function') {
    throw new TypeError(`clock must be an object with a now() method, got ${describeValue(options.clock)}`);
  }
  checkFunction('log', options.log);
  if (options.checkpointInterval !== undefined) checkDuration('checkpointInterval', options.checkpointInterval);
  if (options.retainedCheckpoints !== undefined) checkInteger('retainedCheckpoints', options.retainedCheckpoints, 1, Number.MAX_SAFE_INTEGER);
  const tolerated = options.toleratedCheckpointFailures;
  if (tolerated !== undefined && tolerated !== Infinity) checkInteger('toleratedCheckpointFailures', tolerated, 0, Number.MAX_SAFE_INTEGER);
  if (options.checkpointTimeout !== undefined) {
    checkDuration('checkpointTimeout', options.checkpointTimeout);
    if (options.checkpointTimeout === 0) throw new RangeError('checkpointTimeout must be > 0');
  }
}

/**
 * Checks the options of a source step; called when the source is added, so the error points at
 * the line that added it.
 *
 * @example
 * validateSourceOptions('events', { idleTimeout: -1 }); // RangeError: source 'events': idleTimeout must be ...
 */
export function validateSourceOptions(stepId: string, options: SourceStepOptions<never> | undefined): void {
  if (options === undefined) return;
  try {
    if (options.outOfOrderness !== undefined) {
      checkDuration('outOfOrderness', options.outOfOrderness, 'Infinity: the watermark moves only at the end of input');
    }
    if (options.idleTimeout !== undefined) checkDuration('idleTimeout', options.idleTimeout, '0 or Infinity: never idle');
    if (options.maxTimeSkew !== undefined) checkDuration('maxTimeSkew', options.maxTimeSkew, 'Infinity: no limit');
    checkFunction('timestamp', options.timestamp);
  } catch (error) {
    (error as Error).message = `source '${stepId}': ${(error as Error).message}`;
    throw error;
  }
}
