import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { latencyProbe, memoryProbe, restoreProbe } from '../bench/probes.ts';
import type { NexmarkRunResult } from '../nexmark/run.ts';
import { QUERY_NAMES } from '../nexmark/queries.ts';
import { numericArg, UsageError } from './args.ts';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'spate.js');

/** Targets from DESIGN.md, events/s on one core with the generator included. */
const TARGETS: Record<string, number> = { q0: 2e6, q1: 2e6, q2: 2e6, q5: 2e6, q7: 2e6, q8: 2e6, q3: 1e6, q4: 1e6, q11: 1e6 };

const SUITES = ['nexmark', 'checkpoint', 'parallel', 'restore', 'latency', 'memory', 'codecs'] as const;
type Suite = (typeof SUITES)[number];

/** One measured NEXMark run in a fresh process, so that runs do not share JIT state or heap. */
async function nexmark(query: string, events: number, extra: string[] = []): Promise<NexmarkRunResult> {
  const { stdout } = await run(process.execPath, [BIN, 'nexmark', '--query', query, '--events', String(events), '--json', ...extra], {
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as NexmarkRunResult;
}

/** A probe of `src/bench/probes.ts` in a fresh process; its result as JSON. */
async function probe<T>(args: string[]): Promise<T> {
  const { stdout } = await run(process.execPath, [BIN, 'bench', '--probe', ...args], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}

const rate = (perSecond: number): string => Math.round(perSecond).toLocaleString('en-US');
const ms = (x: number): string => (x < 10 ? x.toFixed(2) : x.toFixed(0));
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * Runs variants of a measurement interleaved, `runs` rounds, so that a burst of load on a shared
 * machine hits every variant alike; returns each variant's results, and the ratio of variant i to
 * variant 0 within every round (their median is what the tables report).
 */
async function interleaved<T>(runs: number, variants: Array<() => Promise<T>>, value: (r: T) => number): Promise<{ results: T[][]; ratios: number[][] }> {
  const results: T[][] = variants.map(() => []);
  const ratios: number[][] = variants.map(() => []);
  for (let r = 0; r < runs; r++) {
    const round: T[] = [];
    for (let v = 0; v < variants.length; v++) {
      const result = await variants[v]!();
      results[v]!.push(result);
      round.push(result);
    }
    for (let v = 0; v < variants.length; v++) ratios[v]!.push(value(round[v]!) / value(round[0]!));
  }
  return { results, ratios };
}

async function nexmarkSuite(events: number, runs: number, queries: string[]): Promise<void> {
  console.log(`### NEXMark on one core\n\n${events.toLocaleString('en-US')} events per run, best of ${runs}, generator included.\n`);
  console.log('| query | events/s | target | vs target | result rows |');
  console.log('|---|---:|---:|---:|---:|');
  for (const query of queries) {
    let best: NexmarkRunResult | null = null;
    for (let r = 0; r < runs; r++) {
      const result = await nexmark(query, events);
      if (best === null || result.eventsPerSecond > best.eventsPerSecond) best = result;
    }
    const target = TARGETS[query];
    const name = query === 'none' ? 'generator alone' : query;
    const vs = target === undefined ? '' : `${((best!.eventsPerSecond / target) * 100).toFixed(0)}%`;
    console.log(`| ${name} | ${rate(best!.eventsPerSecond)} | ${target === undefined ? '' : rate(target)} | ${vs} | ${best!.results.toLocaleString('en-US')} |`);
  }
}

async function checkpointSuite(events: number, runs: number): Promise<void> {
  console.log(`\n### Checkpoints: every second versus none\n\n${events.toLocaleString('en-US')} events per run, one core, durable checkpoints to a local directory; runs interleaved (${runs} rounds), the ratio is the median of the per-round ratios.\n`);
  console.log('| query | no checkpoints, events/s | a checkpoint a second, events/s | ratio | checkpoints | longest pause | mean size | mean duration |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const query of ['q0', 'q5', 'q7', 'q11']) {
    const dir = mkdtempSync(join(tmpdir(), 'spate-bench-'));
    try {
      let n = 0;
      const { results, ratios } = await interleaved(
        runs,
        [
          () => nexmark(query, events, ['--checkpoint-interval', '0']),
          () => nexmark(query, events, ['--checkpoint-dir', join(dir, String(n++)), '--checkpoint-interval', '1000']),
        ],
        (r) => r.eventsPerSecond,
      );
      const on = results[1]!;
      const c = on.map((r) => r.checkpoints);
      console.log(
        `| ${query} | ${rate(median(results[0]!.map((r) => r.eventsPerSecond)))} | ${rate(median(on.map((r) => r.eventsPerSecond)))} | ${median(ratios[1]!).toFixed(3)} | ${median(c.map((x) => x.completed))} | ${ms(Math.max(...c.map((x) => x.maxPauseMs)))} ms | ${(median(c.map((x) => x.meanBytes)) / 1024).toFixed(0)} KiB | ${ms(median(c.map((x) => x.meanMs)))} ms |`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

async function parallelSuite(events: number, runs: number): Promise<void> {
  console.log(`\n### Parallelism 2 versus 1\n\n${events.toLocaleString('en-US')} events per run (long enough for the worker threads' JIT warm-up not to count) on ${cpus().length} cores; P = 2 runs two worker threads; runs interleaved (${runs} rounds), the ratio is the median of the per-round ratios.\n`);
  console.log('| query | P = 1, events/s | P = 2, events/s | ratio |');
  console.log('|---|---:|---:|---:|');
  for (const query of ['q0', 'q5', 'q7', 'q8', 'q11']) {
    const { results, ratios } = await interleaved(runs, [() => nexmark(query, events), () => nexmark(query, events, ['--parallelism', '2'])], (r) => r.eventsPerSecond);
    console.log(`| ${query} | ${rate(median(results[0]!.map((r) => r.eventsPerSecond)))} | ${rate(median(results[1]!.map((r) => r.eventsPerSecond)))} | ${median(ratios[1]!).toFixed(2)} |`);
  }
  // What the machine itself gives: two independent one-core processes side by side, against one
  // alone — the ceiling of any speed-up from a second thread here (shared caches, memory, clocks).
  const { results, ratios } = await interleaved(
    runs,
    [
      () => nexmark('q7', events).then((r) => r.eventsPerSecond),
      () => Promise.all([nexmark('q7', events), nexmark('q7', events)]).then(([a, b]) => a.eventsPerSecond + b.eventsPerSecond),
    ],
    (r) => r,
  );
  console.log(`| q7 ×2 processes (the machine's ceiling) | ${rate(median(results[0]!))} | ${rate(median(results[1]!))} (sum) | ${median(ratios[1]!).toFixed(2)} |`);
}

async function restoreSuite(): Promise<void> {
  const r = await probe<{ keys: number; checkpointBytes: number; restoreMs: number }>(['restore', '--keys', '1000000']);
  console.log(`\n### Restoring keyed state\n`);
  console.log('| keys | checkpoint size | time to restore (open of the restored job) |');
  console.log('|---:|---:|---:|');
  console.log(`| ${r.keys.toLocaleString('en-US')} | ${(r.checkpointBytes / 2 ** 20).toFixed(1)} MiB | ${ms(r.restoreMs)} ms |`);
}

async function latencySuite(seconds: number): Promise<void> {
  console.log(`\n### Source-to-sink latency\n\nRecords stamped with the wall clock at the source, measured at the sink (for q7: from the end of the window to its result row, one sample per 10 s window); ${seconds} s per row (q7: ${seconds * 6} s), the first second not counted.\n`);
  console.log('| pipeline | rate | P | samples | p50 | p90 | p99 | max |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const [kind, p, s] of [
    ['stateless', 1, seconds],
    ['stateless', 2, seconds],
    ['q7', 2, seconds * 6],
  ] as const) {
    const r = await probe<{ count: number; p50: number; p90: number; p99: number; max: number }>(['latency', '--kind', kind, '--rate', '100000', '--parallelism', String(p), '--seconds', String(s)]);
    console.log(`| ${kind === 'q7' ? 'NEXMark q7 (10 s windows)' : 'stateless (map, filter)'} | 100,000/s | ${p} | ${r.count.toLocaleString('en-US')} | ${ms(r.p50)} ms | ${ms(r.p90)} ms | ${ms(r.p99)} ms | ${ms(r.max)} ms |`);
  }
}

async function memorySuite(seconds: number): Promise<void> {
  console.log(`\n### Memory with a sink ten times slower than the source\n\nThe source offers 200,000 records/s, the sink takes 50 µs per record (20,000/s); resident memory and heap of the process over time. Credit-based backpressure keeps them flat.\n`);
  const curves = [];
  for (const p of [1, 2]) curves.push(await probe<Array<{ s: number; rssMb: number; heapMb: number; records: number }>>(['memory', '--parallelism', String(p), '--seconds', String(seconds)]));
  console.log('| s | P = 1 RSS | P = 1 heap | P = 1 records sunk | P = 2 RSS | P = 2 heap | P = 2 records sunk |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|');
  for (let i = 0; i < curves[0]!.length; i++) {
    const a = curves[0]![i]!;
    const b = curves[1]![i];
    const cols = (x: typeof a | undefined): string => (x === undefined ? '| | |' : `${x.rssMb.toFixed(0)} MB | ${x.heapMb.toFixed(0)} MB | ${x.records.toLocaleString('en-US')}`);
    console.log(`| ${a.s} | ${cols(a)} | ${cols(b)} |`);
  }
}

async function codecsSuite(): Promise<void> {
  const script = join(ROOT, 'bench', 'codecs.ts');
  const tsx = join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');
  if (!existsSync(script) || !existsSync(tsx)) {
    console.log('\n### Exchange codecs\n\n(bench/codecs.ts runs from a checkout of the repository)');
    return;
  }
  console.log('\n### Exchange codecs\n');
  const { stdout } = await run(process.execPath, [tsx, script, '--rounds', '9', '--seconds', '2', '--reps', '3'], { maxBuffer: 1 << 22 });
  console.log(stdout.trim());
}

/** `spate bench --probe …`: one probe in this process, its result printed as JSON. */
async function runProbe(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { kind: { type: 'string' }, rate: { type: 'string' }, parallelism: { type: 'string' }, seconds: { type: 'string' }, keys: { type: 'string' } },
  });
  const parallelism = numericArg('parallelism', values.parallelism, 1, { integer: true, min: 1 });
  const seconds = numericArg('seconds', values.seconds, 10, { min: 1 });
  let result: unknown;
  switch (positionals[0]) {
    case 'latency':
      result = await latencyProbe(values.kind === 'q7' ? 'q7' : 'stateless', numericArg('rate', values.rate, 100_000, { min: 1 }), parallelism, seconds);
      break;
    case 'memory':
      result = await memoryProbe(200_000, 50, parallelism, seconds, Math.max(1000, (seconds * 1000) / 15));
      break;
    case 'restore':
      result = await restoreProbe(numericArg('keys', values.keys, 1_000_000, { integer: true, min: 1 }));
      break;
    default:
      throw new UsageError(`--probe: latency, memory or restore, got '${positionals[0] ?? ''}'`);
  }
  console.log(JSON.stringify(result));
  return 0;
}

/**
 * `spate bench`: the benchmark suite, as markdown tables — NEXMark throughput on one core,
 * checkpoint cost, parallel speed-up, restore time, latency, memory under backpressure and the
 * exchange codecs. Every figure that compares two settings is a ratio measured in the same run.
 */
export async function runBench(args: string[]): Promise<number> {
  if (args[0] === '--probe') return runProbe(args.slice(1));
  const { values } = parseArgs({
    args,
    options: {
      events: { type: 'string' },
      runs: { type: 'string' },
      query: { type: 'string' },
      suite: { type: 'string' },
      seconds: { type: 'string' },
    },
  });
  const events = numericArg('events', values.events, 5_000_000, { integer: true, min: 1 });
  const runs = numericArg('runs', values.runs, 3, { integer: true, min: 1 });
  const seconds = numericArg('seconds', values.seconds, 10, { min: 2 });
  const known = ['none', ...QUERY_NAMES];
  const queries = values.query === undefined ? known : values.query.split(',');
  const unknown = queries.filter((q) => !known.includes(q));
  if (unknown.length > 0) throw new UsageError(`--query: unknown ${unknown.map((q) => `'${q}'`).join(', ')}; a comma-separated list of ${known.join(', ')}`);
  const suites = (values.suite?.split(',') ?? [...SUITES]) as Suite[];
  const bad = suites.filter((s) => !SUITES.includes(s));
  if (bad.length > 0) throw new UsageError(`--suite: unknown ${bad.map((s) => `'${s}'`).join(', ')}; a comma-separated list of ${SUITES.join(', ')}`);
  console.log(`## Spate benchmarks\n\n${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}\n`);
  for (const suite of suites) {
    switch (suite) {
      case 'nexmark':
        await nexmarkSuite(events, runs, queries);
        break;
      case 'checkpoint':
        // Long enough runs for several checkpoints each.
        await checkpointSuite(events * 4, runs);
        break;
      case 'parallel':
        await parallelSuite(events * 6, runs);
        break;
      case 'restore':
        await restoreSuite();
        break;
      case 'latency':
        await latencySuite(seconds);
        break;
      case 'memory':
        await memorySuite(seconds * 3);
        break;
      case 'codecs':
        await codecsSuite();
        break;
    }
  }
  return 0;
}
