/**
 * Push ingestion figures on this machine: records per second taken over HTTP (NDJSON batches of
 * 500), WebSocket (NDJSON batches of 500) and MQTT (QoS 1, in-process broker; and through
 * Mosquitto when it runs), each durable in the source's write-ahead log before it is
 * acknowledged, read by a job with checkpoints every second; and the latency from the client's
 * send to the job's sink (p50/p99) at a fixed, moderate rate.
 *
 *   npm run bench:ingest [-- seconds]
 *
 * The load comes from another process (bench/ingest-load.ts), so the job's thread is its own; on
 * this 2-core machine the two still share the cores.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpSource, MqttSource, Pipeline, type Source, WebSocketSource } from '../src/index.ts';

const seconds = Number(process.argv[2] ?? 5);
const MOSQUITTO = process.env.SPATE_MQTT_URL ?? 'mqtt://127.0.0.1:1883';
const root = mkdtempSync(join(tmpdir(), 'spate-bench-ingest-'));
let n = 0;

interface Reading {
  readonly device: string;
  readonly temp: number;
  readonly i: number;
  /** Send time, ms. */
  readonly t: number;
}

interface Measured {
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly refused: number;
}

async function load(args: string[]): Promise<{ sent: number; acked: number; refused: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'ingest-load.ts'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  if (code !== 0) throw new Error(`load generator failed (${String(code)})`);
  return JSON.parse(out) as { sent: number; acked: number; refused: number };
}

/** Runs the job with `source`, drives it with the load `args(url)`, measures at the sink. */
async function measure(source: Source<Reading> & { listening(): Promise<{ url: string }> }, args: (url: string) => string[], url?: string): Promise<Measured> {
  const latencies: number[] = [];
  let received = 0;
  const p = new Pipeline({ checkpointDir: join(root, `ck${n++}`), checkpointInterval: 1000, log: () => undefined });
  p.source(source, { id: 'ingest' }).sink({
    write: (b) => {
      const now = performance.timeOrigin + performance.now();
      received += b.length;
      for (let i = 0; i < b.length; i++) latencies.push(now - b.values[i]!.t);
    },
  });
  const job = p.start();
  const address = await source.listening();
  const started = performance.now();
  const result = await load(args(url ?? address.url));
  // Wait until the job has read everything acknowledged.
  while (received < result.acked) await new Promise((r) => setTimeout(r, 5));
  const elapsed = (performance.now() - started) / 1000;
  await job.stop();
  latencies.sort((a, b) => a - b);
  const q = (f: number): number => latencies[Math.min(latencies.length - 1, Math.floor(f * latencies.length))] ?? NaN;
  return { perSecond: result.acked / elapsed, p50: q(0.5), p99: q(0.99), refused: result.refused };
}

async function mosquittoUp(): Promise<boolean> {
  const mqtt = await import('mqtt');
  try {
    const c = await mqtt.connectAsync(MOSQUITTO, { reconnectPeriod: 0, connectTimeout: 1000 });
    await c.endAsync();
    return true;
  } catch {
    return false;
  }
}

const dir = (): string => join(root, `wal${n++}`);
const rows: Array<[string, Measured, Measured]> = [];
const s = String(seconds);
try {
  rows.push([
    'HTTP, NDJSON batches of 500',
    await measure(new HttpSource<Reading>({ port: 0, dir: dir(), maxBacklog: 1_000_000 }), (url) => ['http', url, s, '8', '500']),
    await measure(new HttpSource<Reading>({ port: 0, dir: dir() }), (url) => ['http', url, s, '4', '500', '20000']),
  ]);
  rows.push([
    'WebSocket, NDJSON batches of 500',
    await measure(new WebSocketSource<Reading>({ port: 0, dir: dir(), maxBacklog: 1_000_000 }), (url) => ['ws', url, s, '4', '500']),
    await measure(new WebSocketSource<Reading>({ port: 0, dir: dir() }), (url) => ['ws', url, s, '2', '500', '20000']),
  ]);
  rows.push([
    'MQTT QoS 1, in-process broker',
    await measure(new MqttSource<Reading>({ port: 0, dir: dir(), maxBacklog: 1_000_000 }), (url) => ['mqtt', url, s, '8', '200']),
    await measure(new MqttSource<Reading>({ port: 0, dir: dir() }), (url) => ['mqtt', url, s, '4', '50', '5000']),
  ]);
  if (await mosquittoUp()) {
    const topic = `spate-bench/${process.pid}`;
    const external = (): MqttSource<Reading> => new MqttSource<Reading>({ url: MOSQUITTO, clientId: `spate-bench-${process.pid}-${n}`, topics: [topic], dir: dir(), maxBacklog: 1_000_000 });
    rows.push([
      'MQTT QoS 1, through Mosquitto',
      await measure(external(), (url) => ['mqtt', url, s, '4', '200', '', topic], MOSQUITTO),
      await measure(external(), (url) => ['mqtt', url, s, '2', '50', '5000', topic], MOSQUITTO),
    ]);
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}

const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
console.log(`\npush ingestion, ${seconds} s per run, acknowledged after fsync, checkpoints every 1 s`);
console.log('| endpoint | records/s (saturated) | latency p50 / p99 at a fixed rate (ms, send → sink) |');
console.log('|---|---:|---|');
for (const [name, sat, fixed] of rows) {
  const rate = name.startsWith('MQTT') ? '5 000/s' : '20 000/s';
  console.log(`| ${name} | ${Math.round(sat.perSecond).toLocaleString('en')} | ${fmt(fixed.p50)} / ${fmt(fixed.p99)} at ${rate} |`);
}
