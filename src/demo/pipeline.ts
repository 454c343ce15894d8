/**
 * The demo job as a pipeline module (what `spate demo` and `npm start` run, on every core):
 * noise readings pushed over HTTP, WebSocket and MQTT into durable endpoints, validated (dead
 * letters for the rest), deduplicated, analysed (`analytics.ts`) and stored exactly once in an
 * embedded DuckDB file — or PostgreSQL with `--store postgres` — with live views for the
 * dashboard. It uses the public API only, and runs as any pipeline file does:
 *
 *   spate run src/demo/pipeline.ts --ui --checkpoint-dir .spate/demo/checkpoints -- --http-port 7071
 */
import { parseArgs } from 'node:util';
import { definePipeline } from '../api/define-pipeline.ts';
import { numericArg } from '../cli/args.ts';
import type { Pipeline } from '../api/pipeline.ts';
import type { Stream } from '../api/stream.ts';
import { DuckDBSink } from '../connectors/duckdb/sink.ts';
import { PostgresSink } from '../connectors/postgres/sink.ts';
import { HttpSource } from '../connectors/push/http-source.ts';
import { MqttSource } from '../connectors/push/mqtt-source.ts';
import { WebSocketSource } from '../connectors/push/websocket-source.ts';
import type { TableSinkOptions } from '../connectors/table-sink.ts';
import type { DeadLetter } from '../runtime/operator.ts';
import { buildAnalytics } from './analytics.ts';
import { type Reading, toReading } from './model.ts';

/** The demo job's settings (its module arguments). */
export interface DemoJobConfig {
  /** Address the ingestion endpoints bind (default 127.0.0.1; any other needs `token`). */
  readonly host: string;
  readonly token: string | undefined;
  readonly httpPort: number;
  readonly wsPort: number;
  /** Port of the in-process MQTT broker, unless `mqttUrl` names an external one. */
  readonly mqttPort: number;
  readonly mqttUrl: string | undefined;
  /** The job's client id at the external broker (`mqttUrl`; default `spate-mqtt`): its persistent session. */
  readonly mqttClientId: string | undefined;
  readonly store: 'duckdb' | 'postgres';
  /** The DuckDB file (`store` duckdb). */
  readonly duckdb: string;
  /** The PostgreSQL connection string (`store` postgres; default: the PG* environment). */
  readonly pgUrl: string | undefined;
  /** A request, WebSocket message or MQTT message larger than this is refused (bytes). */
  readonly maxMessageBytes: number;
}

/** The MQTT topics devices publish to: `sensors/<device>/readings`. */
export const MQTT_TOPIC = 'sensors/+/readings';

/** Default limit on one ingested message or request: readings are ~100 bytes, batches a few hundred. */
export const MAX_MESSAGE_BYTES = 256 * 1024;

/** Parses the module arguments (`--http-port 7071 --store duckdb …`); unknown ones are an error. */
export function parseDemoJobArgs(args: readonly string[]): DemoJobConfig {
  const { values } = parseArgs({
    args: [...args],
    options: {
      host: { type: 'string' },
      token: { type: 'string' },
      'http-port': { type: 'string' },
      'ws-port': { type: 'string' },
      'mqtt-port': { type: 'string' },
      'mqtt-url': { type: 'string' },
      'mqtt-client-id': { type: 'string' },
      store: { type: 'string' },
      duckdb: { type: 'string' },
      'pg-url': { type: 'string' },
      'max-message-bytes': { type: 'string' },
    },
  });
  const port = (name: string, fallback: number): number => numericArg(name, values[name as 'http-port'], fallback, { integer: true, min: 0, max: 65535 });
  const store = values.store ?? 'duckdb';
  if (store !== 'duckdb' && store !== 'postgres') throw new RangeError(`--store must be duckdb or postgres, got '${store}'`);
  const maxBytes = numericArg('max-message-bytes', values['max-message-bytes'], MAX_MESSAGE_BYTES, { integer: true, min: 1024 });
  return {
    host: values.host ?? '127.0.0.1',
    token: values.token,
    httpPort: port('http-port', 7071),
    wsPort: port('ws-port', 7072),
    mqttPort: port('mqtt-port', 7073),
    mqttUrl: values['mqtt-url'],
    mqttClientId: values['mqtt-client-id'],
    store,
    duckdb: values.duckdb ?? '.spate/demo/results.duckdb',
    pgUrl: values['pg-url'],
    maxMessageBytes: maxBytes,
  };
}

/** The column types of the result tables (the same SQL names in DuckDB and PostgreSQL). */
const TABLES = {
  device_stats: { device: 'text', region: 'text', window_start: 'timestamptz', window_end: 'timestamptz', readings: 'bigint', avg_db: 'float8', min_db: 'float8', max_db: 'float8' },
  device_p95: { device: 'text', window_end: 'timestamptz', p95_db: 'float8' },
  alerts: { device: 'text', time: 'timestamptz', kind: 'text', db: 'float8', z: 'float8' },
  region_activity: { region: 'text', window_end: 'timestamptz', devices: 'bigint' },
  noisiest: { window_end: 'timestamptz', rank: 'integer', device: 'text', loud_readings: 'bigint' },
  late_readings: { id: 'text', device: 'text', region: 'text', time: 'timestamptz', db: 'float8', arrived_at: 'timestamptz' },
  dead_letters: { step: 'text', error: 'text', time: 'timestamptz', record: 'text' },
} as const;

type Table = keyof typeof TABLES;

/** Stores `stream` into `table` of the configured store, keyed (upserts) or appended. */
function store<T>(config: DemoJobConfig, stream: Stream<T>, table: Table, row: (r: T) => Record<string, unknown>, key?: readonly string[]): void {
  const columns = Object.keys(TABLES[table]);
  const options: TableSinkOptions<T> = {
    table,
    columns,
    row: (r) => {
      const o = row(r);
      return columns.map((c) => o[c] ?? null);
    },
    create: TABLES[table],
    ...(key === undefined ? {} : { key }),
  };
  const sink = config.store === 'duckdb' ? new DuckDBSink<T>({ ...options, path: config.duckdb }) : new PostgresSink<T>({ ...options, ...(config.pgUrl === undefined ? {} : { connection: config.pgUrl }) });
  stream.sink(sink, { id: `store-${table.replace(/_/g, '-')}` });
}

/** A dead letter's record as text for the table: JSON, cut to 1 000 characters. */
function recordText(record: unknown): string {
  let s: string;
  try {
    s = typeof record === 'string' ? record : (JSON.stringify(record) ?? String(record));
  } catch {
    s = String(record);
  }
  return s.length > 1000 ? `${s.slice(0, 1000)}…` : s;
}

/** The demo job's ingestion endpoints (`listening()` says where, once the job runs). */
export interface DemoEndpoints {
  readonly http: HttpSource<Reading>;
  readonly websocket: WebSocketSource<Reading>;
  readonly mqtt: MqttSource<Reading>;
}

/** Builds the demo job on `p`: the three endpoints, the analytics, the tables and the views. */
export function buildDemoJob(p: Pipeline, config: DemoJobConfig): DemoEndpoints {
  const common = { host: config.host, schema: toReading, time: (r: Reading) => r.time, ...(config.token === undefined ? {} : { token: config.token }) };
  // Devices send readings up to a few seconds out of order; later ones are handled as late.
  const timing = { outOfOrderness: 5_000 };
  const endpoints: DemoEndpoints = {
    http: new HttpSource<Reading>({ ...common, port: config.httpPort, maxRequestBytes: config.maxMessageBytes }),
    websocket: new WebSocketSource<Reading>({ ...common, port: config.wsPort, maxMessageBytes: config.maxMessageBytes }),
    mqtt: new MqttSource<Reading>({
      ...common,
      ...(config.mqttUrl === undefined ? { port: config.mqttPort } : { url: config.mqttUrl, ...(config.mqttClientId === undefined ? {} : { clientId: config.mqttClientId }) }),
      topics: [MQTT_TOPIC],
      maxMessageBytes: config.maxMessageBytes,
    }),
  };
  const http = p.source(endpoints.http, { id: 'http', ...timing });
  const ws = p.source(endpoints.websocket, { id: 'websocket', ...timing });
  const mqtt = p.source(endpoints.mqtt, { id: 'mqtt', ...timing });
  const a = buildAnalytics(http.union(ws, mqtt));

  store(config, a.stats, 'device_stats', (s) => ({ device: s.device, region: s.region, window_start: s.start, window_end: s.end, readings: s.count, avg_db: s.avg, min_db: s.min, max_db: s.max }), ['device', 'window_start']);
  store(config, a.p95, 'device_p95', (s) => ({ device: s.device, window_end: s.end, p95_db: s.p95 }), ['device', 'window_end']);
  store(config, a.alerts, 'alerts', (s) => ({ ...s }));
  store(config, a.regions, 'region_activity', (s) => ({ region: s.region, window_end: s.end, devices: s.devices }), ['region', 'window_end']);
  const ranks = a.noisiest.flatMap<{ window_end: number; rank: number; device: string; loud_readings: number }>((n, out) => {
    n.devices.forEach((d, i) => out.emit({ window_end: n.end, rank: i + 1, device: d.device, loud_readings: d.loudReadings }));
  }, { id: 'noisiest-ranks' });
  store(config, ranks, 'noisiest', (r) => r, ['window_end', 'rank']);
  store(config, a.late, 'late_readings', (r) => ({ id: r.id, device: r.device, region: r.region, time: r.time, db: r.db, arrived_at: r.arrivedAt }));
  store(config, p.deadLetters(), 'dead_letters', (d: DeadLetter) => ({ step: d.step, error: d.error, time: Number.isFinite(d.time) ? d.time : null, record: recordText(d.record) }));

  // Live views for the dashboard (charts, /views/<name>/<key>).
  a.regions.keyBy((r) => r.region).view('active-devices-by-region');
  a.stats.keyBy((s) => s.device).view('device-stats');
  a.p95.keyBy((s) => s.device).view('device-p95');
  a.alerts.keyBy((s) => s.device).view('latest-alert');
  return endpoints;
}

export default definePipeline(
  (p, args) => {
    buildDemoJob(p, parseDemoJobArgs(args));
  },
  { checkpointInterval: 2_000 },
);
