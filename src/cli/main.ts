import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { RunningJob } from '../api/pipeline.ts';
import { QUERY_NAMES, type QueryName } from '../nexmark/queries.ts';
import { runNexmark } from '../nexmark/run.ts';
import { MAX_BATCH_SIZE, MAX_KEY_GROUPS } from '../runtime/options.ts';
import { numericArg, onStopSignal, outputFileArg, UsageError } from './args.ts';
import { runBench } from './bench.ts';
import { runDemo } from './demo.ts';
import { queryCommand } from './query.ts';
import { planCommand, runCommand, savepointCommand } from './run.ts';

const USAGE = `spate — real-time stream processing for TypeScript

Usage:
  spate run <pipeline.ts> [options] [-- args]
                                      run your pipeline module (spate run --help)
  spate plan <pipeline.ts> [--against DIR]
                                      print the plan, and what a restore from DIR would do
  spate savepoint <checkpoint-dir>    take a savepoint of the job running with that directory
  spate demo [options]                the demo job (npm start): simulated sensors over HTTP,
                                      WebSocket and MQTT, analytics on every core, results in
                                      DuckDB, a live dashboard (spate demo --help)
  spate query "SQL" [options]         query a running job's results (spate query --help)
  spate nexmark --query Q [options]   run NEXMark queries and print throughput
  spate bench [--suite S,S] [--events N] [--runs R] [--query Q,Q] [--seconds S]
                                      run the benchmark suites and print their tables:
                                      nexmark, checkpoint, parallel, restore, latency,
                                      memory, codecs (default: all)
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
  --parallelism P     instances of every step, in worker threads (default 1)
  --batch-size N      records per batch (default 1024)
  --checkpoint-dir D  durable checkpoints in D: a run killed and started again with the same
                      D resumes from the last checkpoint; --out is then written exactly once
                      (with --query all, one subdirectory per query)
  --checkpoint-interval MS
                      milliseconds between checkpoints (default 1000)
  --json              print one JSON object per query instead of text

SIGINT (Ctrl-C) or SIGTERM stops demo and nexmark early: sinks are flushed, the
summary is printed and the exit code is 0. Progress goes to stderr.
`;

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
    throw new UsageError(`unknown query '${query}'; one of ${QUERY_NAMES.join(', ')}, all, none`);
  }
  // Every value is checked before the first query runs.
  const parallelism = numericArg('parallelism', values.parallelism, 1, { integer: true, min: 1, max: MAX_KEY_GROUPS });
  const events = numericArg('events', values.events, 1_000_000, { integer: true, min: 1 });
  const rate = numericArg('rate', values.rate, undefined, { min: 0, exclusiveMin: true, hint: 'events per second of event time' });
  const seed = numericArg('seed', values.seed, undefined, { integer: true, min: 0, max: 0xffff_ffff });
  // JavaScript dates span ±8.64e15 ms.
  const baseTime = numericArg('base-time', values['base-time'], undefined, { integer: true, min: -8.64e15, max: 8.64e15, hint: 'epoch ms' });
  const disorder = numericArg('disorder', values.disorder, 0, { integer: true, min: 0, hint: 'ms' });
  const batchSize = numericArg('batch-size', values['batch-size'], undefined, { integer: true, min: 1, max: MAX_BATCH_SIZE });
  const out = outputFileArg('out', values.out);
  const checkpointDir = values['checkpoint-dir'];
  const checkpointInterval = numericArg('checkpoint-interval', values['checkpoint-interval'], undefined, { min: 0, hint: 'ms' });
  const eventsOut = outputFileArg('events-out', values['events-out']);

  let stopped: NodeJS.Signals | undefined;
  let running: RunningJob | undefined;
  const removeHandlers = onStopSignal((signal) => {
    stopped ??= signal;
    void running?.stop();
  });
  try {
    for (const [i, q] of queries.entries()) {
      if (stopped !== undefined) break;
      let progress: Progress | undefined;
      const result = await runNexmark({
        query: q,
        events,
        rate,
        seed,
        baseTime,
        disorder,
        out: out === undefined ? undefined : queries.length > 1 ? perQuery(out, q) : out,
        // The same events feed every query: write them once.
        eventsOut: i === 0 ? eventsOut : undefined,
        batchSize,
        checkpointDir: checkpointDir === undefined ? undefined : queries.length > 1 ? join(checkpointDir, q) : checkpointDir,
        checkpointInterval,
        parallelism,
        onStart: (job) => {
          running = job;
          if (stopped !== undefined) void job.stop();
          progress = new Progress(q, job);
        },
      }).finally(() => {
        running = undefined;
        progress?.end();
      });
      const stopNote = stopped === undefined ? '' : `, stopped by ${stopped}`;
      if (values.json) console.log(JSON.stringify(stopped === undefined ? result : { ...result, stopped }));
      else {
        const extra = result.deadLetters > 0 || result.lateRecords > 0 ? `, ${result.deadLetters} dead letters, ${result.lateRecords} late` : '';
        console.log(
          `${q.padEnd(4)} ${result.events.toLocaleString('en-US')} events in ${result.seconds.toFixed(2)} s = ${formatRate(result.eventsPerSecond)} events/s (${result.results.toLocaleString('en-US')} result rows${extra})${stopNote}`,
        );
      }
    }
  } finally {
    removeHandlers();
  }
  return 0;
}

/** Events processed so far, on stderr once a second (one line rewritten in place on a terminal). */
class Progress {
  private readonly timer: NodeJS.Timeout;
  private readonly started = performance.now();
  private readonly tty = process.stderr.isTTY === true;

  constructor(
    private readonly query: string,
    private readonly job: RunningJob,
  ) {
    this.timer = setInterval(() => this.report(), 1000);
  }

  private report(): void {
    const events = this.job.job.metrics().find((m) => m.step === 'nexmark')?.recordsOut ?? 0;
    const seconds = (performance.now() - this.started) / 1000;
    const line = `${this.query}: ${events.toLocaleString('en-US')} events, ${formatRate(events / seconds)} events/s`;
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  end(): void {
    clearInterval(this.timer);
    if (this.tty) process.stderr.write('\r\x1b[K');
  }
}

/** Entry point of the `spate` command; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await runCommand(rest);
      case 'plan':
        return await planCommand(rest);
      case 'savepoint':
        return await savepointCommand(rest);
      case 'nexmark':
        return await nexmark(rest);
      case 'bench':
        return await runBench(rest);
      case 'demo':
        return await runDemo(rest);
      case 'query':
        return await queryCommand(rest);
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
      process.stderr.write(`spate: ${error.message}\n\n${command === 'run' || command === 'plan' || command === 'savepoint' ? `spate ${command} --help lists the options\n` : USAGE}`);
      return 2;
    }
    // A failed job: its error (which names the step) without a stack trace, unless asked for.
    process.stderr.write(`spate: ${describeError(error)}\n`);
    if (process.env.SPATE_DEBUG) process.stderr.write(`${(error as Error).stack ?? ''}\n`);
    return 1;
  }
}

/** An error's message with the messages of its causes. */
function describeError(error: unknown): string {
  let text = error instanceof Error ? error.message : String(error);
  let cause = error instanceof Error ? error.cause : undefined;
  while (cause instanceof Error) {
    if (!text.includes(cause.message)) text += `: ${cause.message}`;
    cause = cause.cause;
  }
  return text;
}

export { formatRate, UsageError };
