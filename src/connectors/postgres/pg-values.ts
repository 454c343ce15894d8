/**
 * PostgreSQL values in their text form (what logical replication's `pgoutput` and a text-mode
 * query send) turned into JavaScript values by type OID. Shared by the change-data-capture
 * source's snapshot and change stream, so a row reads the same from either.
 *
 * | type | value |
 * |---|---|
 * | bool | boolean |
 * | int2, int4, oid, float4, float8 | number (`NaN`, `±Infinity` included) |
 * | int8 | bigint (exact; `int8: 'string'` for decimal text, e.g. for JSON output) |
 * | numeric, money | string (exact decimal text; `NaN` and `±Infinity` as PostgreSQL writes them) |
 * | json, jsonb | the parsed JSON value |
 * | bytea | Uint8Array (a Buffer) |
 * | timestamptz, timestamp | Date (milliseconds; a timestamp without time zone is read as UTC); `infinity` and `-infinity` stay strings |
 * | date, time, timetz, interval, uuid, text and everything else | string, as PostgreSQL prints it |
 * | arrays of the above | arrays (nested for several dimensions), NULL elements as null |
 *
 * `parsers` may replace the conversion of any OID (microsecond timestamps as strings, say).
 */

/** Converts the text form of a value of one type. */
export type ValueParser = (text: string) => unknown;

/** How values are converted. */
export interface ValueOptions {
  /** `bigint` (default) or `string` for int8 values. */
  readonly int8?: 'bigint' | 'string';
  /** Conversions by type OID that replace the built-in ones (also used for array elements). */
  readonly parsers?: Readonly<Record<number, ValueParser>>;
}

/** Type OIDs of the built-in types converted here. */
export const Oid = {
  bool: 16,
  bytea: 17,
  char: 18,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  float4: 700,
  float8: 701,
  money: 790,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  time: 1083,
  timestamp: 1114,
  timestamptz: 1184,
  interval: 1186,
  timetz: 1266,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const;

/** Array type OID → element type OID, for the built-in types above. */
const ARRAY_OF: Record<number, number> = {
  1000: Oid.bool,
  1001: Oid.bytea,
  1002: Oid.char,
  1003: Oid.name,
  1016: Oid.int8,
  1005: Oid.int2,
  1007: Oid.int4,
  1009: Oid.text,
  1028: Oid.oid,
  199: Oid.json,
  1021: Oid.float4,
  1022: Oid.float8,
  791: Oid.money,
  1014: Oid.bpchar,
  1015: Oid.varchar,
  1182: Oid.date,
  1183: Oid.time,
  1115: Oid.timestamp,
  1185: Oid.timestamptz,
  1187: Oid.interval,
  1270: Oid.timetz,
  1231: Oid.numeric,
  2951: Oid.uuid,
  3807: Oid.jsonb,
};

const identity: ValueParser = (t) => t;
const toNumber: ValueParser = (t) => Number(t);
const toBool: ValueParser = (t) => t === 't';
const toJson: ValueParser = (t) => JSON.parse(t);
const toBigInt: ValueParser = (t) => BigInt(t);

/** `\x0a1b…` (bytea's hex output, the default since PostgreSQL 9.0) or the old escape format. */
const toBytes: ValueParser = (t) => {
  if (t.startsWith('\\x')) return Buffer.from(t.slice(2), 'hex');
  const out: number[] = [];
  for (let i = 0; i < t.length; i++) {
    if (t[i] === '\\') {
      if (t[i + 1] === '\\') {
        out.push(92);
        i++;
      } else {
        out.push(parseInt(t.slice(i + 1, i + 4), 8));
        i += 3;
      }
    } else out.push(t.charCodeAt(i));
  }
  return Buffer.from(out);
};

/**
 * `2024-05-01 12:34:56.789123+02` (ISO DateStyle, which replication connections use) → Date.
 * Without an offset (timestamp without time zone) the time is taken as UTC. BC dates and
 * infinities are returned as the text.
 */
const TIMESTAMP = /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?$/;
const toDate: ValueParser = (t) => {
  const m = TIMESTAMP.exec(t);
  if (m === null) return t;
  const ms = m[7] === undefined ? 0 : Math.floor(Number(m[7]) * 1000);
  let time = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms);
  if (Number(m[1]) < 100) {
    // Date.UTC maps years 0–99 to 1900–1999.
    const d = new Date(time);
    d.setUTCFullYear(Number(m[1]));
    time = d.getTime();
  }
  if (m[8] !== undefined) {
    const offset = (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0)) * 1000;
    time -= m[8] === '+' ? offset : -offset;
  }
  return new Date(time);
};

function builtin(oid: number, options: ValueOptions): ValueParser | undefined {
  switch (oid) {
    case Oid.bool:
      return toBool;
    case Oid.int2:
    case Oid.int4:
    case Oid.oid:
    case Oid.float4:
    case Oid.float8:
      return toNumber;
    case Oid.int8:
      return options.int8 === 'string' ? identity : toBigInt;
    case Oid.json:
    case Oid.jsonb:
      return toJson;
    case Oid.bytea:
      return toBytes;
    case Oid.timestamp:
    case Oid.timestamptz:
      return toDate;
    default:
      return undefined;
  }
}

/** The converter for values of type `oid` (text for types it does not know). */
export function parserFor(oid: number, options: ValueOptions = {}): ValueParser {
  const custom = options.parsers?.[oid];
  if (custom !== undefined) return custom;
  const element = ARRAY_OF[oid];
  if (element !== undefined) {
    const parse = parserFor(element, options);
    // box[] is the one built-in array type with ';' as its delimiter; none of those above.
    return (t) => parseArray(t, parse);
  }
  return builtin(oid, options) ?? identity;
}

/**
 * Parses an array literal (`{1,2,NULL}`, `{{"a b","c\"d"},{e,f}}`, with an optional dimension
 * prefix `[0:1]={…}`), converting each non-null element with `parse`.
 */
export function parseArray(text: string, parse: ValueParser): unknown[] {
  let i = 0;
  if (text[0] === '[') {
    i = text.indexOf('=') + 1;
  }
  const stack: unknown[][] = [];
  let current: unknown[] | null = null;
  let result: unknown[] = [];
  while (i < text.length) {
    const c = text[i]!;
    if (c === '{') {
      const next: unknown[] = [];
      if (current !== null) {
        current.push(next);
        stack.push(current);
      } else result = next;
      current = next;
      i++;
    } else if (c === '}') {
      current = stack.pop() ?? null;
      i++;
    } else if (c === ',') {
      i++;
    } else if (c === '"') {
      let s = '';
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\') i++;
        s += text[i];
        i++;
      }
      i++;
      current!.push(parse(s));
    } else {
      let j = i;
      while (j < text.length && text[j] !== ',' && text[j] !== '}') j++;
      const s = text.slice(i, j);
      current!.push(s === 'NULL' ? null : parse(s));
      i = j;
    }
  }
  return result;
}
