import { Packr } from 'msgpackr';

/**
 * How a state value is written into a snapshot. The default codec stores values as they are
 * (structured msgpack: objects, arrays, Maps, Sets, Dates, typed arrays); give a codec for values
 * that need their own binary form, such as sketches.
 */
export interface StateCodec<T> {
  /** Converts a value to something msgpack can encode (often a Uint8Array). */
  encode(value: T): unknown;
  /** Rebuilds a value from what `encode` returned. */
  decode(encoded: unknown): T;
}

/** The identity codec: values are snapshotted structurally. */
export const structuredCodec: StateCodec<never> = {
  encode: (v) => v,
  decode: (v) => v as never,
};

/** Returns the structured (identity) codec typed for `T`. */
export function defaultCodec<T>(): StateCodec<T> {
  return structuredCodec as unknown as StateCodec<T>;
}

// Records keep plain objects as objects and Maps as Maps; each message carries its own record
// definitions, so a snapshot decodes in any process.
const packr = new Packr({ structuredClone: true, useRecords: true, moreTypes: true, mapsAsObjects: false });

/** Encodes a snapshot section (msgpack). */
export function packState(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Decodes what {@link packState} wrote. */
export function unpackState(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}
