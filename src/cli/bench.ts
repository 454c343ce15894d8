import { execFile } from 'node:child_process';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import type { NexmarkRunResult } from '../nexmark/run.ts';
import { QUERY_NAMES } from '../nexmark/queries.ts';
import { numericArg, UsageError } from './args.ts';

const run = promisify(execFile);
const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'spate.js');

/** Targets from DESIGN.md, events/s on one core with the generator included. */
const TARGETS: Record<string, number> = { q0: 2e6, q1: 2e6, q2: 2e6, q5: 2e6, q7: 2e6, q8: 2e6, q3: 1e6, q4: 1e6, q11: 1e6 };

/** One measured run in a fresh process, so that queries do not share JIT state or heap. */
async function measure(query: string, events: number): Promise<NexmarkRunResult> {
  const { stdout } = await run(process.execPath, [BIN, 'nexmark', '--query', query, '--events', String(events), '--json'], {
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as NexmarkRunResult;
}

/** `spate bench`: NEXMark throughput per query on one core, generator included. */
export async function runBench(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { events: { type: 'string' }, runs: { type: 'string' }, query: { type: 'string' } },
  });
  const events = numericArg('events', values.events, 5_000_000, { integer: true, min: 1 });
  const runs = numericArg('runs', values.runs, 3, { integer: true, min: 1 });
  const known = ['none', ...QUERY_NAMES];
  const queries = values.query === undefined ? known : values.query.split(',');
  const unknown = queries.filter((q) => !known.includes(q));
  if (unknown.length > 0) throw new UsageError(`--query: unknown ${unknown.map((q) => `'${q}'`).join(', ')}; a comma-separated list of ${known.join(', ')}`);
  console.log(`NEXMark, ${events.toLocaleString('en-US')} events per run, best of ${runs} runs, one core (${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version})\n`);
  console.log('| query | events/s | target | vs target | result rows |');
  console.log('|---|---:|---:|---:|---:|');
  let missed = 0;
  for (const query of queries) {
    let best: NexmarkRunResult | null = null;
    for (let r = 0; r < runs; r++) {
      const result = await measure(query, events);
      if (best === null || result.eventsPerSecond > best.eventsPerSecond) best = result;
    }
    const target = TARGETS[query];
    const name = query === 'none' ? 'generator alone' : query;
    const ratio = target === undefined ? '' : `${((best!.eventsPerSecond / target) * 100).toFixed(0)}%`;
    if (target !== undefined && best!.eventsPerSecond < target) missed++;
    console.log(
      `| ${name} | ${Math.round(best!.eventsPerSecond).toLocaleString('en-US')} | ${target === undefined ? '' : target.toLocaleString('en-US')} | ${ratio} | ${best!.results.toLocaleString('en-US')} |`,
    );
  }
  if (missed > 0) console.log(`\n${missed} quer${missed === 1 ? 'y' : 'ies'} below target.`);
  return 0;
}
