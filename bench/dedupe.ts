/**
 * Dedupe benchmark: records per second through `keyBy(k).dedupe({ within })`.
 *
 * Two measurements on the same data — `n` records (default 1M) over `keys` string keys (default
 * 100k, uniform), event time 1 ms apart, `within` 60 s, default capacity and false-positive rate:
 * - `operator`: the dedupe operator alone, fed batches of 1024 with a watermark after each batch
 *   (1 s behind the batch's last record), output counted and discarded;
 * - `pipeline`: the same records through `fromArray → keyBy → dedupe → collect` with the
 *   runtime's watermarks.
 * Each is repeated (after a warm-up) and the median rate is printed, with the number of records
 * kept and, for the operator, the bytes of filters it holds at the end.
 *
 * `npx tsx bench/dedupe.ts [n] [keys]`
 */
import { Pipeline } from '../src/api/pipeline.ts';
import { DedupeOperator } from '../src/operators/dedupe.ts';
import { Batch } from '../src/runtime/batch.ts';
import { newMetrics } from '../src/runtime/operator-node.ts';
import type { OperatorContext } from '../src/runtime/operator.ts';
import { Rng } from '../src/sketch/test-data.ts';

interface Rec {
  readonly id: string;
  readonly t: number;
}

const n = Number(process.argv[2] ?? 1_000_000);
const keyCount = Number(process.argv[3] ?? 100_000);
const within = 60_000;
const runs = 7;

const rng = new Rng(7);
const names = Array.from({ length: keyCount }, (_, i) => `user-${i}`);
const records: Rec[] = Array.from({ length: n }, (_, t) => ({ id: names[Math.floor(rng.next() * keyCount)]!, t }));

let filterBytes = 0;

function runOperator(): number {
  let kept = 0;
  const ctx = {
    stepId: 'dedupe',
    output: { emit: () => void kept++ },
    clock: { now: () => 0 },
    maxParallelism: 128,
    metrics: newMetrics(),
    sideOutput: () => ({ emit: () => {} }),
    deadLetter: (_r: unknown, e: unknown) => {
      throw e;
    },
    requestProcessingTime: () => {},
  } as unknown as OperatorContext<unknown>;
  const op = new DedupeOperator((r) => (r as Rec).id, { within });
  op.open(ctx);
  const batch = new Batch<unknown>(1024);
  for (let i = 0; i < n; ) {
    batch.length = 0;
    for (; i < n && batch.length < 1024; i++) batch.push(records[i], records[i]!.t);
    op.processBatch(batch);
    op.onWatermark(records[i - 1]!.t - 1000);
  }
  filterBytes = op.stats().bytes;
  return kept;
}

async function runPipeline(): Promise<number> {
  const p = new Pipeline();
  const out = p
    .fromArray(records, { timestamp: (r) => r.t })
    .keyBy((r) => r.id)
    .dedupe({ within })
    .collect();
  await p.run();
  return out.values.length;
}

async function measure(name: string, fn: () => number | Promise<number>): Promise<void> {
  await fn();
  const rates: number[] = [];
  let kept = 0;
  for (let r = 0; r < runs; r++) {
    const start = process.hrtime.bigint();
    kept = await fn();
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    rates.push(n / seconds);
  }
  rates.sort((a, b) => a - b);
  const median = rates[Math.floor(runs / 2)]!;
  console.log(`| ${name} | ${(median / 1e6).toFixed(2)}M | ${(rates[runs - 1]! / 1e6).toFixed(2)}M | ${kept} |`);
}

console.log(`dedupe: ${n.toLocaleString('en-US')} records over ${keyCount.toLocaleString('en-US')} keys, within ${within} ms, Node ${process.version}\n`);
console.log('| path | records/s (median) | best | kept |');
console.log('|---|---:|---:|---:|');
await measure('operator', runOperator);
await measure('pipeline', runPipeline);
console.log(`\nfilters held by the operator at the end: ${(filterBytes / 2 ** 20).toFixed(1)} MiB`);
