import { spawn } from 'node:child_process';
import { KafkaSink, Pipeline } from './src/index.ts';
import { NexmarkSource } from './src/nexmark/source.ts';
import { createTopic, produce, readCommitted, uniqueTopic } from './test/support/kafka.ts';
import { endMarker } from './test/support/cluster-nexmark-job.ts';
const n = Number(process.env.N ?? 500_000), queries = process.argv[2] ?? 'q2-keyed';
const input = await createTopic(uniqueTopic('prof-in'), 4);
const output = await createTopic(uniqueTopic('prof-out'), 1);
const fill = new Pipeline();
fill.source(new NexmarkSource({ events: n }), { id: 'events' }).sink(new KafkaSink({ topic: input, guarantee: 'at-least-once', partition: (e: { dateTime: number }, p) => Math.floor(e.dateTime / 7) % p }), { id: 'in' });
await fill.run({ checkpointInterval: 1_000 });
const last = (await readCommitted(input)).reduce((max, r) => Math.max(max, r.timestamp), 0);
await produce(input, Array.from({ length: 4 }, (_, p) => ({ value: endMarker(last), partition: p, timestamp: last + 3_600_000 })));
const child = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', '/tmp/prof', 'bin/spate.js', 'run', 'test/support/cluster-nexmark-job.ts', '--cluster', 'kafka://127.0.0.1:9092', '--job-id', 'prof-' + Date.now(), '--parallelism', '1', '--', input, output, 'stream', '0', queries], { stdio: ['ignore', 'inherit', 'inherit'] });
const t0 = Date.now();
let c = 0;
for (;;) { await new Promise(r => setTimeout(r, 1000)); c = (await readCommitted(output)).length; console.log(Date.now() - t0, c); if (Date.now() - t0 > 8000 && c > 0 && c === (globalThis as any).prev) break; (globalThis as any).prev = c; }
child.kill('SIGTERM');
await new Promise(r => child.on('exit', r));
