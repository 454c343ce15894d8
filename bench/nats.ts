/**
 * NATS JetStream throughput on one core, against the server of `SPATE_NATS_URL` (default: the
 * test server of scripts/services.sh):
 *
 * - source: a stream of small JSON messages ({ id, device, value }, ~50 bytes) read to its end by
 *   JetStreamSource (bounded) → a sink that counts; records/s from start to end (consumer
 *   creation included), decoding included;
 * - sink: a generator of the same records → JetStreamSink with a checkpoint every second, exactly
 *   once (published at each commit) and at least once (published as they come); records/s from
 *   start to the last acknowledgement, generator included.
 *
 * Each run uses fresh streams, deleted at the end. The server shares the machine's cores.
 *
 * `npx tsx bench/nats.ts [records=500000]` prints a markdown table.
 */
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Batch, GeneratorSource, JetStreamSink, JetStreamSource, Pipeline, type Sink } from '../src/index.ts';

const URL = process.env['SPATE_NATS_URL'] ?? 'nats://127.0.0.1:4222';
const n = Number(process.argv[2] ?? 500_000);
const connection = { servers: URL };

interface Reading {
  readonly id: number;
  readonly device: string;
  readonly value: number;
}
const make = (i: number): Reading => ({ id: i, device: `d${i % 1000}`, value: i / 10 });

/** Counts what it is given (a sink that costs nothing, so the source is what is measured). */
class CountSink implements Sink<unknown> {
  count = 0;
  write(batch: Batch<unknown>): void {
    this.count += batch.length;
  }
}

const nc = await connect({ servers: URL });
const jsm = await jetstreamManager(nc);
const tag = `${process.pid}_${Date.now().toString(36)}`.toUpperCase();
const streams: string[] = [];
async function stream(name: string): Promise<string> {
  const full = `BENCH_${name}_${tag}`;
  await jsm.streams.add({ name: full, subjects: [`${full}.>`], duplicate_window: 120e9 });
  streams.push(full);
  return full;
}

const rows: string[] = [];
try {
  // Fill the source's stream with the sink at least once (fast), so this is measured too.
  const input = await stream('IN');
  {
    const p = new Pipeline();
    p.source(new GeneratorSource<Reading>({ count: n, make }), { id: 'gen' }).sink(new JetStreamSink<Reading>({ connection, subject: `${input}.r`, delivery: 'at-least-once' }), { id: 'fill' });
    await p.run({ checkpointInterval: 1_000 });
  }
  const info = await jsm.streams.info(input);
  if (info.state.messages !== n) throw new Error(`the input stream holds ${info.state.messages} messages, not ${n}`);

  for (let round = 0; round < 2; round++) {
    const count = new CountSink();
    const p = new Pipeline();
    p.source(new JetStreamSource<Reading>({ connection, stream: input, bounded: true }), { id: 'in' }).sink(count, { id: 'count' });
    const t = performance.now();
    await p.run({ checkpointInterval: 1_000 });
    const s = (performance.now() - t) / 1000;
    if (count.count !== n) throw new Error(`read ${count.count} of ${n}`);
    if (round === 1) rows.push(`| JetStreamSource (json, bounded) → count | ${n} | ${s.toFixed(2)} | ${Math.round(n / s).toLocaleString('en')} |`);
  }

  for (const delivery of ['exactly-once', 'at-least-once'] as const) {
    const out = await stream(delivery === 'exactly-once' ? 'EO' : 'ALO');
    const p = new Pipeline();
    p.source(new GeneratorSource<Reading>({ count: n, make }), { id: 'gen' }).sink(new JetStreamSink<Reading>({ connection, subject: `${out}.r`, delivery }), { id: 'out' });
    const t = performance.now();
    await p.run({ checkpointInterval: 1_000 });
    const s = (performance.now() - t) / 1000;
    const stored = (await jsm.streams.info(out)).state.messages;
    if (stored !== n) throw new Error(`${delivery}: the stream holds ${stored} messages, not ${n}`);
    rows.push(`| generator → JetStreamSink (${delivery}, checkpoint every 1 s) | ${n} | ${s.toFixed(2)} | ${Math.round(n / s).toLocaleString('en')} |`);
  }
} finally {
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  await nc.close();
}

console.log(`NATS JetStream, one core (Node ${process.version}), server ${URL}\n`);
console.log('| pipeline | records | seconds | records/s |');
console.log('|---|---:|---:|---:|');
for (const r of rows) console.log(r);
