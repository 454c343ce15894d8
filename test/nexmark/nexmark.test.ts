import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { NexmarkGenerator } from '../../src/nexmark/generator.ts';
import type { NexmarkEvent } from '../../src/nexmark/model.ts';
import { QUERY_NAMES } from '../../src/nexmark/queries.ts';
import { runNexmark } from '../../src/nexmark/run.ts';
import { canonical, oracle } from './oracle.ts';

const dir = mkdtempSync(join(tmpdir(), 'spate-nexmark-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function readJsonl(path: string): object[] {
  const text = readFileSync(path, 'utf8');
  return text.length === 0 ? [] : text.trimEnd().split('\n').map((l) => JSON.parse(l) as object);
}

describe('NEXMark generator', () => {
  const gen = new NexmarkGenerator({ seed: 1, rate: 10_000 });
  const events = Array.from({ length: 5000 }, (_, n) => gen.event(n));

  it('follows the 1:3:46 proportion per 50 events', () => {
    for (let n = 0; n < 5000; n++) {
      const type = n % 50 === 0 ? 'person' : n % 50 < 4 ? 'auction' : 'bid';
      expect(events[n]!.type).toBe(type);
    }
  });

  it('numbers people and auctions from 1000 and uses categories 10-14', () => {
    const people = events.filter((e) => e.type === 'person');
    const auctions = events.filter((e) => e.type === 'auction');
    expect(people.map((p) => p.id)).toEqual(people.map((_, i) => 1000 + i));
    expect(auctions.map((a) => a.id)).toEqual(auctions.map((_, i) => 1000 + i));
    for (const a of auctions) {
      expect(a.category).toBeGreaterThanOrEqual(10);
      expect(a.category).toBeLessThanOrEqual(14);
      expect(a.expires).toBeGreaterThan(a.dateTime);
    }
  });

  it('spaces event times by 1/rate and is a pure function of (seed, n)', () => {
    expect(events[0]!.dateTime).toBe(1_700_000_000_000);
    expect(events[4999]!.dateTime).toBe(1_700_000_000_000 + Math.floor(4999 / 10));
    const again = new NexmarkGenerator({ seed: 1, rate: 10_000 });
    expect(again.event(4321)).toEqual(events[4321]);
    expect(new NexmarkGenerator({ seed: 2 }).event(4321)).not.toEqual(events[4321]);
  });

  it('makes most bids on hot auctions, prices as round(10^(6u)*100)', () => {
    const bids = events.filter((e): e is Extract<NexmarkEvent, { type: 'bid' }> => e.type === 'bid');
    // Hot auction ratio 2: half the bids go to the current hot auction (id - 1000 a multiple of
    // 100), plus the few random ones that land there.
    const hot = bids.filter((b) => (b.auction - 1000) % 100 === 0).length / bids.length;
    expect(hot).toBeGreaterThan(0.45);
    expect(hot).toBeLessThan(0.6);
    // Hot bidders ratio 4: three quarters of bids from a hot bidder (id - 1000 ≡ 1 mod 100).
    const hotBidders = bids.filter((b) => (b.bidder - 1000) % 100 === 1).length / bids.length;
    expect(hotBidders).toBeGreaterThan(0.7);
    for (const b of bids) {
      expect(Number.isInteger(b.price)).toBe(true);
      expect(b.price).toBeGreaterThanOrEqual(100);
      expect(b.price).toBeLessThanOrEqual(100_000_000);
    }
  });
});

// Each query, straight and with disorder, against the naive batch recomputation over the exact
// events the run consumed (written with --events-out semantics, in arrival order).
const CASES = [
  { disorder: 0, seed: 7, rate: 1000, events: 60_000, parallelism: 1 },
  { disorder: 4000, seed: 11, rate: 1000, events: 60_000, parallelism: 1 },
  // Three instances of every step (in one thread): split sources, keyed exchanges, alignment.
  { disorder: 4000, seed: 13, rate: 1000, events: 60_000, parallelism: 3 },
];

describe.each(CASES)('NEXMark queries vs batch oracle (disorder $disorder ms, parallelism $parallelism)', ({ disorder, seed, rate, events, parallelism }) => {
  const eventsPath = join(dir, `events-${disorder}-${parallelism}.jsonl`);
  let input: NexmarkEvent[] | null = null;

  it.each(QUERY_NAMES.map((q) => [q]))('%s', async (query) => {
    const out = join(dir, `${query}-${disorder}-${parallelism}.jsonl`);
    const result = await runNexmark({ query, events, seed, rate, disorder, out, parallelism, eventsOut: input === null ? eventsPath : undefined });
    input ??= readJsonl(eventsPath) as NexmarkEvent[];
    expect(input).toHaveLength(events);
    expect(result.lateRecords).toBe(0);
    expect(result.deadLetters).toBe(0);
    const expected = oracle(query, input);
    expect(expected.length).toBeGreaterThan(0);
    expect(canonical(readJsonl(out))).toEqual(canonical(expected));
  });

  // (With several splits, events of different splits interleave by batch; each split keeps the bound.)
  if (disorder > 0 && parallelism === 1) {
    it('delivers events out of order, within the bound', () => {
      const times = input!.map((e) => e.dateTime);
      let inversions = 0;
      let max = -Infinity;
      for (const t of times) {
        if (t < max) inversions++;
        expect(max - t).toBeLessThanOrEqual(disorder);
        max = Math.max(max, t);
      }
      expect(inversions).toBeGreaterThan(events / 10);
    });
  }
});

describe('spate nexmark CLI', () => {
  const bin = join(import.meta.dirname, '..', '..', 'bin', 'spate.js');
  const run = promisify(execFile);

  it('writes results and events and prints the throughput', async () => {
    const out = join(dir, 'cli-q5.jsonl');
    const eventsOut = join(dir, 'cli-events.jsonl');
    const { stdout } = await run(process.execPath, [
      bin, 'nexmark', '--query', 'q5', '--events', '20000', '--rate', '500', '--seed', '3',
      '--base-time', '1600000000000', '--disorder', '2000', '--out', out, '--events-out', eventsOut,
    ]);
    expect(stdout).toMatch(/^q5 +20,000 events in [\d.]+ s = [\d.]+[kM] events\/s/);
    const events = readJsonl(eventsOut) as NexmarkEvent[];
    expect(events).toHaveLength(20_000);
    expect(Math.min(...events.map((e) => e.dateTime))).toBe(1_600_000_000_000);
    for (const e of events) expect(['person', 'auction', 'bid']).toContain(e.type);
    expect(canonical(readJsonl(out))).toEqual(canonical(oracle('q5', events)));
  });

  it('runs every query with --query all, one output file per query', async () => {
    const out = join(dir, 'all.jsonl');
    const eventsOut = join(dir, 'all-events.jsonl');
    const { stdout } = await run(process.execPath, [bin, 'nexmark', '--query', 'all', '--events', '5000', '--rate', '500', '--out', out, '--events-out', eventsOut]);
    const lines = stdout.trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual([...QUERY_NAMES]);
    // Each file holds its own query's results (not an empty or another query's file).
    const events = readJsonl(eventsOut) as NexmarkEvent[];
    expect(events).toHaveLength(5000);
    let rows = 0;
    for (const q of QUERY_NAMES) {
      const got = readJsonl(join(dir, `all.${q}.jsonl`));
      expect(canonical(got), q).toEqual(canonical(oracle(q, events)));
      rows += got.length;
    }
    expect(rows).toBeGreaterThan(5000);
  });

  it('rejects an unknown query and a bad parallelism with a usage error', async () => {
    await expect(run(process.execPath, [bin, 'nexmark', '--query', 'q6'])).rejects.toMatchObject({ code: 2 });
    await expect(run(process.execPath, [bin, 'nexmark', '--query', 'q0', '--parallelism', '0'])).rejects.toMatchObject({ code: 2 });
  });

  it('runs a query in worker threads with --parallelism', async () => {
    const out = join(dir, 'cli-q7-p2.jsonl');
    const eventsOut = join(dir, 'cli-q7-p2-events.jsonl');
    const { stdout } = await run(process.execPath, [bin, 'nexmark', '--query', 'q7', '--events', '30000', '--rate', '1000', '--parallelism', '2', '--out', out, '--events-out', eventsOut]);
    expect(stdout).toMatch(/^q7 +30,000 events/);
    const events = readJsonl(eventsOut) as NexmarkEvent[];
    expect(events).toHaveLength(30_000);
    expect(canonical(readJsonl(out))).toEqual(canonical(oracle('q7', events)));
  });
});
