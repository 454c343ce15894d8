/**
 * The binary envelope shared by every Spate sketch (internal to `src/sketch`).
 *
 * Every serialized sketch starts with the same 4-byte header, then its own parameters and payload,
 * all little-endian:
 *
 * | offset | size | field                                                        |
 * | -----: | ---: | ------------------------------------------------------------ |
 * |      0 |    1 | `0x53` ('S') — Spate sketch family marker                    |
 * |      1 |    1 | sketch type, the magic byte of one sketch (see {@link SketchType}) |
 * |      2 |    1 | format version of that sketch type (currently 1)             |
 * |      3 |    1 | flags, meaning defined per sketch type                       |
 *
 * Readers check the marker, the type, the version, every length against the bytes present, and
 * that no bytes are left over, so truncated, extended or foreign input is rejected with an Error
 * that says what was expected and what was found.
 */

/** Family marker, the first byte of every serialized Spate sketch. */
export const SKETCH_MARKER = 0x53;

/** The magic byte (second byte) that identifies each sketch type in serialized form. */
export const SketchType = {
  CountMinSketch: 0xc1,
  BloomFilter: 0xb1,
  HyperLogLog: 0x11,
  KllSketch: 0x4b,
  SpaceSaving: 0x55,
} as const;

/** Name of each sketch type, by magic byte. */
export const SKETCH_TYPE_NAMES: Readonly<Record<number, string>> = {
  [SketchType.CountMinSketch]: 'CountMinSketch',
  [SketchType.BloomFilter]: 'BloomFilter',
  [SketchType.HyperLogLog]: 'HyperLogLog',
  [SketchType.KllSketch]: 'KllSketch',
  [SketchType.SpaceSaving]: 'SpaceSaving',
};

/** Size of the common header in bytes. */
export const HEADER_BYTES = 4;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type NumericArray = Uint8Array | Uint32Array | Int32Array | Float64Array;

function hex(b: number): string {
  return `0x${b.toString(16).padStart(2, '0')}`;
}

/** Sequential little-endian writer over a buffer of known, exact size. */
export class ByteWriter {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  private pos = 0;

  constructor(size: number, type: number, version: number, flags = 0) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
    this.u8(SKETCH_MARKER);
    this.u8(type);
    this.u8(version);
    this.u8(flags);
  }

  u8(v: number): void {
    this.view.setUint8(this.pos, v);
    this.pos += 1;
  }

  u32(v: number): void {
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }

  f64(v: number): void {
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  /** Writes the elements of a typed array (little-endian). */
  array(a: NumericArray): void {
    if (LITTLE_ENDIAN || a.BYTES_PER_ELEMENT === 1) {
      this.bytes.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), this.pos);
      this.pos += a.byteLength;
      return;
    }
    for (let i = 0; i < a.length; i++) {
      if (a instanceof Float64Array) this.f64(a[i]!);
      else if (a instanceof Int32Array) {
        this.view.setInt32(this.pos, a[i]!, true);
        this.pos += 4;
      } else this.u32(a[i]!);
    }
  }

  /** Writes a string as its UTF-16 code units (exact for every JS string, lone surrogates too). */
  utf16(s: string): void {
    for (let i = 0; i < s.length; i++) {
      this.view.setUint16(this.pos, s.charCodeAt(i), true);
      this.pos += 2;
    }
  }

  /** Returns the bytes, checking that exactly the announced size was written. */
  finish(): Uint8Array {
    if (this.pos !== this.bytes.length) {
      throw new Error(`internal error: wrote ${this.pos} of ${this.bytes.length} bytes`);
    }
    return this.bytes;
  }
}

/** Sequential little-endian reader that turns every malformed input into a clear Error. */
export class ByteReader {
  private readonly view: DataView;
  private pos = 0;
  /** Format version found in the header. */
  readonly version: number;
  /** Flags byte found in the header. */
  readonly flags: number;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly type: number,
    supportedVersions: readonly number[],
  ) {
    const name = SKETCH_TYPE_NAMES[type]!;
    if (!(bytes instanceof Uint8Array)) {
      throw new TypeError(`${name}.deserialize: expected a Uint8Array`);
    }
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < HEADER_BYTES) {
      throw new Error(
        `${name}.deserialize: truncated input (${bytes.length} bytes, the header alone is ${HEADER_BYTES})`,
      );
    }
    if (bytes[0] !== SKETCH_MARKER) {
      throw new Error(
        `${name}.deserialize: not a serialized Spate sketch (first byte ${hex(bytes[0]!)}, expected ${hex(SKETCH_MARKER)})`,
      );
    }
    const found = bytes[1]!;
    if (found !== type) {
      const foundName = SKETCH_TYPE_NAMES[found];
      throw new Error(
        `${name}.deserialize: wrong magic byte ${hex(found)} (${foundName ?? 'unknown sketch type'}), expected ${hex(type)} (${name})`,
      );
    }
    this.version = bytes[2]!;
    if (!supportedVersions.includes(this.version)) {
      throw new Error(
        `${name}.deserialize: unsupported format version ${this.version} (this build reads ${supportedVersions.join(', ')})`,
      );
    }
    this.flags = bytes[3]!;
    this.pos = HEADER_BYTES;
  }

  /** Throws a "truncated input" Error unless `n` more bytes are present. */
  need(n: number, what: string): void {
    if (this.pos + n > this.bytes.length) {
      throw new Error(
        `${SKETCH_TYPE_NAMES[this.type]}.deserialize: truncated input: ${what} needs ${n} bytes at offset ${this.pos}, only ${this.bytes.length - this.pos} left`,
      );
    }
  }

  /** Bytes not yet read. */
  remaining(): number {
    return this.bytes.length - this.pos;
  }

  /** Throws unless exactly `n` bytes remain (checked before allocating for a payload). */
  expectRemaining(n: number, what: string): void {
    const left = this.bytes.length - this.pos;
    if (left < n) this.need(n, what);
    if (left > n) {
      throw new Error(
        `${SKETCH_TYPE_NAMES[this.type]}.deserialize: ${left - n} unexpected trailing bytes (${what} takes ${n} bytes, ${left} remain)`,
      );
    }
  }

  /** Throws a descriptive Error about a field with an invalid value. */
  fail(message: string): never {
    throw new Error(`${SKETCH_TYPE_NAMES[this.type]}.deserialize: corrupt input: ${message}`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  f64(what: string): number {
    this.need(8, what);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** Fills a typed array from the input. */
  array(a: NumericArray, what: string): void {
    this.need(a.byteLength, what);
    if (LITTLE_ENDIAN || a.BYTES_PER_ELEMENT === 1) {
      new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(
        this.bytes.subarray(this.pos, this.pos + a.byteLength),
      );
      this.pos += a.byteLength;
      return;
    }
    for (let i = 0; i < a.length; i++) {
      if (a instanceof Float64Array) a[i] = this.f64(what);
      else if (a instanceof Int32Array) {
        a[i] = this.view.getInt32(this.pos, true);
        this.pos += 4;
      } else a[i] = this.u32(what);
    }
  }

  /** Reads `length` UTF-16 code units as a string. */
  utf16(length: number, what: string): string {
    this.need(length * 2, what);
    let s = '';
    const CHUNK = 4096;
    const units = new Array<number>(Math.min(length, CHUNK));
    for (let start = 0; start < length; start += CHUNK) {
      const len = Math.min(CHUNK, length - start);
      units.length = len;
      for (let i = 0; i < len; i++) {
        units[i] = this.view.getUint16(this.pos, true);
        this.pos += 2;
      }
      s += String.fromCharCode(...units);
    }
    return s;
  }

  /** Throws unless the whole input was consumed. */
  end(): void {
    if (this.pos !== this.bytes.length) {
      throw new Error(
        `${SKETCH_TYPE_NAMES[this.type]}.deserialize: ${this.bytes.length - this.pos} unexpected trailing bytes after offset ${this.pos}`,
      );
    }
  }
}

/** Validates a positive integer parameter, throwing a RangeError that names it. */
export function checkInt(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

/** Validates a hash seed (any 32-bit integer; stored unsigned). */
export function checkSeed(seed: number): number {
  if (!Number.isInteger(seed) || seed < -0x80000000 || seed > 0xffffffff) {
    throw new RangeError(`seed must be a 32-bit integer, got ${seed}`);
  }
  return seed >>> 0;
}

/** Default hash seed of the sketches (differs from the key-group seed, so they are uncorrelated). */
export const DEFAULT_SKETCH_SEED = 0x2f6b1c39;
