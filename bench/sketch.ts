/**
 * Sketch benchmark: updates per second, memory and accuracy of Spate's sketches side by side
 * with the `bloom-filters` package (BloomFilter, CountMinSketch, HyperLogLog, TopK) and the
 * `tdigest` package (TDigest), on the same data and with the same parameters.
 *
 * Data: `n` (default 1M) items drawn from Zipf(1.1) over `n` ranks, fed once as numbers and once
 * as strings (`user-…` keys); quantile sketches get `n` log-normal floats (latency-like). Each
 * measurement builds a fresh structure and adds the whole stream; after a warm-up on part of the
 * stream it repeats 3–5 times and reports the median rate (the best is in the returned rows). A
 * pass stops after 3 s, so very slow implementations are timed on a prefix, and their accuracy
 * and memory columns come from the prefix they can build in 20 s (the row says so). Memory is
 * the retained heap plus array buffers of the filled structure, measured the same way for every
 * implementation (forced GC before and after, averaged over 4 live copies when builds are fast),
 * so the rows compare like with like. Libraries that hash only strings get `String(x)` for
 * numbers, inside the timed loop (that is what their users must do).
 *
 * `npx tsx bench/sketch.ts [n]` prints a markdown table.
 */
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import bloomFilters from 'bloom-filters';
import tdigest from 'tdigest';
import { BloomFilter, CountMinSketch, HyperLogLog, KllSketch, SpaceSaving } from '../src/sketch/index.ts';
import {
  Rng,
  asStrings,
  distanceToInterval,
  exactTopK,
  frequencies,
  rankInterval,
  zipfInts,
} from '../src/sketch/test-data.ts';

type Row = Record<string, string | number>;
type Item = string | number;

setFlagsFromString('--expose-gc');
// Keep GC from flushing unused bytecode between the before/after heap readings.
setFlagsFromString('--no-flush-bytecode');
const gc = runInNewContext('gc') as () => void;

const TIME_BUDGET_MS = 3000;
const QS = [0.01, 0.1, 0.5, 0.9, 0.99];

/**
 * Median and best rate (items per second) of `pass` over `items`, after a warm-up. A pass may stop
 * early (it returns how many items it processed) so a very slow implementation is timed on a
 * prefix instead of for minutes.
 */
function measure(pass: (items: ArrayLike<Item>, deadline: number) => number, items: ArrayLike<Item>): {
  median: number;
  best: number;
  reps: number;
} {
  const warm = Array.prototype.slice.call(items, 0, Math.min(items.length, 20_000)) as Item[];
  pass(warm, performance.now() + 1000);
  pass(warm, performance.now() + 1000);
  const rates: number[] = [];
  const start = performance.now();
  while (rates.length < 5 && (rates.length < 3 || performance.now() - start < TIME_BUDGET_MS)) {
    const t0 = performance.now();
    const done = pass(items, t0 + TIME_BUDGET_MS);
    rates.push(done / ((performance.now() - t0) / 1000));
  }
  rates.sort((a, b) => a - b);
  return { median: rates[Math.floor(rates.length / 2)]!, best: rates.at(-1)!, reps: rates.length };
}

let keepAlive: unknown;

/** Retained bytes (heap + array buffers) of what `build` returns, and that value. */
function retained<T>(build: () => T): { bytes: number; value: T } {
  const usage = (): number => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  gc();
  gc();
  const before = usage();
  const value = build();
  keepAlive = value;
  gc();
  gc();
  const bytes = Math.max(0, usage() - before);
  keepAlive = undefined;
  return { bytes, value };
}

const fmtRate = (r: number): string => (r >= 1e6 ? `${(r / 1e6).toFixed(2)} M/s` : `${(r / 1e3).toFixed(0)} k/s`);
const fmtBytes = (b: number): string =>
  b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`;
const pct = (x: number, digits = 2): string => `${(x * 100).toFixed(digits)}%`;

/** Exact answers for a prefix of an input, computed on demand. */
interface Truth {
  /** Number of items of the input the structure was built from. */
  n: number;
  freq: Map<Item, number>;
  isString: boolean;
}

interface Accuracy {
  text: string;
  error: number;
}

interface Subject<S> {
  sketch: string;
  impl: string;
  create: () => S;
  /**
   * Adds xs[from, to) to `s`. Each subject has its own loop, so every call site stays
   * monomorphic (a shared loop calling `add` through a closure would slow the fastest sketches
   * down more than the slow ones).
   */
  fill: (s: S, xs: ArrayLike<Item>, from: number, to: number) => void;
  /** Accuracy of a filled structure: a description and the error it reports (lower is better). */
  accuracy: (s: S, truth: Truth) => Accuracy;
  /** Whether the library takes only strings (its `fill` converts numbers with String(), timed). */
  stringsOnly?: boolean;
}

/** A string item as is, a number as String() (for libraries that hash only strings). */
const str = (x: Item): string => (typeof x === 'string' ? x : String(x));

/** Erases a subject's structure type so subjects of different libraries share an array. */
function subject<S>(s: Subject<S>): Subject<unknown> {
  return s as unknown as Subject<unknown>;
}

/** Longest time a build for the accuracy and memory columns may take; slower ones use a prefix. */
const BUILD_BUDGET_MS = 20_000;

function runSubject<S>(subject: Subject<S>, inputName: string, items: readonly Item[], rows: Row[]): void {
  const convert = subject.stringsOnly === true && typeof items[0] === 'number';
  const fill = subject.fill;
  let built: S | undefined;
  const pass = (xs: ArrayLike<Item>, deadline: number): number => {
    const s = subject.create();
    built = s;
    let i = 0;
    while (i < xs.length) {
      const lim = Math.min(xs.length, i + 16_384);
      fill(s, xs, i, lim);
      i = lim;
      if (performance.now() > deadline) break;
    }
    return i;
  };
  const rate = measure(pass, items);
  // Accuracy and memory on the whole input, or on the prefix a slow implementation can build in
  // BUILD_BUDGET_MS.
  const limit = Math.min(items.length, Math.floor((rate.median * BUILD_BUDGET_MS) / 1000));
  const prefix = limit === items.length ? items : items.slice(0, limit);
  // Heap accounting is only good to a few KiB, so small structures that build fast are measured
  // as many live copies (up to 32, enough for ~4 MiB in total) and the total divided.
  const build = (copies: number): S[] => {
    const list: S[] = [];
    for (let c = 0; c < copies; c++) {
      pass(prefix, Infinity);
      list.push(built!);
    }
    built = undefined;
    return list;
  };
  const buildSeconds = prefix.length / rate.median;
  built = undefined;
  let { bytes: total, value: all } = retained(() => build(1));
  let copies = 1;
  if (total < 1 << 20 && buildSeconds < 0.25) {
    copies = Math.max(2, Math.min(32, Math.floor(2 / buildSeconds), Math.ceil((4 << 20) / Math.max(total, 16 << 10))));
    all = [];
    ({ bytes: total, value: all } = retained(() => build(copies)));
    all = all.slice(0, 5);
  }
  const bytes = Math.round(total / copies);
  const truth: Truth = {
    n: prefix.length,
    freq: truthFor(items, prefix.length),
    isString: typeof items[0] === 'string',
  };
  // Every build is scored; a library that uses Math.random (tdigest) varies between builds, so
  // the median build is shown with the range.
  const scored = all.map((s) => subject.accuracy(s, truth)).sort((a, b) => a.error - b.error);
  const median = scored[Math.floor((scored.length - 1) / 2)]!;
  let accuracy = median.text;
  if (scored[0]!.text !== scored.at(-1)!.text) {
    accuracy += ` (median of ${scored.length} builds; best ${scored[0]!.text}, worst ${scored.at(-1)!.text})`;
  }
  if (prefix.length < items.length) accuracy += ` (first ${prefix.length} items)`;
  rows.push({
    sketch: subject.sketch,
    implementation: subject.impl,
    input: convert ? `${inputName} (via String())` : inputName,
    'updates/s': fmtRate(rate.median),
    'updates/s (median)': Math.round(rate.median),
    'updates/s (best)': Math.round(rate.best),
    memory: fmtBytes(bytes),
    'memory (bytes)': bytes,
    accuracy,
  });
}

const truthCache = new Map<readonly Item[], Map<number, Map<Item, number>>>();

function truthFor(items: readonly Item[], n: number): Map<Item, number> {
  let byN = truthCache.get(items);
  if (!byN) truthCache.set(items, (byN = new Map()));
  let freq = byN.get(n);
  if (!freq) byN.set(n, (freq = frequencies(n === items.length ? items : items.slice(0, n))));
  return freq;
}

/** Runs every comparison and returns one row per (sketch, implementation, input). */
export async function runSketchBench(opts: { n?: number } = {}): Promise<Row[]> {
  const n = opts.n ?? 1_000_000;
  const ranks = zipfInts(n, n, 1.1, 2024);
  // Flat strings, as they arrive from JSON.parse (template literals would build ropes).
  const strings = JSON.parse(JSON.stringify(asStrings(ranks))) as string[];
  const inputs: Array<[string, readonly Item[]]> = [
    ['numbers', ranks],
    ['strings', strings],
  ];
  const distinct = frequencies<Item>(ranks).size;
  const rows: Row[] = [];

  // --- Bloom filter: same m and k for both, sized for the distinct items at 1% ---
  const bloomShape = BloomFilter.forCapacity(distinct, 0.01);
  const nonMembersNum = Array.from({ length: 100_000 }, (_, i) => n + 1 + i);
  const nonMembersStr = asStrings(nonMembersNum);
  const fpr = (has: (x: Item) => boolean, t: Truth): Accuracy => {
    let fp = 0;
    const probes = t.isString ? nonMembersStr : nonMembersNum;
    for (const x of probes) if (has(x)) fp++;
    const expected = bloomShape.expectedFalsePositiveRate(t.freq.size);
    return { text: `FPR ${pct(fp / probes.length)} (theory ${pct(expected)})`, error: fp / probes.length };
  };
  const bloomName = `Bloom (m=${bloomShape.bits}, k=${bloomShape.hashes})`;
  const bloomSubjects: Array<Subject<unknown>> = [
    subject<BloomFilter>({
      sketch: bloomName,
      impl: 'spate',
      create: () => new BloomFilter(bloomShape.bits, bloomShape.hashes),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.add(xs[i]!);
      },
      accuracy: (s, t) => fpr((x) => s.has(x), t),
    }),
    subject<InstanceType<typeof bloomFilters.BloomFilter>>({
      sketch: bloomName,
      impl: 'bloom-filters',
      stringsOnly: true,
      create: () => new bloomFilters.BloomFilter(bloomShape.bits, bloomShape.hashes),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.add(str(xs[i]!));
      },
      accuracy: (s, t) => fpr((x) => s.has(String(x)), t),
    }),
  ];

  // --- Count-min: ε = 0.0005 (width 5437), δ = 1% (depth 5) ---
  const cmsShape = CountMinSketch.withError(0.0005, 0.01);
  const cmsAccuracy = (estimate: (x: Item) => number, t: Truth): Accuracy => {
    let over = 0;
    let within = 0;
    const bound = cmsShape.epsilon * t.n;
    for (const [item, f] of t.freq) {
      const e = estimate(item);
      over += e - f;
      if (e - f <= bound) within++;
    }
    return {
      text: `mean overestimate ${(over / t.freq.size).toFixed(2)}; ${pct(within / t.freq.size, 1)} within εN`,
      error: over / t.freq.size,
    };
  };
  const cmsName = `Count-min (w=${cmsShape.width}, d=${cmsShape.depth})`;
  const cmsSubjects: Array<Subject<unknown>> = [
    subject<CountMinSketch>({
      sketch: cmsName,
      impl: 'spate (conservative)',
      create: () => new CountMinSketch(cmsShape.width, cmsShape.depth),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.add(xs[i]!);
      },
      accuracy: (s, t) => cmsAccuracy((x) => s.estimate(x), t),
    }),
    subject<CountMinSketch>({
      sketch: cmsName,
      impl: 'spate (plain)',
      create: () => new CountMinSketch(cmsShape.width, cmsShape.depth, { conservative: false }),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.add(xs[i]!);
      },
      accuracy: (s, t) => cmsAccuracy((x) => s.estimate(x), t),
    }),
    subject<InstanceType<typeof bloomFilters.CountMinSketch>>({
      sketch: cmsName,
      impl: 'bloom-filters',
      stringsOnly: true,
      create: () => new bloomFilters.CountMinSketch(cmsShape.width, cmsShape.depth),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.update(str(xs[i]!));
      },
      accuracy: (s, t) => cmsAccuracy((x) => s.count(String(x)), t),
    }),
  ];

  // --- HyperLogLog: 2^14 registers for both ---
  const hllAccuracy = (count: number, t: Truth): Accuracy => ({
    text: `relative error ${pct(Math.abs(count / t.freq.size - 1))} (σ = 0.81%)`,
    error: Math.abs(count / t.freq.size - 1),
  });
  const hllSubjects: Array<Subject<unknown>> = [
    subject<HyperLogLog>({
      sketch: 'HyperLogLog (m=16384)',
      impl: 'spate',
      create: () => new HyperLogLog(14),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.add(xs[i]!);
      },
      accuracy: (s, t) => hllAccuracy(s.count(), t),
    }),
    subject<InstanceType<typeof bloomFilters.HyperLogLog>>({
      sketch: 'HyperLogLog (m=16384)',
      impl: 'bloom-filters',
      stringsOnly: true,
      create: () => new bloomFilters.HyperLogLog(16384),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.update(str(xs[i]!));
      },
      accuracy: (s, t) => hllAccuracy(s.count(), t),
    }),
  ];

  // --- Top-k (k = 10): SpaceSaving with 100 counters vs TopK (CMS 2719×5 + heap of 10) ---
  const topAccuracy = (found: Item[], t: Truth): Accuracy => {
    const truth = exactTopK(t.freq, 10);
    const f = new Set(found.map(String));
    const recall = truth.filter((x) => f.has(String(x))).length / 10;
    return { text: `recall@10 ${pct(recall, 0)}`, error: 1 - recall };
  };
  const topSubjects: Array<Subject<unknown>> = [
    subject<SpaceSaving>({
      sketch: 'Top-10',
      impl: 'spate SpaceSaving(100)',
      create: () => new SpaceSaving(100),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.add(xs[i]!);
      },
      accuracy: (s, t) => topAccuracy(s.top(10).map((e) => e.item), t),
    }),
    subject<InstanceType<typeof bloomFilters.TopK>>({
      sketch: 'Top-10',
      impl: 'bloom-filters TopK(10, ε=0.001, δ=0.01)',
      stringsOnly: true,
      create: () => new bloomFilters.TopK(10, 0.001, 0.01),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.add(str(xs[i]!));
      },
      accuracy: (s, t) => topAccuracy(s.values().map((e) => e.value), t),
    }),
  ];

  for (const group of [bloomSubjects, cmsSubjects, hllSubjects, topSubjects]) {
    for (const sub of group) {
      for (const [name, items] of inputs) runSubject(sub, name, items, rows);
    }
  }

  // --- Quantiles: KLL vs t-digest on log-normal floats ---
  const rng = new Rng(7);
  const floats = Array.from({ length: n }, () => Math.exp(rng.normal() * 0.8 + 3));
  const sortedByN = new Map<number, Float64Array>();
  const rankErr = (quantile: (q: number) => number, t: Truth): Accuracy => {
    let sorted = sortedByN.get(t.n);
    if (!sorted) sortedByN.set(t.n, (sorted = Float64Array.from(floats.slice(0, t.n)).sort()));
    let worst = 0;
    for (const q of QS) worst = Math.max(worst, distanceToInterval(q, rankInterval(sorted, quantile(q))));
    return { text: `max rank error ${pct(worst, 3)}`, error: worst };
  };
  const quantileSubjects: Array<Subject<unknown>> = [
    ...[200, 1000, 8000].map((k) =>
      subject<KllSketch>({
        sketch: 'Quantiles (q = .01 .1 .5 .9 .99)',
        impl: `spate KLL (k=${k})`,
        create: () => new KllSketch(k),
        fill: (s, xs, i, end) => {
          for (; i < end; i++) s.add(xs[i] as number);
        },
        accuracy: (s, t) => {
          const a = rankErr((q) => s.quantile(q), t);
          return { ...a, text: `${a.text} (bound ${pct(s.rankError(), 2)})` };
        },
      }),
    ),
    subject<InstanceType<typeof tdigest.TDigest>>({
      sketch: 'Quantiles (q = .01 .1 .5 .9 .99)',
      impl: 'tdigest (δ=0.01, K=25)',
      create: () => new tdigest.TDigest(),
      fill: (s, xs, i, end) => {
        for (; i < end; i++) s.push(xs[i] as number);
      },
      accuracy: (s, t) => rankErr((q) => s.percentile(q) as number, t),
    }),
  ];
  for (const q of quantileSubjects) runSubject(q, 'log-normal floats', floats, rows);
  return rows;
}

/** Renders rows as a markdown table (the columns of the first row). */
export function toMarkdown(rows: readonly Row[], columns = Object.keys(rows[0] ?? {})): string {
  const lines = [`| ${columns.join(' | ')} |`, `| ${columns.map(() => '---').join(' | ')} |`];
  for (const r of rows) lines.push(`| ${columns.map((c) => String(r[c] ?? '')).join(' | ')} |`);
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const n = process.argv[2] ? Number(process.argv[2]) : undefined;
  const rows = await runSketchBench(n === undefined ? {} : { n });
  console.log(toMarkdown(rows, ['sketch', 'implementation', 'input', 'updates/s', 'memory', 'accuracy']));
}
