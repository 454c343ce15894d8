import type { Batch } from '../runtime/batch.ts';
import type { SinkContext } from '../runtime/sink.ts';

/**
 * Formats a batch as text lines, one per record. A record that cannot be formatted — `format`
 * throws (a BigInt or a cycle for JSON) or returns no string (`JSON.stringify(undefined)`) —
 * becomes a dead letter of the sink and the other records are still written; no line ever reads
 * `undefined`.
 */
export function formatLines<T>(batch: Batch<T>, format: (value: T) => string, ctx: SinkContext, prefix = ''): string {
  const { values, times, length } = batch;
  let text = '';
  for (let i = 0; i < length; i++) {
    let line: unknown;
    try {
      line = format(values[i] as T);
    } catch (error) {
      ctx.deadLetter(values[i], new Error(`cannot be written: ${(error as Error).message ?? String(error)}`), times[i]!);
      continue;
    }
    if (typeof line !== 'string') {
      ctx.deadLetter(values[i], new Error(`cannot be written: formatting gave ${line === undefined ? 'undefined' : typeof line}, not a string`), times[i]!);
      continue;
    }
    text += prefix + line + '\n';
  }
  return text;
}
