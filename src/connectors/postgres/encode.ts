/**
 * Encodes JavaScript values as PostgreSQL text input for a column's type, checking on the way
 * what can be checked without the server, so that a record that cannot be written becomes a dead
 * letter when it is written rather than a failed statement later.
 */

/** What the sink knows of a column, from the catalog. */
export interface ColumnInfo {
  readonly name: string;
  /** The type with its modifier, as in DDL: `character varying(20)`, `numeric(10,2)`, `integer[]`. */
  readonly type: string;
  /** `pg_type.typname` of the type, of a domain's base type, or of an array's element type. */
  readonly typname: string;
  readonly isArray: boolean;
  readonly notNull: boolean;
  /** Maximum length in characters for `varchar(n)` / `char(n)`; undefined when unbounded. */
  readonly maxLength: number | undefined;
}

/** A value that cannot be written to its column; the message says why. */
export class EncodeError extends Error {
  override readonly name = 'EncodeError';
}

/** Encodes one non-null value as text input for the column's type; throws an {@link EncodeError}. */
export type Encoder = (value: unknown) => string;

const INT_RANGES: Record<string, readonly [bigint, bigint]> = {
  int2: [-32768n, 32767n],
  int4: [-2147483648n, 2147483647n],
  int8: [-9223372036854775808n, 9223372036854775807n],
};
const INTEGER_TEXT = /^\s*[+-]?\d+\s*$/;
const NUMERIC_TEXT = /^\s*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?Infinity|NaN)\s*$/;
const UUID_TEXT = /^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$/i;
const FLOAT4_MAX = 3.4028234663852886e38;
/** A lone surrogate escaped by JSON.stringify (paired ones are written as characters). */
const LONE_SURROGATE_ESCAPE = /\\ud[89a-f][0-9a-f]{2}/i;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a Date';
  if (value instanceof Uint8Array) return 'bytes';
  const t = typeof value;
  return t === 'object' ? 'an object' : `a ${t}`;
}

function fail(column: ColumnInfo, message: string): never {
  throw new EncodeError(`column ${column.name} (${column.type}): ${message}`);
}

/** Text PostgreSQL can store: no NUL character, and valid UTF-16 (so valid UTF-8 on the wire). */
function checkText(column: ColumnInfo, s: string): string {
  if (s.indexOf('\0') !== -1) fail(column, 'text contains a NUL character (\\u0000), which PostgreSQL cannot store');
  if (!(s as string & { isWellFormed(): boolean }).isWellFormed()) fail(column, 'text contains a lone UTF-16 surrogate (not valid Unicode)');
  return s;
}

function integerEncoder(column: ColumnInfo, typname: string): Encoder {
  const [lo, hi] = INT_RANGES[typname]!;
  const nlo = Number(lo);
  const nhi = Number(hi);
  return (v) => {
    if (typeof v === 'number') {
      if (!Number.isInteger(v)) fail(column, `${v} is not an integer`);
      if (v < nlo || v > nhi) fail(column, `${v} is out of range`);
      return String(v);
    }
    if (typeof v === 'bigint') {
      if (v < lo || v > hi) fail(column, `${v} is out of range`);
      return v.toString();
    }
    if (typeof v === 'string') {
      if (!INTEGER_TEXT.test(v)) fail(column, `'${v.slice(0, 40)}' is not an integer`);
      const b = BigInt(v.trim());
      if (b < lo || b > hi) fail(column, `${v.trim()} is out of range`);
      return v;
    }
    return fail(column, `expected an integer, got ${describe(v)}`);
  };
}

function floatEncoder(column: ColumnInfo, single: boolean): Encoder {
  return (v) => {
    if (typeof v === 'number') {
      if (Number.isNaN(v)) return 'NaN';
      if (v === Infinity) return 'Infinity';
      if (v === -Infinity) return '-Infinity';
      if (single && Math.abs(v) > FLOAT4_MAX) fail(column, `${v} is out of range for real`);
      return String(v);
    }
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'string') {
      if (!NUMERIC_TEXT.test(v)) fail(column, `'${v.slice(0, 40)}' is not a number`);
      return v;
    }
    return fail(column, `expected a number, got ${describe(v)}`);
  };
}

function numericEncoder(column: ColumnInfo): Encoder {
  return (v) => {
    if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : String(v);
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'string') {
      if (!NUMERIC_TEXT.test(v)) fail(column, `'${v.slice(0, 40)}' is not a number`);
      return v;
    }
    return fail(column, `expected a number, got ${describe(v)}`);
  };
}

function textEncoder(column: ColumnInfo): Encoder {
  const max = column.maxLength;
  return (v) => {
    let s: string;
    if (typeof v === 'string') s = v;
    else if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') s = String(v);
    else return fail(column, `expected a string, got ${describe(v)}`);
    checkText(column, s);
    // Length in characters (code points), as PostgreSQL counts them.
    if (max !== undefined && s.length > max && [...s].length > max) fail(column, `text of ${[...s].length} characters is longer than ${max}`);
    return s;
  };
}

function jsonEncoder(column: ColumnInfo, binary: boolean): Encoder {
  return (v) => {
    let s: string | undefined;
    try {
      s = JSON.stringify(v);
    } catch (error) {
      return fail(column, `not JSON-serializable: ${(error as Error).message}`);
    }
    if (s === undefined) return fail(column, `${describe(v)} is not JSON-serializable`);
    if (LONE_SURROGATE_ESCAPE.test(s)) fail(column, 'JSON text contains a lone UTF-16 surrogate (not valid Unicode)');
    if (binary && s.includes('\\u0000')) fail(column, 'jsonb cannot store a NUL character (\\u0000)');
    return s;
  };
}

function dateOf(column: ColumnInfo, v: unknown): Date | undefined {
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) fail(column, 'invalid Date');
    return v;
  }
  if (typeof v === 'number') {
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) fail(column, `${v} is not a valid time in epoch milliseconds`);
    return d;
  }
  return undefined;
}

function timestampEncoder(column: ColumnInfo): Encoder {
  return (v) => {
    // Epoch milliseconds and Dates are written in UTC (a `timestamp` column ignores the zone).
    const d = dateOf(column, v);
    if (d !== undefined) return d.toISOString();
    if (typeof v === 'string') return checkText(column, v);
    return fail(column, `expected a Date, epoch milliseconds or a string, got ${describe(v)}`);
  };
}

function dateEncoder(column: ColumnInfo): Encoder {
  return (v) => {
    const d = dateOf(column, v);
    if (d !== undefined) return d.toISOString().slice(0, 10);
    if (typeof v === 'string') return checkText(column, v);
    return fail(column, `expected a Date, epoch milliseconds or a string, got ${describe(v)}`);
  };
}

function boolEncoder(column: ColumnInfo): Encoder {
  return (v) => {
    if (v === true) return 't';
    if (v === false) return 'f';
    return fail(column, `expected a boolean, got ${describe(v)}`);
  };
}

function uuidEncoder(column: ColumnInfo): Encoder {
  return (v) => {
    if (typeof v !== 'string') return fail(column, `expected a UUID string, got ${describe(v)}`);
    if (!UUID_TEXT.test(v)) fail(column, `'${v.slice(0, 40)}' is not a UUID`);
    return v;
  };
}

function byteaEncoder(column: ColumnInfo): Encoder {
  return (v) => {
    if (v instanceof Uint8Array) return '\\x' + Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
    if (typeof v === 'string') return checkText(column, v);
    return fail(column, `expected bytes (a Buffer or Uint8Array), got ${describe(v)}`);
  };
}

function intervalEncoder(column: ColumnInfo): Encoder {
  return (v) => {
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) fail(column, `${v} is not a duration`);
      return `${v} milliseconds`;
    }
    if (typeof v === 'string') return checkText(column, v);
    return fail(column, `expected milliseconds or a string, got ${describe(v)}`);
  };
}

/** Types the sink knows nothing about (enums, network addresses, ranges…): their text form. */
function otherEncoder(column: ColumnInfo): Encoder {
  return (v) => {
    if (typeof v === 'string') return checkText(column, v);
    if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
    if (v instanceof Date) return dateOf(column, v)!.toISOString();
    return fail(column, `cannot encode ${describe(v)}; give this type's text form as a string`);
  };
}

function scalarEncoder(column: ColumnInfo, typname: string): Encoder {
  switch (typname) {
    case 'int2':
    case 'int4':
    case 'int8':
      return integerEncoder(column, typname);
    case 'float4':
      return floatEncoder(column, true);
    case 'float8':
      return floatEncoder(column, false);
    case 'numeric':
      return numericEncoder(column);
    case 'text':
    case 'varchar':
    case 'bpchar':
    case 'name':
    case 'citext':
      return textEncoder(column);
    case 'json':
      return jsonEncoder(column, false);
    case 'jsonb':
      return jsonEncoder(column, true);
    case 'timestamptz':
    case 'timestamp':
      return timestampEncoder(column);
    case 'date':
      return dateEncoder(column);
    case 'bool':
      return boolEncoder(column);
    case 'uuid':
      return uuidEncoder(column);
    case 'bytea':
      return byteaEncoder(column);
    case 'interval':
      return intervalEncoder(column);
    default:
      return otherEncoder(column);
  }
}

/** An array literal (`{"a","b",NULL}`), elements encoded by `element`; nested arrays nest. */
function arrayEncoder(column: ColumnInfo, element: Encoder): Encoder {
  const encode = (v: unknown): string => {
    if (!Array.isArray(v)) return fail(column, `expected an array, got ${describe(v)}`);
    let out = '{';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ',';
      const e: unknown = v[i];
      if (e === null || e === undefined) out += 'NULL';
      else if (Array.isArray(e)) out += encode(e);
      else out += '"' + element(e).replace(/[\\"]/g, '\\$&') + '"';
    }
    return out + '}';
  };
  return encode;
}

/** The encoder of a column: validates a non-null value and gives its text input form. */
export function encoderFor(column: ColumnInfo): Encoder {
  // An array's elements: the element type's encoder (its length limit applies to each element).
  const scalar = scalarEncoder(column, column.typname);
  return column.isArray ? arrayEncoder(column, scalar) : scalar;
}
