import { Packr, Unpackr } from 'msgpackr';
import type { Batch } from './batch.ts';

/**
 * The codec that moves record batches between worker threads: one encoder per sending end of a
 * channel, one decoder per receiving end. A channel is one ordered stream of messages (one per
 * exchange, sender instance and receiver instance); each message is one `ArrayBuffer` holding
 * the event times and the values of a slice of a batch, made to be transferred with
 * `postMessage(buffer, [buffer])`.
 *
 * **Encoding.** Records are grouped by kind:
 * - plain objects (prototype `Object.prototype`) are grouped by *shape* — their own enumerable
 *   keys in enumeration order — and each field is written as a column: a `Float64Array` slice for
 *   numbers, UTF-8 bytes with a length per row for strings, a single value when every row holds
 *   the same number or string (a `type: 'bid'` field costs nothing per record), and msgpack for
 *   anything else (nested objects, arrays, Maps, Dates, booleans, `null`, `undefined`…);
 * - every other record (numbers, strings, arrays, Maps, class instances…) goes to one column of
 *   its own, written the same way (all numbers → `Float64Array`, all strings → UTF-8, else
 *   msgpack).
 * A shape's keys are sent once per channel and referenced by number afterwards; msgpack record
 * structures likewise (msgpackr `sequential` mode). The decoder rebuilds objects with a function
 * generated per shape (an object literal, so decoded records get V8's fast object layout).
 *
 * **State travels in-band.** The encoder and decoder of a channel share no memory: a message may
 * define shapes and msgpack structures that later messages use, so the decoder must see every
 * message of its channel, in order, exactly once (each message carries a sequence number, and a
 * gap or reorder throws). After an encoding error the encoder forgets all shared state and marks
 * its next message as a reset, so a message that was never sent cannot leave the two ends
 * disagreeing.
 *
 * **What round-trips.** What msgpackr (`moreTypes`, `mapsAsObjects: false`) round-trips, as the
 * state codec (`src/state/codec.ts`) does, with these rules, the same whichever encoding a batch
 * takes:
 * - plain objects keep their key order; a field set to `undefined` stays an own property with the
 *   value `undefined` (as `structuredClone` does);
 * - `-0` decodes as `0` (msgpack has no negative zero, and column data is normalised the same
 *   way so a record's value never depends on which batch it travelled in); `NaN` and ±`Infinity`
 *   are kept;
 * - strings travel as UTF-8, so a string that is not well-formed UTF-16 is not kept: each lone
 *   surrogate decodes as one to three U+FFFD (msgpackr's decoding of its bytes depends on the
 *   string's length);
 * - Maps, Sets, Dates, typed arrays, `ArrayBuffer`s, bigints and RegExps are kept, Errors keep
 *   their class and message; null-prototype objects and class instances decode as plain objects
 *   with their own enumerable fields (as `structuredClone` does), or as what their `toJSON()`
 *   returns if they have one (msgpackr's rule); a `__proto__` own key decodes as `__proto_`
 *   (msgpackr's guard against prototype pollution); holes in arrays decode as `undefined`;
 * - shared references are not kept (an object reachable twice decodes as two copies) and cycles
 *   are refused;
 * - a function or a symbol anywhere in a record, a cycle, or a getter that throws makes
 *   {@link BatchEncoder.encode} throw a {@link RecordEncodeError} naming the record's index.
 *
 * **Strings are decoded as copies.** Cutting every string out of one decoded block would be about
 * 30 ns per string cheaper, but V8 keeps a whole block alive for any one of its substrings, so a
 * single string kept in keyed state would pin a message's worth of text (a thousandfold memory
 * blow-up for "latest value per key" state). Only strings shorter than 13 characters, which V8
 * copies anyway, are cut from a block.
 *
 * **Cost** (`bench/codecs.ts`, batches of 1024): 0.1–0.15 µs per NEXMark bid encoded and decoded,
 * 3–5× less than structured cloning over a MessagePort and than msgpackr with record structures.
 *
 * @example
 * ```ts
 * import { Batch } from './batch.ts';
 * import { BatchDecoder, BatchEncoder } from './batch-codec.ts';
 *
 * const encoder = new BatchEncoder(); // in the sending thread
 * const decoder = new BatchDecoder(); // in the receiving thread
 * const buffer = encoder.encode([{ auction: 1, price: 10 }, { auction: 2, price: 12 }], new Float64Array([5, 6]));
 * // port.postMessage(buffer, [buffer]) … on the other side:
 * const batch = new Batch<unknown>(1024);
 * decoder.decode(buffer, batch);
 * batch.toArray(); // [{ value: { auction: 1, price: 10 }, time: 5 }, { value: { auction: 2, price: 12 }, time: 6 }]
 * ```
 */

/** Thrown by {@link BatchEncoder.encode} when a record cannot be encoded. */
export class RecordEncodeError extends Error {
  override readonly name = 'RecordEncodeError';
  constructor(
    /** Index of the record in the `values` array given to `encode` (not relative to `from`). */
    readonly index: number,
    /** The record itself. */
    readonly record: unknown,
    cause: unknown,
  ) {
    super(`record ${index} cannot be encoded for an exchange: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

// ---- Message layout --------------------------------------------------------------------------
// Little-endian Uint32 words, then data sections aligned for their typed-array views:
//   word 0  magic | format version << 24 | flags << 16
//   word 1  sequence number of the message on its channel (from 0, wraps at 2^32)
//   word 2  record count n
//   word 3  byte offset of the group descriptors (Uint32 words)
//   word 4  byte offset of the msgpack section (0: none)
//   word 5  byte length of the msgpack section
//   word 6  byte offset of the group tags (one Uint8 per record; 0: every record in group 0)
//   word 7  reserved (0)
//   byte 32 times: n Float64
//   then column data (Float64 columns 8-aligned, string lengths 4-aligned, string bytes),
//   tags, descriptors, msgpack section.
// Descriptors: group count, then per group: kind (0 value, 1 object), shape id, rows, columns,
// and per column: column kind, a, b (meanings below).
// The msgpack section, present only if needed, is one array: [new shape definitions ([id, keys]
// pairs) or null, then the msgpack columns referred to by index from descriptors]. Records whose
// fields are all numbers and strings need no msgpack once their shape is defined.

const MAGIC = 0x5342; // 'BS'
const VERSION = 1;
const FLAG_RESET = 1;
const HEADER_BYTES = 32;

/** Column kinds in descriptors. */
const Col = {
  /** Every row holds the same number: Float64 at byte offset a. */
  ConstF64: 0,
  /** Numbers: Float64 at byte offset a. */
  F64: 1,
  /** Strings, ASCII: Uint32 lengths at byte offset a, then the bytes at b. */
  Ascii: 2,
  /** Strings, UTF-8: Uint32 byte lengths at a, bytes at b. */
  Utf8: 3,
  /** Anything: the array extras[a] (msgpack). */
  Any: 4,
  /** Every row holds the same string: UTF-8 at byte offset a, b bytes. */
  ConstString: 5,
} as const;

const GroupKind = { Value: 0, Object: 1 } as const;

/**
 * msgpack options shared by both ends. `sequential` lets a record structure defined in one
 * message be referred to by later ones; `structuredClone` stays off (it tracks every object in a
 * Map to keep shared references, which exchanged records do not need).
 */
function msgpackOptions(): ConstructorParameters<typeof Packr>[0] {
  return {
    useRecords: true,
    sequential: true,
    moreTypes: true,
    mapsAsObjects: false,
    structuredClone: false,
    // msgpackr writes functions as undefined by default; a record holding one is an error.
    writeFunction: () => {
      throw new TypeError('a function cannot be sent to another thread');
    },
  } as ConstructorParameters<typeof Packr>[0];
}

/** A probe encoder (no channel state) used only to find which record failed. */
let probePackr: Packr | undefined;

/** Records of a batch grouped as one shape or as the value group. */
const MAX_GROUPS = 64;
/** Objects with more keys than this go to the value group (msgpack). */
const MAX_FIELDS = 256;
/** Shapes defined on one channel before it resets (bounds both ends' memory). */
const MAX_SHAPES = 4096;
/** Initial size of an encoder's scratch buffer, and the size above which it is given back. */
const SCRATCH_BYTES = 1 << 16;
const SCRATCH_KEEP = 1 << 22;
/** V8 copies substrings shorter than this (`SlicedString::kMinLength`); longer ones share. */
const SLICE_COPY_LIMIT = 13;

/**
 * Node's Buffer has unchecked per-encoding methods behind `write` and `toString` (msgpackr uses
 * them too); they skip the encoding dispatch, which matters at one call per string.
 */
interface RawBuffer extends Uint8Array {
  utf8Write(string: string, offset: number, length?: number): number;
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
}
function rawBuffer(ab: ArrayBuffer): RawBuffer {
  return Buffer.from(ab) as unknown as RawBuffer;
}
for (const method of ['utf8Write', 'latin1Slice', 'utf8Slice']) {
  if (typeof (Buffer.prototype as unknown as Record<string, unknown>)[method] !== 'function') {
    throw new Error(`this Node.js has no Buffer.prototype.${method}; the exchange codec needs it`);
  }
}

const ObjectProto = Object.prototype;
const getProto = Object.getPrototypeOf;
const EMPTY: unknown[] = [];

// ---- Generated code --------------------------------------------------------------------------

/** Per-source-text cache of generated functions, shared by every channel of the thread. */
const generated = new Map<string, unknown>();
function compile<F>(source: string): F {
  let fn = generated.get(source) as F | undefined;
  if (fn === undefined) {
    if (generated.size >= 4096) generated.clear();
    fn = new Function(source)() as F;
    generated.set(source, fn);
  }
  return fn;
}

/**
 * Writes a group's fields. Returns -1, or the first row whose field types differ from `kinds`
 * (the caller re-derives the kinds and tries again). Field j of kind:
 * - `n` number: written to `f[b[j] + r]` (normalising -0), `same[j]` = every row equal;
 * - `s` string: `s[j][r]`, `same[j]` = every row equal;
 * - `a` anything: `s[j][r]`, `same[j]` = 1 if every row held a number, 2 if every row a string.
 */
type GroupWriter = (
  values: readonly unknown[],
  idx: Int32Array,
  rows: number,
  f: Float64Array,
  b: Int32Array,
  s: unknown[][],
  same: Uint8Array,
) => number;

/** Builds a record of a group from its columns: `f`/`b` numbers, `s` arrays, `c` constants. */
type RowReader = (f: Float64Array, b: Int32Array, s: unknown[][], c: unknown[], r: number) => unknown;

function writerFor(keys: readonly string[], kinds: string): GroupWriter {
  const init: string[] = [];
  const body: string[] = [];
  const tail: string[] = [];
  for (let j = 0; j < keys.length; j++) {
    const k = JSON.stringify(keys[j]);
    const kind = kinds[j];
    body.push(`x = v[${k}];`);
    if (kind === 'n') {
      init.push(`const b${j} = b[${j}], c${j} = values[idx[0]][${k}]; let q${j} = 1;`);
      body.push(`if (typeof x !== 'number') return r; f[b${j} + r] = x + 0; if (x !== c${j}) q${j} = 0;`);
      tail.push(`same[${j}] = q${j};`);
    } else if (kind === 's') {
      init.push(`const s${j} = s[${j}], c${j} = values[idx[0]][${k}]; let q${j} = 1;`);
      body.push(`if (typeof x !== 'string') return r; s${j}[r] = x; if (x !== c${j}) q${j} = 0;`);
      tail.push(`same[${j}] = q${j};`);
    } else {
      // same[j] for a mixed field: 1 if every row held a number, 2 if every row a string (the
      // next batch then tries the column encoding again).
      init.push(`const s${j} = s[${j}]; let q${j} = 3;`);
      body.push(`s${j}[r] = x; if (q${j} !== 0) q${j} &= typeof x === 'number' ? 1 : typeof x === 'string' ? 2 : 0;`);
      tail.push(`same[${j}] = q${j};`);
    }
  }
  return compile<GroupWriter>(
    `'use strict'; return function write(values, idx, rows, f, b, s, same) {\n` +
      `${init.join('\n')}\nlet x;\nfor (let r = 0; r < rows; r++) {\nconst v = values[idx[r]];\n${body.join('\n')}\n}\n` +
      `${tail.join('\n')}\nreturn -1;\n};`,
  );
}

const NO_WRITER: GroupWriter = () => {
  throw new Error('unreachable: a shape is written before its field kinds are known');
};

function readerFor(keys: readonly string[] | null, kinds: string): RowReader {
  const field = (j: number): string =>
    kinds[j] === 'f' ? `f[b[${j}] + r]` : kinds[j] === 'c' ? `c[${j}]` : `s[${j}][r]`;
  const expr =
    keys === null ? field(0) : `{${keys.map((key, j) => `${JSON.stringify(key)}: ${field(j)}`).join(', ')}}`;
  return compile<RowReader>(`'use strict'; return function read(f, b, s, c, r) { return ${expr}; };`);
}

// ---- Encoder ---------------------------------------------------------------------------------

/** A record shape known to the encoder of one channel. */
interface EncoderShape {
  readonly id: number;
  readonly keys: string[];
  /** Field kinds used last (`n` number, `s` string, `a` anything) and their writer. */
  kinds: string;
  writer: GroupWriter;
  /** Batch-local state: valid while `epoch` equals the encoder's. */
  epoch: number;
  group: number;
  rows: number;
  idx: Int32Array;
  /** Per field: collected strings / values of the current batch. */
  readonly cols: unknown[][];
  readonly bases: Int32Array;
  readonly same: Uint8Array;
}

/**
 * Encodes batches for one channel. Not thread-safe; keep it in the sending thread, one per
 * channel, and send every message it returns, in order, to the channel's {@link BatchDecoder}.
 */
export class BatchEncoder {
  private packr!: Packr;
  private shapes: EncoderShape[] = [];
  private shapeByKeys = new Map<string, EncoderShape>();
  private newShapes: EncoderShape[] = [];
  private newShapeCount = 0;
  private reset = false;
  private seq = 0;
  private epoch = 0;
  /** The shape matched last (tried first for the next object). */
  private last: EncoderShape | null = null;
  /** Object groups of the current batch, in group order (group g + 1): the first `groupCount`. */
  private groups: EncoderShape[] = [];
  private groupCount = 0;
  private tags = new Uint8Array(1024);
  private valueIdx = new Int32Array(1024);
  private valueRows = 0;
  private readonly keyScratch: string[] = [];

  /** Scratch buffer a message is written into (then copied out, exactly sized, to be transferred). */
  private ab = new ArrayBuffer(SCRATCH_BYTES);
  private u8 = new Uint8Array(this.ab);
  private u32 = new Uint32Array(this.ab);
  private f64 = new Float64Array(this.ab);
  private buf = rawBuffer(this.ab);
  private pos = 0;
  /** Where the current group's number columns start. */
  private numbersStart = 0;
  /** Where the last {@link writeStrings} put its lengths and bytes. */
  private stringsLengthsAt = 0;
  private stringsBytesAt = 0;
  // Descriptors and msgpack values of the message being written: the first `descCount` and
  // `extraCount` entries (arrays are reused, never shortened: setting an array's length costs a
  // runtime call, which matters for one-record messages).
  private readonly desc: number[] = [];
  private descCount = 0;
  private readonly extras: unknown[] = [null];
  private extraCount = 1;
  private readonly valueCol: unknown[] = [];

  constructor() {
    this.clear();
  }

  /**
   * Encodes `values[from..to)` with their times into one transferable buffer. Throws a
   * {@link RecordEncodeError} (with the index of the first record that cannot be encoded) and
   * encodes nothing: leave that record out (say, to a dead-letter sink) and encode the rest again,
   * e.g. `encode(values, times, from, e.index)` then `encode(values, times, e.index + 1, to)`.
   * After an error the channel's shared state is dropped and the next message resets the decoder.
   */
  encode(values: readonly unknown[], times: Float64Array, from = 0, to = values.length): ArrayBuffer {
    const n = to - from;
    if (!(n >= 0) || from < 0 || to > values.length || to > times.length) {
      throw new RangeError(`bad range [${from}, ${to}) of ${values.length} values and ${times.length} times`);
    }
    if (this.shapes.length >= MAX_SHAPES) this.clear();
    try {
      return this.write(values, times, from, to);
    } catch (error) {
      this.clear();
      throw locate(error, values, from, to);
    }
  }

  /** Forgets all state shared with the decoder; the next message tells the decoder to do the same. */
  private clear(): void {
    this.packr = new Packr(msgpackOptions());
    this.shapes = [];
    this.shapeByKeys.clear();
    this.newShapes = [];
    this.newShapeCount = 0;
    this.last = null;
    this.groups = [];
    this.groupCount = 0;
    this.reset = true;
  }

  private write(values: readonly unknown[], times: Float64Array, from: number, to: number): ArrayBuffer {
    const n = to - from;
    const epoch = ++this.epoch;
    this.groupCount = 0;
    this.valueRows = 0;
    this.newShapeCount = 0;
    if (this.tags.length < n) {
      this.tags = new Uint8Array(n);
      this.valueIdx = new Int32Array(n);
    }
    const tags = this.tags;
    const valueIdx = this.valueIdx;

    // Pass 1: sort records into groups (no value is read here, only keys).
    for (let i = from; i < to; i++) {
      const v = values[i];
      let s: EncoderShape | null = null;
      if (typeof v === 'object' && v !== null && getProto(v) === ObjectProto) {
        s = this.last;
        if (s === null || !sameKeys(v, s.keys)) s = this.findShape(v as object);
        if (s !== null && s.epoch !== epoch) s = this.activate(s, epoch, n);
      }
      if (s === null) {
        tags[i - from] = 0;
        valueIdx[this.valueRows++] = i;
      } else {
        this.last = s;
        tags[i - from] = s.group;
        s.idx[s.rows++] = i;
      }
    }

    // Header and times.
    this.pos = HEADER_BYTES;
    this.ensure(HEADER_BYTES + n * 8);
    const f64 = this.f64;
    if (n > 64) f64.set(times.subarray(from, to), HEADER_BYTES >> 3);
    else for (let i = 0; i < n; i++) f64[(HEADER_BYTES >> 3) + i] = times[from + i]!;
    this.pos = HEADER_BYTES + n * 8;

    // Pass 2: columns.
    const groups = this.groups;
    const groupCount = this.groupCount;
    this.descCount = 0;
    this.extraCount = 1; // extras[0]: new shape definitions, set below
    this.emit1(groupCount + 1);
    this.writeValueGroup(values);
    for (let g = 0; g < groupCount; g++) this.writeObjectGroup(values, groups[g]!);

    // Tags, only if there is more than one group.
    let tagsAt = 0;
    if (groupCount > 0 && (this.valueRows > 0 || groupCount > 1)) {
      tagsAt = this.pos;
      this.ensure(tagsAt + n);
      this.u8.set(tags.subarray(0, n), tagsAt);
      this.pos = tagsAt + n;
    }

    // Shape definitions (sent once per channel epoch).
    const extras = this.extras;
    if (this.newShapeCount > 0) {
      const defs: unknown[] = [];
      for (let k = 0; k < this.newShapeCount; k++) defs.push(this.newShapes[k]!.id, this.newShapes[k]!.keys);
      extras[0] = defs;
    }

    // Descriptors.
    const desc = this.desc;
    const descCount = this.descCount;
    let at = (this.pos + 3) & ~3;
    const descAt = at;
    this.ensure(at + descCount * 4);
    const u32 = this.u32;
    for (let k = 0; k < descCount; k++) u32[(at >> 2) + k] = desc[k]!;
    at += descCount * 4;

    // msgpack section.
    let packAt = 0;
    let packLength = 0;
    if (this.extraCount > 1 || extras[0] !== null) {
      const packed = this.packr.pack(extras.slice(0, this.extraCount));
      packAt = at;
      packLength = packed.length;
      this.ensure(at + packLength);
      this.u8.set(packed, at);
      at += packLength;
    }
    // Drop references to this batch's values.
    extras.fill(null, 0, this.extraCount);
    this.valueCol.fill(undefined);
    for (let g = 0; g < groupCount; g++) {
      const s = groups[g]!;
      for (let j = 0; j < s.cols.length; j++) {
        const col = s.cols[j]!;
        if (s.kinds[j] !== 'n') col.fill(undefined);
        else if (col.length !== 0) col.length = 0; // retyped to numbers: the array is not used any more
      }
    }

    const h = this.u32;
    h[0] = MAGIC | (VERSION << 24) | ((this.reset ? FLAG_RESET : 0) << 16);
    h[1] = this.seq;
    h[2] = n;
    h[3] = descAt;
    h[4] = packAt;
    h[5] = packLength;
    h[6] = tagsAt;
    h[7] = 0;
    const out = this.ab.slice(0, at);
    // One huge batch should not pin its buffer for the channel's lifetime.
    if (this.ab.byteLength > SCRATCH_KEEP && at < this.ab.byteLength >> 3) this.allocate(SCRATCH_BYTES);
    this.reset = false;
    this.seq = (this.seq + 1) >>> 0;
    return out;
  }

  /** Finds or makes the shape of a plain object that did not match the last shape; null: value group. */
  private findShape(v: object): EncoderShape | null {
    // Shapes already used in this batch first (a mix of a few event types).
    const groups = this.groups;
    const count = this.groupCount;
    for (let g = count - 1; g >= 0 && g >= count - 8; g--) {
      const s = groups[g]!;
      if (s !== this.last && sameKeys(v, s.keys)) return s;
    }
    const keys = this.keyScratch;
    keys.length = 0;
    for (const k in v) {
      if (keys.length === MAX_FIELDS || k === '__proto__') return null;
      keys.push(k);
    }
    const id = JSON.stringify(keys); // unambiguous ([] and [''] differ)
    let s = this.shapeByKeys.get(id);
    if (s === undefined) {
      // A shape that would find no room in this batch is not made (nor sent) now.
      if (this.groupCount >= MAX_GROUPS - 1) return null;
      const copy = keys.slice();
      s = {
        id: this.shapes.length,
        keys: copy,
        kinds: '', // learnt from the first batch
        writer: NO_WRITER,
        epoch: 0,
        group: 0,
        rows: 0,
        idx: new Int32Array(16),
        cols: copy.map(() => []),
        bases: new Int32Array(copy.length),
        same: new Uint8Array(copy.length),
      };
      this.shapes.push(s);
      this.shapeByKeys.set(id, s);
      this.newShapes[this.newShapeCount++] = s;
    }
    return s;
  }

  /** Makes `s` a group of the current batch; null if the batch has too many groups. */
  private activate(s: EncoderShape, epoch: number, n: number): EncoderShape | null {
    if (this.groupCount >= MAX_GROUPS - 1) return null;
    this.groups[this.groupCount++] = s;
    s.epoch = epoch;
    s.group = this.groupCount;
    s.rows = 0;
    if (s.idx.length < n) s.idx = new Int32Array(Math.max(n, s.idx.length * 2));
    return s;
  }

  private writeValueGroup(values: readonly unknown[]): void {
    const rows = this.valueRows;
    const idx = this.valueIdx;
    this.emit1(GroupKind.Value);
    this.emit3(0, rows, 1);
    if (rows === 0) {
      this.emit3(Col.Any, 0, 0);
      return;
    }
    let numbers = true;
    let strings = true;
    for (let r = 0; r < rows && (numbers || strings); r++) {
      const t = typeof values[idx[r]!];
      if (t !== 'number') numbers = false;
      if (t !== 'string') strings = false;
    }
    if (numbers) {
      const at = this.reserveF64(rows);
      const f = this.f64;
      const base = at >> 3;
      for (let r = 0; r < rows; r++) f[base + r] = (values[idx[r]!] as number) + 0;
      this.emit3(Col.F64, at, 0);
      return;
    }
    const col = this.valueCol;
    for (let r = 0; r < rows; r++) col[r] = values[idx[r]!];
    if (col.length !== rows) col.length = rows;
    if (strings) this.emit3(this.writeStrings(col, rows), this.stringsLengthsAt, this.stringsBytesAt);
    else this.emit3(Col.Any, this.addExtra(col), 0);
  }

  private writeObjectGroup(values: readonly unknown[], s: EncoderShape): void {
    const rows = s.rows;
    const desc = this.desc;
    const nf = s.keys.length;
    this.emit1(GroupKind.Object);
    this.emit3(s.id, rows, nf);
    if (s.kinds === '') {
      s.kinds = kindsOf(values, s);
      s.writer = writerFor(s.keys, s.kinds);
    }
    let failed = this.runWriter(values, s);
    if (failed >= 0) {
      // The field types changed: derive them from this batch and write again.
      s.kinds = kindsOf(values, s);
      s.writer = writerFor(s.keys, s.kinds);
      failed = this.runWriter(values, s);
      if (failed >= 0) {
        // Only a getter that changes type between reads gets here.
        s.kinds = 'a'.repeat(nf);
        s.writer = writerFor(s.keys, s.kinds);
        this.runWriter(values, s);
      }
    }
    // A mixed field that held only numbers or only strings this time is retyped for the next batch.
    let retype = false;
    for (let j = 0; j < nf; j++) if (s.kinds[j] === 'a' && s.same[j] !== 0) retype = true;
    // Number columns were reserved back to back from `start`; pack away the constant ones.
    let numbersAt = -1;
    for (let j = 0; j < nf; j++) {
      const kind = s.kinds[j];
      if (kind === 'n') {
        const from = s.bases[j]! << 3;
        if (numbersAt < 0) numbersAt = from;
        if (s.same[j] === 1) {
          // One value for every row: keep the first.
          if (from !== numbersAt) this.u8.copyWithin(numbersAt, from, from + 8);
          this.emit3(Col.ConstF64, numbersAt, 0);
          numbersAt += 8;
        } else {
          if (from !== numbersAt) this.u8.copyWithin(numbersAt, from, from + rows * 8);
          this.emit3(Col.F64, numbersAt, 0);
          numbersAt += rows * 8;
        }
      } else {
        this.emit3(0, 0, 0); // filled below, once the number area is final
      }
    }
    if (numbersAt >= 0) this.pos = numbersAt;
    else this.pos = this.numbersStart;
    // Strings and anything else.
    const first = this.descCount - nf * 3;
    for (let j = 0; j < nf; j++) {
      const kind = s.kinds[j];
      if (kind === 'n') continue;
      const col = s.cols[j]!;
      if (col.length !== rows) col.length = rows;
      const d = first + j * 3;
      if (kind === 's') {
        if (s.same[j] === 1) {
          const value = col[0] as string;
          this.ensure(this.pos + value.length * 3);
          desc[d] = Col.ConstString;
          desc[d + 1] = this.pos;
          desc[d + 2] = this.buf.utf8Write(value, this.pos);
          this.pos += desc[d + 2]!;
        } else {
          desc[d] = this.writeStrings(col as string[], rows);
          desc[d + 1] = this.stringsLengthsAt;
          desc[d + 2] = this.stringsBytesAt;
        }
      } else {
        desc[d] = Col.Any;
        desc[d + 1] = this.addExtra(col);
      }
    }
    if (retype) {
      let kinds = '';
      for (let j = 0; j < nf; j++) {
        const k = s.kinds[j]!;
        kinds += k !== 'a' ? k : s.same[j] === 1 ? 'n' : s.same[j] === 2 ? 's' : 'a';
      }
      s.kinds = kinds;
      s.writer = writerFor(s.keys, kinds);
    }
  }

  private emit1(a: number): void {
    this.desc[this.descCount++] = a;
  }

  private emit3(a: number, b: number, c: number): void {
    const desc = this.desc;
    const k = this.descCount;
    desc[k] = a;
    desc[k + 1] = b;
    desc[k + 2] = c;
    this.descCount = k + 3;
  }

  /** Adds a value to the message's msgpack section; returns its index there. */
  private addExtra(value: unknown): number {
    this.extras[this.extraCount] = value;
    return this.extraCount++;
  }

  private runWriter(values: readonly unknown[], s: EncoderShape): number {
    const rows = s.rows;
    let count = 0;
    for (let j = 0; j < s.keys.length; j++) if (s.kinds[j] === 'n') count++;
    const at = (this.pos + 7) & ~7;
    this.numbersStart = at;
    this.ensure(at + count * rows * 8);
    let base = at >> 3;
    for (let j = 0; j < s.keys.length; j++) {
      if (s.kinds[j] === 'n') {
        s.bases[j] = base;
        base += rows;
      }
    }
    return s.writer(values, s.idx, rows, this.f64, s.bases, s.cols, s.same);
  }

  /** Reserves `rows` Float64 slots, 8-aligned; returns their byte offset. */
  private reserveF64(rows: number): number {
    const at = (this.pos + 7) & ~7;
    this.ensure(at + rows * 8);
    this.pos = at + rows * 8;
    return at;
  }

  /** Writes a string column; returns its column kind (offsets in the two fields above). */
  private writeStrings(col: readonly unknown[], rows: number): number {
    const lengthsAt = (this.pos + 3) & ~3;
    const bytesAt = lengthsAt + rows * 4;
    const strs = col as readonly string[];
    const joined = strs.join('');
    this.ensure(bytesAt + joined.length * 3);
    const u32 = this.u32;
    const l = lengthsAt >> 2;
    let written = this.buf.utf8Write(joined, bytesAt);
    let kind: number = Col.Ascii;
    if (written === joined.length) {
      for (let r = 0; r < rows; r++) u32[l + r] = strs[r]!.length;
    } else {
      // Not ASCII: each string's UTF-8 length is needed, so write them one by one.
      kind = Col.Utf8;
      const buf = this.buf;
      let p = bytesAt;
      for (let r = 0; r < rows; r++) {
        const w = buf.utf8Write(strs[r]!, p);
        u32[l + r] = w;
        p += w;
      }
      written = p - bytesAt;
    }
    this.pos = bytesAt + written;
    this.stringsLengthsAt = lengthsAt;
    this.stringsBytesAt = bytesAt;
    return kind;
  }

  /** Grows the scratch buffer to hold at least `end` bytes. */
  private ensure(end: number): void {
    if (end <= this.ab.byteLength) return;
    let size = this.ab.byteLength * 2;
    while (size < end) size *= 2;
    const old = this.u8;
    this.allocate(size);
    this.u8.set(old);
  }

  private allocate(size: number): void {
    const ab = new ArrayBuffer(size);
    const u8 = new Uint8Array(ab);
    this.ab = ab;
    this.u8 = u8;
    this.u32 = new Uint32Array(ab);
    this.f64 = new Float64Array(ab);
    this.buf = rawBuffer(ab);
  }
}

/** True if `v`'s own enumerable keys are exactly `keys`, in order (reads no value). */
function sameKeys(v: object, keys: readonly string[]): boolean {
  let j = 0;
  const n = keys.length;
  for (const k in v) {
    if (j === n || k !== keys[j]) return false;
    j++;
  }
  return j === n;
}

/** Field kinds of a group from this batch's values: n if all numbers, s if all strings, else a. */
function kindsOf(values: readonly unknown[], s: EncoderShape): string {
  let kinds = '';
  for (let j = 0; j < s.keys.length; j++) {
    const key = s.keys[j]!;
    let numbers = true;
    let strings = true;
    for (let r = 0; r < s.rows && (numbers || strings); r++) {
      const t = typeof (values[s.idx[r]!] as Record<string, unknown>)[key];
      if (t !== 'number') numbers = false;
      if (t !== 'string') strings = false;
    }
    kinds += numbers ? 'n' : strings ? 's' : 'a';
  }
  return kinds;
}

/** Turns an encoding failure into a {@link RecordEncodeError} for the first record that fails alone. */
function locate(error: unknown, values: readonly unknown[], from: number, to: number): unknown {
  probePackr ??= new Packr({ ...msgpackOptions(), sequential: false });
  for (let i = from; i < to; i++) {
    const v = values[i];
    try {
      if (typeof v === 'object' && v !== null && getProto(v) === ObjectProto) {
        // Read every field as the columnar writer does (getters included).
        for (const k in v) probePackr.pack((v as Record<string, unknown>)[k]);
      } else {
        probePackr.pack(v);
      }
    } catch (cause) {
      return new RecordEncodeError(i, v, cause);
    }
  }
  return error;
}

// ---- Decoder ---------------------------------------------------------------------------------

interface DecoderShape {
  readonly keys: string[] | null;
  /** Readers by column kinds ('f' number column, 's' array, 'c' constant). */
  readonly readers: Map<string, RowReader>;
  /** The column kinds and reader of the last message, reused while they do not change. */
  lastKinds: Uint8Array;
  lastReader: RowReader | undefined;
}

function decoderShape(keys: string[] | null): DecoderShape {
  return { keys, readers: new Map(), lastKinds: new Uint8Array(keys === null ? 1 : keys.length), lastReader: undefined };
}

const KIND_CHARS = 'fsc';
const EMPTY_F64 = new Float64Array(0);

/**
 * Decodes the messages of one channel, in the order they were encoded. Not thread-safe; keep it
 * in the receiving thread. Throws if a message is missing, repeated or out of order, or
 * malformed; the channel cannot be used after that.
 */
export class BatchDecoder {
  private unpackr!: Unpackr;
  private shapes: DecoderShape[] = [];
  private valueShape = decoderShape(null);
  private seq = 0;
  // Per-group scratch, reused between messages.
  private readonly groupReaders: Array<RowReader | undefined> = [];
  private readonly groupB: Int32Array[] = [];
  private readonly groupS: unknown[][][] = [];
  private readonly groupC: unknown[][] = [];
  private readonly cursors: Int32Array = new Int32Array(MAX_GROUPS);
  private readonly kinds = new Uint8Array(MAX_FIELDS);

  constructor() {
    this.clear();
  }

  /** Drops the channel's definitions (the encoder did, after an error or when it had too many). */
  private clear(): void {
    this.unpackr = new Unpackr(msgpackOptions());
    this.shapes = [];
  }

  /** Number of records in a message (to pick a batch with room before {@link decode}). */
  count(buffer: ArrayBuffer): number {
    return new Uint32Array(buffer, 0, HEADER_BYTES >> 2)[2]!;
  }

  /**
   * Appends the records of `buffer` (the next message of the channel) to `into`, which must have
   * room for {@link count} more records: if it has not, this throws a `RangeError` before taking
   * the message, which can then be decoded into another batch.
   */
  decode(buffer: ArrayBuffer, into: Batch<unknown>): void {
    if (buffer.byteLength < HEADER_BYTES) throw new Error(`exchange message too short (${buffer.byteLength} bytes)`);
    const words = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
    const word0 = words[0]!;
    if ((word0 & 0xffff) !== MAGIC || word0 >>> 24 !== VERSION) throw new Error('not an exchange message of this version');
    if (words[1] !== this.seq) throw new Error(`exchange message ${words[1]} received, expected ${this.seq}: a message was lost or reordered`);
    const n = words[2]!;
    const o = into.length;
    if (o + n > into.capacity) throw new RangeError(`batch has room for ${into.capacity - o} records, message holds ${n}`);
    if (((word0 >>> 16) & 0xff & FLAG_RESET) !== 0) this.clear();
    this.seq = (this.seq + 1) >>> 0;
    const packAt = words[4]!;
    if (n === 0 && packAt === 0) return;

    const extras = packAt === 0 ? EMPTY : (this.unpackr.unpack(new Uint8Array(buffer, packAt, words[5])) as unknown[]);
    const defs = extras[0] as unknown[] | null | undefined;
    if (defs) {
      for (let k = 0; k < defs.length; k += 2) this.shapes[defs[k] as number] = decoderShape(defs[k + 1] as string[]);
    }
    const f = n === 0 ? EMPTY_F64 : new Float64Array(buffer, 0, buffer.byteLength >>> 3);
    const times = into.times;
    const t = HEADER_BYTES >> 3;
    if (n > 64) times.set(f.subarray(t, t + n), o);
    else for (let i = 0; i < n; i++) times[o + i] = f[t + i]!;

    let buf: RawBuffer | undefined;
    const kinds = this.kinds;
    let d = words[3]! >>> 2;
    const groupCount = words[d++]!;
    let single = -1;
    for (let g = 0; g < groupCount; g++) {
      const kind = words[d++]!;
      const shapeId = words[d++]!;
      const rows = words[d++]!;
      const cols = words[d++]!;
      if (rows === 0) {
        d += cols * 3;
        this.groupReaders[g] = undefined;
        continue;
      }
      const shape = kind === GroupKind.Value ? this.valueShape : this.shapes[shapeId];
      if (shape === undefined) throw new Error(`exchange message uses shape ${shapeId}, never defined on this channel`);
      if (cols !== shape.lastKinds.length) throw new Error(`exchange message gives ${cols} columns to a shape of ${shape.lastKinds.length}`);
      const b = (this.groupB[g] ??= new Int32Array(MAX_FIELDS));
      const s = (this.groupS[g] ??= []);
      const c = (this.groupC[g] ??= []);
      let changed = shape.lastReader === undefined;
      for (let j = 0; j < cols; j++) {
        const ck = words[d++]!;
        const a = words[d++]!;
        const bb = words[d++]!;
        let k: number;
        if (ck === Col.F64) {
          k = 0;
          b[j] = a >>> 3;
        } else if (ck === Col.Any) {
          k = 1;
          s[j] = extras[a] as unknown[];
        } else if (ck === Col.Ascii || ck === Col.Utf8) {
          k = 1;
          s[j] = readStrings((buf ??= rawBuffer(buffer)), words, a >>> 2, bb, rows, ck === Col.Ascii);
        } else if (ck === Col.ConstF64) {
          k = 2;
          c[j] = f[a >>> 3];
        } else if (ck === Col.ConstString) {
          k = 2;
          c[j] = (buf ??= rawBuffer(buffer)).utf8Slice(a, a + bb);
        } else {
          throw new Error(`exchange message has a column of unknown kind ${ck}`);
        }
        if (shape.lastKinds[j] !== k) changed = true;
        kinds[j] = k;
      }
      if (changed) {
        let key = '';
        for (let j = 0; j < cols; j++) key += KIND_CHARS[kinds[j]!];
        let reader = shape.readers.get(key);
        if (reader === undefined) {
          reader = readerFor(shape.keys, key);
          shape.readers.set(key, reader);
        }
        shape.lastKinds.set(kinds.subarray(0, cols));
        shape.lastReader = reader;
      }
      this.groupReaders[g] = shape.lastReader;
      single = single === -1 && rows === n ? g : -2;
    }

    const out = into.values;
    if (single >= 0) {
      const read = this.groupReaders[single]!;
      const b = this.groupB[single]!;
      const s = this.groupS[single]!;
      const c = this.groupC[single]!;
      for (let r = 0; r < n; r++) out[o + r] = read(f, b, s, c, r);
    } else if (n > 0) {
      const tags = new Uint8Array(buffer, words[6], n);
      const cursors = this.cursors;
      cursors.fill(0, 0, groupCount);
      const readers = this.groupReaders;
      const bs = this.groupB;
      const ss = this.groupS;
      const cs = this.groupC;
      for (let i = 0; i < n; i++) {
        const g = tags[i]!;
        out[o + i] = readers[g]!(f, bs[g]!, ss[g]!, cs[g]!, cursors[g]!++);
      }
    }
    into.length = o + n;
    for (let g = 0; g < groupCount; g++) {
      this.groupS[g]?.fill(undefined as never);
      this.groupC[g]?.fill(undefined);
    }
  }
}

/** Decodes a string column into an array of copies (see the note on sliced strings above). */
function readStrings(buf: RawBuffer, words: Uint32Array, lengthsWord: number, bytesAt: number, rows: number, ascii: boolean): string[] {
  const out = new Array<string>(rows);
  let p = bytesAt;
  if (ascii) {
    let block: string | undefined;
    for (let r = 0; r < rows; r++) {
      const length = words[lengthsWord + r]!;
      if (length < SLICE_COPY_LIMIT) {
        if (block === undefined) block = buf.latin1Slice(bytesAt, bytesAt + totalLength(words, lengthsWord, rows));
        out[r] = block.slice(p - bytesAt, p - bytesAt + length);
      } else {
        out[r] = buf.latin1Slice(p, p + length);
      }
      p += length;
    }
  } else {
    for (let r = 0; r < rows; r++) {
      const length = words[lengthsWord + r]!;
      out[r] = buf.utf8Slice(p, p + length);
      p += length;
    }
  }
  return out;
}

function totalLength(words: Uint32Array, at: number, rows: number): number {
  let total = 0;
  for (let r = 0; r < rows; r++) total += words[at + r]!;
  return total;
}

/**
 * An encoder and a decoder for one channel, both in this thread (tests, benchmarks). Across
 * threads, make the {@link BatchEncoder} in the sender and the {@link BatchDecoder} in the receiver.
 */
export function createChannelCodec(): { encoder: BatchEncoder; decoder: BatchDecoder } {
  return { encoder: new BatchEncoder(), decoder: new BatchDecoder() };
}
