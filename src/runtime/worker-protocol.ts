import type { MessagePort } from 'node:worker_threads';
import type { InstanceRef } from '../checkpoint/manifest.ts';
import type { JobSnapshot } from '../checkpoint/snapshot.ts';
import type { StepSignature } from '../plan/graph.ts';
import type { Barrier } from './barrier.ts';
import type { RecentDeadLetter } from './dead-letters.ts';
import type { InstanceSnapshot, SavedSplit } from './env.ts';
import type { InstanceMetrics } from './executor.ts';

/**
 * Messages between the coordinating thread of a parallel job and its worker threads. Data never
 * goes through here: exchanges have their own channels (port-channels.ts).
 */

/** The end of one exchange channel handed to a thread. */
export interface ChannelEnd {
  /** Index of the edge in the physical plan. */
  readonly edge: number;
  readonly sender: number;
  readonly receiver: number;
  readonly port: MessagePort;
}

/** What a worker starts from (its `workerData`). */
export interface WorkerInit {
  /** The pipeline module to build, and its arguments. */
  readonly module: string;
  readonly args: readonly string[];
  /** Job options that travel (no functions). */
  readonly options: {
    readonly batchSize: number;
    readonly maxParallelism: number;
    readonly parallelism: number;
    readonly errors: 'dead-letter' | 'fail';
    readonly allowDroppedState: boolean;
    readonly scope?: string;
  };
  /** The worker hosts instance `index` of every task placed on workers (that has that many). */
  readonly index: number;
  /** The coordinator's step signatures (in plan order); the worker's rebuild must match them. */
  readonly signatures: ReadonlyArray<readonly [string, StepSignature]>;
  /**
   * Whether the coordinator loaded the module through the same loader as the worker, so that the
   * source text of functions compares (a test runner may transpile the main thread's copy otherwise).
   */
  readonly sameLoader: boolean;
  /** The checkpoint to restore, cut to what this worker hosts. */
  readonly restore: JobSnapshot | null;
  /** The splits of the source instances this worker hosts, by step id. */
  readonly splits: Readonly<Record<string, SavedSplit[]>>;
  /** The checkpoint directory, where the worker writes its own state files; null: state is sent to the coordinator. */
  readonly storage: string | null;
  readonly writers: readonly ChannelEnd[];
  readonly readers: readonly ChannelEnd[];
}

/** Coordinator → worker. */
export type ToWorker =
  | { readonly type: 'inject'; readonly barrier: Barrier; readonly capture: boolean }
  | { readonly type: 'complete'; readonly id: number }
  | { readonly type: 'abort'; readonly id: number }
  | { readonly type: 'pause' }
  | { readonly type: 'halt' }
  | { readonly type: 'finish' };

/** Worker → coordinator. */
export type FromWorker =
  | { readonly type: 'opened' }
  | { readonly type: 'log'; readonly line: string }
  | { readonly type: 'snapshot'; readonly id: number; readonly step: string; readonly instance: number; readonly snapshot: InstanceSnapshot; readonly pauseMs: number }
  | { readonly type: 'written'; readonly id: number; readonly step: string; readonly instance: number; readonly ref: InstanceRef; readonly pauseMs: number }
  | { readonly type: 'snapshot-failed'; readonly id: number; readonly message: string }
  | { readonly type: 'metrics'; readonly metrics: InstanceMetrics[]; readonly deadLetters: RecentDeadLetter[] }
  | { readonly type: 'ended' }
  | { readonly type: 'closed'; readonly metrics: InstanceMetrics[]; readonly deadLetters: RecentDeadLetter[] }
  | { readonly type: 'failed'; readonly message: string; readonly step: string | undefined; readonly stack: string | undefined };
