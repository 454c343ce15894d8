import { isUtf8 } from 'node:buffer';

/**
 * Decoding and validation of messages, shared by every connector: a payload (bytes from a broker,
 * a request body, a file line) becomes records, or a clear error that the source turns into a
 * dead letter with where the payload came from — the job goes on.
 */

/** The result of a Standard Schema validation (https://standardschema.dev). */
export type StandardResult<T> = { readonly value: T; readonly issues?: undefined } | { readonly issues: ReadonlyArray<{ readonly message: string; readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> }> };

/** A Standard Schema validator (zod, valibot, arktype, … implement it). */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

/** A schema: any Standard Schema validator, or a function that returns the record or throws. */
export type Schema<T> = StandardSchemaV1<unknown, T> | ((value: unknown) => T);

/** How payloads are decoded. */
export interface FormatOptions<T> {
  /**
   * `json` (default): one JSON value per payload; `ndjson`: one JSON value per line; `text`: the
   * payload as a UTF-8 string; `bytes`: the payload as it is (a Uint8Array).
   */
  readonly format?: 'json' | 'ndjson' | 'text' | 'bytes';
  /** Validates (and may transform) each decoded value; a value it rejects is a dead letter. */
  readonly schema?: Schema<T>;
  /** Larger payloads are dead letters (default 1 MiB). */
  readonly maxBytes?: number;
}

/** What kind of failure a {@link DecodeError} is (for counters by reason). */
export type DecodeFailure = 'too-large' | 'invalid-utf8' | 'malformed' | 'invalid';

/** Why a payload (or one line of it) was not a record. */
export class DecodeError extends Error {
  constructor(
    message: string,
    /** The payload's size in bytes. */
    readonly size: number,
    /** The start of the payload, as text (invalid UTF-8 shown as replacement characters). */
    readonly preview: string,
    /** For `ndjson`: the 1-based line. */
    readonly line?: number,
    /** `too-large`, `invalid-utf8`, `malformed` (not JSON) or `invalid` (the schema refused it). */
    readonly reason: DecodeFailure = 'invalid',
  ) {
    super(message);
    this.name = 'DecodeError';
  }
}

const PREVIEW = 1000;

/** The start of `bytes` as text, for errors and dead letters. */
export function previewOf(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, PREVIEW)).toString('utf8');
  return bytes.length > PREVIEW ? text + '…' : text;
}

/** Runs a schema synchronously; an asynchronous Standard Schema is refused (sources decode in line). */
export function validate<T>(schema: Schema<T>, value: unknown): T {
  if (typeof schema === 'function') return schema(value);
  const result = schema['~standard'].validate(value);
  if (result instanceof Promise) throw new Error(`schema (${schema['~standard'].vendor}) validates asynchronously; use a synchronous schema`);
  if (result.issues !== undefined) {
    const issues = result.issues.map((i) => {
      const path = i.path?.map((p) => (typeof p === 'object' ? String(p.key) : String(p))).join('.');
      return path === undefined || path === '' ? i.message : `${path}: ${i.message}`;
    });
    throw new Error(`invalid record: ${issues.join('; ')}`);
  }
  return result.value;
}

/**
 * A decoder for `options`: `decode(payload, emit, fail)` calls `emit` for each record of the
 * payload — with the bytes it was decoded from (the payload, or its line for `ndjson`) — and
 * `fail` for each part that is not one (too large, invalid UTF-8, malformed JSON, a value the
 * schema rejects), with a {@link DecodeError} holding the payload's size and a preview. For
 * `ndjson`, every line stands alone: a bad line (invalid UTF-8 included) fails, the others decode.
 */
export function decoder<T>(
  options: FormatOptions<T> = {},
): (payload: Uint8Array, emit: (record: T, raw: Uint8Array) => void, fail: (error: DecodeError) => void) => void {
  const format = options.format ?? 'json';
  const schema = options.schema;
  const maxBytes = options.maxBytes ?? 1 << 20;
  if (!(maxBytes > 0)) throw new RangeError(`maxBytes must be > 0, got ${String(options.maxBytes)}`);
  const finish = (value: unknown, bytes: Uint8Array, line: number | undefined, emit: (record: T, raw: Uint8Array) => void, fail: (error: DecodeError) => void): void => {
    if (schema === undefined) {
      emit(value as T, bytes);
      return;
    }
    let record: T;
    try {
      record = validate(schema, value);
    } catch (error) {
      fail(new DecodeError((error as Error).message, bytes.length, previewOf(bytes), line, 'invalid'));
      return;
    }
    emit(record, bytes);
  };
  return (payload, emit, fail) => {
    if (payload.length > maxBytes) {
      fail(new DecodeError(`payload of ${payload.length} bytes is larger than maxBytes (${maxBytes})`, payload.length, previewOf(payload), undefined, 'too-large'));
      return;
    }
    if (format === 'bytes') {
      finish(payload, payload, undefined, emit, fail);
      return;
    }
    if (format === 'ndjson') {
      ndjson(payload, finish, emit, fail);
      return;
    }
    if (!isUtf8(payload)) {
      fail(new DecodeError('invalid UTF-8', payload.length, previewOf(payload), undefined, 'invalid-utf8'));
      return;
    }
    const text = Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('utf8');
    if (format === 'text') {
      finish(text, payload, undefined, emit, fail);
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      fail(new DecodeError(`malformed JSON: ${(error as Error).message}`, payload.length, previewOf(payload), undefined, 'malformed'));
      return;
    }
    finish(value, payload, undefined, emit, fail);
  };
}

/** Decodes NDJSON line by line, on the bytes: each line is checked (UTF-8, JSON) on its own. */
function ndjson<T>(
  payload: Uint8Array,
  finish: (value: unknown, bytes: Uint8Array, line: number, emit: (record: T, raw: Uint8Array) => void, fail: (error: DecodeError) => void) => void,
  emit: (record: T, raw: Uint8Array) => void,
  fail: (error: DecodeError) => void,
): void {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  let start = 0;
  let line = 0;
  while (start <= buf.length) {
    let end = buf.indexOf(10, start);
    if (end < 0) end = buf.length;
    line++;
    let stop = end;
    if (stop > start && buf[stop - 1] === 13) stop--;
    const bytes = buf.subarray(start, stop);
    start = end + 1;
    if (blank(bytes)) continue;
    if (!isUtf8(bytes)) {
      fail(new DecodeError(`invalid UTF-8 on line ${line}`, bytes.length, previewOf(bytes), line, 'invalid-utf8'));
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      fail(new DecodeError(`malformed JSON on line ${line}: ${(error as Error).message}`, bytes.length, previewOf(bytes), line, 'malformed'));
      continue;
    }
    finish(value, bytes, line, emit, fail);
  }
}

/** Whether a line holds only JSON whitespace. */
function blank(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b !== 32 && b !== 9 && b !== 13 && b !== 10) return false;
  }
  return true;
}

/**
 * The dead letter record of a payload that did not decode: where it came from (a partition and
 * offset, a sequence, an LSN, a request), its size, a preview of it, and for NDJSON the line.
 */
export function deadLetterOf(error: DecodeError, origin: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return { ...origin, size: error.size, payload: error.preview, ...(error.line === undefined ? {} : { line: error.line }) };
}
