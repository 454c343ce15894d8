import type { StateCodec } from '../state/codec.ts';
import { SKETCH_MARKER, SKETCH_TYPE_NAMES, SketchType } from './binary.ts';
import { BloomFilter } from './bloom-filter.ts';
import { CountMinSketch } from './count-min-sketch.ts';
import { HyperLogLog } from './hyper-log-log.ts';
import { KllSketch } from './kll-sketch.ts';
import { SpaceSaving } from './space-saving.ts';

/**
 * Any of Spate's sketches (each documents its own error bound).
 *
 * @example
 * ```ts
 * const state: Sketch[] = [new HyperLogLog(12), new KllSketch()];
 * ```
 */
export type Sketch = CountMinSketch | BloomFilter | HyperLogLog | KllSketch | SpaceSaving;

/**
 * Decodes any serialized Spate sketch, dispatching on its magic byte; throws a clear Error for
 * input that is not a Spate sketch or is malformed.
 *
 * @example
 * ```ts
 * const sketch = deserializeSketch(bytes);
 * if (sketch instanceof CountMinSketch) sketch.estimate('x');
 * ```
 */
export function deserializeSketch(bytes: Uint8Array): Sketch {
  if (!(bytes instanceof Uint8Array) || bytes.length < 2 || bytes[0] !== SKETCH_MARKER) {
    throw new Error('deserializeSketch: not a serialized Spate sketch (bad or missing header)');
  }
  switch (bytes[1]) {
    case SketchType.CountMinSketch:
      return CountMinSketch.deserialize(bytes);
    case SketchType.BloomFilter:
      return BloomFilter.deserialize(bytes);
    case SketchType.HyperLogLog:
      return HyperLogLog.deserialize(bytes);
    case SketchType.KllSketch:
      return KllSketch.deserialize(bytes);
    case SketchType.SpaceSaving:
      return SpaceSaving.deserialize(bytes);
    default:
      throw new Error(
        `deserializeSketch: unknown sketch type 0x${bytes[1]!.toString(16).padStart(2, '0')} (known: ${Object.entries(
          SKETCH_TYPE_NAMES,
        )
          .map(([t, n]) => `0x${Number(t).toString(16)} ${n}`)
          .join(', ')})`,
      );
  }
}

/**
 * A state codec for a sketch type, shaped like the engine's `StateCodec<T>` (`encode` to a
 * `Uint8Array`, `decode` back), so sketches can be keyed state and checkpointed.
 *
 * @example
 * ```ts
 * const codec = sketchCodec(HyperLogLog);
 * const restored = codec.decode(codec.encode(hll));
 * ```
 */
export function sketchCodec<T extends Sketch>(type: { deserialize(bytes: Uint8Array): T }): StateCodec<T> {
  return {
    encode: (value) => value.serialize(),
    decode: (encoded) => {
      if (!(encoded instanceof Uint8Array)) {
        throw new TypeError('sketch codec: expected the Uint8Array written by encode');
      }
      return type.deserialize(encoded);
    },
  };
}
