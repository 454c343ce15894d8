import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Stream } from '../api/stream.ts';
import { keyGroupOf } from '../state/key-group.ts';
import { KeyedSnapshotReader, selectKeyGroups } from '../state/snapshot.ts';
import type { JobSnapshot, StepSnapshot } from '../checkpoint/snapshot.ts';
import { OperatorHarness } from '../testing/operator-harness.ts';
import { type DedupeOptions, decodeKeyGroup } from './dedupe.ts';

interface Ev {
  id: string;
  n: number;
}

const W = 1000;

const dedupe =
  (options: Partial<DedupeOptions> = {}) =>
  (s: Stream<Ev>): Stream<Ev> =>
    s.keyBy((e) => e.id).dedupe({ within: W, ...options, id: 'dedupe' });

/** The filter chains held per key group in a dedupe snapshot: bucket index, filters, bytes. */
function chains(snapshot: StepSnapshot | undefined): Map<number, Array<{ bucket: number; filters: number; bytes: number }>> {
  const groups = new Map<number, Array<{ bucket: number; filters: number; bytes: number }>>();
  if (snapshot === undefined) return groups;
  new KeyedSnapshotReader(snapshot.keyed).forEach('dedupe', (flat, kg) => {
    const g = decodeKeyGroup(flat[0], W);
    groups.set(
      kg,
      g.buckets.map((c) => ({ bucket: c.bucket, filters: c.filters.length, bytes: c.byteSize })),
    );
  });
  return groups;
}

/** `snapshot` with step `id`'s state replaced (e.g. cut to some key groups, as a rescaled instance restores). */
function onlyKeyGroups(snapshot: JobSnapshot, id: string, step: StepSnapshot): JobSnapshot {
  const steps = new Map(snapshot.steps);
  steps.set(id, step);
  return { ...snapshot, steps };
}

/**
 * Largest count of false positives compatible with a per-key rate of at most `p` over `n` keys:
 * mean n·p plus four standard deviations (a Poisson/binomial tail below 1e-4). The test data is
 * deterministic, so this only keeps the threshold honest, it never makes a test flaky.
 */
const allowedFalsePositives = (n: number, p: number): number => n * p + 4 * Math.sqrt(n * p);

afterEach(() => {
  vi.restoreAllMocks();
});

describe('dedupe: accuracy beyond capacity', () => {
  for (const p of [0.01, 0.001]) {
    it(`keeps the false-positive rate under ${p} with 10× more distinct keys than its capacity`, () => {
      // 8 key groups × 500 keys per filter at first; each bucket gets 10 × 4000 distinct keys.
      const capacity = 4000;
      const n = 10 * capacity;
      const h = OperatorHarness.of<[Ev], Ev>(dedupe({ capacity, falsePositiveRate: p }), { maxParallelism: 8 });
      const fill = (bucket: number, prefix: string): number => {
        const before = h.values().length;
        for (let i = 0; i < n; i++) h.push({ id: `${prefix}-${i}`, n: i }, bucket * W + (i % W));
        return n - (h.values().length - before);
      };
      // Buckets 0 and 2 first, so that every key of bucket 1 is looked up in three full chains.
      const dropped = [fill(0, 'a'), fill(2, 'b'), fill(1, 'c')];
      // Every key is new: every drop is a false positive.
      for (const d of dropped) expect(d).toBeLessThanOrEqual(allowedFalsePositives(n, p));
      expect(dropped.reduce((a, b) => a + b)).toBeLessThanOrEqual(allowedFalsePositives(3 * n, p));
      const m = h.stepMetrics('dedupe');
      expect(m.duplicatesDropped).toBe(dropped.reduce((a, b) => a + b));
      expect(m.keysBeyondMemoryBound).toBe(0);
      // The chains grew to hold the keys (1 + 2 + 4 + 8 ≥ 10 first-filter capacities).
      for (const buckets of chains(h.snapshot().steps.get('dedupe')).values()) {
        for (const c of buckets) expect(c.filters).toBe(4);
      }
    });
  }
});

describe('dedupe: record time, not arrival order', () => {
  it('drops a repeat within `within` of its first occurrence when input is out of order by more than `within`', () => {
    const h = OperatorHarness.of<[Ev], Ev>(dedupe());
    // Watermarks lag the newest record by 10 s: records may be 10 × within out of order.
    h.push({ id: 'a', n: 1 }, 12_000).watermark(2_000);
    for (let t = 13_000; t <= 20_000; t += 100) h.push({ id: `filler-${t}`, n: 0 }, t);
    h.watermark(10_000);
    h.push({ id: 'a', n: 2 }, 12_900); // 900 ms after the first occurrence: a repeat
    h.push({ id: 'a', n: 3 }, 11_000); // exactly `within` before it: a repeat
    h.push({ id: 'a', n: 4 }, 14_000); // 2 × within after it: forgotten, a new occurrence
    h.push({ id: 'a', n: 5 }, 13_500); // 500 ms before n: 4: a repeat
    expect(h.values().filter((e) => e.id === 'a').map((e) => e.n)).toEqual([1, 4]);
    expect(h.stepMetrics('dedupe')).toMatchObject({ duplicatesDropped: 3, lateRecords: 0 });
  });

  it('satisfies its contract under random disorder, watermarks and restores (oracle)', () => {
    // Record i has time i·step − δ (0 ≤ δ ≤ disorder); the watermark after record i is
    // i·step − disorder, so no record is late while the input is out of order by up to 3·within.
    const disorder = 3 * W;
    const step = 37;
    const record = fc.record({ key: fc.integer({ min: 0, max: 5 }), delta: fc.integer({ min: 0, max: disorder }), restore: fc.boolean() });
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 400 }), fc.integer({ min: 1, max: 50 }), (input, watermarkEvery) => {
        let h = OperatorHarness.of<[Ev], Ev>(dedupe({ capacity: 100, falsePositiveRate: 1e-9 }), { maxParallelism: 4 });
        const emitted = new Map<string, number[]>();
        for (const [i, r] of input.entries()) {
          const id = `k${r.key}`;
          const t = i * step - r.delta;
          const before = h.values().length;
          h.push({ id, n: i }, t);
          const kept = h.values().length > before;
          const times = emitted.get(id) ?? [];
          const nearest = Math.min(...times.map((t0) => Math.abs(t - t0)));
          // Within `within` of an emitted occurrence: dropped. 2·within or more from all: kept.
          if (nearest <= W) expect(kept, `record ${i} (${id} at ${t}) repeats one ${nearest} ms away`).toBe(false);
          if (nearest >= 2 * W) expect(kept, `record ${i} (${id} at ${t}) is ${nearest} ms from the nearest`).toBe(true);
          if (kept) emitted.set(id, [...times, t]);
          if (i % watermarkEvery === 0) h.watermark(i * step - disorder);
          if (r.restore && i % 17 === 0) h = h.restore(h.snapshot());
        }
        expect(h.stepMetrics('dedupe').lateRecords).toBe(0);
      }),
      { numRuns: 150, seed: 6 },
    );
  });

  it('counts records later than allowedLateness and deduplicates them as of the oldest time it remembers', () => {
    const h = OperatorHarness.of<[Ev], Ev>(dedupe({ allowedLateness: 2 * W }));
    h.push({ id: 'a', n: 1 }, 5_100).push({ id: 'b', n: 2 }, 100);
    h.watermark(7_500); // remembers from bucket ⌊(7500 − 2000) / 1000⌋ − 1 = 4 on
    h.push({ id: 'a', n: 3 }, 5_600); // within allowed lateness: its own buckets are kept
    h.push({ id: 'b', n: 4 }, 150); // late: b's bucket is gone, so it is kept (never lost) ...
    h.push({ id: 'b', n: 5 }, 120); // ... and remembered as of 5 500: the next late b is a repeat
    expect(h.values().map((e) => e.n)).toEqual([1, 2, 4]);
    expect(h.stepMetrics('dedupe')).toMatchObject({ lateRecords: 2, duplicatesDropped: 2 });
    // Late records did not bring back buckets the watermark had freed.
    const buckets = [...chains(h.snapshot().steps.get('dedupe')).values()].flat().map((c) => c.bucket);
    expect(Math.min(...buckets)).toBe(5);
  });
});

describe('dedupe: memory', () => {
  it('drops the buckets the watermark has passed, so memory stays bounded over time', () => {
    const h = OperatorHarness.of<[Ev], Ev>(dedupe({ capacity: 800 }), { maxParallelism: 8 });
    let bytes = 0;
    for (let b = 0; b < 40; b++) {
      for (let i = 0; i < 200; i++) h.push({ id: `k${b}-${i}`, n: i }, b * W + i * 5);
      const watermark = b * W + 500;
      h.watermark(watermark);
      const held = chains(h.snapshot().steps.get('dedupe'));
      expect(held.size).toBe(8);
      for (const buckets of held.values()) {
        // Only the bucket before the watermark's, its own and those after are needed.
        for (const c of buckets) expect(c.bucket).toBeGreaterThanOrEqual(Math.floor(watermark / W) - 1);
        expect(buckets.length).toBeLessThanOrEqual(2);
      }
      const total = [...held.values()].flat().reduce((n, c) => n + c.bytes, 0);
      if (b === 5) bytes = total;
      if (b > 5) expect(total).toBe(bytes);
    }
    expect(h.values()).toHaveLength(40 * 200);
  });

  it('keeps more buckets for allowedLateness', () => {
    const h = OperatorHarness.of<[Ev], Ev>(dedupe({ allowedLateness: 5 * W }), { maxParallelism: 1 });
    for (let b = 0; b < 20; b++) h.push({ id: `k${b}`, n: b }, b * W);
    h.watermark(19 * W);
    const buckets = chains(h.snapshot().steps.get('dedupe')).get(0)!.map((c) => c.bucket);
    expect(buckets).toEqual([19, 18, 17, 16, 15, 14, 13]);
  });

  it('stops growing at maxMemoryBytes, counts the keys beyond it and warns once', () => {
    const warn = vi.fn<(line: string) => void>();
    const maxMemoryBytes = 16 * 1024;
    const h = OperatorHarness.of<[Ev], Ev>(dedupe({ capacity: 800, falsePositiveRate: 0.01, maxMemoryBytes }), { maxParallelism: 8, log: warn });
    // 100 keys per key group fit the first filters; 20 × that cannot fit in 16 KiB.
    for (let i = 0; i < 16_000; i++) h.push({ id: `a${i}`, n: i }, i % W);
    const m = h.stepMetrics('dedupe');
    expect(m.keysBeyondMemoryBound).toBeGreaterThan(0);
    expect(m.duplicatesDropped + h.values().length).toBe(16_000);
    const held = [...chains(h.snapshot().steps.get('dedupe')).values()].flat();
    expect(held.reduce((n, c) => n + c.bytes, 0)).toBeLessThanOrEqual(maxMemoryBytes);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toMatch(/warning: step 'dedupe': dedupe filters reached maxMemoryBytes \(16384 bytes\)/);

    // Once the watermark frees those buckets, filters grow again within the bound.
    h.watermark(10 * W);
    const beyond = m.keysBeyondMemoryBound;
    for (let i = 0; i < 1_600; i++) h.push({ id: `b${i}`, n: i }, 10 * W + (i % W));
    expect(h.stepMetrics('dedupe').keysBeyondMemoryBound).toBe(beyond);
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it('frees what it drops: a long run within the bound never reaches it', () => {
    const warn = vi.fn<(line: string) => void>();
    const h = OperatorHarness.of<[Ev], Ev>(dedupe({ capacity: 800, falsePositiveRate: 0.01, maxMemoryBytes: 64 * 1024 }), { maxParallelism: 8, log: warn });
    for (let b = 0; b < 60; b++) {
      for (let i = 0; i < 1_600; i++) h.push({ id: `k${b}-${i}`, n: i }, b * W + (i % W));
      h.watermark(b * W + W - 1);
    }
    expect(h.stepMetrics('dedupe').keysBeyondMemoryBound).toBe(0);
    expect(warn).not.toHaveBeenCalled();
  });
});

describe('dedupe: snapshot and restore', () => {
  it('restores every bucket: repeats of keys first seen one bucket earlier are dropped after restore', () => {
    const h = OperatorHarness.of<[Ev], Ev>(dedupe(), { maxParallelism: 8 });
    h.watermark(0);
    for (let i = 0; i < 100; i++) h.push({ id: `old-${i}`, n: i }, i * 10); // bucket 0
    h.watermark(W);
    for (let i = 0; i < 100; i++) h.push({ id: `new-${i}`, n: i }, W + i * 10); // bucket 1
    for (let i = 0; i < 100; i++) h.push({ id: `ahead-${i}`, n: i }, 5 * W + i * 10); // bucket 5
    h.watermark(W + 500);
    const snapshot = h.snapshot();
    const buckets = new Set([...chains(snapshot.steps.get('dedupe')).values()].flat().map((c) => c.bucket));
    expect([...buckets].sort()).toEqual([0, 1, 5]);

    const r = h.restore(snapshot);
    // Each repeat is `within` or less from its first occurrence.
    for (let i = 0; i < 100; i++) r.push({ id: `old-${i}`, n: i }, W + i * 10);
    for (let i = 0; i < 100; i++) r.push({ id: `new-${i}`, n: i }, W + 500 + i * 5);
    for (let i = 0; i < 100; i++) r.push({ id: `ahead-${i}`, n: i }, 4 * W + i * 10);
    expect(r.values()).toEqual([]);
    expect(r.stepMetrics('dedupe').duplicatesDropped).toBe(300);
    // New keys still pass, and the restored watermark still frees memory.
    r.push({ id: 'fresh', n: 0 }, W + 600);
    expect(r.values()).toEqual([{ id: 'fresh', n: 0 }]);
    r.watermark(7 * W);
    expect(chains(r.snapshot().steps.get('dedupe')).size).toBe(0);
  });

  it('restores any subset of key groups (rescaling)', () => {
    const h = OperatorHarness.of<[Ev], Ev>(dedupe(), { maxParallelism: 8 });
    const ids = Array.from({ length: 400 }, (_, i) => `k${i}`);
    for (const [i, id] of ids.entries()) h.push({ id, n: i }, i * 4); // buckets 0 and 1
    h.watermark(W);
    const full = h.snapshot();
    for (const [start, end] of [
      [0, 3],
      [3, 8],
    ] as const) {
      const step = full.steps.get('dedupe')!;
      const r = h.restore(onlyKeyGroups(full, 'dedupe', { ...step, keyed: selectKeyGroups(step.keyed, start, end) }));
      for (const [i, id] of ids.entries()) r.push({ id, n: i }, i * 4 + 500);
      const owned = (id: string): boolean => keyGroupOf(id, 8) >= start && keyGroupOf(id, 8) < end;
      // Keys of the restored key groups are remembered; the others (another instance's) are not.
      expect(r.values().map((e) => e.id)).toEqual(ids.filter((id) => !owned(id)));
      expect(r.stepMetrics('dedupe').duplicatesDropped).toBe(ids.filter(owned).length);
    }
  });

  it('refuses a snapshot taken with another `within`', () => {
    const h = OperatorHarness.of<[Ev], Ev>(dedupe());
    h.push({ id: 'a', n: 1 }, 1);
    const snapshot = h.snapshot();
    const other = OperatorHarness.of<[Ev], Ev>((s) => s.keyBy((e) => e.id).dedupe({ within: 2 * W, id: 'dedupe' }));
    expect(() => other.restore(snapshot)).toThrow(/within = 1000 ms, this step has within = 2000 ms/);
  });
});

describe('dedupe: options', () => {
  it.each([
    [{ within: 0 }, /within must be/],
    [{ capacity: 0 }, /capacity must be/],
    [{ falsePositiveRate: 1 }, /falsePositiveRate must be in \(0, 1\)/],
    [{ maxMemoryBytes: 0 }, /maxMemoryBytes must be > 0/],
    [{ allowedLateness: -1 }, /allowedLateness must be/],
  ] as const)('rejects %o', (options, message) => {
    expect(() => OperatorHarness.of<[Ev], Ev>(dedupe(options))).toThrow(message);
  });
});
