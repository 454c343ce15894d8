/**
 * Writes JavaScript values into the column vectors of a DuckDB data chunk, checking on the way
 * what the column's type needs, so that a record that cannot be written becomes a dead letter when
 * it is written — with the column, its type and why — rather than a failed statement later.
 */
import type { DuckDBType, DuckDBVector } from '@duckdb/node-api';

type Api = typeof import('@duckdb/node-api');

/** A value that cannot be written to its column; the message says why. */
export class EncodeError extends Error {
  override readonly name = 'EncodeError';
}

/** Sets row `row` of a column's vector to a non-null value; throws an {@link EncodeError}. */
export type ColumnWriter = (vector: DuckDBVector, row: number, value: unknown) => void;

/** What the sink knows of a column. */
export interface DuckDBColumn {
  readonly name: string;
  /** The type as DuckDB writes it in DDL (`BIGINT`, `VARCHAR[]`, `STRUCT(x INTEGER)`, `JSON`). */
  readonly type: string;
  readonly notNull: boolean;
}

const MS_PER_DAY = 86_400_000;
/** ISO 8601 date or date-time, with an optional zone (without one: UTC, as DuckDB reads it). */
const ISO_TIME = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;
const INTEGER_TEXT = /^\s*[+-]?\d+\s*$/;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a Date';
  if (value instanceof Uint8Array) return 'bytes';
  const t = typeof value;
  return t === 'object' ? 'an object' : `a ${t}`;
}

function fail(column: DuckDBColumn, message: string): never {
  throw new EncodeError(`column ${column.name} (${column.type}): ${message}`);
}

/** Epoch milliseconds of a Date, a number (epoch ms) or an ISO 8601 string; throws otherwise. */
function epochMs(column: DuckDBColumn, v: unknown): number {
  let ms: number;
  if (v instanceof Date) ms = v.getTime();
  else if (typeof v === 'number') ms = v;
  else if (typeof v === 'string') {
    const m = ISO_TIME.exec(v.trim());
    if (m === null) return fail(column, `'${v.slice(0, 40)}' is not an ISO 8601 date or time`);
    ms = Date.parse(`${m[1]}T${m[2] ?? '00:00'}${m[3] ?? 'Z'}`);
  } else return fail(column, `expected a Date, epoch milliseconds or an ISO 8601 string, got ${describe(v)}`);
  if (!Number.isFinite(ms)) fail(column, `${String(v)} is not a valid time`);
  return ms;
}

function integerWriter(column: DuckDBColumn, lo: number, hi: number): ColumnWriter {
  return (vector, row, v) => {
    let n: number;
    if (typeof v === 'number') n = v;
    else if (typeof v === 'bigint') n = Number(v);
    else if (typeof v === 'string' && INTEGER_TEXT.test(v)) n = Number(v);
    else return fail(column, `expected an integer, got ${describe(v)}`);
    if (!Number.isInteger(n)) fail(column, `${String(v)} is not an integer`);
    if (n < lo || n > hi) fail(column, `${String(v)} is out of range`);
    vector.setItem(row, n);
  };
}

function bigintWriter(column: DuckDBColumn, lo: bigint, hi: bigint): ColumnWriter {
  return (vector, row, v) => {
    let b: bigint;
    if (typeof v === 'bigint') b = v;
    else if (typeof v === 'number') {
      if (!Number.isInteger(v)) fail(column, `${v} is not an integer`);
      if (!Number.isSafeInteger(v)) fail(column, `${v} is beyond 2^53 and not exact; pass a bigint`);
      b = BigInt(v);
    } else if (typeof v === 'string' && INTEGER_TEXT.test(v)) b = BigInt(v.trim());
    else return fail(column, `expected an integer, got ${describe(v)}`);
    if (b < lo || b > hi) fail(column, `${b} is out of range`);
    vector.setItem(row, b);
  };
}

function floatWriter(column: DuckDBColumn, single: boolean): ColumnWriter {
  return (vector, row, v) => {
    let n: number;
    if (typeof v === 'number') n = v;
    else if (typeof v === 'bigint') n = Number(v);
    else return fail(column, `expected a number, got ${describe(v)}`);
    if (single && Number.isFinite(n) && Math.abs(n) > 3.4028234663852886e38) fail(column, `${n} is out of range for FLOAT`);
    vector.setItem(row, n);
  };
}

function booleanWriter(column: DuckDBColumn): ColumnWriter {
  return (vector, row, v) => {
    if (typeof v !== 'boolean') fail(column, `expected a boolean, got ${describe(v)}`);
    vector.setItem(row, v);
  };
}

/** Text DuckDB can store: valid Unicode (a lone UTF-16 surrogate would be replaced silently). */
function checkText(column: DuckDBColumn, s: string): string {
  if (!(s as string & { isWellFormed(): boolean }).isWellFormed()) fail(column, 'text contains a lone UTF-16 surrogate (not valid Unicode)');
  return s;
}

function varcharWriter(column: DuckDBColumn): ColumnWriter {
  return (vector, row, v) => {
    let s: string;
    if (typeof v === 'string') s = v;
    else if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') s = String(v);
    else return fail(column, `expected a string, got ${describe(v)}`);
    vector.setItem(row, checkText(column, s));
  };
}

/** A JSON column takes any JSON-serializable value (a string is stored as a JSON string). */
function jsonWriter(column: DuckDBColumn): ColumnWriter {
  return (vector, row, v) => {
    let s: string | undefined;
    try {
      s = JSON.stringify(v);
    } catch (error) {
      return fail(column, `not JSON-serializable: ${(error as Error).message}`);
    }
    if (s === undefined) return fail(column, `${describe(v)} is not JSON-serializable`);
    if (/\\ud[89a-f][0-9a-f]{2}/i.test(s)) fail(column, 'JSON text contains a lone UTF-16 surrogate (not valid Unicode)');
    vector.setItem(row, s);
  };
}

/** TIMESTAMP in a given unit per millisecond (1000: micros), written through its value object. */
function timestampWriter(column: DuckDBColumn, field: 'micros' | 'millis' | 'seconds' | 'nanos'): ColumnWriter {
  // One reused box per column: the vector copies the field out.
  const box: Record<string, bigint> = { [field]: 0n };
  return (vector, row, v) => {
    const ms = epochMs(column, v);
    let value: bigint;
    switch (field) {
      case 'micros':
        value = BigInt(Math.round(ms * 1000));
        break;
      case 'millis':
        value = BigInt(Math.round(ms));
        break;
      case 'seconds':
        value = BigInt(Math.floor(ms / 1000));
        break;
      case 'nanos':
        value = BigInt(Math.round(ms)) * 1_000_000n;
        break;
    }
    box[field] = value;
    vector.setItem(row, box as never);
  };
}

function dateWriter(column: DuckDBColumn): ColumnWriter {
  const box = { days: 0 };
  return (vector, row, v) => {
    box.days = Math.floor(epochMs(column, v) / MS_PER_DAY);
    vector.setItem(row, box as never);
  };
}

/** Any other type (DECIMAL, UUID, INTERVAL, LIST, STRUCT, MAP, ENUM, BLOB, …): the client's own conversion of JS values. */
function convertedWriter(api: Api, column: DuckDBColumn, type: DuckDBType): ColumnWriter {
  const convert = api.JSToDuckDBValueConverter;
  return (vector, row, v) => {
    let value: unknown;
    try {
      value = convert(v as never, type, convert);
      vector.setItem(row, value as never);
    } catch (error) {
      fail(column, `cannot write ${describe(v)}: ${(error as Error).message}`);
    }
  };
}

/** The writer of a column of type `type` (as the appender of the staging table reports it). */
export function writerFor(api: Api, column: DuckDBColumn, type: DuckDBType): ColumnWriter {
  const Id = api.DuckDBTypeId;
  switch (type.typeId) {
    case Id.BOOLEAN:
      return booleanWriter(column);
    case Id.TINYINT:
      return integerWriter(column, -128, 127);
    case Id.SMALLINT:
      return integerWriter(column, -32768, 32767);
    case Id.INTEGER:
      return integerWriter(column, -2147483648, 2147483647);
    case Id.UTINYINT:
      return integerWriter(column, 0, 255);
    case Id.USMALLINT:
      return integerWriter(column, 0, 65535);
    case Id.UINTEGER:
      return integerWriter(column, 0, 4294967295);
    case Id.BIGINT:
      return bigintWriter(column, -(2n ** 63n), 2n ** 63n - 1n);
    case Id.UBIGINT:
      return bigintWriter(column, 0n, 2n ** 64n - 1n);
    case Id.HUGEINT:
      return bigintWriter(column, -(2n ** 127n), 2n ** 127n - 1n);
    case Id.UHUGEINT:
      return bigintWriter(column, 0n, 2n ** 128n - 1n);
    case Id.FLOAT:
      return floatWriter(column, true);
    case Id.DOUBLE:
      return floatWriter(column, false);
    case Id.VARCHAR:
      return type.alias?.toUpperCase() === 'JSON' ? jsonWriter(column) : varcharWriter(column);
    case Id.TIMESTAMP:
    case Id.TIMESTAMP_TZ:
      return timestampWriter(column, 'micros');
    case Id.TIMESTAMP_MS:
      return timestampWriter(column, 'millis');
    case Id.TIMESTAMP_S:
      return timestampWriter(column, 'seconds');
    case Id.TIMESTAMP_NS:
      return timestampWriter(column, 'nanos');
    case Id.DATE:
      return dateWriter(column);
    default:
      return convertedWriter(api, column, type);
  }
}
