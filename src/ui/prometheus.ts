import type { CheckpointRecord } from '../checkpoint/coordinator.ts';
import type { JobPhase, JobStatus } from '../runtime/job.ts';
import type { TaskStatus } from '../cluster/runner.ts';

/** The content type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Readonly<Record<string, string | number>>;
type MetricType = 'counter' | 'gauge';

const PHASES: readonly JobPhase[] = ['created', 'opening', 'restoring', 'running', 'stopping', 'finished', 'failed'];

/** Builds a text exposition (format 0.0.4): one HELP and TYPE line per family, then its samples. */
class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: MetricType, help: string, samples: ReadonlyArray<readonly [Labels, number]>): void {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) this.lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
  }

  text(): string {
    return this.lines.join('\n') + '\n';
  }
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatLabels(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabel(String(labels[k]))}"`).join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** What the exposition needs beyond the job's status. */
export interface PrometheusExtras {
  /** Checkpoints completed and failed during the run (monotonic, unlike the bounded history). */
  readonly checkpointTotals: { readonly completed: number; readonly failed: number };
  /** Keys per view (views that are open). */
  readonly views: ReadonlyArray<{ readonly name: string; readonly size: number | null }>;
}

/**
 * The job's metrics in the Prometheus text format (0.0.4), as `/metrics` serves them: counters
 * per step instance (records in and out, dead letters, late records, duplicates dropped, seconds
 * of backpressure), watermarks, idleness, the job's phase, checkpoint counts and the durations of
 * the last completed checkpoint's phases, and keys per view. Times are in seconds (event time in
 * seconds since the epoch when it is epoch milliseconds); watermarks that are not finite (no data
 * yet, or ended) are left out.
 */
export function prometheusText(status: JobStatus, extras: PrometheusExtras): string {
  const e = new Exposition();
  const live = status.instances.filter((m) => m.instance >= 0);
  // Dead letters reported off the data path (instance −1, maybe one per thread) belong to their
  // step: summed into one series with instance "off-path".
  const offPath = new Map<string, { step: string; kind: string; instance: number; deadLetters: number }>();
  for (const m of status.instances) {
    if (m.instance >= 0 || m.deadLetters === 0) continue;
    const o = offPath.get(m.step) ?? { step: m.step, kind: m.kind, instance: -1, deadLetters: 0 };
    o.deadLetters += m.deadLetters;
    offPath.set(m.step, o);
  }
  const label = (m: { step: string; kind: string; instance: number }): Labels => ({ step: m.step, kind: m.kind, instance: m.instance < 0 ? 'off-path' : m.instance });

  e.family('spate_job_phase', 'gauge', 'The phase of the job: 1 for the current one.', PHASES.map((p) => [{ phase: p }, status.phase === p ? 1 : 0] as const));
  e.family('spate_job_start_time_seconds', 'gauge', 'When the job was started (seconds since the epoch).', [[{}, status.startedAt / 1000]]);
  e.family('spate_job_parallelism', 'gauge', 'Instances per step the job was started with.', [[{}, status.parallelism]]);

  e.family('spate_step_records_in_total', 'counter', 'Records a step instance received.', live.map((m) => [label(m), m.recordsIn] as const));
  e.family('spate_step_records_out_total', 'counter', 'Records a step instance emitted.', live.map((m) => [label(m), m.recordsOut] as const));
  e.family(
    'spate_step_dead_letters_total',
    'counter',
    'Records a step instance sent to the dead letters (failed parsing, validation or a user function).',
    [...live, ...offPath.values()].map((m) => [label(m), m.deadLetters] as const),
  );
  e.family('spate_step_late_records_total', 'counter', 'Records that arrived behind the watermark (windows, dedupe).', live.map((m) => [label(m), m.lateRecords] as const));
  e.family('spate_step_late_dropped_total', 'counter', 'Late records dropped by the late-data policy.', live.map((m) => [label(m), m.lateDropped] as const));
  e.family('spate_step_duplicates_dropped_total', 'counter', 'Records dropped as duplicates.', live.map((m) => [label(m), m.duplicatesDropped] as const));
  e.family(
    'spate_step_backpressure_seconds_total',
    'counter',
    'Time a step instance waited because downstream could not take more; its rate is the fraction of time backpressured.',
    live.map((m) => [label(m), m.backpressureMs / 1000] as const),
  );
  e.family(
    'spate_step_watermark_seconds',
    'gauge',
    'The watermark of a step instance (event time in seconds); absent before the first watermark and after the end.',
    live.filter((m) => Number.isFinite(m.watermark)).map((m) => [label(m), m.watermark / 1000] as const),
  );
  e.family('spate_step_idle', 'gauge', 'Whether a step instance is idle (1) and holds no watermark back.', live.map((m) => [label(m), m.idle ? 1 : 0] as const));
  e.family(
    'spate_step_checkpoint_pause_seconds',
    'gauge',
    "How long a step instance's last checkpoint snapshot held up processing.",
    live.map((m) => [label(m), m.checkpointPauseMs / 1000] as const),
  );

  e.family('spate_checkpoints_total', 'counter', 'Checkpoints (and savepoints) that completed or failed during this run.', [
    [{ status: 'completed' }, extras.checkpointTotals.completed],
    [{ status: 'failed' }, extras.checkpointTotals.failed],
  ]);
  const last = lastCompleted(status.checkpoints);
  if (last !== undefined) {
    e.family('spate_checkpoint_last_id', 'gauge', 'Id of the last completed checkpoint.', [[{}, last.id]]);
    e.family('spate_checkpoint_last_completed_time_seconds', 'gauge', 'When the last completed checkpoint was triggered (seconds since the epoch).', [[{}, last.triggeredAt / 1000]]);
    e.family(
      'spate_checkpoint_last_duration_seconds',
      'gauge',
      'Phases of the last completed checkpoint: align (barriers through every step), write (state files), commit (manifest).',
      (['align', 'write', 'commit'] as const).map((p) => [{ phase: p }, last.phases[p] / 1000] as const),
    );
    e.family('spate_checkpoint_last_size_bytes', 'gauge', 'Bytes written by the last completed checkpoint.', [[{}, last.bytes]]);
    e.family('spate_checkpoint_last_pause_seconds', 'gauge', 'Longest time one step instance held up processing for the last completed checkpoint.', [[{}, last.pauseMs / 1000]]);
  }
  e.family(
    'spate_view_keys',
    'gauge',
    'Keys in a result view.',
    extras.views.filter((v) => v.size !== null).map((v) => [{ view: v.name }, v.size!] as const),
  );
  return e.text();
}

function lastCompleted(history: readonly CheckpointRecord[]): CheckpointRecord | undefined {
  for (let i = history.length - 1; i >= 0; i--) if (history[i]!.status === 'completed') return history[i];
  return undefined;
}

const TASK_PHASES: ReadonlyArray<TaskStatus['phase']> = ['restoring', 'running', 'stopping'];

/** What a cluster process counts besides its tasks' status (since it started). */
export interface ClusterCounts {
  /** Tasks the group gave this process, took back (handed over), it lost (session expired, fenced), and that failed. */
  readonly assigned: number;
  readonly revoked: number;
  readonly lost: number;
  readonly failed: number;
}

/**
 * A cluster process's metrics in the Prometheus text format (`spate run --cluster …
 * --metrics-port P`): per task it runs, its phase — restoring (its state being read back from
 * Kafka), running or stopping (being handed over) — how long its last restore took and how many
 * bytes it read, and the task moves this process has seen.
 */
export function clusterPrometheusText(jobId: string, tasks: readonly TaskStatus[], counts: ClusterCounts): string {
  const e = new Exposition();
  e.family('spate_cluster_tasks', 'gauge', 'Tasks this process runs now (restoring, running or stopping).', [[{ job: jobId }, tasks.length]]);
  e.family(
    'spate_cluster_task_phase',
    'gauge',
    'The phase of a task of this process: 1 for the current one (restoring: its state is being read back from Kafka).',
    tasks.flatMap((t) => TASK_PHASES.map((p) => [{ job: jobId, task: t.task, phase: p }, t.phase === p ? 1 : 0] as const)),
  );
  e.family(
    'spate_cluster_task_restore_seconds',
    'gauge',
    'How long the task took to open: fencing its previous owner, reading its checkpoint from Kafka, restoring its state.',
    tasks.filter((t) => t.restoreMs !== null).map((t) => [{ job: jobId, task: t.task }, t.restoreMs! / 1000] as const),
  );
  e.family(
    'spate_cluster_task_restored_bytes',
    'gauge',
    "Bytes of the task's checkpoint partition read when it opened.",
    tasks.filter((t) => t.stateBytes !== null).map((t) => [{ job: jobId, task: t.task }, t.stateBytes!] as const),
  );
  e.family(
    'spate_cluster_task_moves_total',
    'counter',
    'Tasks the group gave this process (assigned), took back to hand over (revoked), that it lost without handing over (lost), and that failed and were restarted or dropped (failed).',
    (['assigned', 'revoked', 'lost', 'failed'] as const).map((kind) => [{ job: jobId, kind }, counts[kind]] as const),
  );
  return e.text();
}
