/** Value conversion and protocol details of the CDC source that need no server. */
import { describe, expect, it } from 'vitest';
import { Oid, parseArray, parserFor } from './pg-values.ts';
import { formatLsn, parseFrame, parseLsn, pgTimeToMillis, statusUpdate } from './pgoutput.ts';

describe('values by type OID', () => {
  it('converts the built-in types, with int8 as bigint or text and custom parsers', () => {
    expect(parserFor(Oid.int8)('-9223372036854775808')).toBe(-9223372036854775808n);
    expect(parserFor(Oid.int8, { int8: 'string' })('42')).toBe('42');
    expect(parserFor(Oid.float8)('NaN')).toBeNaN();
    expect(parserFor(Oid.float4)('-Infinity')).toBe(-Infinity);
    expect(parserFor(Oid.numeric)('1e-1000')).toBe('1e-1000'); // exact, as text
    expect(parserFor(Oid.bool)('f')).toBe(false);
    expect(parserFor(Oid.timestamptz)('2024-01-02 03:04:05.123456-07:30')).toEqual(new Date('2024-01-02T10:34:05.123Z'));
    expect(parserFor(Oid.timestamp)('0044-03-15 12:00:00')).toEqual(new Date('0044-03-15T12:00:00Z'));
    expect(parserFor(Oid.timestamptz)('infinity')).toBe('infinity');
    expect(parserFor(Oid.timestamp)('0044-03-15 12:00:00 BC')).toBe('0044-03-15 12:00:00 BC');
    expect(parserFor(Oid.bytea)('\\x')).toEqual(Buffer.alloc(0));
    expect(parserFor(Oid.bytea)('a\\\\b\\001')).toEqual(Buffer.from([97, 92, 98, 1])); // the old escape format
    expect(parserFor(Oid.jsonb)('[1,"x",{"a":null}]')).toEqual([1, 'x', { a: null }]);
    expect(parserFor(999_999)('whatever')).toBe('whatever'); // unknown types stay text
    expect(parserFor(Oid.timestamptz, { parsers: { [Oid.timestamptz]: (t) => `ts:${t}` } })('2024-01-01 00:00:00+00')).toBe('ts:2024-01-01 00:00:00+00');
    // Custom parsers apply to array elements too.
    expect(parserFor(1185, { parsers: { [Oid.timestamptz]: (t) => t.length } })('{"2024-01-01 00:00:00+00",NULL}')).toEqual([22, null]);
  });

  it('parses array literals: nesting, quoting, NULL, dimension prefixes', () => {
    const text = (t: string): unknown => t;
    expect(parseArray('{}', text)).toEqual([]);
    expect(parseArray('{{1,2},{3,NULL}}', Number)).toEqual([
      [1, 2],
      [3, null],
    ]);
    expect(parseArray('{"NULL",NULL,"a,b","{}","x\\\\y","q\\"r"}', text)).toEqual(['NULL', null, 'a,b', '{}', 'x\\y', 'q"r']);
    expect(parseArray('[0:1]={7,8}', Number)).toEqual([7, 8]);
    expect(parserFor(1000)('{t,f,NULL}')).toEqual([true, false, null]);
    expect(parserFor(3807)('{"{\\"a\\": 1}","[2]"}')).toEqual([{ a: 1 }, [2]]);
  });
});

describe('the replication protocol', () => {
  it('reads and writes LSNs and PostgreSQL timestamps', () => {
    expect(parseLsn('16/B374D848')).toBe(0x16b374d848n);
    expect(formatLsn(0x16b374d848n)).toBe('16/B374D848');
    expect(formatLsn(0n)).toBe('0/0');
    expect(formatLsn(parseLsn('FFFFFFFF/FFFFFFFF'))).toBe('FFFFFFFF/FFFFFFFF');
    expect(() => parseLsn('16B374D848')).toThrow(/not an LSN/);
    expect(pgTimeToMillis(0n)).toBe(Date.UTC(2000, 0, 1));
    expect(pgTimeToMillis(-1n)).toBe(Date.UTC(2000, 0, 1) - 1); // floored
  });

  it('frames status updates and parses keepalives', () => {
    const b = statusUpdate(0x200n, 0x100n, true, Date.UTC(2000, 0, 1, 0, 0, 1));
    expect(b.length).toBe(34);
    expect(String.fromCharCode(b[0]!)).toBe('r');
    expect(b.readBigUInt64BE(1)).toBe(0x200n); // written
    expect(b.readBigUInt64BE(9)).toBe(0x100n); // flushed: what the slot confirms
    expect(b.readBigUInt64BE(17)).toBe(0x100n);
    expect(b.readBigInt64BE(25)).toBe(1_000_000n); // µs since 2000-01-01
    expect(b[33]).toBe(1);
    const k = Buffer.alloc(18);
    k[0] = 0x6b;
    k.writeBigUInt64BE(0x1234n, 1);
    k[17] = 1;
    expect(parseFrame(k)).toEqual({ kind: 'keepalive', end: 0x1234n, replyRequested: true });
  });
});
