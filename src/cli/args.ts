import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * Command-line values checked before anything runs: a bad one is a {@link UsageError}, which the
 * `spate` command prints with the usage text and exit code 2 — never a stack trace, and never a
 * job started with a value that makes it hang (a rate of 0) or quietly do something else (1.5
 * events, a seed of 'abc').
 */

/** A mistake in the command line; `main` prints it with the usage and exits with code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Plain decimal notation, optionally with an exponent (`1e6`); not '', ' ', '0x10' or 'Infinity'. */
const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;

/** What a numeric option accepts. */
export interface NumericRange {
  /** Only whole numbers (default false). */
  readonly integer?: boolean;
  readonly min: number;
  /** `min` itself is not allowed (default false). */
  readonly exclusiveMin?: boolean;
  readonly max?: number;
  /** Said after the range in the error, e.g. `0: run until stopped`. */
  readonly hint?: string;
}

function describeRange(range: NumericRange): string {
  const kind = range.integer ? 'a whole number' : 'a number';
  let bounds: string;
  if (range.max !== undefined && !range.exclusiveMin) bounds = `from ${range.min} to ${range.max}`;
  else {
    bounds = `${range.exclusiveMin ? '>' : '>='} ${range.min}`;
    if (range.max !== undefined) bounds += ` and <= ${range.max}`;
  }
  return `${kind} ${bounds}${range.hint === undefined ? '' : ` (${range.hint})`}`;
}

/**
 * The value of `--name`, or `fallback` when the option is absent; throws a UsageError naming the
 * option, the accepted range and what was given.
 *
 * @example
 * numericArg('events', '1.5', 1000, { integer: true, min: 1 }); // UsageError: --events must be a whole number >= 1, got '1.5'
 */
export function numericArg<F extends number | undefined>(name: string, raw: string | undefined, fallback: F, range: NumericRange): number | F {
  if (raw === undefined) return fallback;
  const n = DECIMAL.test(raw) ? Number(raw) : NaN;
  const ok =
    Number.isFinite(n) &&
    (range.exclusiveMin ? n > range.min : n >= range.min) &&
    (range.max === undefined || n <= range.max) &&
    (!range.integer || Number.isSafeInteger(n));
  if (!ok) throw new UsageError(`--${name} must be ${describeRange(range)}, got '${raw}'`);
  return n;
}

/**
 * Checks that `--name FILE` can be created: its directory exists, is a directory and is
 * writable, and FILE itself is not a directory. Returns the path unchanged, or undefined.
 */
export function outputFileArg(name: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  if (path === '') throw new UsageError(`--${name} needs a file name`);
  const dir = dirname(resolve(path));
  let stat;
  try {
    stat = statSync(dir);
  } catch {
    throw new UsageError(`--${name} ${path}: directory ${dir} does not exist`);
  }
  if (!stat.isDirectory()) throw new UsageError(`--${name} ${path}: ${dir} is not a directory`);
  if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--${name} ${path}: is a directory, not a file`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UsageError(`--${name} ${path}: directory ${dir} is not writable`);
  }
  return path;
}

/**
 * Calls `onStop` on the first SIGINT or SIGTERM (a second one of the same kind ends the process
 * as usual, in case stopping hangs). Returns a function that removes the handlers.
 */
export function onStopSignal(onStop: (signal: NodeJS.Signals) => void): () => void {
  const handler = (signal: NodeJS.Signals): void => onStop(signal);
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
