// Regression tests for bugs found in review (fixed); the comments describe the bug each test guards against.
import { describe, expect, it } from 'vitest';
import { Pipeline } from '../../src/index.ts';

/**
 * joins.ts registers one event-time timer per buffered record (time + retention, or t + upper /
 * t - lower) and every timer runs `evict`, which scans and copies the key's whole list. With
 * distinct timestamps a hot key costs O(records × records-in-retention): 40 000 records of one
 * key with 10 000 ms of retention take ~5 s here, against ~60 ms for 10 000 records that all stay
 * in state (no eviction). Real rates (1 000/s on a key, 1 h retention) make every timer scan
 * millions of entries.
 */
function hotKey(n: number): Array<{ k: string; t: number }> {
  return Array.from({ length: n }, (_, i) => ({ k: 'hot', t: i }));
}

async function timeIt(build: (p: Pipeline) => void): Promise<number> {
  const p = new Pipeline();
  build(p);
  const t0 = performance.now();
  await p.run();
  return performance.now() - t0;
}

describe('join state eviction on a hot key', () => {
  it('left join with retention: eviction is not quadratic in the records of one key', async () => {
    let rows = 0;
    const ms = await timeIt((p) => {
      const left = p.fromArray(hotKey(40_000), { timestamp: (r) => r.t }).keyBy((r) => r.k);
      const right = p.fromArray([{ k: 'cold', t: 0 }], { timestamp: (r) => r.t }).keyBy((r) => r.k);
      left.leftJoin(right, (l) => l.t, { retention: 10_000 }).sink({ write: (b) => void (rows += b.length) });
    });
    expect(rows).toBe(40_000); // every left row comes out once, unmatched
    expect(ms).toBeLessThan(3_000); // quadratic eviction took 6-9 s; linear takes ~0.1 s
  }, 60_000);

  it('interval join: eviction is not quadratic in the records of one key', async () => {
    const ms = await timeIt((p) => {
      const left = p.fromArray(hotKey(40_000), { timestamp: (r) => r.t }).keyBy((r) => r.k);
      const right = p.fromArray([{ k: 'cold', t: 0 }], { timestamp: (r) => r.t }).keyBy((r) => r.k);
      left.intervalJoin(right, { lower: -10_000, upper: 10_000 }, () => 1).sink({ write: () => undefined });
    });
    expect(ms).toBeLessThan(3_000); // quadratic eviction took 6-9 s; linear takes ~0.1 s
  }, 60_000);
});
