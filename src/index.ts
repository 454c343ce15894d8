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
export { Job, type JobOptions, type JobResult, type JobStatus, type JobPhase, type StepMetrics, type StopOptions } from './runtime/job.ts';
export type { InstanceMetrics } from './runtime/executor.ts';
export type { RecentDeadLetter } from './runtime/dead-letters.ts';
export type { View, ViewEntry } from './operators/view.ts';

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
export type { WalLogSpec, WalPosition } from './connectors/wal/reader.ts';
export { HttpSource, type HttpSourceOptions } from './connectors/push/http-source.ts';
export { WebSocketSource, type WebSocketSourceOptions, type WebSocketAck } from './connectors/push/websocket-source.ts';
export { MqttSource, type MqttSourceOptions } from './connectors/push/mqtt-source.ts';
export type { PushSourceOptions, EndpointAddress } from './connectors/push/push-source.ts';
export type { PushMetrics, RejectReason } from './connectors/push/metrics.ts';
export type { PayloadFormat } from './connectors/push/payload.ts';
export { DecodeError, type FormatOptions, type Schema, type StandardSchemaV1 } from './connectors/format.ts';
export { PostgresSink, type PostgresCommittable } from './connectors/postgres/sink.ts';
export type { PostgresSinkOptions, PostgresConnection, PostgresConnectionOptions, PostgresOp } from './connectors/postgres/config.ts';
export type { TableSinkOptions, RowOp } from './connectors/table-sink.ts';
export { DuckDBSink, type DuckDBCommittable } from './connectors/duckdb/sink.ts';
export type { DuckDBSinkOptions } from './connectors/duckdb/config.ts';
export { DuckDBDatabase, type DuckDBOpenOptions, type DuckDBQueryResult } from './connectors/duckdb/database.ts';
export { PostgresCdcSource, type PostgresCdcOptions, type ChangeRecord, type ChangeOp, type CdcMetrics } from './connectors/postgres/cdc-source.ts';
export type { ValueParser, ValueOptions } from './connectors/postgres/pg-values.ts';
export type { LineReaderOptions } from './connectors/file/line-reader.ts';
export { KafkaSource, type KafkaSourceOptions, type KafkaMessage, type KafkaPosition, type KafkaStartFrom } from './connectors/kafka/source.ts';
export { KafkaSink, type KafkaSinkOptions, type KafkaCommittable } from './connectors/kafka/sink.ts';
export { kafkaDeadLetterSink, deadLetterJson, type KafkaDeadLetter } from './connectors/kafka/dead-letters.ts';
export type { KafkaConnection } from './connectors/kafka/client.ts';
export type { KafkaStats, RetryOptions as KafkaRetryOptions } from './connectors/kafka/retry.ts';
export { ClusterProcess, type ClusterOptions, type TaskStatus } from './cluster/runner.ts';
export { KafkaCheckpointStorage, FencedError, type KafkaCheckpointStorageOptions } from './cluster/kafka-storage.ts';
export { JetStreamSource, type JetStreamSourceOptions, type JetStreamStart, type JetStreamPosition } from './connectors/nats/source.ts';
export { JetStreamSink, type JetStreamSinkOptions, type JetStreamCommittable } from './connectors/nats/sink.ts';
export type { NatsConnectionOptions, NatsTlsOptions, RetryOptions as NatsRetryOptions, PublisherStats as JetStreamPublisherStats, JetStreamSourceStats } from './connectors/nats/options.ts';

export { serveDashboard, type Dashboard, type DashboardOptions } from './ui/dashboard.ts';
export type { QueryEngine, QueryResult } from './ui/query-engine.ts';
export type { DashboardStatus, StepRates, InstanceRates, ChannelState } from './ui/status-sampler.ts';
export { watermarkHolds, type WatermarkHold, type HoldHop, type HoldOrigin } from './ui/watermark-holds.ts';
export type { JobGraph, GraphTask, GraphStep, GraphEdge } from './ui/graph.ts';
