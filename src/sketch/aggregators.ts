import type { StateCodec } from '../state/codec.ts';
import { type ValueStateDescriptor, valueState } from '../state/descriptors.ts';
import type { Aggregator } from '../window/aggregators.ts';
import { CountMinSketch } from './count-min-sketch.ts';
import { HyperLogLog } from './hyper-log-log.ts';
import { deserializeSketch, type Sketch, sketchCodec } from './sketch.ts';
import { KllSketch } from './kll-sketch.ts';
import { SpaceSaving, type TopKEntry } from './space-saving.ts';

/**
 * Sketches as streaming types: window aggregators whose accumulators are sketches (so a window
 * keeps kilobytes per key instead of its records), keyed state holding a sketch, and an
 * aggregator that merges sketches built by parallel instances. Accumulators are checkpointed in
 * their serialized form.
 */

type Field<T> = (value: T) => string | number;

function sketchAggregator<T, S extends Sketch, R>(
  create: () => S,
  add: (sketch: S, value: T) => void,
  result: (sketch: S) => R,
  codec: StateCodec<S>,
): Aggregator<T, S, R> {
  return {
    create,
    add: (acc, v) => {
      add(acc, v);
      return acc;
    },
    merge: (a, b) => (a.merge(b as never), a),
    result,
    codec,
  };
}

/**
 * Approximate number of distinct `field` values (HyperLogLog). The relative standard error is
 * `relativeError` (default 1%, 16 KiB per key and window); 99.7% of estimates are within three
 * times that.
 *
 * @example
 * bids.windowAll(tumbling(10_000)).aggregate(approxDistinct((b: Bid) => b.bidder));
 */
export function approxDistinct<T>(field: Field<T>, options: { relativeError?: number } = {}): Aggregator<T, HyperLogLog, number> {
  const e = options.relativeError ?? 0.01;
  return sketchAggregator<T, HyperLogLog, number>(
    () => HyperLogLog.withError(e),
    (s, v) => s.add(field(v)),
    (s) => Math.round(s.count()),
    sketchCodec(HyperLogLog),
  );
}

/**
 * Approximate quantiles of a numeric field (KLL): the result holds one value per requested
 * quantile, each within rank error ±`rankError` (default 1%) with probability 99%.
 *
 * @example
 * bids.keyBy((b) => b.auction).window(tumbling(60_000)).aggregate(approxQuantiles((b: Bid) => b.price, [0.5, 0.99]));
 */
export function approxQuantiles<T>(
  field: (value: T) => number,
  quantiles: readonly number[],
  options: { rankError?: number } = {},
): Aggregator<T, KllSketch, number[]> {
  for (const q of quantiles) if (!(q >= 0 && q <= 1)) throw new RangeError(`quantiles must be in [0, 1], got ${q}`);
  const rankError = options.rankError ?? 0.01;
  return sketchAggregator<T, KllSketch, number[]>(
    () => KllSketch.withError(rankError),
    (s, v) => s.add(field(v)),
    (s) => s.quantiles(quantiles),
    sketchCodec(KllSketch),
  );
}

/**
 * The `k` most frequent `field` values (SpaceSaving with `capacity` counters, default 10·k): each
 * entry's true count lies in [count − error, count], and every value more frequent than
 * N/capacity is reported.
 *
 * @example
 * bids.windowAll(sliding(60_000, 10_000)).aggregate(approxTopK((b: Bid) => b.auction, 10));
 */
export function approxTopK<T>(field: Field<T>, k: number, options: { capacity?: number } = {}): Aggregator<T, SpaceSaving, TopKEntry[]> {
  const capacity = options.capacity ?? 10 * k;
  if (!(k >= 1 && capacity >= k)) throw new RangeError(`top-k needs 1 <= k <= capacity, got k=${k}, capacity=${capacity}`);
  return sketchAggregator<T, SpaceSaving, TopKEntry[]>(
    () => new SpaceSaving(capacity),
    (s, v) => s.add(field(v)),
    (s) => s.top(k),
    sketchCodec(SpaceSaving),
  );
}

/**
 * Approximate frequency of every `field` value (count-min with conservative update): the result is
 * the sketch; `estimate(item)` never underestimates and overestimates by at most ε·N with
 * probability 1 − δ (defaults ε = 0.001, δ = 0.01).
 *
 * @example
 * const freq = clicks.windowAll(tumbling(60_000)).aggregate(approxFrequency((c: Click) => c.page));
 * freq.map((r) => r.value.estimate('/home'));
 */
export function approxFrequency<T>(
  field: Field<T>,
  options: { epsilon?: number; delta?: number } = {},
): Aggregator<T, CountMinSketch, CountMinSketch> {
  const epsilon = options.epsilon ?? 0.001;
  const delta = options.delta ?? 0.01;
  return sketchAggregator<T, CountMinSketch, CountMinSketch>(
    () => CountMinSketch.withError(epsilon, delta),
    (s, v) => s.add(field(v)),
    (s) => s,
    sketchCodec(CountMinSketch),
  );
}

/**
 * Merges sketches of the same type and parameters, for two-phase aggregation: parallel instances
 * (or keys) each build a partial sketch, a global step merges them. The result equals — or, for
 * order-dependent sketches, is within the same bounds as — the sketch of all the input.
 *
 * @example
 * // Distinct bidders per window, pre-aggregated per shard, then merged.
 * bids.keyBy((b) => b.bidder % 16).window(tumbling(10_000)).aggregate(sketchOf(() => HyperLogLog.withError(0.01), (s, b) => s.add(b.bidder)), (_k, s) => s)
 *   .windowAll(tumbling(10_000)).aggregate(mergeSketches<HyperLogLog>(), (_k, s) => s.count());
 */
export function mergeSketches<S extends Sketch>(): Aggregator<S, S | null, S> {
  return {
    create: () => null,
    // The first sketch is copied: inputs belong to the records that carried them.
    add: (acc, v) => (acc === null ? (v.clone() as S) : (acc.merge(v as never), acc)),
    merge: (a, b) => (a === null ? (b === null ? null : (b.clone() as S)) : b === null ? a : (a.merge(b as never), a)),
    result: (acc) => acc as S,
    codec: {
      encode: (s) => (s === null ? null : s.serialize()),
      decode: (x) => (x === null ? null : (deserializeSketch(x as Uint8Array) as S)),
    },
  };
}

/**
 * A window aggregator over any sketch: `create` builds an empty one, `add` folds a record in; the
 * result is the sketch itself.
 */
export function sketchOf<T, S extends Sketch>(create: () => S, add: (sketch: S, value: T) => void): Aggregator<T, S, S> {
  return sketchAggregator<T, S, S>(create, add, (s) => s, {
    encode: (s) => s.serialize(),
    decode: (x) => deserializeSketch(x as Uint8Array) as S,
  });
}

/**
 * Declares keyed state holding a sketch, checkpointed in its serialized form.
 *
 * @example
 * clicks.keyBy((c) => c.page).state({ visitors: sketchState(HyperLogLog) }).process<number>({
 *   onElement(c, ctx) {
 *     const hll = ctx.state.visitors.get() ?? HyperLogLog.withError(0.02);
 *     hll.add(c.user);
 *     ctx.state.visitors.set(hll);
 *   },
 * });
 */
export function sketchState<S extends Sketch>(type: { deserialize(bytes: Uint8Array): S }, options: { ttl?: number } = {}): ValueStateDescriptor<S> {
  return valueState<S>({ ...options, codec: sketchCodec(type) });
}
