import { CollectSink, Pipeline, GeneratorSource } from '/work/wt-kafka/src/index.ts';
for (let k = 0; k < 5; k++) {
const out = new CollectSink<number>();
const p = new Pipeline();
p.source(new GeneratorSource({ count: 400, make: (i) => i, ratePerSecond: 2000 }), { id: 'g' }).sink(out, { id: 'out' });
await p.run({ parallelism: 2, checkpointDir: '/tmp/kdbg-g-' + Date.now(), checkpointInterval: 10 });
console.log(out.values.length, new Set(out.values).size);
}
