import type { JobOptions } from './local-job.ts';

/** Throws a clear error naming the first invalid job option. */
export function validateJobOptions(options: JobOptions): void {
  const positiveInt = (name: string, v: number | undefined, max = Number.MAX_SAFE_INTEGER): void => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
      throw new RangeError(`option ${name} must be an integer in [1, ${max}], got ${String(v)}`);
    }
  };
  const nonNegative = (name: string, v: number | undefined): void => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !(v >= 0)) throw new RangeError(`option ${name} must be a number >= 0, got ${String(v)}`);
  };
  positiveInt('batchSize', options.batchSize, 1 << 20);
  positiveInt('maxParallelism', options.maxParallelism, 32768);
  nonNegative('checkpointInterval', options.checkpointInterval);
  nonNegative('retainedCheckpoints', options.retainedCheckpoints);
  nonNegative('toleratedCheckpointFailures', options.toleratedCheckpointFailures);
  nonNegative('checkpointTimeout', options.checkpointTimeout);
  if (options.errors !== undefined && options.errors !== 'dead-letter' && options.errors !== 'fail') {
    throw new RangeError(`option errors must be 'dead-letter' or 'fail', got ${String(options.errors)}`);
  }
}
