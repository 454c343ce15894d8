import type { Stream } from '../api/stream.ts';
import { OutputTag } from '../api/output-tag.ts';
import { approxDistinct, approxQuantiles, approxTopK } from '../sketch/aggregators.ts';
import type { KeyedContext } from '../operators/keyed-process.ts';
import { listState, type ValueState, valueState } from '../state/descriptors.ts';
import type { Aggregator } from '../window/aggregators.ts';
import { sliding, tumbling } from '../window/assigners.ts';
import type { Alert, DeviceP95, DeviceStats, LateReading, NoisiestDevices, Reading, Region, RegionActivity } from './model.ts';

/** How long a resent message id is recognised as a duplicate. */
export const DEDUPE_WINDOW = 5 * 60_000;
/** How long after a window closes its statistics are still corrected by late readings. */
export const ALLOWED_LATENESS = 30_000;
/** Readings above this level count as loud (the noisiest-devices ranking). */
export const LOUD_DB = 85;
/** A device that sends nothing for this long (event time) raises a `silent` alert. */
export const SILENCE = 30_000;
/** A reading this many standard deviations from its device's moving average is a spike. */
const Z_SPIKE = 4;
/** Weight of a new reading in the moving average and variance. */
const ALPHA = 0.05;
/** Readings a device must have sent before it can raise spikes. */
const WARM_UP = 20;

type AnomalyState = {
  mean: ValueState<number>;
  variance: ValueState<number>;
  seen: ValueState<number>;
  last: ValueState<number>;
};

/**
 * Scores a reading against its device's exponentially weighted moving average and variance
 * (a spike when |z| ≥ 4 after a warm-up), updates them, and moves the device's silence timer.
 */
function score(r: Reading, ctx: KeyedContext<string, Alert, AnomalyState>): void {
  const s = ctx.state;
  const n = s.seen.get() ?? 0;
  const mean = s.mean.get() ?? r.db;
  const variance = s.variance.get() ?? 0;
  const sd = Math.sqrt(variance);
  const z = sd > 0 ? (r.db - mean) / sd : 0;
  if (n >= WARM_UP && Math.abs(z) >= Z_SPIKE) ctx.emit({ device: r.device, time: r.time, kind: 'spike', db: r.db, z: Math.round(z * 10) / 10 }, r.time);
  const diff = r.db - mean;
  s.mean.set(mean + ALPHA * diff);
  s.variance.set((1 - ALPHA) * (variance + ALPHA * diff * diff));
  s.seen.set(n + 1);
  // One silence timer per device, moved along with its latest reading.
  const last = s.last.get();
  if (last !== undefined) ctx.deleteEventTimer(last + SILENCE);
  s.last.set(r.time);
  ctx.registerEventTimer(r.time + SILENCE);
}

/** What the demo job computes, each a stream the job stores and shows. */
export interface Analytics {
  readonly stats: Stream<DeviceStats>;
  readonly p95: Stream<DeviceP95>;
  readonly alerts: Stream<Alert>;
  readonly regions: Stream<RegionActivity>;
  readonly noisiest: Stream<NoisiestDevices>;
  readonly late: Stream<LateReading>;
}

interface StatsAcc {
  region: Region;
  count: number;
  sum: number;
  min: number;
  max: number;
}

/** Count, mean, lowest and highest level of a device's readings (one accumulator, mergeable). */
const levelStats: Aggregator<Reading, StatsAcc, StatsAcc> = {
  create: () => ({ region: 'centre', count: 0, sum: 0, min: Infinity, max: -Infinity }),
  add: (acc, r) => {
    acc.region = r.region;
    acc.count++;
    acc.sum += r.db;
    if (r.db < acc.min) acc.min = r.db;
    if (r.db > acc.max) acc.max = r.db;
    return acc;
  },
  merge: (a, b) => ({ region: b.count > 0 ? b.region : a.region, count: a.count + b.count, sum: a.sum + b.sum, min: Math.min(a.min, b.min), max: Math.max(a.max, b.max) }),
  result: (acc) => acc,
};

/**
 * The demo's analytics over validated readings (with event time set from `reading.time`):
 * duplicates dropped by message id, then per device 10 s statistics (late readings update them
 * for 30 s, later ones go to `late`), a sliding one-minute 95th percentile (KLL sketch), anomaly
 * alerts from keyed state (an exponentially weighted moving average and variance per device,
 * with an event-time timer that notices silence), distinct active devices per region
 * (HyperLogLog) and, per minute, the ten devices most often above 85 dB (top-k sketch).
 */
export function buildAnalytics(readings: Stream<Reading>): Analytics {
  const unique = readings.keyBy((r) => r.id).dedupe({ within: DEDUPE_WINDOW, id: 'dedupe' });
  const byDevice = unique.keyBy((r) => r.device);
  const lateTag = new OutputTag<Reading>('late-readings');

  const stats = byDevice
    .window(tumbling(10_000))
    .onLate({ policy: 'update', allowedLateness: ALLOWED_LATENESS, beyond: { policy: 'side-output', tag: lateTag } })
    .aggregate(
      levelStats,
      (device, s, w): DeviceStats => ({ device, region: s.region, start: w.start, end: w.end, count: s.count, avg: s.sum / s.count, min: s.min, max: s.max }),
      { id: 'device-stats' },
    );
  const late = stats.sideOutput(lateTag).map((r): LateReading => ({ ...r, arrivedAt: Date.now() }), { id: 'late-readings' });

  // The sketches' windows drop late readings (counted in lateDropped): a percentile or a
  // distinct count a reading tens of seconds late would barely move is not worth reopening.
  const p95 = byDevice
    .window(sliding(60_000, 10_000))
    .onLate({ policy: 'drop' })
    .aggregate(
      approxQuantiles((r: Reading) => r.db, [0.95]),
      (device, q, w): DeviceP95 => ({ device, end: w.end, p95: q[0]! }),
      { id: 'device-p95' },
    );

  const alerts = byDevice
    .state({
      mean: valueState<number>(),
      variance: valueState<number>(),
      seen: valueState<number>(),
      last: valueState<number>(),
      pending: listState<Reading>(),
    })
    .process<Alert>(
      {
        // Readings wait for the watermark and are scored in event-time order (so the model
        // does not depend on arrival order across parallel channels); a reading already
        // behind the watermark is late and does not update it.
        onElement(r, ctx) {
          if (r.time <= ctx.watermark) return;
          ctx.state.pending.add(r);
          ctx.registerEventTimer(r.time);
        },
        onTimer(time, ctx) {
          const s = ctx.state;
          const pending = s.pending.get();
          if (pending.length > 0) {
            const due = pending.filter((r) => r.time <= time).sort((a, b) => a.time - b.time || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
            if (due.length > 0) s.pending.update(pending.filter((r) => r.time > time));
            for (const r of due) score(r, ctx);
          }
          const last = s.last.get();
          if (last !== undefined && time === last + SILENCE) ctx.emit({ device: ctx.key, time, kind: 'silent', db: 0, z: 0 });
        },
      },
      { id: 'anomalies' },
    );

  const regions = unique
    .keyBy((r) => r.region)
    .window(tumbling(10_000))
    .onLate({ policy: 'drop' })
    .aggregate(
      approxDistinct((r: Reading) => r.device),
      (region, devices, w): RegionActivity => ({ region, end: w.end, devices }),
      { id: 'region-activity' },
    );

  const noisiest = unique
    .filter((r) => r.db > LOUD_DB, { id: 'loud' })
    .windowAll(tumbling(60_000))
    .onLate({ policy: 'drop' })
    .aggregate(
      approxTopK((r: Reading) => r.device, 10),
      (_key, top, w): NoisiestDevices => ({ end: w.end, devices: top.map((t) => ({ device: String(t.item), loudReadings: t.count })) }),
      { id: 'noisiest' },
    );

  return { stats, p95, alerts, regions, noisiest, late };
}
