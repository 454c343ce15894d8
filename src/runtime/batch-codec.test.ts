import fc from 'fast-check';
import { MessageChannel, Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { NexmarkGenerator } from '../nexmark/generator.ts';
import { Batch } from './batch.ts';
import { BatchDecoder, BatchEncoder, RecordEncodeError, createChannelCodec } from './batch-codec.ts';

// ---- The documented semantics, as an independent model ----------------------------------------

const wellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * A string with lone surrogates: it must decode as the same text with each lone surrogate
 * replaced by one to three U+FFFD (msgpackr decodes its WTF-8 bytes either way, by length).
 */
class IllFormed {
  readonly pattern: RegExp;
  constructor(readonly input: string) {
    let source = '';
    for (let i = 0; i < input.length; i++) {
      const c = input.charCodeAt(i);
      const next = input.charCodeAt(i + 1);
      if (c >= 0xd800 && c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        source += input.slice(i, i + 2).replace(/[\s\S]/gu, (x) => `\\u{${x.codePointAt(0)!.toString(16)}}`);
        i++;
      } else if (c >= 0xd800 && c <= 0xdfff) {
        source += '\\u{fffd}{1,3}';
      } else {
        source += `\\u{${c.toString(16)}}`;
      }
    }
    this.pattern = new RegExp(`^${source}$`, 'u');
  }
}

/** What a value must decode as (see the module comment of batch-codec.ts). */
function expected(v: unknown): unknown {
  if (typeof v === 'number') return Object.is(v, -0) ? 0 : v;
  if (typeof v === 'string') return wellFormed(v) ? v : new IllFormed(v);
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return Array.from(v, expected); // holes become undefined
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [expected(k), expected(x)]));
  if (v instanceof Set) return new Set([...v].map(expected));
  if (v instanceof Date || ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof RegExp || v instanceof Error) return v;
  if (Object.getPrototypeOf(v) !== Object.prototype && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
    return expected((v as { toJSON(): unknown }).toJSON());
  }
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) {
    Object.defineProperty(out, k === '__proto__' ? '__proto_' : k, {
      value: expected((v as Record<string, unknown>)[k]),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/**
 * Strict structural equality: same types and prototypes, `Object.is` on primitives (so -0 and 0
 * differ, NaN equals NaN), object keys in the same order. Throws with the path of the difference.
 */
function assertSame(actual: unknown, want: unknown, path = '$'): void {
  const fail = (why: string): never => {
    throw new Error(`${path}: ${why} (got ${show(actual)}, want ${show(want)})`);
  };
  if (want instanceof IllFormed) {
    if (typeof actual !== 'string' || !wellFormed(actual) || !want.pattern.test(actual)) fail('lone surrogates not replaced');
    return;
  }
  if (typeof want !== 'object' || want === null) {
    if (!Object.is(actual, want)) fail('different value');
    return;
  }
  if (typeof actual !== 'object' || actual === null) return fail('not an object');
  if (Object.getPrototypeOf(actual) !== Object.getPrototypeOf(want)) fail('different prototype');
  if (want instanceof Error) {
    if ((actual as Error).message !== want.message) fail('different message');
    return;
  }
  if (want instanceof RegExp) {
    if (String(actual) !== String(want)) fail('different pattern');
    return;
  }
  if (want instanceof Date) {
    if (!Object.is((actual as Date).getTime(), want.getTime())) fail('different date');
    return;
  }
  if (ArrayBuffer.isView(want) || want instanceof ArrayBuffer) {
    const bytes = (x: ArrayBufferView | ArrayBuffer): Uint8Array =>
      x instanceof ArrayBuffer ? new Uint8Array(x) : new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    if (!Buffer.from(bytes(actual as ArrayBufferView)).equals(bytes(want))) fail('different bytes');
    return;
  }
  if (want instanceof Map || want instanceof Set) {
    const a = [...(actual as Map<unknown, unknown>)];
    const w = [...want];
    if (a.length !== w.length) fail('different size');
    w.forEach((x, i) => assertSame(a[i], x, `${path}[entry ${i}]`));
    return;
  }
  const ak = Object.keys(actual);
  const wk = Object.keys(want);
  if (JSON.stringify(ak) !== JSON.stringify(wk)) fail(`different keys ${JSON.stringify(ak)}`);
  if (Array.isArray(want) && (actual as unknown[]).length !== want.length) fail('different length');
  for (const k of wk) assertSame((actual as Record<string, unknown>)[k], (want as Record<string, unknown>)[k], `${path}.${k}`);
}

function show(v: unknown): string {
  try {
    return typeof v === 'bigint' ? `${v}n` : Object.is(v, -0) ? '-0' : (JSON.stringify(v) ?? String(v));
  } catch {
    return String(v);
  }
}

/** Encodes `values` in the given slices on one channel, decodes every message in order. */
function roundTrip(values: unknown[], slices: number[], channel = createChannelCodec()): { batch: Batch<unknown>; messages: ArrayBuffer[] } {
  const times = Float64Array.from(values, (_, i) => i * 1.25 - 7);
  const messages: ArrayBuffer[] = [];
  let from = 0;
  for (const size of slices) {
    const to = Math.min(values.length, from + size);
    messages.push(channel.encoder.encode(values, times, from, to));
    from = to;
  }
  if (from < values.length) messages.push(channel.encoder.encode(values, times, from, values.length));
  const batch = new Batch<unknown>(Math.max(1, values.length));
  for (const m of messages) {
    expect(channel.decoder.count(m)).toBeLessThanOrEqual(batch.capacity - batch.length);
    channel.decoder.decode(m, batch);
  }
  expect(batch.length).toBe(values.length);
  for (let i = 0; i < values.length; i++) {
    assertSame(batch.values[i], expected(values[i]), `record ${i}`);
    expect(batch.times[i]).toBe(times[i]);
  }
  return { batch, messages };
}

// ---- Generators --------------------------------------------------------------------------------

const anything = fc.anything({
  maxDepth: 3,
  maxKeys: 5,
  withBigInt: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withTypedArray: true,
  withSparseArray: true,
  withNullPrototype: true,
  stringUnit: 'binary', // lone surrogates included
});

/** Values of one field type, so columns are often homogeneous (and sometimes not). */
const fieldTypes = {
  double: fc.double(), // NaN, ±Infinity, -0 included
  int: fc.integer({ min: -1000, max: 1000 }),
  time: fc.integer({ min: 1_600_000_000_000, max: 1_800_000_000_000 }),
  ascii: fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
  text: fc.string({ unit: 'binary', maxLength: 20 }),
  word: fc.constantFrom('bid', 'auction', 'person', 'ça', ''),
  json: fc.jsonValue({ maxDepth: 2 }),
  any: anything,
  undef: fc.constant(undefined),
} as const;
type FieldType = keyof typeof fieldTypes;

const keyArb = fc.oneof(
  fc.constantFrom('type', 'id', 'price', 'key', 'start', 'end', 'value', '0', '7', 'constructor', 'a b', 'é', '__proto__'),
  fc.string({ maxLength: 4 }),
);
const shapeArb = fc.uniqueArray(fc.tuple(keyArb, fc.constantFrom(...(Object.keys(fieldTypes) as FieldType[]))), {
  selector: ([k]) => k,
  maxLength: 7,
});

function recordOf(shape: [string, FieldType][]): fc.Arbitrary<unknown> {
  const fields = shape.map(([, t]) => fc.oneof({ weight: 19, arbitrary: fieldTypes[t] }, { weight: 1, arbitrary: anything }));
  return fc.tuple(...fields).map((vs) => {
    const o: Record<string, unknown> = {};
    shape.forEach(([k], j) => Object.defineProperty(o, k, { value: vs[j], enumerable: true, writable: true, configurable: true }));
    return o;
  });
}

/** A stream of records: mostly objects of a few shapes, some arbitrary values; and slice sizes. */
const streamArb = fc
  .array(shapeArb, { minLength: 1, maxLength: 4 })
  .chain((shapes) =>
    fc.tuple(
      fc.array(fc.oneof({ weight: 8, arbitrary: fc.oneof(...shapes.map(recordOf)) }, { weight: 1, arbitrary: anything }), { maxLength: 150 }),
      fc.array(fc.nat({ max: 60 }), { maxLength: 12 }),
    ),
  );

// ---- Tests ---------------------------------------------------------------------------------------

describe('batch codec', () => {
  it('runs the example of its documentation', () => {
    const encoder = new BatchEncoder();
    const decoder = new BatchDecoder();
    const buffer = encoder.encode([{ auction: 1, price: 10 }, { auction: 2, price: 12 }], new Float64Array([5, 6]));
    const batch = new Batch<unknown>(1024);
    decoder.decode(buffer, batch);
    expect(batch.toArray()).toEqual([
      { value: { auction: 1, price: 10 }, time: 5 },
      { value: { auction: 2, price: 12 }, time: 6 },
    ]);
  });

  it('round-trips arbitrary records of changing shapes over many messages of one channel', () => {
    fc.assert(
      fc.property(streamArb, ([values, slices]) => {
        roundTrip(values, slices);
      }),
      { numRuns: Number(process.env.CODEC_RUNS ?? 300) },
    );
  });

  it('round-trips arbitrary JSON values, one channel for all runs', () => {
    // One channel across every run: shapes and msgpack structures pile up over hundreds of messages.
    const channel = createChannelCodec();
    fc.assert(
      fc.property(fc.array(fc.jsonValue(), { maxLength: 60 }), fc.array(fc.nat({ max: 30 }), { maxLength: 5 }), (values, slices) => {
        roundTrip(values, slices, channel);
      }),
      { numRuns: Number(process.env.CODEC_RUNS ?? 300) },
    );
  });

  it('keeps the special values, in columns and in msgpack alike', () => {
    const specials: unknown[] = [
      NaN,
      Infinity,
      -Infinity,
      -0,
      0,
      Number.MAX_VALUE,
      Number.MIN_VALUE,
      2 ** 53 + 2,
      -(2 ** 31),
      undefined,
      null,
      true,
      false,
      '',
      'ascii',
      'héllo wörld',
      '日本語のテキスト',
      '😀 emoji',
      '\ud800 lone high',
      'lone low \udc00',
      'x'.repeat(100_000),
      'é'.repeat(70_000),
      10n,
      -(2n ** 80n),
      2n ** 64n - 1n,
      new Date(1_700_000_000_123),
      new Date(-1),
      new Map<unknown, unknown>([
        [1, 'one'],
        ['two', { nested: [2] }],
        [{ k: 1 }, null],
      ]),
      new Set([1, 'a', -0]),
      new Uint8Array([1, 2, 3]),
      new Float64Array([-0, NaN, 1.5]),
      new Int32Array([-1, 2 ** 31 - 1]),
      new BigInt64Array([-5n]),
      [1, [2, [3, [4]]]],
      [1, , 3], // eslint-disable-line no-sparse-arrays
      { a: undefined, b: 1 },
      { nested: { deeper: { deepest: [new Map([[1, new Set([2])]])] } } },
      Object.assign(Object.create(null) as object, { bare: 1 }),
      new (class Point {
        x = 1;
        y = 2;
      })(),
      JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}'),
      /x+/g,
      new TypeError('t'),
    ];
    // Each special alone, as a field of a fixed shape (a column), and as a constant column.
    const asRecords = specials;
    const asField = specials.map((v, i) => ({ i, v, tag: 'same' }));
    const asConstant = specials.flatMap((v) => [{ c: v }, { c: v }, { c: v }]);
    const channel = createChannelCodec();
    roundTrip(asRecords, [1, 2, 3, 5, 8, 13], channel);
    roundTrip(asRecords, [asRecords.length], channel);
    roundTrip(asField, [asField.length], channel);
    roundTrip(asField, [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4], channel);
    for (const v of specials) roundTrip([{ c: v }, { c: v }, { c: v }], [3], channel);
    roundTrip(asConstant, [asConstant.length], channel);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('keeps Errors and RegExps, and encodes a class by its toJSON()', () => {
    class Money {
      constructor(readonly cents: number) {}
      toJSON(): string {
        return `${this.cents / 100} EUR`;
      }
    }
    const { batch } = roundTrip([new RangeError('out of range'), /a+b/gi, new Money(1250)].map((v) => ({ v })), [3]);
    const [error, regexp, money] = batch.values.slice(0, 3).map((r) => (r as { v: unknown }).v);
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toBe('out of range');
    expect(regexp).toEqual(/a+b/gi);
    expect(money).toBe('12.5 EUR');
  });

  it('normalises -0 the same way whichever encoding a record takes', () => {
    const channel = createChannelCodec();
    const { batch } = roundTrip([-0, { x: -0 }, { x: -0 }, { x: 1, y: -0 }, { x: 2, y: -0 }, [-0], 'mixed', -0], [8], channel);
    for (const v of [batch.values[0], (batch.values[1] as { x: number }).x, (batch.values[3] as { y: number }).y, (batch.values[5] as number[])[0]]) {
      expect(Object.is(v, 0)).toBe(true);
    }
  });

  it('defines a shape once per channel and refers to it afterwards', () => {
    const channel = createChannelCodec();
    const bids = Array.from({ length: 100 }, (_, i) => ({ type: 'bid', auction: 1000 + (i % 7), bidder: i, price: i * 3.5, dateTime: 1e12 + i, extra: `x${i}` }));
    const times = new Float64Array(100);
    const first = channel.encoder.encode(bids, times);
    const second = channel.encoder.encode(bids, times);
    const into = new Batch<unknown>(200);
    channel.decoder.decode(first, into);
    channel.decoder.decode(second, into);
    assertSame(into.values.slice(100, 200), bids);
    // The second message is smaller (no key list) and cannot be read without the first.
    expect(second.byteLength).toBeLessThan(first.byteLength);
    const renumbered = second.slice(0);
    new Uint32Array(renumbered, 0, 2)[1] = 0; // pretend it is the first message of its channel
    expect(() => new BatchDecoder().decode(renumbered, new Batch<unknown>(100))).toThrow(/shape 0, never defined/);
  });

  it('refuses a missing, repeated or reordered message', () => {
    const { encoder } = createChannelCodec();
    const times = new Float64Array(2);
    const m = [0, 1, 2].map((i) => encoder.encode([{ a: i }, { b: i }], times));
    const into = new Batch<unknown>(10);
    const lost = new BatchDecoder();
    lost.decode(m[0]!, into);
    expect(() => lost.decode(m[2]!, into)).toThrow(/expected 1: a message was lost or reordered/);
    const repeated = new BatchDecoder();
    repeated.decode(m[0]!, into);
    expect(() => repeated.decode(m[0]!, into)).toThrow(/expected 1/);
    expect(() => new BatchDecoder().decode(m[1]!, into)).toThrow(/expected 0/);
    expect(() => new BatchDecoder().decode(new ArrayBuffer(8), into)).toThrow(/too short/);
    expect(() => new BatchDecoder().decode(new ArrayBuffer(64), into)).toThrow(/not an exchange message/);
  });

  it('follows field types that change between batches', () => {
    const channel = createChannelCodec();
    const shape = (v: unknown, w: unknown): { v: unknown; w: unknown } => ({ v, w });
    const batches: unknown[][] = [
      [shape(1, 'a'), shape(2, 'b')], // number, string
      [shape('1', 2), shape('2', 3)], // swapped
      [shape(null, 'c'), shape(3, undefined)], // mixed
      [shape(4, 'd'), shape(5, 'e')], // back to columns (retyped from the mixed batch)
      [shape(6, 'f'), shape(6, 'f')], // constants
      [shape(7, 'g'), shape(8, 'é')], // non-ASCII
      [shape(7, 'g'), { w: 1, v: 2 }, shape(1, 2)], // same keys in another order is another shape
      [],
      [shape(new Date(1), [1]), shape(2n, new Map())],
    ];
    for (const b of batches) roundTrip(b, [b.length], channel);
    // After a mixed batch, a field that holds numbers again goes back to a column: as compact as
    // on a channel that never saw the mixed batch.
    const numbers = Array.from({ length: 50 }, (_, i) => shape(i * 1.5, i));
    const mixed = Array.from({ length: 50 }, (_, i) => shape(i % 2 ? i : null, i));
    const times = new Float64Array(50);
    const clean = new BatchEncoder();
    clean.encode(numbers, times);
    const cleanSize = clean.encode(numbers, times).byteLength;
    const retyped = new BatchEncoder();
    retyped.encode(numbers, times);
    const mixedSize = retyped.encode(mixed, times).byteLength;
    retyped.encode(numbers, times);
    expect(retyped.encode(numbers, times).byteLength).toBe(cleanSize);
    expect(mixedSize).not.toBe(cleanSize);
  });

  it('handles empty, large and wide batches, many groups and many shapes', () => {
    const channel = createChannelCodec();
    roundTrip([], [0, 0], channel);
    // 100 000 records, long and non-ASCII strings: the encoder's buffer grows.
    const gen = new NexmarkGenerator();
    const big = Array.from({ length: 100_000 }, (_, i) => gen.event(i));
    big[500] = { ...(big[500] as object), extra: 'ü'.repeat(300_000) } as never;
    roundTrip(big, [100_000], channel);
    roundTrip(big.slice(0, 3000), [1000, 0, 1, 999, 1000], channel);
    // Objects wider than a shape may be (msgpack), and 100 shapes in one batch (more than fit).
    const wide = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]));
    const many = Array.from({ length: 400 }, (_, i) => ({ [`f${i % 100}`]: i, common: 'x' }));
    roundTrip([wide, wide, ...many, wide], [402], channel);
    // More shapes than a channel keeps (it resets, in-band).
    const shapes = Array.from({ length: 5000 }, (_, i) => ({ [`s${i}`]: i }));
    roundTrip(shapes, Array.from({ length: 50 }, () => 100), channel);
    roundTrip(big.slice(0, 100), [100], channel);
  });

  it('fills a batch that already holds records, and refuses one without room', () => {
    const { encoder, decoder } = createChannelCodec();
    const into = new Batch<unknown>(3);
    into.push('kept', 1);
    decoder.decode(encoder.encode([{ a: 1 }, 2], new Float64Array([2, 3])), into);
    expect(into.toArray()).toEqual([
      { value: 'kept', time: 1 },
      { value: { a: 1 }, time: 2 },
      { value: 2, time: 3 },
    ]);
    const m = encoder.encode([1], new Float64Array(1));
    expect(decoder.count(m)).toBe(1);
    expect(() => decoder.decode(m, into)).toThrow(RangeError);
    const other = new Batch<unknown>(1);
    decoder.decode(m, other); // the refused message was not taken
    expect(other.toArray()).toEqual([{ value: 1, time: 0 }]);
    expect(() => encoder.encode([1, 2], new Float64Array(1))).toThrow(RangeError);
  });

  describe('a record that cannot be encoded', () => {
    const cyclic = (): unknown => {
      const o: Record<string, unknown> = { a: 1 };
      o.self = o;
      return o;
    };
    class Node {
      next: Node = this;
    }
    // What cannot be encoded, the error it causes, and a record of the same structure that can be.
    const bad: Array<[string, () => unknown, RegExp, () => unknown]> = [
      ['a function', () => () => 1, /function/, () => 1],
      ['a function in a field', () => ({ a: 1, b: 'x', f: () => 1 }), /function/, () => ({ a: 1, b: 'x', f: 2 })],
      ['a symbol in a field', () => ({ a: 1, b: 'x', f: Symbol('s') }), /symbol/, () => ({ a: 1, b: 'x', f: 's' })],
      ['a symbol', () => Symbol('s'), /symbol/, () => 's'],
      ['a cycle', cyclic, /stack/, () => ({ a: 1, self: { a: 2, self: null } })],
      ['a class instance with a cycle', () => new Node(), /stack/, () => ({ next: { next: null } })],
      [
        'a nested function',
        () => [1, new Map([[1, { deep: () => 0, other: 1 }]])],
        /function/,
        () => [1, new Map([[1, { deep: 0, other: 1 }]])],
      ],
      [
        'a getter that throws',
        () =>
          Object.defineProperty({ a: 1, b: 'x' }, 'c', {
            enumerable: true,
            get() {
              throw new Error('no c');
            },
          }),
        /no c/,
        () => ({ a: 1, b: 'x', c: 3 }),
      ],
    ];
    for (const [what, make, message, repaired] of bad) {
      it(`is reported by index: ${what}`, () => {
        const { encoder, decoder } = createChannelCodec();
        const good = (i: number): unknown => ({ a: i, b: `r${i}`, c: i * 2 });
        const values = Array.from({ length: 20 }, (_, i) => good(i));
        const times = Float64Array.from(values, (_, i) => i);
        const into = new Batch<unknown>(40);
        // A message before the failure defines the shape; the failure must not unsettle the channel.
        decoder.decode(encoder.encode(values, times, 0, 5), into);
        values[13] = make();
        let error: unknown;
        try {
          encoder.encode(values, times, 5, 20);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(RecordEncodeError);
        expect((error as RecordEncodeError).index).toBe(13);
        expect((error as RecordEncodeError).record).toBe(values[13]);
        expect((error as Error).message).toMatch(/^record 13 cannot be encoded/);
        expect(String(((error as Error).cause as Error).message)).toMatch(message);
        // Dead-letter it and send the rest: the decoder sees every other record.
        decoder.decode(encoder.encode(values, times, 5, 13), into);
        decoder.decode(encoder.encode(values, times, 14, 20), into);
        expect(into.length).toBe(19);
        const want = values.filter((_, i) => i !== 13);
        for (let i = 0; i < 19; i++) assertSame(into.values[i], want[i]);
        expect(Array.from(into.times.subarray(0, 19))).toEqual([...Array(20).keys()].filter((i) => i !== 13));
        // Whatever the failed message would have defined (a shape, msgpack structures) is defined
        // again when next used: the encoder forgot it, and told the decoder to.
        const fixed = [repaired(), repaired(), good(99)];
        decoder.decode(encoder.encode(fixed, new Float64Array(3)), into);
        for (let i = 0; i < 3; i++) assertSame(into.values[19 + i], fixed[i]);
      });
    }
  });

  it('works across threads: encoder in one, decoder in a worker, state only in the messages', async () => {
    const gen = new NexmarkGenerator();
    const batches: unknown[][] = [
      Array.from({ length: 1000 }, (_, i) => gen.event(i)),
      Array.from({ length: 500 }, (_, i) => ({ key: `k${i % 10}`, start: 0, end: 10_000, value: i })),
      [1, 'two', [3], new Map([[4, 4]]), { five: 5n }, new Date(6), new Uint8Array([7])],
      Array.from({ length: 1000 }, (_, i) => gen.event(i + 1000)),
      [],
    ];
    const worker = new Worker(new URL('../../test/fixtures/batch-codec-worker.mjs', import.meta.url));
    const { port1, port2 } = new MessageChannel();
    worker.postMessage(port2, [port2]);
    const received: unknown[][] = [];
    const done = new Promise<void>((resolve, reject) => {
      worker.on('error', reject);
      port1.on('message', (m: unknown) => {
        if (m === 'end') resolve();
        else received.push(m as unknown[]);
      });
    });
    const encoder = new BatchEncoder();
    for (const b of batches) {
      const buffer = encoder.encode(b, Float64Array.from(b, (_, i) => i));
      port1.postMessage(buffer, [buffer]);
      expect(buffer.byteLength).toBe(0); // transferred, not copied
    }
    port1.postMessage('end');
    await done;
    await worker.terminate();
    port1.close();
    expect(received.length).toBe(batches.length);
    batches.forEach((b, k) => assertSame(received[k], b.map(expected), `batch ${k}`));
  });
});
