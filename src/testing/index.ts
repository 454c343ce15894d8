/**
 * Spate's test kit (`spate/testing`): drive pipelines and operators with virtual time.
 */
export { VirtualClock } from '../time/clock.ts';
export { TestSource } from './test-source.ts';
export { CollectSink } from '../connectors/memory/sink.ts';
export { OperatorHarness, type HarnessOptions, type Timed } from './operator-harness.ts';
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
