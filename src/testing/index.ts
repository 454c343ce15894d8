/**
 * Spate's test kit (`spate/testing`): drive pipelines and operators with virtual time, and prove
 * exactly-once with crashes injected into whole pipelines.
 */
export { VirtualClock } from '../time/clock.ts';
export { TestSource } from './test-source.ts';
export { CollectSink } from '../connectors/memory/sink.ts';
export { OperatorHarness, type HarnessOptions, type Timed } from './operator-harness.ts';
export {
  runWithCrashes,
  expectExactlyOnce,
  formatCrashes,
  CrashPoint,
  CRASH_POINTS,
  SimulatedCrash,
  ExactlyOnceViolation,
  type CrashSpec,
  type CrashOptions,
  type ExactlyOnceOptions,
  type CrashEvent,
  type CrashRun,
  type IncarnationReport,
  type Outputs,
  type Collected,
  type CollectedRecords,
} from './run-with-crashes.ts';
export {
  CommittedStore,
  TransactionalCollectSink,
  type TransactionalCollectSinkOptions,
  type PreparedTransaction,
  type SinkPoint,
  type SinkPointDetail,
} from './transactional-sink.ts';
export { canonicalKey, diffMultisets, type MultisetDiff } from './multiset.ts';
export { MemoryCheckpointStorage } from '../checkpoint/storage.ts';
export type { JobTestHooks } from '../runtime/job.ts';
export {
  sinkConformance,
  sourceConformance,
  runConformance,
  ConformanceError,
  type ConformanceCheck,
  type ConformanceResult,
  type ConformanceOptions,
  type SinkHarness,
  type SourceHarness,
} from './conformance.ts';
