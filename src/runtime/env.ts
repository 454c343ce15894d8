import type { KeyedStateSnapshot } from '../state/keyed-state-backend.ts';
import type { Clock } from '../time/clock.ts';
import type { DeadLetterLog } from './dead-letters.ts';
import type { Split } from './source.ts';
import type { JobOptions } from './job.ts';

/** A split's state in a checkpoint: its position, and the highest event time its records had. */
export interface SavedSplit extends Split {
  /** Highest event time seen on the split (its watermark is derived from it); -Infinity if none. */
  readonly maxTime: number;
  /**
   * The reader emitted on the split's own output (per-split watermark): a restored source
   * registers it again before the first poll, so that it holds the watermark back at once.
   */
  readonly tracked?: boolean;
  /** The split's output was finished: it no longer holds the watermark back. */
  readonly finished?: boolean;
  /** The split's explicit watermark (sources that emit their own). */
  readonly explicit?: number;
}

/** One step instance's state at a checkpoint, as the runtime collects it. */
export interface InstanceSnapshot {
  /** The instance's input watermark (sources: the watermark they emitted). */
  readonly watermark: number;
  /** Keyed state, per key group (absent for steps without keyed state). */
  readonly keyed?: KeyedStateSnapshot;
  /** Non-keyed operator state (a sink's committables); a promise while a pre-commit completes. */
  readonly operator?: unknown;
  /** Sources: the position of every split the instance reads. */
  readonly splits?: readonly SavedSplit[];
}

/** What one step instance restores from a checkpoint, already cut to its share. */
export interface InstanceRestore {
  readonly checkpointId: number;
  readonly watermark: number;
  readonly keyed: KeyedStateSnapshot | null;
  readonly operator: readonly unknown[];
  readonly splits: readonly SavedSplit[] | null;
}

/** Receives the snapshot of every step instance when a checkpoint passes it. */
export interface SnapshotCollector {
  /** `pauseMs`: how long taking the snapshot held up processing. */
  add(checkpointId: number, step: string, instance: number, snapshot: InstanceSnapshot, pauseMs: number): void;
}

/** What every runtime node of one job shares. */
export interface RuntimeEnv {
  readonly clock: Clock;
  readonly maxParallelism: number;
  readonly batchSize: number;
  /** `errors: 'fail'`: the first dead letter fails the job. */
  readonly failFast: boolean;
  /** The job's log (stderr by default). */
  readonly log: (line: string) => void;
  /** Dead letters of steps without a dead-letter consumer. */
  readonly deadLetterLog: DeadLetterLog;
  readonly snapshots: SnapshotCollector;
  /** Restoring may drop state that the pipeline no longer declares (else it is refused). */
  readonly allowDroppedState: boolean;
  /** Messages already logged by `warnOnce`. */
  readonly warned: Set<string>;
  /** The job's checkpoint directory, when it checkpoints to files (for sources' own files). */
  readonly checkpointDir?: string;
  /** {@link JobOptions.scope}: which of several jobs of one pipeline this is (sinks' external identities). */
  readonly scope?: string;
}

/** Logs `message` on the job's log the first time it is seen. */
export function warnOnce(env: RuntimeEnv, message: string): void {
  if (env.warned.has(message)) return;
  env.warned.add(message);
  env.log(`spate: warning: ${message}`);
}
