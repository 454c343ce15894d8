/**
 * The demo's analytics against a naive recomputation: random readings from a few devices, with
 * duplicates (resent message ids), disorder within the watermark's bound and late readings —
 * some within the allowed lateness (they correct their window), some beyond it (they go to
 * `late`). Final per-window statistics, percentiles, distinct devices per region, spike alerts
 * and late readings are compared with plain loops over the same input.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Pipeline } from '../../src/api/pipeline.ts';
import { ALLOWED_LATENESS, buildAnalytics, LOUD_DB } from '../../src/demo/analytics.ts';
import { type Reading, REGIONS, toReading } from '../../src/demo/model.ts';

const OUT_OF_ORDER = 2_000;

interface Arrival {
  readonly reading: Reading;
  /** A duplicate of an earlier message (same id). */
  readonly repeat: boolean;
}

/** Readings of `devices` devices, one every ~500 ms each, shuffled within the bound, some repeated, a few late. */
function scenario(seed: number, devices: number, perDevice: number): Arrival[] {
  let s = seed >>> 0 || 1;
  const rnd = (): number => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const base = 1_700_000_000_000;
  const readings: Array<{ r: Reading; arrival: number }> = [];
  for (let d = 0; d < devices; d++) {
    for (let i = 0; i < perDevice; i++) {
      const time = base + i * 500 + Math.floor(rnd() * 400);
      const spike = rnd() < 0.02;
      const r: Reading = { id: `d${d}-${i}`, device: `d${d}`, region: REGIONS[d % REGIONS.length]!, time, db: spike ? 120 + rnd() * 10 : 50 + d + rnd() * 10 };
      const kind = rnd();
      // Mostly on time (within the bound), a few late by up to 20 s (corrections), a few by ~60 s (beyond).
      const delay = kind < 0.95 ? rnd() * OUT_OF_ORDER * 0.9 : kind < 0.98 ? 5_000 + rnd() * 15_000 : 60_000 + rnd() * 5_000;
      readings.push({ r, arrival: time + delay });
    }
  }
  readings.sort((a, b) => a.arrival - b.arrival);
  const out: Arrival[] = [];
  for (const x of readings) {
    out.push({ reading: x.r, repeat: false });
    if (rnd() < 0.05) out.push({ reading: x.r, repeat: true });
  }
  return out;
}

async function run(arrivals: Arrival[]) {
  const p = new Pipeline();
  const readings = p
    .fromArray(arrivals.map((a) => JSON.parse(JSON.stringify(a.reading)) as unknown), { timestamp: (r) => (r as Reading).time, outOfOrderness: OUT_OF_ORDER, id: 'readings' })
    .map(toReading, { id: 'validate' });
  const a = buildAnalytics(readings);
  const stats = a.stats.collect();
  const p95 = a.p95.collect();
  const alerts = a.alerts.collect();
  const regions = a.regions.collect();
  const noisiest = a.noisiest.collect();
  const late = a.late.collect();
  const result = await p.run({ parallelism: 2 });
  return { stats: stats.values, p95: p95.values, alerts: alerts.values, regions: regions.values, noisiest: noisiest.values, late: late.values, result };
}

describe('demo analytics', () => {
  it('equal a naive recomputation: statistics with late corrections, percentiles, regions, spikes, late readings', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 }), async (seed) => {
        const arrivals = scenario(seed, 6, 120);
        const got = await run(arrivals);
        // Naive: deduplicated arrivals; the watermark as the job computes it (max time − bound − 1).
        const seen = new Set<string>();
        let maxTime = -Infinity;
        const accepted: Reading[] = [];
        const beyond: Reading[] = [];
        const inOrder: Reading[] = [];
        /** Readings ahead of the watermark when they arrived: what the anomaly model scores. */
        const onTime: Reading[] = [];
        const watermarkAt = new Map<string, number>();
        for (const a of arrivals) {
          if (seen.has(a.reading.id)) continue;
          seen.add(a.reading.id);
          inOrder.push(a.reading);
          const wm = maxTime - OUT_OF_ORDER - 1;
          const end = Math.floor(a.reading.time / 10_000) * 10_000 + 10_000;
          watermarkAt.set(a.reading.id, wm);
          if (a.reading.time > wm) onTime.push(a.reading);
          if (end - 1 + ALLOWED_LATENESS <= wm) beyond.push(a.reading);
          else accepted.push(a.reading);
          maxTime = Math.max(maxTime, a.reading.time);
        }
        // Statistics: the last update of each (device, window) equals the window over accepted readings.
        const final = new Map<string, (typeof got.stats)[number]>();
        for (const s of got.stats) final.set(`${s.device}@${s.start}`, s);
        const want = new Map<string, { count: number; sum: number; min: number; max: number }>();
        for (const r of accepted) {
          const k = `${r.device}@${Math.floor(r.time / 10_000) * 10_000}`;
          const w = want.get(k) ?? { count: 0, sum: 0, min: Infinity, max: -Infinity };
          w.count++;
          w.sum += r.db;
          w.min = Math.min(w.min, r.db);
          w.max = Math.max(w.max, r.db);
          want.set(k, w);
        }
        expect([...final.keys()].sort()).toEqual([...want.keys()].sort());
        for (const [k, w] of want) {
          const s = final.get(k)!;
          expect(s.count).toBe(w.count);
          expect(s.avg).toBeCloseTo(w.sum / w.count, 9);
          expect([s.min, s.max]).toEqual([w.min, w.max]);
        }
        // Late beyond the allowed lateness: exactly those readings, each once.
        expect(got.late.map((r) => r.id).sort()).toEqual(beyond.map((r) => r.id).sort());
        // Duplicates dropped: the dedupe step saw every repeat.
        expect(got.result.metrics.find((m) => m.step === 'dedupe')!.duplicatesDropped).toBe(arrivals.filter((a) => a.repeat).length);
        // Percentiles within the KLL bound: p95 of a sliding minute of one device, checked by rank.
        for (const q of got.p95) {
          const levels = inOrder.filter((r) => r.device === q.device && r.time >= q.end - 60_000 && r.time < q.end).map((r) => r.db).sort((a, b) => a - b);
          if (levels.length === 0) continue;
          const rank = levels.filter((x) => x <= q.p95).length / levels.length;
          expect(Math.abs(rank - 0.95)).toBeLessThanOrEqual(0.05 + 1 / levels.length);
        }
        // Distinct devices per region and window (HyperLogLog is exact at these sizes).
        for (const a of got.regions) {
          const devices = new Set(inOrder.filter((r) => r.region === a.region && r.time >= a.end - 10_000 && r.time < a.end).map((r) => r.device));
          expect(a.devices).toBe(devices.size);
        }
        // Spikes: the same sequential EWMA per device over the on-time readings in event-time order.
        const spikes: string[] = [];
        const ewma = new Map<string, { mean: number; variance: number; n: number }>();
        const byTime = [...onTime].sort((a, b) => a.time - b.time || (a.id < b.id ? -1 : 1));
        for (const r of byTime) {
          const e = ewma.get(r.device) ?? { mean: r.db, variance: 0, n: 0 };
          const sd = Math.sqrt(e.variance);
          const z = sd > 0 ? (r.db - e.mean) / sd : 0;
          if (e.n >= 20 && Math.abs(z) >= 4) spikes.push(`${r.device}@${r.time}`);
          const diff = r.db - e.mean;
          ewma.set(r.device, { mean: e.mean + 0.05 * diff, variance: 0.95 * (e.variance + 0.05 * diff * diff), n: e.n + 1 });
        }
        expect(got.alerts.filter((x) => x.kind === 'spike').map((x) => `${x.device}@${x.time}`).sort()).toEqual(spikes.sort());
        // Every device went silent at the end of input (the final watermark fires every timer).
        expect(new Set(got.alerts.filter((x) => x.kind === 'silent').map((x) => x.device)).size).toBe(6);
        // The noisiest devices: most readings above the threshold per minute (late ones dropped).
        for (const n of got.noisiest) {
          const loud = new Map<string, number>();
          for (const r of inOrder) {
            if (r.db > LOUD_DB && r.time >= n.end - 60_000 && r.time < n.end && n.end - 1 > watermarkAt.get(r.id)!) loud.set(r.device, (loud.get(r.device) ?? 0) + 1);
          }
          for (const d of n.devices) expect(d.loudReadings).toBe(loud.get(d.device));
        }
      }),
      { numRuns: 6 },
    );
  });

  it('refuses readings with a clear reason', () => {
    const ok = { id: 'a', device: 'd1', region: 'north', time: 1, db: 40 };
    expect(toReading(ok)).toEqual(ok);
    expect(() => toReading('x')).toThrow(/JSON object/);
    expect(() => toReading({ ...ok, extra: 1 })).toThrow(/unknown field 'extra'/);
    expect(() => toReading({ ...ok, db: 'loud' })).toThrow(/db must be a number/);
    expect(() => toReading({ ...ok, db: 400 })).toThrow(/db must be a number from 0 to 140/);
    expect(() => toReading({ ...ok, region: 'mars' })).toThrow(/region must be one of/);
    expect(() => toReading({ ...ok, time: Infinity })).toThrow(/time must be/);
    expect(() => toReading({ ...ok, device: '../etc' })).toThrow(/device must be/);
  });
});
