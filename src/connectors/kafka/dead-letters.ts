import type { DeadLetter } from '../../runtime/operator.ts';
import { KafkaSink, type KafkaSinkOptions } from './sink.ts';

/** A dead letter as written to a Kafka topic (JSON). */
export interface KafkaDeadLetter {
  /** The step that reported it. */
  readonly step: string;
  readonly error: string;
  /** Event time of the record, if it had one (null otherwise). */
  readonly time: number | null;
  /**
   * The record or raw input, JSON-safe: bytes as `{ base64, size }` (the first `maxBytes` bytes),
   * big integers as decimal text, long strings truncated (with `…` and their length beside).
   */
  readonly record: unknown;
}

/**
 * The JSON form of a dead letter: whatever the record holds (bytes, big integers, cycles) becomes
 * something `JSON.stringify` can write, truncated to about `maxBytes`.
 */
export function deadLetterJson(letter: DeadLetter, maxBytes = 64 * 1024): KafkaDeadLetter {
  return { step: letter.step, error: letter.error, time: Number.isFinite(letter.time) ? letter.time : null, record: jsonSafe(letter.record, maxBytes, new Set()) };
}

function jsonSafe(value: unknown, maxBytes: number, seen: Set<unknown>): unknown {
  if (value === null || value === undefined) return value ?? null;
  switch (typeof value) {
    case 'string':
      return value.length > maxBytes ? { text: value.slice(0, maxBytes) + '…', length: value.length } : value;
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'function':
    case 'symbol':
      return String(value);
  }
  if (value instanceof Uint8Array) {
    const part = Buffer.from(value.buffer, value.byteOffset, Math.min(value.byteLength, maxBytes));
    return { base64: part.toString('base64'), size: value.byteLength, ...(value.byteLength > maxBytes ? { truncated: true } : {}) };
  }
  if (value instanceof Error) return { error: value.message };
  if (value instanceof Date) return value.toISOString();
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => jsonSafe(v, maxBytes, seen));
    if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), jsonSafe(v, maxBytes, seen)]));
    if (value instanceof Set) return [...value].map((v) => jsonSafe(v, maxBytes, seen));
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value as object)) out[k] = jsonSafe((value as Record<string, unknown>)[k], maxBytes, seen);
    return out;
  } finally {
    seen.delete(value);
  }
}

/**
 * A sink writing dead letters to a Kafka topic as JSON ({@link KafkaDeadLetter}), keyed by the
 * step that reported them, exactly once by default like any {@link KafkaSink}.
 *
 * @example
 * p.deadLetters().sink(kafkaDeadLetterSink({ topic: 'orders-dead-letters' }), { id: 'dead-letters' });
 */
export function kafkaDeadLetterSink(options: Omit<KafkaSinkOptions<DeadLetter>, 'value' | 'format'> & { readonly maxBytes?: number }): KafkaSink<DeadLetter> {
  const maxBytes = options.maxBytes ?? 64 * 1024;
  return new KafkaSink<DeadLetter>({ key: (l) => l.step, ...options, format: 'json', value: (l) => deadLetterJson(l, maxBytes) });
}
