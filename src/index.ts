/**
 * Spate: real-time stream processing for TypeScript.
 *
 * The public API. Everything a pipeline author needs is exported here; the test kit lives in
 * `spate/testing`.
 */
export { Pipeline, type PipelineOptions, type RunningJob, type SourceOptions } from './api/pipeline.ts';
export { Stream, type StepOptions } from './api/stream.ts';
export { definePipeline, type PipelineModule, type PipelineArgs } from './api/define-pipeline.ts';
export { compatibilityReport, formatReport, type CompatibilityReport, type StepVerdict, type TableVerdict } from './checkpoint/compatibility.ts';
export {
  KeyedStream,
  StatefulKeyedStream,
  ConnectedKeyedStreams,
  ConnectedKeyedStreamsWithState,
  type KeyedResult,
} from './api/keyed-stream.ts';
export { WindowedStream, WindowJoin, type WindowResult } from './api/windowed-stream.ts';
export { OutputTag } from './api/output-tag.ts';

export type { Emitter, ProcessContext } from './operators/emitter.ts';
export type { ProcessFunction } from './operators/process.ts';
export type { KeyedContext, TimerContext, KeyedProcessSpec, KeyedCoProcessSpec } from './operators/keyed-process.ts';
export type { RegularJoinOptions, IntervalJoinBounds } from './join/joins.ts';
export type { DedupeOptions } from './operators/dedupe.ts';

export { tumbling, sliding, session, type WindowAssigner, type WindowInfo } from './window/assigners.ts';
export type { TumblingWindows, SlidingWindows, SessionWindows } from './window/assigners.ts';
export { count, sum, min, max, avg, reduce, maxBy, collectAll, type Aggregator } from './window/aggregators.ts';
export type { AvgAccumulator, TopAccumulator } from './window/aggregators.ts';
export type { LatePolicy } from './window/late-policy.ts';

export { valueState, mapState, listState } from './state/descriptors.ts';
export type {
  ValueState,
  MapState,
  ListState,
  StateOptions,
  StateSpec,
  StateHandles,
  ValueStateDescriptor,
  MapStateDescriptor,
  ListStateDescriptor,
} from './state/descriptors.ts';
export type { StateCodec } from './state/codec.ts';
export { StateVersionError } from './state/keyed-table.ts';
export { type Key, keyGroupOf, DEFAULT_MAX_PARALLELISM } from './state/key-group.ts';
export type { JobSnapshot, StepSnapshot, InstanceState } from './checkpoint/snapshot.ts';
export { encodeSnapshot, decodeSnapshot } from './checkpoint/snapshot.ts';
export { type CheckpointStorage, FileCheckpointStorage, MemoryCheckpointStorage } from './checkpoint/storage.ts';
export type { CheckpointRecord } from './checkpoint/coordinator.ts';

export { type Clock, systemClock, VirtualClock } from './time/clock.ts';
export { MIN_WATERMARK, MAX_WATERMARK, type WatermarkOptions } from './time/watermark.ts';

export { Batch } from './runtime/batch.ts';
export type { Source, SourceReader, SourceOutput, SplitOutput, SourceContext, Split } from './runtime/source.ts';
export { SourceStatus } from './runtime/source.ts';
export type { Sink, SinkContext, Committable } from './runtime/sink.ts';
export type { Operator, OperatorContext, Output } from './runtime/operator.ts';
export type { DeadLetter, OperatorMetrics } from './runtime/operator.ts';
export { StepFailure } from './runtime/dead-letters.ts';
export { Job, type JobOptions, type JobResult, type StepMetrics, type StopOptions } from './runtime/job.ts';

export { ArraySource, IterableSource } from './connectors/memory/source.ts';
export { CollectSink, CallbackSink } from './connectors/memory/sink.ts';
export { ConsoleSink, type ConsoleSinkOptions } from './connectors/console/sink.ts';
export { GeneratorSource, type GeneratorOptions } from './connectors/generator/source.ts';
export { JsonlSource, type JsonlSourceOptions, type FilePosition } from './connectors/file/jsonl-source.ts';
export { CsvSource, type CsvSourceOptions, type CsvRow } from './connectors/file/csv-source.ts';
export type { CsvType } from './connectors/file/csv.ts';
export { JsonlSink, type JsonlSinkOptions } from './connectors/file/jsonl-sink.ts';
export { WriteAheadLog, WalCursor, type WriteAheadLogOptions } from './connectors/wal/write-ahead-log.ts';
export { WalSource, type WalSourceOptions } from './connectors/wal/source.ts';
export { PostgresSink, type PostgresCommittable } from './connectors/postgres/sink.ts';
export type { PostgresSinkOptions, PostgresConnection, PostgresConnectionOptions, PostgresOp } from './connectors/postgres/config.ts';
export { PostgresCdcSource, type PostgresCdcOptions, type ChangeRecord, type ChangeOp, type CdcMetrics } from './connectors/postgres/cdc-source.ts';
export type { ValueParser, ValueOptions } from './connectors/postgres/pg-values.ts';
export type { LineReaderOptions } from './connectors/file/line-reader.ts';
