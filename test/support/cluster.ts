/**
 * A process of a cluster job, for the cluster tests and benchmark: `spate run
 * test/support/cluster-nexmark-job.ts --cluster … --job-id …` with one worker thread, its stderr
 * lines kept with the time each arrived (the log says when each task runs, moves and restores).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KAFKA_BROKERS } from './kafka.ts';

const BIN = fileURLToPath(new URL('../../bin/spate.js', import.meta.url));
const JOB = fileURLToPath(new URL('./cluster-nexmark-job.ts', import.meta.url));

export interface ClusterMember {
  readonly child: ChildProcess;
  /** Its stderr, a line at a time, with `Date.now()` at arrival. */
  readonly lines: Array<{ at: number; line: string }>;
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a process of job `jobId` running the cluster NEXMark module with `args` (after `--`). */
export function clusterMember(jobId: string, args: readonly string[], options: { checkpointInterval?: number } = {}): ClusterMember {
  const interval = options.checkpointInterval === undefined ? [] : ['--checkpoint-interval', String(options.checkpointInterval)];
  const child = spawn(process.execPath, [BIN, 'run', JOB, '--cluster', `kafka://${KAFKA_BROKERS.join(',')}`, '--job-id', jobId, '--parallelism', '1', ...interval, '--', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines: Array<{ at: number; line: string }> = [];
  let rest = '';
  child.stderr!.on('data', (d: Buffer) => {
    const parts = (rest + d.toString()).split('\n');
    rest = parts.pop()!;
    for (const line of parts) lines.push({ at: Date.now(), line });
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, lines, done };
}
