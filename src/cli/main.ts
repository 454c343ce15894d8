import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { QUERY_NAMES, type QueryName } from '../nexmark/queries.ts';
import { runNexmark } from '../nexmark/run.ts';
import { runBench } from './bench.ts';
import { runDemo } from './demo.ts';

const USAGE = `spate — real-time stream processing for TypeScript

Usage:
  spate demo [--seconds S]            run the demo job (live NEXMark analytics)
  spate nexmark --query Q [options]   run NEXMark queries and print throughput
  spate bench [--events N] [--runs R] run the benchmark suite and print the table
  spate help                          this text

nexmark options:
  --query <q0|q1|q2|q3|q4|q5|q7|q8|q11|all|none>
                      query to run (required); none: the generator alone
  --events N          number of events (default 1000000)
  --rate R            events per second of event time (default 10000)
  --seed S            random seed (default 42)
  --base-time MS      event time of the first event, epoch ms (default 1700000000000)
  --disorder MS       shuffle arrival within MS of event time; the watermark allows for it
  --out FILE          results as JSONL (final table for q3, q4); with --query all,
                      one file per query: FILE with .<query> before the extension
  --events-out FILE   the generated events as JSONL, in arrival order
  --parallelism P     parallel instances (1 in this release)
  --checkpoint-dir D  durable checkpoints in D: a run killed and started again with the same
                      D resumes from the last checkpoint; --out is then written exactly once
                      (with --query all, one subdirectory per query)
  --checkpoint-interval MS
                      milliseconds between checkpoints (default 1000)
  --json              print one JSON object per query instead of text
`;

function int(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a non-negative number, got '${value}'`);
  return n;
}

class UsageError extends Error {}

/** Inserts `.q5` before the extension of `path`. */
function perQuery(path: string, query: string): string {
  const dot = path.lastIndexOf('.');
  const slash = path.lastIndexOf('/');
  return dot > slash + 1 ? `${path.slice(0, dot)}.${query}${path.slice(dot)}` : `${path}.${query}`;
}

function formatRate(perSecond: number): string {
  return perSecond >= 1e6 ? `${(perSecond / 1e6).toFixed(2)}M` : `${(perSecond / 1e3).toFixed(0)}k`;
}

async function nexmark(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      query: { type: 'string' },
      events: { type: 'string' },
      rate: { type: 'string' },
      seed: { type: 'string' },
      'base-time': { type: 'string' },
      disorder: { type: 'string' },
      out: { type: 'string' },
      'events-out': { type: 'string' },
      parallelism: { type: 'string' },
      'batch-size': { type: 'string' },
      'checkpoint-dir': { type: 'string' },
      'checkpoint-interval': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const query = values.query;
  if (query === undefined) throw new UsageError('--query is required');
  const queries: Array<QueryName | 'none'> = query === 'all' ? [...QUERY_NAMES] : [query as QueryName | 'none'];
  if (query !== 'all' && query !== 'none' && !(QUERY_NAMES as readonly string[]).includes(query)) {
    throw new UsageError(`unknown query '${query}'; one of ${QUERY_NAMES.join(', ')}, all`);
  }
  const parallelism = int('parallelism', values.parallelism, 1);
  if (parallelism !== 1) throw new UsageError(`--parallelism ${parallelism}: this release runs one instance per step (use 1)`);
  const events = int('events', values.events, 1_000_000);
  for (const [i, q] of queries.entries()) {
    const result = await runNexmark({
      query: q,
      events,
      rate: values.rate === undefined ? undefined : int('rate', values.rate, 10_000),
      seed: values.seed === undefined ? undefined : int('seed', values.seed, 42),
      baseTime: values['base-time'] === undefined ? undefined : int('base-time', values['base-time'], 0),
      disorder: int('disorder', values.disorder, 0),
      out: values.out === undefined ? undefined : queries.length > 1 ? perQuery(values.out, q) : values.out,
      // The same events feed every query: write them once.
      eventsOut: i === 0 ? values['events-out'] : undefined,
      batchSize: values['batch-size'] === undefined ? undefined : int('batch-size', values['batch-size'], 1024),
      checkpointDir: values['checkpoint-dir'] === undefined ? undefined : queries.length > 1 ? join(values['checkpoint-dir'], q) : values['checkpoint-dir'],
      checkpointInterval: values['checkpoint-interval'] === undefined ? undefined : int('checkpoint-interval', values['checkpoint-interval'], 1000),
    });
    if (values.json) console.log(JSON.stringify(result));
    else {
      const extra = result.deadLetters > 0 || result.lateRecords > 0 ? `, ${result.deadLetters} dead letters, ${result.lateRecords} late` : '';
      console.log(
        `${q.padEnd(4)} ${result.events.toLocaleString('en-US')} events in ${result.seconds.toFixed(2)} s = ${formatRate(result.eventsPerSecond)} events/s (${result.results.toLocaleString('en-US')} result rows${extra})`,
      );
    }
  }
  return 0;
}

/** Entry point of the `spate` command; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'nexmark':
        return await nexmark(rest);
      case 'bench':
        return await runBench(rest);
      case 'demo':
        return await runDemo(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return 0;
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error instanceof TypeError && (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`spate: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    throw error;
  }
}

export { formatRate, UsageError, int };
