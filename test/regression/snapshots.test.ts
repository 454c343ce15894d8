// Issue 6, point 5 (snapshots taken from anywhere are consistent cuts) and point 4 (late records
// dropped for the first time are warned about).
import { describe, expect, it } from 'vitest';
import {
  CallbackSink,
  count,
  decodeSnapshot,
  encodeSnapshot,
  GeneratorSource,
  type JobSnapshot,
  Pipeline,
  type RunningJob,
  tumbling,
  valueState,
} from '../../src/index.ts';
import { TestSource } from '../../src/testing/index.ts';

const N = 50_000;

/** Numbers 0..N-1, a running count in keyed state; the sink sees every count. */
function build(p: Pipeline, onCount: (c: number) => void): void {
  p.source(new GeneratorSource({ count: N, make: (i) => i, time: (i) => i }), { id: 'numbers' })
    .keyBy(() => 'all')
    .state({ n: valueState<number>() })
    .process<number>(
      {
        onElement(_i, ctx) {
          const c = (ctx.state.n.get() ?? 0) + 1;
          ctx.state.n.set(c);
          ctx.emit(c);
        },
      },
      { id: 'count' },
    )
    .sink(new CallbackSink(onCount), { id: 'out' });
}

describe('job.snapshot() from inside a sink', () => {
  it('is a consistent cut: the restored count reaches exactly N, never counting a batch twice', async () => {
    for (const at of [1, 1024, 1025, 17_000, 49_999]) {
      let job: RunningJob | undefined;
      let snapshot: Promise<JobSnapshot> | undefined;
      const p = new Pipeline({ checkpointInterval: 0 });
      build(p, (c) => {
        // Called in the middle of a batch, while the source has already emitted what follows.
        if (c === at) snapshot = job!.snapshot();
      });
      job = p.start();
      await job.done;
      const snap = await snapshot!.catch((e: Error) => e);
      // Requested while the last batch goes through, it may come after the end: refused clearly.
      if (snap instanceof Error) {
        expect(at).toBeGreaterThan(N - 1024);
        expect(snap.message).toMatch(/the job is ending|not running/);
        continue;
      }
      const restored = decodeSnapshot(encodeSnapshot(snap));
      let last = 0;
      const p2 = new Pipeline({ checkpointInterval: 0 });
      build(p2, (c) => (last = c));
      await p2.run({ restoreFrom: restored });
      const position = restored.steps.get('numbers')!.instances[0]!.splits![0]!.position;
      // Either the cut was inside the input and the restored job counts on to exactly N, or it
      // was after the last record (the source had ended) and there is nothing to replay.
      if (position === N) expect(last).toBe(0);
      else expect(last, `snapshot requested at count ${at}`).toBe(N);
    }
  });

  it('survives being turned into bytes and back', async () => {
    const p = new Pipeline();
    p.source(new TestSource<number>().record(1, 1).record(2, 2), { id: 'numbers' })
      .keyBy((n) => n)
      .window(tumbling(10))
      .aggregate(count(), { id: 'count' })
      .sink(new CallbackSink(() => undefined));
    const job = p.start();
    const snap = await job.snapshot();
    await job.stop();
    const bytes = encodeSnapshot(snap);
    expect(bytes).toBeInstanceOf(Uint8Array);
    const back = decodeSnapshot(bytes);
    expect(back.id).toBe(snap.id);
    expect([...back.steps.keys()]).toEqual([...snap.steps.keys()]);
    expect(back.steps.get('count')!.keyed).toEqual(snap.steps.get('count')!.keyed);
    expect(() => decodeSnapshot(new Uint8Array([1, 2, 3]))).toThrow();
  });
});

describe('late records', () => {
  it('dropping them is warned about once per step, with the first record and the watermark', async () => {
    const lines: string[] = [];
    const p = new Pipeline({ log: (l) => lines.push(l) });
    const src = new TestSource<number>().record(1, 5).watermark(20).record(2, 3).record(3, 4).end();
    p.source(src).windowAll(tumbling(10)).aggregate(count(), { id: 'tens' }).sink(new CallbackSink(() => undefined));
    const result = await p.run();
    expect(result.metrics.find((m) => m.step === 'tens')).toMatchObject({ lateRecords: 2, lateDropped: 2 });
    const warnings = lines.filter((l) => l.includes('late'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/warning: step 'tens': drops late records \(the first at event time 3, behind the watermark 20\)/);
  });

  it('dropping them by an explicit policy is counted without a warning', async () => {
    const lines: string[] = [];
    const p = new Pipeline({ log: (l) => lines.push(l) });
    const src = new TestSource<number>().record(1, 5).watermark(20).record(2, 3).end();
    p.source(src).windowAll(tumbling(10)).onLate({ policy: 'drop' }).aggregate(count(), { id: 'tens' }).sink(new CallbackSink(() => undefined));
    const result = await p.run();
    expect(result.metrics.find((m) => m.step === 'tens')).toMatchObject({ lateRecords: 1, lateDropped: 1 });
    expect(lines.filter((l) => l.includes('late'))).toEqual([]);
  });
});
