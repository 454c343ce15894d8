// Regression tests for bugs found in review (fixed); the comments describe the bug each test guards against.
import { describe, expect, it } from 'vitest';
import { count, GeneratorSource, OutputTag, Pipeline, tumbling } from '../../src/index.ts';
import type { NexmarkEvent } from '../../src/nexmark/model.ts';
import { NexmarkSource } from '../../src/nexmark/source.ts';

describe('sources with several splits register every split before emitting', () => {
  // The source's watermark is the minimum over the splits that registered their output, and the
  // generator and NEXMark readers registered a split only when they first polled it — one split
  // per poll. So the first split polled set the watermark alone, and the first records of the
  // other splits were behind it: late, although every split is in order.
  it('a generator with three in-order splits has no late records', async () => {
    const late = new OutputTag<number>('late');
    const p = new Pipeline({ batchSize: 7 });
    const w = p
      .source(new GeneratorSource({ count: 300, splits: 3, make: (i) => i, time: (i) => i * 10 }), { idleTimeout: 0 })
      .windowAll(tumbling(100))
      .onLate({ policy: 'side-output', tag: late })
      .aggregate(count(), { id: 'w' });
    const lateOut = w.sideOutput(late).collect();
    const out = w.collect();
    await p.run();
    expect(lateOut.values).toEqual([]);
    expect(out.values.map((r) => r.value)).toEqual(Array(30).fill(10));
  });

  it('NEXMark with three splits and no disorder has no late records', async () => {
    const p = new Pipeline({ batchSize: 64 });
    p.source<NexmarkEvent>(() => new NexmarkSource({ events: 3000, rate: 100, splits: 3 }), { idleTimeout: 0 })
      .windowAll(tumbling(1000))
      .aggregate(count(), { id: 'w' })
      .collect();
    const result = await p.run();
    expect(result.metrics.find((m) => m.step === 'w')!.lateRecords).toBe(0);
  });
});
