import { Packr } from 'msgpackr';
import type { Batch } from './batch.ts';

/** Encodes record batches for one channel (an ordered stream of messages to another thread). */
export interface BatchEncoder {
  /** Records [from, to) as one transferable buffer: their times, then their values. */
  encode(values: readonly unknown[], times: Float64Array, from: number, to: number): ArrayBuffer;
}

/** Decodes what the matching {@link BatchEncoder} of the channel encoded, message after message. */
export interface BatchDecoder {
  /** Appends the records of `buffer` to `into`. */
  decode(buffer: ArrayBuffer, into: Batch<unknown>): void;
}

/** A channel's encoder and decoder (each side uses its half; structures travel in-band). */
export function createChannelCodec(): { encoder: BatchEncoder; decoder: BatchDecoder } {
  const options = { structuredClone: true, useRecords: true, moreTypes: true, mapsAsObjects: false, sequential: true } as const;
  const packr = new Packr(options);
  const unpackr = new Packr(options);
  return {
    encoder: {
      encode(values, times, from, to) {
        const n = to - from;
        const body = packr.pack(values.slice(from, to));
        const buf = new ArrayBuffer(8 + n * 8 + body.length);
        new DataView(buf).setUint32(0, n, true);
        new Float64Array(buf, 8, n).set(times.subarray(from, to));
        new Uint8Array(buf, 8 + n * 8).set(body);
        return buf;
      },
    },
    decoder: {
      decode(buffer, into) {
        const n = new DataView(buffer).getUint32(0, true);
        const times = new Float64Array(buffer, 8, n);
        const values = unpackr.unpack(new Uint8Array(buffer, 8 + n * 8)) as unknown[];
        for (let i = 0; i < n; i++) into.push(values[i], times[i]!);
      },
    },
  };
}
