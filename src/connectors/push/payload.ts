import { DecodeError, decoder, previewOf, type Schema, validate } from '../format.ts';

/**
 * How a pushed payload (a request body, a WebSocket or MQTT message) is read:
 * - `json`: one JSON value — a record, or an array of records;
 * - `ndjson`: one JSON record per line; every line stands alone (a bad line is rejected, the
 *   others are accepted);
 * - `auto`: `json` if the payload is one JSON value, else `ndjson` when it has several lines;
 * - `text`: the payload as one UTF-8 string; `bytes`: the payload as it is (a Uint8Array).
 */
export type PayloadFormat = 'json' | 'ndjson' | 'auto' | 'text' | 'bytes';

/** One part of a payload: a record with the bytes it was decoded from, or why it is not one. */
export type Part<T> =
  | { readonly ok: true; readonly value: T; readonly raw: Uint8Array }
  | { readonly ok: false; readonly error: DecodeError; readonly index?: number };

/** A payload read into parts, in order; `id` is the id of a batch envelope, if it was one. */
export interface DecodedPayload<T> {
  readonly parts: Array<Part<T>>;
  readonly id?: string | number;
}

/** Options of {@link payloadDecoder}. */
export interface PayloadDecoderOptions<T> {
  readonly schema?: Schema<T> | undefined;
  /** Larger payloads are rejected whole. */
  readonly maxBytes: number;
  /**
   * Read a JSON object whose keys are `records` (an array) and optionally `id` (a string or a
   * number) as a batch: its records, acknowledged with its id (WebSocket).
   */
  readonly envelope?: boolean;
}

/**
 * Reads payloads into records with the shared decoders of `connectors/format.ts`: the bytes of
 * each record are kept (they go to the write-ahead log as received) and each failure is a
 * {@link DecodeError} with its line (NDJSON) or index (JSON arrays).
 */
export function payloadDecoder<T>(options: PayloadDecoderOptions<T>): (payload: Uint8Array, format: PayloadFormat) => DecodedPayload<T> {
  const { schema, maxBytes } = options;
  const parseJson = decoder<unknown>({ format: 'json', maxBytes });
  const others = {
    ndjson: decoder<T>({ format: 'ndjson', maxBytes, ...(schema === undefined ? {} : { schema }) }),
    text: decoder<T>({ format: 'text', maxBytes, ...(schema === undefined ? {} : { schema }) }),
    bytes: decoder<T>({ format: 'bytes', maxBytes, ...(schema === undefined ? {} : { schema }) }),
  };
  const one = (value: unknown, raw: Uint8Array, index: number | undefined): Part<T> => {
    if (schema === undefined) return { ok: true, value: value as T, raw };
    try {
      return { ok: true, value: validate(schema, value), raw };
    } catch (error) {
      const e = new DecodeError((error as Error).message, raw.length, previewOf(raw), undefined, 'invalid');
      return index === undefined ? { ok: false, error: e } : { ok: false, error: e, index };
    }
  };
  const collect = (payload: Uint8Array, decode: (typeof others)['ndjson']): DecodedPayload<T> => {
    const parts: Array<Part<T>> = [];
    decode(
      payload,
      (value, raw) => parts.push({ ok: true, value, raw }),
      (error) => parts.push({ ok: false, error }),
    );
    return { parts };
  };
  return (payload, format) => {
    if (format === 'ndjson' || format === 'text' || format === 'bytes') return collect(payload, others[format]);
    let value: unknown;
    let failure: DecodeError | null = null;
    parseJson(
      payload,
      (v) => (value = v),
      (error) => (failure = error),
    );
    if (failure !== null) {
      const f = failure as DecodeError;
      // Not one JSON value but several lines: NDJSON.
      if (format === 'auto' && f.reason === 'malformed' && severalLines(payload)) return collect(payload, others.ndjson);
      return { parts: [{ ok: false, error: f }] };
    }
    let id: string | number | undefined;
    if (options.envelope === true && isEnvelope(value)) {
      id = value.id;
      value = value.records;
    }
    const parts: Array<Part<T>> = [];
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) parts.push(one(value[i], Buffer.from(JSON.stringify(value[i]) ?? 'null', 'utf8'), i));
    } else parts.push(one(value, payload, undefined));
    return id === undefined ? { parts } : { parts, id };
  };
}

/**
 * Decodes a record's bytes as the reader finds them in the log: with the format it was received
 * in (`json` for JSON and NDJSON) and the schema, as at ingestion.
 */
export function recordDecoder<T>(format: PayloadFormat, schema: Schema<T> | undefined): (payload: Uint8Array, emit: (value: T) => void, fail: (error: DecodeError) => void) => void {
  const f = format === 'text' || format === 'bytes' ? format : 'json';
  return decoder<T>({ format: f, maxBytes: Number.MAX_SAFE_INTEGER, ...(schema === undefined ? {} : { schema }) });
}

function isEnvelope(value: unknown): value is { id?: string | number; records: unknown[] } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  if (!Array.isArray(v.records)) return false;
  for (const k of Object.keys(v)) if (k !== 'records' && k !== 'id') return false;
  return v.id === undefined || typeof v.id === 'string' || typeof v.id === 'number';
}

/** Whether a payload has non-blank content after its first line break. */
function severalLines(payload: Uint8Array): boolean {
  const b = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  let nl = b.indexOf(10);
  while (nl >= 0 && nl < b.length - 1) {
    for (let i = nl + 1; i < b.length; i++) {
      const c = b[i]!;
      if (c === 10) break;
      if (c !== 32 && c !== 9 && c !== 13) return true;
    }
    nl = b.indexOf(10, nl + 1);
  }
  return false;
}
