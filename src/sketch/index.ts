/**
 * Spate's sketches: small, mergeable, serializable summaries of streams with documented error
 * bounds — frequencies ({@link CountMinSketch}), membership ({@link BloomFilter}), distinct
 * counts ({@link HyperLogLog}), quantiles ({@link KllSketch}) and heavy hitters
 * ({@link SpaceSaving}).
 *
 * Every sketch has `add`, an in-place `merge` (same parameters required), `clone`, `clear`,
 * `equals`, `serialize(): Uint8Array` and `static deserialize(bytes)`, a plain constructor taking
 * its raw parameters and a static constructor from error parameters. Serialized sketches share a
 * 4-byte header (`0x53`, a magic byte per sketch type, a version, flags); see
 * {@link deserializeSketch} to decode one without knowing its type.
 *
 * @example
 * ```ts
 * import { HyperLogLog, deserializeSketch } from './sketch/index.ts';
 * const a = HyperLogLog.withError(0.01);
 * const b = HyperLogLog.withError(0.01);
 * a.add('alice'); b.add('bob');
 * const merged = (deserializeSketch(a.serialize()) as HyperLogLog).merge(b);
 * merged.count(); // ≈ 2
 * ```
 *
 * @module
 */
export { BloomFilter, type BloomFilterOptions } from './bloom-filter.ts';
export { CountMinSketch, type CountMinSketchOptions } from './count-min-sketch.ts';
export { HyperLogLog, type HyperLogLogOptions } from './hyper-log-log.ts';
export { KllSketch, type KllSketchOptions } from './kll-sketch.ts';
export { SpaceSaving, type TopKEntry } from './space-saving.ts';
export { SketchType, SKETCH_TYPE_NAMES } from './binary.ts';

export { deserializeSketch, sketchCodec, type Sketch } from './sketch.ts';
export {
  approxDistinct,
  approxQuantiles,
  approxTopK,
  approxFrequency,
  mergeSketches,
  sketchOf,
  sketchState,
} from './aggregators.ts';
