import { randomBytes } from 'node:crypto';
import { basename, dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { buildPipeline, loadPipelineModule, type PipelineModule } from '../api/define-pipeline.ts';
import type { Pipeline, PipelineOptions, RunningJob } from '../api/pipeline.ts';
import { compatibilityReport, formatReport } from '../checkpoint/compatibility.ts';
import { loadCheckpoint, loadLatest } from '../checkpoint/manifest.ts';
import type { JobSnapshot } from '../checkpoint/snapshot.ts';
import { FileCheckpointStorage } from '../checkpoint/storage.ts';
import type { JobResult } from '../runtime/job.ts';
import { MAX_BATCH_SIZE, MAX_KEY_GROUPS } from '../runtime/options.ts';
import { defaultParallelism } from '../runtime/worker-execution.ts';
import { numericArg, onStopSignal, UsageError } from './args.ts';
import { type Dashboard, isLoopbackAddress, serveDashboard } from '../ui/dashboard.ts';
import { sendControl, serveControl } from './control.ts';
import { DuckDBDatabase } from '../connectors/duckdb/database.ts';
import { type QueryEngine, readOnlyViolation } from '../ui/query-engine.ts';
import { ClusterProcess, type ClusterOptions, MAX_CLUSTER_CHECKPOINT_INTERVAL } from '../cluster/runner.ts';

export const RUN_USAGE = `spate run <pipeline.ts|pipeline.js> [options] [-- args...]

Runs a pipeline module — a file whose default export is definePipeline((p, args) => { ... })
from 'spate'; TypeScript needs no build step — until its bounded input ends, or until SIGINT or
SIGTERM: then it takes a final checkpoint, commits the sinks, prints a summary and exits 0 (a
second signal stops at once). The arguments after -- are passed to the module as args.

options:
  --checkpoint-dir DIR          durable checkpoints in DIR: a job started again with the same DIR
                                resumes from the newest complete checkpoint (it says so on stderr)
  --checkpoint-interval MS      milliseconds between checkpoints (default 1000; 0: only the final one)
  --retained-checkpoints N      complete checkpoints kept in DIR (default 3; savepoints are kept)
  --tolerated-checkpoint-failures N
                                consecutive failed checkpoints before the job fails (default: no limit)
  --restore-from PATH           start from this checkpoint or savepoint (a directory such as
                                DIR/savepoint-0000000012) instead of the newest one in DIR
  --allow-dropped-state         restore even where the checkpoint holds state that the pipeline
                                no longer declares (removed or renamed steps and states): it is dropped
  --batch-size N                records per batch (default 1024)
  --max-parallelism N           key groups (default 128; a checkpoint restores only with the same)
  --errors dead-letter|fail     a failing record becomes a dead letter (default) or fails the job
  --parallelism P               instances of every step (default: the number of cores); above 1
                                they run in worker threads, each loading the pipeline module
  --ui                          serve the dashboard (job graph, rates, watermarks, checkpoints,
                                dead letters, live views, /metrics, /views/<name>/<key>) and
                                print its address
  --ui-port P                   dashboard port (default 7070; 0: any free port)
  --ui-host H                   dashboard address to bind (default 127.0.0.1); any other than
                                loopback needs a token: --ui-token, SPATE_UI_TOKEN, or a random
                                one printed in the address
  --ui-token T                  require this bearer token (default: SPATE_UI_TOKEN if set)
  --cluster kafka://HOST:PORT[,HOST:PORT…]
                                run as one process of a job spread over several processes and
                                machines, coordinated by this Kafka cluster (nothing else is
                                shared): processes started with the same --job-id divide the input
                                topics' partitions, exchange keyed records through the job's
                                internal topics, keep each task's checkpoints in Kafka and take
                                over the tasks of a process that stops or dies; --parallelism is
                                then the number of worker threads running this process's tasks,
                                and each checkpoint one Kafka transaction (output, state, offsets;
                                --checkpoint-interval from 1 ms to 5 minutes).
                                Every source must be a Kafka source
  --job-id ID                   the job this process joins (with --cluster; letters, digits . _ -)
  --metrics-port P              (with --cluster) serve /metrics (Prometheus: each task's phase —
                                restoring, running, stopping —, restore time, task moves) and
                                /api/cluster on 127.0.0.1:P (0: any free port, printed)
  -h, --help                    this text

With --checkpoint-dir, \`spate savepoint DIR\` takes a savepoint of the running job.
See also \`spate plan <pipeline> --against DIR\`, which says what a restore would do.
`;

export const PLAN_USAGE = `spate plan <pipeline.ts|pipeline.js> [--against DIR|PATH] [--allow-dropped-state] [-- args...]

Prints the physical plan of a pipeline module (tasks, chained steps, exchanges). With --against,
also prints what starting it from the newest checkpoint in DIR (or from the checkpoint or
savepoint directory PATH) would do to every step's state — restore, migrate, start empty, drop or
refuse — before anything runs; exits 1 if the restore would be refused.
`;

export const SAVEPOINT_USAGE = `spate savepoint <checkpoint-dir>

Asks the job running with --checkpoint-dir <checkpoint-dir> to take a savepoint now, and prints
where it was written. Savepoints are never deleted by checkpoint retention; start a (changed)
pipeline from one with \`spate run ... --restore-from PATH\`.
`;

/** Splits the command line at `--`: options before, module arguments after. */
function splitArgs(argv: readonly string[]): { own: string[]; rest: string[] } {
  const i = argv.indexOf('--');
  return i < 0 ? { own: [...argv], rest: [] } : { own: argv.slice(0, i), rest: argv.slice(i + 1) };
}

/** Loads the module named by the first positional argument. */
async function loadModule(positionals: readonly string[], usage: string): Promise<{ module: PipelineModule; path: string }> {
  const file = positionals[0];
  if (file === undefined) throw new UsageError(`a pipeline file is required\n\n${usage}`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}' (module arguments go after --)`);
  const path = resolve(file);
  return { module: await loadPipelineModule(pathToFileURL(path).href), path };
}

/** Loads a checkpoint: a checkpoint directory's newest, or one checkpoint/savepoint directory. */
export async function loadCheckpointAt(path: string, log: (line: string) => void): Promise<JobSnapshot> {
  const abs = resolve(path);
  if (/^(chk|savepoint)-\d+$/.test(basename(abs))) {
    return loadCheckpoint(new FileCheckpointStorage(dirname(abs)), `${basename(abs)}/`);
  }
  const latest = await loadLatest(new FileCheckpointStorage(abs), log);
  if (latest === null) throw new Error(`no complete checkpoint in ${abs}`);
  return latest;
}

/** `spate run`. */
export async function runCommand(argv: readonly string[]): Promise<number> {
  const { own, rest } = splitArgs(argv);
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      'checkpoint-dir': { type: 'string' },
      'checkpoint-interval': { type: 'string' },
      'retained-checkpoints': { type: 'string' },
      'tolerated-checkpoint-failures': { type: 'string' },
      'restore-from': { type: 'string' },
      'allow-dropped-state': { type: 'boolean' },
      'batch-size': { type: 'string' },
      'max-parallelism': { type: 'string' },
      errors: { type: 'string' },
      parallelism: { type: 'string' },
      ui: { type: 'boolean' },
      'ui-port': { type: 'string' },
      'ui-host': { type: 'string' },
      'ui-token': { type: 'string' },
      cluster: { type: 'string' },
      'job-id': { type: 'string' },
      'metrics-port': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(RUN_USAGE);
    return 0;
  }
  if (values['metrics-port'] !== undefined && values.cluster === undefined) throw new UsageError('--metrics-port needs --cluster (a single-process job serves /metrics with --ui)');
  if (values.cluster !== undefined || values['job-id'] !== undefined) {
    for (const option of ['checkpoint-dir', 'restore-from', 'ui', 'retained-checkpoints', 'tolerated-checkpoint-failures', 'allow-dropped-state'] as const) {
      if (values[option] !== undefined) throw new UsageError(`--${option} cannot be used with --cluster (a cluster job keeps its checkpoints in Kafka)`);
    }
    if (values.cluster === undefined) throw new UsageError('--job-id needs --cluster kafka://HOST:PORT');
    if (values['job-id'] === undefined) throw new UsageError('--cluster needs --job-id ID (processes with the same id are one job)');
    const jobId = values['job-id'];
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(jobId)) throw new UsageError(`--job-id '${jobId}' may only contain letters, digits, '.', '_' and '-' (1 to 100 of them)`);
    const connection = { brokers: clusterBrokers(values.cluster) };
    const threads = numericArg('parallelism', values.parallelism, defaultParallelism(), { integer: true, min: 1, max: 256 });
    const checkpointInterval = numericArg('checkpoint-interval', values['checkpoint-interval'], 1_000, { min: 1, max: MAX_CLUSTER_CHECKPOINT_INTERVAL, hint: 'ms' });
    const metricsPort = numericArg('metrics-port', values['metrics-port'], undefined, { integer: true, min: 0, max: 65535 });
    const { path } = await loadModule(positionals, RUN_USAGE);
    return runClusterProcess({ module: pathToFileURL(path).href, args: rest, jobId, connection, threads, checkpointInterval, ...(metricsPort === undefined ? {} : { metricsPort }) });
  }
  const options: PipelineOptions = {};
  const checkpointDir = values['checkpoint-dir'];
  if (checkpointDir !== undefined) options.checkpointDir = checkpointDir;
  const interval = numericArg('checkpoint-interval', values['checkpoint-interval'], undefined, { min: 0, hint: 'ms' });
  if (interval !== undefined) options.checkpointInterval = interval;
  const retained = numericArg('retained-checkpoints', values['retained-checkpoints'], undefined, { integer: true, min: 1 });
  if (retained !== undefined) options.retainedCheckpoints = retained;
  const tolerated = numericArg('tolerated-checkpoint-failures', values['tolerated-checkpoint-failures'], undefined, { integer: true, min: 0 });
  if (tolerated !== undefined) options.toleratedCheckpointFailures = tolerated;
  const batchSize = numericArg('batch-size', values['batch-size'], undefined, { integer: true, min: 1, max: MAX_BATCH_SIZE });
  if (batchSize !== undefined) options.batchSize = batchSize;
  const maxParallelism = numericArg('max-parallelism', values['max-parallelism'], undefined, { integer: true, min: 1, max: MAX_KEY_GROUPS });
  if (maxParallelism !== undefined) options.maxParallelism = maxParallelism;
  if (values.errors !== undefined) {
    if (values.errors !== 'dead-letter' && values.errors !== 'fail') throw new UsageError(`--errors must be dead-letter or fail, got '${values.errors}'`);
    options.errors = values.errors;
  }
  if (values['allow-dropped-state']) options.allowDroppedState = true;
  const parallelism = numericArg('parallelism', values.parallelism, defaultParallelism(), { integer: true, min: 1, max: MAX_KEY_GROUPS });
  options.parallelism = parallelism;
  const log = (line: string): void => void process.stderr.write(line + '\n');
  let ui: UiOptions | null = null;
  if (values.ui) {
    const host = values['ui-host'] ?? '127.0.0.1';
    let token = values['ui-token'] ?? process.env['SPATE_UI_TOKEN'];
    // Exposed beyond loopback, the dashboard needs a token: make one up if none is given.
    if ((token === undefined || token === '') && !isLoopbackAddress(host)) token = randomBytes(18).toString('base64url');
    ui = { port: numericArg('ui-port', values['ui-port'], 7070, { integer: true, min: 0, max: 65535 }), host, ...(token === undefined || token === '' ? {} : { token }) };
  } else if (values['ui-port'] !== undefined || values['ui-host'] !== undefined || values['ui-token'] !== undefined) {
    throw new UsageError('--ui-port, --ui-host and --ui-token need --ui');
  }
  if (values['restore-from'] !== undefined) {
    const snapshot = await loadCheckpointAt(values['restore-from'], log);
    log(`spate: starting from ${snapshot.kind} ${snapshot.id} (${resolve(values['restore-from'])})`);
    options.restoreFrom = snapshot;
  }
  const { module, path } = await loadModule(positionals, RUN_USAGE);
  // Above one instance, the instances run in worker threads, each loading this module.
  if (parallelism > 1) options.workers = { module: pathToFileURL(path).href, args: rest };
  const p = await buildPipeline(module, rest, options);
  const dir = p.options.checkpointDir;
  return runToEnd(p, path, typeof dir === 'string' ? dir : undefined, log, ui);
}

/** The brokers of `--cluster kafka://HOST:PORT[,HOST:PORT…]`. */
function clusterBrokers(url: string): string[] {
  const m = /^kafka:\/\/([^/?#]+)\/?$/.exec(url);
  const brokers = m?.[1]?.split(',') ?? [];
  if (brokers.length === 0 || brokers.some((b) => !/^[^:\s]+:\d+$/.test(b))) throw new UsageError(`--cluster must be kafka://HOST:PORT[,HOST:PORT…], got '${url}'`);
  return brokers;
}

/** Runs this process's share of a cluster job until a signal makes it leave (or a worker dies). */
async function runClusterProcess(options: Omit<ClusterOptions, 'log'>): Promise<number> {
  const log = (line: string): void => void process.stderr.write(line + '\n');
  const cluster = await ClusterProcess.start({ ...options, log });
  log(`spate: job ${options.jobId}: ${cluster.plan.tasks} tasks (partitions of ${cluster.plan.inputs.flatMap((i) => i.topics.map((t) => t.topic)).join(', ')}), ${cluster.plan.exchanges.length} exchange topic(s); this process runs its share on ${options.threads} worker thread(s)`);
  const removeFirst = onStopSignal((signal) => {
    log(`spate: ${signal}: handing this process's tasks over (final checkpoints) and leaving the job (again to stop at once)`);
    void cluster.stop();
    onStopSignal(() => {
      log('spate: stopping at once');
      process.exit(130);
    });
  });
  try {
    await cluster.done;
  } finally {
    removeFirst();
  }
  log(`spate: job ${options.jobId}: this process left the job`);
  return 0;
}

/** Dashboard options of `spate run --ui`. */
export type UiOptions = { readonly port: number; readonly host: string; readonly token?: string; readonly title?: string; readonly queries?: QueryEngine };

/** What a command built on `spate run` (the demo) adds around the job. */
export interface RunHooks {
  /**
   * Called once the job runs and the dashboard (if any) listens; what it returns is called when
   * the job has ended (before the summary).
   */
  readonly started?: (job: RunningJob, dashboard: Dashboard | null) => Promise<() => Promise<void>>;
}

/**
 * The dashboard's SQL engine by default: the DuckDB databases the job has open (its DuckDB
 * sinks' files), queried read-only in this process.
 */
const duckdbQueries: QueryEngine = { query: (sql) => DuckDBDatabase.queryOpen(sql) };

/** Runs a built pipeline until it ends or a signal stops it; prints a summary. */
export async function runToEnd(p: Pipeline, path: string, checkpointDir: string | undefined, log: (line: string) => void, ui: UiOptions | null, hooks: RunHooks = {}): Promise<number> {
  const job = p.start();
  let dashboard: Dashboard | null = null;
  if (ui !== null) {
    try {
      dashboard = await serveDashboard(job, { queries: duckdbQueries, ...ui, title: ui.title ?? basename(path).replace(/\.[cm]?[jt]s$/, '') });
    } catch (error) {
      job.stop({ checkpoint: false });
      await job.done.catch(() => undefined);
      throw error;
    }
    log(`spate: dashboard at ${dashboard.url}${ui.token === undefined ? '' : `?token=${encodeURIComponent(ui.token)}`}`);
  }
  let ended: (() => Promise<void>) | null = null;
  if (hooks.started !== undefined) {
    try {
      ended = await hooks.started(job, dashboard);
    } catch (error) {
      job.stop({ checkpoint: false });
      await job.done.catch(() => undefined);
      await dashboard?.close();
      throw error;
    }
  }
  let stopping: NodeJS.Signals | null = null;
  const removeFirst = onStopSignal((signal) => {
    stopping = signal;
    log(`spate: ${signal}: taking a final checkpoint and stopping (again to stop at once)`);
    job.stop();
    // A second signal stops without waiting for the checkpoint.
    onStopSignal(() => {
      log('spate: stopping at once');
      job.stop({ checkpoint: false });
      setTimeout(() => process.exit(130), 2000).unref();
    });
  });
  const control =
    checkpointDir === undefined
      ? null
      : await serveControl(checkpointDir, async (request) => {
          if (request.command === 'query') {
            // A job whose results are elsewhere (the demo with --store postgres) answers with the
            // engine its dashboard uses, so \`spate query\` sees what /api/query sees.
            if (ui?.queries === undefined) return DuckDBDatabase.queryOpen(request.sql, request.database);
            const violation = readOnlyViolation(request.sql);
            if (violation !== null) throw new Error(violation);
            return ui.queries.query(request.sql);
          }
          if (request.command === 'savepoint') {
            const record = await job.savepoint();
            return { id: record.id, path: resolve(checkpointDir, `savepoint-${String(record.id).padStart(10, '0')}`), bytes: record.bytes };
          }
          return { metrics: job.job.metrics(), checkpoints: job.job.checkpoints().slice(-10) };
        }).catch((error: unknown) => {
          job.stop({ checkpoint: false });
          throw error;
        });
  let result: JobResult;
  try {
    result = await job.done;
  } finally {
    removeFirst();
    control?.close();
    // The dashboard first: what the hook closes (a query engine) may still serve its requests.
    await dashboard?.close();
    await ended?.();
  }
  summarize(path, result, stopping, log);
  return 0;
}

function summarize(path: string, result: JobResult, stopped: NodeJS.Signals | null, log: (line: string) => void): void {
  const completed = result.checkpoints.filter((c) => c.status === 'completed').length;
  const failed = result.checkpoints.length - completed - result.checkpoints.filter((c) => c.status === 'in-progress').length;
  const lines = [
    `spate: ${basename(path)} ${stopped === null ? 'finished' : `stopped by ${stopped}`} in ${(result.durationMs / 1000).toFixed(1)} s; ` +
      `${completed} checkpoint(s)${failed > 0 ? `, ${failed} failed` : ''}; ${result.deadLetters} dead letter(s)`,
    ...result.metrics.map((m) => `  ${m.step.padEnd(24)} ${m.kind.padEnd(16)} ${String(m.recordsIn).padStart(12)} in ${String(m.recordsOut).padStart(12)} out` + (m.lateRecords > 0 ? `  ${m.lateRecords} late` : '') + (m.deadLetters > 0 ? `  ${m.deadLetters} dead` : '')),
  ];
  log(lines.join('\n'));
}

/** `spate plan`. */
export async function planCommand(argv: readonly string[]): Promise<number> {
  const { own, rest } = splitArgs(argv);
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      against: { type: 'string' },
      'allow-dropped-state': { type: 'boolean' },
      parallelism: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(PLAN_USAGE);
    return 0;
  }
  const parallelism = numericArg('parallelism', values.parallelism, defaultParallelism(), { integer: true, min: 1, max: MAX_KEY_GROUPS });
  const { module } = await loadModule(positionals, PLAN_USAGE);
  const p = await buildPipeline(module, rest);
  process.stdout.write(p.explain(parallelism) + '\n');
  if (values.against === undefined) return 0;
  const snapshot = await loadCheckpointAt(values.against, (line) => void process.stderr.write(line + '\n'));
  const report = compatibilityReport(p.graph, snapshot, { allowDroppedState: values['allow-dropped-state'] ?? false });
  process.stdout.write('\n' + formatReport(report) + '\n');
  return report.compatible ? 0 : 1;
}

/** `spate savepoint`. */
export async function savepointCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: [...argv], allowPositionals: true, options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(SAVEPOINT_USAGE);
    return 0;
  }
  const dir = positionals[0];
  if (dir === undefined) throw new UsageError(`the job's checkpoint directory is required\n\n${SAVEPOINT_USAGE}`);
  const result = (await sendControl(dir, { command: 'savepoint' })) as { id: number; path: string; bytes: number };
  process.stdout.write(`savepoint ${result.id} written to ${result.path} (${result.bytes} bytes)\n`);
  return 0;
}
