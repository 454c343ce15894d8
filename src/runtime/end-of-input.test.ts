import { describe, expect, it } from 'vitest';
import { Pipeline } from '../api/pipeline.ts';
import { CollectSink } from '../connectors/memory/sink.ts';
import type { Batch } from './batch.ts';
import { Collector, type EdgeTarget } from './collector.ts';
import type { Operator, OperatorContext } from './operator.ts';
import type { Source } from './source.ts';
import type { SourceNode } from './source-node.ts';
import { VirtualClock } from '../time/clock.ts';

/** What reached a target, in order. */
function recorder(): { events: string[]; target: EdgeTarget } {
  const events: string[] = [];
  return {
    events,
    target: {
      pushBatch: (b: Batch<unknown>) => void events.push(`batch ${b.values.slice(0, b.length).join(',')}`),
      pushWatermark: (w: number) => void events.push(`watermark ${w}`),
      pushIdle: () => undefined,
      pushBarrier: () => void events.push('barrier'),
      pushEnd: () => void events.push('end'),
    },
  };
}

/** A source the test feeds by hand (never polled). */
const manual = (): Source<unknown> => ({
  bounded: false,
  watermarks: 'explicit',
  maxParallelism: 1,
  splits: () => [],
  createReader: () => ({ open: () => undefined, poll: () => 'wait', snapshot: () => [] }),
});

describe('the flush at the end of input: records emitted before the end reach downstream before it', () => {
  it('Collector.end hands its buffered records downstream first', () => {
    const c = new Collector<number>(8);
    const r = recorder();
    c.connect(r.target, 0);
    c.emit(1, 1);
    c.emit(2, 2);
    c.end();
    expect(r.events).toEqual(['batch 1,2', 'end']);
  });

  it('a source that finishes publishes — stamps, counts and hands on — what was emitted before it', () => {
    const clock = new VirtualClock(5000);
    const p = new Pipeline({ clock });
    const out = new CollectSink<number>();
    p.source(manual, { id: 'in', idleTimeout: 0 }).sink(out, { id: 'out' });
    const job = p.createJob();
    job.openSync();
    const source = job.node('in') as SourceNode;
    source.emit(1, 10);
    source.emit(2); // no time: ingestion time, stamped when published
    expect(out.values).toEqual([]); // emitted, not yet published
    source.finish();
    expect(out.records).toEqual([
      { value: 1, time: 10 },
      { value: 2, time: 5000 },
    ]);
    expect(job.metrics().find((m) => m.step === 'in')).toMatchObject({ recordsOut: 2 });
    expect(job.node('out').ended).toBe(true);
  });

  it('what an operator emits in endInput is handed on and counted when its input ends', () => {
    /** Holds everything back and emits it when the input ends (a buffering operator). */
    class Tail implements Operator<number, number> {
      private ctx!: OperatorContext<number>;
      private readonly held: Array<[number, number]> = [];
      open(ctx: OperatorContext<number>): void {
        this.ctx = ctx;
      }
      processBatch(batch: Batch<number>): void {
        for (let i = 0; i < batch.length; i++) this.held.push([batch.values[i]!, batch.times[i]!]);
      }
      endInput(): void {
        for (const [v, t] of this.held) this.ctx.output.emit(v * 10, t);
      }
    }
    const p = new Pipeline();
    const src = p.source(manual, { id: 'in', idleTimeout: 0 });
    const tail = p.addOperator<number>('tail', { id: 'tail' }, [src.edge()], () => new Tail() as Operator<unknown, unknown>);
    const out = new CollectSink<number>();
    tail.sink(out, { id: 'out' });
    const job = p.createJob();
    job.openSync();
    const source = job.node('in') as SourceNode;
    for (const n of [1, 2, 3]) source.emit(n, n);
    source.publish();
    expect(out.values).toEqual([]);
    source.finish();
    expect(out.values).toEqual([10, 20, 30]);
    expect(job.node('out').ended).toBe(true);
    // Counted by the step as it ended (not only by a later checkpoint's flush).
    expect(job.metrics().find((m) => m.step === 'tail')).toMatchObject({ recordsIn: 3, recordsOut: 3 });
  });
});
